//! Emergency failover: the active site stayed unreachable for the detection window.
//! Phases (persisted in status, so a restarted operator resumes): Fencing (old lease
//! expired, or old primary fenced directly) -> DrainingRelayLog (bounded) ->
//! Promoting (lease moved with a resourceVersion guard, then promote). Never twice.

use super::decision::{Action, EventIntent, EventReason};
use super::election::most_advanced;
use super::fencing;
use super::memory::Mark;
use super::snapshot::{FORCE_FAILOVER_ANNOTATION, LastSeenGtids};
use super::status::elapsed_ms;
use super::{BlockedFailover, Ctx};
use crate::api::{EmergencyFailoverPhase, EmergencyFailoverStatus, FailoverKind, FailoverResult};
use crate::gtid::GtidSet;

/// Starts a failover away from the unreachable active site `from`, if automatic
/// failover is on and a candidate exists: reachable, not diverged, most advanced, and
/// holding every transaction last seen on `from` (a stale candidate is promoted only on
/// a person's `force-failover` confirmation; otherwise the group waits for `from`).
pub(super) fn start(ctx: &mut Ctx<'_>, from: &str) {
    let snap = ctx.snap;
    let window = snap.knobs.detection_window;
    if !snap.knobs.automatic_failover {
        ctx.note(format!(
            "primary {from} unreachable for over {window:?}; automatic failover is off"
        ));
        return;
    }
    if let Some(restore) = &snap.annotations.restore_in_progress {
        // The restore loads into `from`; promoting the other site mid-restore would
        // make the un-restored data the primary's (engine::restore).
        ctx.note(format!(
            "primary {from} unreachable for over {window:?}; automatic failover is paused by MysqlRestore {restore}"
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
    match ctx.snap.site(from).map(|s| &s.last_seen) {
        None | Some(LastSeenGtids::Never) => Ok(GtidSet::default()),
        Some(LastSeenGtids::Seen(set)) => Ok(set.clone()),
        Some(LastSeenGtids::Unreadable { text, error }) => Err(format!(
            "status.sites[{from}].gtidExecuted is not a GTID set ({error}): {text}"
        )),
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
    let mark = Mark::EmergencyBlocked {
        from: from.to_string(),
        candidate: blocked.candidate.clone(),
        missing,
    };
    if ctx.first_time(mark) {
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
pub(super) fn handle_force_annotation(ctx: &mut Ctx<'_>) {
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
pub(super) fn step(ctx: &mut Ctx<'_>) {
    let Some(failover) = ctx.status.emergency_failover.clone() else {
        return;
    };
    ctx.requeue_soon();
    ctx.phase_started(started_mark(&failover));
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
    let drain = phase_mark(&failover, EmergencyFailoverPhase::DrainingRelayLog);
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
    } else if ctx.phase_exceeded(drain, snap.knobs.drain_timeout) {
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
    ctx.phase_started(phase_mark(&failover, failover.phase));
    ctx.status.emergency_failover = Some(failover);
}

fn finish(
    ctx: &mut Ctx<'_>,
    failover: &EmergencyFailoverStatus,
    result: FailoverResult,
    message: String,
) {
    let started = ctx.phase_started(started_mark(failover));
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
    ctx.record_failover(
        FailoverKind::Emergency,
        result,
        (&failover.from, &failover.to),
        failover.reason.clone(),
        failover.started_at.clone(),
        duration_ms,
    );
    ctx.status.emergency_failover = None;
}

fn started_mark(failover: &EmergencyFailoverStatus) -> Mark {
    Mark::EmergencyStarted {
        from: failover.from.clone(),
        to: failover.to.clone(),
    }
}

fn phase_mark(failover: &EmergencyFailoverStatus, phase: EmergencyFailoverPhase) -> Mark {
    Mark::EmergencyPhase {
        from: failover.from.clone(),
        to: failover.to.clone(),
        phase,
    }
}

#[cfg(test)]
mod tests;
