//! The writer-lease arithmetic (docs/design.md "Safety assumptions"; docs/operator.md "Fencing and the writer lease"), for both sides:
//! the sidecar that renews and fences its own mysqld, and the operator that decides
//! when a holder's lease has expired. Pure: every instant is passed in, and each side
//! only ever compares instants from its own monotonic clock.

use std::time::Duration;

use super::time::Millis;

/// The lease duration and the safety margin, shared by the sidecar and the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    duration: Duration,
    margin: Duration,
}

/// Lease settings that would let a sidecar be writable for no time at all, or that
/// would remove the safety margin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseTimingError {
    #[error("writer lease margin must be greater than zero")]
    ZeroMargin,
    #[error(
        "writer lease duration {duration:?} must be greater than the margin {margin:?}: \
         a sidecar fences at duration - margin after each renewal"
    )]
    DurationNotAboveMargin {
        duration: Duration,
        margin: Duration,
    },
}

impl LeaseTiming {
    pub fn new(duration: Duration, margin: Duration) -> Result<Self, LeaseTimingError> {
        if margin.is_zero() {
            return Err(LeaseTimingError::ZeroMargin);
        }
        if duration <= margin {
            return Err(LeaseTimingError::DurationNotAboveMargin { duration, margin });
        }
        Ok(Self { duration, margin })
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// Sidecar side: the instant (on the sidecar's clock) from which its mysqld must be
    /// fenced, given the *start* of its last successful renewal request. Counting from
    /// the start, not the response, is what makes a slow or lost response safe.
    pub fn sidecar_fence_at(&self, renewal_request_started: Millis) -> Millis {
        renewal_request_started
            .plus(self.duration)
            .minus(self.margin)
    }

    /// Operator side: the instant (on the operator's clock) at which a holder whose
    /// lease the operator last saw change at `seen_change_at` counts as expired.
    /// `declared` is the lease object's own `leaseDurationSeconds`; the longer of it and
    /// the configured duration wins, so a spec edit that shortens the lease never
    /// shortens the wait for a sidecar still running with the old setting.
    pub fn operator_expiry_at(&self, seen_change_at: Millis, declared: Option<Duration>) -> Millis {
        let duration = declared.map_or(self.duration, |d| d.max(self.duration));
        seen_change_at.plus(duration).plus(self.margin)
    }
}

/// The sidecar's memory of its own renewals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SidecarLease {
    /// Start of the most recent renewal request whose success the sidecar received.
    last_successful_renewal_start: Option<Millis>,
}

impl SidecarLease {
    /// Records a renewal whose success response arrived. `request_started` is when the
    /// request was sent, on the sidecar's clock. Responses may arrive out of order: a
    /// late response to an older request never moves the deadline back.
    pub fn renewal_succeeded(&mut self, request_started: Millis) {
        self.last_successful_renewal_start = Some(
            self.last_successful_renewal_start
                .map_or(request_started, |prev| prev.max(request_started)),
        );
    }

    /// The sidecar learned that its site no longer holds the lease (the update was
    /// refused, or the lease names another holder): it must fence at once.
    pub fn holdership_lost(&mut self) {
        self.last_successful_renewal_start = None;
    }

    /// The instant from which mysqld must be fenced; `None` when it never renewed.
    pub fn fence_at(&self, timing: &LeaseTiming) -> Option<Millis> {
        self.last_successful_renewal_start
            .map(|start| timing.sidecar_fence_at(start))
    }

    /// Writable only while `now < last_successful_renewal_start + duration - margin`.
    pub fn may_write(&self, timing: &LeaseTiming, now: Millis) -> bool {
        self.fence_at(timing).is_some_and(|fence| now < fence)
    }
}

/// What the operator read from the `<group>-writer` Lease object. `renew_time` is
/// kept as the opaque text the API returned: it is written by the holder's clock and
/// is only ever compared for equality, never as a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    pub renew_time: Option<String>,
    /// `None` when the Lease object does not exist.
    pub resource_version: Option<String>,
    pub declared_duration: Option<Duration>,
    /// Whether the holder has the operator's writable grant in the current term. While
    /// it does, its sidecar may lift a fence at any moment (after a fresh renewal), so
    /// an observed `super_read_only=ON` proves nothing about the next second.
    pub holder_granted: bool,
}

impl LeaseRecord {
    /// The record of a Lease object that does not exist.
    pub fn absent() -> Self {
        Self {
            holder: None,
            renew_time: None,
            resource_version: None,
            declared_duration: None,
            holder_granted: false,
        }
    }
}

/// The operator's view of the lease: the record plus when, on the operator's own
/// clock, it last saw the lease change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSighting {
    pub record: LeaseRecord,
    pub seen_change_at: Millis,
}

impl LeaseSighting {
    /// Folds a fresh read of the lease into the previous sighting. Any change of
    /// holder, renewTime or resourceVersion counts as a renewal seen now: every renewal
    /// is a write and changes the resourceVersion, so this can only make the operator
    /// wait longer, never shorter (two renewals within one timestamp tick stay visible).
    /// With no previous sighting (the operator just started) the lease counts as
    /// renewed at the moment it was first seen.
    pub fn observe(previous: Option<&LeaseSighting>, record: LeaseRecord, now: Millis) -> Self {
        match previous {
            Some(prev) if prev.record == record => Self {
                record,
                seen_change_at: prev.seen_change_at,
            },
            _ => Self {
                record,
                seen_change_at: now,
            },
        }
    }

    /// When the current holder's lease expires on the operator's clock.
    pub fn expires_at(&self, timing: &LeaseTiming) -> Millis {
        timing.operator_expiry_at(self.seen_change_at, self.record.declared_duration)
    }

    /// Expired after `seen + duration + margin`. This holds for a lease without holder
    /// (or a deleted Lease) too: whoever held it before the change the operator saw
    /// may have renewed just before it, so it gets the same full wait.
    pub fn expired(&self, timing: &LeaseTiming, now: Millis) -> bool {
        now >= self.expires_at(timing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn timing() -> LeaseTiming {
        LeaseTiming::new(Duration::from_secs(10), Duration::from_secs(2)).unwrap()
    }

    fn record(holder: &str, renew: &str, rv: &str) -> LeaseRecord {
        LeaseRecord {
            holder: Some(holder.into()),
            renew_time: Some(renew.into()),
            resource_version: Some(rv.into()),
            declared_duration: Some(Duration::from_secs(10)),
            holder_granted: false,
        }
    }

    #[test]
    fn timing_rejects_settings_without_a_safety_margin() {
        assert_eq!(
            LeaseTiming::new(Duration::from_secs(10), Duration::ZERO),
            Err(LeaseTimingError::ZeroMargin)
        );
        assert_eq!(
            LeaseTiming::new(Duration::from_secs(2), Duration::from_secs(2)),
            Err(LeaseTimingError::DurationNotAboveMargin {
                duration: Duration::from_secs(2),
                margin: Duration::from_secs(2)
            })
        );
    }

    #[test]
    fn sidecar_is_writable_strictly_before_start_plus_duration_minus_margin() {
        let mut lease = SidecarLease::default();
        assert!(
            !lease.may_write(&timing(), Millis(0)),
            "never renewed: fenced"
        );
        lease.renewal_succeeded(Millis(1_000));
        assert!(lease.may_write(&timing(), Millis(1_000)));
        assert!(lease.may_write(&timing(), Millis(8_999)));
        assert!(!lease.may_write(&timing(), Millis(9_000)), "1s + 10s - 2s");
    }

    #[test]
    fn sidecar_counts_from_the_request_start_not_the_response() {
        // The request left at 1s and its response took 5s to arrive: the deadline is
        // still 1s + 8s, not 6s + 8s.
        let mut lease = SidecarLease::default();
        lease.renewal_succeeded(Millis(1_000));
        assert_eq!(lease.fence_at(&timing()), Some(Millis(9_000)));
    }

    #[test]
    fn a_late_response_to_an_older_request_never_moves_the_deadline() {
        let mut lease = SidecarLease::default();
        lease.renewal_succeeded(Millis(5_000));
        lease.renewal_succeeded(Millis(3_000));
        assert_eq!(lease.fence_at(&timing()), Some(Millis(13_000)));
    }

    #[test]
    fn losing_holdership_fences_at_once() {
        let mut lease = SidecarLease::default();
        lease.renewal_succeeded(Millis(5_000));
        lease.holdership_lost();
        assert!(!lease.may_write(&timing(), Millis(5_001)));
    }

    #[test]
    fn lost_renewal_response_keeps_the_sidecar_early_and_the_operator_late() {
        let t = timing();
        let mut sidecar = SidecarLease::default();
        // Renewal A: started 0, applied 100, response arrived.
        sidecar.renewal_succeeded(Millis(0));
        let seen = LeaseSighting::observe(None, record("iad", "t0", "1"), Millis(100));
        // Renewal B: started 2_000, applied 2_100 (the operator sees it at 2_500), but
        // the response is lost: the sidecar still counts from 0.
        let seen = LeaseSighting::observe(Some(&seen), record("iad", "t2", "2"), Millis(2_500));
        assert_eq!(sidecar.fence_at(&t), Some(Millis(8_000)));
        assert_eq!(seen.expires_at(&t), Millis(14_500));
        assert!(!seen.expired(&t, Millis(14_499)));
        assert!(seen.expired(&t, Millis(14_500)));
        // The fence comes 6.5s (> two margins) before the operator may promote.
        assert!(Millis(8_000).plus(t.margin() * 2) <= seen.expires_at(&t));
    }

    #[test]
    fn an_unchanged_lease_keeps_its_first_sighting() {
        let first = LeaseSighting::observe(None, record("iad", "t0", "7"), Millis(1_000));
        let again = LeaseSighting::observe(Some(&first), record("iad", "t0", "7"), Millis(9_000));
        assert_eq!(again.seen_change_at, Millis(1_000));
        assert!(again.expired(&timing(), Millis(13_000)));
    }

    #[test]
    fn any_write_to_the_lease_counts_as_a_renewal() {
        // Same renewTime text (two renewals within one timestamp tick), new
        // resourceVersion: the operator must restart its wait.
        let first = LeaseSighting::observe(None, record("iad", "t0", "7"), Millis(1_000));
        let again = LeaseSighting::observe(Some(&first), record("iad", "t0", "8"), Millis(9_000));
        assert_eq!(again.seen_change_at, Millis(9_000));
        assert!(!again.expired(&timing(), Millis(13_000)));
    }

    #[test]
    fn a_restarted_operator_treats_the_lease_as_renewed_when_first_seen() {
        // The holder last renewed long ago (renewTime says so), but a new operator
        // process cannot compare that wall time with its own clock: it waits a full
        // duration + margin from its first sighting.
        let after_restart = LeaseSighting::observe(None, record("iad", "ancient", "3"), Millis(50));
        assert!(!after_restart.expired(&timing(), Millis(12_049)));
        assert!(after_restart.expired(&timing(), Millis(12_050)));
    }

    #[test]
    fn the_longer_of_declared_and_configured_duration_wins() {
        let mut rec = record("iad", "t0", "1");
        rec.declared_duration = Some(Duration::from_secs(30));
        let seen = LeaseSighting::observe(None, rec.clone(), Millis(0));
        assert_eq!(seen.expires_at(&timing()), Millis(32_000));
        rec.declared_duration = Some(Duration::from_secs(1));
        let seen = LeaseSighting::observe(None, rec, Millis(0));
        assert_eq!(seen.expires_at(&timing()), Millis(12_000));
    }

    #[test]
    fn a_lease_that_lost_its_holder_still_gets_the_full_wait() {
        // Deleted (or emptied) while iad held it: iad may have renewed just before, so
        // the absence counts from when the operator first saw it.
        let held = LeaseSighting::observe(None, record("iad", "t0", "1"), Millis(0));
        let gone = LeaseSighting::observe(Some(&held), LeaseRecord::absent(), Millis(5_000));
        assert!(!gone.expired(&timing(), Millis(16_999)));
        assert!(gone.expired(&timing(), Millis(17_000)));
    }

    /// One renewal attempt by the sidecar, in real time (the model assumes the two
    /// monotonic clocks tick at the same rate; the margins absorb drift in reality).
    #[derive(Debug, Clone)]
    struct Renewal {
        start: u64,
        apply_delay: u64,
        /// `None`: the request never reached the API server. `Some(false)`: applied but
        /// the response was lost. `Some(true)`: applied and acknowledged.
        outcome: Option<bool>,
    }

    fn renewals() -> impl Strategy<Value = Vec<Renewal>> {
        prop::collection::vec(
            (0u64..3_000, 0u64..4_000, prop::option::of(any::<bool>())),
            1..12,
        )
        .prop_map(|steps| {
            let mut at = 0;
            steps
                .into_iter()
                .map(|(gap, apply_delay, outcome)| {
                    at += gap;
                    Renewal {
                        start: at,
                        apply_delay,
                        outcome,
                    }
                })
                .collect()
        })
    }

    proptest! {
        /// For any schedule of renewals (lost, unacknowledged or acknowledged, slow or
        /// fast) and any schedule of operator polls and restarts: whenever the operator
        /// judges the holder's lease expired, every deadline the sidecar could be
        /// honouring lies at least two margins in the past.
        #[test]
        fn the_fence_always_precedes_the_promotion_by_two_margins(
            renewals in renewals(),
            polls in prop::collection::vec((0u64..400, any::<bool>()), 1..200),
            duration_ms in 2_001u64..20_000,
            margin_ms in 1u64..2_000,
        ) {
            let t = LeaseTiming::new(
                Duration::from_millis(duration_ms),
                Duration::from_millis(margin_ms),
            ).unwrap();
            let mut sighting: Option<LeaseSighting> = None;
            let mut poll_at = 0u64;
            for (gap, restart) in polls {
                poll_at += gap;
                if restart {
                    sighting = None;
                }
                // What the API server holds at poll time: the latest applied renewal.
                let applied: Vec<(usize, &Renewal)> = renewals
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.outcome.is_some() && r.start + r.apply_delay <= poll_at)
                    .collect();
                let Some((latest, _)) =
                    applied.iter().max_by_key(|(i, r)| (r.start + r.apply_delay, *i))
                else {
                    continue;
                };
                let rec = LeaseRecord {
                    holder: Some("iad".into()),
                    renew_time: Some(format!("renewal-{latest}")),
                    resource_version: Some(format!("{latest}")),
                    declared_duration: None,
                    holder_granted: false,
                };
                let seen = LeaseSighting::observe(sighting.as_ref(), rec, Millis(poll_at));
                if seen.expired(&t, Millis(poll_at)) {
                    // The sidecar's deadline if it received every acknowledged response
                    // for renewals applied so far (the latest it could hold).
                    let mut sidecar = SidecarLease::default();
                    for (_, r) in applied.iter().filter(|(_, r)| r.outcome == Some(true)) {
                        sidecar.renewal_succeeded(Millis(r.start));
                    }
                    if let Some(fence) = sidecar.fence_at(&t) {
                        prop_assert!(
                            fence.plus(t.margin() * 2) <= Millis(poll_at),
                            "sidecar fences at {fence}, operator promotes at {poll_at}ms"
                        );
                    }
                }
                sighting = Some(seen);
            }
        }
    }
}
