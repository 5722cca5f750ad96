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
/// or once it answered a probe with `super_read_only=ON` (its sidecar lifts that only
/// on the operator's instruction to a lease holder).
pub fn may_take_lease(snap: &Snapshot, site: &str, now: Millis) -> bool {
    match snap.lease_holder() {
        Some(holder) if holder == site => true,
        Some(holder) => {
            snap.lease.expired(&snap.knobs.lease, now)
                || snap.site(holder).is_some_and(|h| h.observed_fenced())
        }
        // No holder named (never granted, emptied or deleted): whoever held it before
        // the operator saw the change gets the full wait.
        None => snap.lease.expired(&snap.knobs.lease, now),
    }
}

/// When `may_take_lease` would next change its answer by time alone.
pub fn lease_expiry(snap: &Snapshot) -> Millis {
    snap.lease.expires_at(&snap.knobs.lease)
}

/// Fences every writable site that does not hold the lease. Two writable sites are a
/// split brain: announced once (Event and metric) when the group enters it.
pub fn fence_unsafe_writers(ctx: &mut Ctx<'_>) {
    let snap = ctx.snap;
    let writable: Vec<&str> = snap
        .sites
        .iter()
        .filter(|s| s.writable())
        .map(|s| s.name.as_str())
        .collect();
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
