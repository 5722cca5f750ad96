//! The observed snapshot: everything the engine may base a decision on, gathered once
//! per reconcile by the controller (probes, pods, nodes, the lease, the group's own
//! status and annotations). Plain data; the controller fills it, tests build it.

use std::time::Duration;

use super::decision::Role;
use super::lease::{LeaseSighting, LeaseTiming, LeaseTimingError};
use super::memory::EngineMemory;
use super::time::Millis;
use crate::api::MysqlFailoverGroupSpec;
use crate::api::MysqlFailoverGroupStatus;
use crate::gtid::{GtidParseError, GtidSet};
use crate::seams::mysql::CloneState;

/// The annotations a person sets on the group; defined with the API types.
pub use crate::api::{
    FORCE_FAILOVER_ANNOTATION, PLANNED_FAILOVER_ANNOTATION, RECLONE_SITE_ANNOTATION,
    RESTORE_IN_PROGRESS_ANNOTATION,
};

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
    pub status: MysqlFailoverGroupStatus,
    pub annotations: Annotations,
    /// Which site the group's DNSEndpoint currently points at, if any.
    pub dns_target: Option<String>,
    /// Monotonic marks the engine asked to keep from its previous decision (empty after
    /// an operator restart).
    pub memory: EngineMemory,
    /// The Dragonfly caches, with `spec.dragonfly` only.
    pub dragonfly: Option<super::dragonfly::DragonflyObservation>,
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
    /// `failover.relayLogDrainTimeout`: upper bound on waiting for an emergency
    /// candidate's relay log before promoting it anyway.
    pub drain_timeout: Duration,
    /// `failover.plannedFailoverTimeout`: bound on each phase of a planned failover
    /// (catch-up, exact GTID catch-up after the fence, resuming); on expiry before the
    /// lease moved, the fence is undone and the failover is Failed.
    pub planned_timeout: Duration,
    /// `spec.dns` is set: the DNSEndpoint follows the writable primary.
    pub manage_dns: bool,
    pub lease: LeaseTiming,
    /// Largest replica lag a planned failover accepts.
    pub max_lag_seconds: u64,
    /// `mysql.durability: semisync`: the primary's commits must wait for the replica.
    pub semisync: bool,
}

impl Knobs {
    /// The one mapping from a group's spec to the engine's settings. Errors when the
    /// lease timing leaves no safety margin (the CRD's CEL rules refuse such a spec, but
    /// an object that bypassed validation must not reach a decision).
    pub fn from_spec(spec: &MysqlFailoverGroupSpec) -> Result<Self, LeaseTimingError> {
        let failover = &spec.failover;
        Ok(Self {
            automatic_failover: failover.automatic,
            detection_window: failover.detection_window.as_std(),
            drain_timeout: failover.relay_log_drain_timeout.as_std(),
            planned_timeout: failover.planned_failover_timeout.as_std(),
            manage_dns: spec.dns.is_some(),
            lease: LeaseTiming::new(
                failover.lease_duration.as_std(),
                failover.lease_safety_margin.as_std(),
            )?,
            max_lag_seconds: failover.max_lag_for_planned_failover.as_std().as_secs(),
            semisync: spec.mysql.durability == crate::api::Durability::Semisync,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SiteObservation {
    pub name: String,
    pub probe: MysqlProbe,
    pub pod: PodObservation,
    /// The GTID set the group's status last recorded for this site, parsed when the
    /// snapshot was built (see `LastSeenGtids::recorded`).
    pub last_seen: LastSeenGtids,
}

/// What the group's status records as last observed on a site
/// (`status.sites[].gtidExecuted`): what the site's clients were told was committed,
/// still known while the site is unreachable. Parsed once, when the snapshot is built;
/// the engine writes it back with `to_status`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum LastSeenGtids {
    /// Nothing recorded: a new group or site.
    #[default]
    Never,
    Seen(GtidSet),
    /// Recorded, but not a GTID set (edited by hand, or written by another version).
    /// What it protects is unknown, so no decision may treat it as empty: an emergency
    /// failover holds on it.
    Unreadable {
        text: String,
        error: GtidParseError,
    },
}

impl LastSeenGtids {
    /// The one reading of `status.sites[site].gtidExecuted` into a typed value.
    pub fn recorded(status: &MysqlFailoverGroupStatus, site: &str) -> Self {
        match status.site(site).and_then(|s| s.gtid_executed.as_deref()) {
            None => LastSeenGtids::Never,
            Some(text) => match GtidSet::parse(text) {
                Ok(set) => LastSeenGtids::Seen(set),
                Err(error) => LastSeenGtids::Unreadable {
                    text: text.to_string(),
                    error,
                },
            },
        }
    }

    /// The status field's value: a set in MySQL's one-line form, or an unreadable text
    /// kept exactly as found (so that a person can still see and fix it).
    pub fn to_status(&self) -> Option<String> {
        match self {
            LastSeenGtids::Never => None,
            LastSeenGtids::Seen(set) => Some(set.one_line().to_string()),
            LastSeenGtids::Unreadable { text, .. } => Some(text.clone()),
        }
    }
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
    /// `Rpl_semi_sync_source_status`: commits on this server wait for a replica's
    /// acknowledgement now (OFF when semisync is disabled, and after a wait ran into
    /// `rpl_semi_sync_source_timeout` until a replica catches up again).
    pub semisync_source_active: bool,
    /// `performance_schema.clone_status` (manual 29.12.19.1), read only while the
    /// site is being recloned; `None` otherwise, or when no clone ran there. Boxed:
    /// rarely present, and it would double the size of every probe.
    pub clone_status: Option<Box<CloneState>>,
    /// When the probe that produced this observation started, on the operator's
    /// monotonic clock: what it saw is true no earlier than this.
    pub probed_at: Millis,
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
    pub force_failover: Option<String>,
    /// The `MysqlRestore` that paused failover (`restore-in-progress`), if any.
    pub restore_in_progress: Option<String>,
}

impl Snapshot {
    pub fn site(&self, name: &str) -> Option<&SiteObservation> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// The lease holder named in the Lease object, if any.
    pub fn lease_holder(&self) -> Option<&str> {
        self.lease.record.holder.as_deref()
    }

    /// The sites that accept writes from ordinary clients, in spec order.
    pub fn writable_sites(&self) -> Vec<&str> {
        self.sites
            .iter()
            .filter(|s| s.writable())
            .map(|s| s.name.as_str())
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_seen_set_is_read_from_the_status_once_and_written_back_unchanged() {
        let set = crate::engine::testkit::iad_txns(3);
        let status = MysqlFailoverGroupStatus {
            sites: vec![
                crate::engine::testkit::site_status("new"),
                crate::engine::testkit::seen_with("iad", &set),
                crate::api::SiteStatus {
                    gtid_executed: Some("not-a-gtid-set".into()),
                    ..crate::engine::testkit::site_status("pdx")
                },
            ],
            ..Default::default()
        };
        let cases = [
            ("absent", None),
            ("new", None),
            ("iad", Some(set.one_line().to_string())),
            ("pdx", Some("not-a-gtid-set".to_string())),
        ];
        for (site, wire) in cases {
            let seen = LastSeenGtids::recorded(&status, site);
            assert_eq!(seen.to_status(), wire, "{site}");
            match (site, &seen) {
                ("absent" | "new", LastSeenGtids::Never) => {}
                ("iad", LastSeenGtids::Seen(s)) => assert_eq!(s, &set),
                ("pdx", LastSeenGtids::Unreadable { text, error }) => {
                    assert_eq!(text, "not-a-gtid-set");
                    assert_eq!(error.position, 0);
                }
                _ => panic!("{site}: {seen:?}"),
            }
        }
    }

    #[test]
    fn knobs_come_from_the_spec_with_the_planned_timeout_for_the_planned_path() {
        let mut group = crate::children::tests::playground();
        group.spec.failover.planned_failover_timeout = crate::api::Duration::from_secs(42);
        group.spec.failover.relay_log_drain_timeout = crate::api::Duration::from_secs(7);
        group.spec.failover.max_lag_for_planned_failover = crate::api::Duration::from_secs(5);
        let knobs = Knobs::from_spec(&group.spec).unwrap();
        assert_eq!(knobs.planned_timeout, Duration::from_secs(42));
        assert_eq!(knobs.drain_timeout, Duration::from_secs(7));
        assert_eq!(knobs.max_lag_seconds, 5);
        assert_eq!(knobs.detection_window, Duration::from_secs(3));
        assert_eq!(knobs.lease.duration(), Duration::from_secs(5));
        assert_eq!(knobs.lease.margin(), Duration::from_secs(1));
        assert!(knobs.automatic_failover);
        assert!(knobs.manage_dns);
        group.spec.dns = None;
        assert!(!Knobs::from_spec(&group.spec).unwrap().manage_dns);
    }

    #[test]
    fn a_spec_without_a_safety_margin_is_refused() {
        let mut group = crate::children::tests::playground();
        group.spec.failover.lease_safety_margin = crate::api::Duration::from_secs(5);
        assert!(matches!(
            Knobs::from_spec(&group.spec),
            Err(LeaseTimingError::DurationNotAboveMargin { .. })
        ));
    }
}
