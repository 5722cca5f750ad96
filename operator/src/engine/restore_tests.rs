//! Table tests of the restore decisions, the unsafe cases first: a restore never starts
//! during a failover, with two writable sites, beside another restore, or before the
//! group shows failover paused; the other site is recloned through the confirmed path.

use serde_json::{Value, json};

use super::*;
use crate::api::{MysqlBackupSpec, MysqlBackupStatus};

const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const V: &str = "61553741-443a-11f1-9e33-c80aa9429562";

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// The playground group with the `minio` profile; `status` replaces its status.
fn group_with(status: Value, annotations: Value) -> MysqlFailoverGroup {
    serde_json::from_value(json!({
        "apiVersion": "bloodraven.shipstream.io/v1alpha1",
        "kind": "MysqlFailoverGroup",
        "metadata": {"name": "playground", "namespace": "bp", "uid": "uid-1", "annotations": annotations},
        "spec": {
            "sites": [{"name": "iad", "nodeSelector": {}}, {"name": "pdx", "nodeSelector": {}}],
            "mysql": {"credentialsSecret": "playground-mysql"},
            "backup": {"profiles": [
                {"name": "minio", "storage": {"s3": {"bucket": "bloodraven-backups",
                                                     "credentialsSecret": "m"}}}
            ]}
        },
        "status": status
    }))
    .unwrap()
}

/// iad writable with `iad_gtid`, pdx read-only replicating with `pdx_gtid`.
fn healthy(iad_gtid: &str, pdx_gtid: &str) -> Value {
    json!({
        "activeSite": "iad",
        "sites": [
            {"name": "iad", "state": "writable", "gtidExecuted": iad_gtid},
            {"name": "pdx", "state": "read-only", "replicating": true, "gtidExecuted": pdx_gtid}
        ]
    })
}

fn paused() -> Value {
    json!({RESTORE_IN_PROGRESS_ANNOTATION: "undo"})
}

fn backup(phase: JobPhase, group: &str) -> MysqlBackup {
    let mut b = MysqlBackup::new(
        "nightly",
        MysqlBackupSpec {
            group: group.into(),
            profile: "minio".into(),
            source: crate::api::BackupSource::Replica,
        },
    );
    b.status = Some(MysqlBackupStatus {
        location: Some("playground/playground/nightly.sql".into()),
        checksum: Some("ab".repeat(32)),
        size_bytes: Some(1234),
        gtid_executed: Some(format!("{U}:1-40")),
        job: JobStatus {
            phase: Some(phase),
            ..JobStatus::default()
        },
        ..MysqlBackupStatus::default()
    });
    b
}

fn spec(confirm: &str) -> MysqlRestoreSpec {
    MysqlRestoreSpec {
        group: "playground".into(),
        backup: "nightly".into(),
        point_in_time: None,
        confirm: confirm.into(),
    }
}

fn at_step(step: RestoreStep, since: i64) -> MysqlRestoreStatus {
    MysqlRestoreStatus {
        step: Some(step),
        site: Some("iad".into()),
        gtid_before: Some(format!("{U}:1-100")),
        job: JobStatus {
            phase: Some(JobPhase::Running),
            started_at: Some(Time(t(0))),
            message: Some("loading backup nightly".into()),
            conditions: vec![condition(
                "Complete",
                "False",
                "Running",
                "x",
                Some(1),
                t(since),
            )],
            ..JobStatus::default()
        },
        ..MysqlRestoreStatus::default()
    }
}

struct Case<'a> {
    spec: MysqlRestoreSpec,
    status: MysqlRestoreStatus,
    group: Option<MysqlFailoverGroup>,
    backup: Option<MysqlBackup>,
    others: &'a [String],
    job: Option<BackupJobState>,
}

impl Case<'_> {
    fn new() -> Self {
        Case {
            spec: spec("playground"),
            status: MysqlRestoreStatus::default(),
            group: Some(group_with(
                healthy(&format!("{U}:1-100"), &format!("{U}:1-99")),
                json!({}),
            )),
            backup: Some(backup(JobPhase::Succeeded, "playground")),
            others: &[],
            job: None,
        }
    }

    fn decide(&self, now: i64) -> RestoreDecision {
        decide_restore(
            &RestoreObservation {
                name: "undo",
                spec: &self.spec,
                status: &self.status,
                group: self.group.as_ref(),
                backup: self.backup.as_ref(),
                others_running: self.others,
                job: self.job.clone(),
                generation: Some(1),
            },
            t(now),
        )
    }
}

fn phase(d: &RestoreDecision) -> Option<JobPhase> {
    d.status.as_ref().and_then(|s| s.job.phase)
}

fn message(d: &RestoreDecision) -> String {
    d.status
        .as_ref()
        .and_then(|s| s.job.message.clone())
        .unwrap_or_default()
}

#[test]
fn bad_references_fail_at_once_and_change_nothing() {
    let pitr_group = {
        let mut g = group_with(
            healthy(&format!("{U}:1-100"), &format!("{U}:1-99")),
            json!({}),
        );
        if let Some(b) = g.spec.backup.as_mut() {
            b.pitr = Some(serde_json::from_value(json!({"enabled": true})).unwrap());
        }
        g
    };
    let mut unrecorded = backup(JobPhase::Succeeded, "playground");
    if let Some(s) = unrecorded.status.as_mut() {
        s.checksum = None;
    }
    let mut in_time = Case::new();
    in_time.spec.point_in_time = Some(Time(t(-5)));
    let mut in_time_enabled = Case::new();
    in_time_enabled.spec.point_in_time = Some(Time(t(-5)));
    in_time_enabled.group = Some(pitr_group);
    let cases: Vec<(&str, Case, &str, &str)> = vec![
        (
            "wrong confirmation (bypassed the CRD rule)",
            Case {
                spec: spec("orders"),
                ..Case::new()
            },
            "NotConfirmed",
            "spec.confirm \"orders\" does not equal spec.group",
        ),
        (
            "no group",
            Case {
                group: None,
                ..Case::new()
            },
            "GroupNotFound",
            "spec.group",
        ),
        (
            "no backup",
            Case {
                backup: None,
                ..Case::new()
            },
            "BackupNotFound",
            "spec.backup",
        ),
        (
            "another group's backup",
            Case {
                backup: Some(backup(JobPhase::Succeeded, "orders")),
                ..Case::new()
            },
            "BackupOfAnotherGroup",
            "backup of group orders",
        ),
        (
            "failed backup",
            Case {
                backup: Some(backup(JobPhase::Failed, "playground")),
                ..Case::new()
            },
            "BackupNotUsable",
            "phase Failed",
        ),
        (
            "running backup",
            Case {
                backup: Some(backup(JobPhase::Running, "playground")),
                ..Case::new()
            },
            "BackupNotUsable",
            "phase Running",
        ),
        (
            "succeeded without a checksum",
            Case {
                backup: Some(unrecorded),
                ..Case::new()
            },
            "BackupNotUsable",
            "recorded object, checksum",
        ),
        (
            "pointInTime without PITR",
            in_time,
            "PointInTimeUnavailable",
            "pitr.enabled",
        ),
        (
            "pointInTime with PITR enabled but no archive",
            in_time_enabled,
            "PointInTimeUnavailable",
            "not built",
        ),
    ];
    for (what, case, reason, text) in cases {
        let d = case.decide(10);
        assert_eq!(phase(&d), Some(JobPhase::Failed), "{what}");
        let status = d.status.as_ref().unwrap();
        assert_eq!(status.job.conditions[0].reason, reason, "{what}");
        assert!(message(&d).contains(text), "{what}: {}", message(&d));
        assert!(message(&d).contains("nothing was changed"), "{what}");
        assert_eq!(d.pause, None, "{what}: failover is not touched");
        assert_eq!(d.start_job, None, "{what}");
        assert_eq!(d.finished, Some(false), "{what}");
        assert_eq!(
            d.event.as_ref().map(|e| e.reason),
            Some(EventReason::RestoreFailed),
            "{what}"
        );
    }
}

#[test]
fn an_unsafe_group_makes_the_restore_wait_pending_and_say_why() {
    let iad = format!("{U}:1-100");
    let status = |extra: Value| {
        let mut s = healthy(&iad, &format!("{U}:1-99"));
        if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
            s.extend(extra.clone());
        }
        s
    };
    let earlier = ["earlier".to_string()];
    let cases: Vec<(&str, Value, &[String], &str)> = vec![
        (
            "emergency failover running",
            status(json!({"emergencyFailover": {"from": "iad", "to": "pdx", "phase": "Fencing"}})),
            &[],
            "emergency failover from iad to pdx",
        ),
        (
            "planned failover running",
            status(json!({"plannedFailover": {"target": "pdx", "phase": "WaitingForLag"}})),
            &[],
            "planned failover to pdx",
        ),
        (
            "two writable sites",
            json!({"activeSite": "iad", "sites": [
                {"name": "iad", "state": "writable"}, {"name": "pdx", "state": "writable"}]}),
            &[],
            "two sites take writes",
        ),
        (
            "active site unreachable",
            json!({"activeSite": "iad", "sites": [
                {"name": "iad", "state": "unreachable"}, {"name": "pdx", "state": "read-only"}]}),
            &[],
            "active site iad is not writable",
        ),
        ("no status", json!({}), &[], "no active site"),
        (
            "another restore of the group",
            status(json!({})),
            &earlier,
            "restore earlier of the group",
        ),
    ];
    let no_annotations = json!({});
    let by_hand = json!({RESTORE_IN_PROGRESS_ANNOTATION: "manual"});
    let cases: Vec<(&str, Value, &[String], &str, &Value)> = cases
        .into_iter()
        .map(|(what, s, others, text)| (what, s, others, text, &no_annotations))
        .chain([(
            "failover paused by hand",
            status(json!({})),
            &[] as &[String],
            "failover is paused by \"manual\"",
            &by_hand,
        )])
        .collect();
    for (what, group_status, others, text, annotations) in cases {
        let case = Case {
            group: Some(group_with(group_status, annotations.clone())),
            others,
            ..Case::new()
        };
        let d = case.decide(10);
        assert_eq!(phase(&d), Some(JobPhase::Pending), "{what}");
        assert!(message(&d).contains(text), "{what}: {}", message(&d));
        assert_eq!(d.pause, None, "{what}: nothing paused yet");
        assert_eq!(d.start_job, None, "{what}");
        assert_eq!(d.requeue, Some(RESTORE_POLL), "{what}");
        // Said once: the same observation again writes nothing.
        let again = Case {
            status: d.status.clone().unwrap(),
            ..case
        };
        assert_eq!(again.decide(11).status, None, "{what}");
    }
}

#[test]
fn a_confirmed_restore_pauses_failover_first_and_loads_only_once_the_group_shows_it() {
    // Start: pause, record the active site and its GTID set; no Job yet.
    let d = Case::new().decide(10);
    assert_eq!(d.pause, Some(PauseChange::Pause));
    assert_eq!(d.start_job, None);
    let status = d.status.clone().unwrap();
    assert_eq!(status.step, Some(RestoreStep::PausingFailover));
    assert_eq!(status.site.as_deref(), Some("iad"));
    assert_eq!(status.gtid_before, Some(format!("{U}:1-100")));
    assert_eq!(
        d.event.as_ref().map(|e| e.reason),
        Some(EventReason::RestoreStarted)
    );

    // The group does not show the pause yet: ask again, load nothing.
    let waiting = Case {
        status: status.clone(),
        ..Case::new()
    }
    .decide(11);
    assert_eq!(waiting.pause, Some(PauseChange::Pause));
    assert_eq!(waiting.start_job, None);
    assert_eq!(waiting.status, None);

    // Paused for another restore: not ours, still no load.
    let other_pause = Case {
        status: status.clone(),
        group: Some(group_with(
            healthy(&format!("{U}:1-100"), &format!("{U}:1-99")),
            json!({RESTORE_IN_PROGRESS_ANNOTATION: "other"}),
        )),
        ..Case::new()
    }
    .decide(11);
    assert_eq!(other_pause.start_job, None);
    assert_eq!(
        other_pause.pause, None,
        "never takes the pause from its holder"
    );
    assert!(
        message(&other_pause).contains("paused by \"other\""),
        "{}",
        message(&other_pause)
    );

    // Shown: the Job loads the backup into iad, and only iad.
    let paused_group = group_with(
        healthy(&format!("{U}:1-101"), &format!("{U}:1-99")),
        paused(),
    );
    let d = Case {
        status: status.clone(),
        group: Some(paused_group),
        ..Case::new()
    }
    .decide(12);
    assert_eq!(
        d.start_job,
        Some(StartRestoreJob {
            site: "iad".into(),
            location: "playground/playground/nightly.sql".into(),
            checksum: "ab".repeat(32),
            gtid_executed: format!("{U}:1-40"),
        })
    );
    let loading = d.status.unwrap();
    assert_eq!(loading.step, Some(RestoreStep::Loading));
    assert_eq!(
        loading.gtid_before,
        Some(format!("{U}:1-101")),
        "the set at the load, not at the start"
    );
    assert_eq!(
        d.event.as_ref().map(|e| e.reason),
        Some(EventReason::RestoreLoading)
    );

    // Paused, but a failover moved the active site before the pause landed: fail with
    // nothing loaded and resume failover.
    let moved = group_with(
        json!({"activeSite": "pdx", "sites": [
            {"name": "iad", "state": "read-only"}, {"name": "pdx", "state": "writable"}]}),
        paused(),
    );
    let d = Case {
        status: status.clone(),
        group: Some(moved),
        ..Case::new()
    }
    .decide(12);
    assert_eq!(phase(&d), Some(JobPhase::Failed));
    assert!(
        message(&d).contains("moved from iad to pdx"),
        "{}",
        message(&d)
    );
    assert!(message(&d).contains("nothing was loaded"));
    assert_eq!(d.pause, Some(PauseChange::Resume));
    assert_eq!(d.start_job, None);

    // Paused, but two sites writable now: wait, never load.
    let split = group_with(
        json!({"activeSite": "iad", "sites": [
            {"name": "iad", "state": "writable"}, {"name": "pdx", "state": "writable"}]}),
        paused(),
    );
    let d = Case {
        status,
        group: Some(split),
        ..Case::new()
    }
    .decide(12);
    assert_eq!(d.start_job, None);
    assert!(
        message(&d).contains("two sites take writes"),
        "{}",
        message(&d)
    );
}

#[test]
fn a_failed_load_keeps_failover_paused_and_says_what_is_where_and_what_to_check() {
    let paused_group = || {
        group_with(
            healthy(&format!("{U}:1-100"), &format!("{U}:1-99")),
            paused(),
        )
    };
    let mut failed_with_message = at_step(RestoreStep::Loading, 0);
    failed_with_message.job.message =
        Some("the S3 store refused the credentials (SignatureDoesNotMatch)".into());
    let cases: Vec<(&str, MysqlRestoreStatus, Option<BackupJobState>, i64, &str)> = vec![
        (
            "Job failed with its own message",
            failed_with_message,
            Some(BackupJobState::Failed {
                reason: Some("BackoffLimitExceeded".into()),
            }),
            30,
            "refused the credentials",
        ),
        (
            "Job failed without one",
            at_step(RestoreStep::Loading, 0),
            Some(BackupJobState::Failed {
                reason: Some("BackoffLimitExceeded".into()),
            }),
            30,
            "reason BackoffLimitExceeded",
        ),
        (
            "Job vanished",
            at_step(RestoreStep::Loading, 0),
            None,
            61,
            "disappeared",
        ),
        (
            "Job complete without its result",
            at_step(RestoreStep::Loading, 0),
            Some(BackupJobState::Complete),
            30,
            "without recording the restored GTID set",
        ),
    ];
    for (what, status, job, now, text) in cases {
        let d = Case {
            status,
            job,
            group: Some(paused_group()),
            ..Case::new()
        }
        .decide(now);
        assert_eq!(phase(&d), Some(JobPhase::Failed), "{what}");
        let m = message(&d);
        assert!(m.contains(text), "{what}: {m}");
        for stated in [
            "site iad may be partly loaded",
            "pdx was not touched",
            "automatic failover stays paused",
            "until this MysqlRestore is deleted",
            "check the source backup nightly",
            "credentialsSecret of profile minio",
        ] {
            assert!(m.contains(stated), "{what}: {stated:?} missing in {m}");
        }
        assert_eq!(d.pause, None, "{what}: the pause stays");
        assert_eq!(d.finished, Some(false), "{what}");
        assert_eq!(
            d.event.as_ref().map(|e| e.reason),
            Some(EventReason::RestoreFailed),
            "{what}"
        );
    }
    // A running Job, or a missing one within the grace: wait.
    let running = Case {
        status: at_step(RestoreStep::Loading, 0),
        job: Some(BackupJobState::Running),
        group: Some(paused_group()),
        ..Case::new()
    };
    assert_eq!(running.decide(500), RestoreDecision::nothing());
    let young = Case {
        status: at_step(RestoreStep::Loading, 0),
        group: Some(paused_group()),
        ..Case::new()
    };
    assert_eq!(young.decide(20).status, None);
}

#[test]
fn the_other_site_is_recloned_through_the_confirmed_path_then_failover_resumes() {
    let mut loaded = at_step(RestoreStep::Loading, 0);
    loaded.restored_gtid_executed = Some(format!("{U}:1-40"));
    let d = Case {
        status: loaded.clone(),
        job: Some(BackupJobState::Complete),
        group: Some(group_with(
            healthy(&format!("{U}:1-100"), &format!("{U}:1-99")),
            paused(),
        )),
        ..Case::new()
    }
    .decide(30);
    let recloning = d.status.clone().unwrap();
    assert_eq!(recloning.step, Some(RestoreStep::Recloning));
    assert_eq!(
        d.event.as_ref().map(|e| e.reason),
        Some(EventReason::RestoreLoaded)
    );

    let with_sites = |iad: Value, pdx: Value| {
        let mut iad_site = json!({"name": "iad", "state": "writable"});
        let mut pdx_site = json!({"name": "pdx"});
        iad_site
            .as_object_mut()
            .unwrap()
            .extend(iad.as_object().unwrap().clone());
        pdx_site
            .as_object_mut()
            .unwrap()
            .extend(pdx.as_object().unwrap().clone());
        group_with(
            json!({"activeSite": "iad", "sites": [iad_site, pdx_site]}),
            paused(),
        )
    };
    let decide = |group: MysqlFailoverGroup, status: &MysqlRestoreStatus| {
        Case {
            status: status.clone(),
            group: Some(group),
            ..Case::new()
        }
        .decide(40)
    };

    // The status still shows the old data on both sites: not done (a stale status
    // must never read as a rebuilt replica).
    let stale = with_sites(
        json!({"gtidExecuted": format!("{U}:1-100")}),
        json!({"state": "read-only", "replicating": true, "gtidExecuted": format!("{U}:1-99")}),
    );
    assert_eq!(decide(stale, &recloning), RestoreDecision::wait());

    // The load shows; pdx still has the removed transactions and is not flagged yet.
    let not_flagged = with_sites(
        json!({"gtidExecuted": format!("{U}:1-40,\n{V}:1-2")}),
        json!({"state": "read-only", "replicating": false, "gtidExecuted": format!("{U}:1-99")}),
    );
    assert_eq!(decide(not_flagged, &recloning), RestoreDecision::wait());

    // pdx diverged: the restore confirms its reclone with the engine's token.
    let diverged = with_sites(
        json!({"gtidExecuted": format!("{U}:1-40,\n{V}:1-2")}),
        json!({"state": "read-only", "recoveryState": "RecoveryPending",
               "divergentGtid": format!("{U}:41-99"), "gtidExecuted": format!("{U}:1-99")}),
    );
    let d = decide(diverged.clone(), &recloning);
    assert_eq!(d.reclone.as_deref(), Some("pdx:3e11fa47"));
    assert_eq!(d.pause, None);
    assert_eq!(
        d.event.as_ref().map(|e| e.reason),
        Some(EventReason::RestoreRecloning)
    );
    let requested = d.status.unwrap();
    assert_eq!(requested.reclone_requested.as_deref(), Some("pdx:3e11fa47"));
    // Asked once: the same observation does not annotate again.
    assert_eq!(decide(diverged, &requested).reclone, None);

    // Recloning: wait.
    let cloning = with_sites(
        json!({"gtidExecuted": format!("{U}:1-40,\n{V}:1-2")}),
        json!({"state": "read-only", "recoveryState": "Recloning", "gtidExecuted": format!("{U}:1-99")}),
    );
    assert_eq!(decide(cloning, &requested), RestoreDecision::wait());

    // Rebuilt but not replicating yet: wait.
    let not_replicating = with_sites(
        json!({"gtidExecuted": format!("{U}:1-40,\n{V}:1-3")}),
        json!({"state": "read-only", "replicating": false, "gtidExecuted": format!("{U}:1-40,\n{V}:1-2")}),
    );
    assert_eq!(decide(not_replicating, &requested), RestoreDecision::wait());

    // Rebuilt and replicating from the restored site: Succeeded, failover resumes.
    let done = with_sites(
        json!({"gtidExecuted": format!("{U}:1-40,\n{V}:1-3")}),
        json!({"state": "read-only", "replicating": true, "gtidExecuted": format!("{U}:1-40,\n{V}:1-2")}),
    );
    let d = decide(done, &requested);
    assert_eq!(phase(&d), Some(JobPhase::Succeeded));
    assert_eq!(d.pause, Some(PauseChange::Resume));
    assert_eq!(d.finished, Some(true));
    assert_eq!(
        d.event.as_ref().map(|e| e.reason),
        Some(EventReason::RestoreSucceeded)
    );

    // A restore of the current state removes nothing: pdx never diverges and is done
    // as soon as it replicates.
    let mut nothing_removed = recloning.clone();
    nothing_removed.gtid_before = Some(format!("{U}:1-40"));
    let same = with_sites(
        json!({"gtidExecuted": format!("{U}:1-40")}),
        json!({"state": "read-only", "replicating": true, "gtidExecuted": format!("{U}:1-40")}),
    );
    assert_eq!(
        phase(&decide(same, &nothing_removed)),
        Some(JobPhase::Succeeded)
    );

    // The active site moved while recloning (only a person can, failover is paused):
    // fail, keep the pause, name the restored GTID set.
    let moved = group_with(
        json!({"activeSite": "pdx", "sites": [
            {"name": "iad", "state": "read-only"}, {"name": "pdx", "state": "writable"}]}),
        paused(),
    );
    let d = decide(moved, &requested);
    assert_eq!(phase(&d), Some(JobPhase::Failed));
    assert!(
        message(&d).contains(&format!("{U}:1-40")),
        "{}",
        message(&d)
    );
    assert_eq!(d.pause, None);
}

#[test]
fn finished_restores_are_left_alone() {
    for phase in [JobPhase::Succeeded, JobPhase::Failed] {
        let status = MysqlRestoreStatus {
            job: JobStatus {
                phase: Some(phase),
                ..JobStatus::default()
            },
            ..MysqlRestoreStatus::default()
        };
        let d = Case {
            status,
            group: None,
            backup: None,
            ..Case::new()
        }
        .decide(10);
        assert_eq!(d, RestoreDecision::nothing(), "{phase:?}");
    }
}
