//! Bootstrap: a group without an active site elects one. The most advanced GTID set
//! wins (spec order breaks ties); it is granted the lease and promoted, and the
//! steady state then points the other sites at it.

use std::time::Duration;

use super::Ctx;
use super::election::most_advanced;

/// How long bootstrap waits for a site whose pod is starting before electing among the
/// sites that answer: long enough for an image pull and InnoDB crash recovery, short
/// enough that a new group with one site truly down still gets a primary.
pub(super) const BOOTSTRAP_STARTUP_WAIT: Duration = Duration::from_secs(60);

pub(super) fn step(ctx: &mut Ctx<'_>) {
    let snap = ctx.snap;
    // The lease is the truth about who may write: with a holder already named (the
    // status was lost, or the operator was reinstalled) that site is the active one.
    if let Some(holder) = snap.lease_holder().filter(|h| snap.site(h).is_some()) {
        ctx.status.active_site = Some(holder.to_string());
        ctx.note(format!(
            "adopted {holder}, the writer lease holder, as the active site"
        ));
        return;
    }

    // A silent site may hold the most transactions: wait for every site to answer.
    // A site whose pod is starting on a healthy node (image pull, crash recovery) is
    // waited for up to BOOTSTRAP_STARTUP_WAIT; one without a pod, or on a failed node,
    // for one detection window (it may never come, and the group needs a primary).
    let mut silent = Vec::new();
    for site in &snap.sites {
        let bound = if site.pod.exists && !site.pod.deleting && !site.pod.node_not_ready {
            snap.knobs.detection_window.max(BOOTSTRAP_STARTUP_WAIT)
        } else {
            snap.knobs.detection_window
        };
        if !site.reachable() && !site.unreachable_for(bound, ctx.now.mono) {
            silent.push(site.name.as_str());
            if let Some(at) = site.unreachable_deadline(bound) {
                ctx.deadline(at);
            }
        }
    }
    if !silent.is_empty() {
        ctx.note(format!(
            "bootstrap waits for {} to answer",
            silent.join(", ")
        ));
        return;
    }

    let candidates: Vec<(&str, crate::gtid::GtidSet)> = snap
        .sites
        .iter()
        .filter(|s| ctx.status.recovery_state(&s.name).is_none())
        .filter_map(|s| s.gtid_executed().map(|set| (s.name.as_str(), set.clone())))
        .collect();
    let Some(chosen) = most_advanced(&candidates) else {
        ctx.note("bootstrap: no site answers");
        return;
    };
    if ctx.promote(chosen) {
        ctx.status.active_site = Some(chosen.to_string());
        ctx.note(format!(
            "bootstrap: granting the writer lease to {chosen} and promoting it"
        ));
    } else {
        ctx.deadline(super::fencing::lease_expiry(snap));
        ctx.note(format!(
            "bootstrap: {chosen} has the most advanced GTID set; waiting until the writer \
             lease can safely be granted (no holder may still be writable)"
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::api::{MysqlFailoverGroupStatus, RecoveryState};
    use crate::engine::lease::{LeaseRecord, LeaseSighting};
    use crate::engine::testkit::*;
    use crate::engine::*;

    /// Two freshly booted, read-only sites; no Lease object yet (first seen at 0).
    fn fresh_pair(iad: crate::gtid::GtidSet, pdx: crate::gtid::GtidSet) -> Snapshot {
        let mut snap = healthy_pair();
        snap.sites = vec![fresh("iad", iad), fresh("pdx", pdx)];
        snap.lease = LeaseSighting {
            record: LeaseRecord::absent(),
            seen_change_at: Millis(0),
        };
        snap.status = MysqlFailoverGroupStatus::default();
        snap.dns_target = None;
        snap
    }

    #[test]
    fn elects_grants_promotes_and_points_the_other_site_at_it() {
        let cases = [
            (
                "empty sets: spec order",
                iad_txns(0),
                iad_txns(0),
                "iad",
                "pdx",
            ),
            (
                "equal sets: spec order",
                iad_txns(5),
                iad_txns(5),
                "iad",
                "pdx",
            ),
            ("pdx is ahead", iad_txns(3), iad_txns(5), "pdx", "iad"),
            ("iad is ahead", iad_txns(9), iad_txns(5), "iad", "pdx"),
        ];
        for (name, iad, pdx, winner, other) in cases {
            let d = run(&fresh_pair(iad, pdx), 7_000);
            assert_eq!(
                d.actions[..2],
                [
                    Action::MoveLease {
                        to: winner.into(),
                        expected_resource_version: None
                    },
                    Action::Promote {
                        site: winner.into()
                    },
                ],
                "{name}"
            );
            assert!(
                d.actions.contains(&Action::ConfigureReplica {
                    site: other.into(),
                    source: winner.into()
                }),
                "{name}: {:?}",
                d.actions
            );
            assert_eq!(status(&d).active_site.as_deref(), Some(winner), "{name}");
        }
    }

    #[test]
    fn waits_a_full_lease_duration_plus_margin_before_the_first_grant() {
        // A Lease deleted while someone held it looks exactly like a new one: the
        // former holder's sidecar may be writable until duration - margin after its
        // last renewal, so the first grant waits duration + margin from first sight.
        let d = run(&fresh_pair(iad_txns(0), iad_txns(0)), 6_999);
        assert!(promotions(&d).is_empty(), "{:?}", d.actions);
        assert_eq!(d.next_deadline, Some(Millis(7_000)));
        assert_eq!(status(&d).active_site, None);
        assert_eq!(status(&d).health, Some(Health::NoPrimary));
    }

    #[test]
    fn waits_for_a_starting_site_up_to_the_startup_bound() {
        // pdx's pod exists on a healthy node but mysqld has not answered since 4s.
        let mut snap = fresh_pair(iad_txns(0), iad_txns(0));
        snap.sites[1] = silent("pdx", 4_000);
        let d = run(&snap, 63_999);
        assert!(promotions(&d).is_empty(), "{:?}", d.actions);
        assert!(d.health_reason.contains("bootstrap waits for pdx"));
        assert_eq!(d.next_deadline, Some(Millis(64_000)));
        assert_eq!(promotions(&run(&snap, 64_000)), ["iad"]);
        // It answers in time with more transactions: it wins.
        snap.sites[1] = fresh("pdx", iad_txns(4));
        assert_eq!(promotions(&run(&snap, 20_000)), ["pdx"]);
    }

    #[test]
    fn waits_for_a_site_without_a_healthy_pod_one_detection_window() {
        let mut snap = fresh_pair(iad_txns(0), iad_txns(0));
        snap.sites[1] = silent("pdx", 4_000);
        site_mut(&mut snap, "pdx").pod.node_not_ready = true;
        let d = run(&snap, 8_999);
        assert!(
            d.actions
                .iter()
                .all(|a| !matches!(a, Action::Promote { .. })),
            "{:?}",
            d.actions
        );
        assert_eq!(d.next_deadline, Some(Millis(9_000)));
        let d = run(&snap, 9_000);
        assert_eq!(promotions(&d), ["iad"]);
    }

    #[test]
    fn an_existing_lease_holder_is_adopted_not_replaced() {
        let mut snap = fresh_pair(iad_txns(9), iad_txns(3));
        snap.lease = lease_held_by(Some("pdx"), "5", 0);
        let d = run(&snap, 100);
        assert_eq!(status(&d).active_site.as_deref(), Some("pdx"));
        assert!(
            !promotions(&d).contains(&"iad".to_string()),
            "{:?}",
            d.actions
        );
    }

    #[test]
    fn a_loser_with_transactions_of_its_own_is_recovery_pending_not_rejoined() {
        // iad has 3 transactions pdx lacks; pdx has more in total and wins.
        let mut pdx = crate::gtid::GtidSet::new();
        pdx.add_interval(PDX_UUID, 1, 5);
        let d = run(&fresh_pair(iad_txns(3), pdx), 7_000);
        assert_eq!(promotions(&d), ["pdx"]);
        let iad = recovery(status(&d), "iad").unwrap();
        assert_eq!(iad.state, RecoveryState::RecoveryPending);
        assert_eq!(iad.divergent_transaction_count, 3);
        assert_eq!(iad.reclone_token, "3e11fa47");
        assert!(reasons(&d).contains(&EventReason::DivergenceDetected));
        assert!(
            !d.actions
                .iter()
                .any(|a| matches!(a, Action::ConfigureReplica { .. }))
        );
    }
}
