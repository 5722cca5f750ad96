//! Backup decisions, pure: what to do about one `MysqlBackup` given its group and its
//! Job (`decide_backup`), and which Succeeded backups a profile's retention lets go
//! (`expired_backups`). The controller (`controllers::backup`) observes and acts.
//!
//! Who writes what on a `MysqlBackup`'s status: the controller writes the phase, the
//! site, the timestamps and the conditions; the backup Job writes what only it knows,
//! after its upload completed (location, sizeBytes, checksum, gtidExecuted), or, when it
//! fails, a `message` saying why. `Succeeded` needs both: the Job Complete *and* its
//! result recorded, so an interrupted backup can never show Succeeded.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::decision::{EventIntent, EventReason};
use crate::api::{
    BackupSource, JobPhase, MysqlBackupSpec, MysqlBackupStatus, MysqlFailoverGroup, Retention,
    SiteState,
};

/// How long a Running backup may have no Job before it is declared failed: the Job
/// was created by us, so its absence beyond the cache's lag means someone deleted it.
pub const JOB_MISSING_GRACE: Duration = Duration::from_secs(60);

/// The Kubernetes Job of a backup, as the controller reads it from the Job's
/// conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupJobState {
    Running,
    Complete,
    /// `reason` is the Job's Failed condition reason (e.g. BackoffLimitExceeded).
    Failed {
        reason: Option<String>,
    },
}

/// What to do about one backup.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupDecision {
    /// The status to write (`None`: unchanged).
    pub status: Option<MysqlBackupStatus>,
    /// Create the backup Job reading `site`, writing `object`.
    pub start_job: Option<StartBackupJob>,
    pub event: Option<EventIntent>,
    /// When finished: how long the backup took and how large it is, for the metrics.
    pub finished: Option<FinishedBackup>,
    /// Look again after this long even if nothing changes.
    pub requeue: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartBackupJob {
    pub site: String,
    pub object: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FinishedBackup {
    pub succeeded: bool,
    pub duration: Option<Duration>,
    pub size_bytes: Option<i64>,
}

impl BackupDecision {
    fn nothing() -> Self {
        Self {
            status: None,
            start_job: None,
            event: None,
            finished: None,
            requeue: None,
        }
    }
}

/// The error a Job recorded in its status message, unless the message is still the
/// progress note it writes while working (starting with `progress`).
pub(crate) fn recorded_error(message: Option<&str>, progress: &str) -> Option<String> {
    message
        .filter(|m| !m.starts_with(progress))
        .map(str::to_string)
}

/// Why a Job failed, for a status message: the error it recorded, else where to look
/// (its pod's log) with the Job's own reason.
pub(crate) fn job_failure(message: Option<&str>, progress: &str, reason: Option<&str>) -> String {
    recorded_error(message, progress).unwrap_or_else(|| {
        format!(
            "see the log of its pod (reason {})",
            reason.unwrap_or("unknown")
        )
    })
}

/// The object name of a backup under its profile's prefix: the group, then the
/// backup's name, so that groups sharing a bucket and prefix never collide.
pub fn backup_object(group: &str, backup: &str) -> String {
    format!("{group}/{backup}.sql")
}

/// The site a backup reads from. `Replica`: a read-only site that is replicating and
/// not being recovered; failing that, the writable site (the API's documented
/// fallback: a backup from the primary beats no backup). `Primary`: the writable site
/// only. `None` when no site qualifies.
pub fn pick_source(group: &MysqlFailoverGroup, preference: BackupSource) -> Option<String> {
    let status = group.status.as_ref()?;
    let active = status.active_site.as_deref();
    let primary = status
        .sites
        .iter()
        .find(|s| Some(s.name.as_str()) == active && s.state == Some(SiteState::Writable))
        .map(|s| s.name.clone());
    let replica = status
        .sites
        .iter()
        .find(|s| {
            Some(s.name.as_str()) != active
                && s.state == Some(SiteState::ReadOnly)
                && s.replicating == Some(true)
                && s.recovery_state.is_none()
        })
        .map(|s| s.name.clone());
    match preference {
        BackupSource::Replica => replica.or(primary),
        BackupSource::Primary => primary,
    }
}

/// The observed state of one backup.
#[derive(Debug, Clone)]
pub struct BackupObservation<'a> {
    pub name: &'a str,
    pub spec: &'a MysqlBackupSpec,
    pub status: &'a MysqlBackupStatus,
    /// `None` when the group does not exist.
    pub group: Option<&'a MysqlFailoverGroup>,
    /// `None` when the backup's Job does not exist.
    pub job: Option<BackupJobState>,
    pub generation: Option<i64>,
}

/// Decides the next step of one backup.
pub fn decide_backup(obs: &BackupObservation<'_>, now: Timestamp) -> BackupDecision {
    match obs.status.job.phase {
        Some(JobPhase::Succeeded | JobPhase::Failed) => BackupDecision::nothing(),
        None | Some(JobPhase::Pending) => decide_start(obs, now),
        Some(JobPhase::Running) => decide_running(obs, now),
    }
}

fn decide_start(obs: &BackupObservation<'_>, now: Timestamp) -> BackupDecision {
    let Some(group) = obs.group else {
        return fail(
            obs,
            now,
            "GroupNotFound",
            format!(
                "MysqlFailoverGroup {:?} (spec.group) does not exist in this namespace",
                obs.spec.group
            ),
        );
    };
    let profile = group
        .spec
        .backup
        .iter()
        .flat_map(|b| b.profiles.iter())
        .find(|p| p.name == obs.spec.profile);
    let Some(profile) = profile else {
        return fail(
            obs,
            now,
            "ProfileNotFound",
            format!(
                "MysqlFailoverGroup {} has no backup profile {:?} (spec.profile); see spec.backup.profiles",
                obs.spec.group, obs.spec.profile
            ),
        );
    };
    if profile.storage.s3.is_none() {
        return fail(
            obs,
            now,
            "StorageUnsupported",
            format!(
                "backup profile {:?} of MysqlFailoverGroup {} uses pvc storage, which is not supported yet: use s3",
                profile.name, obs.spec.group
            ),
        );
    }
    let Some(site) = pick_source(group, obs.spec.source) else {
        // Not a failure: the group may be bootstrapping or failing over. Wait, and say
        // why, so that a backup stuck here is explained.
        let message = match obs.spec.source {
            BackupSource::Replica => {
                "waiting for a site to back up from: no replicating replica and no writable primary"
            }
            BackupSource::Primary => {
                "waiting for a writable primary to back up from (spec.source: primary)"
            }
        };
        let status = MysqlBackupStatus {
            job: crate::api::JobStatus {
                phase: Some(JobPhase::Pending),
                message: Some(message.to_string()),
                ..obs.status.job.clone()
            },
            ..obs.status.clone()
        };
        return BackupDecision {
            status: (status != *obs.status).then_some(status),
            requeue: Some(Duration::from_secs(5)),
            ..BackupDecision::nothing()
        };
    };
    let object = backup_object(&obs.spec.group, obs.name);
    let message = format!("dumping site {site} to {object}");
    let status = MysqlBackupStatus {
        site: Some(site.clone()),
        job: crate::api::JobStatus {
            phase: Some(JobPhase::Running),
            started_at: Some(Time(now)),
            completed_at: None,
            message: Some(message.clone()),
            conditions: vec![condition(
                "Complete",
                "False",
                "Running",
                &message,
                obs.generation,
                now,
            )],
        },
        ..obs.status.clone()
    };
    BackupDecision {
        status: Some(status),
        start_job: Some(StartBackupJob { site, object }),
        event: Some(EventIntent::normal(
            EventReason::BackupStarted,
            format!("backup {}: {message}", obs.name),
        )),
        requeue: Some(JOB_MISSING_GRACE),
        ..BackupDecision::nothing()
    }
}

fn decide_running(obs: &BackupObservation<'_>, now: Timestamp) -> BackupDecision {
    let job = crate::children::names::backup_job(obs.name);
    match &obs.job {
        Some(BackupJobState::Running) => BackupDecision::nothing(),
        None => {
            let started = obs.status.job.started_at.as_ref().map(|t| t.0);
            let waited = started.map_or(Duration::ZERO, |s| {
                Duration::from_millis(
                    u64::try_from(now.as_millisecond().saturating_sub(s.as_millisecond()))
                        .unwrap_or(0),
                )
            });
            if waited < JOB_MISSING_GRACE {
                BackupDecision {
                    requeue: Some(JOB_MISSING_GRACE.saturating_sub(waited)),
                    ..BackupDecision::nothing()
                }
            } else {
                fail(
                    obs,
                    now,
                    "JobMissing",
                    format!(
                        "backup Job {job} disappeared before it finished; the dump may be incomplete and was not recorded"
                    ),
                )
            }
        }
        Some(BackupJobState::Failed { reason }) => {
            let why = job_failure(
                obs.status.job.message.as_deref(),
                "dumping site",
                reason.as_deref(),
            );
            fail(
                obs,
                now,
                "JobFailed",
                format!("backup Job {job} failed: {why}"),
            )
        }
        Some(BackupJobState::Complete) => {
            let s = obs.status;
            let recorded = s.location.is_some()
                && s.checksum.is_some()
                && s.size_bytes.is_some()
                && s.gtid_executed.is_some();
            if !recorded {
                return fail(
                    obs,
                    now,
                    "ResultMissing",
                    format!(
                        "backup Job {job} completed without recording its object, size, checksum and GTID set; the backup is not trusted"
                    ),
                );
            }
            let message = format!(
                "{} bytes from site {} at {}, consistent with GTID set {}",
                s.size_bytes.unwrap_or_default(),
                s.site.as_deref().unwrap_or("?"),
                s.location.as_deref().unwrap_or("?"),
                s.gtid_executed.as_deref().unwrap_or("?"),
            );
            let status = finished(obs, now, JobPhase::Succeeded, "Succeeded", &message);
            BackupDecision {
                finished: Some(FinishedBackup {
                    succeeded: true,
                    duration: duration_since(obs.status.job.started_at.as_ref(), now),
                    size_bytes: s.size_bytes,
                }),
                status: Some(status),
                event: Some(EventIntent::normal(
                    EventReason::BackupSucceeded,
                    format!("backup {}: {message}", obs.name),
                )),
                ..BackupDecision::nothing()
            }
        }
    }
}

pub(super) fn duration_since(start: Option<&Time>, now: Timestamp) -> Option<Duration> {
    let start = start?;
    u64::try_from(now.as_millisecond() - start.0.as_millisecond())
        .ok()
        .map(Duration::from_millis)
}

fn fail(
    obs: &BackupObservation<'_>,
    now: Timestamp,
    reason: &str,
    message: String,
) -> BackupDecision {
    let status = finished(obs, now, JobPhase::Failed, reason, &message);
    BackupDecision {
        finished: Some(FinishedBackup {
            succeeded: false,
            duration: duration_since(obs.status.job.started_at.as_ref(), now),
            size_bytes: None,
        }),
        status: Some(status),
        event: Some(EventIntent::warning(
            EventReason::BackupFailed,
            format!("backup {}: {message}", obs.name),
        )),
        ..BackupDecision::nothing()
    }
}

fn finished(
    obs: &BackupObservation<'_>,
    now: Timestamp,
    phase: JobPhase,
    reason: &str,
    message: &str,
) -> MysqlBackupStatus {
    let complete = if phase == JobPhase::Succeeded {
        "True"
    } else {
        "False"
    };
    MysqlBackupStatus {
        job: crate::api::JobStatus {
            phase: Some(phase),
            started_at: obs.status.job.started_at.clone(),
            completed_at: Some(Time(now)),
            message: Some(message.to_string()),
            conditions: vec![condition(
                "Complete",
                complete,
                reason,
                message,
                obs.generation,
                now,
            )],
        },
        ..obs.status.clone()
    }
}

pub(super) fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// One Succeeded backup of a profile, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedBackup {
    pub name: String,
    pub completed_at: Timestamp,
    /// A Succeeded verification names this backup.
    pub verified: bool,
}

/// The Succeeded backups of one profile that its retention lets go, oldest first.
///
/// - `keepLast` alone: everything beyond the newest `keepLast`.
/// - `maxAge` alone: everything older than `maxAge`.
/// - both: beyond the newest `keepLast` *and* older than `maxAge`.
/// - neither (or no retention): nothing.
///
/// The newest verified backup is never let go, whatever the rules say: it is the one
/// known to restore. Nor is the newest backup of all (a `maxAge` shorter than the
/// schedule's gap would otherwise leave the profile with nothing to restore). Failed backups are not counted and never deleted here (they hold
/// no object; a failure must not make older good backups go either).
pub fn expired_backups(
    backups: &[RetainedBackup],
    retention: Option<&Retention>,
    now: Timestamp,
) -> Vec<String> {
    let Some(retention) = retention else {
        return Vec::new();
    };
    let keep_last = retention
        .keep_last
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0);
    let max_age = retention.max_age.map(|d| d.as_std());
    if keep_last.is_none() && max_age.is_none() {
        return Vec::new();
    }
    let mut newest_first: Vec<&RetainedBackup> = backups.iter().collect();
    newest_first.sort_by(|a, b| {
        b.completed_at
            .cmp(&a.completed_at)
            .then_with(|| b.name.cmp(&a.name))
    });
    let newest_verified = newest_first.iter().find(|b| b.verified).map(|b| &b.name);
    let newest = newest_first.first().map(|b| &b.name);
    let mut expired: Vec<&RetainedBackup> = newest_first
        .iter()
        .enumerate()
        .filter(|(index, _)| keep_last.is_none_or(|n| *index >= n))
        .map(|(_, b)| *b)
        .filter(|b| {
            max_age.is_none_or(|age| {
                let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                now.as_millisecond()
                    .saturating_sub(b.completed_at.as_millisecond())
                    > age_ms
            })
        })
        .filter(|b| Some(&b.name) != newest_verified && Some(&b.name) != newest)
        .collect();
    expired.reverse();
    expired.into_iter().map(|b| b.name.clone()).collect()
}

/// The name (relative to the profile's `prefix`, what `ObjectStorage::delete` takes) of
/// the object a backup recorded as `location` (the full key). `None` when the location
/// is not under the profile's current prefix: the prefix changed since the backup was
/// written, so deleting through the profile would miss the object.
pub fn object_name_under_prefix(location: &str, prefix: Option<&str>) -> Option<String> {
    let location = location.trim_matches('/');
    let name = match prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(prefix) => location.strip_prefix(prefix)?.strip_prefix('/')?,
        None => location,
    };
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
