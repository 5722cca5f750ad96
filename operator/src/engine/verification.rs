//! Verification decisions, pure: what to do about one `MysqlBackupVerification` given
//! its group, the backup it names and its Job (`decide_verification`). The controller
//! (`controllers::verification`) observes and acts; the Job's program
//! (`crate::verification`) loads the dump into a scratch mysqld and runs the check.
//!
//! Who writes what on the status: the controller writes the phase, `backup`, the
//! timestamps and the conditions; the Job writes what only it knows when it is done:
//! `result` (Passed or Failed), `rowsReturned` and, on failure, `message`. The Job's
//! scratch mysqld keeps running after the check, so the Job does not complete by itself:
//! on Passed the controller deletes it (its Pod and ephemeral PVC go with it); on Failed
//! it is kept for inspection until the verification is deleted.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::backup::{BackupJobState, JOB_MISSING_GRACE, condition, duration_since};
use super::decision::{EventIntent, EventReason};
use crate::api::{
    JobPhase, JobStatus, MysqlBackup, MysqlBackupVerificationSpec, MysqlBackupVerificationStatus,
    MysqlFailoverGroup, VerificationResult,
};

/// How often a verification waiting for its backup to finish looks again.
pub const BACKUP_WAIT: Duration = Duration::from_secs(5);

/// What the controller knows about point-in-time recovery of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PitrState {
    /// `spec.backup.pitr.enabled`.
    pub enabled: bool,
    /// Binlogs of the active site are being archived (a recorded archive exists).
    pub archiving: bool,
}

/// The observed state of one verification.
#[derive(Debug, Clone)]
pub struct VerificationObservation<'a> {
    pub name: &'a str,
    pub spec: &'a MysqlBackupVerificationSpec,
    pub status: &'a MysqlBackupVerificationStatus,
    /// `None` when the group does not exist.
    pub group: Option<&'a MysqlFailoverGroup>,
    /// The backup `spec.backup` names, or without it the latest Succeeded backup of the
    /// profile; `None` when there is none.
    pub backup: Option<&'a MysqlBackup>,
    pub pitr: PitrState,
    /// `None` when the verification's Job does not exist.
    pub job: Option<BackupJobState>,
    pub generation: Option<i64>,
    /// The verification is being deleted: its Job, Pod and PVC go by ownerReferences.
    pub deleting: bool,
}

/// The Job to create: which object of which backup to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartVerificationJob {
    pub backup: String,
    /// The object name under the profile's prefix (`engine::backup::backup_object`).
    pub object: String,
    pub checksum: String,
    pub size_bytes: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FinishedVerification {
    pub succeeded: bool,
    pub duration: Option<Duration>,
}

/// What to do about one verification.
#[derive(Debug, Clone, PartialEq)]
pub struct VerificationDecision {
    /// The status to write (`None`: unchanged).
    pub status: Option<MysqlBackupVerificationStatus>,
    pub start_job: Option<StartVerificationJob>,
    /// Delete the Job (and with it the scratch Pod and its PVC): the verification passed.
    pub delete_job: bool,
    pub event: Option<EventIntent>,
    pub finished: Option<FinishedVerification>,
    pub requeue: Option<Duration>,
}

impl VerificationDecision {
    fn nothing() -> Self {
        Self {
            status: None,
            start_job: None,
            delete_job: false,
            event: None,
            finished: None,
            requeue: None,
        }
    }
}

/// Decides the next step of one verification.
pub fn decide_verification(
    obs: &VerificationObservation<'_>,
    now: Timestamp,
) -> VerificationDecision {
    if obs.deleting {
        return VerificationDecision::nothing();
    }
    match obs.status.job.phase {
        // A passed verification whose Job is still there: the cleanup did not land yet.
        Some(JobPhase::Succeeded) => VerificationDecision {
            delete_job: obs.job.is_some(),
            ..VerificationDecision::nothing()
        },
        Some(JobPhase::Failed) => VerificationDecision::nothing(),
        None | Some(JobPhase::Pending) => decide_start(obs, now),
        Some(JobPhase::Running) => decide_running(obs, now),
    }
}

fn decide_start(obs: &VerificationObservation<'_>, now: Timestamp) -> VerificationDecision {
    let spec = obs.spec;
    let Some(group) = obs.group else {
        return fail(
            obs,
            now,
            "GroupNotFound",
            format!(
                "MysqlFailoverGroup {:?} (spec.group) does not exist in this namespace",
                spec.group
            ),
        );
    };
    let profile = group
        .spec
        .backup
        .iter()
        .flat_map(|b| b.profiles.iter())
        .find(|p| p.name == spec.profile);
    let Some(profile) = profile else {
        return fail(
            obs,
            now,
            "ProfileNotFound",
            format!(
                "MysqlFailoverGroup {} has no backup profile {:?} (spec.profile); see spec.backup.profiles",
                spec.group, spec.profile
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
                profile.name, spec.group
            ),
        );
    }
    if let Some(at) = &spec.point_in_time {
        // Refused before anything runs: a verification that ignored pointInTime would
        // report a point-in-time restore as verified when only the dump was.
        let why = if !obs.pitr.enabled {
            format!(
                "spec.pointInTime ({}) needs point-in-time recovery, but MysqlFailoverGroup {} does not have spec.backup.pitr.enabled=true and archives no binlogs; remove spec.pointInTime to verify the backup itself",
                at.0, spec.group
            )
        } else if !obs.pitr.archiving {
            format!(
                "spec.pointInTime ({}) needs archived binlogs, but MysqlFailoverGroup {} has spec.backup.pitr.enabled=true and no binlog archive yet; remove spec.pointInTime to verify the backup itself",
                at.0, spec.group
            )
        } else {
            format!(
                "spec.pointInTime ({}): replaying archived binlogs in a verification is not supported yet; remove spec.pointInTime to verify the backup itself",
                at.0
            )
        };
        return fail(obs, now, "PointInTimeRefused", why);
    }
    let Some(backup) = obs.backup else {
        let message = match &spec.backup {
            Some(name) => {
                format!("MysqlBackup {name:?} (spec.backup) does not exist in this namespace")
            }
            None => format!(
                "no Succeeded MysqlBackup of profile {:?} of MysqlFailoverGroup {} to verify",
                spec.profile, spec.group
            ),
        };
        return fail(obs, now, "BackupNotFound", message);
    };
    let backup_name = backup.metadata.name.clone().unwrap_or_default();
    if backup.spec.group != spec.group || backup.spec.profile != spec.profile {
        return fail(
            obs,
            now,
            "BackupMismatch",
            format!(
                "MysqlBackup {backup_name} (spec.backup) belongs to group {} profile {}, not to group {} profile {}",
                backup.spec.group, backup.spec.profile, spec.group, spec.profile
            ),
        );
    }
    let backup_status = backup.status.clone().unwrap_or_default();
    match backup_status.job.phase {
        Some(JobPhase::Succeeded) => {}
        Some(JobPhase::Failed) => {
            return fail(
                obs,
                now,
                "BackupNotSucceeded",
                format!("MysqlBackup {backup_name} failed, so there is nothing to verify"),
            );
        }
        phase @ (None | Some(JobPhase::Pending | JobPhase::Running)) => {
            // A hand-made verification of a backup still being taken: wait for it.
            let message = format!(
                "waiting for MysqlBackup {backup_name} to finish (phase {})",
                phase.map_or("none", phase_name)
            );
            let status = MysqlBackupVerificationStatus {
                backup: Some(backup_name),
                job: JobStatus {
                    phase: Some(JobPhase::Pending),
                    message: Some(message),
                    ..obs.status.job.clone()
                },
                ..obs.status.clone()
            };
            return VerificationDecision {
                status: (status != *obs.status).then_some(status),
                requeue: Some(BACKUP_WAIT),
                ..VerificationDecision::nothing()
            };
        }
    }
    let (Some(location), Some(checksum)) = (backup_status.location, backup_status.checksum) else {
        return fail(
            obs,
            now,
            "BackupIncomplete",
            format!(
                "MysqlBackup {backup_name} is Succeeded but records no location or checksum; it cannot be loaded"
            ),
        );
    };
    let message = format!(
        "loading backup {backup_name} ({location}) into a scratch mysqld{}",
        if spec.sanity_check.is_some() {
            " and running the sanity check"
        } else {
            ""
        }
    );
    let status = MysqlBackupVerificationStatus {
        backup: Some(backup_name.clone()),
        rows_returned: None,
        result: None,
        job: JobStatus {
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
    };
    VerificationDecision {
        status: Some(status),
        start_job: Some(StartVerificationJob {
            object: super::backup::backup_object(&backup.spec.group, &backup_name),
            backup: backup_name,
            checksum,
            size_bytes: backup_status.size_bytes,
        }),
        event: Some(EventIntent::normal(
            EventReason::VerificationStarted,
            format!("verification {}: {message}", obs.name),
        )),
        requeue: Some(JOB_MISSING_GRACE),
        ..VerificationDecision::nothing()
    }
}

fn phase_name(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Pending => "Pending",
        JobPhase::Running => "Running",
        JobPhase::Succeeded => "Succeeded",
        JobPhase::Failed => "Failed",
    }
}

fn decide_running(obs: &VerificationObservation<'_>, now: Timestamp) -> VerificationDecision {
    let job = crate::children::names::verification_job(obs.name);
    let backup = obs.status.backup.as_deref().unwrap_or("?");
    match obs.status.result {
        Some(VerificationResult::Passed) => {
            if obs.spec.sanity_check.is_some() && obs.status.rows_returned.is_none() {
                return fail(
                    obs,
                    now,
                    "ResultMissing",
                    format!(
                        "verification Job {job} reported Passed without the sanity check's row count; the result is not trusted"
                    ),
                );
            }
            let message = match (&obs.spec.sanity_check, obs.status.rows_returned) {
                (Some(check), Some(rows)) => format!(
                    "backup {backup} loaded into a scratch mysqld; the sanity check returned {rows} row(s){}",
                    check
                        .expect_rows
                        .map(|n| format!(" (expected at least {n})"))
                        .unwrap_or_default()
                ),
                _ => format!(
                    "backup {backup} loaded into a scratch mysqld (no sanity check configured)"
                ),
            };
            let status = finished(obs, now, JobPhase::Succeeded, "Succeeded", &message);
            VerificationDecision {
                status: Some(status),
                delete_job: obs.job.is_some(),
                event: Some(EventIntent::normal(
                    EventReason::VerificationSucceeded,
                    format!("verification {}: {message}", obs.name),
                )),
                finished: Some(FinishedVerification {
                    succeeded: true,
                    duration: duration_since(obs.status.job.started_at.as_ref(), now),
                }),
                ..VerificationDecision::nothing()
            }
        }
        Some(VerificationResult::Failed) => {
            let why = job_message(obs).unwrap_or_else(|| "see the log of its pod".to_string());
            fail(
                obs,
                now,
                "CheckFailed",
                format!(
                    "verification of backup {backup} failed: {why}; the Pod of Job {job} (its scratch mysqld still running) and its PVC are kept for inspection until this MysqlBackupVerification is deleted"
                ),
            )
        }
        None => match &obs.job {
            Some(BackupJobState::Running) => VerificationDecision::nothing(),
            None => {
                let waited = duration_since(obs.status.job.started_at.as_ref(), now)
                    .unwrap_or(Duration::ZERO);
                if waited < JOB_MISSING_GRACE {
                    VerificationDecision {
                        requeue: Some(JOB_MISSING_GRACE.saturating_sub(waited)),
                        ..VerificationDecision::nothing()
                    }
                } else {
                    fail(
                        obs,
                        now,
                        "JobMissing",
                        format!(
                            "verification Job {job} disappeared before it reported a result; backup {backup} is not verified"
                        ),
                    )
                }
            }
            Some(BackupJobState::Failed { reason }) => {
                let why = crate::engine::backup::job_failure(
                    obs.status.job.message.as_deref(),
                    LOADING,
                    reason.as_deref(),
                );
                fail(
                    obs,
                    now,
                    "JobFailed",
                    format!("verification Job {job} failed: {why}"),
                )
            }
            Some(BackupJobState::Complete) => fail(
                obs,
                now,
                "ResultMissing",
                format!(
                    "verification Job {job} completed without reporting a result; backup {backup} is not verified"
                ),
            ),
        },
    }
}

/// The message the Job wrote, if it is not the controller's own "loading ..." line.
/// How the verify program's progress note starts (not an error).
const LOADING: &str = "loading backup";

fn job_message(obs: &VerificationObservation<'_>) -> Option<String> {
    crate::engine::backup::recorded_error(obs.status.job.message.as_deref(), LOADING)
}

fn fail(
    obs: &VerificationObservation<'_>,
    now: Timestamp,
    reason: &str,
    message: String,
) -> VerificationDecision {
    let status = finished(obs, now, JobPhase::Failed, reason, &message);
    VerificationDecision {
        status: Some(status),
        event: Some(EventIntent::warning(
            EventReason::VerificationFailed,
            format!("verification {}: {message}", obs.name),
        )),
        finished: Some(FinishedVerification {
            succeeded: false,
            duration: duration_since(obs.status.job.started_at.as_ref(), now),
        }),
        ..VerificationDecision::nothing()
    }
}

fn finished(
    obs: &VerificationObservation<'_>,
    now: Timestamp,
    phase: JobPhase,
    reason: &str,
    message: &str,
) -> MysqlBackupVerificationStatus {
    let complete = if phase == JobPhase::Succeeded {
        "True"
    } else {
        "False"
    };
    MysqlBackupVerificationStatus {
        job: JobStatus {
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

#[cfg(test)]
#[path = "verification_tests.rs"]
mod tests;
