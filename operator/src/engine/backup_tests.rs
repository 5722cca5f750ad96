//! Table tests of the backup decisions, including the unsafe cases: a Job that
//! completed without a result, a Job that vanished, a failed Job.

use serde_json::json;

use super::*;
use crate::api::{JobStatus, MysqlBackupSpec};

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// The playground group with the `minio` profile, iad writable, pdx as `pdx`.
fn group(pdx: serde_json::Value) -> MysqlFailoverGroup {
    let mut site_pdx = json!({"name": "pdx"});
    if let (Some(site), Some(extra)) = (site_pdx.as_object_mut(), pdx.as_object()) {
        site.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "bloodraven.shipstream.io/v1alpha1",
        "kind": "MysqlFailoverGroup",
        "metadata": {"name": "playground", "namespace": "bp", "uid": "uid-1"},
        "spec": {
            "sites": [{"name": "iad", "nodeSelector": {}}, {"name": "pdx", "nodeSelector": {}}],
            "mysql": {"credentialsSecret": "playground-mysql"},
            "backup": {"profiles": [
                {"name": "minio", "storage": {"s3": {"bucket": "bloodraven-backups",
                                                     "credentialsSecret": "m"}}},
                {"name": "disk", "storage": {"pvc": {"claimName": "backups"}}}
            ]}
        },
        "status": {
            "activeSite": "iad",
            "sites": [{"name": "iad", "state": "writable"}, site_pdx]
        }
    }))
    .unwrap()
}

fn replicating() -> serde_json::Value {
    json!({"state": "read-only", "replicating": true})
}

fn spec(profile: &str, source: BackupSource) -> MysqlBackupSpec {
    MysqlBackupSpec {
        group: "playground".into(),
        profile: profile.into(),
        source,
    }
}

fn running(started: i64) -> MysqlBackupStatus {
    MysqlBackupStatus {
        site: Some("pdx".into()),
        job: JobStatus {
            phase: Some(JobPhase::Running),
            started_at: Some(Time(t(started))),
            message: Some("dumping site pdx to playground/nightly.sql".into()),
            ..JobStatus::default()
        },
        ..MysqlBackupStatus::default()
    }
}

fn recorded(mut status: MysqlBackupStatus) -> MysqlBackupStatus {
    status.location = Some("playground/playground/nightly.sql".into());
    status.size_bytes = Some(1234);
    status.checksum = Some("ab".repeat(32));
    status.gtid_executed = Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42".into());
    status
}

fn decide(
    spec: &MysqlBackupSpec,
    status: &MysqlBackupStatus,
    group: Option<&MysqlFailoverGroup>,
    job: Option<BackupJobState>,
    now: i64,
) -> BackupDecision {
    decide_backup(
        &BackupObservation {
            name: "nightly",
            spec,
            status,
            group,
            job,
            generation: Some(1),
        },
        t(now),
    )
}

#[test]
fn the_source_is_the_replica_by_default_and_falls_back_to_the_primary() {
    let cases = [
        (replicating(), BackupSource::Replica, Some("pdx")),
        (replicating(), BackupSource::Primary, Some("iad")),
        // A replica that stopped replicating may be stale: back up the primary.
        (
            json!({"state": "read-only", "replicating": false}),
            BackupSource::Replica,
            Some("iad"),
        ),
        (
            json!({"state": "unreachable"}),
            BackupSource::Replica,
            Some("iad"),
        ),
        // A site awaiting a reclone holds divergent data: never its dump.
        (
            json!({"state": "read-only", "replicating": true, "recoveryState": "RecoveryPending"}),
            BackupSource::Replica,
            Some("iad"),
        ),
    ];
    for (pdx, preference, expected) in cases {
        let group = group(pdx.clone());
        assert_eq!(
            pick_source(&group, preference).as_deref(),
            expected,
            "{pdx} {preference:?}"
        );
    }
    // No writable primary: only a healthy replica qualifies.
    let mut no_primary = group(replicating());
    if let Some(status) = no_primary.status.as_mut() {
        status.sites[0].state = Some(SiteState::Unreachable);
    }
    assert_eq!(
        pick_source(&no_primary, BackupSource::Replica).as_deref(),
        Some("pdx")
    );
    assert_eq!(pick_source(&no_primary, BackupSource::Primary), None);
    let mut fresh = group(replicating());
    fresh.status = None;
    assert_eq!(pick_source(&fresh, BackupSource::Replica), None);
}

#[test]
fn a_new_backup_starts_a_job_on_the_chosen_site() {
    let group = group(replicating());
    let d = decide(
        &spec("minio", BackupSource::Replica),
        &MysqlBackupStatus::default(),
        Some(&group),
        None,
        0,
    );
    assert_eq!(
        d.start_job,
        Some(StartBackupJob {
            site: "pdx".into(),
            object: "playground/nightly.sql".into()
        })
    );
    let status = d.status.unwrap();
    assert_eq!(status.job.phase, Some(JobPhase::Running));
    assert_eq!(status.site.as_deref(), Some("pdx"));
    assert_eq!(status.job.started_at, Some(Time(t(0))));
    assert_eq!(d.event.unwrap().reason, EventReason::BackupStarted);
}

#[test]
fn bad_references_fail_with_a_message_naming_the_field() {
    let group = group(replicating());
    let cases = [
        (
            spec("minio", BackupSource::Replica),
            None,
            "GroupNotFound",
            "spec.group",
        ),
        (
            spec("nope", BackupSource::Replica),
            Some(&group),
            "ProfileNotFound",
            "spec.profile",
        ),
        (
            spec("disk", BackupSource::Replica),
            Some(&group),
            "StorageUnsupported",
            "pvc storage",
        ),
    ];
    for (spec, group, reason, text) in cases {
        let d = decide(&spec, &MysqlBackupStatus::default(), group, None, 0);
        assert_eq!(d.start_job, None, "{reason}");
        let status = d.status.unwrap();
        assert_eq!(status.job.phase, Some(JobPhase::Failed), "{reason}");
        assert_eq!(status.job.conditions[0].reason, reason);
        assert!(
            status.job.message.as_deref().unwrap().contains(text),
            "{reason}: {:?}",
            status.job.message
        );
        let event = d.event.unwrap();
        assert_eq!(event.reason, EventReason::BackupFailed);
        assert_eq!(event.kind, crate::engine::EventKind::Warning);
    }
}

#[test]
fn no_usable_site_waits_pending_and_says_why_once() {
    let mut group = group(json!({"state": "unreachable"}));
    if let Some(status) = group.status.as_mut() {
        status.sites[0].state = Some(SiteState::Unreachable);
    }
    let spec = spec("minio", BackupSource::Replica);
    let d = decide(&spec, &MysqlBackupStatus::default(), Some(&group), None, 0);
    assert_eq!(d.start_job, None);
    let status = d.status.unwrap();
    assert_eq!(status.job.phase, Some(JobPhase::Pending));
    assert!(status.job.message.as_deref().unwrap().contains("waiting"));
    assert!(d.requeue.is_some());
    // The same observation again writes nothing.
    let again = decide(&spec, &status, Some(&group), None, 10);
    assert_eq!(again.status, None);
    assert_eq!(again.event, None);
}

#[test]
fn a_running_backup_finishes_only_with_a_complete_job_and_a_recorded_result() {
    let group = group(replicating());
    let spec = spec("minio", BackupSource::Replica);
    struct Case {
        status: MysqlBackupStatus,
        job: Option<BackupJobState>,
        now: i64,
        phase: Option<JobPhase>,
        reason: Option<&'static str>,
        text: &'static str,
    }
    let cases = [
        Case {
            status: running(0),
            job: Some(BackupJobState::Running),
            now: 30,
            phase: None,
            reason: None,
            text: "",
        },
        Case {
            status: recorded(running(0)),
            job: Some(BackupJobState::Complete),
            now: 30,
            phase: Some(JobPhase::Succeeded),
            reason: Some("Succeeded"),
            text: "consistent with GTID set 3e11fa47",
        },
        // Unsafe: the Job exited 0 but recorded nothing. Never Succeeded.
        Case {
            status: running(0),
            job: Some(BackupJobState::Complete),
            now: 30,
            phase: Some(JobPhase::Failed),
            reason: Some("ResultMissing"),
            text: "not trusted",
        },
        // The Job recorded why it failed: that is the message.
        Case {
            status: MysqlBackupStatus {
                job: JobStatus {
                    message: Some("S3 http://minio:9000 bucket b refused the credentials".into()),
                    ..running(0).job
                },
                ..running(0)
            },
            job: Some(BackupJobState::Failed {
                reason: Some("BackoffLimitExceeded".into()),
            }),
            now: 30,
            phase: Some(JobPhase::Failed),
            reason: Some("JobFailed"),
            text: "refused the credentials",
        },
        Case {
            status: running(0),
            job: Some(BackupJobState::Failed {
                reason: Some("BackoffLimitExceeded".into()),
            }),
            now: 30,
            phase: Some(JobPhase::Failed),
            reason: Some("JobFailed"),
            text: "see the log of its pod (reason BackoffLimitExceeded)",
        },
        // Just created: the cache has not delivered the Job yet.
        Case {
            status: running(0),
            job: None,
            now: 5,
            phase: None,
            reason: None,
            text: "",
        },
        Case {
            status: running(0),
            job: None,
            now: 61,
            phase: Some(JobPhase::Failed),
            reason: Some("JobMissing"),
            text: "disappeared",
        },
    ];
    for (index, case) in cases.into_iter().enumerate() {
        let d = decide(&spec, &case.status, Some(&group), case.job, case.now);
        assert_eq!(d.start_job, None, "case {index}");
        let phase = d.status.as_ref().and_then(|s| s.job.phase);
        assert_eq!(phase, case.phase, "case {index}");
        if let Some(status) = &d.status {
            assert_eq!(
                status.job.conditions[0].reason,
                case.reason.unwrap(),
                "case {index}"
            );
            let message = status.job.message.as_deref().unwrap();
            assert!(message.contains(case.text), "case {index}: {message}");
            assert_eq!(status.job.completed_at, Some(Time(t(case.now))));
            assert_eq!(status.job.started_at, Some(Time(t(0))), "kept");
            let finished = d.finished.as_ref().unwrap();
            assert_eq!(
                finished.duration,
                Some(Duration::from_secs(case.now as u64))
            );
            assert_eq!(finished.succeeded, phase == Some(JobPhase::Succeeded));
        }
    }
}

#[test]
fn terminal_backups_are_left_alone() {
    let group = group(replicating());
    let spec = spec("minio", BackupSource::Replica);
    for phase in [JobPhase::Succeeded, JobPhase::Failed] {
        let mut status = recorded(running(0));
        status.job.phase = Some(phase);
        let d = decide(
            &spec,
            &status,
            Some(&group),
            Some(BackupJobState::Failed { reason: None }),
            100,
        );
        assert_eq!(d, BackupDecision::nothing(), "{phase:?}");
    }
}

fn retained(name: &str, completed: i64, verified: bool) -> RetainedBackup {
    RetainedBackup {
        name: name.into(),
        completed_at: t(completed),
        verified,
    }
}

fn retention(keep_last: Option<i32>, max_age_hours: Option<u64>) -> Retention {
    Retention {
        keep_last,
        max_age: max_age_hours.map(|h| crate::api::Duration::from_secs(h * 3600)),
    }
}

#[test]
fn retention_keeps_the_newest_and_never_the_newest_verified() {
    const H: i64 = 3600;
    let now = 100 * H;
    // b1 oldest ... b5 newest, one hour apart, ending 10 hours ago.
    let all = |verified: Option<&str>| -> Vec<RetainedBackup> {
        (1..=5)
            .map(|i| {
                let name = format!("b{i}");
                let verified = verified == Some(name.as_str());
                retained(&name, now - (15 - i) * H, verified)
            })
            .collect()
    };
    let cases: [(Option<Retention>, Option<&str>, &[&str]); 11] = [
        (None, None, &[]),
        (Some(retention(None, None)), None, &[]),
        (Some(retention(Some(2), None)), None, &["b1", "b2", "b3"]),
        // The newest verified backup survives keepLast.
        (Some(retention(Some(2), None)), Some("b2"), &["b1", "b3"]),
        // maxAge alone: b1 (14 h) and b2 (13 h) are older than 12 h.
        (Some(retention(None, Some(12))), None, &["b1", "b2"]),
        (Some(retention(None, Some(12))), Some("b1"), &["b2"]),
        // Both: beyond the newest 4 and older than 12 h.
        (Some(retention(Some(4), Some(12))), None, &["b1"]),
        // Nothing is old enough.
        (Some(retention(Some(1), Some(1000))), None, &[]),
        // maxAge shorter than the age of every backup: the newest stays all the same.
        (
            Some(retention(None, Some(1))),
            None,
            &["b1", "b2", "b3", "b4"],
        ),
        // ... and so does the newest verified one, beside it.
        (
            Some(retention(None, Some(1))),
            Some("b3"),
            &["b1", "b2", "b4"],
        ),
        // keepLast 0 means no count limit, not "keep nothing".
        (
            Some(retention(Some(0), Some(1))),
            None,
            &["b1", "b2", "b3", "b4"],
        ),
    ];
    for (index, (retention, verified, expected)) in cases.into_iter().enumerate() {
        assert_eq!(
            expired_backups(&all(verified), retention.as_ref(), t(now)),
            expected,
            "case {index}"
        );
    }
    // Order of the input does not matter.
    let mut shuffled = all(None);
    shuffled.reverse();
    assert_eq!(
        expired_backups(&shuffled, Some(&retention(Some(3), None)), t(now)),
        ["b1", "b2"]
    );
}

#[test]
fn an_expired_backups_object_is_found_under_the_profiles_current_prefix_only() {
    let cases: [(&str, Option<&str>, Option<&str>); 8] = [
        (
            "playground/playground/first.sql",
            Some("playground"),
            Some("playground/first.sql"),
        ),
        (
            "playground/playground/first.sql",
            Some("/playground/"),
            Some("playground/first.sql"),
        ),
        ("playground/first.sql", None, Some("playground/first.sql")),
        (
            "playground/first.sql",
            Some(""),
            Some("playground/first.sql"),
        ),
        // The prefix changed since the backup: the profile cannot reach the object.
        ("old/playground/first.sql", Some("playground"), None),
        // A prefix that is only a string prefix of the first segment does not match.
        ("playgroundx/playground/first.sql", Some("playground"), None),
        ("playground", Some("playground"), None),
        ("", None, None),
    ];
    for (location, prefix, expected) in cases {
        let name = object_name_under_prefix(location, prefix);
        assert_eq!(name.as_deref(), expected, "{location} under {prefix:?}");
        // What the client deletes for that name is exactly the recorded key.
        if let Some(name) = name {
            assert_eq!(
                crate::storage::object_path(prefix, &name)
                    .unwrap()
                    .to_string(),
                location,
                "{location} under {prefix:?}"
            );
        }
    }
}
