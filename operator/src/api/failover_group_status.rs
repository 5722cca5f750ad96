//! `MysqlFailoverGroup`'s status: what the operator observed and decided, as users,
//! runbooks and dashboards read it, with the lookups the engine and the controller
//! share. The spec is in `failover_group`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// Every field is optional or defaulted so that partial status patches work.

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlFailoverGroupStatus {
    /// The site that holds the writer lease and accepts writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub sites: Vec<SiteStatus>,
    /// The emergency failover in progress, if any. A restarted operator resumes it from
    /// here without repeating a phase it already completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_failover: Option<EmergencyFailoverStatus>,
    /// The current or latest planned failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_failover: Option<PlannedFailoverStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dragonfly: Option<DragonflyStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The group's overall health, as the dashboard banner and alerts show it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Health {
    /// One writable site, the other replicating within the lag limit.
    Healthy,
    /// Writable, but a site is unreachable, not replicating or lagging.
    Degraded,
    /// Two sites accept writes. The operator fences the one without the lease.
    SplitBrain,
    /// No site accepts writes.
    NoPrimary,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SiteState {
    #[serde(rename = "writable")]
    Writable,
    #[serde(rename = "read-only")]
    ReadOnly,
    #[serde(rename = "unreachable")]
    Unreachable,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RecoveryState {
    /// The site has transactions the primary lacks; it waits for a confirmed reclone.
    RecoveryPending,
    /// A confirmed reclone is copying the primary's data onto the site.
    Recloning,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SiteState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_executed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicating: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_state: Option<RecoveryState>,
    /// The GTIDs this site has and the primary lacks, while RecoveryPending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergent_gtid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergent_transaction_count: Option<i64>,
    /// The last replication or probe error, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Phases of an emergency failover, in order. Each is resumable.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum EmergencyFailoverPhase {
    /// Waiting until the old primary cannot write: its writer lease expired on the
    /// operator's clock, or it answered with `super_read_only=ON` after a direct fence.
    Fencing,
    /// The candidate applies the transactions already in its relay log (bounded).
    DrainingRelayLog,
    /// Moving the writer lease to the candidate and promoting it.
    Promoting,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyFailoverStatus {
    pub from: String,
    pub to: String,
    pub phase: EmergencyFailoverPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// What the current phase is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Phases of a planned failover, in order. `Failed` is terminal after undoing the
/// fence; `Rejected` means the request was refused before anything was touched.
/// `WaitingForDragonflySync` and `PromotingDragonfly` move the Dragonfly master before
/// MySQL's `Promoting` (and are passed through at once without `spec.dragonfly`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum PlannedFailoverPhase {
    WaitingForLag,
    /// The target site's Dragonfly replica reaches stable sync (bounded by the
    /// Dragonfly budget; skipped without `spec.dragonfly`).
    WaitingForDragonflySync,
    /// Shed the old cache master's traffic, `REPLTAKEOVER` on the target (falling back
    /// to `REPLICAOF NO ONE`), label the target master with traffic. Bounded: never
    /// blocks MySQL.
    PromotingDragonfly,
    Promoting,
    Resuming,
    Succeeded,
    Failed,
    Rejected,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedFailoverStatus {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub phase: PlannedFailoverPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the old primary was fenced (writes stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// From fencing the old primary to the new primary accepting writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_unavailable_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dragonfly: Option<PlannedFailoverDragonfly>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedFailoverDragonfly {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_preserved: Option<bool>,
    /// `REPLTAKEOVER`, `REPLICAOF NO ONE`, or `none` when no command reached the
    /// target's Dragonfly (it never answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FailoverKind {
    Emergency,
    Planned,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FailoverResult {
    Succeeded,
    Failed,
}

/// The most recent completed failover.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    pub kind: FailoverKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<FailoverResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DragonflyStatus {
    /// The site whose Dragonfly is master and receives traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_site: Option<String>,
    /// The `master_replid` the master reported when it became (or was confirmed) master:
    /// a different value later means its process restarted and lost the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_replid: Option<String>,
    /// True while the master serves traffic and the other site is in stable sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Why `ready` is what it is, in one word (the `DragonflyReady` condition's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub sites: Vec<DragonflySiteStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The move of the master in progress (no `completedAt`) or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover: Option<DragonflyTakeoverStatus>,
    /// The orchestrated restart of the Dragonfly pods onto a new pod template (an image
    /// or snapshot change): in progress, or the last one (`phase: Completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<DragonflyRolloutStatus>,
}

/// One site at a time: `RollingReplica` (the replica site's pod is replaced and
/// resyncs), `MovingMaster` (`REPLTAKEOVER` to it), `RollingOldMaster`, `HandingBack`
/// (the master returns to MySQL's active site), `Completed`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DragonflyRolloutStatus {
    pub phase: String,
    /// `spec.dragonfly.image` when the rollout started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The site the phase works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DragonflySiteStatus {
    pub name: String,
    /// `master` or `replica`, as Dragonfly reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// The pod's Ready condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// A replica's link: `connecting`, `full_sync` or `stable_sync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_status: Option<String>,
    /// The site a replica replicates from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
    /// The pod's `shipstream.io/dragonfly-traffic` label is `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<bool>,
}

/// A move of the Dragonfly master from one site to another.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DragonflyTakeoverStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    /// `REPLTAKEOVER`, `REPLICAOF NO ONE`, `none` for a move that failed without any
    /// command reaching its target (it never answered), or absent before anything was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Set once completed: true only when `REPLTAKEOVER` handed over every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_preserved: Option<bool>,
    /// `Succeeded` or `Failed`, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The site the published record points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<Time>,
}

// ---------------------------------------------------------------------------------------
// Status helpers: the names as they appear in YAML, and the lookups the engine and the
// controller both need. Kept beside the types so that there is one place per concept.
// ---------------------------------------------------------------------------------------

impl MysqlFailoverGroupStatus {
    pub fn site(&self, name: &str) -> Option<&SiteStatus> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// The entry for `name`, created (at the end) when missing.
    pub fn site_mut(&mut self, name: &str) -> &mut SiteStatus {
        let index = match self.sites.iter().position(|s| s.name == name) {
            Some(index) => index,
            None => {
                self.sites.push(SiteStatus {
                    name: name.to_string(),
                    ..SiteStatus::default()
                });
                self.sites.len() - 1
            }
        };
        &mut self.sites[index]
    }

    /// A site's recovery state (diverged or being recloned), if any.
    pub fn recovery_state(&self, site: &str) -> Option<RecoveryState> {
        self.site(site).and_then(|s| s.recovery_state)
    }

    /// A planned failover that has started and not finished.
    pub fn planned_in_progress(&self) -> Option<&PlannedFailoverStatus> {
        self.planned_failover
            .as_ref()
            .filter(|p| !p.phase.is_terminal())
    }
}

impl SiteStatus {
    /// The token a reclone confirmation must carry: the first segment of the divergent
    /// GTID's (first) UUID, e.g. `61553741` for `61553741-443a-11f1-...:1-3`.
    pub fn reclone_token(&self) -> Option<&str> {
        let gtid = self.divergent_gtid.as_deref()?;
        let uuid = gtid.split(':').next().filter(|u| !u.trim().is_empty())?;
        Some(crate::gtid::reclone_token(uuid.trim()))
    }
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

impl SiteState {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteState::Writable => "writable",
            SiteState::ReadOnly => "read-only",
            SiteState::Unreachable => "unreachable",
        }
    }
}

impl RecoveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryState::RecoveryPending => "RecoveryPending",
            RecoveryState::Recloning => "Recloning",
        }
    }
}

impl EmergencyFailoverPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            EmergencyFailoverPhase::Fencing => "Fencing",
            EmergencyFailoverPhase::DrainingRelayLog => "DrainingRelayLog",
            EmergencyFailoverPhase::Promoting => "Promoting",
        }
    }
}

impl PlannedFailoverPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PlannedFailoverPhase::WaitingForLag => "WaitingForLag",
            PlannedFailoverPhase::WaitingForDragonflySync => "WaitingForDragonflySync",
            PlannedFailoverPhase::PromotingDragonfly => "PromotingDragonfly",
            PlannedFailoverPhase::Promoting => "Promoting",
            PlannedFailoverPhase::Resuming => "Resuming",
            PlannedFailoverPhase::Succeeded => "Succeeded",
            PlannedFailoverPhase::Failed => "Failed",
            PlannedFailoverPhase::Rejected => "Rejected",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PlannedFailoverPhase::Succeeded
                | PlannedFailoverPhase::Failed
                | PlannedFailoverPhase::Rejected
        )
    }

    /// The phase that follows this one on the success path.
    pub fn next(self) -> PlannedFailoverPhase {
        match self {
            PlannedFailoverPhase::WaitingForLag => PlannedFailoverPhase::WaitingForDragonflySync,
            PlannedFailoverPhase::WaitingForDragonflySync => {
                PlannedFailoverPhase::PromotingDragonfly
            }
            PlannedFailoverPhase::PromotingDragonfly => PlannedFailoverPhase::Promoting,
            PlannedFailoverPhase::Promoting => PlannedFailoverPhase::Resuming,
            PlannedFailoverPhase::Resuming => PlannedFailoverPhase::Succeeded,
            terminal @ (PlannedFailoverPhase::Succeeded
            | PlannedFailoverPhase::Failed
            | PlannedFailoverPhase::Rejected) => terminal,
        }
    }
}

impl FailoverKind {
    /// The `kind` label of `bloodraven_failovers_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverKind::Emergency => "emergency",
            FailoverKind::Planned => "planned",
        }
    }
}

impl FailoverResult {
    /// The `result` label of `bloodraven_failovers_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverResult::Succeeded => "succeeded",
            FailoverResult::Failed => "failed",
        }
    }
}
