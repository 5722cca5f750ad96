//! The group status as the engine reads and writes it: the persisted half of every
//! decision (active site, failover phases, recovery states). The controller maps it
//! onto `MysqlFailoverGroupStatus`; a restarted operator resumes from it.

use jiff::Timestamp;

use super::time::Millis;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupStatus {
    /// The site that holds (or is being given) the writer lease.
    pub active_site: Option<String>,
    pub health: Option<Health>,
    /// Why the group has the health it has, in a sentence.
    pub health_message: String,
    /// One entry per spec site, in spec order.
    pub sites: Vec<SiteStatus>,
    /// The emergency failover in progress, if any.
    pub failover: Option<EmergencyFailover>,
    /// The latest planned failover (in progress or finished).
    pub planned_failover: Option<PlannedFailover>,
    pub last_failover: Option<LastFailover>,
}

impl GroupStatus {
    pub fn site(&self, name: &str) -> Option<&SiteStatus> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// The recovery record of a site (diverged or being recloned), if any.
    pub fn recovery(&self, site: &str) -> Option<&Recovery> {
        self.site(site).and_then(|s| s.recovery.as_ref())
    }

    /// A planned failover that has started and not finished.
    pub fn planned_in_progress(&self) -> Option<&PlannedFailover> {
        self.planned_failover
            .as_ref()
            .filter(|p| !p.phase.is_terminal())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded,
    SplitBrain,
    NoPrimary,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Degraded => "Degraded",
            Health::SplitBrain => "SplitBrain",
            Health::NoPrimary => "NoPrimary",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SiteStatus {
    pub name: String,
    pub state: SiteState,
    pub gtid_executed: Option<String>,
    pub server_uuid: Option<String>,
    pub replicating: bool,
    pub lag_seconds: Option<u64>,
    pub recovery: Option<Recovery>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SiteState {
    Writable,
    ReadOnly,
    #[default]
    Unreachable,
}

impl SiteState {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Writable => "writable",
            SiteState::ReadOnly => "read-only",
            SiteState::Unreachable => "unreachable",
        }
    }
}

/// A site that holds transactions the primary does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub state: RecoveryState,
    /// The extra transactions, in MySQL's GTID text form.
    pub divergent_gtid: String,
    pub divergent_transaction_count: u64,
    /// The token a reclone confirmation must carry (first segment of the divergent
    /// GTID's UUID).
    pub reclone_token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryState {
    /// Diverged; waits for a person to confirm a reclone. Never rejoined automatically.
    RecoveryPending,
    /// A confirmed reclone is running: CLONE from the primary, then replicate.
    Recloning,
}

impl RecoveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryState::RecoveryPending => "RecoveryPending",
            RecoveryState::Recloning => "Recloning",
        }
    }
}

/// An emergency failover in progress. Every phase is resumable: a restarted operator
/// reads the phase and continues without repeating what the phase already achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct EmergencyFailover {
    pub from: String,
    pub to: String,
    pub phase: EmergencyPhase,
    pub reason: String,
    pub started_at: Timestamp,
    /// What the current phase is waiting for.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmergencyPhase {
    /// Waiting until the old primary cannot write: its lease expired on the operator's
    /// clock, or it answered with `super_read_only=ON` after a direct fence.
    Fencing,
    /// Letting the candidate apply the transactions already in its relay log, bounded
    /// by the drain timeout.
    DrainingRelayLog,
    /// Moving the lease (resourceVersion-guarded) to the candidate and promoting it.
    Promoting,
}

impl EmergencyPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            EmergencyPhase::Fencing => "Fencing",
            EmergencyPhase::DrainingRelayLog => "DrainingRelayLog",
            EmergencyPhase::Promoting => "Promoting",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFailover {
    pub target: String,
    /// The active site when the request was accepted; `None` for a rejected request.
    pub from: Option<String>,
    pub phase: PlannedPhase,
    pub message: String,
    pub started_at: Option<Timestamp>,
    /// When the old primary was fenced (writes stopped).
    pub fenced_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    /// From the fence of the old primary to the target accepting writes.
    pub write_unavailable_ms: Option<u64>,
}

/// The phases of a planned failover, in order. The Dragonfly issue inserts
/// `WaitingForDragonflySync` and `PromotingDragonfly` between `WaitingForLag` and
/// `Promoting`: add the variants, list them in `PlannedPhase::next`, and give them an
/// arm in `planned::step`; nothing else changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannedPhase {
    WaitingForLag,
    Promoting,
    Resuming,
    Succeeded,
    /// Gave up after accepting the request; the fence was undone.
    Failed,
    /// Refused at validation; nothing was touched.
    Rejected,
}

impl PlannedPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PlannedPhase::WaitingForLag => "WaitingForLag",
            PlannedPhase::Promoting => "Promoting",
            PlannedPhase::Resuming => "Resuming",
            PlannedPhase::Succeeded => "Succeeded",
            PlannedPhase::Failed => "Failed",
            PlannedPhase::Rejected => "Rejected",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PlannedPhase::Succeeded | PlannedPhase::Failed | PlannedPhase::Rejected
        )
    }

    /// The phase that follows this one on the success path.
    pub fn next(self) -> PlannedPhase {
        match self {
            PlannedPhase::WaitingForLag => PlannedPhase::Promoting,
            PlannedPhase::Promoting => PlannedPhase::Resuming,
            PlannedPhase::Resuming => PlannedPhase::Succeeded,
            terminal
            @ (PlannedPhase::Succeeded | PlannedPhase::Failed | PlannedPhase::Rejected) => terminal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverKind {
    Emergency,
    Planned,
}

impl FailoverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverKind::Emergency => "emergency",
            FailoverKind::Planned => "planned",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverResult {
    Succeeded,
    Failed,
}

impl FailoverResult {
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverResult::Succeeded => "succeeded",
            FailoverResult::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LastFailover {
    pub kind: FailoverKind,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub result: FailoverResult,
    pub started_at: Timestamp,
    pub completed_at: Timestamp,
    pub duration_ms: u64,
}

/// Milliseconds from a phase start to now: from the monotonic mark when this process
/// saw the start, else (after a restart) from the persisted wall timestamps. Only ever
/// reported, never used to decide anything.
pub fn elapsed_ms(
    mono_start: Option<Millis>,
    mono_now: Millis,
    wall_start: Option<Timestamp>,
    wall_now: Timestamp,
) -> u64 {
    match (mono_start, wall_start) {
        (Some(start), _) => super::time::duration_ms(mono_now.since(start)),
        (None, Some(start)) => u64::try_from(
            wall_now
                .as_millisecond()
                .saturating_sub(start.as_millisecond()),
        )
        .unwrap_or(0),
        (None, None) => 0,
    }
}
