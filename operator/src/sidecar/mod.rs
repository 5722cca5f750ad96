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
use crate::seams::{MysqlSession, MysqlTarget, ReadOnlyMode, SharedClock, SharedMysqlConnector};
use decide::{
    FenceReason, KnownLease, LeaseEvent, MysqlAction, SidecarMemory, SidecarSettings, mysql_action,
    renewal_due, renewal_timeout, writable_allowed,
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
    tokio::pin!(shutdown);
    loop {
        let mut errors = Vec::new();

        // Observe the lease, renewing it when due (the renewal's answer is the read).
        let started = now();
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
        if session.is_none() {
            match deps.mysql.connect(&target).await {
                Ok(s) => session = Some(s),
                Err(err) => errors.push(err.to_string()),
            }
        }
        let mut mode = None;
        if let Some(s) = session.as_mut() {
            match s.observe().await {
                Ok(observed) => mode = Some(observed.read_only_mode()),
                Err(err) => {
                    errors.push(err.to_string());
                    session = None;
                }
            }
        }
        let decided_at = now();
        let action = mysql_action(&settings, &memory, mode, decided_at);
        if let Some(s) = session.as_mut() {
            let result = match &action {
                MysqlAction::Nothing => Ok(()),
                MysqlAction::Fence(reason) => {
                    tracing::warn!(site = %settings.site, ?reason, "fencing mysqld");
                    match s.set_read_only(ReadOnlyMode::SuperReadOnly).await {
                        // Open transactions must not commit after the fence.
                        Ok(()) => s.kill_client_connections().await.map(|_| ()),
                        Err(err) => Err(err),
                    }
                }
                MysqlAction::LiftFence => {
                    tracing::info!(site = %settings.site, "lifting the fence: lease holder with the operator's grant");
                    s.set_read_only(ReadOnlyMode::Writable).await
                }
            };
            if let Err(err) = result {
                errors.push(err.to_string());
                session = None;
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

        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(tick) => {}
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
        assert_eq!(cli.args.mysql_port, 3306);
        let settings = cli.args.settings().unwrap();
        assert_eq!(settings.timing.duration(), Duration::from_secs(5));
        assert_eq!(settings.renew_interval, Duration::from_secs(1));
        assert!(!format!("{:?}", cli.args).contains("hunter2"));
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
