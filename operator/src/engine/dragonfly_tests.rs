//! Table tests of the cache decisions: observed caches in, cache actions and status out,
//! including the unsafe cases (two pods with traffic, a stale label on a restarted pod,
//! a master that restarted empty).

use super::*;
use crate::engine::testkit::{carry, healthy_pair, run};
use crate::engine::{Decision, Snapshot};

const IAD: &str = "iad-host";
const PDX: &str = "pdx-host";

fn host(site: &str) -> &'static str {
    if site == "iad" { IAD } else { PDX }
}

fn master(replid: &str) -> CacheProbe {
    CacheProbe::Answered(CacheInfo::Master {
        replid: Some(replid.into()),
    })
}

fn replica_of(site: &str, link: CacheLink) -> CacheProbe {
    CacheProbe::Answered(CacheInfo::Replica {
        master_host: host(site).into(),
        link,
    })
}

fn pod(role: Option<CacheRole>, traffic: bool) -> CachePod {
    CachePod {
        exists: true,
        ready: true,
        deleting: false,
        role_label: role,
        traffic,
        start_failure: None,
        outdated: false,
    }
}

fn site(name: &str, pod: CachePod, probe: CacheProbe) -> CacheSiteObservation {
    CacheSiteObservation {
        name: name.into(),
        host: host(name).into(),
        pod,
        probe,
    }
}

/// MySQL healthy on iad; the caches as given.
fn with_caches(iad: CacheSiteObservation, pdx: CacheSiteObservation) -> Snapshot {
    let mut snap = healthy_pair();
    snap.dragonfly = Some(DragonflyObservation {
        sites: vec![iad, pdx],
        busy: false,
        image: String::new(),
    });
    snap
}

/// iad master with traffic (replid r1), pdx its replica in stable sync, recorded.
fn settled() -> Snapshot {
    let mut snap = with_caches(
        site("iad", pod(Some(CacheRole::Master), true), master("r1")),
        site(
            "pdx",
            pod(Some(CacheRole::Replica), false),
            replica_of("iad", CacheLink::StableSync),
        ),
    );
    snap.status.dragonfly = Some(DragonflyStatus {
        master_site: Some("iad".into()),
        master_replid: Some("r1".into()),
        ready: Some(true),
        ..Default::default()
    });
    snap
}

fn cache<'a>(snap: &'a mut Snapshot, name: &str) -> &'a mut CacheSiteObservation {
    snap.dragonfly
        .as_mut()
        .unwrap()
        .sites
        .iter_mut()
        .find(|s| s.name == name)
        .unwrap()
}

fn label(site: &str, role: CacheRole, traffic: bool) -> CacheAction {
    CacheAction::Label {
        site: site.into(),
        role,
        traffic,
    }
}

fn dragonfly(decision: &Decision) -> &DragonflyStatus {
    decision
        .status
        .as_ref()
        .unwrap()
        .dragonfly
        .as_ref()
        .unwrap()
}

/// The safety property over any action list: replaying the label writes in order on
/// the observed labels never has two pods labelled master with traffic at once.
fn assert_never_two_masters(snap: &Snapshot, actions: &[CacheAction]) {
    let mut labels: Vec<(String, Option<CacheRole>, bool)> = snap
        .dragonfly
        .as_ref()
        .unwrap()
        .sites
        .iter()
        .map(|s| (s.name.clone(), s.pod.role_label, s.pod.traffic))
        .collect();
    let count = |labels: &[(String, Option<CacheRole>, bool)]| {
        labels
            .iter()
            .filter(|(_, role, traffic)| *role == Some(CacheRole::Master) && *traffic)
            .count()
    };
    let before = count(&labels);
    for action in actions {
        if let CacheAction::Label {
            site,
            role,
            traffic,
        } = action
        {
            let entry = labels.iter_mut().find(|(n, _, _)| n == site).unwrap();
            entry.1 = Some(*role);
            entry.2 = *traffic;
            assert!(
                count(&labels) <= before.max(1),
                "two masters with traffic after {action:?} in {actions:?}"
            );
        }
    }
}

#[test]
fn without_spec_dragonfly_there_is_no_status_and_no_action() {
    let mut snap = healthy_pair();
    snap.status.dragonfly = Some(DragonflyStatus::default());
    let decision = run(&snap, 20_000);
    assert_eq!(decision.status.unwrap().dragonfly, None);
    assert!(decision.cache_actions.is_empty());
}

#[test]
fn bootstrap_makes_the_active_sites_dragonfly_master_then_labels_and_replicates() {
    // Two fresh masters, no labels, nothing recorded.
    let mut snap = with_caches(
        site("iad", pod(None, false), master("r1")),
        site("pdx", pod(None, false), master("p1")),
    );
    let first = run(&snap, 20_000);
    assert_eq!(dragonfly(&first).master_site.as_deref(), Some("iad"));
    assert_eq!(dragonfly(&first).master_replid.as_deref(), Some("r1"));
    // Shed (label replica) the other first, then the master, then REPLICAOF.
    assert_eq!(
        first.cache_actions,
        vec![
            label("pdx", CacheRole::Replica, false),
            label("iad", CacheRole::Master, true),
            CacheAction::ReplicaOf {
                site: "pdx".into(),
                master: "iad".into()
            },
        ]
    );
    assert_never_two_masters(&snap, &first.cache_actions);
    assert_eq!(dragonfly(&first).ready, Some(false));
    // Labels written, pdx replicating: ready, nothing more to do.
    carry(&mut snap, &first);
    cache(&mut snap, "iad").pod = pod(Some(CacheRole::Master), true);
    *cache(&mut snap, "pdx") = site(
        "pdx",
        pod(Some(CacheRole::Replica), false),
        replica_of("iad", CacheLink::StableSync),
    );
    let second = run(&snap, 21_000);
    assert!(
        second.cache_actions.is_empty(),
        "{:?}",
        second.cache_actions
    );
    assert_eq!(dragonfly(&second).ready, Some(true));
    assert_eq!(dragonfly(&second).reason.as_deref(), Some("Ready"));
    let pdx = &dragonfly(&second).sites[1];
    assert_eq!(pdx.role.as_deref(), Some("replica"));
    assert_eq!(pdx.replica_of.as_deref(), Some("iad"));
    assert_eq!(pdx.link_status.as_deref(), Some("stable_sync"));
}

#[test]
fn no_master_is_chosen_before_mysql_has_an_active_site() {
    let mut snap = with_caches(
        site("iad", pod(None, false), master("r1")),
        site("pdx", pod(None, false), master("p1")),
    );
    // MySQL cannot bootstrap either: neither site answers.
    snap.status.active_site = None;
    snap.lease = crate::engine::testkit::lease_held_by(None, "1", 0);
    snap.sites = vec![
        crate::engine::testkit::silent("iad", 19_000),
        crate::engine::testkit::silent("pdx", 19_000),
    ];
    let decision = run(&snap, 20_000);
    assert!(decision.cache_actions.is_empty());
    assert_eq!(dragonfly(&decision).master_site, None);
    assert_eq!(dragonfly(&decision).reason.as_deref(), Some("NoMaster"));
}

#[test]
fn unsafe_two_pods_with_traffic_are_shed_to_one() {
    // A stale label (e.g. restored by hand) gives pdx traffic too.
    let mut snap = settled();
    cache(&mut snap, "pdx").pod = pod(Some(CacheRole::Master), true);
    let decision = run(&snap, 20_000);
    assert_eq!(
        decision.cache_actions,
        vec![label("pdx", CacheRole::Replica, false)]
    );
    // With no settled master at all, every pod but one loses traffic.
    let mut snap = settled();
    cache(&mut snap, "pdx").pod = pod(Some(CacheRole::Master), true);
    cache(&mut snap, "iad").probe = CacheProbe::Failing {
        since: Millis(19_000),
    };
    let decision = run(&snap, 20_000);
    assert_eq!(
        decision.cache_actions,
        vec![label("pdx", CacheRole::Master, false)]
    );
}

#[test]
fn a_restarted_pod_with_a_stale_master_label_is_relabelled_replica_and_repointed() {
    // pdx's container restarted: it answers as an empty master and kept its labels.
    let mut snap = settled();
    *cache(&mut snap, "pdx") = site("pdx", pod(Some(CacheRole::Master), false), master("p9"));
    let decision = run(&snap, 20_000);
    assert_eq!(
        decision.cache_actions,
        vec![
            label("pdx", CacheRole::Replica, false),
            CacheAction::ReplicaOf {
                site: "pdx".into(),
                master: "iad".into()
            },
        ]
    );
    assert_eq!(dragonfly(&decision).master_site.as_deref(), Some("iad"));
}

#[test]
fn traffic_is_never_given_to_a_site_that_does_not_answer_as_master() {
    let mut snap = settled();
    cache(&mut snap, "iad").pod = pod(None, false);
    cache(&mut snap, "iad").probe = CacheProbe::Failing {
        since: Millis(19_000),
    };
    let decision = run(&snap, 20_000);
    assert!(
        decision.cache_actions.is_empty(),
        "{:?}",
        decision.cache_actions
    );
    assert_eq!(
        dragonfly(&decision).reason.as_deref(),
        Some("MasterUnavailable")
    );
    // Within the detection window the master is waited for (a deadline is set).
    assert!(decision.next_deadline.is_some());
}

#[test]
fn a_busy_worker_gets_no_new_actions() {
    let mut snap = with_caches(
        site("iad", pod(None, false), master("r1")),
        site("pdx", pod(None, false), master("p1")),
    );
    snap.dragonfly.as_mut().unwrap().busy = true;
    let decision = run(&snap, 20_000);
    assert!(decision.cache_actions.is_empty());
    // A busy (or not yet probed) view changes no readiness and says no degradation.
    let mut snap = settled();
    cache(&mut snap, "iad").probe = CacheProbe::Failing { since: Millis(0) };
    snap.dragonfly.as_mut().unwrap().busy = true;
    let decision = run(&snap, 20_000);
    assert_eq!(dragonfly(&decision).ready, Some(true));
    assert!(decision.events.is_empty(), "{:?}", decision.events);
}

#[test]
fn a_lost_master_is_replaced_by_replicaof_no_one_after_shedding_it() {
    // kill-dragonfly on iad: its pod is gone; pdx still a replica with the data.
    let mut snap = settled();
    cache(&mut snap, "iad").pod = CachePod::default();
    cache(&mut snap, "iad").probe = CacheProbe::Failing {
        since: Millis(19_900),
    };
    cache(&mut snap, "pdx").probe = replica_of("iad", CacheLink::Connecting);
    let first = run(&snap, 20_000);
    // The shed of a missing pod is skipped (a new pod has no labels).
    assert_eq!(
        first.cache_actions,
        vec![CacheAction::PromoteInPlace { site: "pdx".into() }]
    );
    let mv = dragonfly(&first).takeover.clone().unwrap();
    assert_eq!(mv.method.as_deref(), Some(METHOD_NO_ONE));
    assert_eq!((mv.from.as_deref(), mv.to.as_str()), (Some("iad"), "pdx"));
    // MySQL is not touched.
    assert!(first.actions.is_empty(), "{:?}", first.actions);
    // pdx answers as master: the move completes, then labels follow, shed first.
    carry(&mut snap, &first);
    cache(&mut snap, "pdx").probe = master("p2");
    let second = run(&snap, 20_500);
    let mv = dragonfly(&second).takeover.clone().unwrap();
    assert_eq!(mv.result.as_deref(), Some("Succeeded"));
    assert_eq!(mv.sessions_preserved, Some(false));
    assert_eq!(dragonfly(&second).master_site.as_deref(), Some("pdx"));
    assert_eq!(dragonfly(&second).master_replid.as_deref(), Some("p2"));
    assert!(second.metrics.contains(&MetricIntent::DragonflyTakeover {
        method: METHOD_NO_ONE,
        succeeded: true
    }));
    assert_eq!(
        second.cache_actions,
        vec![label("pdx", CacheRole::Master, true)]
    );
    // The new iad pod (no labels) later answers as an empty master: it replicates.
    carry(&mut snap, &second);
    cache(&mut snap, "pdx").pod = pod(Some(CacheRole::Master), true);
    *cache(&mut snap, "iad") = site("iad", pod(None, false), master("r2"));
    let fourth = run(&snap, 25_000);
    assert_eq!(
        fourth.cache_actions,
        vec![
            label("iad", CacheRole::Replica, false),
            CacheAction::ReplicaOf {
                site: "iad".into(),
                master: "pdx".into()
            },
        ]
    );
    // Once iad is in stable sync, the master goes back to MySQL's site by REPLTAKEOVER.
    carry(&mut snap, &fourth);
    *cache(&mut snap, "iad") = site(
        "iad",
        pod(Some(CacheRole::Replica), false),
        replica_of("pdx", CacheLink::StableSync),
    );
    let fifth = run(&snap, 30_000);
    assert_eq!(
        fifth.cache_actions,
        vec![
            label("pdx", CacheRole::Master, false),
            CacheAction::Takeover { site: "iad".into() },
        ]
    );
    assert_never_two_masters(&snap, &fifth.cache_actions);
}

#[test]
fn a_master_that_restarted_empty_yields_to_the_replica_that_kept_the_data() {
    // iad restarted (new replid); pdx broke replication and is a master with the data.
    let mut snap = settled();
    cache(&mut snap, "iad").probe = master("r-new");
    cache(&mut snap, "pdx").probe = master("p1");
    let decision = run(&snap, 20_000);
    assert_eq!(dragonfly(&decision).master_site.as_deref(), Some("pdx"));
    let mv = dragonfly(&decision).takeover.clone().unwrap();
    assert_eq!(mv.result.as_deref(), Some("Succeeded"));
    assert_eq!(mv.method, None);
    assert_eq!(mv.sessions_preserved, Some(false));
    // Labels follow in the same decision, the old master shed first.
    assert_eq!(
        decision.cache_actions,
        vec![
            label("iad", CacheRole::Replica, false),
            label("pdx", CacheRole::Master, true),
            CacheAction::ReplicaOf {
                site: "iad".into(),
                master: "pdx".into()
            },
        ]
    );
    assert_never_two_masters(&snap, &decision.cache_actions);
    // Without a replica that kept a copy, the restarted master stays (the loss is said).
    let mut snap = settled();
    cache(&mut snap, "iad").probe = master("r-new");
    cache(&mut snap, "pdx").probe = replica_of("iad", CacheLink::FullSync);
    let decision = run(&snap, 20_000);
    assert_eq!(dragonfly(&decision).master_site.as_deref(), Some("iad"));
    assert_eq!(dragonfly(&decision).master_replid.as_deref(), Some("r-new"));
    assert!(
        decision
            .events
            .iter()
            .any(|e| e.reason == EventReason::DragonflyDegraded)
    );
}

fn planned_to_pdx(snap: &mut Snapshot, phase: PlannedFailoverPhase) {
    snap.status.planned_failover = Some(crate::api::PlannedFailoverStatus {
        target: "pdx".into(),
        from: Some("iad".into()),
        phase,
        message: None,
        started_at: Some(crate::engine::testkit::at(0).wall.into()),
        fenced_at: None,
        completed_at: None,
        write_unavailable_ms: None,
        dragonfly: None,
    });
}

fn phase(decision: &Decision) -> PlannedFailoverPhase {
    decision
        .status
        .as_ref()
        .unwrap()
        .planned_failover
        .as_ref()
        .unwrap()
        .phase
}

#[test]
fn planned_failover_moves_the_cache_by_repltakeover_before_mysql_promotes() {
    let mut snap = settled();
    planned_to_pdx(&mut snap, PlannedFailoverPhase::WaitingForDragonflySync);
    // pdx is in stable sync: on to PromotingDragonfly, whose move starts at once.
    let first = run(&snap, 20_000);
    assert_eq!(phase(&first), PlannedFailoverPhase::PromotingDragonfly);
    assert_eq!(
        first.cache_actions,
        vec![
            label("iad", CacheRole::Master, false),
            CacheAction::Takeover { site: "pdx".into() },
        ]
    );
    assert_never_two_masters(&snap, &first.cache_actions);
    // MySQL is not fenced yet.
    assert!(
        !first
            .actions
            .iter()
            .any(|a| matches!(a, crate::engine::Action::Fence { .. }))
    );
    // The takeover ran: pdx is master, iad shut down (not answering).
    carry(&mut snap, &first);
    cache(&mut snap, "iad").pod = pod(Some(CacheRole::Master), false);
    cache(&mut snap, "iad").probe = CacheProbe::Failing {
        since: Millis(20_100),
    };
    cache(&mut snap, "pdx").probe = master("p2");
    let second = run(&snap, 21_000);
    let mv = dragonfly(&second).takeover.clone().unwrap();
    assert_eq!(mv.sessions_preserved, Some(true));
    assert_eq!(mv.method.as_deref(), Some(METHOD_TAKEOVER));
    // Labels: iad stays shed (replica), pdx gets master and traffic.
    assert_eq!(
        second.cache_actions,
        vec![
            label("iad", CacheRole::Replica, false),
            label("pdx", CacheRole::Master, true),
        ]
    );
    assert!(second.metrics.contains(&MetricIntent::DragonflyTakeover {
        method: METHOD_TAKEOVER,
        succeeded: true
    }));
    // The planned failover records it and goes on to MySQL's Promoting (fence).
    carry(&mut snap, &second);
    let third = run(&snap, 21_100);
    assert_eq!(phase(&third), PlannedFailoverPhase::Promoting);
    let recorded = third
        .status
        .as_ref()
        .unwrap()
        .planned_failover
        .as_ref()
        .unwrap()
        .dragonfly
        .clone()
        .unwrap();
    assert_eq!(recorded.sessions_preserved, Some(true));
    assert_eq!(recorded.method.as_deref(), Some(METHOD_TAKEOVER));
    assert!(
        third
            .actions
            .iter()
            .any(|a| matches!(a, crate::engine::Action::Fence { site } if site == "iad"))
    );
}

#[test]
fn a_failed_takeover_falls_back_to_replicaof_no_one_and_mysql_carries_on() {
    let mut snap = settled();
    planned_to_pdx(&mut snap, PlannedFailoverPhase::PromotingDragonfly);
    let first = run(&snap, 20_000);
    assert!(
        first
            .cache_actions
            .contains(&CacheAction::Takeover { site: "pdx".into() })
    );
    // REPLTAKEOVER failed: pdx is still a replica, iad still master (shed).
    carry(&mut snap, &first);
    cache(&mut snap, "iad").pod = pod(Some(CacheRole::Master), false);
    let second = run(&snap, 26_000);
    assert_eq!(
        second.cache_actions,
        vec![
            label("iad", CacheRole::Master, false),
            CacheAction::PromoteInPlace { site: "pdx".into() },
        ]
    );
    assert!(
        second
            .events
            .iter()
            .any(|e| e.reason == EventReason::DragonflyTakeoverFailed)
    );
    carry(&mut snap, &second);
    cache(&mut snap, "pdx").probe = master("p3");
    let third = run(&snap, 26_500);
    let mv = dragonfly(&third).takeover.clone().unwrap();
    assert_eq!(mv.method.as_deref(), Some(METHOD_NO_ONE));
    assert_eq!(mv.sessions_preserved, Some(false));
    carry(&mut snap, &third);
    let fourth = run(&snap, 26_600);
    assert_eq!(phase(&fourth), PlannedFailoverPhase::Promoting);
    let recorded = fourth
        .status
        .as_ref()
        .unwrap()
        .planned_failover
        .as_ref()
        .unwrap();
    assert_eq!(
        recorded.dragonfly.as_ref().unwrap().sessions_preserved,
        Some(false)
    );
}

#[test]
fn an_unreachable_target_cache_never_blocks_the_planned_failover_beyond_the_budget() {
    let mut snap = settled();
    cache(&mut snap, "pdx").probe = CacheProbe::Failing {
        since: Millis(15_000),
    };
    planned_to_pdx(&mut snap, PlannedFailoverPhase::WaitingForDragonflySync);
    let first = run(&snap, 20_000);
    assert_eq!(phase(&first), PlannedFailoverPhase::WaitingForDragonflySync);
    carry(&mut snap, &first);
    // After the budget: on to PromotingDragonfly.
    let second = run(&snap, 30_001);
    assert_eq!(phase(&second), PlannedFailoverPhase::PromotingDragonfly);
    carry(&mut snap, &second);
    let mut at = 30_100;
    let mut last = run(&snap, at);
    while phase(&last) == PlannedFailoverPhase::PromotingDragonfly && at < 60_000 {
        carry(&mut snap, &last);
        at += 500;
        last = run(&snap, at);
    }
    assert_eq!(
        phase(&last),
        PlannedFailoverPhase::Promoting,
        "stuck at {at}"
    );
    assert!(
        at - 30_001 <= 12_500,
        "PromotingDragonfly took {}ms",
        at - 30_001
    );
    let recorded = last
        .status
        .as_ref()
        .unwrap()
        .planned_failover
        .as_ref()
        .unwrap();
    assert_eq!(
        recorded.dragonfly.as_ref().unwrap().sessions_preserved,
        Some(false)
    );
    // Nothing reached pdx: the record says so rather than leaving the method out.
    assert_eq!(
        recorded.dragonfly.as_ref().unwrap().method.as_deref(),
        Some(METHOD_NONE)
    );
    // The cache master stayed where it was.
    assert_eq!(dragonfly(&last).master_site.as_deref(), Some("iad"));
}

#[test]
fn without_dragonfly_the_planned_failover_passes_its_phases_at_once() {
    let mut snap = healthy_pair();
    planned_to_pdx(&mut snap, PlannedFailoverPhase::WaitingForLag);
    let decision = run(&snap, 20_000);
    assert_eq!(phase(&decision), PlannedFailoverPhase::Promoting);
}

#[test]
fn a_realignment_waits_for_stable_sync_and_keeps_a_healthy_master_on_failure() {
    // MySQL moved to pdx (an emergency): the cache master is still iad, intact.
    let mut snap = settled();
    let txns = crate::engine::testkit::iad_txns(10);
    snap.sites = vec![
        crate::engine::testkit::replica_of("iad", "pdx", txns.clone()),
        crate::engine::testkit::writable("pdx", txns),
    ];
    snap.lease = crate::engine::testkit::lease_held_by(Some("pdx"), "200", 19_000);
    snap.status.active_site = Some("pdx".into());
    snap.dns_target = Some("pdx".into());
    cache(&mut snap, "pdx").probe = replica_of("iad", CacheLink::FullSync);
    let waiting = run(&snap, 20_000);
    assert!(
        waiting.cache_actions.is_empty(),
        "{:?}",
        waiting.cache_actions
    );
    cache(&mut snap, "pdx").probe = replica_of("iad", CacheLink::StableSync);
    let first = run(&snap, 20_500);
    assert_eq!(
        first.cache_actions,
        vec![
            label("iad", CacheRole::Master, false),
            CacheAction::Takeover { site: "pdx".into() },
        ]
    );
    // The takeover failed and iad is intact: the master stays at iad (no NO ONE).
    carry(&mut snap, &first);
    cache(&mut snap, "iad").pod = pod(Some(CacheRole::Master), false);
    let second = run(&snap, 22_000);
    let mv = dragonfly(&second).takeover.clone().unwrap();
    assert_eq!(mv.result.as_deref(), Some("Failed"));
    assert_eq!(dragonfly(&second).master_site.as_deref(), Some("iad"));
    // In the same decision iad gets its traffic back (pdx shed first).
    assert_eq!(
        second.cache_actions,
        vec![
            label("pdx", CacheRole::Replica, false),
            label("iad", CacheRole::Master, true),
        ]
    );
    assert_never_two_masters(&snap, &second.cache_actions);
    // The move is retried only after the budget.
    carry(&mut snap, &second);
    cache(&mut snap, "iad").pod = pod(Some(CacheRole::Master), true);
    let third = run(&snap, 25_000);
    assert!(third.cache_actions.is_empty(), "{:?}", third.cache_actions);
    let fourth = run(&snap, 32_500);
    assert!(
        fourth
            .cache_actions
            .contains(&CacheAction::Takeover { site: "pdx".into() }),
        "{:?}",
        fourth.cache_actions
    );
}

#[test]
fn a_restarted_master_is_not_accepted_while_its_replica_may_still_break_away() {
    // iad restarted (new replid); pdx has not noticed yet (reconnecting). Repointing pdx
    // now would wipe its copy: hold still for one detection window.
    let mut snap = settled();
    cache(&mut snap, "iad").probe = master("r-new");
    cache(&mut snap, "iad").pod = pod(None, false);
    cache(&mut snap, "pdx").probe = replica_of("iad", CacheLink::Connecting);
    let first = run(&snap, 20_000);
    assert!(first.cache_actions.is_empty(), "{:?}", first.cache_actions);
    assert_eq!(dragonfly(&first).master_replid.as_deref(), Some("r1"));
    // pdx broke away with the data: it becomes master.
    carry(&mut snap, &first);
    cache(&mut snap, "pdx").probe = master("p1");
    let second = run(&snap, 21_000);
    assert_eq!(dragonfly(&second).master_site.as_deref(), Some("pdx"));
    assert!(
        !second.cache_actions.contains(&CacheAction::ReplicaOf {
            site: "pdx".into(),
            master: "iad".into()
        }),
        "{:?}",
        second.cache_actions
    );
    // Had it not broken away within the window, the restart is accepted and said.
    carry(&mut snap, &first);
    cache(&mut snap, "pdx").probe = replica_of("iad", CacheLink::Connecting);
    let late = run(&snap, 26_000);
    assert_eq!(dragonfly(&late).master_replid.as_deref(), Some("r-new"));
    assert!(
        late.events
            .iter()
            .any(|e| e.reason == EventReason::DragonflyDegraded)
    );
}

#[test]
fn a_dragonfly_exiting_at_start_up_is_reported_once_not_silently() {
    let mut snap = settled();
    let first = run(&snap, 20_000);
    assert_eq!(dragonfly(&first).reason.as_deref(), Some("Ready"));
    carry(&mut snap, &first);
    // pdx's container exits at start-up (e.g. its S3 snapshot bucket is missing).
    let pdx = cache(&mut snap, "pdx");
    pdx.pod.ready = false;
    pdx.pod.start_failure =
        Some("exit code 1: snapshot dir s3://cache-snapshots: NoSuchBucket".into());
    pdx.probe = CacheProbe::Failing {
        since: Millis(20_500),
    };
    let second = run(&snap, 21_000);
    let status = dragonfly(&second);
    assert_eq!(status.ready, Some(false));
    assert_eq!(status.reason.as_deref(), Some(REASON_STARTUP_FAILING));
    let message = status.message.as_deref().unwrap();
    assert!(
        message.contains("pdx") && message.contains("NoSuchBucket"),
        "{message}"
    );
    let startup_events = |d: &Decision| {
        d.events
            .iter()
            .filter(|e| e.reason == EventReason::DragonflyStartupFailed)
            .count()
    };
    assert_eq!(startup_events(&second), 1);
    // The master is not moved because a replica cannot start.
    assert_eq!(status.master_site.as_deref(), Some("iad"));
    carry(&mut snap, &second);
    let third = run(&snap, 23_000);
    assert_eq!(startup_events(&third), 0, "one Event per episode");
    assert_eq!(
        dragonfly(&third).reason.as_deref(),
        Some(REASON_STARTUP_FAILING)
    );
}
