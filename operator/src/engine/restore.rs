//! Restore decisions, pure: what to do next about one `MysqlRestore` given its group,
//! its source `MysqlBackup` and its Job (`decide_restore`). The restore controller
//! observes and acts; this module never talks to anything.
//!
//! The walk of a restore (status `step`, persisted so a restarted operator resumes):
//! checks -> `PausingFailover` (the group is annotated `restore-in-progress`; the engine
//! then starts no failover) -> `Loading` (a Job loads the backup into the active site)
//! -> `Recloning` (the other site, which still holds the transactions the restore
//! removed, is rebuilt from the restored site through the confirmed-reclone path, never
//! auto-rejoined) -> Succeeded, and automatic failover resumes.
//!
//! Safety rules, each a row of the table tests: no restore while a failover runs, while
//! two sites are writable, or before the group shows failover paused for this restore;
//! only one restore per group at a time; the load goes to the active site only, and a
//! move of the active site before the load fails the restore with nothing loaded.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::backup::{BackupJobState, JOB_MISSING_GRACE, condition};
use super::decision::{EventIntent, EventReason};
use crate::api::{
    JobPhase, JobStatus, MysqlBackup, MysqlFailoverGroup, MysqlRestoreSpec, MysqlRestoreStatus,
    RESTORE_IN_PROGRESS_ANNOTATION, RecoveryState, RestoreStep, SiteState, SiteStatus,
};
use crate::gtid::GtidSet;

/// How often a restore that waits on the group looks again.
pub const RESTORE_POLL: Duration = Duration::from_secs(2);

/// A change of the group's `restore-in-progress` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseChange {
    /// Set it to this restore's name.
    Pause,
    /// Remove it (only if it still names this restore).
    Resume,
}

/// The Job that loads the backup into `site`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRestoreJob {
    pub site: String,
    /// The backup's object key (`status.location`) and what it must hash to.
    pub location: String,
    pub checksum: String,
    /// The GTID set the backup is consistent with: the restored site's gtid_executed
    /// after the load.
    pub gtid_executed: String,
}

/// What to do about one restore.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreDecision {
    /// The status to write (`None`: unchanged).
    pub status: Option<MysqlRestoreStatus>,
    pub pause: Option<PauseChange>,
    pub start_job: Option<StartRestoreJob>,
    /// Set the group's `reclone-site` annotation to this `<site>:<token>`.
    pub reclone: Option<String>,
    pub event: Option<EventIntent>,
    /// The restore ended: `true` succeeded, `false` failed (for the metrics).
    pub finished: Option<bool>,
    pub requeue: Option<Duration>,
}

impl RestoreDecision {
    fn nothing() -> Self {
        Self {
            status: None,
            pause: None,
            start_job: None,
            reclone: None,
            event: None,
            finished: None,
            requeue: None,
        }
    }

    fn wait() -> Self {
        Self {
            requeue: Some(RESTORE_POLL),
            ..Self::nothing()
        }
    }
}

/// The observed state of one restore.
#[derive(Debug, Clone)]
pub struct RestoreObservation<'a> {
    pub name: &'a str,
    pub spec: &'a MysqlRestoreSpec,
    pub status: &'a MysqlRestoreStatus,
    /// `None` when the group does not exist.
    pub group: Option<&'a MysqlFailoverGroup>,
    /// `None` when `spec.backup` does not exist.
    pub backup: Option<&'a MysqlBackup>,
    /// Other restores of the same group that started and have not finished.
    pub others_running: &'a [String],
    /// `None` when the restore's Job does not exist.
    pub job: Option<BackupJobState>,
    pub generation: Option<i64>,
}

/// Decides the next step of one restore.
pub fn decide_restore(obs: &RestoreObservation<'_>, now: Timestamp) -> RestoreDecision {
    match (obs.status.job.phase, obs.status.step) {
        (Some(JobPhase::Succeeded | JobPhase::Failed), _) => RestoreDecision::nothing(),
        (None | Some(JobPhase::Pending), _) | (Some(JobPhase::Running), None) => {
            decide_start(obs, now)
        }
        (Some(JobPhase::Running), Some(RestoreStep::PausingFailover)) => decide_pausing(obs, now),
        (Some(JobPhase::Running), Some(RestoreStep::Loading)) => decide_loading(obs, now),
        (Some(JobPhase::Running), Some(RestoreStep::Recloning)) => decide_recloning(obs, now),
    }
}

/// The group's active (writable) site, as a restore needs it.
struct Sites<'a> {
    active: &'a SiteStatus,
}

/// Why the group cannot take a restore now (a reason to wait, not to fail), or its
/// active site (when it has a second site to rebuild from it).
fn ready_group(group: &MysqlFailoverGroup) -> Result<Sites<'_>, String> {
    let status = group
        .status
        .as_ref()
        .ok_or("the group has no status yet (bootstrapping)")?;
    if let Some(emergency) = &status.emergency_failover {
        return Err(format!(
            "an emergency failover from {} to {} is in progress",
            emergency.from, emergency.to
        ));
    }
    if let Some(planned) = status.planned_in_progress() {
        return Err(format!(
            "a planned failover to {} is in progress",
            planned.target
        ));
    }
    let writable: Vec<&str> = status
        .sites
        .iter()
        .filter(|s| s.state == Some(SiteState::Writable))
        .map(|s| s.name.as_str())
        .collect();
    if writable.len() > 1 {
        return Err(format!(
            "sites {} are all writable; a restore never starts while two sites take writes",
            writable.join(" and ")
        ));
    }
    let active_name = status
        .active_site
        .as_deref()
        .ok_or("the group has no active site")?;
    let active = status
        .site(active_name)
        .filter(|s| s.state == Some(SiteState::Writable))
        .ok_or_else(|| format!("the active site {active_name} is not writable"))?;
    if active.recovery_state.is_some() {
        return Err(format!("the active site {active_name} is being recovered"));
    }
    if !status.sites.iter().any(|s| s.name != active_name) {
        return Err("the group has no second site in its status".to_string());
    }
    Ok(Sites { active })
}

/// The name the group's `restore-in-progress` annotation gives, if any.
pub fn paused_for(group: &MysqlFailoverGroup) -> Option<&str> {
    group
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESTORE_IN_PROGRESS_ANNOTATION))
        .map(|v| v.trim())
}

fn what_to_check(obs: &RestoreObservation<'_>) -> String {
    let profile = obs.backup.map_or("?", |b| b.spec.profile.as_str());
    format!(
        "check the source backup {} (kubectl get mbk {} -o yaml: phase Succeeded, location, checksum) and the credentialsSecret of profile {profile}",
        obs.spec.backup, obs.spec.backup
    )
}

fn decide_start(obs: &RestoreObservation<'_>, now: Timestamp) -> RestoreDecision {
    if obs.spec.confirm != obs.spec.group {
        // The CRD's rule refuses such an object; one that bypassed validation must not
        // replace a group's data either.
        return fail(
            obs,
            now,
            "NotConfirmed",
            format!(
                "spec.confirm {:?} does not equal spec.group {:?}: a restore replaces all data of the group, so it must be confirmed with the group's name; nothing was changed",
                obs.spec.confirm, obs.spec.group
            ),
        );
    }
    let Some(group) = obs.group else {
        return fail(
            obs,
            now,
            "GroupNotFound",
            format!(
                "MysqlFailoverGroup {:?} (spec.group) does not exist in this namespace; nothing was changed",
                obs.spec.group
            ),
        );
    };
    let Some(backup) = obs.backup else {
        return fail(
            obs,
            now,
            "BackupNotFound",
            format!(
                "MysqlBackup {:?} (spec.backup) does not exist in this namespace; nothing was changed",
                obs.spec.backup
            ),
        );
    };
    if backup.spec.group != obs.spec.group {
        return fail(
            obs,
            now,
            "BackupOfAnotherGroup",
            format!(
                "MysqlBackup {} is a backup of group {}, not of {}; nothing was changed",
                obs.spec.backup, backup.spec.group, obs.spec.group
            ),
        );
    }
    let recorded = backup.status.as_ref().and_then(|s| {
        Some((
            s.job.phase.filter(|p| *p == JobPhase::Succeeded)?,
            s.location.clone()?,
            s.checksum.clone()?,
            s.gtid_executed.clone()?,
        ))
    });
    let Some((_, _, _, gtid_executed)) = recorded else {
        let phase = backup
            .status
            .as_ref()
            .and_then(|s| s.job.phase)
            .map_or_else(|| "none".to_string(), |p| format!("{p:?}"));
        return fail(
            obs,
            now,
            "BackupNotUsable",
            format!(
                "MysqlBackup {} is not a Succeeded backup with a recorded object, checksum and GTID set (phase {phase}); restore only from a Succeeded backup; nothing was changed",
                obs.spec.backup
            ),
        );
    };
    if GtidSet::parse(&gtid_executed).is_err() {
        return fail(
            obs,
            now,
            "BackupNotUsable",
            format!(
                "MysqlBackup {} records a GTID set that does not parse ({gtid_executed:?}); nothing was changed",
                obs.spec.backup
            ),
        );
    }
    let profile = group
        .spec
        .backup
        .iter()
        .flat_map(|b| b.profiles.iter())
        .find(|p| p.name == backup.spec.profile);
    if profile.and_then(|p| p.storage.s3.as_ref()).is_none() {
        return fail(
            obs,
            now,
            "ProfileNotFound",
            format!(
                "the group has no s3 backup profile {:?} (the profile of MysqlBackup {}), so the backup cannot be read; nothing was changed",
                backup.spec.profile, obs.spec.backup
            ),
        );
    }
    if obs.spec.point_in_time.is_some() {
        let enabled = group
            .spec
            .backup
            .as_ref()
            .and_then(|b| b.pitr.as_ref())
            .is_some_and(|p| p.enabled);
        let why = if enabled {
            "binlog archiving is not built in this version of the operator (docs/backups.md), so there are no archived binlogs to replay"
        } else {
            "it needs spec.backup.pitr.enabled on the group and archived binlogs covering the instant"
        };
        return fail(
            obs,
            now,
            "PointInTimeUnavailable",
            format!(
                "spec.pointInTime cannot be honoured: {why}; restore without pointInTime to get the backup's own state; nothing was changed"
            ),
        );
    }
    if let Some(other) = obs.others_running.first() {
        return pending(
            obs,
            format!("waiting for restore {other} of the group to finish: one restore at a time"),
        );
    }
    if let Some(holder) = paused_for(group).filter(|h| *h != obs.name) {
        // Someone else's pause (another restore, or a person restoring by hand): the
        // group is theirs until they remove it.
        return pending(
            obs,
            format!(
                "waiting to start: failover is paused by {holder:?} ({RESTORE_IN_PROGRESS_ANNOTATION})"
            ),
        );
    }
    let sites = match ready_group(group) {
        Ok(sites) => sites,
        Err(why) => return pending(obs, format!("waiting to start: {why}")),
    };
    let message = format!(
        "pausing automatic failover to load backup {} into the active site {}",
        obs.spec.backup, sites.active.name
    );
    let status = MysqlRestoreStatus {
        step: Some(RestoreStep::PausingFailover),
        site: Some(sites.active.name.clone()),
        gtid_before: sites.active.gtid_executed.clone(),
        job: running_job(obs, now, &message, Some(Time(now))),
        ..obs.status.clone()
    };
    RestoreDecision {
        status: Some(status),
        pause: Some(PauseChange::Pause),
        event: Some(EventIntent::normal(
            EventReason::RestoreStarted,
            format!("restore {}: {message}", obs.name),
        )),
        requeue: Some(RESTORE_POLL),
        ..RestoreDecision::nothing()
    }
}

fn decide_pausing(obs: &RestoreObservation<'_>, now: Timestamp) -> RestoreDecision {
    let site = obs.status.site.clone().unwrap_or_default();
    let Some(group) = obs.group else {
        return fail_resuming(
            obs,
            now,
            "GroupNotFound",
            format!(
                "MysqlFailoverGroup {} disappeared before the load; nothing was loaded",
                obs.spec.group
            ),
        );
    };
    match paused_for(group) {
        Some(holder) if holder == obs.name => {}
        // Our annotation is not in the cache yet (or someone removed it): set it again
        // and wait. Loading before the group shows the pause could race a failover.
        None => {
            return RestoreDecision {
                pause: Some(PauseChange::Pause),
                ..RestoreDecision::wait()
            };
        }
        // Someone replaced it: never take the group from them; wait, saying so.
        Some(holder) => {
            return RestoreDecision {
                status: with_message(
                    obs,
                    format!(
                        "failover is paused by {holder:?}, not by this restore; waiting for {RESTORE_IN_PROGRESS_ANNOTATION} to name {}",
                        obs.name
                    ),
                ),
                ..RestoreDecision::wait()
            };
        }
    }
    let sites = match ready_group(group) {
        Ok(sites) => sites,
        Err(why) => {
            return RestoreDecision {
                status: with_message(obs, format!("failover paused; waiting to load: {why}")),
                ..RestoreDecision::wait()
            };
        }
    };
    if sites.active.name != site {
        return fail_resuming(
            obs,
            now,
            "ActiveSiteMoved",
            format!(
                "the active site moved from {site} to {} before automatic failover was paused; nothing was loaded; create the MysqlRestore again",
                sites.active.name
            ),
        );
    }
    let Some(backup) = obs.backup.and_then(|b| b.status.as_ref()) else {
        return fail_resuming(
            obs,
            now,
            "BackupNotFound",
            format!(
                "MysqlBackup {} disappeared before the load; nothing was loaded",
                obs.spec.backup
            ),
        );
    };
    let (Some(location), Some(checksum), Some(gtid_executed)) = (
        backup.location.clone(),
        backup.checksum.clone(),
        backup.gtid_executed.clone(),
    ) else {
        return fail_resuming(
            obs,
            now,
            "BackupNotUsable",
            format!(
                "MysqlBackup {} lost its recorded object before the load; nothing was loaded",
                obs.spec.backup
            ),
        );
    };
    let message = format!(
        "loading backup {} ({location}) into site {site}; automatic failover is paused",
        obs.spec.backup
    );
    RestoreDecision {
        status: Some(MysqlRestoreStatus {
            step: Some(RestoreStep::Loading),
            gtid_before: sites.active.gtid_executed.clone(),
            job: running_job(obs, now, &message, obs.status.job.started_at.clone()),
            ..obs.status.clone()
        }),
        start_job: Some(StartRestoreJob {
            site,
            location,
            checksum,
            gtid_executed,
        }),
        event: Some(EventIntent::normal(
            EventReason::RestoreLoading,
            format!("restore {}: {message}", obs.name),
        )),
        requeue: Some(JOB_MISSING_GRACE),
        ..RestoreDecision::nothing()
    }
}

/// The state a failed load leaves, in the message: what is where, and how to go on.
fn after_failed_load(obs: &RestoreObservation<'_>) -> String {
    let site = obs.status.site.as_deref().unwrap_or("?");
    let other = obs
        .group
        .and_then(|g| g.status.as_ref())
        .and_then(|s| s.sites.iter().find(|x| x.name != site))
        .map_or("the other site", |s| s.name.as_str());
    format!(
        "site {site} may be partly loaded; {other} was not touched and keeps the data from before the restore; automatic failover stays paused (annotation {RESTORE_IN_PROGRESS_ANNOTATION}={}) until this MysqlRestore is deleted; then {}, and create a new MysqlRestore",
        obs.name,
        what_to_check(obs)
    )
}

fn decide_loading(obs: &RestoreObservation<'_>, now: Timestamp) -> RestoreDecision {
    let job = crate::children::names::restore_job(obs.name);
    match &obs.job {
        Some(BackupJobState::Running) => RestoreDecision::nothing(),
        None => {
            let waited = since(
                obs.status
                    .job
                    .conditions
                    .first()
                    .map(|c| &c.last_transition_time),
                now,
            );
            if waited < JOB_MISSING_GRACE {
                RestoreDecision {
                    requeue: Some(JOB_MISSING_GRACE.saturating_sub(waited)),
                    ..RestoreDecision::nothing()
                }
            } else {
                fail(
                    obs,
                    now,
                    "JobMissing",
                    format!(
                        "restore Job {job} disappeared before it finished; {}",
                        after_failed_load(obs)
                    ),
                )
            }
        }
        Some(BackupJobState::Failed { reason }) => {
            let why = crate::engine::backup::job_failure(
                obs.status.job.message.as_deref(),
                "loading backup",
                reason.as_deref(),
            );
            fail(
                obs,
                now,
                "JobFailed",
                format!(
                    "restore Job {job} failed: {why}; {}",
                    after_failed_load(obs)
                ),
            )
        }
        Some(BackupJobState::Complete) => {
            let Some(restored) = obs.status.restored_gtid_executed.clone() else {
                return fail(
                    obs,
                    now,
                    "ResultMissing",
                    format!(
                        "restore Job {job} completed without recording the restored GTID set; the load is not trusted; {}",
                        after_failed_load(obs)
                    ),
                );
            };
            let site = obs.status.site.as_deref().unwrap_or("?");
            let message = format!(
                "site {site} holds backup {} (GTID set {restored}); rebuilding the other site from it",
                obs.spec.backup
            );
            RestoreDecision {
                status: Some(MysqlRestoreStatus {
                    step: Some(RestoreStep::Recloning),
                    job: running_job(obs, now, &message, obs.status.job.started_at.clone()),
                    ..obs.status.clone()
                }),
                event: Some(EventIntent::normal(
                    EventReason::RestoreLoaded,
                    format!("restore {}: {message}", obs.name),
                )),
                requeue: Some(RESTORE_POLL),
                ..RestoreDecision::nothing()
            }
        }
    }
}

fn parse(text: Option<&str>) -> Option<GtidSet> {
    GtidSet::parse(text?).ok()
}

fn decide_recloning(obs: &RestoreObservation<'_>, now: Timestamp) -> RestoreDecision {
    let site = obs.status.site.clone().unwrap_or_default();
    let Some(status) = obs.group.and_then(|g| g.status.as_ref()) else {
        return RestoreDecision::wait();
    };
    let (Some(active), Some(other)) = (
        status.site(&site),
        status.sites.iter().find(|s| s.name != site),
    ) else {
        return RestoreDecision::wait();
    };
    if status.active_site.as_deref() != Some(site.as_str()) {
        // Failover is paused, so only a person moved it; the restored data is on
        // `site`, and rebuilding anything from another site would undo the restore.
        return fail(
            obs,
            now,
            "ActiveSiteMoved",
            format!(
                "the active site moved from {site} to {} while its data was being restored; automatic failover stays paused until this MysqlRestore is deleted; check which site holds the restored data (GTID set {}) before moving on",
                status.active_site.as_deref().unwrap_or("none"),
                obs.status.restored_gtid_executed.as_deref().unwrap_or("?")
            ),
        );
    }
    match other.recovery_state {
        Some(RecoveryState::RecoveryPending) => {
            let Some(token) = other.reclone_token() else {
                return RestoreDecision::wait();
            };
            let confirmation = format!("{}:{token}", other.name);
            if obs.status.reclone_requested.as_deref() == Some(confirmation.as_str()) {
                // Asked already; the engine consumes the annotation and starts.
                return RestoreDecision::wait();
            }
            let message = format!(
                "recloning site {} from the restored site {site} (it still holds transactions the restore removed)",
                other.name
            );
            RestoreDecision {
                status: Some(MysqlRestoreStatus {
                    reclone_requested: Some(confirmation.clone()),
                    job: running_job(obs, now, &message, obs.status.job.started_at.clone()),
                    ..obs.status.clone()
                }),
                reclone: Some(confirmation),
                event: Some(EventIntent::normal(
                    EventReason::RestoreRecloning,
                    format!("restore {}: {message}", obs.name),
                )),
                requeue: Some(RESTORE_POLL),
                ..RestoreDecision::nothing()
            }
        }
        Some(RecoveryState::Recloning) => RestoreDecision::wait(),
        None => {
            // Done when the group's status shows the load (the active site no longer
            // holds what the restore removed) and the other site replicates from it
            // without any of the removed transactions.
            let (Some(before), Some(restored), Some(active_now), Some(other_now)) = (
                parse(obs.status.gtid_before.as_deref()),
                parse(obs.status.restored_gtid_executed.as_deref()),
                parse(active.gtid_executed.as_deref()),
                parse(other.gtid_executed.as_deref()),
            ) else {
                return RestoreDecision::wait();
            };
            let removed = before.subtract(&restored);
            let fresh =
                active_now.intersect(&removed).is_empty() && restored.is_subset(&active_now);
            let rebuilt = other.state == Some(SiteState::ReadOnly)
                && other.replicating == Some(true)
                && other_now.intersect(&removed).is_empty()
                && other_now.is_subset(&active_now);
            if !(fresh && rebuilt) {
                return RestoreDecision::wait();
            }
            let message = format!(
                "backup {} restored into site {site}; site {} rebuilt from it and replicating; automatic failover resumed",
                obs.spec.backup, other.name
            );
            let mut status = terminal(obs, now, JobPhase::Succeeded, "Succeeded", &message);
            status.step = None;
            RestoreDecision {
                status: Some(status),
                pause: Some(PauseChange::Resume),
                event: Some(EventIntent::normal(
                    EventReason::RestoreSucceeded,
                    format!("restore {}: {message}", obs.name),
                )),
                finished: Some(true),
                ..RestoreDecision::nothing()
            }
        }
    }
}

fn since(start: Option<&Time>, now: Timestamp) -> Duration {
    start.map_or(Duration::ZERO, |s| {
        Duration::from_millis(
            u64::try_from(now.as_millisecond().saturating_sub(s.0.as_millisecond())).unwrap_or(0),
        )
    })
}

fn with_message(obs: &RestoreObservation<'_>, message: String) -> Option<MysqlRestoreStatus> {
    (obs.status.job.message.as_deref() != Some(message.as_str())).then(|| MysqlRestoreStatus {
        job: JobStatus {
            message: Some(message),
            ..obs.status.job.clone()
        },
        ..obs.status.clone()
    })
}

/// Stays Pending, saying why (written once, not on every pass).
fn pending(obs: &RestoreObservation<'_>, message: String) -> RestoreDecision {
    let status = MysqlRestoreStatus {
        job: JobStatus {
            phase: Some(JobPhase::Pending),
            message: Some(message),
            ..obs.status.job.clone()
        },
        ..obs.status.clone()
    };
    RestoreDecision {
        status: (status != *obs.status).then_some(status),
        ..RestoreDecision::wait()
    }
}

fn running_job(
    obs: &RestoreObservation<'_>,
    now: Timestamp,
    message: &str,
    started_at: Option<Time>,
) -> JobStatus {
    JobStatus {
        phase: Some(JobPhase::Running),
        started_at,
        completed_at: None,
        message: Some(message.to_string()),
        conditions: vec![condition(
            "Complete",
            "False",
            "Running",
            message,
            obs.generation,
            now,
        )],
    }
}

/// Failed. A restore that has paused failover keeps it paused (see `after_failed_load`):
/// the active site may hold part of the backup, and only a person knows whether to
/// retry or to fail over to the untouched site.
fn fail(
    obs: &RestoreObservation<'_>,
    now: Timestamp,
    reason: &str,
    message: String,
) -> RestoreDecision {
    RestoreDecision {
        status: Some(terminal(obs, now, JobPhase::Failed, reason, &message)),
        event: Some(EventIntent::warning(
            EventReason::RestoreFailed,
            format!("restore {}: {message}", obs.name),
        )),
        finished: Some(false),
        ..RestoreDecision::nothing()
    }
}

/// Failed before anything was loaded: failover resumes at once.
fn fail_resuming(
    obs: &RestoreObservation<'_>,
    now: Timestamp,
    reason: &str,
    message: String,
) -> RestoreDecision {
    RestoreDecision {
        pause: Some(PauseChange::Resume),
        ..fail(
            obs,
            now,
            reason,
            format!("{message}; automatic failover resumed"),
        )
    }
}

fn terminal(
    obs: &RestoreObservation<'_>,
    now: Timestamp,
    phase: JobPhase,
    reason: &str,
    message: &str,
) -> MysqlRestoreStatus {
    let complete = if phase == JobPhase::Succeeded {
        "True"
    } else {
        "False"
    };
    MysqlRestoreStatus {
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
#[path = "restore_tests.rs"]
mod tests;
