//! Fencing: who may hold the writer lease, and fencing the sites that must not write.
//! `may_take_lease` is the single gate every promotion passes through (see
//! `Ctx::promote`); `fence_unsafe_writers` runs first in every decision.

use super::Ctx;
use super::decision::{Action, EventIntent, EventReason, MetricIntent};
use super::snapshot::Snapshot;
use super::time::Millis;
use crate::api::Health;

/// Whether `site` may be named lease holder (and so become writable) at `now`: it
/// already holds the lease, or whoever held it can no longer write. The previous
/// holder can no longer write once its lease expired on the operator's clock
/// (`seen + duration + margin`, which the sidecar's own fence precedes by two margins)
/// or once it is [`fenced_for_good`].
pub(super) fn may_take_lease(snap: &Snapshot, site: &str, now: Millis) -> bool {
    match snap.lease_holder() {
        Some(holder) if holder == site => true,
        Some(holder) => snap.lease.expired(&snap.knobs.lease, now) || fenced_for_good(snap, holder),
        // No holder named (never granted, emptied or deleted): whoever held it before
        // the operator saw the change gets the full wait.
        None => snap.lease.expired(&snap.knobs.lease, now),
    }
}

/// The lease holder answered `super_read_only=ON` AND cannot lift that fence before
/// the lease moves: the Lease the operator last saw carries no writable grant for it
/// (its sidecar lifts a fence only with a grant, and granting changes the
/// resourceVersion the lease move is guarded by), and the probe started after the
/// operator saw that Lease version. A fence seen while a grant stands — a sidecar that
/// fenced itself on a stale renewal, say — may be lifted the next moment, and moving
/// the lease on it could leave two writable sites.
pub(super) fn fenced_for_good(snap: &Snapshot, holder: &str) -> bool {
    !snap.lease.record.holder_granted
        && snap.site(holder).is_some_and(|h| {
            h.observed_fenced()
                && h.mysql()
                    .is_some_and(|m| m.probed_at >= snap.lease.seen_change_at)
        })
}

/// When `may_take_lease` would next change its answer by time alone.
pub(super) fn lease_expiry(snap: &Snapshot) -> Millis {
    snap.lease.expires_at(&snap.knobs.lease)
}

/// Fences every writable site that does not hold the lease. Two writable sites are a
/// split brain: announced once (Event and metric) when the group enters it.
pub(super) fn fence_unsafe_writers(ctx: &mut Ctx<'_>) {
    let snap = ctx.snap;
    let writable = snap.writable_sites();
    let split_brain = writable.len() > 1;
    if split_brain && ctx.snap.status.health != Some(Health::SplitBrain) {
        ctx.event(EventIntent::warning(
            EventReason::SplitBrainDetected,
            format!(
                "sites {} are all writable; the lease holder is {}",
                writable.join(", "),
                snap.lease_holder().unwrap_or("nobody")
            ),
        ));
        ctx.metrics.push(MetricIntent::SplitBrainDetected);
    }
    for site in writable {
        if snap.holds_lease(site) {
            continue;
        }
        ctx.act(Action::Fence {
            site: site.to_string(),
        });
        ctx.event(EventIntent::warning(
            EventReason::SiteFenced,
            format!(
                "fenced {site}: writable without holding the writer lease (holder: {})",
                snap.lease_holder().unwrap_or("nobody")
            ),
        ));
    }
}
