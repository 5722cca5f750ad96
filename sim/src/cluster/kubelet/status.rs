//! What the kubelet reports: each container's status (waiting, running, terminated,
//! restart count) and the pod's phase, conditions and IPs, written only on a change.

use serde_json::{Value, json};

use super::{COMPONENT, ContainerRuntime, ContainerState, PodRuntime};
use crate::cluster::{ControlPlane, format_time, key_pods};
use crate::network::Network;
use crate::object::{at, str_at, upsert_condition};

fn container_status(container: &ContainerRuntime, pod_uid: &str) -> Value {
    let running_ready = |c: &ContainerRuntime| !c.has_readiness_probe || c.ready.get();
    let (state, ready, started) = match &container.state {
        ContainerState::PullFailed { attempts, .. } => {
            // The first failed pull shows ErrImagePull, later ones ImagePullBackOff.
            let reason = if *attempts > 1 {
                "ImagePullBackOff"
            } else {
                "ErrImagePull"
            };
            let message = format!(
                "image \"{}\" is not in the simulation's image registry",
                container.image
            );
            (
                json!({"waiting": {"reason": reason, "message": message}}),
                false,
                false,
            )
        }
        ContainerState::WaitingForVolume | ContainerState::Starting => (
            json!({"waiting": {"reason": "ContainerCreating"}}),
            false,
            false,
        ),
        ContainerState::Running { started_at } => (
            json!({"running": {"startedAt": format_time(*started_at)}}),
            running_ready(container),
            true,
        ),
        ContainerState::BackOff { .. } => {
            let message = format!(
                "back-off {}s restarting failed container={} pod=",
                container.backoff.as_secs(),
                container.name
            );
            (
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}}),
                false,
                false,
            )
        }
        ContainerState::Done | ContainerState::Stopped => {
            let terminated = container
                .current_terminated
                .clone()
                .unwrap_or_else(|| json!({"exitCode": 0, "reason": "Completed"}));
            (json!({"terminated": terminated}), false, false)
        }
    };
    let mut status = json!({
        "name": container.name,
        "image": container.image,
        "imageID": format!("sim://{}", container.image),
        "ready": ready,
        "started": started,
        "restartCount": container.restart_count,
        "state": state,
        "lastState": container.last_terminated.as_ref().map_or_else(|| json!({}), |t| json!({"terminated": t})),
    });
    if container.run > 0 {
        status["containerID"] = json!(format!(
            "sim://{pod_uid}/{}/{}",
            container.name, container.run
        ));
    }
    status
}

pub(super) fn write_status(
    cp: &mut ControlPlane,
    net: &Network,
    runtime: &PodRuntime,
    pod: &Value,
) {
    if runtime.node_down {
        return;
    }
    let stamp = format_time(cp.now());
    let statuses: Vec<Value> = runtime
        .containers
        .iter()
        .map(|c| container_status(c, &runtime.uid))
        .collect();
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s["ready"] == json!(true));
    let ever_started = runtime.containers.iter().any(|c| {
        c.restart_count > 0
            || matches!(
                c.state,
                ContainerState::Running { .. }
                    | ContainerState::BackOff { .. }
                    | ContainerState::Done
            )
    });
    let all_done = runtime
        .containers
        .iter()
        .all(|c| matches!(c.state, ContainerState::Done));
    let phase = if all_done && !runtime.containers.is_empty() {
        let failed = runtime.containers.iter().any(|c| {
            c.current_terminated
                .as_ref()
                .and_then(|t| t["exitCode"].as_i64())
                != Some(0)
        });
        if failed { "Failed" } else { "Succeeded" }
    } else if ever_started {
        "Running"
    } else {
        "Pending"
    };
    let mut conditions = at(pod, &["status", "conditions"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready_word = if all_ready { "True" } else { "False" };
    let not_ready_reason = (!all_ready).then_some(if all_done {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    });
    upsert_condition(
        &mut conditions,
        "PodReadyToStartContainers",
        "True",
        None,
        None,
        &stamp,
    );
    upsert_condition(&mut conditions, "Initialized", "True", None, None, &stamp);
    upsert_condition(
        &mut conditions,
        "ContainersReady",
        ready_word,
        not_ready_reason,
        None,
        &stamp,
    );
    upsert_condition(
        &mut conditions,
        "Ready",
        ready_word,
        not_ready_reason,
        None,
        &stamp,
    );
    if !conditions
        .iter()
        .any(|c| str_at(c, &["type"]) == Some("PodScheduled"))
    {
        upsert_condition(&mut conditions, "PodScheduled", "True", None, None, &stamp);
    }
    let host_ip = net
        .ip(&runtime.node)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let pod_ip = net.ip(&runtime.host).map(|ip| ip.to_string());
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": str_at(pod, &["status", "startTime"]).map(str::to_string).unwrap_or_else(|| runtime.start_time.clone()),
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    });
    if let Some(ip) = pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if pod.get("status") == Some(&status) {
        return;
    }
    let mut updated = pod.clone();
    updated["status"] = status;
    cp.api
        .update_status(COMPONENT, &key_pods(), Some(&runtime.namespace), updated);
}
