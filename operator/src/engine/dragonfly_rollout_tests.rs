//! Table tests of the rollout: the order (replica, move, old master, hand back) and the
//! unsafe cases (never the master's pod, never a pod with traffic, never while the
//! replica is not in stable sync, never during a MySQL failover).

use super::*;
use crate::engine::dragonfly::{
    CacheInfo, CacheLink, CachePod, CacheProbe, CacheRole, CacheSiteObservation,
};

const IMAGE: &str = "docker.dragonflydb.io/dragonflydb/dragonfly@sha256:0000000000000000000000000000000000000000000000000000000000000001";

fn host(site: &str) -> String {
    format!("{site}-host")
}

fn master_site(name: &str, outdated: bool) -> CacheSiteObservation {
    CacheSiteObservation {
        name: name.into(),
        host: host(name),
        pod: CachePod {
            exists: true,
            ready: true,
            role_label: Some(CacheRole::Master),
            traffic: true,
            outdated,
            ..CachePod::default()
        },
        probe: CacheProbe::Answered(CacheInfo::Master {
            replid: Some("r1".into()),
        }),
    }
}

fn replica_site(name: &str, of: &str, link: CacheLink, outdated: bool) -> CacheSiteObservation {
    CacheSiteObservation {
        name: name.into(),
        host: host(name),
        pod: CachePod {
            exists: true,
            ready: true,
            role_label: Some(CacheRole::Replica),
            traffic: false,
            outdated,
            ..CachePod::default()
        },
        probe: CacheProbe::Answered(CacheInfo::Replica {
            master_host: host(of),
            link,
        }),
    }
}

fn obs(sites: Vec<CacheSiteObservation>) -> DragonflyObservation {
    DragonflyObservation {
        sites,
        busy: false,
        image: IMAGE.into(),
    }
}

fn rollout(phase: &str, site: &str) -> DragonflyRolloutStatus {
    DragonflyRolloutStatus {
        phase: phase.into(),
        image: Some(IMAGE.into()),
        site: Some(site.into()),
        ..Default::default()
    }
}

fn decide_with(
    o: &DragonflyObservation,
    master: &str,
    previous: Option<&DragonflyRolloutStatus>,
    failover: bool,
) -> RolloutDecision {
    decide(&RolloutInput {
        obs: o,
        image: IMAGE,
        master: Some(master),
        home: Some("iad"),
        failover,
        previous,
        now: Timestamp::UNIX_EPOCH,
    })
}

#[test]
fn nothing_outdated_nothing_to_do() {
    let o = obs(vec![
        master_site("iad", false),
        replica_site("pdx", "iad", CacheLink::StableSync, false),
    ]);
    let d = decide_with(&o, "iad", None, false);
    assert_eq!(d, RolloutDecision::default());
}

#[test]
fn starts_with_the_replica_site_and_an_event() {
    let o = obs(vec![
        master_site("iad", true),
        replica_site("pdx", "iad", CacheLink::StableSync, true),
    ]);
    let d = decide_with(&o, "iad", None, false);
    let status = d.status.expect("a rollout starts");
    assert_eq!(status.phase, PHASE_ROLLING_REPLICA);
    assert_eq!(status.site.as_deref(), Some("pdx"));
    assert_eq!(status.image.as_deref(), Some(IMAGE));
    assert_eq!(
        d.event.map(|e| e.reason),
        Some(EventReason::DragonflyRolloutStarted)
    );
    assert_eq!(d.delete_pod, None, "the first step only records the start");
    // The next step replaces the replica's pod, never the master's.
    let d = decide_with(&o, "iad", Some(&status), false);
    assert_eq!(d.delete_pod.as_deref(), Some("pdx"));
}

#[test]
fn never_starts_while_the_replica_is_not_in_stable_sync() {
    for link in [CacheLink::Connecting, CacheLink::FullSync] {
        let o = obs(vec![
            master_site("iad", true),
            replica_site("pdx", "iad", link, true),
        ]);
        let d = decide_with(&o, "iad", None, false);
        assert_eq!(d.status, None, "{link:?}");
        assert_eq!(d.delete_pod, None, "{link:?}");
    }
}

#[test]
fn never_starts_or_deletes_during_a_mysql_failover() {
    let o = obs(vec![
        master_site("iad", true),
        replica_site("pdx", "iad", CacheLink::StableSync, true),
    ]);
    assert_eq!(decide_with(&o, "iad", None, true).status, None);
    let running = rollout(PHASE_ROLLING_REPLICA, "pdx");
    let d = decide_with(&o, "iad", Some(&running), true);
    assert_eq!(d.delete_pod, None);
    assert_eq!(d.status, Some(running));
}

#[test]
fn never_deletes_the_master_pod() {
    // A status that names the master's site (e.g. the master moved behind the
    // rollout's back): its pod is outdated but it is master and serves.
    let o = obs(vec![
        master_site("iad", true),
        replica_site("pdx", "iad", CacheLink::StableSync, false),
    ]);
    for phase in [PHASE_ROLLING_REPLICA, PHASE_ROLLING_OLD_MASTER] {
        let d = decide_with(&o, "iad", Some(&rollout(phase, "iad")), false);
        assert_eq!(d.delete_pod, None, "{phase}");
    }
}

#[test]
fn never_deletes_a_pod_with_traffic_or_a_master_label() {
    // pdx answers as a replica but its pod still carries master+traffic (labels lag):
    // deleting it could take the Service's only endpoint.
    let mut pdx = replica_site("pdx", "iad", CacheLink::StableSync, true);
    pdx.pod.traffic = true;
    let o = obs(vec![master_site("iad", false), pdx.clone()]);
    let d = decide_with(
        &o,
        "iad",
        Some(&rollout(PHASE_ROLLING_REPLICA, "pdx")),
        false,
    );
    assert_eq!(d.delete_pod, None);
    pdx.pod.traffic = false;
    pdx.pod.role_label = Some(CacheRole::Master);
    let o = obs(vec![master_site("iad", false), pdx]);
    let d = decide_with(
        &o,
        "iad",
        Some(&rollout(PHASE_ROLLING_REPLICA, "pdx")),
        false,
    );
    assert_eq!(d.delete_pod, None);
}

#[test]
fn never_deletes_while_the_master_does_not_serve() {
    let mut iad = master_site("iad", false);
    iad.pod.traffic = false;
    let o = obs(vec![
        iad,
        replica_site("pdx", "iad", CacheLink::StableSync, true),
    ]);
    let d = decide_with(
        &o,
        "iad",
        Some(&rollout(PHASE_ROLLING_REPLICA, "pdx")),
        false,
    );
    assert_eq!(d.delete_pod, None);
}

#[test]
fn replaced_replica_waits_for_stable_sync_before_the_master_moves() {
    let running = rollout(PHASE_ROLLING_REPLICA, "pdx");
    for link in [CacheLink::Connecting, CacheLink::FullSync] {
        let o = obs(vec![
            master_site("iad", true),
            replica_site("pdx", "iad", link, false),
        ]);
        let d = decide_with(&o, "iad", Some(&running), false);
        assert_eq!(d.status, Some(running.clone()), "{link:?}");
        assert_eq!(d.delete_pod, None);
        assert_eq!(temporary_master(d.status.as_ref(), &o), None);
    }
    let o = obs(vec![
        master_site("iad", true),
        replica_site("pdx", "iad", CacheLink::StableSync, false),
    ]);
    let d = decide_with(&o, "iad", Some(&running), false);
    let status = d.status.expect("status");
    assert_eq!(status.phase, PHASE_MOVING_MASTER);
    assert_eq!(temporary_master(Some(&status), &o).as_deref(), Some("pdx"));
}

#[test]
fn master_moved_then_old_master_replaced_then_handed_back() {
    // The takeover made pdx master; iad (outdated) now replicates from it.
    let o = obs(vec![
        replica_site("iad", "pdx", CacheLink::StableSync, true),
        master_site("pdx", false),
    ]);
    let d = decide_with(&o, "pdx", Some(&rollout(PHASE_MOVING_MASTER, "pdx")), false);
    let status = d.status.expect("status");
    assert_eq!(status.phase, PHASE_ROLLING_OLD_MASTER);
    assert_eq!(status.site.as_deref(), Some("iad"));
    // The master stays at pdx meanwhile (no realignment back to MySQL's site).
    assert_eq!(temporary_master(Some(&status), &o).as_deref(), Some("pdx"));
    let d = decide_with(&o, "pdx", Some(&status), false);
    assert_eq!(d.delete_pod.as_deref(), Some("iad"));
    // Back, current and in stable sync: hand the master back.
    let o = obs(vec![
        replica_site("iad", "pdx", CacheLink::StableSync, false),
        master_site("pdx", false),
    ]);
    let d = decide_with(&o, "pdx", Some(&status), false);
    let status = d.status.expect("status");
    assert_eq!(status.phase, PHASE_HANDING_BACK);
    assert_eq!(temporary_master(Some(&status), &o), None);
    // Not complete until the master is back at MySQL's active site.
    let d = decide_with(&o, "pdx", Some(&status), false);
    assert_eq!(
        d.status.as_ref().map(|s| s.phase.as_str()),
        Some(PHASE_HANDING_BACK)
    );
    assert_eq!(d.event, None);
    let o = obs(vec![
        master_site("iad", false),
        replica_site("pdx", "iad", CacheLink::StableSync, false),
    ]);
    let d = decide_with(&o, "iad", Some(&status), false);
    let status = d.status.expect("status");
    assert_eq!(status.phase, PHASE_COMPLETED);
    assert!(status.completed_at.is_some());
    assert_eq!(
        d.event.map(|e| e.reason),
        Some(EventReason::DragonflyRolloutCompleted)
    );
    // Completed and nothing outdated: stays completed, nothing more.
    let d = decide_with(&o, "iad", Some(&status), false);
    assert_eq!(d.status, Some(status));
    assert_eq!(d.delete_pod, None);
}

#[test]
fn waits_for_the_move_before_touching_the_old_master() {
    let o = obs(vec![
        master_site("iad", true),
        replica_site("pdx", "iad", CacheLink::StableSync, false),
    ]);
    let moving = rollout(PHASE_MOVING_MASTER, "pdx");
    let d = decide_with(&o, "iad", Some(&moving), false);
    assert_eq!(d.status, Some(moving));
    assert_eq!(d.delete_pod, None);
}

#[test]
fn only_the_replica_outdated_skips_the_move() {
    let o = obs(vec![
        master_site("iad", false),
        replica_site("pdx", "iad", CacheLink::StableSync, false),
    ]);
    let d = decide_with(
        &o,
        "iad",
        Some(&rollout(PHASE_ROLLING_REPLICA, "pdx")),
        false,
    );
    assert_eq!(
        d.status.map(|s| s.phase),
        Some(PHASE_HANDING_BACK.to_string())
    );
}
