//! Decision tables for the emergency failover: detection, fencing, the bounded drain,
//! promotion, stale candidates and the `force-failover` confirmation, restarts.

use crate::engine::testkit::*;
use crate::engine::*;

/// healthy_pair with IAD silent since 11s. Lease last seen renewed at 10s, so it
/// expires on the operator's clock at 10 + 6 + 1 = 17s; the window fills at 16s.
fn iad_down() -> Snapshot {
    let mut snap = healthy_pair();
    snap.sites[0] = silent("iad", 11_000);
    replication_mut(&mut snap, "pdx").io_running = false;
    snap
}

fn failover(d: &Decision) -> &EmergencyFailoverStatus {
    status(d).emergency_failover.as_ref().unwrap()
}

/// iad_down, but the operator last saw 15 transactions on IAD while PDX (a replica
/// still catching up when IAD vanished) has received only 10.
fn iad_down_with_pdx_behind() -> Snapshot {
    let mut snap = iad_down();
    snap.status.sites[0] = seen_with("iad", &iad_txns(15));
    snap
}

fn removes_force_annotation(d: &Decision) -> bool {
    d.actions.contains(&Action::RemoveAnnotation {
        key: FORCE_FAILOVER_ANNOTATION,
    })
}

#[test]
fn a_candidate_missing_transactions_last_seen_on_the_primary_is_not_promoted() {
    let mut snap = iad_down_with_pdx_behind();
    // Long after the detection window and the lease expiry: only the gap blocks.
    let d = run(&snap, 60_000);
    assert!(status(&d).emergency_failover.is_none(), "{:?}", status(&d));
    assert!(promotions(&d).is_empty(), "{:?}", d.actions);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::MoveLease { .. })),
        "{:?}",
        d.actions
    );
    assert_eq!(reasons(&d), [EventReason::FailoverBlocked]);
    let said = &d.events[0].message;
    assert!(
        said.contains("pdx lacks 5 transaction(s) last seen on iad"),
        "{said}"
    );
    assert!(
        said.contains(&format!("{FORCE_FAILOVER_ANNOTATION}=pdx:5")),
        "{said}"
    );
    assert!(d.health_reason.contains("blocked"), "{}", d.health_reason);
    assert_eq!(status(&d).health, Some(Health::NoPrimary));
    assert_eq!(
        status(&d).site("iad").unwrap().gtid_executed,
        Some(iad_txns(15).one_line().to_string()),
        "what iad had is kept while it is away"
    );
    carry(&mut snap, &d);
    let d = run(&snap, 61_000);
    assert!(reasons(&d).is_empty(), "said once: {:?}", d.events);
    assert!(promotions(&d).is_empty());
    assert!(d.health_reason.contains("blocked"), "{}", d.health_reason);
}

#[test]
fn transactions_in_the_candidates_relay_log_count_as_received() {
    let mut snap = iad_down_with_pdx_behind();
    replication_mut(&mut snap, "pdx").retrieved = iad_txns(15);
    let d = run(&snap, 16_000);
    assert_eq!(reasons(&d), [EventReason::FailoverStarted]);
    assert_eq!(failover(&d).to, "pdx");
}

#[test]
fn a_confirmed_force_failover_promotes_the_stale_candidate_and_says_what_is_lost() {
    let mut snap = iad_down_with_pdx_behind();
    let d = run(&snap, 20_000);
    assert_eq!(reasons(&d), [EventReason::FailoverBlocked]);
    carry(&mut snap, &d);
    snap.annotations.force_failover = Some("pdx:5".into());
    let d = run(&snap, 21_000);
    assert!(removes_force_annotation(&d));
    assert_eq!(reasons(&d)[0], EventReason::FailoverStarted);
    let reason = failover(&d).reason.clone().unwrap_or_default();
    assert!(
        reason.contains("gives up 5 transaction(s) last seen on iad"),
        "{reason}"
    );
    // The lease expired long ago and IAD is silent: promotion follows the usual path.
    assert_eq!(promotions(&d), ["pdx"]);
    carry(&mut snap, &d);
    let d = run(&snap, 21_500);
    assert!(
        !reasons(&d).contains(&EventReason::ForceFailoverRejected),
        "the annotation was consumed: {:?}",
        d.events
    );
}

#[test]
fn a_force_failover_that_does_not_match_the_gap_is_refused_and_removed() {
    let cases = [
        ("pdx:4", "expected pdx:5"),
        ("iad:5", "expected pdx:5"),
        ("pdx", "expected pdx:5"),
        ("", "expected pdx:5"),
    ];
    for (value, expected) in cases {
        let mut snap = iad_down_with_pdx_behind();
        snap.annotations.force_failover = Some(value.into());
        let d = run(&snap, 20_000);
        assert!(removes_force_annotation(&d), "{value}");
        assert!(status(&d).emergency_failover.is_none(), "{value}");
        assert!(promotions(&d).is_empty(), "{value}");
        let rejected = d
            .events
            .iter()
            .find(|e| e.reason == EventReason::ForceFailoverRejected)
            .unwrap_or_else(|| panic!("{value}: {:?}", d.events));
        assert!(
            rejected.message.contains(expected),
            "{value}: {}",
            rejected.message
        );
    }
}

#[test]
fn a_force_failover_with_nothing_blocked_is_refused() {
    let mut snap = healthy_pair();
    snap.annotations.force_failover = Some("pdx:0".into());
    let d = run(&snap, 12_000);
    assert!(removes_force_annotation(&d));
    assert!(promotions(&d).is_empty());
    assert_eq!(reasons(&d), [EventReason::ForceFailoverRejected]);
    assert!(
        d.events[0]
            .message
            .contains("no emergency failover is blocked")
    );
}

#[test]
fn the_lost_primary_returning_resumes_with_everything() {
    let mut snap = iad_down_with_pdx_behind();
    let d = run(&snap, 20_000);
    carry(&mut snap, &d);
    // IAD is back, fenced by its own sidecar (its lease expired), with all 15.
    snap.sites[0] = fresh("iad", iad_txns(15));
    let d = run(&snap, 21_000);
    assert_eq!(promotions(&d), ["iad"], "{:?}", d.actions);
    assert!(!reasons(&d).contains(&EventReason::FailoverStarted));
}

#[test]
fn an_unreadable_last_seen_set_blocks_the_failover() {
    let mut snap = iad_down();
    snap.status.sites[0].gtid_executed = Some("not-a-gtid-set".into());
    let d = run(&snap, 20_000);
    assert!(status(&d).emergency_failover.is_none());
    assert!(promotions(&d).is_empty());
    assert!(
        d.health_reason.contains("gtidExecuted is not a GTID set"),
        "{}",
        d.health_reason
    );
}

#[test]
fn walks_detection_lease_expiry_drain_lease_move_promotion() {
    let mut snap = iad_down();
    let d = run(&snap, 16_000);
    assert_eq!(reasons(&d), [EventReason::FailoverStarted]);
    assert_eq!(failover(&d).phase, EmergencyFailoverPhase::Fencing);
    assert_eq!(
        (failover(&d).from.as_str(), failover(&d).to.as_str()),
        ("iad", "pdx")
    );
    assert!(
        promotions(&d).is_empty(),
        "lease not expired yet: {:?}",
        d.actions
    );
    assert_eq!(d.next_deadline, Some(Millis(17_000)));
    carry(&mut snap, &d);

    let d = run(&snap, 16_999);
    assert!(promotions(&d).is_empty());
    carry(&mut snap, &d);

    let d = run(&snap, 17_000);
    assert_eq!(
        d.actions[..2],
        [
            Action::MoveLease {
                to: "pdx".into(),
                expected_resource_version: Some("100".into())
            },
            Action::Promote { site: "pdx".into() },
        ]
    );
    assert_eq!(failover(&d).phase, EmergencyFailoverPhase::Promoting);
    carry(&mut snap, &d);

    // The lease moved and pdx is writable.
    snap.lease = lease_held_by(Some("pdx"), "101", 17_100);
    snap.sites[1] = writable("pdx", iad_txns(10));
    site_mut(&mut snap, "pdx").pod.role_label = Some(Role::Replica);
    let d = run(&snap, 17_200);
    assert!(status(&d).emergency_failover.is_none());
    assert_eq!(status(&d).active_site.as_deref(), Some("pdx"));
    assert_eq!(
        reasons(&d),
        [EventReason::FailoverSucceeded, EventReason::DNSUpdated]
    );
    let last = status(&d).last_failover.clone().unwrap();
    assert_eq!(
        (last.kind, last.result),
        (FailoverKind::Emergency, Some(FailoverResult::Succeeded))
    );
    assert_eq!(last.duration_ms, Some(1_200));
    assert!(
        promotions(&d).is_empty(),
        "never promoted twice: {:?}",
        d.actions
    );
    assert!(
        d.actions
            .contains(&Action::UpdateDns { site: "pdx".into() })
    );
    assert!(d.actions.contains(&Action::SetRoleLabel {
        site: "pdx".into(),
        role: Role::Primary
    }));
    assert!(d.metrics.contains(&MetricIntent::FailoverFinished {
        kind: FailoverKind::Emergency,
        result: FailoverResult::Succeeded,
        duration: std::time::Duration::from_millis(1_200),
    }));
}

#[test]
fn never_promotes_while_the_old_holder_keeps_renewing() {
    // iad is unreachable from the operator but still renews through the API.
    let mut snap = iad_down();
    let d = run(&snap, 16_000);
    carry(&mut snap, &d);
    for (now, seen) in [(17_000, 16_500), (20_000, 19_000), (25_999, 19_000)] {
        snap.lease = lease_held_by(Some("iad"), &format!("rv{seen}"), seen);
        let d = run(&snap, now);
        assert!(promotions(&d).is_empty(), "at {now}: {:?}", d.actions);
        assert_eq!(failover(&d).phase, EmergencyFailoverPhase::Fencing);
        carry(&mut snap, &d);
    }
    assert_eq!(promotions(&run(&snap, 26_000)), ["pdx"]);
}

#[test]
fn a_reachable_old_primary_is_fenced_directly_instead_of_waiting() {
    let mut snap = iad_down();
    let d = run(&snap, 16_000);
    carry(&mut snap, &d);
    // iad answers again, still writable.
    snap.sites[0] = writable("iad", iad_txns(10));
    let d = run(&snap, 16_100);
    assert_eq!(d.actions[0], Action::Fence { site: "iad".into() });
    assert!(reasons(&d).contains(&EventReason::SiteFenced));
    assert!(promotions(&d).is_empty());
    carry(&mut snap, &d);
    // It reports super_read_only=ON: no need to wait for its lease (17s).
    mysql_mut(&mut snap, "iad").super_read_only = true;
    mysql_mut(&mut snap, "iad").read_only = true;
    // ...but only a probe that started after the operator saw the Lease without a
    // grant for iad counts: an older one may predate a lift by iad's sidecar.
    mysql_mut(&mut snap, "iad").probed_at = Millis(0);
    snap.lease.seen_change_at = Millis(16_150);
    assert!(promotions(&run(&snap, 16_200)).is_empty());
    mysql_mut(&mut snap, "iad").probed_at = Millis(16_160);
    let d = run(&snap, 16_200);
    assert_eq!(promotions(&d), ["pdx"]);
}

#[test]
fn a_fence_seen_while_the_grant_stands_is_not_final() {
    // iad's sidecar fenced itself on a stale renewal, but iad still holds the
    // grant: after one fresh renewal it lifts the fence again. Moving the lease on
    // this observation could leave two writable sites.
    let mut snap = iad_down();
    let d = run(&snap, 16_000);
    carry(&mut snap, &d);
    snap.sites[0] = writable("iad", iad_txns(10));
    let iad = mysql_mut(&mut snap, "iad");
    iad.super_read_only = true;
    iad.read_only = true;
    iad.probed_at = Millis(16_100);
    snap.lease.record.holder_granted = true;
    let d = run(&snap, 16_100);
    assert!(promotions(&d).is_empty(), "{:?}", d.actions);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::MoveLease { .. })),
        "{:?}",
        d.actions
    );
}

#[test]
fn the_candidate_drains_its_relay_log_within_the_bound() {
    let mut snap = iad_down();
    replication_mut(&mut snap, "pdx").retrieved = iad_txns(12);
    let d = run(&snap, 16_000);
    carry(&mut snap, &d);
    let d = run(&snap, 17_000);
    assert_eq!(failover(&d).phase, EmergencyFailoverPhase::DrainingRelayLog);
    assert!(
        text(&failover(&d).message).contains("2 transaction(s) to apply"),
        "{:?}",
        failover(&d).message
    );
    assert!(promotions(&d).is_empty());
    carry(&mut snap, &d);
    // Applied: promote.
    let mut drained = snap.clone();
    mysql_mut(&mut drained, "pdx").gtid_executed = iad_txns(12);
    assert_eq!(promotions(&run(&drained, 18_000)), ["pdx"]);
    // Not applied, but the bound (10s from entering the phase) ran out: promote
    // anyway and say what was not applied.
    let d = run(&snap, 26_999);
    assert!(promotions(&d).is_empty());
    carry(&mut snap, &d);
    let d = run(&snap, 27_000);
    assert_eq!(promotions(&d), ["pdx"]);
    assert!(
        text(&failover(&d).reason).contains("2 transaction(s) not applied"),
        "{:?}",
        failover(&d).reason
    );
}

#[test]
fn unapplied_transactions_seen_on_the_old_primary_need_a_confirmation_after_the_bound() {
    // The operator saw 12 on iad; pdx received all 12 but applied only 10.
    let mut snap = iad_down();
    snap.status.sites[0] = seen_with("iad", &iad_txns(12));
    replication_mut(&mut snap, "pdx").retrieved = iad_txns(12);
    let d = run(&snap, 16_000);
    assert_eq!(
        reasons(&d),
        [EventReason::FailoverStarted],
        "received counts"
    );
    carry(&mut snap, &d);
    let d = run(&snap, 17_000);
    carry(&mut snap, &d);
    let d = run(&snap, 27_000);
    assert!(promotions(&d).is_empty(), "{:?}", d.actions);
    assert_eq!(failover(&d).phase, EmergencyFailoverPhase::DrainingRelayLog);
    assert!(text(&failover(&d).message).contains("waiting for a confirmation"));
    assert_eq!(reasons(&d), [EventReason::FailoverBlocked]);
    assert!(
        d.events[0]
            .message
            .contains(&format!("{FORCE_FAILOVER_ANNOTATION}=pdx:2"))
    );
    carry(&mut snap, &d);
    snap.annotations.force_failover = Some("pdx:2".into());
    let d = run(&snap, 28_000);
    assert_eq!(promotions(&d), ["pdx"]);
    assert!(removes_force_annotation(&d));
    assert!(!reasons(&d).contains(&EventReason::ForceFailoverRejected));
    assert!(
        text(&failover(&d).reason).contains("gives up 2 transaction(s) last seen on iad"),
        "{:?}",
        failover(&d).reason
    );
}

#[test]
fn an_unreadable_last_seen_set_also_holds_an_unfinished_drain() {
    let mut snap = iad_down();
    replication_mut(&mut snap, "pdx").retrieved = iad_txns(12);
    let d = run(&snap, 16_000);
    carry(&mut snap, &d);
    let d = run(&snap, 17_000);
    carry(&mut snap, &d);
    snap.status.sites[0].gtid_executed = Some("not-a-gtid-set".into());
    let d = run(&snap, 27_000);
    assert!(promotions(&d).is_empty(), "{:?}", d.actions);
    assert!(
        text(&failover(&d).message).contains("gtidExecuted is not a GTID set"),
        "{:?}",
        failover(&d).message
    );
}

#[test]
fn an_old_primary_answering_with_transactions_the_candidate_cannot_get_resumes() {
    let mut snap = iad_down();
    let d = run(&snap, 16_000);
    carry(&mut snap, &d);
    // iad answers again, fenced by its sidecar, with 2 transactions pdx never
    // received; pdx's SQL thread is stopped, so it cannot catch up.
    snap.sites[0] = fresh("iad", iad_txns(12));
    replication_mut(&mut snap, "pdx").sql_running = false;
    let d = run(&snap, 16_500);
    assert!(promotions(&d).is_empty(), "{:?}", d.actions);
    carry(&mut snap, &d);
    // The lease has expired: the drain finds what pdx cannot get, and gives up.
    let d = run(&snap, 17_000);
    assert!(
        reasons(&d).contains(&EventReason::FailoverFailed),
        "{:?}",
        d.events
    );
    assert!(status(&d).emergency_failover.is_none());
    assert_eq!(status(&d).active_site.as_deref(), Some("iad"));
    assert_eq!(promotions(&d), ["iad"], "iad resumes: {:?}", d.actions);
}

#[test]
fn no_failover_without_a_safe_candidate_or_with_automatic_off() {
    let mut diverged = iad_down();
    with_recovery(
        &mut diverged,
        "pdx",
        &format!("{PDX_UUID}:1"),
        RecoveryState::RecoveryPending,
    );
    let mut manual = iad_down();
    manual.knobs.automatic_failover = false;
    let mut both_down = iad_down();
    both_down.sites[1] = silent("pdx", 12_000);
    let mut restoring = iad_down();
    restoring.annotations.restore_in_progress = Some("undo".into());
    for (name, snap) in [
        ("diverged", diverged),
        ("manual", manual),
        ("both down", both_down),
        ("paused by a restore", restoring),
    ] {
        let d = run(&snap, 30_000);
        assert!(status(&d).emergency_failover.is_none(), "{name}");
        assert!(promotions(&d).is_empty(), "{name}");
        assert_eq!(status(&d).health, Some(Health::NoPrimary), "{name}");
    }
}

#[test]
fn a_restarted_operator_resumes_from_status_and_never_promotes_twice() {
    // Status says Promoting; the lease already moved and pdx is writable. Memory
    // is empty (new process).
    let mut snap = iad_down();
    let d = run(&snap, 16_000);
    carry(&mut snap, &d);
    let d = run(&snap, 17_000);
    carry(&mut snap, &d);
    snap.memory = EngineMemory::default();
    snap.lease = lease_held_by(Some("pdx"), "101", 40_000);
    snap.sites[1] = writable("pdx", iad_txns(10));
    let d = run(&snap, 40_000);
    assert!(promotions(&d).is_empty(), "{:?}", d.actions);
    assert_eq!(reasons(&d)[0], EventReason::FailoverSucceeded);
    assert!(status(&d).emergency_failover.is_none());
}

#[test]
fn a_restart_between_judging_the_lease_expired_and_moving_it_waits_again() {
    // Status says Promoting, but the new process has only just seen iad's lease:
    // it must wait a full duration + margin again before taking it.
    let mut snap = iad_down();
    let d = run(&snap, 16_000);
    carry(&mut snap, &d);
    let d = run(&snap, 17_000);
    assert_eq!(failover(&d).phase, EmergencyFailoverPhase::Promoting);
    carry(&mut snap, &d);
    snap.memory = EngineMemory::default();
    snap.lease = lease_held_by(Some("iad"), "100", 50_000);
    let d = run(&snap, 50_000);
    assert!(promotions(&d).is_empty(), "{:?}", d.actions);
    assert_eq!(failover(&d).phase, EmergencyFailoverPhase::Fencing);
    assert_eq!(d.next_deadline, Some(Millis(57_000)));
}

#[test]
fn a_candidate_lost_before_the_lease_moved_fails_the_failover() {
    let mut snap = iad_down();
    let d = run(&snap, 16_000);
    carry(&mut snap, &d);
    snap.sites[1] = silent("pdx", 16_500);
    let d = run(&snap, 21_500);
    assert!(status(&d).emergency_failover.is_none());
    assert_eq!(status(&d).active_site.as_deref(), Some("iad"));
    assert!(reasons(&d).contains(&EventReason::FailoverFailed));
    assert_eq!(
        status(&d).last_failover.as_ref().unwrap().result,
        Some(FailoverResult::Failed)
    );
}
