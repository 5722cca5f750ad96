//! The programs the backup Jobs run: `bloodraven backup` (dump one site, stream the dump
//! to the profile's S3 storage, record the result on the `MysqlBackup`), and the
//! CronJobs' `bloodraven trigger-backup` / `trigger-verification` (create the CR the
//! controllers act on). Decisions (which site, when a backup counts as Succeeded) are
//! the controller's; these programs do one thing each and say clearly when it failed.

use std::io::Cursor;
use std::sync::Arc;

use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::api::{
    BackupProfile, JobPhase, MysqlBackup, MysqlBackupSpec, MysqlBackupVerification,
    MysqlBackupVerificationSpec, MysqlFailoverGroup,
};
use crate::children::backup::{MYSQL_PASSWORD_ENV, PROFILE_LABEL, S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV};
use crate::children::{INSTANCE_LABEL, MANAGED_BY_LABEL, FIELD_MANAGER};
use crate::seams::SharedClock;
use crate::seams::dump::{DumpTarget, SharedDumpSource, gtid_from_dump_head};
use crate::seams::object_storage::SharedStorageDialer;
use crate::storage::{ObjectStorage, S3Credentials, S3Target, StorageError, TransferTuning};

/// How far into a dump its GTID position must appear (mysqldump writes it before any
/// table data). Also the most the head holds in memory before the upload starts.
pub const DUMP_HEAD_LIMIT: usize = 1024 * 1024;

/// `bloodraven backup`: the backup Job's program. Secrets arrive in the environment
/// (from the Secrets the Job's pod spec names), so the Job's Role needs no Secret access.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    #[arg(long)]
    pub namespace: String,
    #[arg(long)]
    pub group: String,
    #[arg(long)]
    pub profile: String,
    /// The `MysqlBackup` whose status receives the result.
    #[arg(long)]
    pub backup: String,
    /// The site being dumped (recorded; the controller chose it).
    #[arg(long)]
    pub site: String,
    #[arg(long)]
    pub host: String,
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    /// The object name under the profile's prefix.
    #[arg(long)]
    pub object: String,
    #[arg(long, default_value = "root")]
    pub mysql_user: String,
    #[arg(long, env = MYSQL_PASSWORD_ENV, hide_env_values = true)]
    pub mysql_password: String,
    #[arg(long, env = S3_ACCESS_KEY_ENV, hide_env_values = true)]
    pub s3_access_key_id: String,
    #[arg(long, env = S3_SECRET_KEY_ENV, hide_env_values = true)]
    pub s3_secret_access_key: String,
    /// The dump tool (mysqldump 8.x; `mariadb-dump` with --dump-dialect=mariadb).
    #[arg(long, default_value = "mysqldump")]
    pub dump_program: String,
    #[arg(long, value_enum, default_value = "mysql")]
    pub dump_dialect: DumpDialectArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpDialectArg {
    Mysql,
    Mariadb,
}

impl From<DumpDialectArg> for crate::seams::dump::DumpDialect {
    fn from(value: DumpDialectArg) -> Self {
        match value {
            DumpDialectArg::Mysql => Self::Mysql,
            DumpDialectArg::Mariadb => Self::MariaDb,
        }
    }
}

/// `bloodraven trigger-backup` / `trigger-verification`: what the CronJobs run.
#[derive(Debug, Clone, clap::Args)]
pub struct TriggerArgs {
    #[arg(long)]
    pub namespace: String,
    #[arg(long)]
    pub group: String,
    #[arg(long)]
    pub profile: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("reading MysqlFailoverGroup {namespace}/{group}: {source}")]
    ReadGroup {
        namespace: String,
        group: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("MysqlFailoverGroup {namespace}/{group} has no backup profile {profile:?}")]
    NoProfile {
        namespace: String,
        group: String,
        profile: String,
    },
    #[error("backup profile {profile:?} of MysqlFailoverGroup {group} has no s3 storage (pvc storage is not supported yet)")]
    NotS3 { group: String, profile: String },
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("dumping {host}: {source}")]
    Dump {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the dump of {host} does not state the GTID set it is consistent with in its first {limit} bytes (is gtid_mode ON?); nothing was uploaded"
    )]
    NoGtidPosition { host: String, limit: usize },
    #[error("recording the result on MysqlBackup {namespace}/{backup}: {source}")]
    Record {
        namespace: String,
        backup: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "no Succeeded MysqlBackup of profile {profile:?} of MysqlFailoverGroup {namespace}/{group} to verify"
    )]
    NothingToVerify {
        namespace: String,
        group: String,
        profile: String,
    },
    #[error("{action} in namespace {namespace}: {source}")]
    Kube {
        action: String,
        namespace: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// What a backup Job needs beyond its arguments.
#[derive(Clone)]
pub struct BackupDeps {
    pub client: Client,
    pub dump: SharedDumpSource,
    pub storage: SharedStorageDialer,
    pub clock: SharedClock,
}

/// What the backup Job recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedBackup {
    pub location: String,
    pub size_bytes: u64,
    pub checksum: String,
    pub gtid_executed: String,
}

async fn read_group(
    client: &Client,
    namespace: &str,
    group: &str,
) -> Result<MysqlFailoverGroup, BackupError> {
    Api::<MysqlFailoverGroup>::namespaced(client.clone(), namespace)
        .get(group)
        .await
        .map_err(|source| BackupError::ReadGroup {
            namespace: namespace.to_string(),
            group: group.to_string(),
            source: Box::new(source),
        })
}

fn find_profile(
    group: &MysqlFailoverGroup,
    namespace: &str,
    profile: &str,
) -> Result<BackupProfile, BackupError> {
    group
        .spec
        .backup
        .iter()
        .flat_map(|b| b.profiles.iter())
        .find(|p| p.name == profile)
        .cloned()
        .ok_or_else(|| BackupError::NoProfile {
            namespace: namespace.to_string(),
            group: group.name_any(),
            profile: profile.to_string(),
        })
}

/// Reads from `stream` until the GTID position is found or `limit` bytes were read;
/// returns what was read and the position.
pub async fn read_dump_head<R: AsyncRead + Unpin>(
    stream: &mut R,
    limit: usize,
) -> std::io::Result<(Vec<u8>, Option<String>)> {
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(gtid) = gtid_from_dump_head(&String::from_utf8_lossy(&head)) {
            return Ok((head, Some(gtid)));
        }
        if head.len() >= limit {
            return Ok((head, None));
        }
        let want = chunk.len().min(limit - head.len());
        let read = stream.read(&mut chunk[..want]).await?;
        if read == 0 {
            return Ok((head, None));
        }
        head.extend_from_slice(&chunk[..read]);
    }
}

/// Runs one backup: dump, upload, record. On failure the error is also written to the
/// `MysqlBackup`'s `status.message` (best effort), so that the controller's Failed
/// status says why, not only that the Job failed.
pub async fn run_backup(args: &BackupArgs, deps: &BackupDeps) -> Result<RecordedBackup, BackupError> {
    let result = dump_and_upload(args, deps).await;
    let api = Api::<MysqlBackup>::namespaced(deps.client.clone(), &args.namespace);
    let patch = match &result {
        Ok(recorded) => json!({"status": {
            "site": args.site,
            "location": recorded.location,
            "sizeBytes": i64::try_from(recorded.size_bytes).unwrap_or(i64::MAX),
            "checksum": recorded.checksum,
            "gtidExecuted": recorded.gtid_executed,
        }}),
        Err(err) => json!({"status": {"message": err.to_string()}}),
    };
    let written = api
        .patch_status(&args.backup, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| BackupError::Record {
            namespace: args.namespace.clone(),
            backup: args.backup.clone(),
            source: Box::new(source),
        });
    let recorded = result?;
    written?;
    Ok(recorded)
}

async fn dump_and_upload(args: &BackupArgs, deps: &BackupDeps) -> Result<RecordedBackup, BackupError> {
    let group = read_group(&deps.client, &args.namespace, &args.group).await?;
    let profile = find_profile(&group, &args.namespace, &args.profile)?;
    let s3 = profile.storage.s3.as_ref().ok_or_else(|| BackupError::NotS3 {
        group: args.group.clone(),
        profile: args.profile.clone(),
    })?;
    let target = S3Target::from_spec(
        s3,
        S3Credentials {
            access_key_id: args.s3_access_key_id.clone(),
            secret_access_key: args.s3_secret_access_key.clone(),
        },
    );
    let storage = ObjectStorage::new(&target, deps.storage.clone(), TransferTuning::default())?;
    // Fail on credentials or a missing bucket before the dump puts load on the site.
    storage.check_access().await?;
    let dump_error = |source| BackupError::Dump {
        host: args.host.clone(),
        source,
    };
    let mut stream = deps
        .dump
        .dump(&DumpTarget {
            host: args.host.clone(),
            port: args.port,
            user: args.mysql_user.clone(),
            password: args.mysql_password.clone(),
        })
        .await
        .map_err(dump_error)?;
    let (head, gtid) = read_dump_head(&mut stream, DUMP_HEAD_LIMIT)
        .await
        .map_err(dump_error)?;
    let Some(gtid) = gtid else {
        return Err(BackupError::NoGtidPosition {
            host: args.host.clone(),
            limit: DUMP_HEAD_LIMIT,
        });
    };
    let stored = storage
        .upload(&args.object, Cursor::new(head).chain(stream))
        .await?;
    Ok(RecordedBackup {
        location: stored.key,
        size_bytes: stored.size,
        checksum: stored.sha256,
        gtid_executed: gtid,
    })
}

/// `<group>-<profile>-<UTC yyyymmdd-hhmmss>`: unique per profile at the CronJobs'
/// one-minute resolution, sortable, and readable in `kubectl get mysqlbackups`.
pub fn triggered_name(group: &str, profile: &str, now: jiff::Timestamp) -> String {
    format!("{group}-{profile}-{}", now.strftime("%Y%m%d-%H%M%S"))
}

fn trigger_labels(group: &str, profile: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (INSTANCE_LABEL.to_string(), group.to_string()),
        (MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string()),
        (PROFILE_LABEL.to_string(), profile.to_string()),
    ])
}

/// `bloodraven trigger-backup`: creates a `MysqlBackup` of the profile; returns its name.
pub async fn trigger_backup(
    args: &TriggerArgs,
    client: &Client,
    clock: &SharedClock,
) -> Result<String, BackupError> {
    let group = read_group(client, &args.namespace, &args.group).await?;
    find_profile(&group, &args.namespace, &args.profile)?;
    let name = triggered_name(&args.group, &args.profile, clock.now());
    let mut backup = MysqlBackup::new(
        &name,
        MysqlBackupSpec {
            group: args.group.clone(),
            profile: args.profile.clone(),
            source: crate::api::BackupSource::default(),
        },
    );
    backup.metadata.labels = Some(trigger_labels(&args.group, &args.profile));
    Api::<MysqlBackup>::namespaced(client.clone(), &args.namespace)
        .create(&PostParams::default(), &backup)
        .await
        .map_err(|source| BackupError::Kube {
            action: format!("creating MysqlBackup {name}"),
            namespace: args.namespace.clone(),
            source: Box::new(source),
        })?;
    Ok(name)
}

/// The latest Succeeded backup of a group's profile (by completion time, then name).
pub fn latest_succeeded<'a>(
    backups: &'a [MysqlBackup],
    group: &str,
    profile: &str,
) -> Option<&'a MysqlBackup> {
    backups
        .iter()
        .filter(|b| b.spec.group == group && b.spec.profile == profile)
        .filter(|b| {
            b.status
                .as_ref()
                .is_some_and(|s| s.job.phase == Some(JobPhase::Succeeded))
        })
        .max_by(|a, b| {
            let at = |x: &MysqlBackup| {
                x.status
                    .as_ref()
                    .and_then(|s| s.job.completed_at.as_ref())
                    .map(|t| t.0)
            };
            at(a).cmp(&at(b)).then_with(|| a.name_any().cmp(&b.name_any()))
        })
}

/// `bloodraven trigger-verification`: creates a `MysqlBackupVerification` of the latest
/// Succeeded backup of the profile, with the profile's verification block copied on.
pub async fn trigger_verification(
    args: &TriggerArgs,
    client: &Client,
    clock: &SharedClock,
) -> Result<String, BackupError> {
    let group = read_group(client, &args.namespace, &args.group).await?;
    let profile = find_profile(&group, &args.namespace, &args.profile)?;
    let backups = Api::<MysqlBackup>::namespaced(client.clone(), &args.namespace)
        .list(&ListParams::default())
        .await
        .map_err(|source| BackupError::Kube {
            action: "listing MysqlBackups".to_string(),
            namespace: args.namespace.clone(),
            source: Box::new(source),
        })?;
    let latest = latest_succeeded(&backups.items, &args.group, &args.profile).ok_or_else(|| {
        BackupError::NothingToVerify {
            namespace: args.namespace.clone(),
            group: args.group.clone(),
            profile: args.profile.clone(),
        }
    })?;
    let name = format!(
        "{}-verify",
        triggered_name(&args.group, &args.profile, clock.now())
    );
    let mut verification = MysqlBackupVerification::new(
        &name,
        MysqlBackupVerificationSpec {
            group: args.group.clone(),
            profile: args.profile.clone(),
            backup: Some(latest.name_any()),
            sanity_check: profile
                .verification
                .as_ref()
                .and_then(|v| v.sanity_check.clone()),
            point_in_time: None,
        },
    );
    verification.metadata.labels = Some(trigger_labels(&args.group, &args.profile));
    Api::<MysqlBackupVerification>::namespaced(client.clone(), &args.namespace)
        .create(&PostParams::default(), &verification)
        .await
        .map_err(|source| BackupError::Kube {
            action: format!("creating MysqlBackupVerification {name}"),
            namespace: args.namespace.clone(),
            source: Box::new(source),
        })?;
    Ok(name)
}

/// Production wiring of a backup Job: the in-cluster client, the dump tool, TCP.
pub fn production_deps(client: Client, args: &BackupArgs) -> BackupDeps {
    BackupDeps {
        client,
        dump: Arc::new(crate::seams::dump::DumpCommand {
            program: args.dump_program.clone(),
            dialect: args.dump_dialect.into(),
        }),
        storage: Arc::new(crate::seams::object_storage::TcpDialer),
        clock: Arc::new(crate::seams::SystemClock),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{JobStatus, MysqlBackupStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[tokio::test]
    async fn the_head_is_read_until_the_gtid_position_and_kept_for_the_upload() {
        let dump = b"-- MySQL dump\nSET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'u:1-3';\nINSERT INTO t VALUES (1);\n".to_vec();
        let (head, gtid) = read_dump_head(&mut Cursor::new(dump.clone()), DUMP_HEAD_LIMIT)
            .await
            .unwrap();
        assert_eq!(gtid.as_deref(), Some("u:1-3"));
        assert_eq!(head, dump, "the whole (small) dump was read into the head");
        let (head, gtid) = read_dump_head(&mut Cursor::new(b"CREATE TABLE t;".repeat(100)), 64)
            .await
            .unwrap();
        assert_eq!(gtid, None);
        assert_eq!(head.len(), 64, "never more than the limit");
    }

    fn backup(name: &str, profile: &str, phase: JobPhase, completed: i64) -> MysqlBackup {
        let mut b = MysqlBackup::new(
            name,
            MysqlBackupSpec {
                group: "playground".into(),
                profile: profile.into(),
                source: crate::api::BackupSource::Replica,
            },
        );
        b.status = Some(MysqlBackupStatus {
            job: JobStatus {
                phase: Some(phase),
                completed_at: Some(Time(
                    jiff::Timestamp::from_second(1_800_000_000 + completed).unwrap(),
                )),
                ..JobStatus::default()
            },
            ..MysqlBackupStatus::default()
        });
        b
    }

    #[test]
    fn verification_targets_the_latest_succeeded_backup_of_the_profile() {
        let backups = [
            backup("a", "minio", JobPhase::Succeeded, 10),
            backup("b", "minio", JobPhase::Succeeded, 30),
            backup("c", "minio", JobPhase::Failed, 40),
            backup("d", "other", JobPhase::Succeeded, 50),
            backup("e", "minio", JobPhase::Running, 60),
        ];
        let latest = latest_succeeded(&backups, "playground", "minio").map(|b| b.name_any());
        assert_eq!(latest.as_deref(), Some("b"));
        assert!(latest_succeeded(&backups[2..3], "playground", "minio").is_none());
        assert!(latest_succeeded(&backups, "elsewhere", "minio").is_none());
    }

    #[test]
    fn triggered_names_sort_by_time_and_name_group_and_profile() {
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(
            triggered_name("playground", "minio", at),
            "playground-minio-20270115-080000"
        );
    }
}
