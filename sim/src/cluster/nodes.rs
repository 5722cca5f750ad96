//! Node lifecycle: a node is Ready while its kubelet can reach the API server; after
//! `node_monitor_grace` without contact it becomes Ready=Unknown, gets the
//! `unreachable` taints, and its pods are marked not ready (the node controller does
//! this live, which is what empties Service endpoints on a dead site). After
//! `unreachable_eviction` its pods are deleted; they stay Terminating until the
//! kubelet returns and confirms, exactly the StatefulSet at-most-one behaviour.
//! Cordoning is `spec.unschedulable`; this controller mirrors it as the
//! `node.kubernetes.io/unschedulable` taint.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{ControlPlane, NodeInfo, Snapshot, format_time, key_nodes, key_pods};
use crate::network::Network;
use crate::object::{
    at, condition_status, is_terminating, name, namespace, str_at, upsert_condition,
};

const COMPONENT: &str = "node-controller";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

#[derive(Default)]
pub(crate) struct NodeLifecycle {
    /// Node -> last time its kubelet reached the API server (simulated seconds).
    last_heard: BTreeMap<String, jiff::Timestamp>,
}

impl NodeLifecycle {
    pub(crate) fn kubelet_connected(node: &NodeInfo, net: &Network, api_host: &str) -> bool {
        !node.crashed && net.connected(&node.host, api_host)
    }
}

fn desired_taints(node: &Value, unschedulable: bool, unreachable: bool) -> Vec<Value> {
    let mut taints: Vec<Value> = at(node, &["spec", "taints"])
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter(|t| !matches!(str_at(t, &["key"]), Some(UNREACHABLE | UNSCHEDULABLE)))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let existing = |key: &str, effect: &str| {
        at(node, &["spec", "taints"])
            .and_then(Value::as_array)
            .and_then(|t| {
                t.iter()
                    .find(|t| {
                        str_at(t, &["key"]) == Some(key) && str_at(t, &["effect"]) == Some(effect)
                    })
                    .cloned()
            })
    };
    if unschedulable {
        taints.push(
            existing(UNSCHEDULABLE, "NoSchedule")
                .unwrap_or_else(|| json!({"key": UNSCHEDULABLE, "effect": "NoSchedule"})),
        );
    }
    if unreachable {
        for effect in ["NoSchedule", "NoExecute"] {
            taints.push(
                existing(UNREACHABLE, effect)
                    .unwrap_or_else(|| json!({"key": UNREACHABLE, "effect": effect})),
            );
        }
    }
    taints
}

pub(crate) fn reconcile(
    cp: &mut ControlPlane,
    snap: &Snapshot,
    net: &Network,
    nodes: &[NodeInfo],
    api_host: &str,
) {
    let now = cp.now();
    let stamp = format_time(now);
    for info in nodes {
        let Some(node) = snap.nodes.iter().find(|n| name(n) == info.name) else {
            continue;
        };
        let connected = NodeLifecycle::kubelet_connected(info, net, api_host);
        let last_heard = *cp.nodes.last_heard.entry(info.name.clone()).or_insert(now);
        let silent_for = if connected {
            jiff::SignedDuration::ZERO
        } else {
            now.duration_since(last_heard)
        };
        if connected {
            cp.nodes.last_heard.insert(info.name.clone(), now);
        }
        let grace = jiff::SignedDuration::try_from(cp.timings.node_monitor_grace)
            .unwrap_or(jiff::SignedDuration::MAX);
        let unreachable = !connected && silent_for >= grace;

        let unschedulable = at(node, &["spec", "unschedulable"])
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let taints = desired_taints(node, unschedulable, unreachable);
        let current_taints = at(node, &["spec", "taints"])
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if taints != current_taints {
            let taints_value = if taints.is_empty() {
                Value::Null
            } else {
                Value::Array(taints)
            };
            cp.api.merge_patch(
                COMPONENT,
                &key_nodes(),
                None,
                &info.name,
                json!({"spec": {"taints": taints_value}}),
            );
        }

        let was_ready = condition_status(node, "Ready") == Some("True");
        if connected || unreachable {
            let mut conditions = at(node, &["status", "conditions"])
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let before = conditions.clone();
            if connected {
                upsert_condition(
                    &mut conditions,
                    "Ready",
                    "True",
                    Some("KubeletReady"),
                    Some("kubelet is posting ready status"),
                    &stamp,
                );
            } else {
                upsert_condition(
                    &mut conditions,
                    "Ready",
                    "Unknown",
                    Some("NodeStatusUnknown"),
                    Some("Kubelet stopped posting node status."),
                    &stamp,
                );
            }
            if conditions != before {
                cp.api.merge_patch_status(
                    COMPONENT,
                    &key_nodes(),
                    None,
                    &info.name,
                    json!({"status": {"conditions": conditions}}),
                );
                let (kind, reason) = if connected {
                    ("Normal", "NodeReady")
                } else {
                    ("Normal", "NodeNotReady")
                };
                if connected != was_ready {
                    let message = format!("Node {} status is now: {reason}", info.name);
                    let component = if connected { "kubelet" } else { COMPONENT };
                    cp.events
                        .record(component, Some(&info.name), node, kind, reason, &message);
                }
            }
        }

        if unreachable {
            let evict_after = jiff::SignedDuration::try_from(
                cp.timings.node_monitor_grace + cp.timings.unreachable_eviction,
            )
            .unwrap_or(jiff::SignedDuration::MAX);
            for pod in snap
                .pods
                .iter()
                .filter(|p| str_at(p, &["spec", "nodeName"]) == Some(info.name.as_str()))
            {
                mark_pod_not_ready(cp, pod, &stamp);
                if silent_for >= evict_after && !is_terminating(pod) {
                    cp.events.record(
                        "taint-eviction-controller",
                        None,
                        pod,
                        "Normal",
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {}/{}", namespace(pod), name(pod)),
                    );
                    cp.api
                        .delete(COMPONENT, &key_pods(), Some(namespace(pod)), name(pod));
                }
            }
        }
    }
}

/// The node controller's `MarkPodsNotReady`: Ready and ContainersReady go False.
fn mark_pod_not_ready(cp: &mut ControlPlane, pod: &Value, stamp: &str) {
    let mut conditions = at(pod, &["status", "conditions"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let before = conditions.clone();
    for kind in ["Ready", "ContainersReady"] {
        if conditions
            .iter()
            .any(|c| str_at(c, &["type"]) == Some(kind))
        {
            upsert_condition(
                &mut conditions,
                kind,
                "False",
                Some("NodeNotReady"),
                None,
                stamp,
            );
        }
    }
    if conditions != before {
        cp.api.merge_patch_status(
            COMPONENT,
            &key_pods(),
            Some(namespace(pod)),
            name(pod),
            json!({"status": {"conditions": conditions}}),
        );
    }
}
