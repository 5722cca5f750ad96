//! The container runtime on each pod host: the host's software starts containers as
//! the kubelet commands and reports their runs back; the kubelet side launches and
//! relaunches the host, starts a container (with its start-up delay), follows exits
//! into CrashLoopBackOff restarts and node crashes, and kills a pod's containers.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bloodraven::seams::SharedClock;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{COMPONENT, plus};
use crate::cluster::{ControlPlane, NodeInfo, format_time};
use crate::images::ImageProgram;
use crate::network::{Network, Placement};
use crate::pod::{PodContext, Readiness};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a container run reports back from its host.
#[derive(Clone, Debug, Default)]
pub(super) struct RunReport {
    run: u64,
    started_at: Option<jiff::Timestamp>,
    exited: Option<(i32, String, jiff::Timestamp)>,
}

impl RunReport {
    pub(super) fn has_exited(&self) -> bool {
        self.exited.is_some()
    }
}

/// Tells a pod host to start (or restart) one container.
pub(super) struct StartCommand {
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
pub(super) struct Launch {
    containers: Mutex<Vec<Option<ContainerLaunch>>>,
    reports: Arc<Mutex<Vec<RunReport>>>,
    commands: Mutex<Option<UnboundedReceiver<StartCommand>>>,
    clock: SharedClock,
    logs: crate::logs::ContainerLogs,
}

pub(super) type LaunchSlot = Arc<Mutex<Option<Arc<Launch>>>>;

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
        // The whole process is frozen, tasks it spawned included (they ask `ctx.freezer`).
        ctx.freezer = crate::pod::Freezer::new(command.frozen);
        let reports = launch.reports.clone();
        let clock = launch.clock.clone();
        let logs = launch.logs.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(command.delay).await;
            if let Some(report) = lock(&reports)
                .get_mut(command.index)
                .filter(|r| r.run == command.run)
            {
                report.started_at = Some(clock.now());
            }
            // What the program logs in this run is its container output (`kubectl logs`).
            let output = logs.start_run(&ctx.namespace, &ctx.pod, &ctx.container);
            let route = crate::logs::route(&output);
            let span = tracing::info_span!(crate::logs::CONTAINER_SPAN, log_route = route);
            let freezer = ctx.freezer.clone();
            let result = freezer
                .run(tracing::Instrument::instrument(program.run(ctx), span))
                .await;
            if let Err(err) = &result {
                output.push(clock.now(), format!("exited: {err}"));
            }
            output.close();
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

#[derive(Clone, Debug)]
pub(super) enum ContainerState {
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

pub(super) struct ContainerRuntime {
    pub(super) name: String,
    pub(super) image: String,
    pub(super) program: Option<ImageProgram>,
    pub(super) has_readiness_probe: bool,
    pub(super) state: ContainerState,
    pub(super) run: u64,
    pub(super) ready: Readiness,
    /// Whether the current run is frozen; a fresh channel for every (re)start.
    pub(super) frozen: Arc<tokio::sync::watch::Sender<bool>>,
    pub(super) restart_count: u32,
    pub(super) backoff: Duration,
    pub(super) last_terminated: Option<Value>,
    pub(super) current_terminated: Option<Value>,
}

pub(super) struct PodRuntime {
    pub(super) uid: String,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) node: String,
    pub(super) host: String,
    /// apiVersion/kind/metadata of the pod, for Events after it is gone.
    pub(super) pod_ref: Value,
    pub(super) restart_policy: String,
    pub(super) containers: Vec<ContainerRuntime>,
    pub(super) reports: Arc<Mutex<Vec<RunReport>>>,
    pub(super) commands: Option<UnboundedSender<StartCommand>>,
    pub(super) start_time: String,
    pub(super) node_down: bool,
    pub(super) contexts: Vec<Option<PodContext>>,
    /// The pod's SIGTERM, shared by its containers' contexts.
    pub(super) termination: crate::pod::Termination,
    /// When the pod's grace period runs out, once SIGTERM was raised.
    pub(super) grace_deadline: Option<jiff::Timestamp>,
}

fn startup_delay(cp: &mut ControlPlane, program: &ImageProgram) -> Duration {
    let jitter_ms = u64::try_from(program.startup.jitter.as_millis()).unwrap_or(0);
    let extra = if jitter_ms == 0 {
        0
    } else {
        cp.rng.range(0, jitter_ms)
    };
    program.startup.delay + Duration::from_millis(extra)
}
/// Node crash and recovery, container exits and restarts.
pub(super) fn local_maintenance(
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
                    // A container that stopped on SIGTERM is not restarted.
                    let restart = match runtime.restart_policy.as_str() {
                        _ if runtime.termination.is_raised() => false,
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
pub(super) fn relaunch(cp: &mut ControlPlane, net: &mut Network, runtime: &mut PodRuntime) {
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
        logs: cp.api.api.container_logs().clone(),
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

pub(super) fn start_container(
    cp: &mut ControlPlane,
    runtime: &mut PodRuntime,
    index: usize,
    report: bool,
) {
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

pub(super) fn kill(cp: &mut ControlPlane, net: &mut Network, runtime: &PodRuntime) {
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
