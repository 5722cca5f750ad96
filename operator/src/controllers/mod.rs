//! The MysqlFailoverGroup controller: observe -> `engine::decide` -> act -> status.
//!
//! Watches fill in-memory indexes (`indexes`); one worker per group probes its sites
//! (`observe`), asks the engine, writes the status (one writer, merge patch, only when
//! changed), publishes Events and metrics, then carries out the actions (`act`) in
//! order, stopping at the first failure. Nothing is written without the operator's
//! leader lease. The worker reconciles again at the decision's deadline, at the next
//! probe, or at once when the group or its pods change.

pub(crate) mod accounts;
pub(crate) mod act;
pub(crate) mod backup;
pub mod cli;
pub(crate) mod dragonfly;
pub mod indexes;
mod leader_passes;
pub(crate) mod observe;
pub(crate) mod owned;
pub(crate) mod quiet_status;
pub(crate) mod status;
pub(crate) mod unreadable;
pub(crate) mod verification;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::api::{MysqlFailoverGroup, MysqlFailoverGroupStatus};
use crate::children::{self, BuildContext};
use crate::engine::lease::LeaseTiming;
use crate::engine::{self, EngineMemory, Knobs, Leadership, MysqlProbe, Now};
use crate::leader::{Elector, LeaderSettings};
use crate::metrics::{Metrics, Readiness, ReconcileResult};
use crate::production::events::EventPublisher;
use crate::production::kube::{apply_children, delete_children, patch_status};
use crate::seams::{SharedClock, SharedDragonflyConnector, SharedMysqlConnector};
use accounts::Credentials;
use act::Operations;
use indexes::{Indexes, WatchSettings};
use observe::Prober;

/// What this module calls directly (see `crate::rbac`).
pub const API_ACCESS: &[crate::rbac::ApiAccess] = &[crate::rbac::ApiAccess {
    group: "",
    resource: "secrets",
    verbs: &["get"],
    scope: crate::rbac::Scope::Watched,
    why: "the MySQL passwords in spec.mysql.credentialsSecret (read once per group, never logged)",
}];

/// `reportingController` of the operator's Events.
pub const REPORTING_CONTROLLER: &str = "bloodraven.shipstream.io/operator";

/// How soon a worker reconciles again while a phase advances step by step.
pub const STEP_INTERVAL: Duration = Duration::from_millis(100);

/// The operator's own settings (not any group's).
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// This replica's identity (its pod name): leader-lease holder and Event instance.
    pub identity: String,
    /// Namespace of the operator's leader Lease.
    pub leader_namespace: String,
    pub leader_lease: String,
    pub leader_timing: LeaseTiming,
    pub leader_renew_interval: Duration,
    pub watch: WatchSettings,
    pub build: BuildContext,
}

/// The transports: everything the controller talks to goes through these.
#[derive(Clone)]
pub struct ControllerDeps {
    pub client: Client,
    pub mysql: SharedMysqlConnector,
    /// Opens the Redis-protocol connections to each site's Dragonfly.
    pub dragonfly: SharedDragonflyConnector,
    /// Opens connections to the backup profiles' object stores (retention deletes the
    /// objects of the backups it expires).
    pub storage: crate::seams::object_storage::SharedStorageDialer,
    pub clock: SharedClock,
    pub metrics: Metrics,
    pub readiness: Readiness,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("MysqlFailoverGroup {group}: {source}")]
    Spec {
        group: String,
        #[source]
        source: engine::LeaseTimingError,
    },
    #[error("reading Secret {namespace}/{name} (spec.mysql.credentialsSecret): {source}")]
    Secret {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("Secret {namespace}/{name} (spec.mysql.credentialsSecret) {source}")]
    SecretKey {
        namespace: String,
        name: String,
        #[source]
        source: accounts::CredentialsError,
    },
    #[error("building the children of MysqlFailoverGroup {group}: {source}")]
    Build {
        group: String,
        #[source]
        source: children::BuildError,
    },
    #[error("serializing the children of MysqlFailoverGroup {group}: {source}")]
    Serialize {
        group: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Kube(#[from] crate::production::kube::KubeWriteError),
    #[error("MysqlFailoverGroup {group}: {source}")]
    Act {
        group: String,
        #[source]
        source: act::ActError,
    },
}

/// Shared by every worker.
struct Shared {
    deps: ControllerDeps,
    settings: ControllerSettings,
    indexes: Indexes,
    elector: Elector,
    events: EventPublisher,
}

/// What a group's worker keeps between reconciles.
#[derive(Default)]
struct GroupState {
    prober: Prober,
    memory: EngineMemory,
    /// (Secret name, what it holds).
    credentials: Option<(String, Credentials)>,
    /// Server UUID of the primary the replication account was last ensured on.
    replication_account_on: Option<String>,
    probes: BTreeMap<String, MysqlProbe>,
    last_probe: Option<Instant>,
    probe_now: bool,
    /// Our last status write, until the cache delivers it (read-your-writes).
    written: Option<status::WrittenStatus>,
    /// A decided status not written yet because only observations moved (quiet status).
    held: Option<quiet_status::HeldStatus>,
    /// When this process last wrote the group's status (operator's monotonic clock).
    last_status_write: Option<engine::Millis>,
    /// The Dragonfly probes and commands, while `spec.dragonfly` is set.
    cache: Option<dragonfly::CacheWorker>,
}

/// Runs the controller until `shutdown` completes: starts the watches and the leader
/// election, marks the process ready once the caches synced, and runs one worker per
/// group. On shutdown each worker finishes the reconcile it is in (and writes a status
/// it held back), then stops, and the leader lease is released.
pub async fn run(
    settings: ControllerSettings,
    deps: ControllerDeps,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut background = JoinSet::new();
    let indexes = Indexes::start(&deps.client, &settings.watch, &mut background);
    let elector = Elector::new(
        LeaderSettings {
            identity: settings.identity.clone(),
            timing: settings.leader_timing,
            renew_interval: settings.leader_renew_interval,
        },
        Api::<Lease>::namespaced(deps.client.clone(), &settings.leader_namespace),
        &settings.leader_lease,
        deps.clock.clone(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let elector = elector.clone();
        let metrics = deps.metrics.clone();
        let mut stop = stop_rx.clone();
        background.spawn(async move {
            elector
                .run(metrics, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
    }
    let shared = Arc::new(Shared {
        events: EventPublisher::new(
            deps.client.clone(),
            REPORTING_CONTROLLER,
            &settings.identity,
            deps.clock.clone(),
        ),
        deps,
        settings,
        indexes,
        elector,
    });
    tokio::pin!(shutdown);
    tokio::select! {
        () = shared.indexes.wait_ready() => {}
        () = &mut shutdown => {
            let _ = stop_tx.send(true);
            shared.elector.release().await;
            background.shutdown().await;
            return;
        }
    }
    shared.deps.readiness.set(true);
    tracing::info!(identity = %shared.settings.identity, "caches synced; controller running");
    background.spawn(leader_passes::run::<backup::BackupController>(
        shared.clone(),
        stop_rx.clone(),
    ));
    background.spawn(leader_passes::run::<verification::VerificationController>(
        shared.clone(),
        stop_rx.clone(),
    ));

    let mut workers: BTreeMap<(String, String), tokio::task::JoinHandle<()>> = BTreeMap::new();
    let mut unreadable = unreadable::UnreadableGroups::default();
    loop {
        let mut present = Vec::new();
        let mut unreadable_now = Vec::new();
        for object in shared.indexes.groups.state() {
            let key = (object.namespace().unwrap_or_default(), object.name_any());
            if let Err(error) = &object.group {
                // Not reconciled (its worker, if any, stops below); every other group is.
                unreadable_now.push(key);
                if unreadable.needs_report(&object) {
                    unreadable::report(
                        &shared.deps.client,
                        &shared.events,
                        &object,
                        error,
                        shared.deps.clock.now(),
                        shared.elector.is_leader(),
                    )
                    .await;
                }
                continue;
            }
            present.push(key.clone());
            if workers.get(&key).is_none_or(|w| w.is_finished()) {
                let shared = shared.clone();
                let stop = stop_rx.clone();
                let reference = ObjectRef::new(&key.1).within(&key.0);
                workers.insert(key, tokio::spawn(group_worker(shared, reference, stop)));
            }
        }
        let gone: Vec<_> = workers
            .keys()
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(worker) = workers.remove(&key) {
                worker.abort();
            }
            shared.deps.metrics.forget_group(&key.0, &key.1);
            shared.indexes.wakeups.forget(&key.0, &key.1);
        }
        unreadable.retain(&unreadable_now);
        tokio::select! {
            () = &mut shutdown => break,
            () = shared.indexes.changed.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    tracing::info!("shutting down: finishing the reconciles in progress");
    shared.deps.readiness.set(false);
    let _ = stop_tx.send(true);
    for (_, worker) in workers {
        let _ = worker.await;
    }
    // Every write of this replica is done: give the leader lease up, so that the next
    // replica leads within its next election round rather than after the whole term.
    shared.elector.release().await;
    background.shutdown().await;
}

async fn group_worker(
    shared: Arc<Shared>,
    reference: ObjectRef<indexes::GroupObject>,
    mut stop: watch::Receiver<bool>,
) {
    let mut state = GroupState {
        probe_now: true,
        ..GroupState::default()
    };
    let wake = shared.indexes.wakeups.of(
        reference.namespace.as_deref().unwrap_or_default(),
        &reference.name,
    );
    shared.deps.metrics.init_group_counters(
        reference.namespace.as_deref().unwrap_or_default(),
        &reference.name,
    );
    let mut failures: u32 = 0;
    let mut last_error: Option<String> = None;
    loop {
        // Gone, or no longer readable (the controller's loop reports that).
        let Some(Ok(group)) = shared
            .indexes
            .groups
            .get(&reference)
            .map(|o| o.group.clone())
        else {
            return;
        };
        let namespace = group.namespace().unwrap_or_default();
        let name = group.name_any();
        let started = Instant::now();
        // One span per pass: every log line of the pass carries the group.
        let span = tracing::info_span!("reconcile", group = %name, %namespace);
        if *stop.borrow() {
            flush_held_status(&shared, &group, &mut state).await;
            return;
        }
        let wait = match reconcile(&shared, &group, &mut state)
            .instrument(span.clone())
            .await
        {
            Ok(wait) => {
                shared.deps.metrics.reconciled(
                    &namespace,
                    &name,
                    ReconcileResult::success,
                    started.elapsed(),
                );
                failures = 0;
                last_error = None;
                wait
            }
            Err(err) => {
                // The same error again is logged at debug only: a missing Secret must
                // not print a warning per group forever.
                let text = err.to_string();
                if last_error.as_deref() == Some(text.as_str()) {
                    span.in_scope(|| tracing::debug!(%err, "reconcile failed again"));
                } else {
                    span.in_scope(|| tracing::warn!(%err, "reconcile failed"));
                }
                last_error = Some(text);
                shared.deps.metrics.reconciled(
                    &namespace,
                    &name,
                    ReconcileResult::error,
                    started.elapsed(),
                );
                state.probe_now = true;
                failures = failures.saturating_add(1);
                error_backoff(failures)
            }
        };
        tokio::select! {
            _ = stop.changed() => {
                flush_held_status(&shared, &group, &mut state).await;
                return;
            }
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// On shutdown, writes the status held back by quiet status (fresher GTID sets), so
/// that the next leader's stale-candidate guard starts from what this one last saw.
async fn flush_held_status(shared: &Shared, group: &MysqlFailoverGroup, state: &mut GroupState) {
    let Some(held) = state.held.take() else {
        return;
    };
    if !shared.elector.is_leader() {
        return;
    }
    let mut on_server = group.clone();
    on_server.status = held.published;
    if let Err(err) = patch_status(
        &shared.deps.client,
        &on_server,
        &held.status,
        &shared.deps.metrics,
    )
    .await
    {
        tracing::warn!(%err, group = %group.name_any(), "writing the held status on shutdown failed");
    }
}

/// How long a worker waits after its `failures`-th failed pass in a row: 500 ms
/// doubling to 30 s (no jitter: a handful of groups needs none, and a seeded
/// simulation needs the same delays on every run). A group or pod change still wakes
/// the worker at once.
pub(crate) fn error_backoff(failures: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);
    let doublings = failures.saturating_sub(1).min(16);
    FIRST.saturating_mul(1 << doublings).min(MAX)
}

async fn credentials(
    client: &Client,
    group: &MysqlFailoverGroup,
    cached: &mut Option<(String, Credentials)>,
) -> Result<Credentials, ReconcileError> {
    let name = &group.spec.mysql.credentials_secret;
    if let Some((secret, credentials)) = cached
        && secret == name
    {
        return Ok(credentials.clone());
    }
    let namespace = group.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(name)
        .await
        .map_err(|source| ReconcileError::Secret {
            namespace: namespace.clone(),
            name: name.clone(),
            source: Box::new(source),
        })?;
    let credentials =
        Credentials::from_secret(&secret).map_err(|source| ReconcileError::SecretKey {
            namespace,
            name: name.clone(),
            source,
        })?;
    *cached = Some((name.clone(), credentials.clone()));
    Ok(credentials)
}

/// One reconcile of one group; returns how long to wait before the next.
async fn reconcile(
    shared: &Shared,
    group: &MysqlFailoverGroup,
    state: &mut GroupState,
) -> Result<Duration, ReconcileError> {
    let deps = &shared.deps;
    let indexes = &shared.indexes;
    // Read-your-writes: until the watch delivers our last status write, decide from
    // what we wrote (see `status::status_to_act_on`). A replica that is not leading
    // forgets it: another leader may write after us.
    if !shared.elector.is_leader() {
        state.written = None;
        state.held = None;
        state.last_status_write = None;
    }
    let (published, keep) = status::status_to_act_on(
        group.resource_version().as_deref(),
        group.status.as_ref(),
        state.written.as_ref(),
    );
    if !keep {
        state.written = None;
    }
    // Quiet status: decide from the status held back (fresher GTID sets) while the
    // published one is still the one it was held against.
    let deciding = quiet_status::status_to_decide_from(published.clone(), state.held.as_ref());
    if state
        .held
        .as_ref()
        .is_some_and(|held| held.published != published)
    {
        state.held = None;
    }
    let viewed;
    let group = if deciding != group.status {
        let mut copy = group.clone();
        copy.status = deciding;
        viewed = copy;
        &viewed
    } else {
        group
    };
    let name = group.name_any();
    let namespace = group.namespace().unwrap_or_default();
    if group.meta().deletion_timestamp.is_some() {
        // Children go with the group through their ownerReferences.
        return Ok(Duration::from_secs(5));
    }
    let knobs = Knobs::from_spec(&group.spec).map_err(|source| ReconcileError::Spec {
        group: name.clone(),
        source,
    })?;
    let probe_interval = group.spec.failover.probe_interval.as_std();
    let probe_timeout = group.spec.failover.probe_timeout.as_std();
    let credentials = credentials(&deps.client, group, &mut state.credentials).await?;
    let password = credentials.root_password.clone();

    // Children first: the writer Lease, the StatefulSets and Services must exist before
    // anything can be probed. The DNSEndpoint is built for the site it points at now:
    // only the engine's UpdateDns moves it.
    let dns_now = observe::dns_target(indexes, group);
    if shared.elector.is_leader() {
        let built = children::build(group, dns_now.as_deref(), &shared.settings.build).map_err(
            |source| ReconcileError::Build {
                group: name.clone(),
                source,
            },
        )?;
        let objects = built
            .objects()
            .map_err(|source| ReconcileError::Serialize {
                group: name.clone(),
                source,
            })?;
        apply_children(&deps.client, &objects, indexes).await?;
        let existing = owned::existing_children(indexes, &namespace);
        let unwanted = children::prune::unwanted(group, &existing, &objects);
        for child in delete_children(&deps.client, &unwanted).await? {
            tracing::info!(group = %name, %child, "deleted a child the spec no longer asks for");
        }
    }

    // Probes, on the probe interval, or at once while a phase advances. The active
    // site is probed last, so that its answer is the freshest: a replica's set may only
    // ever look behind the primary's, never spuriously ahead of it.
    let due = state.probe_now
        || state
            .last_probe
            .is_none_or(|at| at.elapsed() >= probe_interval);
    if due {
        let started = Instant::now();
        let active = group.status.as_ref().and_then(|s| s.active_site.clone());
        let mut order: Vec<&str> = group.spec.sites.iter().map(|s| s.name.as_str()).collect();
        order.sort_by_key(|site| Some(*site) == active.as_deref());
        for site in order {
            let target = observe::mysql_target(group, site, &password);
            let now = indexes.sightings.now();
            let probe = match state
                .prober
                .probe(&deps.mysql, site, &target, probe_timeout, now)
                .await
            {
                Ok(status) => {
                    let mut observation = observe::mysql_observation(group, &status, now);
                    // Only a site being recloned is asked how its clone went: one more
                    // statement per probe, for the few probes that need it.
                    let recloning = group.status.as_ref().is_some_and(|s| {
                        s.sites.iter().any(|entry| {
                            entry.name == site
                                && entry.recovery_state
                                    == Some(crate::api::RecoveryState::Recloning)
                        })
                    });
                    if recloning {
                        observation.clone_status = state
                            .prober
                            .clone_status(site, probe_timeout)
                            .await
                            .map(Box::new);
                    }
                    MysqlProbe::Answered(observation)
                }
                Err(since) => MysqlProbe::Failing { since },
            };
            state.probes.insert(site.to_string(), probe);
        }
        state.last_probe = Some(Instant::now());
        deps.metrics.probed(&namespace, &name, started.elapsed());
    }

    let leadership = if shared.elector.is_leader() {
        Leadership::Leader
    } else {
        Leadership::NotLeader
    };
    // The caches are probed by their own worker; this pass reads its latest view.
    let cache_observation = if group.spec.dragonfly.is_some() {
        let worker = state.cache.get_or_insert_with(|| {
            dragonfly::CacheWorker::start(
                deps.client.clone(),
                deps.dragonfly.clone(),
                indexes.clone(),
                indexes.wakeups.of(&namespace, &name),
            )
        });
        worker.configure(group, credentials.dragonfly_password.clone());
        Some(worker.observation(group, indexes))
    } else {
        state.cache = None;
        None
    };
    let snapshot = observe::snapshot(
        indexes,
        group,
        knobs,
        state.probes.clone(),
        leadership,
        state.memory.clone(),
        cache_observation,
    );
    let now = Now {
        mono: indexes.sightings.now(),
        wall: deps.clock.now(),
    };
    let decision = engine::decide(&snapshot, now);
    let Some(new_status) = decision.status.clone() else {
        // A follower decides nothing; the leader's gauges are the group's. A replica
        // that lost leadership must not keep serving its last values (issue 12).
        status::publish_gauges_if_leader(&deps.metrics, &namespace, &name, None);
        state.probe_now = false;
        return Ok(probe_interval);
    };

    // Status first: a restarted operator resumes from it.
    let previous = group.status.clone().unwrap_or_default();
    let mut new_status = new_status;
    new_status.dns = status::dns_status(
        group.spec.dns.as_ref(),
        dns_now.as_deref(),
        previous.dns.as_ref(),
        now.wall,
    );
    let new_status = status::with_conditions(
        new_status,
        &previous,
        &decision.health_reason,
        group.meta().generation,
        now.wall,
    );
    let dragonfly_config = engine::dragonfly::config_verdict(group.spec.dragonfly.as_ref());
    let new_status = status::with_dragonfly_config(
        new_status,
        &previous,
        dragonfly_config.as_ref(),
        group.meta().generation,
        now.wall,
    );
    let config_event = dragonfly_config
        .as_ref()
        .and_then(|v| engine::dragonfly::config_warning_event(v, &previous.conditions));
    if shared.elector.is_leader() {
        match quiet_status::status_write(
            published.as_ref(),
            &new_status,
            state.last_status_write,
            now.mono,
        ) {
            quiet_status::StatusWrite::Unchanged => state.held = None,
            quiet_status::StatusWrite::Hold => {
                state.held = Some(quiet_status::HeldStatus {
                    published: published.clone(),
                    status: new_status.clone(),
                });
            }
            quiet_status::StatusWrite::Now => {
                // The patch is computed against what the API server holds, not
                // against the held status the decision started from.
                let mut on_server = group.clone();
                on_server.status = published.clone();
                if let Some(resource_version) =
                    patch_status(&deps.client, &on_server, &new_status, &deps.metrics).await?
                {
                    state.written = Some(status::WrittenStatus {
                        resource_version: Some(resource_version).filter(|v| !v.is_empty()),
                        status: new_status.clone(),
                    });
                }
                state.last_status_write = Some(now.mono);
                state.held = None;
            }
        }
    }
    status::publish_gauges_if_leader(
        &deps.metrics,
        &namespace,
        &name,
        shared.elector.is_leader().then_some(&new_status),
    );
    if shared.elector.is_leader() {
        deps.metrics.set_writer_lease_renewal_age(
            &namespace,
            &name,
            status::writer_lease_renewal_age(&snapshot.lease, now.mono),
        );
    }
    let regarding = regarding(group);
    for event in decision.events.iter().chain(config_event.as_ref()) {
        if let Err(err) = shared.events.publish(event, &regarding).await {
            tracing::warn!(%err, "publishing an Event failed");
        }
    }
    for intent in &decision.metrics {
        deps.metrics.record(&namespace, &name, intent);
    }
    // Dragonfly's actions run in the cache worker, beside MySQL's and never before them.
    if shared.elector.is_leader()
        && let Some(worker) = &state.cache
    {
        worker.submit(decision.cache_actions.clone());
    }

    let mut operations = Operations {
        client: &deps.client,
        group,
        indexes,
        prober: &mut state.prober,
        connector: &deps.mysql,
        clock: &deps.clock,
        password: &password,
        replication: &credentials.replication,
        connect_timeout: probe_timeout,
        latest_lease: None,
    };
    let mut failure = None;
    for action in &decision.actions {
        if !shared.elector.is_leader() {
            tracing::warn!(group = %name, "lost leadership; stopping before {action:?}");
            break;
        }
        tracing::info!(group = %name, %namespace, ?action, "acting");
        if let Err(source) = operations.carry_out(action).await {
            failure = Some(ReconcileError::Act {
                group: name.clone(),
                source,
            });
            break;
        }
    }
    // The replication account, on the primary once it is writable (from there it
    // replicates). A failure is logged and retried on a later reconcile: replicas keep
    // retrying their connection meanwhile, and nothing else waits on it.
    if failure.is_none()
        && shared.elector.is_leader()
        && let Some((site, uuid)) = accounts::account_site(
            new_status.active_site.as_deref(),
            &state.probes,
            state.replication_account_on.as_deref(),
        )
    {
        match operations.set_up_primary(&site).await {
            Ok(()) => {
                tracing::info!(group = %name, %site, user = %credentials.replication.user,
                    "replication account ensured and events enabled on the primary");
                state.replication_account_on = Some(uuid);
            }
            Err(err) => tracing::warn!(group = %name, %site, %err,
                "setting up the primary (replication account, events) failed; retrying later"),
        }
    }
    state.memory = decision.memory.clone();
    state.probe_now = decision.requeue_soon || !decision.actions.is_empty();
    if let Some(err) = failure {
        return Err(err);
    }
    let mut wait = if state.probe_now {
        STEP_INTERVAL
    } else {
        probe_interval
    };
    if let Some(deadline) = decision.next_deadline {
        wait = wait.min(
            deadline
                .since(indexes.sightings.now())
                .max(Duration::from_millis(1)),
        );
    }
    Ok(wait)
}

fn regarding(group: &MysqlFailoverGroup) -> ObjectReference {
    ObjectReference {
        api_version: Some(MysqlFailoverGroup::api_version(&()).to_string()),
        kind: Some(MysqlFailoverGroup::kind(&()).to_string()),
        name: Some(group.name_any()),
        namespace: group.namespace(),
        uid: group.uid(),
        ..ObjectReference::default()
    }
}

/// The status a group shows before the operator wrote one.
pub fn initial_status() -> MysqlFailoverGroupStatus {
    MysqlFailoverGroupStatus::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: a missing Secret used to mean a GET every 500 ms per group, forever.
    #[test]
    fn failed_passes_back_off_exponentially_to_thirty_seconds() {
        let ms = |n| error_backoff(n).as_millis();
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 7, 8, 100, u32::MAX].map(ms),
            [
                500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000
            ]
        );
    }
}
