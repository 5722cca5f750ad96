//! The kubelets: each pod runs on its own turmoil host (named `<pod>.<namespace>.pod`,
//! reused when a pod of the same name returns, so a StatefulSet pod keeps its address).
//! A container's image selects its program from the image registry; the program starts
//! after the image's start-up delay, its exit is restarted with CrashLoopBackOff
//! delays per the pod's restartPolicy, and its readiness (or, without a readinessProbe
//! in the spec, just "running") becomes the Ready condition. Pod status (phase,
//! conditions, IPs, containerStatuses) is written only when it changes.
//!
//! A kubelet that cannot reach the API server keeps its pods running (and restarting)
//! but neither starts new pods, notices deletions nor reports status — as live. A
//! crashed node's pod hosts are crashed; on recovery every container restarts.
//! Deleted pods carry the kubelet's finalizer until their containers are stopped, the
//! simulation's stand-in for graceful deletion.
//!
//! A running container can be frozen (`World::apply(Fault::FreezeContainer)`), as the
//! cgroup freezer behind `docker pause` or a SIGSTOP would: its program is not polled
//! until it is thawed, and a restart of the container starts it unfrozen.
//!
//! This module admits pods and runs the kubelet passes; `runtime` is the container
//! runtime on each pod host (launch, start, exit, restart, kill), `spec` resolves what
//! a container is given (volumes, env), `status` writes what the kubelet reports.

mod runtime;
mod spec;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::nodes::NodeLifecycle;
use super::workloads::POD_FINALIZER;
use super::{ControlPlane, NodeInfo, Snapshot, format_time, key_pods};
use crate::dialer::ClusterDialer;
use crate::hosts::pod_host_name;
use crate::images::ImageRegistry;
use crate::network::Network;
use crate::object::{at, is_terminating, labels, name, namespace, str_at, uid};
use crate::pod::{PodContext, Readiness, Volume};
use runtime::{
    ContainerRuntime, ContainerState, LaunchSlot, PodRuntime, kill, local_maintenance, relaunch,
    start_container,
};
use spec::{resolve_env, resolve_volumes, string_list};
use status::write_status;

const COMPONENT: &str = "kubelet";

pub(crate) struct Kubelet {
    images: ImageRegistry,
    pods: BTreeMap<String, PodRuntime>,
    slots: BTreeMap<String, LaunchSlot>,
    volumes: BTreeMap<String, Volume>,
    run_counter: u64,
    /// Pods already given the kubelet finalizer (uid).
    finalized: BTreeSet<String>,
}

/// Why a container could not be frozen or thawed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreezeError {
    #[error("no pod {namespace}/{pod} runs on any node")]
    NoPod { namespace: String, pod: String },
    #[error("pod {namespace}/{pod} has no container {container:?} (containers: {known})")]
    NoContainer {
        namespace: String,
        pod: String,
        container: String,
        known: String,
    },
}

impl Kubelet {
    /// Freezes (`true`) or thaws (`false`) a container's current run. Freezing one that
    /// has not started yet freezes it from its first instruction on.
    pub(crate) fn set_frozen(
        &mut self,
        namespace: &str,
        pod: &str,
        container: &str,
        frozen: bool,
    ) -> Result<(), FreezeError> {
        let runtime = self
            .pods
            .values()
            .find(|r| r.namespace == namespace && r.name == pod)
            .ok_or_else(|| FreezeError::NoPod {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
            })?;
        let target = runtime
            .containers
            .iter()
            .find(|c| c.name == container)
            .ok_or_else(|| FreezeError::NoContainer {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                container: container.to_string(),
                known: runtime
                    .containers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        target.frozen.send_replace(frozen);
        Ok(())
    }

    /// No pod runtime exists (nothing to poll).
    pub(crate) fn is_idle(&self) -> bool {
        self.pods.is_empty()
    }

    pub(crate) fn new(images: ImageRegistry) -> Self {
        Self {
            images,
            pods: BTreeMap::new(),
            slots: BTreeMap::new(),
            volumes: BTreeMap::new(),
            run_counter: 0,
            finalized: BTreeSet::new(),
        }
    }
}

/// The wall clock of `node`'s pods: the simulated clock, running at the node's drifted
/// rate when the seam fault "clock drift" is on.
fn node_clock(cp: &ControlPlane, node: &str) -> bloodraven::seams::SharedClock {
    let config = cp.api.api.config();
    match config.seam_faults.clock_rate_ppm(config.seed, node) {
        0 => Arc::new(cp.clock.clone()),
        rate => Arc::new(crate::clock::DriftingClock::new(cp.clock.clone(), rate)),
    }
}

fn plus(ts: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    ts.checked_add(jiff::SignedDuration::try_from(d).unwrap_or_default())
        .unwrap_or(ts)
}

/// Kubelet passes while the API server is down: local restarts and node crashes only.
pub(crate) fn run_detached(cp: &mut ControlPlane, net: &mut Network, nodes: &[NodeInfo]) {
    let mut pods = std::mem::take(&mut cp.kubelet.pods);
    for runtime in pods.values_mut() {
        let Some(node) = nodes.iter().find(|n| n.name == runtime.node) else {
            continue;
        };
        local_maintenance(cp, net, node, runtime, false);
    }
    cp.kubelet.pods = pods;
}

pub(crate) fn reconcile(
    cp: &mut ControlPlane,
    snap: &Snapshot,
    net: &mut Network,
    nodes: &[NodeInfo],
    api_host: &str,
) {
    let mut pods = std::mem::take(&mut cp.kubelet.pods);
    for node in nodes {
        let connected = NodeLifecycle::kubelet_connected(node, net, api_host);
        // Runtimes first: crashes, recoveries, exits and restarts happen whether or
        // not the kubelet can report them.
        for runtime in pods.values_mut().filter(|r| r.node == node.name) {
            local_maintenance(cp, net, node, runtime, connected);
        }
        if !connected {
            continue;
        }
        let desired: Vec<&Value> = snap
            .pods
            .iter()
            .filter(|p| str_at(p, &["spec", "nodeName"]) == Some(node.name.as_str()))
            .collect();
        // Pods that are gone, replaced under the same name, or being deleted: stop them.
        let stale: Vec<String> = pods
            .values()
            .filter(|r| r.node == node.name)
            .filter(|r| !desired.iter().any(|p| uid(p) == r.uid))
            .map(|r| r.uid.clone())
            .collect();
        for pod_uid in stale {
            if let Some(runtime) = pods.remove(&pod_uid) {
                kill(cp, net, &runtime);
            }
        }
        for pod in desired {
            if is_terminating(pod) {
                if let Some(runtime) = pods.get_mut(uid(pod))
                    && stopping_gracefully(cp, runtime, pod)
                {
                    continue;
                }
                if let Some(runtime) = pods.remove(uid(pod)) {
                    kill(cp, net, &runtime);
                }
                release_finalizer(cp, pod);
                continue;
            }
            if !cp.kubelet.finalized.contains(uid(pod)) {
                add_finalizer(cp, pod);
            }
            if !pods.contains_key(uid(pod)) {
                // A pod host is reused by name: make sure an older pod of the same name
                // (deleted while this kubelet was away) is stopped first.
                let host = pod_host_name(namespace(pod), name(pod));
                let previous: Vec<String> = pods
                    .values()
                    .filter(|r| r.host == host)
                    .map(|r| r.uid.clone())
                    .collect();
                for old in previous {
                    if let Some(runtime) = pods.remove(&old) {
                        kill(cp, net, &runtime);
                    }
                }
                let runtime = admit(cp, net, node, pod);
                pods.insert(runtime.uid.clone(), runtime);
            }
            if let Some(runtime) = pods.get_mut(uid(pod)) {
                start_waiting_containers(cp, net, runtime, pod);
                write_status(cp, net, runtime, pod);
            }
        }
    }
    let live: BTreeSet<&str> = snap.pods.iter().map(uid).collect();
    cp.kubelet.finalized.retain(|u| live.contains(u.as_str()));
    cp.kubelet.pods = pods;
}

fn add_finalizer(cp: &mut ControlPlane, pod: &Value) {
    let mut finalizers: Vec<Value> = at(pod, &["metadata", "finalizers"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f.as_str() == Some(POD_FINALIZER)) {
        finalizers.push(json!(POD_FINALIZER));
        if cp
            .api
            .merge_patch(
                COMPONENT,
                &key_pods(),
                Some(namespace(pod)),
                name(pod),
                json!({"metadata": {"finalizers": finalizers}}),
            )
            .is_none()
        {
            return;
        }
    }
    cp.kubelet.finalized.insert(uid(pod).to_string());
}

fn release_finalizer(cp: &mut ControlPlane, pod: &Value) {
    let finalizers: Vec<Value> = at(pod, &["metadata", "finalizers"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if finalizers.iter().any(|f| f.as_str() == Some(POD_FINALIZER)) {
        let rest: Vec<Value> = finalizers
            .into_iter()
            .filter(|f| f.as_str() != Some(POD_FINALIZER))
            .collect();
        let value = if rest.is_empty() {
            Value::Null
        } else {
            Value::Array(rest)
        };
        cp.api.merge_patch(
            COMPONENT,
            &key_pods(),
            Some(namespace(pod)),
            name(pod),
            json!({"metadata": {"finalizers": value}}),
        );
    }
}

/// Creates the runtime of a newly bound pod (its containers wait for `start_waiting_containers`).
fn admit(cp: &mut ControlPlane, net: &mut Network, node: &NodeInfo, pod: &Value) -> PodRuntime {
    let specs = at(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = cp.now();
    let containers = specs
        .iter()
        .map(|spec| {
            let image = str_at(spec, &["image"]).unwrap_or_default().to_string();
            let program = cp.kubelet.images.resolve(&image);
            let state = if program.is_some() {
                ContainerState::WaitingForVolume
            } else {
                ContainerState::PullFailed {
                    retry_at: now,
                    attempts: 0,
                }
            };
            ContainerRuntime {
                name: str_at(spec, &["name"]).unwrap_or_default().to_string(),
                image,
                program,
                has_readiness_probe: spec.get("readinessProbe").is_some_and(|p| !p.is_null()),
                state,
                run: 0,
                ready: Readiness::default(),
                frozen: Arc::new(tokio::sync::watch::channel(false).0),
                restart_count: 0,
                backoff: Duration::ZERO,
                last_terminated: None,
                current_terminated: None,
            }
        })
        .collect::<Vec<_>>();
    let pod_ref = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name(pod), "namespace": namespace(pod), "uid": uid(pod)},
    });
    let _ = net;
    PodRuntime {
        uid: uid(pod).to_string(),
        namespace: namespace(pod).to_string(),
        name: name(pod).to_string(),
        node: node.name.clone(),
        host: pod_host_name(namespace(pod), name(pod)),
        pod_ref,
        restart_policy: str_at(pod, &["spec", "restartPolicy"])
            .unwrap_or("Always")
            .to_string(),
        contexts: vec![None; containers.len()],
        containers,
        reports: Arc::new(Mutex::new(Vec::new())),
        commands: None,
        start_time: format_time(now),
        node_down: node.crashed,
        termination: crate::pod::Termination::default(),
        grace_deadline: None,
    }
}

/// A deleted pod's graceful stop: SIGTERM is raised once; the pod keeps running until
/// every container that was running has exited or the grace period
/// (`terminationGracePeriodSeconds`, 30 s by default) ran out. Returns whether to keep waiting. A pod whose programs never listened for
/// SIGTERM stops at once, as before.
fn stopping_gracefully(cp: &mut ControlPlane, runtime: &mut PodRuntime, pod: &Value) -> bool {
    if runtime.node_down || !runtime.termination.is_handled() {
        return false;
    }
    let now = cp.now();
    if !runtime.termination.is_raised() {
        // The pod's own setting: this API server stamps every deletion with
        // `deletionGracePeriodSeconds: 0` (it takes no grace option).
        let grace = at(pod, &["spec", "terminationGracePeriodSeconds"])
            .and_then(Value::as_u64)
            .unwrap_or(30);
        runtime.grace_deadline = Some(plus(now, Duration::from_secs(grace)));
        runtime.termination.raise();
    }
    if runtime
        .grace_deadline
        .is_some_and(|deadline| now >= deadline)
    {
        return false;
    }
    let reports = runtime
        .reports
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    runtime
        .containers
        .iter()
        .enumerate()
        .any(|(index, container)| {
            matches!(
                container.state,
                ContainerState::Running { .. } | ContainerState::Starting
            ) && reports.get(index).is_none_or(|r| !r.has_exited())
        })
}

/// Resolves volumes and env, then starts containers whose image has a program. An
/// image without one reports ErrImagePull, then ImagePullBackOff, and is retried.
fn start_waiting_containers(
    cp: &mut ControlPlane,
    net: &mut Network,
    runtime: &mut PodRuntime,
    pod: &Value,
) {
    if runtime.node_down {
        return;
    }
    let now = cp.now();
    // Image pull failures first: visible, retried with a back-off.
    for container in &mut runtime.containers {
        if let ContainerState::PullFailed { retry_at, attempts } = container.state.clone()
            && now >= retry_at
        {
            container.program = cp.kubelet.images.resolve(&container.image);
            if container.program.is_some() {
                container.state = ContainerState::WaitingForVolume;
                continue;
            }
            let image = container.image.clone();
            let (reason, message) = if attempts > 0 {
                ("BackOff", format!("Back-off pulling image \"{image}\""))
            } else {
                (
                    "Failed",
                    format!(
                        "Failed to pull image \"{image}\": image is not in the simulation's image registry (register a program for it)"
                    ),
                )
            };
            cp.events.record(
                COMPONENT,
                Some(&runtime.node),
                &runtime.pod_ref,
                "Warning",
                reason,
                &message,
            );
            container.state = ContainerState::PullFailed {
                retry_at: plus(now, cp.timings.image_pull_backoff),
                attempts: attempts + 1,
            };
        }
    }
    let waiting: Vec<usize> = runtime
        .containers
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.state, ContainerState::WaitingForVolume))
        .map(|(i, _)| i)
        .collect();
    if waiting.is_empty() {
        return;
    }
    let Some(volumes) = resolve_volumes(cp, runtime, pod) else {
        return;
    };
    let specs = at(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let node_ip = net
        .ip(&runtime.node)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    for index in &waiting {
        let Some(spec) = specs.get(*index) else {
            continue;
        };
        let ctx = PodContext {
            namespace: runtime.namespace.clone(),
            pod: runtime.name.clone(),
            node: runtime.node.clone(),
            host: runtime.host.clone(),
            container: runtime.containers[*index].name.clone(),
            image: runtime.containers[*index].image.clone(),
            command: string_list(spec.get("command")),
            args: string_list(spec.get("args")),
            env: resolve_env(cp, pod, spec, &node_ip),
            labels: labels(pod),
            volumes: volumes.clone(),
            ready: Readiness::default(),
            clock: node_clock(cp, &runtime.node),
            dialer: ClusterDialer::new(
                cp.api.api.clone(),
                &runtime.namespace,
                &runtime.host,
                Duration::from_secs(1),
            )
            .shared(),
            termination: runtime.termination.clone(),
            freezer: Default::default(),
        };
        runtime.contexts[*index] = Some(ctx);
    }
    // The first start of the pod registers (or bounces) its host; later ones reuse it.
    if runtime.commands.is_none() {
        relaunch(cp, net, runtime);
    }
    for index in waiting {
        start_container(cp, runtime, index, true);
    }
}
