//! The decision engine: the pure heart of the operator. An observed snapshot and the
//! time go in; actions, a status and Event intents come out. No I/O and no clock reads
//! happen here, so every decision is a table test.
//!
//! Reading order: `snapshot` (what is observed), `decide` below (which situation we
//! are in), then one module per situation: `bootstrap`, `steady`, `emergency`,
//! `planned`, `recovery`; `fencing` guards every promotion, `health` summarises;
//! `dragonfly` makes the cache follow MySQL.

pub mod backup;
pub mod backup_freshness;
mod bootstrap;
pub mod decision;
pub mod dragonfly;
pub mod dragonfly_rollout;
mod election;
mod emergency;
mod fencing;
mod health;
pub mod lease;
pub mod memory;
mod planned;
mod recovery;
pub mod restore;
pub mod snapshot;
pub mod status;
mod steady;
pub mod time;
pub mod verification;

#[cfg(test)]
mod safety_tests;
#[cfg(test)]
pub(crate) mod testkit;

use jiff::Timestamp;

use memory::Recall;

pub use decision::{Action, Decision, EventIntent, EventKind, EventReason, MetricIntent, Role};
pub use lease::{LeaseRecord, LeaseSighting, LeaseTiming, LeaseTimingError, SidecarLease};
pub use memory::{EngineMemory, Mark};
pub use snapshot::{
    Annotations, FORCE_FAILOVER_ANNOTATION, Knobs, LastSeenGtids, Leadership, MysqlObservation,
    MysqlProbe, PLANNED_FAILOVER_ANNOTATION, PodObservation, RECLONE_SITE_ANNOTATION,
    ReplicationObservation, SiteObservation, Snapshot,
};
// The status the engine reads and writes is the API's own (one concept, one place).
pub use crate::api::{
    EmergencyFailoverPhase, EmergencyFailoverStatus, FailoverKind, FailoverRecord, FailoverResult,
    Health, MysqlFailoverGroupStatus, PlannedFailoverPhase, PlannedFailoverStatus, RecoveryState,
    SiteState, SiteStatus,
};
pub use time::Millis;

/// The time a decision is made at: the operator's monotonic clock for every decision,
/// and the wall clock (from the transport `Clock`) only to stamp status timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Millis,
    pub wall: Timestamp,
}

/// Decides what to do about one failover group. Without leadership nothing is
/// decided and nothing is written.
pub fn decide(snapshot: &Snapshot, now: Now) -> Decision {
    if snapshot.leadership != Leadership::Leader {
        return Decision::default();
    }
    let mut ctx = Ctx::new(snapshot, now);

    // Safety before anything else: a writable site that does not hold the lease is
    // fenced whatever else is going on.
    fencing::fence_unsafe_writers(&mut ctx);

    if ctx.status.emergency_failover.is_some() {
        emergency::step(&mut ctx);
    } else if ctx.status.active_site.is_none() {
        bootstrap::step(&mut ctx);
    }
    if ctx.status.emergency_failover.is_none() && ctx.status.active_site.is_some() {
        if ctx.status.planned_in_progress().is_some() {
            planned::step(&mut ctx);
        }
        steady::step(&mut ctx);
    }
    planned::handle_annotation(&mut ctx);
    recovery::handle_reclone_annotation(&mut ctx);
    emergency::handle_force_annotation(&mut ctx);
    steady::converge_labels_and_dns(&mut ctx);
    // After MySQL's decisions (it may have moved the active site) and never before:
    // Dragonfly follows MySQL and its actions run apart from MySQL's.
    dragonfly::step(&mut ctx);
    health::summarise(&mut ctx);
    ctx.finish()
}

/// The decision being built: the snapshot, the status as it will be persisted, and
/// everything emitted so far.
pub(crate) struct Ctx<'a> {
    pub snap: &'a Snapshot,
    pub now: Now,
    pub status: MysqlFailoverGroupStatus,
    /// Why the group has the health it has, in a sentence (see `Decision`).
    pub health_reason: String,
    pub actions: Vec<Action>,
    pub events: Vec<EventIntent>,
    pub metrics: Vec<MetricIntent>,
    /// The previous decision's marks and those this one keeps.
    memory: Recall<'a>,
    next_deadline: Option<Millis>,
    requeue_soon: bool,
    /// Sentences explaining what the decision is waiting for; they end up in the
    /// health message.
    pub notes: Vec<String>,
    /// What this decision's emergency failover is blocked on, if it is: the stale
    /// candidate and the `force-failover` value that would promote it anyway.
    pub blocked_failover: Option<BlockedFailover>,
    /// This decision started a failover on a `force-failover` confirmation.
    pub force_failover_used: bool,
    /// Dragonfly commands and label writes (see `Decision::cache_actions`).
    pub cache_actions: Vec<dragonfly::CacheAction>,
}

/// An emergency failover held back because its best candidate lacks transactions
/// last seen on the lost primary.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockedFailover {
    pub candidate: String,
    pub missing: crate::gtid::GtidSet,
}

impl BlockedFailover {
    /// The confirmation a person types to promote the candidate anyway.
    pub(crate) fn confirmation(&self) -> String {
        format!("{}:{}", self.candidate, self.missing.count())
    }
}

impl<'a> Ctx<'a> {
    fn new(snap: &'a Snapshot, now: Now) -> Self {
        Self {
            snap,
            now,
            status: snap.status.clone(),
            health_reason: String::new(),
            actions: Vec::new(),
            events: Vec::new(),
            metrics: Vec::new(),
            memory: Recall::new(&snap.memory),
            next_deadline: None,
            requeue_soon: false,
            notes: Vec::new(),
            blocked_failover: None,
            force_failover_used: false,
            cache_actions: Vec::new(),
        }
    }

    /// When this process first saw `mark`; now if this is the first time (including
    /// after a restart, which only makes bounds later).
    pub(crate) fn phase_started(&mut self, mark: Mark) -> Millis {
        self.memory.entered(mark, self.now.mono)
    }

    /// Whether `bound` has passed since `mark` was first seen; if not, the bound's end
    /// becomes a deadline.
    pub(crate) fn phase_exceeded(&mut self, mark: Mark, bound: std::time::Duration) -> bool {
        let end = self.phase_started(mark).plus(bound);
        if self.now.mono >= end {
            true
        } else {
            self.deadline(end);
            false
        }
    }

    /// True the first time this process sees `mark` (it is kept while touched in every
    /// decision): for things said once per occurrence, not once per cycle.
    pub(crate) fn first_time(&mut self, mark: Mark) -> bool {
        self.memory.first_time(mark, self.now.mono)
    }

    pub(crate) fn planned_fenced_at(&self) -> Option<Millis> {
        self.memory.planned_fenced_at()
    }

    pub(crate) fn keep_planned_fenced_at(&mut self) {
        self.memory.keep_planned_fenced_at(self.now.mono);
    }

    /// Whether this process already asked `site` to clone (and keeps the mark).
    pub(crate) fn clone_requested(&mut self, site: &str) -> bool {
        self.memory.clone_requested(site)
    }

    pub(crate) fn mark_clone_requested(&mut self, site: &str) {
        self.memory.mark_clone_requested(site, self.now.mono);
    }

    /// When this process asked `site` to clone (the mark is dropped unless kept with
    /// [`Ctx::keep_clone_request`]).
    pub(crate) fn clone_requested_at(&self, site: &str) -> Option<Millis> {
        self.memory.clone_requested_at(site)
    }

    pub(crate) fn keep_clone_request(&mut self, site: &str, at: Millis) {
        self.memory.mark_clone_requested(site, at);
    }

    /// Records a finished failover the same way for both kinds: the `lastFailover`
    /// status entry and the `FailoverFinished` metric, with one duration.
    pub(crate) fn record_failover(
        &mut self,
        kind: FailoverKind,
        result: FailoverResult,
        (from, to): (&str, &str),
        reason: Option<String>,
        started_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
        duration_ms: u64,
    ) {
        self.metrics.push(MetricIntent::FailoverFinished {
            kind,
            result,
            duration: std::time::Duration::from_millis(duration_ms),
        });
        self.status.last_failover = Some(FailoverRecord {
            kind,
            result: Some(result),
            from: Some(from.to_string()),
            to: to.to_string(),
            reason,
            started_at,
            completed_at: Some(self.now.wall.into()),
            duration_ms: Some(status::as_i64(duration_ms)),
        });
    }

    pub(crate) fn act(&mut self, action: Action) {
        if !self.actions.contains(&action) {
            self.actions.push(action);
        }
        self.requeue_soon = true;
    }

    pub(crate) fn event(&mut self, event: EventIntent) {
        self.events.push(event);
    }

    pub(crate) fn note(&mut self, sentence: impl Into<String>) {
        self.notes.push(sentence.into());
    }

    pub(crate) fn deadline(&mut self, at: Millis) {
        self.next_deadline = Some(self.next_deadline.map_or(at, |d| d.min(at)));
    }

    pub(crate) fn requeue_soon(&mut self) {
        self.requeue_soon = true;
    }

    /// The only way any decision promotes a site. Refuses (returns false, emits
    /// nothing) unless `fencing::may_take_lease` allows `site` to hold the lease now
    /// and no other site is observed writable. Otherwise the lease is first (re)written
    /// to name `site`, guarded by the resourceVersion this decision was based on, so
    /// the promotion only happens if the lease is still exactly as observed.
    pub(crate) fn promote(&mut self, site: &str) -> bool {
        if !fencing::may_take_lease(self.snap, site, self.now.mono) {
            return false;
        }
        let other_writer = self
            .snap
            .sites
            .iter()
            .any(|s| s.name != site && s.writable());
        if other_writer {
            return false;
        }
        self.act(Action::MoveLease {
            to: site.to_string(),
            expected_resource_version: self.snap.lease.record.resource_version.clone(),
        });
        self.act(Action::Promote {
            site: site.to_string(),
        });
        true
    }

    fn finish(self) -> Decision {
        Decision {
            actions: self.actions,
            status: Some(self.status),
            health_reason: self.health_reason,
            events: self.events,
            metrics: self.metrics,
            memory: self.memory.into_memory(),
            next_deadline: self.next_deadline,
            requeue_soon: self.requeue_soon,
            cache_actions: self.cache_actions,
        }
    }
}
