//! Table tests of the verification decisions, including the unsafe and odd cases: the
//! backup missing, failed, still running or of another profile; a pointInTime without
//! PITR; a Job that vanished, failed or completed without a result; a CR deleted
//! mid-run; a failed check keeping its Pod.

use serde_json::json;

use super::*;
use crate::api::{MysqlBackupSpec, MysqlBackupStatus, SanityCheck};

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn group() -> MysqlFailoverGroup {
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
        }
    }))
    .unwrap()
}

fn backup(name: &str, profile: &str, phase: Option<JobPhase>, recorded: bool) -> MysqlBackup {
    let mut b = MysqlBackup::new(
        name,
        MysqlBackupSpec {
            group: "playground".into(),
            profile: profile.into(),
            source: crate::api::BackupSource::Replica,
        },
    );
    b.status = Some(MysqlBackupStatus {
        location: recorded.then(|| format!("backups/playground/{name}.sql")),
        checksum: recorded.then(|| "ab".repeat(32)),
        size_bytes: recorded.then_some(4096),
        gtid_executed: recorded.then(|| "u:1-5".to_string()),
        job: JobStatus {
            phase,
            completed_at: Some(Time(t(-60))),
            ..JobStatus::default()
        },
        ..MysqlBackupStatus::default()
    });
    b
}

fn spec(backup: Option<&str>, sanity: bool, point_in_time: bool) -> MysqlBackupVerificationSpec {
    MysqlBackupVerificationSpec {
        group: "playground".into(),
        profile: "minio".into(),
        backup: backup.map(str::to_string),
        sanity_check: sanity.then(|| SanityCheck {
            query: "SELECT value FROM counter.counters WHERE name = 'main'".into(),
            expect_rows: Some(1),
        }),
        point_in_time: point_in_time.then(|| Time(t(-30))),
    }
}

fn running(started: i64) -> MysqlBackupVerificationStatus {
    MysqlBackupVerificationStatus {
        backup: Some("nightly".into()),
        job: JobStatus {
            phase: Some(JobPhase::Running),
            started_at: Some(Time(t(started))),
            message: Some("loading backup nightly (x) into a scratch mysqld".into()),
            ..JobStatus::default()
        },
        ..MysqlBackupVerificationStatus::default()
    }
}

struct Case {
    name: &'static str,
    spec: MysqlBackupVerificationSpec,
    status: MysqlBackupVerificationStatus,
    group: bool,
    backup: Option<MysqlBackup>,
    pitr: PitrState,
    job: Option<BackupJobState>,
    deleting: bool,
}

const NO_PITR: PitrState = PitrState {
    enabled: false,
    archiving: false,
};

fn case(name: &'static str) -> Case {
    Case {
        name,
        spec: spec(Some("nightly"), true, false),
        status: MysqlBackupVerificationStatus::default(),
        group: true,
        backup: Some(backup("nightly", "minio", Some(JobPhase::Succeeded), true)),
        pitr: NO_PITR,
        job: None,
        deleting: false,
    }
}

/// What a decision must look like.
#[derive(Debug, PartialEq)]
struct Expect {
    /// The phase written (`None`: no status write).
    phase: Option<JobPhase>,
    /// The condition reason written.
    reason: Option<&'static str>,
    start_job: bool,
    delete_job: bool,
    event: Option<EventReason>,
    /// The written message contains this.
    says: &'static str,
}

fn decide(case: &Case, now: Timestamp) -> VerificationDecision {
    let group = group();
    decide_verification(
        &VerificationObservation {
            name: "v1",
            spec: &case.spec,
            status: &case.status,
            group: case.group.then_some(&group),
            backup: case.backup.as_ref(),
            pitr: case.pitr,
            job: case.job.clone(),
            generation: Some(1),
            deleting: case.deleting,
        },
        now,
    )
}

fn outcome(decision: &VerificationDecision) -> Expect {
    let status = decision.status.as_ref();
    Expect {
        phase: status.and_then(|s| s.job.phase),
        reason: None,
        start_job: decision.start_job.is_some(),
        delete_job: decision.delete_job,
        event: decision.event.as_ref().map(|e| e.reason),
        says: "",
    }
}

#[test]
fn each_situation_decides_as_the_table_says() {
    use JobPhase::*;
    let nothing = Expect {
        phase: None,
        reason: None,
        start_job: false,
        delete_job: false,
        event: None,
        says: "",
    };
    let failed = |reason: &'static str, says: &'static str| Expect {
        phase: Some(Failed),
        reason: Some(reason),
        start_job: false,
        delete_job: false,
        event: Some(EventReason::VerificationFailed),
        says,
    };
    let cases: Vec<(Case, Expect)> = vec![
        (
            case("a Succeeded backup starts the Job"),
            Expect {
                phase: Some(Running),
                reason: Some("Running"),
                start_job: true,
                delete_job: false,
                event: Some(EventReason::VerificationStarted),
                says: "loading backup nightly",
            },
        ),
        (
            Case {
                group: false,
                ..case("the group is missing")
            },
            failed("GroupNotFound", "spec.group"),
        ),
        (
            Case {
                spec: MysqlBackupVerificationSpec {
                    profile: "nope".into(),
                    ..spec(Some("nightly"), true, false)
                },
                ..case("the profile is missing")
            },
            failed("ProfileNotFound", "spec.profile"),
        ),
        (
            Case {
                spec: MysqlBackupVerificationSpec {
                    profile: "disk".into(),
                    ..spec(Some("nightly"), true, false)
                },
                ..case("a pvc profile")
            },
            failed("StorageUnsupported", "pvc storage"),
        ),
        (
            Case {
                spec: spec(Some("nightly"), true, true),
                ..case("pointInTime without PITR")
            },
            failed("PointInTimeRefused", "spec.backup.pitr.enabled=true"),
        ),
        (
            Case {
                spec: spec(Some("nightly"), true, true),
                pitr: PitrState {
                    enabled: true,
                    archiving: false,
                },
                ..case("pointInTime with PITR enabled but nothing archived")
            },
            failed("PointInTimeRefused", "no binlog archive yet"),
        ),
        (
            Case {
                spec: spec(Some("nightly"), true, true),
                pitr: PitrState {
                    enabled: true,
                    archiving: true,
                },
                ..case("pointInTime with PITR archiving: replay is not built")
            },
            failed("PointInTimeRefused", "not supported yet"),
        ),
        (
            Case {
                backup: None,
                ..case("the named backup is missing")
            },
            failed("BackupNotFound", "\"nightly\" (spec.backup) does not exist"),
        ),
        (
            Case {
                spec: spec(None, true, false),
                backup: None,
                ..case("no backup named and none Succeeded")
            },
            failed("BackupNotFound", "no Succeeded MysqlBackup of profile"),
        ),
        (
            Case {
                backup: Some(backup("nightly", "minio", Some(Failed), false)),
                ..case("the backup failed")
            },
            failed("BackupNotSucceeded", "nothing to verify"),
        ),
        (
            Case {
                backup: Some(backup("nightly", "other", Some(Succeeded), true)),
                ..case("the backup is of another profile")
            },
            failed("BackupMismatch", "profile other"),
        ),
        (
            Case {
                backup: Some(backup("nightly", "minio", Some(Succeeded), false)),
                ..case("the backup records no object")
            },
            failed("BackupIncomplete", "no location or checksum"),
        ),
        (
            Case {
                backup: Some(backup("nightly", "minio", Some(Running), false)),
                ..case("the backup is still running: wait")
            },
            Expect {
                phase: Some(Pending),
                reason: None,
                says: "waiting for MysqlBackup nightly to finish (phase Running)",
                ..nothing
            },
        ),
        (
            Case {
                status: running(0),
                job: Some(BackupJobState::Running),
                ..case("the Job runs, no result yet")
            },
            Expect { ..nothing },
        ),
        (
            Case {
                status: running(0),
                job: Some(BackupJobState::Failed {
                    reason: Some("BackoffLimitExceeded".into()),
                }),
                ..case("the Job failed without a result")
            },
            failed("JobFailed", "reason BackoffLimitExceeded"),
        ),
        (
            Case {
                status: running(0),
                job: Some(BackupJobState::Complete),
                ..case("the Job completed without a result")
            },
            failed("ResultMissing", "without reporting a result"),
        ),
        (
            Case {
                status: running(-61),
                job: None,
                ..case("the Job vanished beyond the grace")
            },
            failed("JobMissing", "disappeared"),
        ),
        (
            Case {
                status: MysqlBackupVerificationStatus {
                    result: Some(VerificationResult::Passed),
                    rows_returned: Some(1),
                    ..running(-20)
                },
                job: Some(BackupJobState::Running),
                ..case("passed: Succeeded and the Job is cleaned up")
            },
            Expect {
                phase: Some(Succeeded),
                reason: Some("Succeeded"),
                start_job: false,
                delete_job: true,
                event: Some(EventReason::VerificationSucceeded),
                says: "returned 1 row(s) (expected at least 1)",
            },
        ),
        (
            Case {
                status: MysqlBackupVerificationStatus {
                    result: Some(VerificationResult::Passed),
                    ..running(-20)
                },
                job: Some(BackupJobState::Running),
                ..case("passed without the row count of its sanity check")
            },
            failed("ResultMissing", "without the sanity check's row count"),
        ),
        (
            Case {
                status: MysqlBackupVerificationStatus {
                    result: Some(VerificationResult::Failed),
                    rows_returned: Some(0),
                    job: JobStatus {
                        message: Some(
                            "the sanity check returned 0 rows, expected at least 1".into(),
                        ),
                        ..running(-20).job
                    },
                    ..running(-20)
                },
                job: Some(BackupJobState::Running),
                ..case("the check failed: Failed, the Job (Pod, PVC) kept")
            },
            failed(
                "CheckFailed",
                "returned 0 rows, expected at least 1; the Pod of Job v1-load (its scratch mysqld still running) and its PVC are kept",
            ),
        ),
        (
            Case {
                status: MysqlBackupVerificationStatus {
                    job: JobStatus {
                        phase: Some(Succeeded),
                        ..JobStatus::default()
                    },
                    ..MysqlBackupVerificationStatus::default()
                },
                job: Some(BackupJobState::Running),
                ..case("Succeeded, the cleanup did not land: delete again")
            },
            Expect {
                delete_job: true,
                ..nothing
            },
        ),
        (
            Case {
                status: MysqlBackupVerificationStatus {
                    job: JobStatus {
                        phase: Some(Failed),
                        ..JobStatus::default()
                    },
                    ..MysqlBackupVerificationStatus::default()
                },
                job: Some(BackupJobState::Running),
                ..case("Failed: the Job is kept, nothing more happens")
            },
            Expect { ..nothing },
        ),
        (
            Case {
                status: running(-100),
                job: None,
                deleting: true,
                ..case("the CR is deleted mid-run: ownerReferences clean up")
            },
            Expect { ..nothing },
        ),
        (
            Case {
                deleting: true,
                ..case("deleted before it started: no Job is created")
            },
            Expect { ..nothing },
        ),
    ];
    for (case, expect) in cases {
        let decision = decide(&case, t(0));
        let mut got = outcome(&decision);
        let status = decision.status.as_ref();
        got.reason = status
            .and_then(|s| s.job.conditions.first())
            .and_then(|c| expect.reason.filter(|r| *r == c.reason));
        let message = status
            .and_then(|s| s.job.message.clone())
            .unwrap_or_default();
        if message.contains(expect.says) {
            got.says = expect.says;
        }
        assert_eq!(got, expect, "{}: {message:?}", case.name);
        // A failure's Event says the same as its status.
        if let (Some(event), Some(JobPhase::Failed)) = (&decision.event, got.phase) {
            assert!(event.message.contains(&message), "{}", case.name);
        }
    }
}

#[test]
fn a_vanished_job_is_given_the_grace_before_failing() {
    let case = Case {
        status: running(-20),
        job: None,
        ..case("vanished")
    };
    let decision = decide(&case, t(0));
    assert_eq!(decision.status, None);
    assert_eq!(decision.requeue, Some(Duration::from_secs(40)));
}

#[test]
fn the_started_job_loads_the_backups_object_with_its_checksum() {
    let decision = decide(&case("start"), t(0));
    assert_eq!(
        decision.start_job,
        Some(StartVerificationJob {
            backup: "nightly".into(),
            object: "playground/nightly.sql".into(),
            checksum: "ab".repeat(32),
            size_bytes: Some(4096),
        })
    );
    let status = decision.status.unwrap();
    assert_eq!(status.backup.as_deref(), Some("nightly"));
    assert_eq!(status.job.started_at, Some(Time(t(0))));
    assert_eq!(decision.requeue, Some(JOB_MISSING_GRACE));
}

#[test]
fn finished_verifications_report_their_duration_for_the_metrics() {
    let passed = Case {
        status: MysqlBackupVerificationStatus {
            result: Some(VerificationResult::Passed),
            rows_returned: Some(3),
            ..running(-42)
        },
        job: Some(BackupJobState::Running),
        ..case("passed")
    };
    assert_eq!(
        decide(&passed, t(0)).finished,
        Some(FinishedVerification {
            succeeded: true,
            duration: Some(Duration::from_secs(42)),
        })
    );
    // Refused before it ran: counted as failed, with no duration.
    let refused = Case {
        spec: spec(Some("nightly"), true, true),
        ..case("refused")
    };
    assert_eq!(
        decide(&refused, t(0)).finished,
        Some(FinishedVerification {
            succeeded: false,
            duration: None,
        })
    );
}
