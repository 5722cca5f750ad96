//! The observed snapshot: everything the engine may base a decision on, gathered once
//! per reconcile by the controller (probes, pods, nodes, the lease, the group's own
//! status and annotations). Plain data; the controller fills it, tests build it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::decision::Role;
use super::lease::{LeaseSighting, LeaseTiming};
use super::status::GroupStatus;
use super::time::Millis;
use crate::gtid::GtidSet;

/// `bloodraven.shipstream.io/planned-failover: <site>` starts a planned failover.
pub const PLANNED_FAILOVER_ANNOTATION: &str = "bloodraven.shipstream.io/planned-failover";
/// `bloodraven.shipstream.io/reclone-site: <site>:<token>` confirms a destructive reclone.
pub const RECLONE_SITE_ANNOTATION: &str = "bloodraven.shipstream.io/reclone-site";

/// One reconcile's view of a failover group.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Whether this operator replica holds the operator's leader lease. Without it the
    /// engine decides nothing.
    pub leadership: Leadership,
    pub knobs: Knobs,
    /// One entry per spec site, in spec order (the order breaks bootstrap ties).
    pub sites: Vec<SiteObservation>,
    /// The `<group>-writer` Lease as the operator tracks it. A missing Lease is a
    /// record without holder and without resourceVersion, tracked like any other so
    /// that "absent since" is known too.
    pub lease: LeaseSighting,
    /// The group's status as last persisted: where a restarted operator resumes from.
    pub status: GroupStatus,
    pub annotations: Annotations,
    /// Which site the group's DNSEndpoint currently points at, if any.
    pub dns_target: Option<String>,
    /// Monotonic marks the engine asked to keep from its previous decision (empty after
    /// an operator restart).
    pub memory: EngineMemory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    Leader,
    NotLeader,
}

/// The spec settings the decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knobs {
    /// `failover.automatic`: whether an unreachable primary is replaced without a person.
    pub automatic_failover: bool,
    /// How long the primary must stay unreachable before an emergency failover.
    pub detection_window: Duration,
    /// Upper bound on waiting for a candidate's relay log (emergency) or for exact
    /// catch-up (planned) before giving up on it.
    pub drain_timeout: Duration,
    pub lease: LeaseTiming,
    /// Largest replica lag a planned failover accepts.
    pub max_lag_seconds: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SiteObservation {
    pub name: String,
    pub probe: MysqlProbe,
    pub pod: PodObservation,
}

/// This cycle's MySQL probe of a site. The controller keeps `since` from the first
/// failed probe in a row (on its own monotonic clock); the detection window is
/// counted from it.
#[derive(Debug, Clone, PartialEq)]
pub enum MysqlProbe {
    Answered(MysqlObservation),
    Failing { since: Millis },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MysqlObservation {
    pub read_only: bool,
    pub super_read_only: bool,
    pub gtid_executed: GtidSet,
    pub server_uuid: String,
    /// `None` when no replication source is configured.
    pub replication: Option<ReplicationObservation>,
}

impl MysqlObservation {
    /// Accepts writes from ordinary clients.
    pub fn writable(&self) -> bool {
        !self.read_only && !self.super_read_only
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationObservation {
    /// The site whose service `Source_Host` names (mapped by the controller); `None`
    /// when the source is not one of the group's sites.
    pub source_site: Option<String>,
    pub auto_position: bool,
    pub io_running: bool,
    pub sql_running: bool,
    /// Transactions received into the relay log (`Retrieved_Gtid_Set`).
    pub retrieved: GtidSet,
    /// `Seconds_Behind_Source`; `None` while the SQL thread is stopped.
    pub lag_seconds: Option<u64>,
    pub last_io_error: Option<String>,
    pub last_sql_error: Option<String>,
}

impl ReplicationObservation {
    /// Both threads running from `source` with auto-position.
    pub fn replicates_from(&self, source: &str) -> bool {
        self.io_running
            && self.sql_running
            && self.auto_position
            && self.source_site.as_deref() == Some(source)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodObservation {
    pub exists: bool,
    /// The pod's `shipstream.io/role` label.
    pub role_label: Option<Role>,
    pub ready: bool,
    /// The pod has a deletionTimestamp.
    pub deleting: bool,
    /// The pod's node reports Ready=False/Unknown.
    pub node_not_ready: bool,
    pub node_unschedulable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Annotations {
    pub planned_failover: Option<String>,
    pub reclone_site: Option<String>,
}

/// Monotonic marks that only matter within one operator process: when a phase was
/// entered (to bound it) and when the old primary was fenced (for writeUnavailableMs).
/// Lost on restart, which only makes the next bound start later: conservative.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineMemory {
    /// Phase key (see `status`) -> when this process first saw the group in it.
    pub phase_entered: BTreeMap<String, Millis>,
    /// When this process issued the planned failover's fence of the old primary.
    pub planned_fenced_at: Option<Millis>,
    /// Sites this process has already asked to CLONE from the primary.
    pub clone_requested: BTreeMap<String, Millis>,
}

impl Snapshot {
    pub fn site(&self, name: &str) -> Option<&SiteObservation> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// The lease holder named in the Lease object, if any.
    pub fn lease_holder(&self) -> Option<&str> {
        self.lease.record.holder.as_deref()
    }

    /// Whether the lease names `site` as holder.
    pub fn holds_lease(&self, site: &str) -> bool {
        self.lease_holder() == Some(site)
    }
}

impl SiteObservation {
    /// The MySQL observation, when this cycle's probe answered.
    pub fn mysql(&self) -> Option<&MysqlObservation> {
        match &self.probe {
            MysqlProbe::Answered(mysql) => Some(mysql),
            MysqlProbe::Failing { .. } => None,
        }
    }

    pub fn reachable(&self) -> bool {
        self.mysql().is_some()
    }

    pub fn writable(&self) -> bool {
        self.mysql().is_some_and(MysqlObservation::writable)
    }

    /// Fenced as far as the operator can tell: it answered with `super_read_only=ON`.
    pub fn observed_fenced(&self) -> bool {
        self.mysql().is_some_and(|m| m.super_read_only)
    }

    /// Unreachable for at least `window` by `now`.
    pub fn unreachable_for(&self, window: Duration, now: Millis) -> bool {
        match self.probe {
            MysqlProbe::Answered(_) => false,
            MysqlProbe::Failing { since } => now >= since.plus(window),
        }
    }

    /// When the current run of failed probes would fill `window`.
    pub fn unreachable_deadline(&self, window: Duration) -> Option<Millis> {
        match self.probe {
            MysqlProbe::Answered(_) => None,
            MysqlProbe::Failing { since } => Some(since.plus(window)),
        }
    }

    pub fn replication(&self) -> Option<&ReplicationObservation> {
        self.mysql().and_then(|m| m.replication.as_ref())
    }

    pub fn gtid_executed(&self) -> Option<&GtidSet> {
        self.mysql().map(|m| &m.gtid_executed)
    }

    /// Pod and node facts worth saying in a failover reason.
    pub fn outage_detail(&self) -> String {
        let mut parts = Vec::new();
        if !self.pod.exists {
            parts.push("pod missing");
        } else if self.pod.deleting {
            parts.push("pod deleting");
        } else if !self.pod.ready {
            parts.push("pod not ready");
        }
        if self.pod.node_not_ready {
            parts.push("node NotReady");
        }
        if self.pod.node_unschedulable {
            parts.push("node unschedulable");
        }
        if parts.is_empty() {
            "mysqld unreachable".to_string()
        } else {
            format!("mysqld unreachable, {}", parts.join(", "))
        }
    }
}
