//! Returning sites, divergence and confirmed reclone. A site whose GTIDs are a subset
//! of the primary's rejoins as a replica; one with extra GTIDs is `RecoveryPending`
//! and stays out until a person confirms a reclone with `<site>:<token>`.

use super::Ctx;
use super::decision::{Action, EventIntent, EventReason};
use super::snapshot::{MysqlObservation, RECLONE_SITE_ANNOTATION, ReplicationObservation};
use super::status::as_i64;
use crate::api::RecoveryState;
use crate::gtid::{GtidSet, reclone_token};
use crate::seams::mysql::CloneState;
use std::time::Duration;

use super::time::Millis;

/// The transactions `site` has that the primary does not. A replica whose IO thread
/// is running from the primary may legitimately be ahead of the primary's probe on
/// the primary's own server UUID (it received a commit made after that probe), so
/// those are not counted for it. Anything else extra is divergence: MySQL itself
/// refuses to replicate to a replica with GTIDs its source lacks.
pub(super) fn divergent(
    site: &MysqlObservation,
    primary_site: &str,
    primary: &MysqlObservation,
) -> GtidSet {
    let extra = site.gtid_executed.subtract(&primary.gtid_executed);
    let receiving_from_primary = site
        .replication
        .as_ref()
        .is_some_and(|r| r.io_running && r.source_site.as_deref() == Some(primary_site));
    if receiving_from_primary {
        // Tagged ones (MySQL 8.4 `uuid:tag:n`) included.
        extra.excluding_uuid(&primary.server_uuid)
    } else {
        extra
    }
}

/// Rejoins, marks or reclones the non-active `site` against the active primary.
/// Called only while the active site answers probes.
pub(super) fn classify(ctx: &mut Ctx<'_>, site_name: &str, active: &str) {
    let snap = ctx.snap;
    let (Some(site), Some(primary)) = (snap.site(site_name), snap.site(active)) else {
        return;
    };
    let (Some(mysql), Some(primary_mysql)) = (site.mysql(), primary.mysql()) else {
        // Unreachable: whatever recovery state it has is kept until it answers.
        return;
    };
    let extra = divergent(mysql, active, primary_mysql);
    match ctx.status.recovery_state(site_name) {
        Some(RecoveryState::RecoveryPending) => {
            // Never rejoined automatically, whatever it looks like now. The divergence
            // reported follows what the site holds now: writes that land after the
            // detection are discarded by the reclone too, and the person confirming it
            // must see them. A site that now looks like a subset keeps its last report.
            if !extra.is_empty() {
                record_divergence(ctx, site_name, &extra);
            }
            ctx.note(format!(
                "{site_name} is RecoveryPending: annotate {RECLONE_SITE_ANNOTATION} to reclone it"
            ));
        }
        Some(RecoveryState::Recloning) => reclone_progress(ctx, site_name, active, &extra),
        None if !extra.is_empty() => mark_diverged(ctx, site_name, active, &extra),
        None => {
            if let Some(repair) = replica_repair(site_name, site.replication(), active) {
                ctx.act(repair);
            }
        }
    }
}

/// How to make `site` replicate from `source`: nothing when both threads run from it
/// with auto-position; only `START REPLICA` when the channel already names it with
/// auto-position (a thread stopped: the relay log holds received transactions that
/// `CHANGE REPLICATION SOURCE` would throw away); otherwise point the channel at it.
pub(super) fn replica_repair(
    site: &str,
    replication: Option<&ReplicationObservation>,
    source: &str,
) -> Option<Action> {
    match replication {
        Some(r) if r.replicates_from(source) => None,
        Some(r) if r.auto_position && r.source_site.as_deref() == Some(source) => {
            Some(Action::StartReplica {
                site: site.to_string(),
            })
        }
        _ => Some(Action::ConfigureReplica {
            site: site.to_string(),
            source: source.to_string(),
        }),
    }
}

fn mark_diverged(ctx: &mut Ctx<'_>, site: &str, active: &str, extra: &GtidSet) {
    let token = extra
        .uuids()
        .next()
        .map(reclone_token)
        .unwrap_or_default()
        .to_string();
    let divergent_gtid = extra.one_line().to_string();
    ctx.event(EventIntent::warning(
        EventReason::DivergenceDetected,
        format!(
            "{site} has {} transaction(s) the primary {active} does not have ({divergent_gtid}); \
             it will not rejoin until a reclone is confirmed with \
             {RECLONE_SITE_ANNOTATION}={site}:{token}",
            extra.count()
        ),
    ));
    ctx.status.site_mut(site).recovery_state = Some(RecoveryState::RecoveryPending);
    record_divergence(ctx, site, extra);
}

/// The site's divergent GTIDs and their count, as the status reports them.
fn record_divergence(ctx: &mut Ctx<'_>, site: &str, extra: &GtidSet) {
    let entry = ctx.status.site_mut(site);
    entry.divergent_gtid = Some(extra.one_line().to_string());
    entry.divergent_transaction_count = Some(as_i64(extra.count()));
}

/// Clears a site's recovery record: it replicates from the primary again.
fn clear_recovery(ctx: &mut Ctx<'_>, site: &str) {
    let entry = ctx.status.site_mut(site);
    entry.recovery_state = None;
    entry.divergent_gtid = None;
    entry.divergent_transaction_count = None;
}

/// How long after a CLONE that failed the operator asks for the next one: long enough
/// not to hammer a donor that refuses, short against a reclone a person asked for.
pub(super) const RECLONE_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The next step of a reclone whose site still holds divergent transactions.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RecloneStep {
    /// Ask the site to CLONE from the primary (first time, or retrying a failure).
    Request,
    /// A CLONE was asked for and has not finished (running, or the server restarting
    /// on the cloned data): keep the request, report `progress`.
    Wait { progress: String },
    /// The last CLONE failed: report it, and ask again at `retry_at`.
    Failed {
        error: u32,
        message: String,
        retry_at: Millis,
    },
}

/// Decides the reclone step from when this process asked for a CLONE (if it did),
/// the site's `performance_schema.clone_status` and the time. A `Failed` row is only
/// believed after a request of ours (a row from an earlier clone says nothing about
/// the next one); `Completed` while the data still diverges means the restart onto
/// the cloned data has not been observed yet.
pub(super) fn reclone_step(
    requested_at: Option<Millis>,
    clone: Option<&CloneState>,
    now: Millis,
) -> RecloneStep {
    let Some(requested_at) = requested_at else {
        return RecloneStep::Request;
    };
    match clone {
        Some(CloneState::Failed { error, message }) => {
            let retry_at = requested_at.plus(RECLONE_RETRY_AFTER);
            if now >= retry_at {
                RecloneStep::Request
            } else {
                RecloneStep::Failed {
                    error: *error,
                    message: message.clone(),
                    retry_at,
                }
            }
        }
        Some(CloneState::InProgress) => RecloneStep::Wait {
            progress: "clone in progress".into(),
        },
        Some(CloneState::Completed) => RecloneStep::Wait {
            progress: "clone completed, waiting for the restarted server".into(),
        },
        Some(CloneState::NotStarted) | None => RecloneStep::Wait {
            progress: "clone requested".into(),
        },
    }
}

/// CLONE from the primary (once per operator process, again 30 s after a CLONE that
/// `performance_schema.clone_status` says failed), then replicate, then clear the
/// recovery state.
fn reclone_progress(ctx: &mut Ctx<'_>, site: &str, active: &str, extra: &GtidSet) {
    ctx.requeue_soon();
    if !extra.is_empty() {
        let clone = ctx
            .snap
            .site(site)
            .and_then(|s| s.mysql())
            .and_then(|m| m.clone_status.as_deref().cloned());
        let requested_at = ctx.clone_requested_at(site);
        match reclone_step(requested_at, clone.as_ref(), ctx.now.mono) {
            RecloneStep::Request => {
                ctx.act(Action::Clone {
                    site: site.to_string(),
                    donor: active.to_string(),
                });
                ctx.mark_clone_requested(site);
                ctx.note(format!("recloning {site} from {active}"));
            }
            RecloneStep::Wait { progress } => {
                if let Some(at) = requested_at {
                    ctx.keep_clone_request(site, at);
                }
                ctx.note(format!("recloning {site} from {active}: {progress}"));
            }
            RecloneStep::Failed {
                error,
                message,
                retry_at,
            } => {
                if let Some(at) = requested_at {
                    ctx.keep_clone_request(site, at);
                }
                ctx.deadline(retry_at);
                ctx.note(format!(
                    "recloning {site} from {active}: the clone failed with error {error} ({message}); retrying"
                ));
            }
        }
        return;
    }
    // The clone replaced the divergent data: the site is now a subset of the primary.
    let replication = ctx.snap.site(site).and_then(|s| s.replication());
    let repair = replica_repair(site, replication, active);
    if let Some(repair) = repair {
        ctx.clone_requested(site);
        ctx.act(repair);
        ctx.note(format!(
            "{site} was recloned; starting replication from {active}"
        ));
    } else {
        clear_recovery(ctx, site);
        ctx.event(EventIntent::normal(
            EventReason::RecloneSucceeded,
            format!("{site} was recloned from {active} and replicates from it"),
        ));
    }
}

/// Handles `reclone-site: <site>:<token>`: the right site and token start a reclone;
/// anything else is refused with a Warning naming what was expected and changes
/// nothing. Either way the annotation is removed.
pub(super) fn handle_reclone_annotation(ctx: &mut Ctx<'_>) {
    let Some(value) = ctx.snap.annotations.reclone_site.clone() else {
        return;
    };
    ctx.act(Action::RemoveAnnotation {
        key: RECLONE_SITE_ANNOTATION,
    });
    match validate_reclone(ctx, &value) {
        Ok((site, donor)) => {
            ctx.status.site_mut(&site).recovery_state = Some(RecoveryState::Recloning);
            ctx.event(EventIntent::normal(
                EventReason::RecloneStarted,
                format!("recloning {site} from {donor}: its divergent transactions are discarded"),
            ));
            ctx.requeue_soon();
        }
        Err(why) => ctx.event(EventIntent::warning(
            EventReason::RecloneRejected,
            format!("{RECLONE_SITE_ANNOTATION}={value} refused: {why}"),
        )),
    }
}

/// Returns (site, donor) or why the request is refused.
fn validate_reclone(ctx: &Ctx<'_>, value: &str) -> Result<(String, String), String> {
    if value.trim().is_empty() {
        return Err("the value is empty; expected <site>:<token>".to_string());
    }
    let Some((site, token)) = value.split_once(':') else {
        return Err("expected <site>:<token>".to_string());
    };
    let (site, token) = (site.trim(), token.trim());
    if ctx.snap.site(site).is_none() {
        return Err(format!(
            "unknown site \"{site}\" (sites: {})",
            site_list(ctx)
        ));
    }
    let Some(recovery) = ctx.status.site(site).filter(|s| s.recovery_state.is_some()) else {
        return Err(format!(
            "site {site} is not RecoveryPending: there is nothing to reclone"
        ));
    };
    if recovery.recovery_state == Some(RecoveryState::Recloning) {
        return Err(format!("site {site} is already being recloned"));
    }
    let expected = recovery.reclone_token().unwrap_or_default();
    if token != expected {
        return Err(format!(
            "wrong token \"{token}\" for site {site}: expected {site}:{expected} (the first \
             segment of divergentGtid {})",
            recovery.divergent_gtid.as_deref().unwrap_or_default()
        ));
    }
    if ctx.status.emergency_failover.is_some() {
        return Err("an emergency failover is in progress".to_string());
    }
    let donor = ctx
        .status
        .active_site
        .clone()
        .filter(|a| ctx.snap.site(a).is_some_and(|s| s.writable()))
        .ok_or_else(|| "no writable primary to clone from".to_string())?;
    Ok((site.to_string(), donor))
}

pub(super) fn site_list(ctx: &Ctx<'_>) -> String {
    ctx.snap
        .sites
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use crate::engine::testkit::*;
    use crate::engine::*;
    use crate::gtid::GtidSet;

    #[test]
    fn a_reclone_reads_clone_status_to_wait_report_and_retry() {
        use super::{RECLONE_RETRY_AFTER, RecloneStep, reclone_step};
        use crate::seams::mysql::CloneState;
        let asked = Millis(10_000);
        let failed = CloneState::Failed {
            error: 3862,
            message: "Clone Donor Error: refused".into(),
        };
        let retry_at = asked.plus(RECLONE_RETRY_AFTER);
        let wait = |progress: &str| RecloneStep::Wait {
            progress: progress.into(),
        };
        type Case = (
            &'static str,
            Option<Millis>,
            Option<CloneState>,
            Millis,
            RecloneStep,
        );
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            ("never asked: ask", None, None, Millis(20_000), RecloneStep::Request),
            ("never asked, an old failure on the server: ask, do not report it", None, Some(failed.clone()), Millis(20_000), RecloneStep::Request),
            ("never asked, an old completed clone: ask", None, Some(CloneState::Completed), Millis(20_000), RecloneStep::Request),
            ("asked, running", Some(asked), Some(CloneState::InProgress), Millis(20_000), wait("clone in progress")),
            ("asked, completed: the server restarts onto the clone", Some(asked), Some(CloneState::Completed), Millis(20_000), wait("clone completed, waiting for the restarted server")),
            ("asked, nothing readable yet", Some(asked), None, Millis(20_000), wait("clone requested")),
            ("asked, not started", Some(asked), Some(CloneState::NotStarted), Millis(20_000), wait("clone requested")),
            ("asked, failed: report it, retry later", Some(asked), Some(failed.clone()), Millis(20_000),
                RecloneStep::Failed { error: 3862, message: "Clone Donor Error: refused".into(), retry_at }),
            ("asked, failed, retry time reached: ask again", Some(asked), Some(failed.clone()), retry_at, RecloneStep::Request),
        ];
        for (case, requested_at, clone, now, expected) in table {
            assert_eq!(
                reclone_step(requested_at, clone.as_ref(), now),
                expected,
                "{case}"
            );
        }
    }

    /// pdx is the primary with IAD's 10 transactions plus 5 of its own; iad returns.
    fn iad_returns(iad_executed: GtidSet) -> Snapshot {
        let mut pdx_set = iad_txns(10);
        pdx_set.add_interval(PDX_UUID, 1, 5);
        let mut snap = healthy_pair();
        snap.sites = vec![fresh("iad", iad_executed), writable("pdx", pdx_set)];
        snap.lease = lease_held_by(Some("pdx"), "200", 10_000);
        snap.status.active_site = Some("pdx".into());
        snap.dns_target = Some("pdx".into());
        site_mut(&mut snap, "iad").pod.role_label = Some(Role::Replica);
        snap
    }

    #[test]
    fn a_subset_rejoins_as_a_replica() {
        let d = run(&iad_returns(iad_txns(10)), 12_000);
        assert_eq!(
            d.actions,
            [Action::ConfigureReplica {
                site: "iad".into(),
                source: "pdx".into()
            }]
        );
        assert!(recovery(status(&d), "iad").is_none());
    }

    #[test]
    fn extra_transactions_mean_recovery_pending_and_never_a_rejoin() {
        let mut snap = iad_returns(iad_txns(12));
        let d = run(&snap, 12_000);
        let pending = recovery(status(&d), "iad").unwrap();
        assert_eq!(pending.state, RecoveryState::RecoveryPending);
        assert_eq!(pending.divergent_gtid, format!("{IAD_UUID}:11-12"));
        assert_eq!(pending.divergent_transaction_count, 2);
        assert_eq!(pending.reclone_token, "3e11fa47");
        assert_eq!(reasons(&d), [EventReason::DivergenceDetected]);
        assert!(
            d.events[0].message.contains("iad:3e11fa47"),
            "{}",
            d.events[0].message
        );
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert_eq!(status(&d).health, Some(Health::Degraded));
        carry(&mut snap, &d);
        // A write that lands after the detection is reported too (the reclone discards
        // it as well), without a second announcement.
        snap.sites[0] = fresh("iad", iad_txns(13));
        site_mut(&mut snap, "iad").pod.role_label = Some(Role::Replica);
        let d = run(&snap, 12_500);
        let pending = recovery(status(&d), "iad").unwrap();
        assert_eq!(pending.state, RecoveryState::RecoveryPending);
        assert_eq!(pending.divergent_gtid, format!("{IAD_UUID}:11-13"));
        assert_eq!(pending.divergent_transaction_count, 3);
        assert_eq!(pending.reclone_token, "3e11fa47");
        assert!(d.events.is_empty(), "announced once: {:?}", d.events);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        carry(&mut snap, &d);
        // Even if it later looks like a subset (someone purged the extras by hand),
        // it stays out until a person confirms the reclone.
        snap.sites[0] = fresh("iad", iad_txns(10));
        site_mut(&mut snap, "iad").pod.role_label = Some(Role::Replica);
        let d = run(&snap, 13_000);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert!(d.events.is_empty(), "announced once: {:?}", d.events);
        let kept = recovery(status(&d), "iad").unwrap();
        assert_eq!(kept.state, RecoveryState::RecoveryPending);
        assert_eq!(kept.divergent_gtid, format!("{IAD_UUID}:11-13"));
        assert_eq!(kept.divergent_transaction_count, 3);
    }

    #[test]
    fn a_replica_receiving_from_the_primary_may_be_ahead_on_the_primary_uuid() {
        // The primary's probe predates the replica's: pdx:6 arrived in between.
        let mut snap = iad_returns(iad_txns(10));
        let mut ahead = iad_txns(10);
        ahead.add_interval(PDX_UUID, 1, 6);
        snap.sites[0] = replica_of("iad", "pdx", ahead);
        let d = run(&snap, 12_000);
        assert!(recovery(status(&d), "iad").is_none());
        assert!(d.actions.is_empty(), "{:?}", d.actions);
    }

    #[test]
    fn reclone_annotation_validation() {
        let mut pending = iad_returns(iad_txns(12));
        with_recovery(
            &mut pending,
            "iad",
            &format!("{IAD_UUID}:11-12"),
            RecoveryState::RecoveryPending,
        );
        let cases = [
            ("malformed", "iad", "expected <site>:<token>"),
            ("empty", "", "the value is empty; expected <site>:<token>"),
            (
                "unknown site",
                "ord:3e11fa47",
                "unknown site \"ord\" (sites: iad, pdx)",
            ),
            (
                "not pending",
                "pdx:61553741",
                "site pdx is not RecoveryPending: there is nothing to reclone",
            ),
            (
                "wrong token",
                "iad:61553741",
                "wrong token \"61553741\" for site iad: expected iad:3e11fa47",
            ),
        ];
        for (name, value, why) in cases {
            let mut snap = pending.clone();
            snap.annotations.reclone_site = Some(value.into());
            let d = run(&snap, 12_000);
            assert_eq!(reasons(&d), [EventReason::RecloneRejected], "{name}");
            assert_eq!(d.events[0].kind, EventKind::Warning);
            assert!(
                d.events[0].message.contains(why),
                "{name}: {}",
                d.events[0].message
            );
            assert_eq!(
                d.actions,
                [Action::RemoveAnnotation {
                    key: RECLONE_SITE_ANNOTATION
                }],
                "{name}"
            );
            assert_eq!(
                recovery(status(&d), "iad"),
                recovery(&pending.status, "iad"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_confirmed_reclone_clones_then_replicates_then_clears() {
        let mut snap = iad_returns(iad_txns(12));
        with_recovery(
            &mut snap,
            "iad",
            &format!("{IAD_UUID}:11-12"),
            RecoveryState::RecoveryPending,
        );
        snap.annotations.reclone_site = Some("iad:3e11fa47".into());
        let d = run(&snap, 12_000);
        assert_eq!(reasons(&d), [EventReason::RecloneStarted]);
        assert_eq!(
            recovery(status(&d), "iad").unwrap().state,
            RecoveryState::Recloning
        );
        assert_eq!(
            d.actions,
            [Action::RemoveAnnotation {
                key: RECLONE_SITE_ANNOTATION
            }]
        );
        carry(&mut snap, &d);

        let d = run(&snap, 12_100);
        assert_eq!(
            d.actions,
            [Action::Clone {
                site: "iad".into(),
                donor: "pdx".into()
            }]
        );
        carry(&mut snap, &d);
        let d = run(&snap, 12_200);
        assert!(d.actions.is_empty(), "clone asked once: {:?}", d.actions);
        carry(&mut snap, &d);

        // Cloned: pdx's data, not replicating yet.
        let mut cloned = iad_txns(10);
        cloned.add_interval(PDX_UUID, 1, 5);
        snap.sites[0] = fresh("iad", cloned.clone());
        site_mut(&mut snap, "iad").pod.role_label = Some(Role::Replica);
        let d = run(&snap, 30_000);
        assert_eq!(
            d.actions,
            [Action::ConfigureReplica {
                site: "iad".into(),
                source: "pdx".into()
            }]
        );
        carry(&mut snap, &d);

        snap.sites[0] = replica_of("iad", "pdx", cloned);
        let d = run(&snap, 31_000);
        assert_eq!(reasons(&d), [EventReason::RecloneSucceeded]);
        assert!(recovery(status(&d), "iad").is_none());
        assert_eq!(
            status(&d).health,
            Some(Health::Healthy),
            "{}",
            d.health_reason
        );
    }

    #[test]
    fn a_failed_clone_is_reported_in_status_and_asked_for_again() {
        use crate::seams::mysql::CloneState;
        let mut snap = iad_returns(iad_txns(12));
        with_recovery(
            &mut snap,
            "iad",
            &format!("{IAD_UUID}:11-12"),
            RecoveryState::Recloning,
        );
        let d = run(&snap, 12_000);
        assert_eq!(
            d.actions,
            [Action::Clone {
                site: "iad".into(),
                donor: "pdx".into()
            }]
        );
        carry(&mut snap, &d);
        mysql_mut(&mut snap, "iad").clone_status = Some(Box::new(CloneState::InProgress));
        let d = run(&snap, 13_000);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert!(
            d.health_reason
                .contains("recloning iad from pdx: clone in progress"),
            "{}",
            d.health_reason
        );
        carry(&mut snap, &d);
        mysql_mut(&mut snap, "iad").clone_status = Some(Box::new(CloneState::Failed {
            error: 3862,
            message: "Clone Donor Error: 1045 : Access denied".into(),
        }));
        let d = run(&snap, 14_000);
        assert!(d.actions.is_empty(), "not at once: {:?}", d.actions);
        assert!(
            d.health_reason.contains(
                "the clone failed with error 3862 (Clone Donor Error: 1045 : Access denied)"
            ),
            "{}",
            d.health_reason
        );
        assert_eq!(
            recovery(status(&d), "iad").unwrap().state,
            RecoveryState::Recloning
        );
        carry(&mut snap, &d);
        let d = run(&snap, 42_000);
        assert_eq!(
            d.actions,
            [Action::Clone {
                site: "iad".into(),
                donor: "pdx".into()
            }],
            "asked again 30 s after the failed request"
        );
    }
}
