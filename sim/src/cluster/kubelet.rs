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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bloodraven::transport::SharedClock;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::nodes::NodeLifecycle;
use super::obj::{
    at, is_terminating, labels, name, namespace, str_at, string_map, uid, upsert_condition,
};
use super::workloads::POD_FINALIZER;
use super::{
    ControlPlane, NodeInfo, Snapshot, format_time, key_configmaps, key_pods, key_pvcs, key_secrets,
};
use crate::dialer::ClusterDialer;
use crate::images::{ImageProgram, ImageRegistry};
use crate::network::{Network, Placement};
use crate::pod::{PodContext, Readiness, Volume};

const COMPONENT: &str = "kubelet";

/// The turmoil host a pod runs on.
pub fn pod_host_name(namespace: &str, pod: &str) -> String {
    format!("{pod}.{namespace}.pod")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a container run reports back from its host.
#[derive(Clone, Debug, Default)]
struct RunReport {
    run: u64,
    started_at: Option<jiff::Timestamp>,
    exited: Option<(i32, String, jiff::Timestamp)>,
}

/// Tells a pod host to start (or restart) one container.
struct StartCommand {
    index: usize,
    run: u64,
    delay: Duration,
    ready: Readiness,
    frozen: tokio::sync::watch::Receiver<bool>,
}

struct ContainerLaunch {
    program: Arc<dyn crate::pod::PodProgram>,
    ctx: PodContext,
}

/// Everything a pod host's software needs; replaced on every (re)launch of the pod.
struct Launch {
    containers: Mutex<Vec<Option<ContainerLaunch>>>,
    reports: Arc<Mutex<Vec<RunReport>>>,
    commands: Mutex<Option<UnboundedReceiver<StartCommand>>>,
    clock: SharedClock,
}

type LaunchSlot = Arc<Mutex<Option<Arc<Launch>>>>;

/// The software of every pod host: start containers as the kubelet commands.
async fn run_pod(launch: Arc<Launch>) {
    let Some(mut commands) = lock(&launch.commands).take() else {
        return;
    };
    while let Some(command) = commands.recv().await {
        let Some((program, mut ctx)) = lock(&launch.containers)
            .get(command.index)
            .and_then(Option::as_ref)
            .map(|c| (c.program.clone(), c.ctx.clone()))
        else {
            continue;
        };
        ctx.ready = command.ready;
        let reports = launch.reports.clone();
        let clock = launch.clock.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(command.delay).await;
            if let Some(report) = lock(&reports)
                .get_mut(command.index)
                .filter(|r| r.run == command.run)
            {
                report.started_at = Some(clock.now());
            }
            let result = freezable(program.run(ctx), command.frozen).await;
            let (code, message) = match result {
                Ok(()) => (0, "Completed".to_string()),
                Err(err) => (1, err.to_string()),
            };
            if let Some(report) = lock(&reports)
                .get_mut(command.index)
                .filter(|r| r.run == command.run)
            {
                report.exited = Some((code, message, clock.now()));
            }
        });
    }
    std::future::pending::<()>().await;
}

/// Runs `program` like a process the cgroup freezer can stop: while `frozen` is true
/// the future is not polled at all (its timers run out meanwhile and fire on thaw, as
/// a stopped process's would); it resumes where it was. `biased` keeps the select
/// from drawing on a random number, so runs stay deterministic.
async fn freezable<F: std::future::Future>(
    program: F,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) -> F::Output {
    tokio::pin!(program);
    loop {
        if *frozen.borrow_and_update() {
            if frozen.changed().await.is_err() {
                // The kubelet forgot the container: nobody can thaw it, nor needs to.
                return std::future::pending().await;
            }
            continue;
        }
        // The freeze is looked at first, so that a container frozen between two polls
        // of its program is not polled once more.
        tokio::select! {
            biased;
            changed = frozen.changed() => {
                if changed.is_err() {
                    return program.await;
                }
            }
            output = &mut program => return output,
        }
    }
}

#[derive(Clone, Debug)]
enum ContainerState {
    /// The image has no program; retried at `retry_at`.
    PullFailed {
        retry_at: jiff::Timestamp,
        attempts: u32,
    },
    /// Waiting for a volume (a PVC that does not exist yet).
    WaitingForVolume,
    /// Start commanded; the program runs after the start-up delay.
    Starting,
    Running {
        started_at: jiff::Timestamp,
    },
    /// Exited; restarting at `restart_at`.
    BackOff {
        restart_at: jiff::Timestamp,
    },
    /// Exited for good (restartPolicy Never, or OnFailure after success).
    Done,
    /// The pod is being killed or its node is down.
    Stopped,
}

struct ContainerRuntime {
    name: String,
    image: String,
    program: Option<ImageProgram>,
    has_readiness_probe: bool,
    state: ContainerState,
    run: u64,
    ready: Readiness,
    /// Whether the current run is frozen; a fresh channel for every (re)start.
    frozen: Arc<tokio::sync::watch::Sender<bool>>,
    restart_count: u32,
    backoff: Duration,
    last_terminated: Option<Value>,
    current_terminated: Option<Value>,
}

struct PodRuntime {
    uid: String,
    namespace: String,
    name: String,
    node: String,
    host: String,
    /// apiVersion/kind/metadata of the pod, for Events after it is gone.
    pod_ref: Value,
    restart_policy: String,
    containers: Vec<ContainerRuntime>,
    reports: Arc<Mutex<Vec<RunReport>>>,
    commands: Option<UnboundedSender<StartCommand>>,
    start_time: String,
    node_down: bool,
    contexts: Vec<Option<PodContext>>,
}

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
    pub fn set_frozen(
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
    pub fn is_idle(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn new(images: ImageRegistry) -> Self {
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

fn startup_delay(cp: &mut ControlPlane, program: &ImageProgram) -> Duration {
    let jitter_ms = u64::try_from(program.startup.jitter.as_millis()).unwrap_or(0);
    let extra = if jitter_ms == 0 {
        0
    } else {
        cp.rng.random_range(0..=jitter_ms)
    };
    program.startup.delay + Duration::from_millis(extra)
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
            .filter(|r| {
                !desired
                    .iter()
                    .any(|p| uid(p) == r.uid && !is_terminating(p))
            })
            .map(|r| r.uid.clone())
            .collect();
        for pod_uid in stale {
            if let Some(runtime) = pods.remove(&pod_uid) {
                kill(cp, net, &runtime);
            }
        }
        for pod in desired {
            if is_terminating(pod) {
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

/// Node crash and recovery, container exits and restarts.
fn local_maintenance(
    cp: &mut ControlPlane,
    net: &mut Network,
    node: &NodeInfo,
    runtime: &mut PodRuntime,
    report: bool,
) {
    let now = cp.now();
    if node.crashed {
        if !runtime.node_down {
            net.crash(&runtime.host);
            runtime.node_down = true;
            for container in &mut runtime.containers {
                if matches!(
                    container.state,
                    ContainerState::Running { .. } | ContainerState::Starting
                ) {
                    container.current_terminated = Some(
                        json!({"exitCode": 255, "reason": "Unknown", "finishedAt": format_time(now)}),
                    );
                }
                container.ready.set(false);
                if matches!(
                    container.state,
                    ContainerState::Running { .. }
                        | ContainerState::Starting
                        | ContainerState::BackOff { .. }
                ) {
                    container.state = ContainerState::Stopped;
                }
            }
        }
        return;
    }
    if runtime.node_down {
        // The node is back: the kubelet restarts every container of its pods.
        runtime.node_down = false;
        relaunch(cp, net, runtime);
        for index in 0..runtime.containers.len() {
            if matches!(runtime.containers[index].state, ContainerState::Stopped) {
                if let Some(terminated) = runtime.containers[index].current_terminated.take() {
                    runtime.containers[index].last_terminated = Some(terminated);
                    runtime.containers[index].restart_count += 1;
                }
                start_container(cp, runtime, index, report);
            }
        }
        return;
    }
    let reports = lock(&runtime.reports).clone();
    for index in 0..runtime.containers.len() {
        let Some(run_report) = reports
            .get(index)
            .filter(|r| r.run == runtime.containers[index].run)
        else {
            continue;
        };
        let container = &mut runtime.containers[index];
        match container.state.clone() {
            ContainerState::Starting => {
                if let Some(started_at) = run_report.started_at {
                    container.state = ContainerState::Running { started_at };
                    if report {
                        let message = format!("Started container {}", container.name);
                        cp.events.record(
                            COMPONENT,
                            Some(&runtime.node),
                            &runtime.pod_ref,
                            "Normal",
                            "Started",
                            &message,
                        );
                    }
                }
            }
            ContainerState::Running { started_at } => {
                if let Some((code, message, finished_at)) = run_report.exited.clone() {
                    container.ready.set(false);
                    let reason = if code == 0 { "Completed" } else { "Error" };
                    let mut terminated = json!({"exitCode": code, "reason": reason, "startedAt": format_time(started_at), "finishedAt": format_time(finished_at)});
                    if code != 0 {
                        terminated["message"] = json!(message);
                    }
                    container.current_terminated = Some(terminated);
                    let restart = match runtime.restart_policy.as_str() {
                        "Never" => false,
                        "OnFailure" => code != 0,
                        _ => true,
                    };
                    if restart {
                        let ran = finished_at.duration_since(started_at);
                        let reset =
                            jiff::SignedDuration::try_from(cp.timings.restart_backoff_reset)
                                .unwrap_or_default();
                        container.backoff = if container.backoff.is_zero() || ran >= reset {
                            cp.timings.restart_backoff_initial
                        } else {
                            (container.backoff * 2).min(cp.timings.restart_backoff_max)
                        };
                        container.state = ContainerState::BackOff {
                            restart_at: plus(now, container.backoff),
                        };
                        if report {
                            let message = format!(
                                "Back-off restarting failed container {} in pod {}_{}({})",
                                container.name, runtime.name, runtime.namespace, runtime.uid
                            );
                            cp.events.record(
                                COMPONENT,
                                Some(&runtime.node),
                                &runtime.pod_ref,
                                "Warning",
                                "BackOff",
                                &message,
                            );
                        }
                    } else {
                        container.state = ContainerState::Done;
                    }
                }
            }
            ContainerState::BackOff { restart_at } if now >= restart_at => {
                if let Some(terminated) = container.current_terminated.take() {
                    container.last_terminated = Some(terminated);
                }
                container.restart_count += 1;
                start_container(cp, runtime, index, report);
            }
            _ => {}
        }
    }
}

/// Registers (or reuses) the pod's host and hands it a fresh launch.
fn relaunch(cp: &mut ControlPlane, net: &mut Network, runtime: &mut PodRuntime) {
    let (sender, receiver) = unbounded_channel();
    let reports = Arc::new(Mutex::new(vec![
        RunReport::default();
        runtime.containers.len()
    ]));
    let containers = runtime
        .containers
        .iter()
        .zip(&runtime.contexts)
        .map(|(c, ctx)| match (&c.program, ctx) {
            (Some(program), Some(ctx)) => Some(ContainerLaunch {
                program: program.program.clone(),
                ctx: ctx.clone(),
            }),
            _ => None,
        })
        .collect();
    let launch = Arc::new(Launch {
        containers: Mutex::new(containers),
        reports: reports.clone(),
        commands: Mutex::new(Some(receiver)),
        clock: Arc::new(cp.clock.clone()),
    });
    runtime.reports = reports;
    runtime.commands = Some(sender);
    let slot = cp
        .kubelet
        .slots
        .entry(runtime.host.clone())
        .or_default()
        .clone();
    *lock(&slot) = Some(launch);
    if net.has_host(&runtime.host) {
        net.bounce(&runtime.host);
    } else {
        let software_slot = slot.clone();
        // Node hosts are named after their nodes; a pod lives where its node does.
        let site = net
            .placement(&runtime.node)
            .cloned()
            .unwrap_or(Placement::ControlPlane);
        net.add_host(&runtime.host, site, move || {
            let launch = lock(&software_slot).clone();
            async move {
                if let Some(launch) = launch {
                    run_pod(launch).await;
                }
                Ok(())
            }
        });
    }
}

fn start_container(cp: &mut ControlPlane, runtime: &mut PodRuntime, index: usize, report: bool) {
    cp.kubelet.run_counter += 1;
    let run = cp.kubelet.run_counter;
    let Some(container) = runtime.containers.get_mut(index) else {
        return;
    };
    let Some(program) = container.program.clone() else {
        return;
    };
    let delay = startup_delay(cp, &program);
    container.run = run;
    container.ready = Readiness::default();
    container.frozen = Arc::new(tokio::sync::watch::channel(false).0);
    container.state = ContainerState::Starting;
    if let Some(slot) = lock(&runtime.reports).get_mut(index) {
        *slot = RunReport {
            run,
            started_at: None,
            exited: None,
        };
    }
    // The launch may predate this container's context (an image pull that failed at
    // first): hand the host the current one before commanding the start.
    if let (Some(Some(ctx)), Some(slot)) = (
        runtime.contexts.get(index),
        cp.kubelet.slots.get(&runtime.host),
    ) && let Some(launch) = lock(slot).as_ref()
        && let Some(entry) = lock(&launch.containers).get_mut(index)
    {
        *entry = Some(ContainerLaunch {
            program: program.program.clone(),
            ctx: ctx.clone(),
        });
    }
    if let Some(commands) = &runtime.commands {
        let _ = commands.send(StartCommand {
            index,
            run,
            delay,
            ready: container.ready.clone(),
            frozen: container.frozen.subscribe(),
        });
    }
    if report {
        let pulled = format!(
            "Container image \"{}\" already present on machine",
            container.image
        );
        let created = format!("Created container: {}", container.name);
        cp.events.record(
            COMPONENT,
            Some(&runtime.node),
            &runtime.pod_ref,
            "Normal",
            "Pulled",
            &pulled,
        );
        cp.events.record(
            COMPONENT,
            Some(&runtime.node),
            &runtime.pod_ref,
            "Normal",
            "Created",
            &created,
        );
    }
}

fn kill(cp: &mut ControlPlane, net: &mut Network, runtime: &PodRuntime) {
    if !runtime.node_down {
        net.crash(&runtime.host);
    }
    if let Some(slot) = cp.kubelet.slots.get(&runtime.host) {
        *lock(slot) = None;
    }
    for container in &runtime.containers {
        if matches!(
            container.state,
            ContainerState::Running { .. }
                | ContainerState::Starting
                | ContainerState::BackOff { .. }
        ) {
            let message = format!("Stopping container {}", container.name);
            cp.events.record(
                COMPONENT,
                Some(&runtime.node),
                &runtime.pod_ref,
                "Normal",
                "Killing",
                &message,
            );
        }
    }
    // emptyDir-style volumes die with the pod; PVC volumes are keyed by claim and stay.
    let prefix = format!("pod:{}:", runtime.uid);
    cp.kubelet
        .volumes
        .retain(|key, _| !key.starts_with(&prefix));
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
    }
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
            clock: Arc::new(cp.clock.clone()),
            dialer: ClusterDialer::new(
                cp.api.api.clone(),
                &runtime.namespace,
                &runtime.host,
                Duration::from_secs(1),
            )
            .shared(),
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

fn string_list(value: Option<&Value>) -> Vec<String> {
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
fn resolve_volumes(
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
        let key = match str_at(&volume, &["persistentVolumeClaim", "claimName"]) {
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

/// Container env with `valueFrom` and `envFrom` resolved (Secrets, ConfigMaps,
/// fieldRefs); unresolvable references are left out, as an optional reference would be.
fn resolve_env(
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

fn write_status(cp: &mut ControlPlane, net: &Network, runtime: &PodRuntime, pod: &Value) {
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
