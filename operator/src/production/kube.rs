//! Kubernetes writes: server-side apply of children under the single field manager
//! `bloodraven`, skipped when the cached object already says what we would write; the
//! status merge patch; the pod role label. Reads come from reflector caches, never
//! from a GET in a loop.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};

use crate::api::{MysqlFailoverGroup, MysqlFailoverGroupStatus, ROLE_LABEL};
use crate::children::prune::ExistingChild;
use crate::children::{DesiredObject, FIELD_MANAGER};
use crate::hash::fnv1a64;
use crate::metrics::Metrics;
use crate::rbac::ApiAccess;

/// Annotation holding a hash of what the operator last applied. The cache comparison
/// alone cannot see a field we *stopped* setting (server-side apply removes it, the
/// cached object still has it); a changed hash can.
pub const DESIRED_HASH_ANNOTATION: &str = "bloodraven.shipstream.io/desired-hash";

const APPLY: &[&str] = &["create", "patch"];
/// Children the spec no longer asks for are deleted (`children::prune`).
const APPLY_DELETE: &[&str] = &["create", "patch", "delete"];

/// What this module writes (see `crate::rbac`). Server-side apply is a PATCH, and the
/// API server authorises one that creates the object as `create` too. Every child kind
/// `children::build` returns must be here (a test in `crate::rbac` checks it).
pub const API_ACCESS: &[ApiAccess] = &[
    ApiAccess::watched(
        "",
        "services",
        APPLY_DELETE,
        "children: MySQL and Dragonfly Services (headless, per-site, app-facing)",
    ),
    ApiAccess::watched(
        "apps",
        "statefulsets",
        APPLY_DELETE,
        "children: one mysqld and one Dragonfly StatefulSet per site",
    ),
    ApiAccess::watched(
        "policy",
        "poddisruptionbudgets",
        APPLY_DELETE,
        "children: one MySQL and one Dragonfly PodDisruptionBudget per site",
    ),
    ApiAccess::watched(
        "",
        "serviceaccounts",
        APPLY,
        "children: the sidecars' and the backup Jobs' ServiceAccounts",
    ),
    ApiAccess::watched(
        "batch",
        "cronjobs",
        APPLY_DELETE,
        "children: the backup and verification CronJobs of each scheduled profile",
    ),
    ApiAccess::watched(
        "rbac.authorization.k8s.io",
        "roles",
        APPLY,
        "children: the sidecars' Role (writer Lease only) and the backup Jobs' Role",
    ),
    ApiAccess::watched(
        "rbac.authorization.k8s.io",
        "rolebindings",
        APPLY,
        "children: the sidecars' and the backup Jobs' RoleBindings",
    ),
    ApiAccess::watched(
        "coordination.k8s.io",
        "leases",
        APPLY,
        "children: the writer Lease",
    ),
    ApiAccess::watched(
        "externaldns.k8s.io",
        "dnsendpoints",
        APPLY_DELETE,
        "children: the DNSEndpoint (UpdateDns moves it)",
    ),
    ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlfailovergroups/status",
        &["patch"],
        "the status, one writer",
    ),
    ApiAccess::watched(
        "",
        "pods",
        &["patch"],
        "shipstream.io/role on the mysqld pods; dragonfly-role and dragonfly-traffic on the Dragonfly pods",
    ),
    ApiAccess::watched(
        "",
        "pods",
        &["delete"],
        "the Dragonfly rollout replaces one site's pod at a time (OnDelete StatefulSets)",
    ),
];

/// A Kubernetes write that failed, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum KubeWriteError {
    #[error("server-side apply of {object} failed: {source}")]
    Apply {
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("status patch of MysqlFailoverGroup {namespace}/{name} failed: {source}")]
    Status {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot serialize the status of MysqlFailoverGroup {namespace}/{name}: {source}")]
    SerializeStatus {
        namespace: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("deleting {object}, which the spec no longer asks for, failed: {source}")]
    Delete {
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("setting {ROLE_LABEL}={role} on pod {namespace}/{name} failed: {source}")]
    Relabel {
        namespace: String,
        name: String,
        role: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("labelling Dragonfly pod {namespace}/{name} role={role} traffic={traffic}: {source}")]
    DragonflyLabels {
        namespace: String,
        name: String,
        role: String,
        traffic: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("deleting Dragonfly pod {namespace}/{name} for the rollout: {source}")]
    DragonflyPodDelete {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// What the cache holds for a child, as JSON. The controller implements it over its
/// reflector stores; tests over a map.
pub trait ChildCache {
    fn cached(&self, object: &DesiredObject) -> Option<Value>;
}

/// A map from `(kind, namespace, name)` to the cached object.
#[derive(Debug, Clone, Default)]
pub struct MapCache(pub BTreeMap<(String, String, String), Value>);

impl MapCache {
    pub fn insert(&mut self, object: Value) {
        let field = |path: &[&str]| {
            path.iter()
                .try_fold(&object, |v, k| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let key = (
            field(&["kind"]),
            field(&["metadata", "namespace"]),
            field(&["metadata", "name"]),
        );
        self.0.insert(key, object);
    }
}

impl ChildCache for MapCache {
    fn cached(&self, object: &DesiredObject) -> Option<Value> {
        self.0
            .get(&(
                object.resource.kind.clone(),
                object.namespace.clone(),
                object.name.clone(),
            ))
            .cloned()
    }
}

/// The desired object with the hash annotation added: what is compared and applied.
pub fn with_desired_hash(object: &DesiredObject) -> Value {
    let mut body = object.body.clone();
    // FNV-1a is stable across processes and versions, so a new operator build does not
    // rewrite every child.
    let hash = format!("{:016x}", fnv1a64(body.to_string().as_bytes()));
    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(DESIRED_HASH_ANNOTATION.to_string(), Value::String(hash));
        }
    }
    body
}

/// Whether every field of `desired` has the same value in `actual`. The API server adds
/// defaults, status and metadata we never set: those are ignored. Lists must have the
/// same length and match element by element (server-side apply keeps our order).
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(key, value)| have.get(key).is_some_and(|h| is_subset(value, h))),
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        (Value::Number(want), Value::Number(have)) => want.as_f64() == have.as_f64(),
        _ => desired == actual,
    }
}

/// Pure: the body to apply, or `None` when the cache already holds it.
pub fn apply_needed(object: &DesiredObject, cached: Option<&Value>) -> Option<Value> {
    let body = with_desired_hash(object);
    match cached {
        Some(actual) if is_subset(&body, actual) => None,
        _ => Some(body),
    }
}

/// What one pass of [`apply_children`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// `Kind namespace/name` of every object written, in order.
    pub applied: Vec<String>,
    /// How many objects were already as desired.
    pub unchanged: usize,
}

/// Applies every desired object that differs from the cache, in order, with
/// server-side apply under [`FIELD_MANAGER`] (forced: the operator owns these fields
/// and takes them back from a manual edit). Stops at the first failure.
pub async fn apply_children(
    client: &Client,
    objects: &[DesiredObject],
    cache: &(dyn ChildCache + Sync),
) -> Result<ApplyReport, KubeWriteError> {
    let mut report = ApplyReport::default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for object in objects {
        let Some(body) = apply_needed(object, cache.cached(object).as_ref()) else {
            report.unchanged += 1;
            continue;
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &object.namespace, &object.resource);
        api.patch(&object.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|source| KubeWriteError::Apply {
                object: object.describe(),
                source: Box::new(source),
            })?;
        report.applied.push(object.describe());
    }
    Ok(report)
}

/// Deletes children the spec no longer asks for, each guarded by its uid (a child
/// deleted and recreated meanwhile is not touched) with background propagation (the
/// StatefulSet's pods follow through their ownerReferences). An object already gone
/// counts as deleted. Stops at the first failure; returns what was deleted.
pub async fn delete_children(
    client: &Client,
    children: &[&ExistingChild],
) -> Result<Vec<String>, KubeWriteError> {
    let mut deleted = Vec::new();
    for child in children {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &child.namespace, &child.resource);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(child.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&child.name, &params).await {
            Ok(_) => deleted.push(child.describe()),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                // Gone already, or replaced by a new object with another uid (which
                // the next pass judges on its own).
            }
            Err(source) => {
                return Err(KubeWriteError::Delete {
                    object: child.describe(),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(deleted)
}

/// A JSON merge patch (RFC 7386) that turns `old` into `new`: changed keys carry their
/// new value, removed keys `null`. Empty (`{}`) when nothing changed.
pub fn merge_patch(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(previous) if previous == value => {}
                    Some(previous @ Value::Object(_)) if value.is_object() => {
                        patch.insert(key.clone(), merge_patch(previous, value));
                    }
                    _ => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys() {
                if !new.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

/// Writes a group's status with a merge patch on `/status`, computed against
/// `group.status` (the status the controller decided from: the cache's, or its own last
/// write while the cache lags): nothing is sent when nothing changed, and a field that
/// became unset is removed (a plain merge patch of the new status would leave it
/// behind). Returns the written object's resourceVersion, `None` when nothing was sent.
/// A failed write is counted in `bloodraven_status_writes_dropped_total` and returned.
pub async fn patch_status(
    client: &Client,
    group: &MysqlFailoverGroup,
    new_status: &MysqlFailoverGroupStatus,
    metrics: &Metrics,
) -> Result<Option<String>, KubeWriteError> {
    let namespace = group.namespace().unwrap_or_default();
    let name = group.name_any();
    let serialize = |status: &MysqlFailoverGroupStatus| {
        serde_json::to_value(status).map_err(|source| KubeWriteError::SerializeStatus {
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })
    };
    let old = match &group.status {
        Some(status) => serialize(status)?,
        None => json!({}),
    };
    let patch = merge_patch(&old, &serialize(new_status)?);
    if patch.as_object().is_some_and(Map::is_empty) {
        return Ok(None);
    }
    let api: Api<MysqlFailoverGroup> = Api::namespaced(client.clone(), &namespace);
    match api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": patch })),
        )
        .await
    {
        Ok(written) => Ok(Some(written.resource_version().unwrap_or_default())),
        Err(source) => {
            metrics.status_write_dropped(&namespace, &name);
            Err(KubeWriteError::Status {
                namespace,
                name,
                source: Box::new(source),
            })
        }
    }
}

/// Pure: the merge patch that sets a pod's role label, or `None` when it already has it.
pub fn role_label_patch(pod: &Pod, role: &str) -> Option<Value> {
    if pod.labels().get(ROLE_LABEL).map(String::as_str) == Some(role) {
        return None;
    }
    Some(json!({ "metadata": { "labels": { ROLE_LABEL: role } } }))
}

/// Sets `shipstream.io/role` on a pod (merge patch: only that label changes, whoever
/// else owns the pod). Returns whether a write happened.
pub async fn set_pod_role(client: &Client, pod: &Pod, role: &str) -> Result<bool, KubeWriteError> {
    let Some(patch) = role_label_patch(pod, role) else {
        return Ok(false);
    };
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| KubeWriteError::Relabel {
            namespace,
            name,
            role: role.to_string(),
            source: Box::new(source),
        })?;
    Ok(true)
}

/// Sets a Dragonfly pod's `dragonfly-role` and `dragonfly-traffic` labels in one merge
/// patch (only those labels change). A missing pod is not an error when traffic is
/// being taken away: a new pod comes without labels and matches no Service.
pub async fn set_dragonfly_labels(
    client: &Client,
    namespace: &str,
    name: &str,
    role: &str,
    traffic: &str,
) -> Result<(), KubeWriteError> {
    let patch = serde_json::json!({"metadata": {"labels": {
        crate::api::DRAGONFLY_ROLE_LABEL: role,
        crate::api::DRAGONFLY_TRAFFIC_LABEL: traffic,
    }}});
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status))
            if status.code == 404
                && traffic != crate::children::dragonfly::DRAGONFLY_TRAFFIC_ENABLED =>
        {
            Ok(())
        }
        Err(source) => Err(KubeWriteError::DragonflyLabels {
            namespace: namespace.to_string(),
            name: name.to_string(),
            role: role.to_string(),
            traffic: traffic.to_string(),
            source: Box::new(source),
        }),
    }
}

/// Deletes a Dragonfly pod so that its StatefulSet (`OnDelete`) recreates it on the
/// current template. A pod already gone is not an error.
pub async fn delete_dragonfly_pod(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(), KubeWriteError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &kube::api::DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(KubeWriteError::DragonflyPodDelete {
            namespace: namespace.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        }),
    }
}

#[cfg(test)]
mod tests;
