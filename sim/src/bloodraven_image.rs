//! The Bloodraven image in the simulation: `ghcr.io/shipstream/bloodraven` (any tag)
//! runs the SAME `bloodraven operator` and `bloodraven sidecar` code as the real
//! binary, parsed from the container's args by the real CLI, with the simulation's
//! transports: a kube client over simulated TCP, the MySQL model's connector over the
//! cluster dialer, and the simulated clock. Nothing in the operator knows.

use std::sync::Arc;
use std::time::Duration;

use bloodraven::cli::{Cli, Command};
use bloodraven::controllers::{self, ControllerDeps};
use bloodraven::metrics::{Metrics, Readiness};
use bloodraven::seams::MysqlTimeouts;
use bloodraven::sidecar::{self, SharedSidecarStatus, SidecarDeps};
use clap::Parser;

use crate::apiserver::TurmoilListener;
use crate::images::{ImageRegistry, StartupProfile};
use crate::models::mysql::dump::SimDumpSource;
use crate::models::mysql::mysql_connector;
use crate::models::s3::SimStorageDialer;
use crate::pod::{PodContext, PodProgram, ProgramFuture};
use crate::transport::{API_SERVER_HOST, API_SERVER_PORT, SimClientConfig, kube_client};

/// The operator's image repository.
pub const BLOODRAVEN_IMAGE: &str = "ghcr.io/shipstream/bloodraven";

/// Watches are resumed this often: turmoil drops segments in partitions without
/// retransmitting, so a long-lived watch could stall unnoticed (see `transport`).
pub const SIM_WATCH_TIMEOUT_SECONDS: u32 = 10;

/// Runs `bloodraven <args>` as the real binary would.
#[derive(Clone, Copy, Debug, Default)]
pub struct BloodravenProgram;

/// User agents of the two roles, by which the API server's request counts tell the
/// operator's load from the sidecars'.
pub const OPERATOR_USER_AGENT: &str = "bloodraven-operator";
pub const SIDECAR_USER_AGENT: &str = "bloodraven-sidecar";
/// The backup and verification Jobs and the backup and verification CronJobs' trigger
/// Jobs.
pub const BACKUP_USER_AGENT: &str = "bloodraven-backup";

fn sim_client(ctx: &PodContext, user_agent: &str) -> Result<kube::Client, http::Error> {
    kube_client(
        API_SERVER_HOST,
        API_SERVER_PORT,
        &SimClientConfig {
            default_namespace: ctx.namespace.clone(),
            user_agent: Some(user_agent.to_string()),
            ..SimClientConfig::default()
        },
    )
}

/// The container's argv, with what the real binary would read from its environment
/// (clap's `env` reads the process environment, which a simulated pod does not have).
fn argv(ctx: &PodContext) -> Vec<String> {
    let mut argv = vec!["bloodraven".to_string()];
    argv.extend(
        ctx.command
            .iter()
            .skip_while(|c| c.contains("bloodraven"))
            .cloned(),
    );
    argv.extend(ctx.args.iter().cloned());
    match argv.get(1).map(String::as_str) {
        Some("operator") => {
            argv.push(format!("--identity={}", ctx.pod));
            argv.push(format!("--leader-namespace={}", ctx.namespace));
            argv.push(format!(
                "--watch-timeout-seconds={SIM_WATCH_TIMEOUT_SECONDS}"
            ));
        }
        Some("backup" | "verify-backup") => {
            // What the real binary reads from its environment (clap `env`).
            use bloodraven::children::backup::{
                MYSQL_PASSWORD_ENV, S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV,
            };
            for (env, flag) in [
                (MYSQL_PASSWORD_ENV, "--mysql-password"),
                (S3_ACCESS_KEY_ENV, "--s3-access-key-id"),
                (S3_SECRET_KEY_ENV, "--s3-secret-access-key"),
            ] {
                if let Some(value) = ctx.env.get(env) {
                    argv.push(format!("{flag}={value}"));
                }
            }
        }
        Some("sidecar") => {
            argv.push(format!("--namespace={}", ctx.namespace));
            if let Some(password) = ctx.env.get(bloodraven::children::SIDECAR_PASSWORD_ENV) {
                argv.push(format!("--mysql-password={password}"));
            }
        }
        _ => {}
    }
    argv
}

impl PodProgram for BloodravenProgram {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        Box::pin(async move {
            let cli = Cli::try_parse_from(argv(&ctx))?;
            match cli.command {
                Command::Operator(args) => {
                    let settings = args.settings()?;
                    let deps = ControllerDeps {
                        client: sim_client(&ctx, OPERATOR_USER_AGENT)?,
                        mysql: Arc::new(mysql_connector(
                            ctx.dialer.clone(),
                            MysqlTimeouts {
                                connect: Duration::from_secs(1),
                                request: Duration::from_secs(2),
                            },
                        )),
                        dragonfly: Arc::new(crate::models::dragonfly::SimDragonflyConnector::new(
                            ctx.dialer.clone(),
                            bloodraven::seams::DragonflyTimeouts {
                                connect: Duration::from_secs(1),
                                response: Duration::from_secs(10),
                            },
                        )),
                        storage: Arc::new(SimStorageDialer::new(ctx.dialer.clone())),
                        clock: ctx.clock.clone(),
                        metrics: Metrics::new(),
                        readiness: Readiness::default(),
                    };
                    let listener =
                        turmoil::net::TcpListener::bind(("0.0.0.0", args.listen.port())).await?;
                    let app =
                        bloodraven::metrics::router(deps.metrics.clone(), deps.readiness.clone())
                            .merge(bloodraven::state_feed::router(deps.client.clone()));
                    tokio::task::spawn_local(async move {
                        let _ = axum::serve(TurmoilListener(listener), app).await;
                    });
                    // The pod is Ready once the caches synced, as /readyz says.
                    let readiness = deps.readiness.clone();
                    let pod_ready = ctx.ready.clone();
                    tokio::task::spawn_local(async move {
                        while !readiness.is_ready() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        pod_ready.set(true);
                    });
                    // SIGTERM (the pod deleted) stops it gracefully, as in a cluster;
                    // a crash of its host or node is the hard kill.
                    controllers::run(settings, deps, ctx.termination.requested()).await;
                    Ok(())
                }
                Command::Sidecar(args) => {
                    let deps = SidecarDeps {
                        client: sim_client(&ctx, SIDECAR_USER_AGENT)?,
                        mysql: Arc::new(mysql_connector(
                            ctx.dialer.clone(),
                            MysqlTimeouts {
                                connect: Duration::from_millis(500),
                                request: Duration::from_secs(1),
                            },
                        )),
                        clock: ctx.clock.clone(),
                    };
                    let status = SharedSidecarStatus::default();
                    let listener =
                        turmoil::net::TcpListener::bind(("0.0.0.0", args.listen.port())).await?;
                    let app = sidecar::router(status.clone(), Duration::from_secs(10));
                    tokio::task::spawn_local(async move {
                        let _ = axum::serve(TurmoilListener(listener), app).await;
                    });
                    ctx.ready.set(true);
                    sidecar::run(*args, deps, status, std::future::pending()).await?;
                    Ok(())
                }
                Command::Backup(args) => {
                    let deps = bloodraven::backup::BackupDeps {
                        client: sim_client(&ctx, BACKUP_USER_AGENT)?,
                        dump: Arc::new(SimDumpSource::new(ctx.dialer.clone())),
                        storage: Arc::new(SimStorageDialer::new(ctx.dialer.clone())),
                        clock: ctx.clock.clone(),
                    };
                    let recorded = bloodraven::backup::run_backup(&args, &deps).await?;
                    tracing::info!(backup = %args.backup, ?recorded, "backup recorded");
                    Ok(())
                }
                Command::VerifyBackup(args) => {
                    let deps = bloodraven::verification::VerifyDeps {
                        client: sim_client(&ctx, BACKUP_USER_AGENT)?,
                        mysql: mysql_connector(
                            ctx.dialer.clone(),
                            MysqlTimeouts {
                                connect: Duration::from_secs(1),
                                request: Duration::from_secs(60),
                            },
                        ),
                        storage: Arc::new(SimStorageDialer::new(ctx.dialer.clone())),
                    };
                    let verified = bloodraven::verification::run_verification(&args, &deps).await?;
                    tracing::info!(verification = %args.verification, ?verified, "verification passed");
                    Ok(())
                }
                Command::TriggerBackup(args) => {
                    let client = sim_client(&ctx, BACKUP_USER_AGENT)?;
                    let name =
                        bloodraven::backup::trigger_backup(&args, &client, &ctx.clock).await?;
                    tracing::info!(%name, "created MysqlBackup");
                    Ok(())
                }
                Command::TriggerVerification(args) => {
                    let client = sim_client(&ctx, BACKUP_USER_AGENT)?;
                    let name = bloodraven::backup::trigger_verification(&args, &client, &ctx.clock)
                        .await?;
                    tracing::info!(%name, "created MysqlBackupVerification");
                    Ok(())
                }
                other => {
                    Err(format!("the simulated bloodraven image does not run {other:?}").into())
                }
            }
        })
    }
}

/// Registers the Bloodraven image (operator and sidecar).
pub fn register(registry: &mut ImageRegistry) {
    registry.register(
        BLOODRAVEN_IMAGE,
        BloodravenProgram,
        StartupProfile {
            delay: Duration::from_millis(300),
            jitter: Duration::from_millis(200),
        },
    );
}
