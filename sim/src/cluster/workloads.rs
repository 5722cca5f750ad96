//! StatefulSet and Deployment controllers, and the PVC binder.
//!
//! StatefulSets: ordinal pods `<set>-<n>`, one PVC per volumeClaimTemplate and ordinal
//! that outlives its pod, OrderedReady creation (an ordinal starts only when every
//! lower one is Running and Ready) or Parallel, recreation of deleted or failed pods,
//! and RollingUpdate one pod at a time from the highest ordinal down, each only after
//! every pod is Ready again. Revisions are a hash of the pod template (the
//! `controller-revision-hash` label); ControllerRevision objects are not kept.
//!
//! Deployments manage their pods directly (no ReplicaSet objects), with the
//! `pod-template-hash` label, RollingUpdate (maxSurge/maxUnavailable 25%, at least one
//! surge pod) or Recreate.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ControlPlane, Snapshot, key_deployments, key_pods, key_pvcs, key_statefulsets};
use crate::object::{
    at, controller_ref, controller_uid, i64_at, is_terminating, label_selector_matches, labels,
    name, namespace, ordinal_of, pod_is_ready, stable_hash, str_at, uid,
};

const STS_COMPONENT: &str = "statefulset-controller";
const DEPLOY_COMPONENT: &str = "deployment-controller";
const PV_COMPONENT: &str = "persistentvolume-controller";
/// The finalizer the kubelet removes once it has stopped a deleted pod's containers,
/// standing in for graceful deletion: a pod on an unreachable node stays Terminating.
pub(crate) const POD_FINALIZER: &str = "sim.bloodraven.shipstream.io/kubelet";

fn owned_pods<'a>(snap: &'a Snapshot, owner: &Value) -> Vec<&'a Value> {
    snap.pods
        .iter()
        .filter(|p| namespace(p) == namespace(owner) && controller_uid(p) == Some(uid(owner)))
        .collect()
}

fn finished(pod: &Value) -> bool {
    matches!(
        str_at(pod, &["status", "phase"]),
        Some("Failed" | "Succeeded")
    )
}

/// A pod object built from a workload's template.
fn pod_from_template(
    owner: &Value,
    template: &Value,
    pod_name: &str,
    extra_labels: &BTreeMap<String, String>,
) -> Value {
    let mut pod_labels =
        labels(&json!({"metadata": template.get("metadata").cloned().unwrap_or(Value::Null)}));
    pod_labels.extend(extra_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut metadata = json!({
        "name": pod_name,
        "namespace": namespace(owner),
        "labels": pod_labels,
        "ownerReferences": [controller_ref(owner)],
    });
    if let Some(annotations) = at(template, &["metadata", "annotations"]) {
        metadata["annotations"] = annotations.clone();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

pub(crate) fn reconcile_statefulsets(cp: &mut ControlPlane, snap: &Snapshot) {
    for set in snap.statefulsets.iter() {
        if is_terminating(set) {
            continue;
        }
        reconcile_statefulset(cp, snap, set);
    }
}

fn reconcile_statefulset(cp: &mut ControlPlane, snap: &Snapshot, set: &Value) {
    let ns = namespace(set).to_string();
    let set_name = name(set).to_string();
    let replicas = u32::try_from(i64_at(set, &["spec", "replicas"]).unwrap_or(1)).unwrap_or(0);
    let template = at(set, &["spec", "template"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    let update_revision = format!("{set_name}-{}", stable_hash(&template));
    let ordered = str_at(set, &["spec", "podManagementPolicy"]) != Some("Parallel");
    let pods: BTreeMap<u32, &Value> = owned_pods(snap, set)
        .into_iter()
        .filter_map(|p| ordinal_of(&set_name, name(p)).map(|o| (o, p)))
        .collect();

    // Failed (or, for an always-restarting set, exited) pods are deleted and recreated.
    for pod in pods.values().filter(|p| finished(p) && !is_terminating(p)) {
        cp.events.record(
            STS_COMPONENT,
            None,
            set,
            "Warning",
            "RecreatingFailedPod",
            &format!(
                "StatefulSet {ns}/{set_name} is recreating failed Pod {}",
                name(pod)
            ),
        );
        cp.api
            .delete(STS_COMPONENT, &key_pods(), Some(&ns), name(pod));
    }

    let healthy = |pod: &Value| pod_is_ready(pod) && !is_terminating(pod);
    let mut acted = false;
    for ordinal in 0..replicas {
        match pods.get(&ordinal) {
            Some(pod) => {
                if ordered && !healthy(pod) {
                    // OrderedReady: nothing above a pod that is not Ready yet.
                    acted = true;
                    break;
                }
            }
            None => {
                create_stateful_pod(cp, snap, set, &template, &update_revision, ordinal);
                acted = true;
                if ordered {
                    break;
                }
            }
        }
    }

    // Scale down: highest ordinal first, one at a time when ordered.
    if !acted {
        let all_ready = pods.values().all(|p| healthy(p));
        for (ordinal, pod) in pods.iter().rev().filter(|(o, _)| **o >= replicas) {
            if is_terminating(pod) {
                break;
            }
            if ordered && !all_ready {
                break;
            }
            delete_set_pod(cp, set, &ns, pod);
            acted = true;
            let _ = ordinal;
            if ordered {
                break;
            }
        }
    }

    // Rolling update: every pod present and Ready, then replace the highest ordinal
    // still on an old revision (at or above the partition).
    let rolling = str_at(set, &["spec", "updateStrategy", "type"]).unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = u32::try_from(
        i64_at(
            set,
            &["spec", "updateStrategy", "rollingUpdate", "partition"],
        )
        .unwrap_or(0),
    )
    .unwrap_or(0);
    let in_range: Vec<&&Value> = pods
        .iter()
        .filter(|(o, _)| **o < replicas)
        .map(|(_, p)| p)
        .collect();
    if !acted
        && rolling
        && in_range.len() == replicas as usize
        && in_range.iter().all(|p| healthy(p))
    {
        let stale = pods
            .iter()
            .rev()
            .filter(|(o, _)| **o < replicas && **o >= partition)
            .find(|(_, p)| labels(p).get("controller-revision-hash") != Some(&update_revision));
        if let Some((_, pod)) = stale {
            delete_set_pod(cp, set, &ns, pod);
        }
    }

    // Status.
    let revision_of = |p: &Value| {
        labels(p)
            .get("controller-revision-hash")
            .cloned()
            .unwrap_or_default()
    };
    let existing: Vec<&&Value> = pods.values().filter(|p| !is_terminating(p)).collect();
    let ready = existing.iter().filter(|p| pod_is_ready(p)).count();
    let updated = existing
        .iter()
        .filter(|p| revision_of(p) == update_revision)
        .count();
    let previous_current = str_at(set, &["status", "currentRevision"]).map(str::to_string);
    let current_revision = if updated == replicas as usize && ready == replicas as usize {
        update_revision.clone()
    } else {
        previous_current.unwrap_or_else(|| update_revision.clone())
    };
    let current = existing
        .iter()
        .filter(|p| revision_of(p) == current_revision)
        .count();
    let status = json!({
        "observedGeneration": i64_at(set, &["metadata", "generation"]).unwrap_or(1),
        "replicas": existing.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": 0,
    });
    write_status_if_changed(cp, STS_COMPONENT, &key_statefulsets(), set, status);
}

/// Deletes one of a StatefulSet's pods (scale-down or rolling update) with the Event the
/// real statefulset controller records for it.
fn delete_set_pod(cp: &mut ControlPlane, set: &Value, ns: &str, pod: &Value) {
    cp.events.record(
        STS_COMPONENT,
        None,
        set,
        "Normal",
        "SuccessfulDelete",
        &format!(
            "delete Pod {} in StatefulSet {} successful",
            name(pod),
            name(set)
        ),
    );
    cp.api
        .delete(STS_COMPONENT, &key_pods(), Some(ns), name(pod));
}

fn create_stateful_pod(
    cp: &mut ControlPlane,
    snap: &Snapshot,
    set: &Value,
    template: &Value,
    revision: &str,
    ordinal: u32,
) {
    let ns = namespace(set).to_string();
    let set_name = name(set).to_string();
    let pod_name = format!("{set_name}-{ordinal}");
    let claim_templates = at(set, &["spec", "volumeClaimTemplates"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let delete_with_set = str_at(
        set,
        &[
            "spec",
            "persistentVolumeClaimRetentionPolicy",
            "whenDeleted",
        ],
    ) == Some("Delete");
    let mut claim_volumes = Vec::new();
    for claim in &claim_templates {
        let template_name = name(claim);
        let claim_name = format!("{template_name}-{pod_name}");
        claim_volumes.push(
            json!({"name": template_name, "persistentVolumeClaim": {"claimName": claim_name}}),
        );
        if snap
            .pvcs
            .iter()
            .any(|c| namespace(c) == ns && name(c) == claim_name)
        {
            continue;
        }
        let mut pvc_labels = labels(claim);
        pvc_labels.extend(crate::object::string_map(at(
            set,
            &["spec", "selector", "matchLabels"],
        )));
        let mut metadata = json!({"name": claim_name, "namespace": ns, "labels": pvc_labels});
        if delete_with_set {
            metadata["ownerReferences"] = json!([controller_ref(set)]);
        }
        let pvc = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata,
            "spec": claim.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
        if cp
            .api
            .create(STS_COMPONENT, &key_pvcs(), Some(&ns), pvc)
            .is_some()
        {
            cp.events.record(
                STS_COMPONENT,
                None,
                set,
                "Normal",
                "SuccessfulCreate",
                &format!(
                    "create Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success"
                ),
            );
        }
    }
    let extra = BTreeMap::from([
        ("controller-revision-hash".to_string(), revision.to_string()),
        (
            "statefulset.kubernetes.io/pod-name".to_string(),
            pod_name.clone(),
        ),
        (
            "apps.kubernetes.io/pod-index".to_string(),
            ordinal.to_string(),
        ),
    ]);
    let mut pod = pod_from_template(set, template, &pod_name, &extra);
    pod["spec"]["hostname"] = json!(pod_name);
    if let Some(service) = str_at(set, &["spec", "serviceName"]) {
        pod["spec"]["subdomain"] = json!(service);
    }
    let mut volumes = at(&pod, &["spec", "volumes"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for claim_volume in claim_volumes {
        if !volumes
            .iter()
            .any(|v| v.get("name") == claim_volume.get("name"))
        {
            volumes.push(claim_volume);
        }
    }
    if !volumes.is_empty() {
        pod["spec"]["volumes"] = Value::Array(volumes);
    }
    if cp
        .api
        .create(STS_COMPONENT, &key_pods(), Some(&ns), pod)
        .is_some()
    {
        cp.events.record(
            STS_COMPONENT,
            None,
            set,
            "Normal",
            "SuccessfulCreate",
            &format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
        );
    }
}

fn write_status_if_changed(
    cp: &mut ControlPlane,
    component: &str,
    key: &super::ResourceKey,
    obj: &Value,
    status: Value,
) {
    let current = obj.get("status").cloned().unwrap_or_else(|| json!({}));
    let changed = status
        .as_object()
        .is_some_and(|fields| fields.iter().any(|(k, v)| current.get(k) != Some(v)));
    if changed {
        let ns = namespace(obj);
        cp.api.merge_patch_status(
            component,
            key,
            (!ns.is_empty()).then_some(ns),
            name(obj),
            json!({"status": status}),
        );
    }
}

/// Kubernetes' random pod-name suffix alphabet (no vowels, no confusable digits).
pub(crate) fn random_suffix(cp: &mut ControlPlane) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| char::from(ALPHABET[cp.rng.below(ALPHABET.len() as u64) as usize]))
        .collect()
}

/// `25%` or `1` of `total`, rounded up (surge) or down (unavailable).
fn scaled(value: Option<&Value>, total: u32, round_up: bool, default_percent: u32) -> u32 {
    let percent = |p: u32| {
        let scaled = total * p;
        if round_up {
            scaled.div_ceil(100)
        } else {
            scaled / 100
        }
    };
    match value {
        Some(Value::Number(n)) => u32::try_from(n.as_u64().unwrap_or(0)).unwrap_or(0),
        Some(Value::String(s)) => s
            .trim_end_matches('%')
            .parse()
            .map(percent)
            .unwrap_or_else(|_| percent(default_percent)),
        _ => percent(default_percent),
    }
}

pub(crate) fn reconcile_deployments(cp: &mut ControlPlane, snap: &Snapshot) {
    for deployment in snap.deployments.iter() {
        if !is_terminating(deployment) {
            reconcile_deployment(cp, snap, deployment);
        }
    }
}

fn reconcile_deployment(cp: &mut ControlPlane, snap: &Snapshot, deployment: &Value) {
    let now = cp.now();
    let ns = namespace(deployment).to_string();
    let deploy_name = name(deployment).to_string();
    let replicas =
        u32::try_from(i64_at(deployment, &["spec", "replicas"]).unwrap_or(1)).unwrap_or(0);
    let template = at(deployment, &["spec", "template"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = stable_hash(&template);
    let selector = at(deployment, &["spec", "selector"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    let pods: Vec<&Value> = owned_pods(snap, deployment)
        .into_iter()
        .filter(|p| !is_terminating(p) && label_selector_matches(&selector, &labels(p)))
        .collect();

    for pod in pods.iter().filter(|p| finished(p)) {
        cp.api
            .delete(DEPLOY_COMPONENT, &key_pods(), Some(&ns), name(pod));
    }
    let alive: Vec<&Value> = pods.iter().copied().filter(|p| !finished(p)).collect();
    let is_new = |p: &Value| labels(p).get("pod-template-hash") == Some(&hash);
    let (new, old): (Vec<&Value>, Vec<&Value>) = alive.iter().copied().partition(|p| is_new(p));
    let ready_total = alive.iter().filter(|p| pod_is_ready(p)).count() as u32;
    let new_ready = new.iter().filter(|p| pod_is_ready(p)).count() as u32;

    let recreate = str_at(deployment, &["spec", "strategy", "type"]) == Some("Recreate");
    let surge = scaled(
        at(
            deployment,
            &["spec", "strategy", "rollingUpdate", "maxSurge"],
        ),
        replicas,
        true,
        25,
    );
    let max_unavailable = scaled(
        at(
            deployment,
            &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
        ),
        replicas,
        false,
        25,
    );
    // Kubernetes refuses surge and unavailability both zero; make progress possible.
    let surge = if surge == 0 && max_unavailable == 0 {
        1
    } else {
        surge
    };

    let total = alive.len() as u32;
    let mut to_create = 0;
    let mut to_delete: Vec<&Value> = Vec::new();
    if recreate {
        if !old.is_empty() {
            to_delete.extend(old.iter().copied());
        } else {
            to_create = replicas.saturating_sub(new.len() as u32);
        }
    } else {
        let want_new = replicas.saturating_sub(new.len() as u32);
        to_create = want_new.min((replicas + surge).saturating_sub(total));
        // Old pods go once enough others are ready: not-ready ones first.
        let min_available = replicas.saturating_sub(max_unavailable);
        let mut old_sorted = old.clone();
        old_sorted.sort_by_key(|p| (pod_is_ready(p), name(p).to_string()));
        let mut available = ready_total;
        let mut remaining = total;
        for pod in old_sorted {
            let ready = pod_is_ready(pod);
            let after = if ready {
                available.saturating_sub(1)
            } else {
                available
            };
            let excess = remaining > replicas || new_ready > 0 || !ready;
            if (after >= min_available || !ready) && excess {
                to_delete.push(pod);
                available = after;
                remaining -= 1;
            }
        }
    }
    // Scale down surplus new pods (not-ready first, then by name).
    if new.len() as u32 > replicas {
        let mut surplus = new.clone();
        surplus.sort_by_key(|p| (pod_is_ready(p), std::cmp::Reverse(name(p).to_string())));
        to_delete.extend(surplus.into_iter().take(new.len() - replicas as usize));
    }
    for pod in to_delete {
        cp.api
            .delete(DEPLOY_COMPONENT, &key_pods(), Some(&ns), name(pod));
        cp.events.record(
            DEPLOY_COMPONENT,
            None,
            deployment,
            "Normal",
            "SuccessfulDelete",
            &format!("Deleted pod: {}", name(pod)),
        );
    }
    for _ in 0..to_create {
        let pod_name = format!("{deploy_name}-{hash}-{}", random_suffix(cp));
        let extra = BTreeMap::from([("pod-template-hash".to_string(), hash.clone())]);
        let pod = pod_from_template(deployment, &template, &pod_name, &extra);
        if cp
            .api
            .create(DEPLOY_COMPONENT, &key_pods(), Some(&ns), pod)
            .is_some()
        {
            cp.events.record(
                DEPLOY_COMPONENT,
                None,
                deployment,
                "Normal",
                "SuccessfulCreate",
                &format!("Created pod: {pod_name}"),
            );
        }
    }

    let available = ready_total >= replicas.saturating_sub(max_unavailable);
    let stamp = super::format_time(now);
    let mut conditions = at(deployment, &["status", "conditions"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (status_word, reason, message) = if available {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    crate::object::upsert_condition(
        &mut conditions,
        "Available",
        status_word,
        Some(reason),
        Some(message),
        &stamp,
    );
    for condition in &mut conditions {
        if let Some(fields) = condition.as_object_mut() {
            fields.remove("lastProbeTime");
        }
    }
    let status = json!({
        "observedGeneration": i64_at(deployment, &["metadata", "generation"]).unwrap_or(1),
        "replicas": total,
        "updatedReplicas": new.len(),
        "readyReplicas": ready_total,
        "availableReplicas": ready_total,
        "unavailableReplicas": replicas.saturating_sub(ready_total),
        "conditions": conditions,
    });
    write_status_if_changed(cp, DEPLOY_COMPONENT, &key_deployments(), deployment, status);
}

/// Binds every pending PVC at once (a dynamic provisioner with `Immediate` binding).
pub(crate) fn bind_claims(cp: &mut ControlPlane, snap: &Snapshot) {
    for claim in snap.pvcs.iter() {
        if str_at(claim, &["status", "phase"]) == Some("Bound") || is_terminating(claim) {
            continue;
        }
        let ns = namespace(claim).to_string();
        let claim_name = name(claim).to_string();
        let volume = format!("pvc-{}", uid(claim));
        if str_at(claim, &["spec", "volumeName"]).is_none() {
            cp.api.merge_patch(
                PV_COMPONENT,
                &key_pvcs(),
                Some(&ns),
                &claim_name,
                json!({"spec": {"volumeName": volume}}),
            );
        }
        let storage = at(claim, &["spec", "resources", "requests", "storage"])
            .cloned()
            .unwrap_or_else(|| json!("1Gi"));
        let access = at(claim, &["spec", "accessModes"])
            .cloned()
            .unwrap_or_else(|| json!(["ReadWriteOnce"]));
        cp.api.merge_patch_status(PV_COMPONENT, &key_pvcs(), Some(&ns), &claim_name, json!({"status": {"phase": "Bound", "accessModes": access, "capacity": {"storage": storage}}}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_and_unavailable_scale_like_kubernetes() {
        assert_eq!(scaled(None, 1, true, 25), 1);
        assert_eq!(scaled(None, 1, false, 25), 0);
        assert_eq!(scaled(None, 8, false, 25), 2);
        assert_eq!(scaled(Some(&json!("50%")), 3, true, 25), 2);
        assert_eq!(scaled(Some(&json!(2)), 3, true, 25), 2);
    }
}
