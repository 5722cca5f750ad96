//! How fresh each backup profile is: its newest Succeeded backup and how old that
//! may get before someone should look. Derived from the `MysqlBackup` objects on every
//! pass (not from events the operator saw), so a restarted or newly elected operator
//! exports the same figures as the one before it and the `BloodravenBackupMissing`
//! alert keeps working across hand-overs.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::api::{BackupProfile, JobPhase, MysqlBackup};
use crate::cron::CronSchedule;

/// How far ahead a schedule is read to find its longest wait between two runs: five
/// weeks covers daily, weekday-only and weekly schedules; a monthly one fires once
/// or twice in it, which says nothing about its gaps (see [`max_age`]).
const SCHEDULE_WINDOW: SignedDuration = SignedDuration::from_hours(24 * 35);

/// A backup may miss one scheduled run (a failover, a node drain, a slow dump)
/// before it counts as missing: twice the longest wait between runs.
const MISSED_RUNS_ALLOWED: i32 = 1;

/// One profile's freshness, as the metrics export it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileFreshness {
    pub profile: String,
    /// When the newest Succeeded backup of the profile completed, and its size.
    pub last_success: Option<(Timestamp, Option<i64>)>,
    /// How old the newest backup may get; `None` for a profile without a schedule
    /// (on demand only) or with one too sparse or invalid to judge.
    pub max_age: Option<SignedDuration>,
}

/// How old a scheduled profile's newest backup may get: the schedule's longest gap
/// between runs, times the runs one may miss plus one. `now` picks the window the
/// schedule is read in.
pub fn max_age(schedule: &str, now: Timestamp) -> Option<SignedDuration> {
    let gap = CronSchedule::parse(schedule)
        .ok()?
        .longest_gap(now, SCHEDULE_WINDOW)?;
    gap.checked_mul(MISSED_RUNS_ALLOWED + 1)
}

/// [`max_age`] per schedule text, worked out once: reading a schedule's next five weeks
/// takes up to 50,400 firings (`* * * * *`), too much for every 5 s pass.
#[derive(Debug, Default)]
pub struct ScheduleLimits(BTreeMap<String, Option<SignedDuration>>);

impl ScheduleLimits {
    pub fn max_age(&mut self, schedule: &str, now: Timestamp) -> Option<SignedDuration> {
        *self
            .0
            .entry(schedule.to_string())
            .or_insert_with(|| max_age(schedule, now))
    }
}

/// Freshness of each of `profiles` (one group's), from that group's backups (any
/// order; other groups' backups must be filtered out by the caller).
pub fn profile_freshness<'a>(
    profiles: &[BackupProfile],
    backups: impl IntoIterator<Item = &'a MysqlBackup> + Clone,
    limits: &mut ScheduleLimits,
    now: Timestamp,
) -> Vec<ProfileFreshness> {
    profiles
        .iter()
        .map(|profile| {
            let last_success = backups
                .clone()
                .into_iter()
                .filter(|b| b.spec.profile == profile.name)
                .filter_map(|b| {
                    let status = b.status.as_ref()?;
                    if status.job.phase != Some(JobPhase::Succeeded) {
                        return None;
                    }
                    Some((status.job.completed_at.as_ref()?.0, status.size_bytes))
                })
                .max_by_key(|(completed, _)| *completed);
            ProfileFreshness {
                profile: profile.name.clone(),
                last_success,
                max_age: profile
                    .schedule
                    .as_deref()
                    .and_then(|s| limits.max_age(s, now)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackupStorage, MysqlBackupSpec, MysqlBackupStatus, S3Storage};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn profile(name: &str, schedule: Option<&str>) -> BackupProfile {
        BackupProfile {
            name: name.into(),
            storage: BackupStorage {
                s3: Some(S3Storage {
                    bucket: "b".into(),
                    prefix: None,
                    endpoint: None,
                    region: None,
                    credentials_secret: "s3".into(),
                }),
                pvc: None,
            },
            schedule: schedule.map(str::to_string),
            retention: None,
            verification: None,
        }
    }

    fn backup(profile: &str, phase: JobPhase, completed: Option<&str>, size: i64) -> MysqlBackup {
        let mut status = MysqlBackupStatus::default();
        status.job.phase = Some(phase);
        status.job.completed_at = completed.map(|c| Time(ts(c)));
        status.size_bytes = Some(size);
        let mut b = MysqlBackup::new(
            "b",
            MysqlBackupSpec {
                group: "g".into(),
                profile: profile.into(),
                source: Default::default(),
            },
        );
        b.status = Some(status);
        b
    }

    #[test]
    fn the_newest_succeeded_backup_counts_and_failed_or_running_ones_do_not() {
        let now = ts("2026-01-10T12:00:00Z");
        let backups = [
            backup(
                "minio",
                JobPhase::Succeeded,
                Some("2026-01-09T02:00:00Z"),
                10,
            ),
            backup(
                "minio",
                JobPhase::Succeeded,
                Some("2026-01-10T02:00:00Z"),
                20,
            ),
            // Newer, but failed: a failed backup is not a backup.
            backup("minio", JobPhase::Failed, Some("2026-01-10T11:00:00Z"), 0),
            backup("minio", JobPhase::Running, None, 0),
            backup(
                "other",
                JobPhase::Succeeded,
                Some("2026-01-10T03:00:00Z"),
                5,
            ),
        ];
        let got = profile_freshness(
            &[profile("minio", Some("0 2 * * *")), profile("adhoc", None)],
            &backups,
            &mut ScheduleLimits::default(),
            now,
        );
        assert_eq!(
            got,
            vec![
                ProfileFreshness {
                    profile: "minio".into(),
                    last_success: Some((ts("2026-01-10T02:00:00Z"), Some(20))),
                    max_age: Some(SignedDuration::from_hours(48)),
                },
                // No schedule: on demand only, nothing is overdue; no backup yet.
                ProfileFreshness {
                    profile: "adhoc".into(),
                    last_success: None,
                    max_age: None,
                },
            ]
        );
    }

    #[test]
    fn max_age_allows_one_missed_run_of_the_longest_gap() {
        let now = ts("2026-01-07T00:00:00Z");
        assert_eq!(
            max_age("*/30 * * * *", now),
            Some(SignedDuration::from_hours(1))
        );
        // Weekdays only: Friday to Monday is three days, so six.
        assert_eq!(
            max_age("0 2 * * 1-5", now),
            Some(SignedDuration::from_hours(6 * 24))
        );
        // Weekly: 14 days.
        assert_eq!(
            max_age("0 3 * * 0", now),
            Some(SignedDuration::from_hours(14 * 24))
        );
        // An invalid schedule (validate refuses it) judges nothing rather than guessing.
        assert_eq!(max_age("0 25 * * *", now), None);
    }
}
