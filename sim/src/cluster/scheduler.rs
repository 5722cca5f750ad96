//! The scheduler: binds pending pods to a feasible node (Ready, schedulable, taints
//! tolerated, nodeSelector and required node affinity matched), choosing among equally
//! feasible nodes with the world's seeded generator. A pod that fits nowhere stays
//! Pending with PodScheduled=False/Unschedulable and a FailedScheduling event whose
//! message counts the reasons, as kube-scheduler words it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ControlPlane, Snapshot, format_time, key_pods};
use crate::object::{
    at, condition_status, expression_matches, is_terminating, labels, map_selector_matches, name,
    namespace, str_at, string_map, uid, upsert_condition,
};

const COMPONENT: &str = "default-scheduler";

/// Re-announce a still-unschedulable pod at most this often.
const FAILED_SCHEDULING_REPEAT_SECONDS: i64 = 60;

#[derive(Default)]
pub(crate) struct Scheduler {
    /// Pod uid -> (last FailedScheduling message, when it was announced).
    unschedulable: BTreeMap<String, (String, i64)>,
}

/// Why a node cannot take a pod (kube-scheduler's wording).
fn node_rejects(node: &Value, pod: &Value) -> Option<String> {
    let tolerations = at(pod, &["spec", "tolerations"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let taints = at(node, &["spec", "taints"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let unschedulable = at(node, &["spec", "unschedulable"])
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if unschedulable
        && !tolerates(
            &tolerations,
            "node.kubernetes.io/unschedulable",
            None,
            "NoSchedule",
        )
    {
        return Some("node(s) were unschedulable".to_string());
    }
    if condition_status(node, "Ready") != Some("True") {
        return Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_string());
    }
    for taint in &taints {
        let effect = str_at(taint, &["effect"]).unwrap_or_default();
        if effect == "PreferNoSchedule" {
            continue;
        }
        let key = str_at(taint, &["key"]).unwrap_or_default();
        let value = str_at(taint, &["value"]);
        if !tolerates(&tolerations, key, value, effect) {
            return Some(format!(
                "node(s) had untolerated taint {{{key}: {}}}",
                value.unwrap_or_default()
            ));
        }
    }
    let node_labels = labels(node);
    let selector = string_map(at(pod, &["spec", "nodeSelector"]));
    let terms = at(
        pod,
        &[
            "spec",
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
            "nodeSelectorTerms",
        ],
    )
    .and_then(Value::as_array);
    let affinity_ok = terms.is_none_or(|terms| {
        terms.iter().any(|term| {
            let labels_ok = term
                .get("matchExpressions")
                .and_then(Value::as_array)
                .is_none_or(|exprs| {
                    exprs
                        .iter()
                        .all(|e| expression_matches(e, |k| node_labels.get(k).map(String::as_str)))
                });
            let fields_ok = term
                .get("matchFields")
                .and_then(Value::as_array)
                .is_none_or(|exprs| {
                    exprs.iter().all(|e| {
                        expression_matches(e, |k| (k == "metadata.name").then(|| name(node)))
                    })
                });
            labels_ok && fields_ok
        })
    });
    if !map_selector_matches(&selector, &node_labels) || !affinity_ok {
        return Some("node(s) didn't match Pod's node affinity/selector".to_string());
    }
    None
}

fn tolerates(tolerations: &[Value], key: &str, value: Option<&str>, effect: &str) -> bool {
    tolerations.iter().any(|t| {
        let t_key = str_at(t, &["key"]).unwrap_or_default();
        let t_effect = str_at(t, &["effect"]).unwrap_or_default();
        let operator = str_at(t, &["operator"]).unwrap_or("Equal");
        let key_ok = t_key.is_empty() && operator == "Exists" || t_key == key;
        let value_ok = operator == "Exists"
            || str_at(t, &["value"]).unwrap_or_default() == value.unwrap_or_default();
        let effect_ok = t_effect.is_empty() || t_effect == effect;
        key_ok && value_ok && effect_ok
    })
}

/// kube-scheduler's summary: "0/3 nodes are available: 1 node(s) were unschedulable, 2
/// node(s) didn't match Pod's node affinity/selector."
fn unschedulable_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = reasons
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

pub(crate) fn reconcile(cp: &mut ControlPlane, snap: &Snapshot) {
    let now = cp.now();
    let stamp = format_time(now);
    let mut live_uids = Vec::new();
    for pod in snap.pods.iter() {
        let bound = str_at(pod, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
        if bound || is_terminating(pod) {
            continue;
        }
        live_uids.push(uid(pod).to_string());
        let mut feasible = Vec::new();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for node in snap.nodes.iter() {
            match node_rejects(node, pod) {
                None => feasible.push(name(node).to_string()),
                Some(reason) => *reasons.entry(reason).or_default() += 1,
            }
        }
        let ns = namespace(pod).to_string();
        let pod_name = name(pod).to_string();
        if feasible.is_empty() {
            let message = unschedulable_message(snap.nodes.len(), &reasons);
            let mut conditions = at(pod, &["status", "conditions"])
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let before = conditions.clone();
            upsert_condition(
                &mut conditions,
                "PodScheduled",
                "False",
                Some("Unschedulable"),
                Some(&message),
                &stamp,
            );
            if conditions != before || str_at(pod, &["status", "phase"]).is_none() {
                cp.api.merge_patch_status(
                    COMPONENT,
                    &key_pods(),
                    Some(&ns),
                    &pod_name,
                    json!({"status": {"phase": "Pending", "conditions": conditions}}),
                );
            }
            let announce = match cp.scheduler.unschedulable.get(uid(pod)) {
                Some((last, at_second)) => {
                    *last != message
                        || now.as_second() - at_second >= FAILED_SCHEDULING_REPEAT_SECONDS
                }
                None => true,
            };
            if announce {
                cp.events.record(
                    COMPONENT,
                    None,
                    pod,
                    "Warning",
                    "FailedScheduling",
                    &message,
                );
                cp.scheduler
                    .unschedulable
                    .insert(uid(pod).to_string(), (message, now.as_second()));
            }
            continue;
        }
        // kube-scheduler scores nodes and breaks ties at random; every feasible node
        // scores alike here (no resource accounting), so the choice is the seeded tie-break.
        let choice = cp.rng.below(feasible.len() as u64) as usize;
        let node = feasible[choice].clone();
        if cp
            .api
            .merge_patch(
                COMPONENT,
                &key_pods(),
                Some(&ns),
                &pod_name,
                json!({"spec": {"nodeName": node}}),
            )
            .is_none()
        {
            continue;
        }
        let mut conditions = at(pod, &["status", "conditions"])
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        upsert_condition(&mut conditions, "PodScheduled", "True", None, None, &stamp);
        cp.api.merge_patch_status(
            COMPONENT,
            &key_pods(),
            Some(&ns),
            &pod_name,
            json!({"status": {"phase": "Pending", "conditions": conditions}}),
        );
        cp.scheduler.unschedulable.remove(uid(pod));
        cp.events.record(
            COMPONENT,
            None,
            pod,
            "Normal",
            "Scheduled",
            &format!("Successfully assigned {ns}/{pod_name} to {node}"),
        );
    }
    cp.scheduler
        .unschedulable
        .retain(|uid, _| live_uids.contains(uid));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: Value, unschedulable: bool, ready: &str, taints: Value) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"unschedulable": unschedulable, "taints": taints},
               "status": {"conditions": [{"type": "Ready", "status": ready}]}})
    }

    #[test]
    fn nodes_reject_pods_for_kubernetes_reasons() {
        let iad = node(
            json!({"topology.kubernetes.io/zone": "zone-iad"}),
            false,
            "True",
            json!([]),
        );
        let plain = json!({"spec": {}});
        assert_eq!(node_rejects(&iad, &plain), None);
        let wants_pdx =
            json!({"spec": {"nodeSelector": {"topology.kubernetes.io/zone": "zone-pdx"}}});
        assert_eq!(
            node_rejects(&iad, &wants_pdx).as_deref(),
            Some("node(s) didn't match Pod's node affinity/selector")
        );
        let affinity_iad = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-iad"]}]}]}}}}});
        assert_eq!(node_rejects(&iad, &affinity_iad), None);
        let cordoned = node(json!({}), true, "True", json!([]));
        assert_eq!(
            node_rejects(&cordoned, &plain).as_deref(),
            Some("node(s) were unschedulable")
        );
        let not_ready = node(json!({}), false, "Unknown", json!([]));
        assert!(node_rejects(&not_ready, &plain).is_some());
        let tainted = node(
            json!({}),
            false,
            "True",
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        assert!(node_rejects(&tainted, &plain).is_some());
        let tolerant = json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}});
        assert_eq!(node_rejects(&tainted, &tolerant), None);
        let tolerates_all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(node_rejects(&cordoned, &tolerates_all), None);
    }

    #[test]
    fn unschedulable_message_counts_reasons() {
        let reasons = BTreeMap::from([
            (
                "node(s) didn't match Pod's node affinity/selector".to_string(),
                2,
            ),
            ("node(s) were unschedulable".to_string(), 1),
        ]);
        assert!(unschedulable_message(3, &reasons).starts_with(
            "0/3 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable."
        ));
    }
}
