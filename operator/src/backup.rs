//! The programs the backup Jobs run: `bloodraven backup` (dump one site, stream the dump
//! to the profile's S3 storage, record the result on the `MysqlBackup`), and the
//! CronJobs' `bloodraven trigger-backup` / `trigger-verification` (create the CR the
//! controllers act on). Decisions (which site, when a backup counts as Succeeded) are
//! the controller's; these programs do one thing each and say clearly when it failed.

use std::sync::Arc;

use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::io::AsyncRead;

use crate::api::{
    BackupProfile, JobPhase, MysqlBackup, MysqlBackupSpec, MysqlBackupVerification,
    MysqlBackupVerificationSpec, MysqlFailoverGroup,
};
use crate::children::backup::{
    MYSQL_PASSWORD_ENV, PROFILE_LABEL, S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV,
};
use crate::children::{FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY_LABEL};
use crate::seams::SharedClock;
use crate::seams::dump::{DumpTarget, SharedDumpSource, gtid_from_dump_head};
use crate::seams::object_storage::SharedStorageDialer;
use crate::storage::{ObjectStorage, S3Credentials, S3Target, StorageError, TransferTuning};

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
    #[error(
        "backup profile {profile:?} of MysqlFailoverGroup {group} has no s3 storage (pvc storage is not supported yet)"
    )]
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
        "the dump of {host} does not state the GTID set it is consistent with (is gtid_mode ON?); its object was deleted"
    )]
    NoGtidPosition { host: String },
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

pub(crate) async fn read_group(
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

pub(crate) fn find_profile(
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

/// The longest GTID statement kept while looking for its end (a set naming thousands
/// of server UUIDs still fits).
pub const GTID_STATEMENT_LIMIT: usize = 1024 * 1024;

/// Where each dump tool states the GTID set its dump is consistent with: mysqldump in
/// its header, mariadb-dump (10.5+) as a comment at the very end.
const GTID_MARKERS: [&[u8]; 2] = [
    b"SET @@GLOBAL.GTID_PURGED=",
    b"-- SET GLOBAL gtid_slave_pos='",
];

/// Passes a dump through unchanged while finding the statement that names its GTID set
/// (the first one; inside dumped string values a quote is escaped, so data cannot
/// fake it). Memory: the statement once found, plus a marker's length of overlap.
pub struct GtidWatcher<R> {
    inner: R,
    /// The end of the bytes seen so far (for markers split across reads).
    overlap: Vec<u8>,
    /// From a marker to (so far) the end of what was read.
    statement: Option<Vec<u8>>,
    found: Option<String>,
}

impl<R> GtidWatcher<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            overlap: Vec::new(),
            statement: None,
            found: None,
        }
    }

    /// The GTID set, once its statement went by complete.
    pub fn gtid(&self) -> Option<&str> {
        self.found.as_deref()
    }

    fn observe(&mut self, chunk: &[u8]) {
        if self.found.is_some() {
            return;
        }
        if let Some(statement) = &mut self.statement {
            statement.extend_from_slice(chunk);
        } else {
            let mut window = std::mem::take(&mut self.overlap);
            window.extend_from_slice(chunk);
            let at = GTID_MARKERS.iter().filter_map(|m| find(&window, m)).min();
            match at {
                Some(at) => self.statement = Some(window[at..].to_vec()),
                None => {
                    let keep = GTID_MARKERS.iter().map(|m| m.len()).max().unwrap_or(0);
                    let from = window.len().saturating_sub(keep);
                    self.overlap = window[from..].to_vec();
                    return;
                }
            }
        }
        if let Some(statement) = &self.statement {
            if let Some(end) = statement.iter().position(|b| *b == b';') {
                self.found = gtid_from_dump_head(&String::from_utf8_lossy(&statement[..=end]));
                self.statement = None;
            } else if statement.len() > GTID_STATEMENT_LIMIT {
                self.statement = None;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl<R: AsyncRead + Unpin> AsyncRead for GtidWatcher<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &poll {
            let chunk = buf.filled()[before..].to_vec();
            this.observe(&chunk);
        }
        poll
    }
}

/// Runs one backup: dump, upload, record. On failure the error is also written to the
/// `MysqlBackup`'s `status.message` (best effort), so that the controller's Failed
/// status says why, not only that the Job failed.
pub async fn run_backup(
    args: &BackupArgs,
    deps: &BackupDeps,
) -> Result<RecordedBackup, BackupError> {
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

async fn dump_and_upload(
    args: &BackupArgs,
    deps: &BackupDeps,
) -> Result<RecordedBackup, BackupError> {
    let group = read_group(&deps.client, &args.namespace, &args.group).await?;
    let profile = find_profile(&group, &args.namespace, &args.profile)?;
    let s3 = profile
        .storage
        .s3
        .as_ref()
        .ok_or_else(|| BackupError::NotS3 {
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
    dump_to_storage(
        deps.dump.as_ref(),
        &DumpTarget {
            host: args.host.clone(),
            port: args.port,
            user: args.mysql_user.clone(),
            password: args.mysql_password.clone(),
        },
        &storage,
        &args.object,
    )
    .await
}

/// The data path of a backup, without Kubernetes: dump `target`, read the GTID set from
/// the dump's head, stream the whole dump to `object`. The integration tier runs exactly
/// this against a real server and a real S3 store.
pub async fn dump_to_storage(
    dump: &dyn crate::seams::dump::DumpSource,
    target: &DumpTarget,
    storage: &ObjectStorage,
    object: &str,
) -> Result<RecordedBackup, BackupError> {
    let dump_error = |source| BackupError::Dump {
        host: target.host.clone(),
        source,
    };
    let stream = dump.dump(target).await.map_err(dump_error)?;
    let mut watched = GtidWatcher::new(stream);
    let stored = storage.upload(object, &mut watched).await?;
    let Some(gtid) = watched.gtid().map(str::to_string) else {
        // A dump of unknown position is no backup: remove it rather than leave an
        // object that looks complete.
        let _ = storage.delete(object).await;
        return Err(BackupError::NoGtidPosition {
            host: target.host.clone(),
        });
    };
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
    create_triggered(client, &args.namespace, &backup).await?;
    Ok(name)
}

/// Creates what a trigger command made (a MysqlBackup or a MysqlBackupVerification),
/// naming its kind and name in the error.
async fn create_triggered<K>(
    client: &Client,
    namespace: &str,
    object: &K,
) -> Result<(), BackupError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), object)
        .await
        .map(|_| ())
        .map_err(|source| BackupError::Kube {
            action: format!(
                "creating {} {}",
                K::kind(&K::DynamicType::default()),
                object.name_any()
            ),
            namespace: namespace.to_string(),
            source: Box::new(source),
        })
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
            at(a)
                .cmp(&at(b))
                .then_with(|| a.name_any().cmp(&b.name_any()))
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
    create_triggered(client, &args.namespace, &verification).await?;
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

    /// Feeds `dump` through the watcher in `chunk`-byte reads.
    async fn watch(dump: &[u8], chunk: usize) -> (Vec<u8>, Option<String>) {
        use tokio::io::AsyncReadExt;
        let mut watcher = GtidWatcher::new(std::io::Cursor::new(dump.to_vec()));
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = watcher.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        (out, watcher.gtid().map(str::to_string))
    }

    #[tokio::test]
    async fn the_gtid_set_is_found_wherever_the_tool_writes_it_and_the_bytes_pass_unchanged() {
        let mysql = b"-- MySQL dump\nSET @@GLOBAL.GTID_PURGED=/*!80000 '+'*/ 'u:1-3,\nv:1-9';\nINSERT INTO t VALUES ('SET @@GLOBAL.GTID_PURGED=x');\n".to_vec();
        let mut mariadb =
            b"-- MariaDB dump\n-- Table structure for table `gtid_slave_pos`\n".to_vec();
        mariadb.extend(b"INSERT INTO t VALUES (1);\n".repeat(5000));
        mariadb.extend(b"-- SET GLOBAL gtid_slave_pos='0-1-17';\n");
        let none = b"CREATE TABLE t (a int);\n".repeat(100);
        // Every read size, so that markers and statements split across reads.
        for chunk in [1, 2, 7, 64, 4096, 1 << 20] {
            let (out, gtid) = watch(&mysql, chunk).await;
            assert_eq!(out, mysql, "chunk {chunk}");
            assert_eq!(gtid.as_deref(), Some("u:1-3,v:1-9"), "chunk {chunk}");
            let (out, gtid) = watch(&mariadb, chunk).await;
            assert_eq!(out, mariadb, "chunk {chunk}");
            assert_eq!(gtid.as_deref(), Some("0-1-17"), "chunk {chunk}");
            assert_eq!(watch(&none, chunk).await.1, None, "chunk {chunk}");
        }
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
