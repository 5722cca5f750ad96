//! The `bloodraven` command line: thin wiring from arguments to library calls.

use std::io::Write as _;

use clap::{Parser, Subcommand};

use crate::schema::bloodraven_schemas;

/// Bloodraven keeps a MySQL service writable across two Kubernetes sites: one writable
/// primary, one GTID replica, writer-lease fencing, emergency and planned failover,
/// divergence detection with confirmed reclone, and DNS steering through external-dns.
#[derive(Debug, Parser)]
#[command(name = "bloodraven", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    bloodraven crd | kubectl apply -f -          install or upgrade the CRDs\n  \
    bloodraven validate -f examples/playground.yaml   check a manifest before applying it")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every CRD Bloodraven uses (its own and external-dns' DNSEndpoint) as one
    /// YAML stream, exactly as shipped in charts/bloodraven/crds/.
    Crd,
    /// Print the operator's RBAC as the Helm template shipped in
    /// charts/bloodraven/templates/rbac.yaml, generated from the API_ACCESS tables kept
    /// next to the operator's Kubernetes calls.
    Rbac,
    /// Check manifests offline against the CRD schemas: types, required fields, enums,
    /// patterns, exactly two distinct sites, positive durations and the lease timing
    /// rules. Prints `file:line:column: Kind/name: field: problem` for each problem and
    /// exits 1 if there is any, 2 if a file cannot be read or parsed (every file is
    /// still checked). Kinds of other API groups are listed, not checked; an unknown
    /// kind in Bloodraven's own group is an error.
    Validate {
        /// Manifest file(s) to check (YAML, several documents allowed; `-` reads
        /// standard input). Repeatable.
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// The fencing agent beside each mysqld (started by the operator's StatefulSets):
    /// renews the writer lease while its site holds it and keeps mysqld read-only
    /// unless the lease is fresh and the operator granted writability. Serves
    /// /healthz and /status on --listen.
    Sidecar(Box<crate::sidecar::SidecarArgs>),
    /// Runs the operator: watches MysqlFailoverGroups, probes their MySQL sites, fails
    /// over, fences and steers DNS. Uses the in-cluster service account (or
    /// KUBECONFIG), elects a leader among replicas, serves /metrics, /healthz and
    /// /readyz on --listen, and stops gracefully on SIGTERM.
    Operator(Box<crate::controllers::cli::OperatorArgs>),
    /// The backup Job's program (started by the operator for each MysqlBackup): dumps
    /// one site with mysqldump (--single-transaction, the GTID set it is consistent
    /// with), streams the dump to the profile's S3 storage and records object, size,
    /// SHA-256 and GTID set on the MysqlBackup's status.
    Backup(Box<crate::backup::BackupArgs>),
    /// What a profile's backup CronJob runs: creates a MysqlBackup of the profile.
    TriggerBackup(crate::backup::TriggerArgs),
    /// What a profile's verification CronJob (mysql-<group>-verify-<profile>) runs:
    /// creates a MysqlBackupVerification against the latest Succeeded MysqlBackup of the
    /// profile, with the profile's verification block (sanityCheck) copied onto it.
    TriggerVerification(crate::backup::TriggerArgs),
    /// The verification Job's program (started by the operator for each
    /// MysqlBackupVerification, beside a scratch mysqld): downloads the backup's dump
    /// (SHA-256 checked), loads it into the scratch mysqld, runs the sanity query and
    /// records the verdict on the MysqlBackupVerification's status.
    VerifyBackup(Box<crate::verification::VerifyArgs>),
}

/// Errors that end a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot render the CRDs: {0}")]
    Render(#[from] serde_saphyr::SerializeError),
    #[error("{0}")]
    Schema(#[from] crate::schema::CrdSchemaError),
    #[error("{0}")]
    Validate(#[from] crate::validate::ValidateError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    Sidecar(#[from] crate::sidecar::SidecarError),
    #[error("cannot connect to the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Operator(#[from] crate::controllers::cli::OperatorError),
    #[error("{0}")]
    Backup(#[from] crate::backup::BackupError),
    #[error("{0}")]
    Verify(#[from] crate::verification::VerifyError),
}

/// The exit status when stdout's reader went away: 128 + SIGPIPE, what a shell shows for
/// a program that signal ended.
pub const BROKEN_PIPE_EXIT: i32 = 141;

impl CliError {
    /// True when the command failed only because stdout's reader closed the pipe.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// `trigger-backup` or `trigger-verification`: creates one CR and prints its name.
fn trigger(
    out: &mut dyn std::io::Write,
    args: &crate::backup::TriggerArgs,
    verification: bool,
) -> Result<i32, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let created = runtime.block_on(async {
        let client = kube::Client::try_default().await?;
        let clock: crate::seams::SharedClock = std::sync::Arc::new(crate::seams::SystemClock);
        Ok::<_, CliError>(if verification {
            crate::backup::trigger_verification(args, &client, &clock).await?
        } else {
            crate::backup::trigger_backup(args, &client, &clock).await?
        })
    })?;
    writeln!(out, "created {created}")?;
    Ok(0)
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli, out: &mut dyn std::io::Write) -> Result<i32, CliError> {
    match cli.command {
        Command::Crd => {
            out.write_all(crate::api::crds_yaml()?.as_bytes())?;
            Ok(0)
        }
        Command::Rbac => {
            out.write_all(crate::rbac::chart_template().as_bytes())?;
            Ok(0)
        }
        Command::Sidecar(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::sidecar::run_in_cluster(*args))?;
            Ok(0)
        }
        Command::Operator(args) => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            // Fails only if a subscriber is already installed (tests): keep that one.
            let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::controllers::cli::run_in_cluster(*args))?;
            Ok(0)
        }
        Command::Backup(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let recorded = runtime.block_on(async {
                let client = kube::Client::try_default().await?;
                let deps = crate::backup::production_deps(client, &args);
                Ok::<_, CliError>(crate::backup::run_backup(&args, &deps).await?)
            })?;
            writeln!(
                out,
                "backup {}: {} bytes at {}, sha256 {}, gtid {}",
                args.backup,
                recorded.size_bytes,
                recorded.location,
                recorded.checksum,
                recorded.gtid_executed
            )?;
            Ok(0)
        }
        Command::TriggerBackup(args) => trigger(out, &args, false),
        Command::TriggerVerification(args) => trigger(out, &args, true),
        Command::VerifyBackup(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let verified = runtime.block_on(async {
                let client = kube::Client::try_default().await?;
                let deps = crate::verification::production_deps(client);
                Ok::<_, CliError>(crate::verification::run_verification(&args, &deps).await?)
            })?;
            writeln!(
                out,
                "verification {}: backup {} loaded ({} bytes, {} statements); sanity check rows: {}",
                args.verification,
                args.backup,
                verified.bytes,
                verified.statements,
                verified
                    .rows_returned
                    .map_or("none configured".to_string(), |n| n.to_string())
            )?;
            Ok(0)
        }
        Command::Validate { files } => {
            let schemas = bloodraven_schemas()?;
            let (mut problems, mut unreadable) = (0, 0);
            // Every file is checked and reported, even after one that cannot be read or
            // parsed: a user fixing several files wants every message at once.
            for file in &files {
                match crate::validate::validate_file(file, &schemas) {
                    Ok(report) => {
                        problems += report.problem_count();
                        writeln!(out, "{report}")?;
                    }
                    Err(e) => {
                        unreadable += 1;
                        // stderr, as when a command fails; the next file is still checked.
                        writeln!(std::io::stderr().lock(), "error: {e}")?;
                    }
                }
            }
            Ok(if unreadable > 0 {
                2
            } else if problems > 0 {
                1
            } else {
                0
            })
        }
    }
}
