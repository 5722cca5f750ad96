//! `bloodraven operator`: the controller with the real transports (in-cluster or
//! kubeconfig client, the MySQL protocol client over TCP, the system clock), `/metrics`,
//! `/healthz` and `/readyz`, leader election, and a graceful stop on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::indexes::WatchSettings;
use super::{ControllerDeps, ControllerSettings};
use crate::children::BuildContext;
use crate::engine::lease::{LeaseTiming, LeaseTimingError};
use crate::leader::LEADER_LEASE;
use crate::metrics::{Metrics, Readiness};
use crate::seams::{MysqlTimeouts, SystemClock};

/// The operator's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's identity in leader election and Events (its pod name).
    #[arg(long, env = "POD_NAME", default_value = "bloodraven-operator")]
    pub identity: String,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "bloodraven-system")]
    pub leader_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = LEADER_LEASE)]
    pub leader_lease: String,
    /// Leader lease validity after each renewal (docs/operator.md "Hand-over between
    /// operator replicas": the leader acts for 6 s after a renewal, three renewal
    /// intervals; a hard-killed leader is replaced after 10 s).
    #[arg(long, default_value = "8s")]
    pub leader_lease_duration: crate::api::Duration,
    /// Subtracted by the leader (stops acting early) and added by a candidate.
    #[arg(long, default_value = "2s")]
    pub leader_lease_margin: crate::api::Duration,
    #[arg(long, default_value = "2s")]
    pub leader_renew_interval: crate::api::Duration,
    /// Image that runs `bloodraven sidecar` beside each mysqld.
    #[arg(
        long,
        env = "BLOODRAVEN_SIDECAR_IMAGE",
        default_value = "ghcr.io/shipstream/bloodraven:latest"
    )]
    pub sidecar_image: String,
    /// Server-side timeout of each watch request before it is resumed.
    #[arg(long, default_value_t = 290)]
    pub watch_timeout_seconds: u32,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("leader lease settings: {0}")]
    LeaderTiming(#[from] LeaseTimingError),
    #[error("cannot connect to the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl OperatorArgs {
    pub fn settings(&self) -> Result<ControllerSettings, LeaseTimingError> {
        Ok(ControllerSettings {
            identity: self.identity.clone(),
            leader_namespace: self.leader_namespace.clone(),
            leader_lease: self.leader_lease.clone(),
            leader_timing: LeaseTiming::new(
                self.leader_lease_duration.as_std(),
                self.leader_lease_margin.as_std(),
            )?,
            leader_renew_interval: self.leader_renew_interval.as_std(),
            watch: WatchSettings {
                namespace: self.namespace.clone(),
                timeout_seconds: self.watch_timeout_seconds,
            },
            build: BuildContext {
                sidecar_image: self.sidecar_image.clone(),
            },
        })
    }
}

/// Runs the operator with the real transports until SIGTERM.
pub async fn run_in_cluster(args: OperatorArgs) -> Result<(), OperatorError> {
    let settings = args.settings()?;
    let client = kube::Client::try_default().await?;
    let deps = ControllerDeps {
        client,
        mysql: Arc::new(crate::production::mysql::MysqlProtocolConnector::tcp(
            MysqlTimeouts {
                connect: Duration::from_secs(2),
                request: Duration::from_secs(5),
            },
        )),
        // Responses may take as long as a REPLTAKEOVER; each command bounds itself.
        dragonfly: Arc::new(crate::production::dragonfly::RedisDragonflyConnector::new(
            crate::seams::DragonflyTimeouts {
                connect: Duration::from_secs(2),
                response: Duration::from_secs(10),
            },
        )),
        storage: Arc::new(crate::seams::object_storage::TcpDialer),
        clock: Arc::new(SystemClock),
        metrics: Metrics::new(),
        readiness: Readiness::default(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| OperatorError::Listen {
            address: args.listen,
            source,
        })?;
    let app = crate::metrics::router(deps.metrics.clone(), deps.readiness.clone())
        .merge(crate::state_feed::router(deps.client.clone()));
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(%err, "metrics server stopped");
        }
    });
    super::run(settings, deps, crate::sidecar::shutdown_signal()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: OperatorArgs,
    }

    #[test]
    fn defaults_make_valid_settings() {
        let cli = Cli::try_parse_from(["bloodraven", "--identity", "op-0"]).unwrap();
        let settings = cli.args.settings().unwrap();
        assert_eq!(settings.identity, "op-0");
        assert_eq!(settings.leader_timing.duration(), Duration::from_secs(8));
        assert_eq!(settings.watch.namespace, None);
        let bad = Cli::try_parse_from(["bloodraven", "--leader-lease-margin", "20s"]).unwrap();
        assert!(bad.args.settings().is_err());
    }
}
