//! Builders for decision tables: a healthy IAD/PDX pair and small edits of it, so that
//! each test states only what differs from the steady state.

use std::time::Duration;

use super::decision::{Action, EventReason, Role};
use super::lease::{LeaseRecord, LeaseSighting, LeaseTiming};
use super::memory::EngineMemory;
use super::snapshot::*;
use super::time::Millis;
use super::{Decision, Now, decide};
use crate::api::{Health, MysqlFailoverGroupStatus, RecoveryState, SiteStatus};
use crate::gtid::GtidSet;

pub(crate) const IAD_UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
pub(crate) const PDX_UUID: &str = "61553741-443a-11f1-8f55-0242ac120002";

pub(crate) fn gtids(text: &str) -> GtidSet {
    GtidSet::parse(text).unwrap()
}

/// `count` transactions originating at IAD.
pub(crate) fn iad_txns(count: u64) -> GtidSet {
    let mut set = GtidSet::new();
    set.add_interval(IAD_UUID, 1, count);
    set
}

pub(crate) fn knobs() -> Knobs {
    Knobs {
        automatic_failover: true,
        detection_window: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(10),
        planned_timeout: Duration::from_secs(10),
        manage_dns: true,
        lease: LeaseTiming::new(Duration::from_secs(6), Duration::from_secs(1)).unwrap(),
        max_lag_seconds: 30,
        semisync: false,
    }
}

pub(crate) fn uuid_of(site: &str) -> &'static str {
    if site == "iad" { IAD_UUID } else { PDX_UUID }
}

pub(crate) fn healthy_pod(role: Role) -> PodObservation {
    PodObservation {
        exists: true,
        role_label: Some(role),
        ready: true,
        ..Default::default()
    }
}

pub(crate) fn writable(site: &str, executed: GtidSet) -> SiteObservation {
    SiteObservation {
        name: site.into(),
        probe: MysqlProbe::Answered(MysqlObservation {
            read_only: false,
            super_read_only: false,
            gtid_executed: executed,
            server_uuid: uuid_of(site).into(),
            replication: None,
            semisync_source_active: false,
            clone_status: None,
            probed_at: Millis(0),
        }),
        pod: healthy_pod(Role::Primary),
        last_seen: LastSeenGtids::Never,
    }
}

pub(crate) fn replica_of(site: &str, source: &str, executed: GtidSet) -> SiteObservation {
    SiteObservation {
        name: site.into(),
        probe: MysqlProbe::Answered(MysqlObservation {
            read_only: true,
            super_read_only: true,
            gtid_executed: executed.clone(),
            server_uuid: uuid_of(site).into(),
            replication: Some(ReplicationObservation {
                source_site: Some(source.into()),
                auto_position: true,
                io_running: true,
                sql_running: true,
                retrieved: executed,
                lag_seconds: Some(0),
                last_io_error: None,
                last_sql_error: None,
            }),
            semisync_source_active: false,
            clone_status: None,
            probed_at: Millis(0),
        }),
        pod: healthy_pod(Role::Replica),
        last_seen: LastSeenGtids::Never,
    }
}

/// Read-only, nothing configured: how every mysqld boots.
pub(crate) fn fresh(site: &str, executed: GtidSet) -> SiteObservation {
    let mut s = replica_of(site, "none", executed);
    if let MysqlProbe::Answered(m) = &mut s.probe {
        m.replication = None;
    }
    s.pod.role_label = None;
    s
}

pub(crate) fn silent(site: &str, since_ms: u64) -> SiteObservation {
    SiteObservation {
        name: site.into(),
        probe: MysqlProbe::Failing {
            since: Millis(since_ms),
        },
        pod: PodObservation {
            exists: true,
            role_label: Some(Role::Replica),
            ..Default::default()
        },
        last_seen: LastSeenGtids::Never,
    }
}

pub(crate) fn lease_held_by(holder: Option<&str>, rv: &str, seen_ms: u64) -> LeaseSighting {
    LeaseSighting {
        record: LeaseRecord {
            holder: holder.map(Into::into),
            renew_time: Some(format!("renew-{rv}")),
            resource_version: Some(rv.into()),
            declared_duration: Some(Duration::from_secs(6)),
            holder_granted: false,
        },
        seen_change_at: Millis(seen_ms),
    }
}

/// IAD writable primary holding the lease (seen renewed at 10s), PDX replicating with
/// the same 10 transactions, status Healthy, DNS on IAD.
pub(crate) fn healthy_pair() -> Snapshot {
    Snapshot {
        leadership: Leadership::Leader,
        knobs: knobs(),
        sites: vec![
            writable("iad", iad_txns(10)),
            replica_of("pdx", "iad", iad_txns(10)),
        ],
        lease: lease_held_by(Some("iad"), "100", 10_000),
        status: MysqlFailoverGroupStatus {
            active_site: Some("iad".into()),
            health: Some(Health::Healthy),
            sites: vec![
                seen_with("iad", &iad_txns(10)),
                seen_with("pdx", &iad_txns(10)),
            ],
            ..Default::default()
        },
        annotations: Annotations::default(),
        dns_target: Some("iad".into()),
        memory: EngineMemory::default(),
        dragonfly: None,
    }
}

pub(crate) fn site_status(name: &str) -> SiteStatus {
    SiteStatus {
        name: name.into(),
        ..Default::default()
    }
}

/// A status entry recording the GTID set last observed on `name`.
pub(crate) fn seen_with(name: &str, executed: &GtidSet) -> SiteStatus {
    SiteStatus {
        gtid_executed: Some(executed.one_line().to_string()),
        ..site_status(name)
    }
}

/// Marks `site` RecoveryPending in the persisted status with a divergent set.
pub(crate) fn with_recovery(
    snap: &mut Snapshot,
    site: &str,
    divergent: &str,
    state: RecoveryState,
) {
    let set = gtids(divergent);
    let entry = snap
        .status
        .sites
        .iter_mut()
        .find(|s| s.name == site)
        .unwrap();
    entry.recovery_state = Some(state);
    entry.divergent_gtid = Some(set.one_line().to_string());
    entry.divergent_transaction_count = Some(set.count() as i64);
}

pub(crate) fn site_mut<'a>(snap: &'a mut Snapshot, name: &str) -> &'a mut SiteObservation {
    snap.sites.iter_mut().find(|s| s.name == name).unwrap()
}

pub(crate) fn mysql_mut<'a>(snap: &'a mut Snapshot, name: &str) -> &'a mut MysqlObservation {
    match &mut site_mut(snap, name).probe {
        MysqlProbe::Answered(m) => m,
        MysqlProbe::Failing { .. } => panic!("{name} is silent"),
    }
}

pub(crate) fn replication_mut<'a>(
    snap: &'a mut Snapshot,
    name: &str,
) -> &'a mut ReplicationObservation {
    mysql_mut(snap, name).replication.as_mut().unwrap()
}

pub(crate) fn at(ms: u64) -> Now {
    Now {
        mono: Millis(ms),
        wall: jiff::Timestamp::from_millisecond(1_750_000_000_000 + ms as i64).unwrap(),
    }
}

/// Decides on `snap` at `ms`, after reading each site's last-seen GTID set from the
/// status as the controller's observe step does: tests edit the status as it is on the
/// wire.
pub(crate) fn run(snap: &Snapshot, ms: u64) -> Decision {
    let mut observed = snap.clone();
    for site in &mut observed.sites {
        site.last_seen = LastSeenGtids::recorded(&snap.status, &site.name);
    }
    decide(&observed, at(ms))
}

/// Carries a decision's status and memory into the next snapshot, as the controller
/// does between reconciles.
pub(crate) fn carry(snap: &mut Snapshot, decision: &Decision) {
    if let Some(status) = &decision.status {
        snap.status = status.clone();
    }
    snap.memory = decision.memory.clone();
    snap.annotations = Annotations::default();
}

pub(crate) fn promotions(decision: &Decision) -> Vec<String> {
    decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Promote { site } => Some(site.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn reasons(decision: &Decision) -> Vec<EventReason> {
    decision.events.iter().map(|e| e.reason).collect()
}

pub(crate) fn status(decision: &Decision) -> &MysqlFailoverGroupStatus {
    decision.status.as_ref().unwrap()
}

/// An optional status text, empty when unset (for `contains` assertions).
pub(crate) fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or_default()
}

/// A site's recovery fields from a status, gathered for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecoveryFields {
    pub state: RecoveryState,
    pub divergent_gtid: String,
    pub divergent_transaction_count: i64,
    pub reclone_token: String,
}

/// `site`'s recovery record in `status`, when it has a recovery state.
pub(crate) fn recovery(status: &MysqlFailoverGroupStatus, site: &str) -> Option<RecoveryFields> {
    let entry = status.site(site)?;
    Some(RecoveryFields {
        state: entry.recovery_state?,
        divergent_gtid: entry.divergent_gtid.clone().unwrap_or_default(),
        divergent_transaction_count: entry.divergent_transaction_count.unwrap_or_default(),
        reclone_token: entry.reclone_token().unwrap_or_default().to_string(),
    })
}
