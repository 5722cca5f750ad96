//! What a decision hands to the controller: actions to carry out, the status to
//! persist, Events and metric increments to emit, the monotonic marks to keep, and
//! when the next time-based decision falls due.

use super::memory::EngineMemory;
use super::time::Millis;
use crate::api::{FailoverKind, FailoverResult, MysqlFailoverGroupStatus};
use std::time::Duration;

/// The result of `decide`. The controller persists `status` first, then carries out
/// `actions` in order and stops at the first that fails (a later action may only be
/// safe because an earlier one succeeded: `Promote` after `MoveLease`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// `None`: write nothing (this replica is not the leader).
    pub status: Option<MysqlFailoverGroupStatus>,
    /// Why the group has the health it has, in a sentence: what is wrong, and what the
    /// decision waits for. The controller puts it in the `Ready` condition's message.
    pub health_reason: String,
    pub events: Vec<EventIntent>,
    pub metrics: Vec<MetricIntent>,
    pub memory: EngineMemory,
    /// The earliest instant at which the passage of time alone changes the decision
    /// (a detection window fills, a lease expires, a bound runs out). The controller
    /// reconciles again no later than this, or sooner on any change.
    pub next_deadline: Option<Millis>,
    /// A phase is advancing step by step: reconcile again as soon as the actions are
    /// done rather than waiting for the probe interval.
    pub requeue_soon: bool,
    /// Dragonfly commands and label writes, in order. Carried out apart from
    /// `actions` (by the group's cache worker) so that Dragonfly never holds MySQL up;
    /// the controller stops this list, not the MySQL one, at its first failure.
    pub cache_actions: Vec<super::dragonfly::CacheAction>,
}

/// One small named operation on the cluster. Each is idempotent: repeating it after a
/// restart is harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the writer Lease naming `to` as holder, or update it to `to`. The update
    /// carries `expected_resource_version` and must fail on a conflict (`None`: the
    /// Lease must not exist yet).
    MoveLease {
        to: String,
        expected_resource_version: Option<String>,
    },
    /// Make the lease holder `site` writable: stop and reset replication, instruct its
    /// sidecar to lift the fence, `super_read_only=OFF`, `read_only=OFF`.
    Promote { site: String },
    /// `super_read_only=ON` and kill client connections at `site`.
    Fence { site: String },
    /// `CHANGE REPLICATION SOURCE TO` the `source` site with `SOURCE_AUTO_POSITION=1`,
    /// then `START REPLICA`.
    ConfigureReplica { site: String, source: String },
    /// `START REPLICA` at `site`, whose channel already names the right source with
    /// auto-position: a blip stopped a thread. `CHANGE REPLICATION SOURCE` would purge
    /// the relay log and with it every received but unapplied (even semisync-
    /// acknowledged) transaction (manual 15.4.2.3 "CHANGE REPLICATION SOURCE TO").
    StartReplica { site: String },
    /// `CLONE INSTANCE FROM` the `donor` site onto `site` (destroys `site`'s data).
    Clone { site: String, donor: String },
    /// Set the pod label `shipstream.io/role`.
    SetRoleLabel { site: String, role: Role },
    /// Point the group's DNSEndpoint at `site`'s target.
    UpdateDns { site: String },
    /// Remove an annotation from the group once it has been handled.
    RemoveAnnotation { key: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    /// The value of the `shipstream.io/role` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIntent {
    pub kind: EventKind,
    pub reason: EventReason,
    pub message: String,
}

impl EventIntent {
    pub fn normal(reason: EventReason, message: impl Into<String>) -> Self {
        Self {
            kind: EventKind::Normal,
            reason,
            message: message.into(),
        }
    }

    pub fn warning(reason: EventReason, message: impl Into<String>) -> Self {
        Self {
            kind: EventKind::Warning,
            reason,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// Kubernetes Event reasons; users and scenarios match on these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    FailoverStarted,
    FailoverSucceeded,
    FailoverFailed,
    /// An emergency failover is held back: every candidate lacks transactions last seen
    /// on the lost primary.
    FailoverBlocked,
    /// A `force-failover` annotation did not match the blocked failover.
    ForceFailoverRejected,
    PlannedFailoverRejected,
    SiteFenced,
    DivergenceDetected,
    RecloneRejected,
    RecloneStarted,
    RecloneSucceeded,
    SplitBrainDetected,
    DNSUpdated,
    /// `spec.dragonfly.args` sets flags the guide discourages (message: the trade-off).
    DragonflyDiscouragedArgs,
    /// The Dragonfly master moved to another site (message: method, sessions kept).
    DragonflyMasterMoved,
    /// A move of the Dragonfly master failed or fell back to `REPLICAOF NO ONE`.
    DragonflyTakeoverFailed,
    /// The caches stopped being ready (message: why; see `DragonflyReady`).
    DragonflyDegraded,
    /// A Dragonfly container keeps exiting at start-up (message: its last error; with
    /// S3 snapshots, usually the bucket or the credentials).
    DragonflyStartupFailed,
    /// The orchestrated rollout of the Dragonfly pods began (message: image, order).
    DragonflyRolloutStarted,
    DragonflyRolloutCompleted,
    /// The group's stored object does not deserialize (emitted by the controller, not
    /// the engine: the engine never sees such a group).
    GroupUnreadable,
    /// A `MysqlBackup`'s Job was started (on a `MysqlBackup`).
    BackupStarted,
    BackupSucceeded,
    /// A backup failed; the message says why and what to check.
    BackupFailed,
    /// Retention deleted a backup and its object.
    BackupExpired,
    /// Retention could not delete an expired backup's object (the backup stays; the
    /// message says what to check).
    BackupExpiryFailed,
    /// A `MysqlRestore` passed its checks and paused automatic failover.
    RestoreStarted,
    /// The restore Job started loading the backup into the active site.
    RestoreLoading,
    /// The backup is loaded; the other site is rebuilt next.
    RestoreLoaded,
    /// The restore asked for the confirmed reclone of the other site.
    RestoreRecloning,
    RestoreSucceeded,
    /// A restore failed; the message states what is where and what to check.
    RestoreFailed,
    /// A `MysqlBackupVerification`'s Job was started (on the verification).
    VerificationStarted,
    /// The backup loaded into a scratch mysqld and its sanity check held.
    VerificationSucceeded,
    /// A verification failed or was refused; the message says why and what to check.
    VerificationFailed,
}

impl EventReason {
    /// Every reason the operator can emit: what the scenario parser allows an `events:`
    /// check on a MysqlFailoverGroup to name. Keep in step with the enum.
    pub const ALL: &[EventReason] = &[
        EventReason::FailoverStarted,
        EventReason::FailoverSucceeded,
        EventReason::FailoverFailed,
        EventReason::FailoverBlocked,
        EventReason::ForceFailoverRejected,
        EventReason::PlannedFailoverRejected,
        EventReason::SiteFenced,
        EventReason::DivergenceDetected,
        EventReason::RecloneRejected,
        EventReason::RecloneStarted,
        EventReason::RecloneSucceeded,
        EventReason::SplitBrainDetected,
        EventReason::DNSUpdated,
        EventReason::DragonflyDiscouragedArgs,
        EventReason::DragonflyMasterMoved,
        EventReason::DragonflyTakeoverFailed,
        EventReason::DragonflyDegraded,
        EventReason::GroupUnreadable,
        EventReason::BackupStarted,
        EventReason::BackupSucceeded,
        EventReason::BackupFailed,
        EventReason::BackupExpired,
        EventReason::DragonflyStartupFailed,
        EventReason::BackupExpiryFailed,
        EventReason::RestoreStarted,
        EventReason::RestoreLoading,
        EventReason::RestoreLoaded,
        EventReason::RestoreRecloning,
        EventReason::RestoreSucceeded,
        EventReason::RestoreFailed,
        EventReason::VerificationStarted,
        EventReason::VerificationSucceeded,
        EventReason::VerificationFailed,
        EventReason::DragonflyRolloutStarted,
        EventReason::DragonflyRolloutCompleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::FailoverStarted => "FailoverStarted",
            EventReason::FailoverSucceeded => "FailoverSucceeded",
            EventReason::FailoverFailed => "FailoverFailed",
            EventReason::FailoverBlocked => "FailoverBlocked",
            EventReason::ForceFailoverRejected => "ForceFailoverRejected",
            EventReason::PlannedFailoverRejected => "PlannedFailoverRejected",
            EventReason::SiteFenced => "SiteFenced",
            EventReason::DivergenceDetected => "DivergenceDetected",
            EventReason::RecloneRejected => "RecloneRejected",
            EventReason::RecloneStarted => "RecloneStarted",
            EventReason::RecloneSucceeded => "RecloneSucceeded",
            EventReason::SplitBrainDetected => "SplitBrainDetected",
            EventReason::DNSUpdated => "DNSUpdated",
            EventReason::DragonflyDiscouragedArgs => "DragonflyDiscouragedArgs",
            EventReason::DragonflyMasterMoved => "DragonflyMasterMoved",
            EventReason::DragonflyTakeoverFailed => "DragonflyTakeoverFailed",
            EventReason::DragonflyDegraded => "DragonflyDegraded",
            EventReason::GroupUnreadable => "GroupUnreadable",
            EventReason::BackupStarted => "BackupStarted",
            EventReason::BackupSucceeded => "BackupSucceeded",
            EventReason::BackupFailed => "BackupFailed",
            EventReason::BackupExpired => "BackupExpired",
            EventReason::DragonflyStartupFailed => "DragonflyStartupFailed",
            EventReason::BackupExpiryFailed => "BackupExpiryFailed",
            EventReason::RestoreStarted => "RestoreStarted",
            EventReason::RestoreLoading => "RestoreLoading",
            EventReason::RestoreLoaded => "RestoreLoaded",
            EventReason::RestoreRecloning => "RestoreRecloning",
            EventReason::RestoreSucceeded => "RestoreSucceeded",
            EventReason::RestoreFailed => "RestoreFailed",
            EventReason::VerificationStarted => "VerificationStarted",
            EventReason::VerificationSucceeded => "VerificationSucceeded",
            EventReason::VerificationFailed => "VerificationFailed",
            EventReason::DragonflyRolloutStarted => "DragonflyRolloutStarted",
            EventReason::DragonflyRolloutCompleted => "DragonflyRolloutCompleted",
        }
    }
}

/// Counters the controller cannot derive from the status alone (gauges such as health
/// or per-site lag are read from the status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricIntent {
    /// `bloodraven_split_brain_detected_total`.
    SplitBrainDetected,
    /// `bloodraven_failovers_total{kind,result}` and
    /// `bloodraven_failover_duration_seconds{kind}`.
    FailoverFinished {
        kind: FailoverKind,
        result: FailoverResult,
        duration: Duration,
    },
    /// `bloodraven_dragonfly_takeovers_total{method,result}`: a move of the Dragonfly
    /// master finished (`method` as in `status.dragonfly.takeover.method`, `none` when
    /// nothing had to be sent).
    DragonflyTakeover {
        method: &'static str,
        succeeded: bool,
    },
}
