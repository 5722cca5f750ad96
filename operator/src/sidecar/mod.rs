//! `bloodraven sidecar`: the fencing agent beside each mysqld. It renews the writer
//! lease while its site holds it and keeps its mysqld read-only unless it holds a fresh
//! lease *and* the operator's writable grant (docs/design.md "Safety assumptions"). Each tick is
//! observe (lease, mysqld) -> decide ([`decide`], pure) -> act (renew, fence, lift).

pub(crate) mod decide;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde::Serialize;
use tokio::time::Instant;

use crate::children::{SIDECAR_PASSWORD_ENV, names};
use crate::engine::lease::{LeaseTiming, LeaseTimingError};
use crate::engine::time::Millis;
use crate::production::lease::{self as lease_object, LeaseWriteError};
use crate::seams::mysql::error_codes;
use crate::seams::{
    CloneState, MysqlError, MysqlSession, MysqlTarget, ReadOnlyMode, SharedClock,
    SharedMysqlConnector,
};
use decide::{
    FenceAttempt, FenceNext, FenceReason, KnownLease, LeaseEvent, MysqlAction, MysqldView,
    SidecarMemory, SidecarSettings, after_fence_attempt, mysql_action, next_tick_in, renewal_due,
    renewal_timeout, writable_allowed,
};

/// A password read from the environment. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Password {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// The sidecar's command line, as `children::sidecar_args` writes it.
#[derive(Debug, Clone, clap::Args)]
pub struct SidecarArgs {
    /// The MysqlFailoverGroup this pod belongs to.
    #[arg(long)]
    pub group: String,
    /// This pod's site.
    #[arg(long)]
    pub site: String,
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    #[arg(long, default_value = "127.0.0.1")]
    pub mysql_host: String,
    #[arg(long, default_value_t = 3306)]
    pub mysql_port: u16,
    #[arg(long, default_value = "root")]
    pub mysql_user: String,
    /// From the group's credentials Secret; never on the command line.
    #[arg(long, env = SIDECAR_PASSWORD_ENV, hide_env_values = true)]
    pub mysql_password: Password,
    #[arg(long)]
    pub lease_duration: crate::api::Duration,
    #[arg(long)]
    pub lease_renew_interval: crate::api::Duration,
    #[arg(long)]
    pub lease_safety_margin: crate::api::Duration,
    /// Address of `/healthz` and `/status`.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("sidecar: cannot reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("sidecar: cannot serve /healthz on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("sidecar for site {site}: {source}")]
    Timing {
        site: String,
        #[source]
        source: LeaseTimingError,
    },
}

impl SidecarArgs {
    pub fn settings(&self) -> Result<SidecarSettings, SidecarError> {
        let timing = LeaseTiming::new(
            self.lease_duration.as_std(),
            self.lease_safety_margin.as_std(),
        )
        .map_err(|source| SidecarError::Timing {
            site: self.site.clone(),
            source,
        })?;
        Ok(SidecarSettings {
            site: self.site.clone(),
            timing,
            renew_interval: self.lease_renew_interval.as_std(),
        })
    }

    fn mysql_target(&self) -> MysqlTarget {
        MysqlTarget {
            host: self.mysql_host.clone(),
            port: self.mysql_port,
            user: self.mysql_user.clone(),
            password: self.mysql_password.0.clone(),
        }
    }
}

/// How often the loop runs: twice per renew interval, within [100 ms, 1 s], so that a
/// grant or a lost holdership is acted on well within one renewal.
pub fn tick_interval(renew_interval: Duration) -> Duration {
    (renew_interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// What `/status` shows.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    pub site: String,
    pub lease: Option<KnownLease>,
    /// Milliseconds until the fence deadline of the last acknowledged renewal
    /// (negative: past it); absent when none.
    pub fence_in_ms: Option<i64>,
    pub writable_allowed: bool,
    pub fence_reason: Option<FenceReason>,
    pub mysql_mode: Option<ReadOnlyMode>,
    pub last_action: Option<MysqlAction>,
    pub last_error: Option<String>,
    pub ticks: u64,
    #[serde(skip)]
    pub last_tick: Option<Instant>,
}

pub type SharedSidecarStatus = Arc<Mutex<SidecarStatus>>;

/// `/healthz`: 200 while the loop has ticked recently (a stuck loop cannot fence, so
/// the kubelet should restart it); `/status`: [`SidecarStatus`] as JSON.
pub fn router(status: SharedSidecarStatus, stale_after: Duration) -> Router {
    let health = status.clone();
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let fresh = health
                    .lock()
                    .ok()
                    .and_then(|s| s.last_tick)
                    .is_some_and(|t| t.elapsed() < stale_after);
                async move {
                    if fresh {
                        (StatusCode::OK, "ok").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "sidecar loop stalled").into_response()
                    }
                }
            }),
        )
        .route(
            "/status",
            get(move || {
                let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
                async move { Json(snapshot) }
            }),
        )
}

/// The transports the sidecar uses.
#[derive(Clone)]
pub struct SidecarDeps {
    pub client: kube::Client,
    pub mysql: SharedMysqlConnector,
    pub clock: SharedClock,
}

fn known(lease: &Lease, site: &str) -> KnownLease {
    KnownLease {
        holder: lease_object::holder(lease).map(String::from),
        granted_to_me: lease_object::grants_writable(lease, site),
    }
}

/// Production wiring: the in-cluster Kubernetes client, the MySQL protocol client over
/// TCP, the machine's clock; serves `/healthz` and `/status` on `--listen`; stops on SIGTERM or Ctrl-C.
pub async fn run_in_cluster(args: SidecarArgs) -> Result<(), SidecarError> {
    let settings = args.settings()?;
    let client = kube::Client::try_default().await?;
    let mysql = Arc::new(crate::production::mysql::MysqlProtocolConnector::tcp(
        crate::seams::MysqlTimeouts {
            connect: settings.renew_interval,
            request: settings.renew_interval,
        },
    ));
    let deps = SidecarDeps {
        client,
        mysql,
        clock: Arc::new(crate::seams::SystemClock),
    };
    let status = SharedSidecarStatus::default();
    let stale_after = tick_interval(settings.renew_interval) * 3 + settings.renew_interval * 2;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| SidecarError::Listen {
            address: args.listen,
            source,
        })?;
    let app = router(status.clone(), stale_after);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(%err, "sidecar HTTP server stopped");
        }
    });
    run(args, deps, status, shutdown_signal()).await
}

/// Completes on SIGTERM or Ctrl-C (the kubelet stops a pod with SIGTERM).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reads the read-only flags alone and, when they say `read_only` without
/// `super_read_only`, whether a CLONE is running (the only case it changes the
/// decision). A read that fails on an open session is tried once more on a fresh
/// connection (someone's KILL, a restart): unknown flags mean "fence and kill every
/// client", which must not follow from a stale connection alone.
async fn observe_mysqld(
    connector: &dyn crate::seams::MysqlConnector,
    target: &MysqlTarget,
    session: &mut Option<Box<dyn MysqlSession>>,
    errors: &mut Vec<String>,
) -> MysqldView {
    let mut view = MysqldView {
        mode: None,
        clone_in_progress: false,
    };
    for _ in 0..2 {
        let s = match session {
            Some(s) => s,
            None => match connector.connect(target).await {
                Ok(s) => session.insert(s),
                Err(err) => {
                    errors.push(err.to_string());
                    return view;
                }
            },
        };
        match s.read_only_mode().await {
            Ok(mode) => {
                view.mode = Some(mode);
                break;
            }
            Err(err) => {
                errors.push(err.to_string());
                *session = None;
            }
        }
    }
    let Some(s) = session.as_mut() else {
        return view;
    };
    if view.mode == Some(ReadOnlyMode::ReadOnly) {
        match s.clone_state().await {
            Ok(state) => view.clone_in_progress = state == Some(CloneState::InProgress),
            // Not knowing means no exemption: the fence goes up.
            Err(err) => errors.push(err.to_string()),
        }
    }
    view
}

fn fence_attempt(result: &Result<(), MysqlError>) -> FenceAttempt {
    match result {
        Ok(()) => FenceAttempt::Held,
        Err(err) if err.server_code() == Some(error_codes::LOCK_WAIT_TIMEOUT) => {
            FenceAttempt::LockWaitTimedOut
        }
        // Cut off by the request timeout while waiting (for the lock, as a rule).
        Err(MysqlError::Timeout { .. }) => FenceAttempt::LockWaitTimedOut,
        Err(MysqlError::Connect { .. } | MysqlError::ConnectionLost { .. }) => {
            FenceAttempt::ConnectionFailed
        }
        Err(_) => FenceAttempt::Refused,
    }
}

/// `super_read_only = ON`, then kill every client connection. When the SET cannot get
/// the global read lock, the clients holding it are killed from a second connection
/// and the SET is tried again there ([`decide::after_fence_attempt`]); the session
/// left behind is whichever connection still works. Public so that the simulation's
/// MySQL model tests can run this exact fence against the modelled lock wait.
pub async fn fence(
    connector: &dyn crate::seams::MysqlConnector,
    target: &MysqlTarget,
    session: &mut Option<Box<dyn MysqlSession>>,
) -> Result<(), MysqlError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match session.as_mut() {
            Some(s) => s.set_read_only(ReadOnlyMode::SuperReadOnly).await,
            None => match connector.connect(target).await {
                Ok(s) => {
                    session
                        .insert(s)
                        .set_read_only(ReadOnlyMode::SuperReadOnly)
                        .await
                }
                Err(err) => Err(err),
            },
        };
        match after_fence_attempt(fence_attempt(&result), attempt) {
            FenceNext::KillClients => {
                let Some(s) = session.as_mut() else {
                    return Ok(());
                };
                // Open transactions must not commit after the fence.
                return match s.kill_client_connections().await {
                    Ok(_) => Ok(()),
                    Err(err) => {
                        *session = None;
                        Err(err)
                    }
                };
            }
            FenceNext::KillBlockersAndRetry => {
                // The waiting connection may be killed along with the blockers: the
                // second connection carries on.
                let mut second = connector.connect(target).await?;
                let killed = second.kill_client_connections().await?;
                tracing::warn!(
                    killed,
                    "fence could not get the global read lock: killed client connections"
                );
                *session = Some(second);
            }
            FenceNext::ReconnectAndRetry => *session = None,
            FenceNext::GiveUp => {
                *session = None;
                return result;
            }
        }
    }
}

/// Runs the sidecar loop until `shutdown` completes.
pub async fn run(
    args: SidecarArgs,
    deps: SidecarDeps,
    status: SharedSidecarStatus,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SidecarError> {
    let settings = args.settings()?;
    let leases: Api<Lease> = Api::namespaced(deps.client.clone(), &args.namespace);
    let lease_name = names::writer_lease(&args.group);
    let target = args.mysql_target();
    let tick = tick_interval(settings.renew_interval);
    let origin = Instant::now();
    let now = || Millis::from_instant(origin, Instant::now());

    let mut memory = SidecarMemory::default();
    let mut last_lease: Option<Lease> = None;
    let mut session: Option<Box<dyn MysqlSession>> = None;
    let mut holder_since: Option<Millis> = None;
    tokio::pin!(shutdown);
    loop {
        let mut errors = Vec::new();

        // Observe the lease, renewing it when due (the renewal's answer is the read).
        let started = now();
        let mut lease_read = false;
        match (&last_lease, renewal_due(&settings, &memory, started)) {
            (Some(current), true) => {
                memory.renewal_attempted(started);
                let renewed = lease_object::renewed(current, deps.clock.now());
                let wait = renewal_timeout(&settings, &memory, started);
                let event = match tokio::time::timeout(
                    wait,
                    lease_object::replace_guarded(&leases, &renewed),
                )
                .await
                {
                    Ok(Ok(lease)) => {
                        let view = known(&lease, &settings.site);
                        last_lease = Some(lease);
                        LeaseEvent::RenewalSucceeded {
                            started,
                            lease: view,
                        }
                    }
                    Ok(Err(LeaseWriteError::Conflict { latest, .. })) => {
                        let view = known(&latest, &settings.site);
                        last_lease = Some(*latest);
                        LeaseEvent::RenewalConflict { latest: view }
                    }
                    Ok(Err(err)) => {
                        errors.push(err.to_string());
                        LeaseEvent::RenewalFailed
                    }
                    Err(_) => {
                        errors.push(format!(
                            "renewing Lease {lease_name} timed out after {wait:?}"
                        ));
                        LeaseEvent::RenewalFailed
                    }
                };
                memory.record(&settings, event);
            }
            _ => {
                let event =
                    match tokio::time::timeout(settings.renew_interval, leases.get(&lease_name))
                        .await
                    {
                        Ok(Ok(lease)) => {
                            let view = known(&lease, &settings.site);
                            last_lease = Some(lease);
                            lease_read = true;
                            LeaseEvent::Read(view)
                        }
                        Ok(Err(err)) => {
                            errors.push(format!("reading Lease {lease_name}: {err}"));
                            LeaseEvent::ReadFailed
                        }
                        Err(_) => {
                            errors.push(format!("reading Lease {lease_name} timed out"));
                            LeaseEvent::ReadFailed
                        }
                    };
                memory.record(&settings, event);
            }
        }

        // Observe mysqld (reconnecting when needed), decide, act.
        let view = observe_mysqld(deps.mysql.as_ref(), &target, &mut session, &mut errors).await;
        let mode = view.mode;
        let decided_at = now();
        let action = mysql_action(&settings, &memory, view, decided_at);
        match &action {
            MysqlAction::Nothing => {}
            MysqlAction::Fence(reason) => {
                tracing::warn!(site = %settings.site, ?reason, "fencing mysqld");
                if let Err(err) = fence(deps.mysql.as_ref(), &target, &mut session).await {
                    errors.push(err.to_string());
                }
            }
            MysqlAction::LiftFence => {
                if let Some(s) = session.as_mut() {
                    tracing::info!(site = %settings.site, "lifting the fence: lease holder with the operator's grant");
                    if let Err(err) = s.set_read_only(ReadOnlyMode::Writable).await {
                        errors.push(err.to_string());
                        session = None;
                    }
                }
            }
        }

        if let Ok(mut shown) = status.lock() {
            let allowed = writable_allowed(&settings, &memory, decided_at);
            shown.site = settings.site.clone();
            shown.lease = memory.known.clone();
            shown.fence_in_ms = memory.lease.fence_at(&settings.timing).map(|fence| {
                i64::try_from(fence.0).unwrap_or(i64::MAX)
                    - i64::try_from(decided_at.0).unwrap_or(i64::MAX)
            });
            shown.writable_allowed = allowed.is_ok();
            shown.fence_reason = allowed.err();
            shown.mysql_mode = mode;
            if action != MysqlAction::Nothing {
                shown.last_action = Some(action);
            }
            shown.last_error = errors.pop();
            shown.ticks += 1;
            shown.last_tick = Some(Instant::now());
        }

        // Since when this sidecar has seen its site named holder (for `next_tick_in`).
        let named_holder = memory
            .known
            .as_ref()
            .is_some_and(|k| k.holder.as_deref() == Some(settings.site.as_str()));
        holder_since = if named_holder {
            holder_since.or(Some(decided_at))
        } else {
            None
        };
        // Sooner than a tick only right after the lease moved here.
        let wait = next_tick_in(&settings, &memory, now(), lease_read, holder_since, tick);
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SidecarArgs,
    }

    #[test]
    fn parses_exactly_the_arguments_the_statefulset_gives_it() {
        let group = crate::children::tests::playground();
        let owner = crate::children::Owner::of(&group).unwrap();
        let mut argv = vec!["bloodraven".to_string()];
        argv.extend(
            crate::children::sidecar_args(&owner, &group, "iad")
                .into_iter()
                .skip(1),
        );
        argv.push("--namespace=bp".into());
        argv.push("--mysql-password=hunter2".into());
        let cli = Cli::try_parse_from(argv).unwrap();
        assert_eq!(cli.args.group, "playground");
        assert_eq!(cli.args.site, "iad");
        // The administrative interface, not the client port.
        assert_eq!(cli.args.mysql_port, crate::children::ADMIN_PORT);
        let settings = cli.args.settings().unwrap();
        assert_eq!(settings.timing.duration(), Duration::from_secs(5));
        assert_eq!(settings.renew_interval, Duration::from_secs(1));
        assert!(!format!("{:?}", cli.args).contains("hunter2"));
    }

    /// A mysqld whose global read lock a client holds until its connection is killed
    /// (`releases_on_kill`), recording what the sidecar does to it.
    #[derive(Clone, Default)]
    struct LockedServer {
        lock_held: Arc<Mutex<bool>>,
        releases_on_kill: bool,
        log: Arc<Mutex<Vec<&'static str>>>,
    }

    impl LockedServer {
        fn note(&self, what: &'static str) {
            self.log.lock().unwrap().push(what);
        }
    }

    fn not_used<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, MysqlError>> {
        Box::pin(async {
            Err(MysqlError::Protocol {
                address: "fake".into(),
                operation: "not used by the fence",
                message: String::new(),
            })
        })
    }

    use crate::gtid::GtidSet;
    use crate::seams::{CloneDonor, GtidWait, MysqlStatus, ReplicationAccount, ReplicationSource};
    use futures::future::BoxFuture;

    impl MysqlSession for LockedServer {
        fn address(&self) -> &str {
            "fake:33062"
        }
        fn set_read_only(&mut self, mode: ReadOnlyMode) -> BoxFuture<'_, Result<(), MysqlError>> {
            assert_eq!(mode, ReadOnlyMode::SuperReadOnly);
            let held = *self.lock_held.lock().unwrap();
            self.note(if held {
                "SET: lock wait timeout"
            } else {
                "SET: fenced"
            });
            Box::pin(async move {
                if held {
                    Err(MysqlError::Server {
                        address: "fake".into(),
                        operation: "SET GLOBAL read_only",
                        code: error_codes::LOCK_WAIT_TIMEOUT,
                        message: "Lock wait timeout exceeded".into(),
                    })
                } else {
                    Ok(())
                }
            })
        }
        fn kill_client_connections(&mut self) -> BoxFuture<'_, Result<u64, MysqlError>> {
            self.note("KILL clients");
            if self.releases_on_kill {
                *self.lock_held.lock().unwrap() = false;
            }
            Box::pin(async { Ok(1) })
        }
        fn observe(&mut self) -> BoxFuture<'_, Result<MysqlStatus, MysqlError>> {
            not_used()
        }
        fn stop_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
            not_used()
        }
        fn start_replica(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
            not_used()
        }
        fn reset_replica_all(&mut self) -> BoxFuture<'_, Result<(), MysqlError>> {
            not_used()
        }
        fn change_source<'a>(
            &'a mut self,
            _: &'a ReplicationSource,
        ) -> BoxFuture<'a, Result<(), MysqlError>> {
            not_used()
        }
        fn set_source_delay(&mut self, _: u32) -> BoxFuture<'_, Result<(), MysqlError>> {
            not_used()
        }
        fn wait_for_executed_gtid_set<'a>(
            &'a mut self,
            _: &'a GtidSet,
            _: Duration,
        ) -> BoxFuture<'a, Result<GtidWait, MysqlError>> {
            not_used()
        }
        fn clone_from<'a>(
            &'a mut self,
            _: &'a CloneDonor,
            _: Duration,
        ) -> BoxFuture<'a, Result<(), MysqlError>> {
            not_used()
        }
        fn ensure_replication_account<'a>(
            &'a mut self,
            _: &'a ReplicationAccount,
        ) -> BoxFuture<'a, Result<(), MysqlError>> {
            not_used()
        }
        fn counter_increment<'a>(
            &'a mut self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<i64, MysqlError>> {
            not_used()
        }
        fn counter_read<'a>(
            &'a mut self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<i64>, MysqlError>> {
            not_used()
        }
        fn forced_write<'a>(
            &'a mut self,
            _: &'a str,
            _: i64,
        ) -> BoxFuture<'a, Result<(), MysqlError>> {
            not_used()
        }
        fn read_only_mode(&mut self) -> BoxFuture<'_, Result<ReadOnlyMode, MysqlError>> {
            not_used()
        }
        fn clone_state(&mut self) -> BoxFuture<'_, Result<Option<CloneState>, MysqlError>> {
            not_used()
        }
        fn enable_replica_side_disabled_events(
            &mut self,
        ) -> BoxFuture<'_, Result<u64, MysqlError>> {
            not_used()
        }
    }

    impl crate::seams::MysqlConnector for LockedServer {
        fn connect<'a>(
            &'a self,
            _: &'a MysqlTarget,
        ) -> BoxFuture<'a, Result<Box<dyn MysqlSession>, MysqlError>> {
            self.note("connect");
            let session = self.clone();
            Box::pin(async move { Ok(Box::new(session) as Box<dyn MysqlSession>) })
        }
    }

    fn target() -> MysqlTarget {
        MysqlTarget {
            host: "127.0.0.1".into(),
            port: 33062,
            user: "root".into(),
            password: String::new(),
        }
    }

    #[tokio::test]
    async fn a_fence_behind_a_held_lock_kills_the_holders_from_a_second_connection_and_holds() {
        let server = LockedServer {
            releases_on_kill: true,
            ..LockedServer::default()
        };
        *server.lock_held.lock().unwrap() = true;
        let mut session: Option<Box<dyn MysqlSession>> = Some(Box::new(server.clone()));
        fence(&server, &target(), &mut session).await.unwrap();
        assert_eq!(
            *server.log.lock().unwrap(),
            [
                "SET: lock wait timeout",
                "connect",
                "KILL clients",
                "SET: fenced",
                // Nothing opened before the fence may commit after it.
                "KILL clients",
            ]
        );
        assert!(session.is_some());
    }

    #[tokio::test]
    async fn a_lock_that_is_never_released_ends_the_tick_with_the_error_and_no_lift() {
        let server = LockedServer::default();
        *server.lock_held.lock().unwrap() = true;
        let mut session: Option<Box<dyn MysqlSession>> = Some(Box::new(server.clone()));
        let error = fence(&server, &target(), &mut session).await.unwrap_err();
        assert_eq!(error.server_code(), Some(error_codes::LOCK_WAIT_TIMEOUT));
        let log = server.log.lock().unwrap();
        let attempts = log.iter().filter(|l| l.starts_with("SET")).count();
        assert_eq!(attempts, decide::FENCE_ATTEMPTS_PER_TICK as usize);
        assert!(!log.contains(&"SET: fenced"));
        assert!(
            session.is_none(),
            "the next tick starts on a fresh connection"
        );
    }

    #[test]
    fn ticks_twice_per_renewal_within_bounds() {
        assert_eq!(
            tick_interval(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(
            tick_interval(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        assert_eq!(
            tick_interval(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
    }
}
