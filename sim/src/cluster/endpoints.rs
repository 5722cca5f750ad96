//! Service -> Endpoints: every Service with a selector gets an Endpoints object of the
//! same name listing its pods, Ready ones under `addresses`, the rest under
//! `notReadyAddresses` (or all under `addresses` with `publishNotReadyAddresses`).
//! Addresses are ordered by pod name so that the object is deterministic.

use serde_json::{Value, json};

use super::{ControlPlane, Snapshot, key_endpoints};
use crate::object::{
    at, is_terminating, labels, map_selector_matches, name, namespace, pod_is_ready, str_at,
    string_map, uid,
};

const COMPONENT: &str = "endpoint-controller";

/// A Service port's target on one pod: a number, or a container port's name.
fn target_port(service_port: &Value, pod: &Value) -> Option<i64> {
    match service_port.get("targetPort") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(port_name)) => at(pod, &["spec", "containers"])?
            .as_array()?
            .iter()
            .find_map(|c| {
                c.get("ports")?
                    .as_array()?
                    .iter()
                    .find(|p| str_at(p, &["name"]) == Some(port_name.as_str()))?
                    .get("containerPort")?
                    .as_i64()
            }),
        _ => service_port.get("port").and_then(Value::as_i64),
    }
}

/// The desired `subsets` of a Service's Endpoints.
pub(crate) fn desired_subsets(service: &Value, pods: &[Value]) -> Vec<Value> {
    let selector = string_map(at(service, &["spec", "selector"]));
    let publish_not_ready = at(service, &["spec", "publishNotReadyAddresses"])
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let service_name = name(service);
    let mut members: Vec<&Value> = pods
        .iter()
        .filter(|p| namespace(p) == namespace(service) && !is_terminating(p))
        .filter(|p| str_at(p, &["status", "podIP"]).is_some_and(|ip| !ip.is_empty()))
        .filter(|p| map_selector_matches(&selector, &labels(p)))
        .collect();
    members.sort_by_key(|p| name(p).to_string());
    let Some(first) = members.first() else {
        return Vec::new();
    };
    let service_ports = at(service, &["spec", "ports"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ports: Vec<Value> = service_ports
        .iter()
        .filter_map(|sp| {
            let mut port = json!({"port": target_port(sp, first)?, "protocol": str_at(sp, &["protocol"]).unwrap_or("TCP")});
            if let Some(port_name) = str_at(sp, &["name"]) {
                port["name"] = json!(port_name);
            }
            Some(port)
        })
        .collect();
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for pod in members {
        let mut address = json!({
            "ip": str_at(pod, &["status", "podIP"]),
            "targetRef": {"kind": "Pod", "name": name(pod), "namespace": namespace(pod), "uid": uid(pod)},
        });
        if let Some(node) = str_at(pod, &["spec", "nodeName"]) {
            address["nodeName"] = json!(node);
        }
        if str_at(pod, &["spec", "subdomain"]) == Some(service_name)
            && let Some(hostname) = str_at(pod, &["spec", "hostname"])
        {
            address["hostname"] = json!(hostname);
        }
        if pod_is_ready(pod) || publish_not_ready {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    let mut subset = json!({"ports": ports});
    if !ready.is_empty() {
        subset["addresses"] = Value::Array(ready);
    }
    if !not_ready.is_empty() {
        subset["notReadyAddresses"] = Value::Array(not_ready);
    }
    vec![subset]
}

pub(crate) fn reconcile(cp: &mut ControlPlane, snap: &Snapshot) {
    for service in snap.services.iter() {
        if at(service, &["spec", "selector"])
            .and_then(Value::as_object)
            .is_none_or(|s| s.is_empty())
            || is_terminating(service)
        {
            // Services without a selector have hand-managed Endpoints.
            continue;
        }
        let ns = namespace(service).to_string();
        let subsets = desired_subsets(service, &snap.pods);
        let existing = snap
            .endpoints
            .iter()
            .find(|e| namespace(e) == ns && name(e) == name(service));
        match existing {
            Some(endpoints) => {
                let current = endpoints
                    .get("subsets")
                    .cloned()
                    .unwrap_or_else(|| json!([]));
                if current != Value::Array(subsets.clone()) {
                    cp.api.merge_patch(
                        COMPONENT,
                        &key_endpoints(),
                        Some(&ns),
                        name(service),
                        json!({"subsets": subsets}),
                    );
                }
            }
            None => {
                let endpoints = json!({
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name(service), "namespace": ns, "labels": labels(service)},
                    "subsets": subsets,
                });
                cp.api
                    .create(COMPONENT, &key_endpoints(), Some(&ns), endpoints);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, site: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns", "uid": name, "labels": {"app": "db", "site": site}},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "mysql", "containerPort": 3306}]}]},
               "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn endpoints_split_ready_and_not_ready_and_resolve_named_ports() {
        let service = json!({"metadata": {"name": "db", "namespace": "ns"},
            "spec": {"selector": {"app": "db"}, "ports": [{"name": "sql", "port": 3306, "targetPort": "mysql"}]}});
        let pods = vec![
            pod("db-1", "192.168.0.4", false, "pdx"),
            pod("db-0", "192.168.0.3", true, "iad"),
        ];
        let subsets = desired_subsets(&service, &pods);
        assert_eq!(subsets[0]["addresses"][0]["ip"], "192.168.0.3");
        assert_eq!(subsets[0]["notReadyAddresses"][0]["ip"], "192.168.0.4");
        assert_eq!(
            subsets[0]["ports"][0],
            json!({"name": "sql", "port": 3306, "protocol": "TCP"})
        );
        let narrow = json!({"metadata": {"name": "db", "namespace": "ns"},
            "spec": {"selector": {"app": "db", "site": "iad"}, "ports": [{"port": 3306}]}});
        let subsets = desired_subsets(&narrow, &pods);
        assert_eq!(subsets[0]["addresses"].as_array().map(Vec::len), Some(1));
        assert!(subsets[0].get("notReadyAddresses").is_none());
        let nothing = json!({"metadata": {"name": "x", "namespace": "ns"}, "spec": {"selector": {"app": "none"}}});
        assert!(desired_subsets(&nothing, &pods).is_empty());
    }
}
