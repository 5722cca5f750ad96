//! Planned failover on `planned-failover: <site>`: validate, then WaitingForLag ->
//! Promoting (fence the old primary, wait for exact GTID catch-up, move the lease,
//! promote) -> Resuming -> Succeeded; on failure undo the fence -> Failed.

use super::Ctx;
use super::decision::{Action, EventIntent, EventReason, MetricIntent};
use super::recovery::site_list;
use super::snapshot::PLANNED_FAILOVER_ANNOTATION;
use super::status::{
    FailoverKind, FailoverResult, LastFailover, PlannedFailover, PlannedPhase, elapsed_ms,
};

/// The validation message for a target that is read-only but not replicating; users
/// and runbooks match on it exactly.
pub const NOT_REPLICATING: &str = "site is read-only but not replicating";

/// Consumes the annotation: starts a planned failover or rejects it.
pub fn handle_annotation(ctx: &mut Ctx<'_>) {
    let Some(target) = ctx.snap.annotations.planned_failover.clone() else {
        return;
    };
    let target = target.trim().to_string();
    ctx.act(Action::RemoveAnnotation {
        key: PLANNED_FAILOVER_ANNOTATION,
    });
    if let Some(current) = ctx.status.planned_in_progress() {
        if current.target != target {
            let why = format!(
                "a planned failover to {} is already in progress",
                current.target
            );
            ctx.event(rejected_event(&target, &why));
        }
        return;
    }
    match validate(ctx, &target) {
        Ok(from) => {
            ctx.event(EventIntent::normal(
                EventReason::FailoverStarted,
                format!("planned failover from {from} to {target} started"),
            ));
            ctx.status.planned_failover = Some(PlannedFailover {
                target: target.clone(),
                from: Some(from),
                phase: PlannedPhase::WaitingForLag,
                message: format!("waiting for {target} to catch up"),
                started_at: Some(ctx.now.wall),
                fenced_at: None,
                completed_at: None,
                write_unavailable_ms: None,
            });
            ctx.requeue_soon();
        }
        Err(why) => {
            ctx.event(rejected_event(&target, &why));
            ctx.status.planned_failover = Some(PlannedFailover {
                target,
                from: None,
                phase: PlannedPhase::Rejected,
                message: why,
                started_at: None,
                fenced_at: None,
                completed_at: Some(ctx.now.wall),
                write_unavailable_ms: None,
            });
        }
    }
}

fn rejected_event(target: &str, why: &str) -> EventIntent {
    EventIntent::warning(
        EventReason::PlannedFailoverRejected,
        format!("planned failover to {target} rejected: {why}"),
    )
}

/// Returns the active site to fail over from, or why the request is refused.
fn validate(ctx: &Ctx<'_>, target: &str) -> Result<String, String> {
    let snap = ctx.snap;
    if ctx.status.failover.is_some() {
        return Err("an emergency failover is in progress".to_string());
    }
    let Some(site) = snap.site(target) else {
        return Err(format!(
            "unknown site \"{target}\" (sites: {})",
            site_list(ctx)
        ));
    };
    let Some(active) = ctx.status.active_site.clone() else {
        return Err("the group has no active site yet".to_string());
    };
    if target == active {
        return Err(format!("site {target} is already the active site"));
    }
    if !snap
        .site(&active)
        .is_some_and(|a| a.writable() && snap.holds_lease(&active))
    {
        return Err(format!(
            "the active site {active} is unhealthy: it is not writable"
        ));
    }
    if !site.reachable() {
        return Err(format!("site {target} is unhealthy: unreachable"));
    }
    if !site.pod.ready {
        return Err(format!("site {target} is unhealthy: pod not ready"));
    }
    let Some(replication) = site.replication().filter(|r| r.replicates_from(&active)) else {
        return Err(NOT_REPLICATING.to_string());
    };
    if let Some(recovery) = ctx.status.recovery(target) {
        return Err(format!(
            "site {target} is {}: reclone it first",
            recovery.state.as_str()
        ));
    }
    let lag = replication.lag_seconds.unwrap_or(0);
    if lag > snap.knobs.max_lag_seconds {
        return Err(format!(
            "site {target} lags {lag}s behind the primary, over the limit of {}s",
            snap.knobs.max_lag_seconds
        ));
    }
    Ok(active)
}

/// Advances the planned failover in progress.
pub fn step(ctx: &mut Ctx<'_>) {
    let Some(plan) = ctx.status.planned_in_progress().cloned() else {
        return;
    };
    let Some(from) = plan.from.clone() else {
        return;
    };
    ctx.requeue_soon();
    ctx.phase_started(&started_key(&plan));
    match plan.phase {
        PlannedPhase::WaitingForLag => waiting_for_lag(ctx, plan, &from),
        PlannedPhase::Promoting => promoting(ctx, plan, &from),
        PlannedPhase::Resuming => resuming(ctx, plan, &from),
        PlannedPhase::Succeeded | PlannedPhase::Failed | PlannedPhase::Rejected => {}
    }
}

fn waiting_for_lag(ctx: &mut Ctx<'_>, mut plan: PlannedFailover, from: &str) {
    let snap = ctx.snap;
    let target = plan.target.clone();
    if !snap.site(from).is_some_and(|s| s.writable()) {
        return fail(
            ctx,
            plan,
            from,
            format!("the active site {from} stopped being writable"),
        );
    }
    let Some(replication) = snap.site(&target).and_then(|s| s.replication()) else {
        return fail(
            ctx,
            plan,
            from,
            format!("{target} stopped answering or replicating"),
        );
    };
    if !replication.replicates_from(from) {
        let error = replication
            .last_io_error
            .clone()
            .or_else(|| replication.last_sql_error.clone())
            .unwrap_or_default();
        return fail(
            ctx,
            plan,
            from,
            format!("{target} stopped replicating from {from} {error}"),
        );
    }
    let lag = replication.lag_seconds;
    if lag == Some(0) {
        return advance(ctx, plan, from);
    }
    if ctx.phase_exceeded(&phase_key(&plan), snap.knobs.drain_timeout) {
        let shown = lag.map_or("unknown".to_string(), |l| format!("{l}s"));
        return fail(
            ctx,
            plan,
            from,
            format!(
                "{target} did not catch up within {:?} (lag {shown})",
                snap.knobs.drain_timeout
            ),
        );
    }
    plan.message = format!(
        "waiting for {target} to catch up (lag {}s)",
        lag.unwrap_or(0)
    );
    set(ctx, plan);
}

/// Moves to the next phase of the success path and performs its entry actions.
fn advance(ctx: &mut Ctx<'_>, mut plan: PlannedFailover, from: &str) {
    plan.phase = plan.phase.next();
    match plan.phase {
        PlannedPhase::Promoting => {
            // Writes stop here: the old primary is fenced before anything is promoted.
            ctx.act(Action::Fence {
                site: from.to_string(),
            });
            ctx.event(EventIntent::normal(
                EventReason::SiteFenced,
                format!("fenced {from} for the planned failover to {}", plan.target),
            ));
            ctx.keep_planned_fenced_at();
            plan.fenced_at = Some(ctx.now.wall);
            plan.message = format!("fencing {from}");
            set(ctx, plan);
        }
        PlannedPhase::Resuming => {
            plan.message = format!("{} is writable; repointing {from} and DNS", plan.target);
            set(ctx, plan);
        }
        PlannedPhase::Succeeded => succeed(ctx, plan, from),
        PlannedPhase::WaitingForLag | PlannedPhase::Failed | PlannedPhase::Rejected => {
            set(ctx, plan)
        }
    }
}

fn promoting(ctx: &mut Ctx<'_>, mut plan: PlannedFailover, from: &str) {
    let snap = ctx.snap;
    let target = plan.target.clone();
    ctx.keep_planned_fenced_at();
    if snap.holds_lease(&target) {
        // Past the point of no return: the target holds the lease and is the active
        // site; if it never becomes writable the emergency logic takes over.
        ctx.status.active_site = Some(target.clone());
        if snap.site(&target).is_some_and(|s| s.writable()) {
            plan.write_unavailable_ms = Some(elapsed_ms(
                ctx.planned_fenced_at(),
                ctx.now.mono,
                plan.fenced_at,
                ctx.now.wall,
            ));
            return advance(ctx, plan, from);
        }
        if snap
            .site(&target)
            .is_none_or(|s| s.unreachable_for(snap.knobs.detection_window, ctx.now.mono))
        {
            return fail(
                ctx,
                plan,
                from,
                format!("{target} became unreachable after taking the writer lease"),
            );
        }
        ctx.promote(&target);
        plan.message = format!("promoting {target}");
        return set(ctx, plan);
    }

    let Some(old) = snap.site(from).and_then(|s| s.mysql()) else {
        return fail(
            ctx,
            plan,
            from,
            format!("{from} became unreachable while fenced"),
        );
    };
    let Some(candidate) = snap.site(&target).and_then(|s| s.mysql()) else {
        return fail(ctx, plan, from, format!("{target} became unreachable"));
    };
    if ctx.phase_exceeded(&phase_key(&plan), snap.knobs.drain_timeout) {
        let missing = old.gtid_executed.subtract(&candidate.gtid_executed).count();
        return fail(
            ctx,
            plan,
            from,
            format!(
                "{target} did not reach {from}'s exact GTID set within {:?} ({missing} \
                 transaction(s) missing)",
                snap.knobs.drain_timeout
            ),
        );
    }
    if !old.super_read_only {
        ctx.act(Action::Fence {
            site: from.to_string(),
        });
        plan.message = format!("waiting for {from} to report super_read_only=ON");
        return set(ctx, plan);
    }
    // The old primary is fenced, so its set is final: promote only on exact catch-up.
    let missing = old.gtid_executed.subtract(&candidate.gtid_executed);
    if !missing.is_empty() {
        plan.message = format!(
            "waiting for {target} to apply {} transaction(s)",
            missing.count()
        );
        return set(ctx, plan);
    }
    if ctx.promote(&target) {
        plan.message = format!("moving the writer lease to {target} and promoting it");
    } else {
        plan.message = format!("waiting until {target} may take the writer lease");
    }
    set(ctx, plan);
}

fn resuming(ctx: &mut Ctx<'_>, mut plan: PlannedFailover, from: &str) {
    let snap = ctx.snap;
    let target = plan.target.clone();
    let old_replicates = snap
        .site(from)
        .and_then(|s| s.replication())
        .is_some_and(|r| r.replicates_from(&target));
    let dns_moved = snap.dns_target.as_deref() == Some(target.as_str());
    if old_replicates && dns_moved {
        plan.message = format!("{target} is the primary; {from} replicates from it");
        return advance(ctx, plan, from);
    }
    if ctx.phase_exceeded(&phase_key(&plan), snap.knobs.drain_timeout) {
        plan.message =
            format!("{target} is the primary; {from} is not replicating from it yet (see health)");
        return advance(ctx, plan, from);
    }
    plan.message = format!("repointing {from} to {target} and DNS");
    set(ctx, plan);
}

fn succeed(ctx: &mut Ctx<'_>, mut plan: PlannedFailover, from: &str) {
    plan.completed_at = Some(ctx.now.wall);
    record(ctx, &plan, from, FailoverResult::Succeeded);
    ctx.event(EventIntent::normal(
        EventReason::FailoverSucceeded,
        format!(
            "planned failover from {from} to {} succeeded; writes were unavailable for {}ms",
            plan.target,
            plan.write_unavailable_ms.unwrap_or(0)
        ),
    ));
    ctx.status.planned_failover = Some(plan);
}

/// Gives up. Before the lease moved, the fence is undone: the old primary still holds
/// the lease and is promoted again (through the same gate as every promotion).
fn fail(ctx: &mut Ctx<'_>, mut plan: PlannedFailover, from: &str, reason: String) {
    if plan.phase == PlannedPhase::Promoting && ctx.snap.holds_lease(from) {
        ctx.promote(from);
    }
    plan.phase = PlannedPhase::Failed;
    plan.message = reason.clone();
    plan.completed_at = Some(ctx.now.wall);
    record(ctx, &plan, from, FailoverResult::Failed);
    ctx.event(EventIntent::warning(
        EventReason::FailoverFailed,
        format!(
            "planned failover from {from} to {} failed: {reason}",
            plan.target
        ),
    ));
    ctx.status.planned_failover = Some(plan);
}

fn record(ctx: &mut Ctx<'_>, plan: &PlannedFailover, from: &str, result: FailoverResult) {
    let started = ctx.phase_started(&started_key(plan));
    let started_wall = plan.started_at.unwrap_or(ctx.now.wall);
    let duration_ms = elapsed_ms(
        Some(started),
        ctx.now.mono,
        Some(started_wall),
        ctx.now.wall,
    );
    ctx.metrics.push(MetricIntent::FailoverFinished {
        kind: FailoverKind::Planned,
        result,
        duration: std::time::Duration::from_millis(duration_ms),
    });
    ctx.status.last_failover = Some(LastFailover {
        kind: FailoverKind::Planned,
        from: from.to_string(),
        to: plan.target.clone(),
        reason: plan.message.clone(),
        result,
        started_at: started_wall,
        completed_at: ctx.now.wall,
        duration_ms,
    });
}

fn set(ctx: &mut Ctx<'_>, plan: PlannedFailover) {
    ctx.phase_started(&phase_key(&plan));
    ctx.status.planned_failover = Some(plan);
}

fn started_key(plan: &PlannedFailover) -> String {
    format!("planned/{}/started", plan.target)
}

fn phase_key(plan: &PlannedFailover) -> String {
    format!("planned/{}/{}", plan.target, plan.phase.as_str())
}
