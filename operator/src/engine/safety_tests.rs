//! Cross-cutting decision tables: the unsafe cases the engine must never allow, and a
//! randomized world in which no sequence of snapshots yields a promotion while
//! another site may still be writable under the lease rules.

use super::testkit::*;
use super::*;

#[test]
fn never_acts_without_leadership() {
    let mut snap = healthy_pair();
    snap.leadership = Leadership::NotLeader;
    // Everything that would normally trigger action: primary long gone, annotations,
    // wrong labels, wrong DNS.
    snap.sites[0] = silent("iad", 0);
    snap.annotations.planned_failover = Some("pdx".into());
    snap.annotations.reclone_site = Some("pdx:61553741".into());
    snap.dns_target = None;
    let d = run(&snap, 60_000);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(d.events.is_empty());
    assert!(d.status.is_none(), "a follower writes no status");
}

#[test]
fn split_brain_fences_the_site_without_the_lease_and_says_so_once() {
    let mut snap = healthy_pair();
    snap.sites[1] = writable("pdx", iad_txns(10));
    let d = run(&snap, 12_000);
    assert_eq!(d.actions[0], Action::Fence { site: "pdx".into() });
    assert!(
        !d.actions.contains(&Action::Fence { site: "iad".into() }),
        "the holder stays"
    );
    assert!(promotions(&d).is_empty());
    assert_eq!(
        reasons(&d)[..2],
        [EventReason::SplitBrainDetected, EventReason::SiteFenced]
    );
    assert_eq!(d.metrics, [MetricIntent::SplitBrainDetected]);
    assert_eq!(status(&d).health, Some(Health::SplitBrain));
    carry(&mut snap, &d);
    let d = run(&snap, 13_000);
    assert!(
        !reasons(&d).contains(&EventReason::SplitBrainDetected),
        "announced once"
    );
    assert!(d.metrics.is_empty());
    assert_eq!(
        d.actions[0],
        Action::Fence { site: "pdx".into() },
        "still fenced until it is"
    );
}

#[test]
fn a_writable_site_without_the_lease_is_fenced_even_alone() {
    let mut snap = healthy_pair();
    snap.lease = lease_held_by(Some("pdx"), "300", 11_000);
    snap.sites[1] = replica_of("pdx", "iad", iad_txns(10));
    // iad is writable but pdx holds the lease (moved by a failover iad missed).
    let d = run(&snap, 12_000);
    assert!(
        d.actions.contains(&Action::Fence { site: "iad".into() }),
        "{:?}",
        d.actions
    );
    assert!(
        promotions(&d).is_empty(),
        "no promotion while iad is still writable"
    );
}

#[test]
fn never_promotes_a_less_advanced_site_while_a_better_one_answers() {
    // Three sites, primary iad gone: lax has received more than ord.
    let mut snap = healthy_pair();
    snap.sites = vec![
        silent("iad", 11_000),
        replica_of("ord", "iad", iad_txns(8)),
        replica_of("lax", "iad", iad_txns(9)),
    ];
    for s in &mut snap.sites[1..] {
        if let MysqlProbe::Answered(m) = &mut s.probe {
            m.replication.as_mut().unwrap().io_running = false;
        }
    }
    snap.dns_target = Some("iad".into());
    // The operator last saw 9 transactions on iad: lax has them all, ord does not.
    snap.status.sites = vec![
        seen_with("iad", &iad_txns(9)),
        seen_with("ord", &iad_txns(8)),
        seen_with("lax", &iad_txns(9)),
    ];
    let d = run(&snap, 16_000);
    assert_eq!(status(&d).emergency_failover.as_ref().unwrap().to, "lax");
    let d = run(&snap, 17_000);
    assert!(promotions(&d).iter().all(|p| p == "lax"), "{:?}", d.actions);

    // Had it seen 10, neither has everything: nobody is promoted without a person's
    // confirmation, and the one offered for confirmation is the more advanced lax.
    snap.status.sites[0] = seen_with("iad", &iad_txns(10));
    let d = run(&snap, 17_000);
    assert!(status(&d).emergency_failover.is_none());
    assert!(promotions(&d).is_empty(), "{:?}", d.actions);
    assert_eq!(reasons(&d), [EventReason::FailoverBlocked]);
    assert!(
        d.events[0]
            .message
            .contains(&format!("{FORCE_FAILOVER_ANNOTATION}=lax:1")),
        "{}",
        d.events[0].message
    );
}

/// A small world for the randomized check: two sites whose sidecars follow the lease
/// rules on a shared clock, an API server holding the Lease, and the operator calling
/// `decide` with its own lease tracking and memory, restarting at random.
mod world {
    use super::super::lease::{LeaseRecord, LeaseSighting, SidecarLease};
    use super::super::testkit::*;
    use super::super::*;
    use crate::gtid::GtidSet;
    use proptest::prelude::*;

    const SITES: [&str; 2] = ["iad", "pdx"];

    #[derive(Debug, Clone)]
    pub(super) enum Fault {
        Tick(u64),
        ToggleUp(usize),
        ToggleOperatorLink(usize),
        ToggleApiLink(usize),
        LoseNextRenewalResponse(usize),
        RestartOperator,
        PlannedFailoverStatus(usize),
        /// The site stops (or resumes) receiving from its source while its IO thread
        /// still shows running: a replica falling silently behind.
        ToggleReplicationLink(usize),
    }

    pub(super) fn faults() -> impl Strategy<Value = Vec<Fault>> {
        let fault = prop_oneof![
            6 => (50u64..1_500).prop_map(Fault::Tick),
            1 => (0usize..2).prop_map(Fault::ToggleUp),
            1 => (0usize..2).prop_map(Fault::ToggleOperatorLink),
            1 => (0usize..2).prop_map(Fault::ToggleApiLink),
            1 => (0usize..2).prop_map(Fault::LoseNextRenewalResponse),
            1 => Just(Fault::RestartOperator),
            1 => (0usize..2).prop_map(Fault::PlannedFailoverStatus),
            1 => (0usize..2).prop_map(Fault::ToggleReplicationLink),
        ];
        prop::collection::vec(fault, 1..150)
    }

    struct Site {
        up: bool,
        operator_link: bool,
        api_link: bool,
        super_read_only: bool,
        executed: GtidSet,
        source: Option<usize>,
        replication_stalled: bool,
        /// Everything the operator's probes saw committed while this site was writable:
        /// what its clients were told was durable.
        seen_while_writable: GtidSet,
        sidecar: SidecarLease,
        lose_next_response: bool,
        failing_since: Option<u64>,
        /// The operator's last probe of this site, reused until the next probe is due:
        /// a real operator decides on probes up to one probe interval old.
        last_probe: Option<MysqlProbe>,
        last_probe_at: Option<u64>,
    }

    struct Lease {
        holder: Option<usize>,
        version: u64,
        /// The operator's writable grant to the holder (the annotation on the Lease):
        /// the holder's sidecar lifts its fence only while it stands.
        granted: bool,
    }

    /// How often the world's operator probes each site.
    const PROBE_INTERVAL_MS: u64 = 1_000;

    pub(super) fn run_world(faults: Vec<Fault>) -> Result<u64, TestCaseError> {
        let knobs = knobs();
        let mut now = 0u64;
        let mut sites: Vec<Site> = (0..2)
            .map(|_| Site {
                up: true,
                operator_link: true,
                api_link: true,
                super_read_only: true,
                executed: GtidSet::new(),
                source: None,
                replication_stalled: false,
                seen_while_writable: GtidSet::new(),
                sidecar: SidecarLease::default(),
                lose_next_response: false,
                failing_since: None,
                last_probe: None,
                last_probe_at: None,
            })
            .collect();
        let mut lease = Lease {
            holder: None,
            version: 0,
            granted: false,
        };
        let mut sighting: Option<LeaseSighting> = None;
        let mut status = MysqlFailoverGroupStatus::default();
        let mut memory = EngineMemory::default();
        let mut annotation: Option<String> = None;
        let mut promotions = 0u64;

        for fault in faults {
            match fault {
                Fault::Tick(ms) => now += ms,
                Fault::ToggleUp(i) => {
                    sites[i].up = !sites[i].up;
                    // Every mysqld starts with super_read_only=ON.
                    sites[i].super_read_only = true;
                    sites[i].source = None;
                }
                Fault::ToggleOperatorLink(i) => sites[i].operator_link = !sites[i].operator_link,
                Fault::ToggleApiLink(i) => sites[i].api_link = !sites[i].api_link,
                Fault::LoseNextRenewalResponse(i) => sites[i].lose_next_response = true,
                Fault::RestartOperator => {
                    sighting = None;
                    memory = EngineMemory::default();
                }
                Fault::PlannedFailoverStatus(i) => annotation = Some(SITES[i].to_string()),
                Fault::ToggleReplicationLink(i) => {
                    sites[i].replication_stalled = !sites[i].replication_stalled;
                }
            }

            // Sidecars renew while their site holds the lease, and fence themselves.
            for (i, site) in sites.iter_mut().enumerate() {
                if !site.up {
                    continue;
                }
                if site.api_link {
                    if lease.holder == Some(i) {
                        lease.version += 1;
                        if !std::mem::take(&mut site.lose_next_response) {
                            site.sidecar.renewal_succeeded(Millis(now));
                        }
                    } else {
                        site.sidecar.holdership_lost();
                    }
                }
                if !site.sidecar.may_write(&knobs.lease, Millis(now)) {
                    site.super_read_only = true;
                }
            }
            // A holder's sidecar lifts its fence after a fresh renewal while the grant
            // stands. The safety property: at the moment a site becomes writable, no
            // other site is.
            for i in 0..2 {
                let may_lift = sites[i].up
                    && sites[i].api_link
                    && lease.holder == Some(i)
                    && lease.granted
                    && sites[i].super_read_only
                    && sites[i].sidecar.may_write(&knobs.lease, Millis(now));
                if may_lift {
                    let other = 1 - i;
                    prop_assert!(
                        !sites[other].up || sites[other].super_read_only,
                        "{} became writable at {now}ms while {} is writable",
                        SITES[i],
                        SITES[other]
                    );
                    // And no transaction the operator saw committed on the other site
                    // is missing here (a stale replica is never promoted on its own).
                    let missing = sites[other]
                        .seen_while_writable
                        .subtract(&sites[i].executed);
                    prop_assert!(
                        missing.is_empty(),
                        "{} became writable at {now}ms without {} transaction(s) seen \
                         committed on {}",
                        SITES[i],
                        missing.count(),
                        SITES[other]
                    );
                    sites[i].super_read_only = false;
                    promotions += 1;
                }
            }
            // Writes and replication.
            for i in 0..2 {
                if sites[i].up && !sites[i].super_read_only {
                    let next = sites[i].executed.next_gno(uuid_of(SITES[i]));
                    sites[i].executed.insert(uuid_of(SITES[i]), next);
                }
                if let Some(src) = sites[i]
                    .source
                    .filter(|s| sites[*s].up && !sites[i].replication_stalled)
                {
                    let received = sites[src].executed.clone();
                    sites[i].executed = sites[i].executed.union(&received);
                }
            }

            // The operator observes (the API server is always reachable from it).
            let record = match lease.holder {
                Some(h) => LeaseRecord {
                    holder: Some(SITES[h].to_string()),
                    renew_time: Some(format!("r{}", lease.version)),
                    resource_version: Some(lease.version.to_string()),
                    declared_duration: Some(knobs.lease.duration()),
                    holder_granted: lease.granted,
                },
                None => LeaseRecord::absent(),
            };
            let seen = LeaseSighting::observe(sighting.as_ref(), record, Millis(now));
            sighting = Some(seen.clone());
            let observed: Vec<SiteObservation> = (0..2)
                .map(|i| {
                    let site = &mut sites[i];
                    let due = site
                        .last_probe_at
                        .is_none_or(|at| now >= at + PROBE_INTERVAL_MS);
                    let probe = if !due {
                        site.last_probe
                            .clone()
                            .unwrap_or(MysqlProbe::Failing { since: Millis(now) })
                    } else if site.up && site.operator_link {
                        site.failing_since = None;
                        if !site.super_read_only {
                            site.seen_while_writable =
                                site.seen_while_writable.union(&site.executed);
                        }
                        MysqlProbe::Answered(MysqlObservation {
                            read_only: site.super_read_only,
                            super_read_only: site.super_read_only,
                            gtid_executed: site.executed.clone(),
                            server_uuid: uuid_of(SITES[i]).to_string(),
                            replication: site.source.map(|s| ReplicationObservation {
                                source_site: Some(SITES[s].to_string()),
                                auto_position: true,
                                io_running: true,
                                sql_running: true,
                                retrieved: site.executed.clone(),
                                lag_seconds: Some(0),
                                last_io_error: None,
                                last_sql_error: None,
                            }),
                            semisync_source_active: false,
                            clone_status: None,
                            probed_at: Millis(now),
                        })
                    } else {
                        let since = *site.failing_since.get_or_insert(now);
                        MysqlProbe::Failing {
                            since: Millis(since),
                        }
                    };
                    if due {
                        site.last_probe = Some(probe.clone());
                        site.last_probe_at = Some(now);
                    }
                    SiteObservation {
                        name: SITES[i].to_string(),
                        probe,
                        pod: PodObservation {
                            exists: true,
                            ready: site.up,
                            role_label: None,
                            ..Default::default()
                        },
                        last_seen: LastSeenGtids::recorded(&status, SITES[i]),
                    }
                })
                .collect();
            let snap = Snapshot {
                leadership: Leadership::Leader,
                knobs,
                sites: observed,
                lease: seen,
                status: status.clone(),
                annotations: Annotations {
                    planned_failover: annotation.take(),
                    reclone_site: None,
                    force_failover: None,
                    restore_in_progress: None,
                },
                dns_target: None,
                memory: memory.clone(),
                dragonfly: None,
            };
            let decision = decide(&snap, at(now));
            if let Some(s) = &decision.status {
                status = s.clone();
            }
            memory = decision.memory.clone();

            // The controller carries out the actions in order, stopping at a failure.
            for action in &decision.actions {
                let ok = match action {
                    Action::MoveLease {
                        to,
                        expected_resource_version,
                    } => {
                        let current = lease.holder.map(|_| lease.version.to_string());
                        if *expected_resource_version == current {
                            lease.holder = SITES.iter().position(|s| s == to);
                            lease.version += 1;
                            lease.granted = false;
                            true
                        } else {
                            false
                        }
                    }
                    Action::Promote { site } => {
                        // As the controller does: replication reset, then the writable
                        // grant on the Lease; the holder's sidecar lifts the fence.
                        let i = SITES.iter().position(|s| s == site).unwrap();
                        if sites[i].up && sites[i].operator_link && lease.holder == Some(i) {
                            sites[i].source = None;
                            if !lease.granted {
                                lease.granted = true;
                                lease.version += 1;
                            }
                            true
                        } else {
                            false
                        }
                    }
                    Action::Fence { site } => {
                        // As the controller does: withdraw the grant first, then
                        // super_read_only=ON (which fails when the site is unreachable).
                        let i = SITES.iter().position(|s| s == site).unwrap();
                        if lease.holder == Some(i) && lease.granted {
                            lease.granted = false;
                            lease.version += 1;
                        }
                        if sites[i].up && sites[i].operator_link {
                            sites[i].super_read_only = true;
                            true
                        } else {
                            false
                        }
                    }
                    Action::ConfigureReplica { site, source } => {
                        let i = SITES.iter().position(|s| s == site).unwrap();
                        sites[i].source = SITES.iter().position(|s| s == source);
                        true
                    }
                    Action::Clone { .. }
                    | Action::StartReplica { .. }
                    | Action::SetRoleLabel { .. }
                    | Action::UpdateDns { .. }
                    | Action::RemoveAnnotation { .. } => true,
                };
                if !ok {
                    break;
                }
            }
            let writable: Vec<&str> = (0..2)
                .filter(|i| sites[*i].up && !sites[*i].super_read_only)
                .map(|i| SITES[i])
                .collect();
            prop_assert!(
                writable.len() <= 1,
                "two writable sites at {now}ms: {writable:?}"
            );
        }
        Ok(promotions)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn no_fault_schedule_yields_two_writers(faults in faults()) {
            run_world(faults)?;
        }
    }

    /// A replica that fell silently behind is not promoted when the primary crashes;
    /// the primary coming back resumes with everything.
    #[test]
    fn the_world_does_not_promote_a_stale_replica() {
        let mut faults = vec![Fault::Tick(1_000); 10];
        faults.push(Fault::ToggleReplicationLink(1));
        faults.extend(vec![Fault::Tick(1_000); 3]);
        faults.push(Fault::ToggleUp(0));
        faults.extend(vec![Fault::Tick(1_000); 30]);
        assert_eq!(run_world(faults.clone()).unwrap(), 1, "bootstrap only");
        faults.push(Fault::ToggleUp(0));
        faults.extend(vec![Fault::Tick(1_000); 15]);
        assert_eq!(run_world(faults).unwrap(), 2, "iad resumes");
    }

    /// The world is not vacuous: a plain crash of the primary leads to a promotion of
    /// the other site.
    #[test]
    fn the_world_does_fail_over() {
        let mut faults = vec![Fault::Tick(1_000); 10];
        faults.push(Fault::ToggleUp(0));
        faults.extend(vec![Fault::Tick(1_000); 15]);
        assert_eq!(run_world(faults).unwrap(), 2, "bootstrap, then failover");
    }
}
