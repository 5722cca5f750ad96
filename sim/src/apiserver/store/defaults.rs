//! Per-kind defaults and status resets on create: what the real registries'
//! PrepareForCreate and defaulting do that clients rely on (pod restart policy and
//! image pull policy, Service cluster IPs and target ports, StatefulSet strategy...).

use serde_json::{Value, json};

use super::State;
use crate::apiserver::registry::ResourceInfo;

impl State {
    /// Per-kind defaults and status resets on create (what the real registries'
    /// PrepareForCreate and defaulting do that clients rely on).
    pub(super) fn prepare_create(&mut self, info: &ResourceInfo, obj: &mut Value) {
        if (info.custom || (info.status_subresource && info.kind != "Node"))
            && let Value::Object(map) = obj
        {
            map.remove("status");
        }
        if info.custom {
            return;
        }
        match info.kind.as_str() {
            "Namespace" => {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
            }
            "Pod" => {
                obj["status"] = json!({"phase": "Pending"});
                let spec = &mut obj["spec"];
                default_field(spec, "restartPolicy", json!("Always"));
                default_field(spec, "dnsPolicy", json!("ClusterFirst"));
                default_field(spec, "schedulerName", json!("default-scheduler"));
                default_field(spec, "terminationGracePeriodSeconds", json!(30));
                default_field(spec, "serviceAccountName", json!("default"));
                for list in ["containers", "initContainers"] {
                    if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
                        for container in containers {
                            default_container(container);
                        }
                    }
                }
            }
            "Service" => {
                let spec = &mut obj["spec"];
                default_field(spec, "type", json!("ClusterIP"));
                default_field(spec, "sessionAffinity", json!("None"));
                let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
                if spec.get("clusterIP").is_none_or(Value::is_null) {
                    self.service_ips += 1;
                    let n = self.service_ips;
                    let ip = format!("10.96.{}.{}", (n / 254) % 256, n % 254 + 1);
                    spec["clusterIP"] = json!(ip);
                    spec["clusterIPs"] = json!([ip]);
                } else if !headless && spec.get("clusterIPs").is_none() {
                    let ip = spec["clusterIP"].clone();
                    spec["clusterIPs"] = json!([ip]);
                }
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports {
                        default_field(port, "protocol", json!("TCP"));
                        if port.get("targetPort").is_none() {
                            port["targetPort"] = port.get("port").cloned().unwrap_or(Value::Null);
                        }
                    }
                }
                obj["status"] = json!({"loadBalancer": {}});
            }
            "Deployment" | "StatefulSet" => {
                default_field(&mut obj["spec"], "replicas", json!(1));
                if info.kind == "StatefulSet" {
                    default_field(
                        &mut obj["spec"],
                        "podManagementPolicy",
                        json!("OrderedReady"),
                    );
                    default_field(
                        &mut obj["spec"],
                        "updateStrategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                    );
                }
            }
            "PersistentVolumeClaim" => {
                obj["status"] = json!({"phase": "Pending"});
            }
            _ => {}
        }
    }
}

fn default_field(obj: &mut Value, field: &str, value: Value) {
    if !obj.is_object() {
        *obj = json!({});
    }
    if obj.get(field).is_none_or(Value::is_null) {
        obj[field] = value;
    }
}

fn default_container(container: &mut Value) {
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let tag = image
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once(':'))
        .map(|(_, t)| t.to_string());
    let pull = match tag.as_deref() {
        None | Some("latest") => "Always",
        Some(_) => "IfNotPresent",
    };
    default_field(container, "imagePullPolicy", json!(pull));
    default_field(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    default_field(container, "terminationMessagePolicy", json!("File"));
    if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            default_field(port, "protocol", json!("TCP"));
        }
    }
}
