//! Leader election for the operator's own replicas, so that two never act at once.
//! It uses the same lease arithmetic as the writer lease (`engine::lease`): the leader
//! counts its term from the *start* of its last acknowledged renewal and stops acting
//! at `start + duration - margin`; a candidate takes over only after seeing the lease
//! unchanged for `duration + margin` on its own clock, or at once when the holder
//! released it (no holder: only a leader that stopped acting clears it, on shutdown).
//! Wall time (renewTime) comes from the injected `Clock`, so the simulation stays
//! deterministic.
//!
//! Not kube-lease-manager: it reads `SystemTime::now()` and compares the holder's
//! renewTime with its own clock, which docs/design.md "Safety assumptions" forbids (see docs/operator.md).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::engine::lease::{LeaseRecord, LeaseSighting, LeaseTiming, SidecarLease};
use crate::engine::time::Millis;
use crate::production::lease::{self as lease_object, LeaseWriteError};
use crate::seams::SharedClock;

/// Default name of the operator's leader Lease (in the operator's namespace).
pub const LEADER_LEASE: &str = "bloodraven-operator";

/// What the elector calls (see `crate::rbac`): read, create on first start, and renew
/// or take over through `replace_guarded` (update, get after a 409).
pub const API_ACCESS: &[crate::rbac::ApiAccess] = &[crate::rbac::ApiAccess {
    group: "coordination.k8s.io",
    resource: "leases",
    verbs: &["create", "get", "update"],
    scope: crate::rbac::Scope::OperatorNamespace,
    why: "leader election among the operator's replicas",
}];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSettings {
    /// This replica's identity (its pod name).
    pub identity: String,
    pub timing: LeaseTiming,
    pub renew_interval: Duration,
}

/// What a replica remembers between rounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderMemory {
    /// The lease as last seen, and when it last changed on our clock.
    pub sighting: Option<LeaseSighting>,
    /// Our own acknowledged renewals.
    pub own: SidecarLease,
    pub last_attempt: Option<Millis>,
    /// The last read found no lease object.
    pub lease_missing: bool,
    /// This replica is shutting down: it stopped acting and gave the lease up; it
    /// never takes it again.
    pub released: bool,
}

/// The next write, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderStep {
    /// Nothing to write: someone else holds an unexpired lease, or our renewal is not due.
    Wait,
    /// No lease exists: create it naming us.
    Create,
    /// The holder's lease expired (or it has none): take it over.
    Acquire,
    /// We hold it: renew.
    Renew,
}

/// What a round learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderEvent {
    Read(Option<LeaseRecord>),
    ReadFailed,
    /// Our write (create, acquire or renew) sent at `started` was acknowledged.
    Written {
        started: Millis,
        record: LeaseRecord,
    },
    /// 409: `latest` is the re-read lease.
    Conflict {
        latest: LeaseRecord,
    },
    WriteFailed,
}

impl LeaderMemory {
    pub fn record(&mut self, settings: &LeaderSettings, event: LeaderEvent, now: Millis) {
        let record = match event {
            LeaderEvent::Read(None) => {
                self.lease_missing = true;
                self.sighting = None;
                self.own.holdership_lost();
                return;
            }
            LeaderEvent::Read(Some(record)) | LeaderEvent::Conflict { latest: record } => record,
            LeaderEvent::Written { started, record } => {
                self.own.renewal_succeeded(started);
                record
            }
            LeaderEvent::ReadFailed | LeaderEvent::WriteFailed => return,
        };
        self.lease_missing = false;
        if record.holder.as_deref() != Some(settings.identity.as_str()) {
            self.own.holdership_lost();
        }
        self.sighting = Some(LeaseSighting::observe(self.sighting.as_ref(), record, now));
    }

    fn holds(&self, settings: &LeaderSettings) -> bool {
        self.sighting
            .as_ref()
            .is_some_and(|s| s.record.holder.as_deref() == Some(settings.identity.as_str()))
    }
}

/// Whether this replica may act now.
pub fn is_leader(settings: &LeaderSettings, memory: &LeaderMemory, now: Millis) -> bool {
    !memory.released && memory.holds(settings) && memory.own.may_write(&settings.timing, now)
}

/// The next write. A lease that names no holder was released by a leader that had
/// stopped acting (the only writer that clears it), so it is taken at once, like a
/// missing lease; a lease naming another holder is taken only after its full term.
pub fn next_step(settings: &LeaderSettings, memory: &LeaderMemory, now: Millis) -> LeaderStep {
    if memory.released {
        return LeaderStep::Wait;
    }
    if memory.lease_missing {
        return LeaderStep::Create;
    }
    let Some(sighting) = &memory.sighting else {
        return LeaderStep::Wait;
    };
    if memory.holds(settings) {
        let due = memory
            .last_attempt
            .is_none_or(|last| now >= last.plus(settings.renew_interval));
        return if due {
            LeaderStep::Renew
        } else {
            LeaderStep::Wait
        };
    }
    if sighting.record.holder.is_none() || sighting.expired(&settings.timing, now) {
        LeaderStep::Acquire
    } else {
        LeaderStep::Wait
    }
}

/// A replica's elector: the memory plus its clocks, shared with the controller, which
/// asks [`Elector::is_leader`] right before every write it makes.
#[derive(Clone)]
pub struct Elector {
    settings: LeaderSettings,
    memory: Arc<Mutex<LeaderMemory>>,
    origin: Instant,
    clock: SharedClock,
    api: Api<Lease>,
    name: String,
}

impl Elector {
    pub fn new(settings: LeaderSettings, api: Api<Lease>, name: &str, clock: SharedClock) -> Self {
        Self {
            settings,
            memory: Arc::default(),
            origin: Instant::now(),
            clock,
            api,
            name: name.to_string(),
        }
    }

    fn now(&self) -> Millis {
        Millis::from_instant(self.origin, Instant::now())
    }

    pub fn is_leader(&self) -> bool {
        let now = self.now();
        self.memory
            .lock()
            .map(|m| is_leader(&self.settings, &m, now))
            .unwrap_or(false)
    }

    fn memory(&self) -> LeaderMemory {
        self.memory.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn record(&self, event: LeaderEvent) {
        let now = self.now();
        if let Ok(mut memory) = self.memory.lock() {
            memory.record(&self.settings, event, now);
        }
    }

    fn duration_seconds(&self) -> i32 {
        let secs = self.settings.timing.duration().as_millis().div_ceil(1_000);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }

    /// One round: read (unless we are about to write), decide, write.
    pub async fn step(&self) {
        let now = self.now();
        let mut memory = self.memory();
        if !memory.holds(&self.settings) || memory.sighting.is_none() {
            self.record(match self.api.get_opt(&self.name).await {
                Ok(lease) => LeaderEvent::Read(lease.as_ref().map(lease_object::record)),
                Err(err) => {
                    tracing::warn!(%err, lease = %self.name, "reading the leader lease failed");
                    LeaderEvent::ReadFailed
                }
            });
            memory = self.memory();
        }
        let step = next_step(&self.settings, &memory, now);
        if step == LeaderStep::Wait {
            return;
        }
        if let Ok(mut m) = self.memory.lock() {
            m.last_attempt = Some(now);
        }
        let wall = self.clock.now();
        let result = match step {
            LeaderStep::Create => {
                let lease = lease_object::moved_to(
                    &Lease {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: None,
                    },
                    &self.settings.identity,
                    self.duration_seconds(),
                    wall,
                );
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(lease) => Ok(lease),
                    // Another replica created it first.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        match self.api.get(&self.name).await {
                            Ok(latest) => Err(LeaderEvent::Conflict {
                                latest: lease_object::record(&latest),
                            }),
                            Err(_) => Err(LeaderEvent::WriteFailed),
                        }
                    }
                    Err(_) => Err(LeaderEvent::WriteFailed),
                }
            }
            LeaderStep::Acquire | LeaderStep::Renew => match self.api.get(&self.name).await {
                Ok(current) => {
                    let fresh = lease_object::record(&current);
                    let unchanged = memory.sighting.as_ref().is_none_or(|s| s.record == fresh);
                    if unchanged {
                        let updated = if step == LeaderStep::Renew {
                            lease_object::renewed(&current, wall)
                        } else {
                            let seconds = self.duration_seconds();
                            lease_object::moved_to(&current, &self.settings.identity, seconds, wall)
                        };
                        match lease_object::replace_guarded(&self.api, &updated).await {
                            Ok(lease) => Ok(lease),
                            Err(LeaseWriteError::Conflict { latest, .. }) => {
                                Err(LeaderEvent::Conflict {
                                    latest: lease_object::record(&latest),
                                })
                            }
                            Err(_) => Err(LeaderEvent::WriteFailed),
                        }
                    } else {
                        // It changed since we judged it: judge again from what it is now.
                        Err(LeaderEvent::Conflict { latest: fresh })
                    }
                }
                Err(_) => Err(LeaderEvent::WriteFailed),
            },
            LeaderStep::Wait => return,
        };
        self.record(match result {
            Ok(lease) => LeaderEvent::Written {
                started: now,
                record: lease_object::record(&lease),
            },
            Err(event) => event,
        });
    }

    /// Gives the lease up on shutdown, once this replica stopped acting: from now on
    /// `is_leader` is false, and the lease is written without holder (guarded by
    /// resourceVersion, only if it still names us), so that a candidate takes over
    /// within its next round instead of waiting out the term. Returns whether the
    /// release was written; a failure only means the successor waits out the term.
    pub async fn release(&self) -> bool {
        let held = match self.memory.lock() {
            Ok(mut memory) => {
                let held = !memory.released && memory.holds(&self.settings);
                memory.released = true;
                memory.own.holdership_lost();
                held
            }
            Err(_) => false,
        };
        if !held {
            return false;
        }
        let current = match self.api.get(&self.name).await {
            Ok(current) => current,
            Err(err) => {
                tracing::warn!(%err, lease = %self.name, "reading the leader lease to release it failed");
                return false;
            }
        };
        if lease_object::holder(&current) != Some(self.settings.identity.as_str()) {
            return false;
        }
        let released = lease_object::released(&current, self.clock.now());
        match lease_object::replace_guarded(&self.api, &released).await {
            Ok(written) => {
                self.record(LeaderEvent::Read(Some(lease_object::record(&written))));
                tracing::info!(lease = %self.name, "leader lease released");
                true
            }
            Err(err) => {
                tracing::warn!(%err, lease = %self.name, "releasing the leader lease failed; the next leader waits out the term");
                false
            }
        }
    }

    /// Runs rounds every `renew_interval / 2` until `shutdown`; on shutdown the replica
    /// stops renewing (`release` then gives the lease up).
    pub async fn run(
        &self,
        metrics: crate::metrics::Metrics,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let tick = (self.settings.renew_interval / 2).max(Duration::from_millis(100));
        tokio::pin!(shutdown);
        loop {
            self.step().await;
            metrics.set_leader(self.is_leader());
            tokio::select! {
                () = &mut shutdown => {
                    metrics.set_leader(false);
                    return;
                }
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
