//! Emergency failover: the active site stayed unreachable for the detection window.
//! Phases (persisted in status, so a restarted operator resumes): Fencing (old lease
//! expired, or old primary fenced directly) -> DrainingRelayLog (bounded) ->
//! Promoting (lease moved with a resourceVersion guard, then promote). Never twice.

use super::decision::{Action, EventIntent, EventReason, MetricIntent};
use super::election::most_advanced;
use super::fencing;
use super::snapshot::FORCE_FAILOVER_ANNOTATION;
use super::status::{as_i64, elapsed_ms};
use super::{BlockedFailover, Ctx};
use crate::api::{
    EmergencyFailoverPhase, EmergencyFailoverStatus, FailoverKind, FailoverRecord, FailoverResult,
};
use crate::gtid::GtidSet;

/// Starts a failover away from the unreachable active site `from`, if automatic
/// failover is on and a candidate exists: reachable, not diverged, most advanced, and
/// holding every transaction last seen on `from` (a stale candidate is promoted only on
/// a person's `force-failover` confirmation; otherwise the group waits for `from`).
pub fn start(ctx: &mut Ctx<'_>, from: &str) {
    let snap = ctx.snap;
    let window = snap.knobs.detection_window;
    if !snap.knobs.automatic_failover {
        ctx.note(format!(
            "primary {from} unreachable for over {window:?}; automatic failover is off"
        ));
        return;
    }
    let last_seen = match last_seen_on(ctx, from) {
        Ok(set) => set,
        Err(why) => {
            ctx.note(format!(
                "primary {from} unreachable for over {window:?}; no failover: {why}"
            ));
            return;
        }
    };
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
    let complete: Vec<(&str, GtidSet)> = candidates
        .iter()
        .filter(|(_, has)| last_seen.is_subset(has))
        .cloned()
        .collect();
    let mut reason = String::new();
    let to = match (most_advanced(&complete), most_advanced(&candidates)) {
        (Some(to), _) => to,
        (None, None) => {
            ctx.note(format!(
                "primary {from} unreachable for over {window:?}; no reachable, non-diverged \
                 site to fail over to"
            ));
            return;
        }
        (None, Some(stale)) => {
            let has = candidates
                .iter()
                .find(|(name, _)| *name == stale)
                .map(|(_, has)| has.clone())
                .unwrap_or_default();
            let blocked = BlockedFailover {
                candidate: stale.to_string(),
                missing: last_seen.subtract(&has),
            };
            let Some(confirmed) = confirmed_loss(ctx, from, blocked) else {
                return;
            };
            reason = confirmed;
            stale
        }
    };
    let detail = snap
        .site(from)
        .map(|s| s.outage_detail())
        .unwrap_or_default();
    let reason = format!("{from} unreachable for over {window:?} ({detail}){reason}");
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

/// The GTID set last observed on `from` (kept in its status entry while it is
/// unreachable): what its clients were told was committed. Empty when never observed.
/// An unreadable set blocks the failover, since what it protects is unknown.
fn last_seen_on(ctx: &Ctx<'_>, from: &str) -> Result<GtidSet, String> {
    match ctx
        .status
        .site(from)
        .and_then(|s| s.gtid_executed.as_deref())
    {
        None => Ok(GtidSet::default()),
        Some(text) => GtidSet::parse(text).map_err(|e| {
            format!("status.sites[{from}].gtidExecuted is not a GTID set ({e}): {text}")
        }),
    }
}

/// Whether a person confirmed promoting `blocked.candidate` although it lacks
/// transactions clients saw committed on `from`: the reason suffix saying what is
/// given up, or `None` while the failover is held back. Held back, it says why in the
/// health message every cycle and in a Warning Event once per distinct gap, and waits
/// for `from` to return (it resumes as primary with everything) or for the
/// `force-failover` confirmation.
fn confirmed_loss(ctx: &mut Ctx<'_>, from: &str, blocked: BlockedFailover) -> Option<String> {
    let missing = blocked.missing.count();
    let confirmation = blocked.confirmation();
    if ctx.snap.annotations.force_failover.as_deref() == Some(confirmation.as_str()) {
        ctx.force_failover_used = true;
        return Some(format!(
            "; confirmed by {FORCE_FAILOVER_ANNOTATION}={confirmation}: gives up {missing} \
             transaction(s) last seen on {from} ({})",
            blocked.missing.one_line()
        ));
    }
    let text = format!(
        "emergency failover from {from} blocked: {} lacks {missing} transaction(s) last seen \
         on {from} ({}); waiting for {from} to return, or annotate \
         {FORCE_FAILOVER_ANNOTATION}={confirmation} to promote {} and give them up",
        blocked.candidate,
        blocked.missing.one_line(),
        blocked.candidate
    );
    let key = format!("emergency/{from}->{}/blocked/{missing}", blocked.candidate);
    if ctx.first_time(&key) {
        ctx.event(EventIntent::warning(
            EventReason::FailoverBlocked,
            text.clone(),
        ));
    }
    ctx.note(text);
    ctx.blocked_failover = Some(blocked);
    None
}

/// Handles `force-failover: <site>:<count>`: used by `start` when it matches the
/// blocked failover exactly; otherwise refused with a Warning naming what would match.
/// Either way the annotation is removed.
pub fn handle_force_annotation(ctx: &mut Ctx<'_>) {
    let Some(value) = ctx.snap.annotations.force_failover.clone() else {
        return;
    };
    ctx.act(Action::RemoveAnnotation {
        key: FORCE_FAILOVER_ANNOTATION,
    });
    if ctx.force_failover_used {
        return;
    }
    let why = match &ctx.blocked_failover {
        Some(blocked) => format!(
            "expected {} ({} lacks {} transaction(s) last seen on the lost primary)",
            blocked.confirmation(),
            blocked.candidate,
            blocked.missing.count()
        ),
        None => "no emergency failover is blocked on missing transactions".to_string(),
    };
    ctx.event(EventIntent::warning(
        EventReason::ForceFailoverRejected,
        format!("{FORCE_FAILOVER_ANNOTATION}={value} refused: {why}"),
    ));
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
        // The old primary answered, fenced, with transactions the candidate does not
        // have: promoting would lose them, and the old primary can simply resume (the
        // lease never moved; the steady state lifts its fence).
        let old_has_them = snap
            .site(&failover.from)
            .filter(|o| o.observed_fenced())
            .and_then(|o| o.gtid_executed())
            .is_some_and(|old| !old.subtract(&candidate.gtid_executed).is_empty());
        if old_has_them {
            let why = format!(
                "{} answered again with transaction(s) {} lacks ({loss}); {} stays the primary",
                failover.from, failover.to, failover.from
            );
            return finish(ctx, &failover, FailoverResult::Failed, why);
        }
        // Unapplied relay-log transactions are discarded by the promotion. Those the
        // operator saw committed on the old primary are given up only on a person's
        // confirmation; the rest are the availability trade-off of asynchronous
        // replication (they stay on the old primary, which then shows as diverged).
        let last_seen = match last_seen_on(ctx, &failover.from) {
            Ok(set) => set,
            // As at the start: what an unreadable record protects is unknown.
            Err(why) => {
                failover.message = Some(format!("{loss}; not promoting: {why}"));
                return set(ctx, failover);
            }
        };
        let seen_missing = last_seen.subtract(&candidate.gtid_executed);
        let mut loss = loss;
        if !seen_missing.is_empty() {
            let blocked = BlockedFailover {
                candidate: failover.to.clone(),
                missing: seen_missing,
            };
            let Some(confirmed) = confirmed_loss(ctx, &failover.from, blocked) else {
                failover.message = Some(format!("{loss}; waiting for a confirmation"));
                return set(ctx, failover);
            };
            loss.push_str(&confirmed);
        }
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
