//! Emergency failover: the active site stayed unreachable for the detection window.
//! Phases (persisted in status, so a restarted operator resumes): Fencing (old lease
//! expired, or old primary fenced directly) -> DrainingRelayLog (bounded) ->
//! Promoting (lease moved with a resourceVersion guard, then promote). Never twice.

use super::Ctx;
use super::decision::{Action, EventIntent, EventReason, MetricIntent};
use super::election::most_advanced;
use super::fencing;
use super::status::{as_i64, elapsed_ms};
use crate::api::{
    EmergencyFailoverPhase, EmergencyFailoverStatus, FailoverKind, FailoverRecord, FailoverResult,
};
use crate::gtid::GtidSet;

/// Starts a failover away from the unreachable active site `from`, if automatic
/// failover is on and a candidate exists: reachable, not diverged, most advanced.
pub fn start(ctx: &mut Ctx<'_>, from: &str) {
    let snap = ctx.snap;
    let window = snap.knobs.detection_window;
    if !snap.knobs.automatic_failover {
        ctx.note(format!(
            "primary {from} unreachable for over {window:?}; automatic failover is off"
        ));
        return;
    }
    let candidates: Vec<(&str, GtidSet)> = snap
        .sites
        .iter()
        .filter(|s| s.name != from && ctx.status.recovery_state(&s.name).is_none())
        .filter_map(|s| {
            let mysql = s.mysql()?;
            let relay = s
                .replication()
                .map(|r| r.retrieved.clone())
                .unwrap_or_default();
            Some((s.name.as_str(), mysql.gtid_executed.union(&relay)))
        })
        .collect();
    let Some(to) = most_advanced(&candidates) else {
        ctx.note(format!(
            "primary {from} unreachable for over {window:?}; no reachable, non-diverged site \
             to fail over to"
        ));
        return;
    };
    let detail = snap
        .site(from)
        .map(|s| s.outage_detail())
        .unwrap_or_default();
    let reason = format!("{from} unreachable for over {window:?} ({detail})");
    ctx.event(EventIntent::warning(
        EventReason::FailoverStarted,
        format!("emergency failover from {from} to {to}: {reason}"),
    ));
    ctx.status.emergency_failover = Some(EmergencyFailoverStatus {
        from: from.to_string(),
        to: to.to_string(),
        phase: EmergencyFailoverPhase::Fencing,
        reason: Some(reason),
        started_at: Some(ctx.now.wall.into()),
        message: None,
    });
    step(ctx);
}

/// Advances the failover in progress as far as this snapshot allows.
pub fn step(ctx: &mut Ctx<'_>) {
    let Some(failover) = ctx.status.emergency_failover.clone() else {
        return;
    };
    ctx.requeue_soon();
    ctx.phase_started(&started_key(&failover));
    let snap = ctx.snap;
    let window = snap.knobs.detection_window;
    let candidate_lost = snap
        .site(&failover.to)
        .is_none_or(|c| c.unreachable_for(window, ctx.now.mono));
    if candidate_lost {
        let why = if snap.holds_lease(&failover.to) {
            // It holds the lease: it is the active site now, and if it stays silent the
            // steady state starts a new failover away from it.
            ctx.status.active_site = Some(failover.to.clone());
            format!(
                "{} became unreachable after taking the writer lease",
                failover.to
            )
        } else {
            // Nothing changed hands: the old primary stays active. A direct fence of it
            // is lifted by the steady state, since it still holds the lease.
            format!("candidate {} became unreachable", failover.to)
        };
        finish(ctx, &failover, FailoverResult::Failed, why);
        return;
    }
    match failover.phase {
        EmergencyFailoverPhase::Fencing => fencing_phase(ctx, failover),
        EmergencyFailoverPhase::DrainingRelayLog => draining_phase(ctx, failover),
        EmergencyFailoverPhase::Promoting => promoting_phase(ctx, failover),
    }
}

fn fencing_phase(ctx: &mut Ctx<'_>, mut failover: EmergencyFailoverStatus) {
    let snap = ctx.snap;
    let old = snap.site(&failover.from);
    if let Some(old) = old.filter(|o| o.reachable() && !o.observed_fenced()) {
        ctx.act(Action::Fence {
            site: old.name.clone(),
        });
        ctx.event(EventIntent::warning(
            EventReason::SiteFenced,
            format!(
                "fenced {} directly for the emergency failover to {}",
                old.name, failover.to
            ),
        ));
        failover.message = Some(format!("fencing {} directly", failover.from));
        return set(ctx, failover);
    }
    if fencing::may_take_lease(snap, &failover.to, ctx.now.mono) {
        failover.phase = EmergencyFailoverPhase::DrainingRelayLog;
        return draining_phase(ctx, failover);
    }
    let expiry = fencing::lease_expiry(snap);
    ctx.deadline(expiry);
    failover.message = Some(format!(
        "waiting for {}'s writer lease to expire (operator clock {expiry}) or for {} to answer \
         so that it can be fenced",
        failover.from, failover.from
    ));
    set(ctx, failover);
}

fn draining_phase(ctx: &mut Ctx<'_>, mut failover: EmergencyFailoverStatus) {
    let snap = ctx.snap;
    let key = phase_key(&failover, EmergencyFailoverPhase::DrainingRelayLog);
    let Some(candidate) = snap.site(&failover.to).and_then(|c| c.mysql()) else {
        failover.message = Some(format!("waiting for {} to answer", failover.to));
        return set(ctx, failover);
    };
    // Everything the candidate has received, plus everything the old primary has if
    // it answers fenced (its set is final then).
    let mut target = candidate
        .replication
        .as_ref()
        .map(|r| r.retrieved.clone())
        .unwrap_or_default();
    if let Some(executed) = snap
        .site(&failover.from)
        .filter(|o| o.observed_fenced())
        .and_then(|o| o.gtid_executed())
    {
        target = target.union(executed);
    }
    let missing = target.subtract(&candidate.gtid_executed);
    let sql_stopped = candidate
        .replication
        .as_ref()
        .is_none_or(|r| !r.sql_running);
    let proceed = if missing.is_empty() {
        None
    } else if sql_stopped {
        Some(format!(
            "{} transaction(s) not applied: the SQL thread of {} is stopped",
            missing.count(),
            failover.to
        ))
    } else if ctx.phase_exceeded(&key, snap.knobs.drain_timeout) {
        Some(format!(
            "{} transaction(s) not applied within the drain timeout {:?}",
            missing.count(),
            snap.knobs.drain_timeout
        ))
    } else {
        failover.message = Some(format!(
            "draining the relay log of {}: {} transaction(s) to apply",
            failover.to,
            missing.count()
        ));
        return set(ctx, failover);
    };
    if let Some(loss) = proceed {
        // Promoting anyway is the availability trade-off of asynchronous replication:
        // these transactions stay on the old primary, which then shows as diverged.
        failover.reason = Some(match failover.reason.take() {
            Some(reason) => format!("{reason}; {loss}"),
            None => loss,
        });
    }
    failover.phase = EmergencyFailoverPhase::Promoting;
    promoting_phase(ctx, failover);
}

fn promoting_phase(ctx: &mut Ctx<'_>, mut failover: EmergencyFailoverStatus) {
    let snap = ctx.snap;
    let to = failover.to.clone();
    let candidate_writable = snap.site(&to).is_some_and(|c| c.writable());
    if snap.holds_lease(&to) {
        ctx.status.active_site = Some(to.clone());
        if candidate_writable {
            return finish(
                ctx,
                &failover,
                FailoverResult::Succeeded,
                format!("{to} is the primary"),
            );
        }
    }
    if ctx.promote(&to) {
        failover.message = Some(format!("moving the writer lease to {to} and promoting it"));
        return set(ctx, failover);
    }
    if snap.holds_lease(&to) {
        failover.message = Some(format!(
            "waiting for other writers to be fenced before promoting {to}"
        ));
        return set(ctx, failover);
    }
    // The old holder renewed its lease since the fence was judged safe: it is alive.
    // Back to waiting; nothing has been promoted.
    failover.phase = EmergencyFailoverPhase::Fencing;
    fencing_phase(ctx, failover);
}

fn set(ctx: &mut Ctx<'_>, failover: EmergencyFailoverStatus) {
    ctx.phase_started(&phase_key(&failover, failover.phase));
    ctx.status.emergency_failover = Some(failover);
}

fn finish(
    ctx: &mut Ctx<'_>,
    failover: &EmergencyFailoverStatus,
    result: FailoverResult,
    message: String,
) {
    let started = ctx.phase_started(&started_key(failover));
    let duration_ms = elapsed_ms(
        Some(started),
        ctx.now.mono,
        failover.started_at.as_ref(),
        ctx.now.wall,
    );
    let (reason, text) = match result {
        FailoverResult::Succeeded => (
            EventReason::FailoverSucceeded,
            format!(
                "emergency failover from {} to {} succeeded: {message}",
                failover.from, failover.to
            ),
        ),
        FailoverResult::Failed => (
            EventReason::FailoverFailed,
            format!(
                "emergency failover from {} to {} failed: {message}",
                failover.from, failover.to
            ),
        ),
    };
    let event = match result {
        FailoverResult::Succeeded => EventIntent::normal(reason, text),
        FailoverResult::Failed => EventIntent::warning(reason, text),
    };
    ctx.event(event);
    ctx.metrics.push(MetricIntent::FailoverFinished {
        kind: FailoverKind::Emergency,
        result,
        duration: std::time::Duration::from_millis(duration_ms),
    });
    ctx.status.last_failover = Some(FailoverRecord {
        kind: FailoverKind::Emergency,
        result: Some(result),
        from: Some(failover.from.clone()),
        to: failover.to.clone(),
        reason: failover.reason.clone(),
        started_at: failover.started_at.clone(),
        completed_at: Some(ctx.now.wall.into()),
        duration_ms: Some(as_i64(duration_ms)),
    });
    ctx.status.emergency_failover = None;
}

fn started_key(failover: &EmergencyFailoverStatus) -> String {
    format!("emergency/{}->{}/started", failover.from, failover.to)
}

fn phase_key(failover: &EmergencyFailoverStatus, phase: EmergencyFailoverPhase) -> String {
    format!(
        "emergency/{}->{}/{}",
        failover.from,
        failover.to,
        phase.as_str()
    )
}

#[cfg(test)]
mod tests {
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
        let d = run(&snap, 16_200);
        assert_eq!(promotions(&d), ["pdx"]);
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
        for (name, snap) in [
            ("diverged", diverged),
            ("manual", manual),
            ("both down", both_down),
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
}
