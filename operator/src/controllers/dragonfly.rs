//! The group's cache worker: probes each site's Dragonfly (ROLE, INFO replication) and
//! carries out the engine's cache actions (label writes, REPLICAOF, REPLTAKEOVER) in a
//! task of its own, so that a slow or dead cache never delays a MySQL reconcile. The
//! reconcile reads the latest observation and hands actions over; the worker wakes the
//! group after each round. Decisions are the engine's (`engine::dragonfly`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

use super::indexes::Indexes;
use crate::api::{DRAGONFLY_ROLE_LABEL, DRAGONFLY_TRAFFIC_LABEL, MysqlFailoverGroup};
use crate::children::dragonfly::{
    DRAGONFLY_PORT, DRAGONFLY_TRAFFIC_DISABLED, DRAGONFLY_TRAFFIC_ENABLED,
};
use crate::children::names;
use crate::engine::dragonfly::{
    CacheAction, CachePod, CacheProbe, CacheRole, CacheSiteObservation, DragonflyObservation,
};
use crate::engine::time::Millis;
use crate::production::dragonfly::{DragonflyCommandError, DragonflySession};
use crate::production::kube::{delete_dragonfly_pod, set_dragonfly_labels};
use crate::seams::{DragonflyTarget, SharedDragonflyConnector};

/// How long `REPLTAKEOVER` may take before the old master gives up draining (seconds):
/// well inside the 10 s budget, leaving time for the `REPLICAOF NO ONE` fallback.
const TAKEOVER_SECONDS: u64 = 5;

/// Why a cache action failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheActError {
    #[error("{action:?}: {source}")]
    Command {
        action: CacheAction,
        #[source]
        source: DragonflyCommandError,
    },
    /// A pod label write or a pod deletion.
    #[error(transparent)]
    Label(crate::production::kube::KubeWriteError),
}

/// What the reconcile tells the worker each pass (the spec and Secret may change).
#[derive(Clone)]
struct Settings {
    group: String,
    namespace: String,
    sites: Vec<String>,
    password: Option<String>,
    probe_interval: Duration,
    probe_timeout: Duration,
}

#[derive(Default)]
struct State {
    settings: Option<Settings>,
    probes: BTreeMap<String, CacheProbe>,
    pending: Option<Vec<CacheAction>>,
    /// Actions were handed over and their outcome has not been probed yet.
    busy: bool,
    probed: bool,
}

/// Handle on a group's cache worker; dropping it stops the worker.
pub(crate) struct CacheWorker {
    state: Arc<Mutex<State>>,
    kick: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CacheWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl CacheWorker {
    /// Starts the worker; `wake` is the group's wake-up, notified after every round.
    pub(crate) fn start(
        client: Client,
        connector: SharedDragonflyConnector,
        indexes: Indexes,
        wake: Arc<Notify>,
    ) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let kick = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            state.clone(),
            kick.clone(),
            client,
            connector,
            indexes,
            wake,
        ));
        Self { state, kick, task }
    }

    /// Updates what the worker probes with.
    pub(crate) fn configure(&self, group: &MysqlFailoverGroup, password: Option<String>) {
        let settings = Settings {
            group: group.name_any(),
            namespace: group.namespace().unwrap_or_default(),
            sites: group.spec.sites.iter().map(|s| s.name.clone()).collect(),
            password,
            probe_interval: group.spec.failover.probe_interval.as_std(),
            probe_timeout: group.spec.failover.probe_timeout.as_std(),
        };
        let first = {
            let mut state = lock(&self.state);
            let first = state.settings.is_none();
            state.settings = Some(settings);
            first
        };
        if first {
            self.kick.notify_one();
        }
    }

    /// The latest observation, with the pods as the index shows them now. Busy until
    /// the first probe round finished.
    pub(crate) fn observation(
        &self,
        group: &MysqlFailoverGroup,
        indexes: &Indexes,
    ) -> DragonflyObservation {
        let state = lock(&self.state);
        let namespace = group.namespace().unwrap_or_default();
        let name = group.name_any();
        let sites = group
            .spec
            .sites
            .iter()
            .map(|site| CacheSiteObservation {
                name: site.name.clone(),
                host: names::dragonfly_pod_host(&name, &site.name, &namespace),
                pod: cache_pod(
                    indexes
                        .pods
                        .get(
                            &ObjectRef::new(&names::dragonfly_pod(&name, &site.name))
                                .within(&namespace),
                        )
                        .as_deref(),
                    indexes
                        .statefulsets
                        .get(
                            &ObjectRef::new(&names::dragonfly_statefulset(&name, &site.name))
                                .within(&namespace),
                        )
                        .as_deref(),
                ),
                probe: state
                    .probes
                    .get(&site.name)
                    .cloned()
                    .unwrap_or(CacheProbe::Failing { since: Millis(0) }),
            })
            .collect();
        DragonflyObservation {
            sites,
            busy: state.busy || !state.probed,
            image: group
                .spec
                .dragonfly
                .as_ref()
                .map(|d| d.image.clone())
                .unwrap_or_default(),
        }
    }

    /// Hands `actions` to the worker; the observation is busy until they ran and their
    /// outcome was probed.
    pub(crate) fn submit(&self, actions: Vec<CacheAction>) {
        if actions.is_empty() {
            return;
        }
        {
            let mut state = lock(&self.state);
            state.pending = Some(actions);
            state.busy = true;
        }
        self.kick.notify_one();
    }
}

/// The engine's view of a Dragonfly pod; `set` is its StatefulSet, whose update
/// revision tells whether the pod runs the current template.
pub(crate) fn cache_pod(pod: Option<&Pod>, set: Option<&StatefulSet>) -> CachePod {
    let Some(pod) = pod else {
        return CachePod::default();
    };
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let labels = pod.labels();
    CachePod {
        exists: true,
        ready,
        deleting: pod.metadata.deletion_timestamp.is_some(),
        role_label: match labels.get(DRAGONFLY_ROLE_LABEL).map(String::as_str) {
            Some("master") => Some(CacheRole::Master),
            Some("replica") => Some(CacheRole::Replica),
            _ => None,
        },
        traffic: labels.get(DRAGONFLY_TRAFFIC_LABEL).map(String::as_str)
            == Some(DRAGONFLY_TRAFFIC_ENABLED),
        start_failure: start_failure(pod),
        outdated: outdated(pod, set),
    }
}

/// The pod's `controller-revision-hash` differs from its StatefulSet's update revision,
/// once the StatefulSet controller has observed the current spec (before that, the
/// update revision may be the old one).
fn outdated(pod: &Pod, set: Option<&StatefulSet>) -> bool {
    let Some(set) = set else {
        return false;
    };
    let Some(status) = set.status.as_ref() else {
        return false;
    };
    if status.observed_generation < set.metadata.generation {
        return false;
    }
    let Some(update) = status.update_revision.as_deref() else {
        return false;
    };
    pod.labels()
        .get("controller-revision-hash")
        .is_some_and(|rev| rev != update)
}

/// Why the Dragonfly container keeps exiting, when it does: waiting in
/// CrashLoopBackOff, or terminated with a non-zero code (the message of its last
/// termination, which carries Dragonfly's error, else the kubelet's reason).
fn start_failure(pod: &Pod) -> Option<String> {
    let container = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == crate::children::DRAGONFLY_CONTAINER)?;
    let state = container.state.as_ref();
    // A back-off after a clean exit is a restart, not a failure to start: the old
    // master exits 0 when it hands its role over by REPLTAKEOVER and the kubelet backs
    // off before starting it again.
    let exited_cleanly = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0);
    let crash_looping = !exited_cleanly
        && state
            .and_then(|s| s.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"));
    let failed_now = state
        .and_then(|s| s.terminated.as_ref())
        .filter(|t| t.exit_code != 0);
    if !crash_looping && failed_now.is_none() {
        return None;
    }
    let last = failed_now.or_else(|| {
        container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
    });
    Some(match last {
        Some(t) => match (&t.message, &t.reason) {
            (Some(message), _) if !message.is_empty() => {
                format!("exit code {}: {}", t.exit_code, message.trim())
            }
            (_, Some(reason)) => format!("exit code {} ({reason})", t.exit_code),
            _ => format!("exit code {}", t.exit_code),
        },
        None => "CrashLoopBackOff".to_string(),
    })
}

fn target(settings: &Settings, site: &str) -> DragonflyTarget {
    DragonflyTarget {
        host: names::dragonfly_pod_host(&settings.group, site, &settings.namespace),
        port: u16::try_from(DRAGONFLY_PORT).unwrap_or(6379),
        password: settings.password.clone(),
    }
}

async fn run(
    state: Arc<Mutex<State>>,
    kick: Arc<Notify>,
    client: Client,
    connector: SharedDragonflyConnector,
    indexes: Indexes,
    wake: Arc<Notify>,
) {
    let mut failing_since: BTreeMap<String, Millis> = BTreeMap::new();
    loop {
        let (settings, pending) = {
            let mut state = lock(&state);
            (state.settings.clone(), state.pending.take())
        };
        let Some(settings) = settings else {
            kick.notified().await;
            continue;
        };
        if let Some(actions) = pending {
            for action in &actions {
                tracing::info!(group = %settings.group, ?action, "acting on Dragonfly");
                if let Err(err) = carry_out(&client, &connector, &settings, action).await {
                    // The next decision sees the outcome in the probe and decides again.
                    tracing::warn!(group = %settings.group, %err, "a Dragonfly action failed");
                    break;
                }
            }
        }
        let probes = futures::future::join_all(settings.sites.iter().map(|site| {
            let connector = connector.clone();
            let target = target(&settings, site);
            let timeout = settings.probe_timeout;
            async move {
                let result = async {
                    let mut session =
                        DragonflySession::open(connector.as_ref(), &target, timeout).await?;
                    session.observe().await
                }
                .await;
                (site.clone(), result)
            }
        }))
        .await;
        let now = indexes.sightings.now();
        {
            let mut state = lock(&state);
            for (site, result) in probes {
                let probe = match result {
                    Ok(info) => {
                        failing_since.remove(&site);
                        CacheProbe::Answered(info)
                    }
                    Err(err) => {
                        tracing::debug!(group = %settings.group, %site, %err, "Dragonfly probe failed");
                        CacheProbe::Failing {
                            since: *failing_since.entry(site.clone()).or_insert(now),
                        }
                    }
                };
                state.probes.insert(site, probe);
            }
            state.probed = true;
            if state.pending.is_none() {
                state.busy = false;
            }
        }
        wake.notify_one();
        tokio::select! {
            () = kick.notified() => {}
            () = tokio::time::sleep(settings.probe_interval) => {}
        }
    }
}

async fn carry_out(
    client: &Client,
    connector: &SharedDragonflyConnector,
    settings: &Settings,
    action: &CacheAction,
) -> Result<(), CacheActError> {
    let command = |source| CacheActError::Command {
        action: action.clone(),
        source,
    };
    // Commands wait longer than a probe: a REPLICAOF or promotion must not be cut short.
    let timeout = settings.probe_timeout.max(Duration::from_secs(2));
    match action {
        CacheAction::Label {
            site,
            role,
            traffic,
        } => label(client, settings, site, *role, *traffic).await,
        CacheAction::ReplicaOf { site, master } => {
            let mut session =
                DragonflySession::open(connector.as_ref(), &target(settings, site), timeout)
                    .await
                    .map_err(command)?;
            let master = target(settings, master);
            session
                .replicaof(&master.host, master.port)
                .await
                .map_err(command)
        }
        CacheAction::PromoteInPlace { site } => {
            let mut session =
                DragonflySession::open(connector.as_ref(), &target(settings, site), timeout)
                    .await
                    .map_err(command)?;
            session.replicaof_no_one().await.map_err(command)
        }
        CacheAction::DeletePod { site } => delete_dragonfly_pod(
            client,
            &settings.namespace,
            &names::dragonfly_pod(&settings.group, site),
        )
        .await
        .map_err(CacheActError::Label),
        CacheAction::Takeover { site } => {
            let mut session =
                DragonflySession::open(connector.as_ref(), &target(settings, site), timeout)
                    .await
                    .map_err(command)?;
            session
                .repltakeover(TAKEOVER_SECONDS)
                .await
                .map_err(command)
        }
    }
}

async fn label(
    client: &Client,
    settings: &Settings,
    site: &str,
    role: CacheRole,
    traffic: bool,
) -> Result<(), CacheActError> {
    let traffic = if traffic {
        DRAGONFLY_TRAFFIC_ENABLED
    } else {
        DRAGONFLY_TRAFFIC_DISABLED
    };
    let pod = names::dragonfly_pod(&settings.group, site);
    set_dragonfly_labels(client, &settings.namespace, &pod, role.as_str(), traffic)
        .await
        .map_err(CacheActError::Label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
    };

    fn pod(waiting: Option<&str>, last_exit: Option<i32>) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: crate::children::DRAGONFLY_CONTAINER.into(),
                    state: Some(ContainerState {
                        waiting: waiting.map(|reason| ContainerStateWaiting {
                            reason: Some(reason.into()),
                            message: None,
                        }),
                        ..ContainerState::default()
                    }),
                    last_state: last_exit.map(|exit_code| ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code,
                            message: Some("s3 bucket not found".into()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn a_back_off_after_a_failed_start_is_a_failure_and_after_a_clean_exit_is_not() {
        assert_eq!(
            start_failure(&pod(Some("CrashLoopBackOff"), Some(1))).as_deref(),
            Some("exit code 1: s3 bucket not found")
        );
        // Unknown last state: still a crash loop.
        assert_eq!(
            start_failure(&pod(Some("CrashLoopBackOff"), None)).as_deref(),
            Some("CrashLoopBackOff")
        );
        // The old master exited 0 after REPLTAKEOVER: a restart, not a failure.
        assert_eq!(start_failure(&pod(Some("CrashLoopBackOff"), Some(0))), None);
        assert_eq!(start_failure(&pod(None, Some(1))), None);
    }
}
