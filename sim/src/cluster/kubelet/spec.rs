//! What a container is given from its pod spec: command and args, volumes (PVC-backed
//! or pod-lived) and the environment with Secret, ConfigMap and fieldRef references
//! resolved.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{COMPONENT, PodRuntime};
use crate::cluster::{ControlPlane, key_configmaps, key_pvcs, key_secrets};
use crate::object::{at, labels, name, namespace, str_at, string_map, uid};
use crate::pod::Volume;

pub(super) fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// PVC-backed volumes are keyed by the claim's uid (they outlive the pod; a deleted and
/// re-created claim is a fresh disk); every other volume lives as long as the pod.
pub(super) fn resolve_volumes(
    cp: &mut ControlPlane,
    runtime: &PodRuntime,
    pod: &Value,
) -> Option<BTreeMap<String, Volume>> {
    let mut volumes = BTreeMap::new();
    for volume in at(pod, &["spec", "volumes"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let volume_name = str_at(&volume, &["name"]).unwrap_or_default().to_string();
        let ephemeral_claim = ephemeral_claim(cp, pod, &volume_name, &volume);
        let claim = str_at(&volume, &["persistentVolumeClaim", "claimName"])
            .map(str::to_string)
            .or(ephemeral_claim);
        let key = match claim.as_deref() {
            Some(claim) => match cp.api.get(&key_pvcs(), Some(&runtime.namespace), claim) {
                Some(pvc) => format!("pvc:{}/{claim}:{}", runtime.namespace, uid(&pvc)),
                None => {
                    let message = format!(
                        "Unable to attach or mount volumes: unmounted volumes=[{volume_name}]: persistentvolumeclaim \"{claim}\" not found"
                    );
                    cp.events.record(
                        COMPONENT,
                        Some(&runtime.node),
                        &runtime.pod_ref,
                        "Warning",
                        "FailedMount",
                        &message,
                    );
                    return None;
                }
            },
            None => format!("pod:{}:{volume_name}", runtime.uid),
        };
        let disk = cp.kubelet.volumes.entry(key).or_default().clone();
        volumes.insert(volume_name, disk);
    }
    Some(volumes)
}

/// A generic ephemeral volume (`ephemeral.volumeClaimTemplate`): the PVC
/// `<pod>-<volume>`, owned by the pod so that it goes with it. In a cluster the
/// ephemeral volume controller creates it and the kubelet waits for it; the simulation's
/// kubelet does both. Returns the claim's name; `None` for other volumes.
fn ephemeral_claim(
    cp: &mut ControlPlane,
    pod: &Value,
    volume_name: &str,
    volume: &Value,
) -> Option<String> {
    let template = at(volume, &["ephemeral", "volumeClaimTemplate"])?;
    let claim = format!("{}-{volume_name}", name(pod));
    let ns = namespace(pod);
    if cp.api.get(&key_pvcs(), Some(ns), &claim).is_none() {
        let mut pvc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim,
                "namespace": ns,
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": name(pod),
                    "uid": uid(pod),
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "spec": template.get("spec").cloned().unwrap_or(Value::Null),
        });
        if let (Some(template_labels), Some(metadata)) = (
            at(template, &["metadata", "labels"]),
            pvc.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            metadata.insert("labels".to_string(), template_labels.clone());
        }
        cp.api.create(COMPONENT, &key_pvcs(), Some(ns), pvc);
    }
    Some(claim)
}

/// Container env with `valueFrom` and `envFrom` resolved (Secrets, ConfigMaps,
/// fieldRefs); unresolvable references are left out, as an optional reference would be.
pub(super) fn resolve_env(
    cp: &ControlPlane,
    pod: &Value,
    spec: &Value,
    node_ip: &str,
) -> BTreeMap<String, String> {
    let ns = namespace(pod);
    let mut env = BTreeMap::new();
    let secret_data = |secret: &str| -> BTreeMap<String, String> {
        let Some(obj) = cp.api.get(&key_secrets(), Some(ns), secret) else {
            return BTreeMap::new();
        };
        let mut data: BTreeMap<String, String> = obj
            .get("data")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        let bytes: k8s_openapi::ByteString =
                            serde_json::from_value(v.clone()).ok()?;
                        Some((k.clone(), String::from_utf8_lossy(&bytes.0).into_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        data.extend(string_map(obj.get("stringData")));
        data
    };
    let config_data = |config: &str| -> BTreeMap<String, String> {
        cp.api
            .get(&key_configmaps(), Some(ns), config)
            .map(|obj| string_map(obj.get("data")))
            .unwrap_or_default()
    };
    for source in spec
        .get("envFrom")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let prefix = str_at(&source, &["prefix"]).unwrap_or_default();
        let data = if let Some(secret) = str_at(&source, &["secretRef", "name"]) {
            secret_data(secret)
        } else if let Some(config) = str_at(&source, &["configMapRef", "name"]) {
            config_data(config)
        } else {
            BTreeMap::new()
        };
        env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
    }
    for var in spec
        .get("env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let Some(var_name) = str_at(&var, &["name"]) else {
            continue;
        };
        let value = if let Some(value) = str_at(&var, &["value"]) {
            Some(value.to_string())
        } else if let Some(secret) = at(&var, &["valueFrom", "secretKeyRef"]) {
            secret_data(str_at(secret, &["name"]).unwrap_or_default())
                .remove(str_at(secret, &["key"]).unwrap_or_default())
        } else if let Some(config) = at(&var, &["valueFrom", "configMapKeyRef"]) {
            config_data(str_at(config, &["name"]).unwrap_or_default())
                .remove(str_at(config, &["key"]).unwrap_or_default())
        } else if let Some(path) = str_at(&var, &["valueFrom", "fieldRef", "fieldPath"]) {
            field_ref(pod, path, node_ip)
        } else {
            None
        };
        if let Some(value) = value {
            env.insert(var_name.to_string(), value);
        }
    }
    env
}

fn field_ref(pod: &Value, path: &str, node_ip: &str) -> Option<String> {
    match path {
        "metadata.name" => Some(name(pod).to_string()),
        "metadata.namespace" => Some(namespace(pod).to_string()),
        "metadata.uid" => Some(uid(pod).to_string()),
        "spec.nodeName" => str_at(pod, &["spec", "nodeName"]).map(str::to_string),
        "spec.serviceAccountName" => {
            str_at(pod, &["spec", "serviceAccountName"]).map(str::to_string)
        }
        "status.hostIP" => Some(node_ip.to_string()),
        "status.podIP" => str_at(pod, &["status", "podIP"]).map(str::to_string),
        other => {
            let key = other
                .strip_prefix("metadata.labels['")?
                .strip_suffix("']")?;
            labels(pod).get(key).cloned()
        }
    }
}
