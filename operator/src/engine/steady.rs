//! Steady state: the active site holds the lease and is writable, every other site
//! replicates from it with auto-position (or waits for recovery), labels and DNS
//! follow the primary. Also where an unreachable primary turns into a failover.

use super::decision::{Action, EventIntent, EventReason, Role};
use super::{Ctx, emergency, recovery};

pub(super) fn step(ctx: &mut Ctx<'_>) {
    let snap = ctx.snap;
    let Some(active) = ctx.status.active_site.clone() else {
        return;
    };
    let plan_in_progress = ctx.status.planned_in_progress().is_some();

    // The lease is the truth about who may write. A holder other than the recorded
    // active site (an outside edit, or a status write that was lost) wins.
    if !plan_in_progress
        && let Some(holder) = snap
            .lease_holder()
            .filter(|h| *h != active && snap.site(h).is_some())
    {
        ctx.note(format!(
            "the writer lease names {holder}, not {active}: {holder} is the active site"
        ));
        ctx.status.active_site = Some(holder.to_string());
        return step(ctx);
    }

    let Some(primary) = snap.site(&active) else {
        ctx.note(format!("active site {active} is not in the spec"));
        return;
    };

    if primary.reachable() {
        // A planned failover fences the primary on purpose; otherwise a reachable
        // active site that is not writable (its sidecar fenced it during an API
        // outage, or a promotion did not finish) is re-granted the lease and lifted.
        if !primary.writable() && !plan_in_progress && !ctx.promote(&active) {
            ctx.deadline(super::fencing::lease_expiry(snap));
            ctx.note(format!(
                "{active} is read-only; waiting until it may take the lease"
            ));
        }
        let others: Vec<String> = snap
            .sites
            .iter()
            .filter(|s| s.name != active)
            .map(|s| s.name.clone())
            .collect();
        for site in others {
            recovery::classify(ctx, &site, &active);
        }
        return;
    }

    if plan_in_progress {
        return;
    }
    let window = snap.knobs.detection_window;
    if primary.unreachable_for(window, ctx.now.mono) {
        emergency::start(ctx, &active);
    } else if let Some(at) = primary.unreachable_deadline(window) {
        // Within the detection window the primary may come back with every committed
        // transaction; failing over now could lose some.
        ctx.deadline(at);
        ctx.note(format!(
            "primary {active} is not answering; failover if it stays silent until {at}"
        ));
    }
}

/// Pod role labels and the DNSEndpoint follow the writable active site.
pub(super) fn converge_labels_and_dns(ctx: &mut Ctx<'_>) {
    let snap = ctx.snap;
    let active = ctx.status.active_site.clone();
    let serving = active
        .as_deref()
        .filter(|a| snap.site(a).is_some_and(|s| s.writable()));
    for site in &snap.sites {
        if !site.pod.exists {
            continue;
        }
        let role = if serving == Some(site.name.as_str()) {
            Role::Primary
        } else {
            Role::Replica
        };
        if site.pod.role_label != Some(role) {
            ctx.act(Action::SetRoleLabel {
                site: site.name.clone(),
                role,
            });
        }
    }
    if let Some(primary) = serving
        && snap.knobs.manage_dns
        && snap.dns_target.as_deref() != Some(primary)
    {
        ctx.act(Action::UpdateDns {
            site: primary.to_string(),
        });
        ctx.event(EventIntent::normal(
            EventReason::DNSUpdated,
            format!(
                "DNS now points at {primary} (was {})",
                snap.dns_target.as_deref().unwrap_or("unset")
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::testkit::*;
    use crate::engine::*;

    #[test]
    fn a_healthy_pair_needs_nothing() {
        let d = run(&healthy_pair(), 12_000);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert!(d.events.is_empty(), "{:?}", d.events);
        assert_eq!(
            status(&d).health,
            Some(Health::Healthy),
            "{}",
            d.health_reason
        );
        assert_eq!(status(&d).sites[0].state, Some(SiteState::Writable));
        assert_eq!(status(&d).sites[1].state, Some(SiteState::ReadOnly));
        assert_eq!(status(&d).sites[1].replicating, Some(true));
    }

    #[test]
    fn the_replica_is_kept_replicating_from_the_primary_with_auto_position() {
        type Edit = fn(&mut ReplicationObservation);
        let configure = Action::ConfigureReplica {
            site: "pdx".into(),
            source: "iad".into(),
        };
        // A channel that already names the primary with auto-position is only
        // restarted: CHANGE REPLICATION SOURCE would purge its relay log.
        let start = Action::StartReplica { site: "pdx".into() };
        let cases: [(&str, Edit, &Action); 6] = [
            (
                "wrong source",
                |r| r.source_site = Some("elsewhere".into()),
                &configure,
            ),
            ("unknown source", |r| r.source_site = None, &configure),
            ("no auto-position", |r| r.auto_position = false, &configure),
            ("IO thread stopped", |r| r.io_running = false, &start),
            ("SQL thread stopped", |r| r.sql_running = false, &start),
            (
                "both threads stopped",
                |r| {
                    r.io_running = false;
                    r.sql_running = false;
                },
                &start,
            ),
        ];
        for (name, edit, expected) in cases {
            let mut snap = healthy_pair();
            edit(replication_mut(&mut snap, "pdx"));
            let d = run(&snap, 12_000);
            assert_eq!(d.actions, std::slice::from_ref(expected), "{name}");
            assert_eq!(status(&d).health, Some(Health::Degraded), "{name}");
        }
        let mut snap = healthy_pair();
        mysql_mut(&mut snap, "pdx").replication = None;
        let d = run(&snap, 12_000);
        assert_eq!(
            d.actions,
            [Action::ConfigureReplica {
                site: "pdx".into(),
                source: "iad".into()
            }]
        );
    }

    #[test]
    fn a_self_fenced_lease_holder_is_lifted_through_a_guarded_lease_write() {
        let mut snap = healthy_pair();
        mysql_mut(&mut snap, "iad").super_read_only = true;
        mysql_mut(&mut snap, "iad").read_only = true;
        let d = run(&snap, 12_000);
        assert_eq!(
            d.actions[..2],
            [
                Action::MoveLease {
                    to: "iad".into(),
                    expected_resource_version: Some("100".into())
                },
                Action::Promote { site: "iad".into() },
            ]
        );
    }

    #[test]
    fn a_primary_silent_within_the_detection_window_is_waited_for() {
        let mut snap = healthy_pair();
        snap.sites[0] = silent("iad", 11_000);
        let d = run(&snap, 15_999);
        assert!(promotions(&d).is_empty());
        assert!(status(&d).emergency_failover.is_none());
        assert_eq!(d.next_deadline, Some(Millis(16_000)));
        // It comes back (a restart with every committed transaction): no failover,
        // nothing to do.
        let d = run(&healthy_pair(), 15_999);
        assert!(d.actions.is_empty());
        assert!(status(&d).emergency_failover.is_none());
    }

    #[test]
    fn labels_and_dns_follow_the_writable_primary() {
        let mut snap = healthy_pair();
        site_mut(&mut snap, "iad").pod.role_label = Some(Role::Replica);
        site_mut(&mut snap, "pdx").pod.role_label = None;
        snap.dns_target = Some("pdx".into());
        let d = run(&snap, 12_000);
        assert_eq!(
            d.actions,
            [
                Action::SetRoleLabel {
                    site: "iad".into(),
                    role: Role::Primary
                },
                Action::SetRoleLabel {
                    site: "pdx".into(),
                    role: Role::Replica
                },
                Action::UpdateDns { site: "iad".into() },
            ]
        );
        assert_eq!(reasons(&d), [EventReason::DNSUpdated]);
    }

    #[test]
    fn the_lease_holder_wins_over_a_stale_active_site() {
        let mut snap = healthy_pair();
        snap.status.active_site = Some("pdx".into());
        let d = run(&snap, 12_000);
        assert_eq!(status(&d).active_site.as_deref(), Some("iad"));
        assert!(promotions(&d).is_empty());
    }
}
