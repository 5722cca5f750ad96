//! Quiet status: under steady writes `gtidExecuted` and `lagSeconds` move on every
//! probe, so a status written whenever it differs would be patched every second per
//! group. Here is the pure rule for when the leader writes (`status_write`) and the
//! in-memory status it keeps meanwhile (`HeldStatus`), which the next decision reads
//! instead of the older published one, so that the stale-candidate guard keeps the
//! freshest GTID set this process observed. No I/O: the controller carries it out.

use std::time::Duration;

use crate::api::MysqlFailoverGroupStatus;
use crate::engine::Millis;

/// How long a status whose only change is observations (GTID sets, lag) may wait
/// before it is written: at most one such write per group per interval.
pub(crate) const QUIET_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// What to do with the status a decision returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusWrite {
    /// It equals the published status: nothing to write, nothing to hold.
    Unchanged,
    /// Write it now: a real change of state, or the quiet interval is over.
    Now,
    /// Only observations moved and the last write is recent: keep it in memory
    /// (`HeldStatus`) and decide from it; it is written with the next real change or
    /// once the interval is over.
    Hold,
}

/// The status a leader decided but did not write, and the published status it was
/// held back against. It is valid only while the published status is still that one:
/// anything else writing the status (a person, another leader) voids it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeldStatus {
    pub published: Option<MysqlFailoverGroupStatus>,
    pub status: MysqlFailoverGroupStatus,
}

/// The status with the fields that move with every write under load reduced to
/// whether they are known: `sites[].gtidExecuted` and `sites[].lagSeconds`. Whatever
/// else differs (phase, health, conditions, roles, the active site, messages, a site
/// appearing or losing its set) is a real change of state.
fn without_observations(status: &MysqlFailoverGroupStatus) -> MysqlFailoverGroupStatus {
    let mut reduced = status.clone();
    for site in &mut reduced.sites {
        site.gtid_executed = site.gtid_executed.as_ref().map(|_| String::new());
        site.lag_seconds = site.lag_seconds.map(|_| 0);
    }
    reduced
}

/// Whether to write `decided` now, given the status the API server holds
/// (`published`, as far as this process knows: the cache, or its own last write until
/// the cache shows it), when this process last wrote the group's status, and `now`
/// (both on the operator's monotonic clock).
pub(crate) fn status_write(
    published: Option<&MysqlFailoverGroupStatus>,
    decided: &MysqlFailoverGroupStatus,
    last_write: Option<Millis>,
    now: Millis,
) -> StatusWrite {
    let Some(published) = published else {
        return StatusWrite::Now;
    };
    if published == decided {
        return StatusWrite::Unchanged;
    }
    if without_observations(published) != without_observations(decided) {
        return StatusWrite::Now;
    }
    match last_write {
        Some(at) if now < at.plus(QUIET_STATUS_INTERVAL) => StatusWrite::Hold,
        _ => StatusWrite::Now,
    }
}

/// The status the next decision starts from: the held one while the published status
/// is still the one it was held against (it carries the fresher GTID sets the guard
/// must compare a candidate with), otherwise the published one.
pub(crate) fn status_to_decide_from(
    published: Option<MysqlFailoverGroupStatus>,
    held: Option<&HeldStatus>,
) -> Option<MysqlFailoverGroupStatus> {
    match held {
        Some(held) if held.published == published => Some(held.status.clone()),
        _ => published,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EmergencyFailoverPhase, EmergencyFailoverStatus, Health};
    use crate::engine::testkit::*;
    use crate::engine::{EventReason, LastSeenGtids, Snapshot, decide};
    use crate::gtid::GtidSet;

    fn healthy(iad: u64, pdx: u64, lag: Option<i64>) -> MysqlFailoverGroupStatus {
        let mut status = healthy_pair().status;
        status.sites = vec![
            seen_with("iad", &iad_txns(iad)),
            seen_with("pdx", &iad_txns(pdx)),
        ];
        status.sites[1].lag_seconds = lag;
        status
    }

    const S: u64 = 1_000;

    #[test]
    fn observations_alone_are_written_at_most_once_per_interval() {
        use StatusWrite::*;
        let published = healthy(10, 10, Some(0));
        // (decided, last write, now, expected)
        let cases: Vec<(MysqlFailoverGroupStatus, Option<u64>, u64, StatusWrite)> = vec![
            (healthy(10, 10, Some(0)), Some(0), S, Unchanged),
            (healthy(10, 10, Some(0)), None, S, Unchanged),
            (healthy(25, 24, Some(0)), Some(0), S, Hold),
            (healthy(25, 24, Some(1)), Some(0), 9_999, Hold),
            (healthy(25, 24, Some(1)), Some(0), 10 * S, Now),
            (healthy(25, 24, Some(1)), Some(5 * S), 14 * S, Hold),
            (healthy(25, 24, Some(1)), Some(5 * S), 15 * S, Now),
            // Never written by this process (just started or just elected): write.
            (healthy(25, 24, Some(0)), None, S, Now),
        ];
        for (decided, last, now, expected) in cases {
            assert_eq!(
                status_write(Some(&published), &decided, last.map(Millis), Millis(now)),
                expected,
                "{decided:?} last {last:?} now {now}"
            );
        }
        assert_eq!(
            status_write(None, &published, Some(Millis(0)), Millis(1)),
            Now,
            "no status yet"
        );
    }

    #[test]
    fn a_real_change_of_state_is_written_at_once() {
        let published = healthy(10, 10, Some(0));
        let recent = Some(Millis(0));
        let mut changes: Vec<(&str, MysqlFailoverGroupStatus)> = Vec::new();
        let mut s = healthy(11, 11, Some(0));
        s.health = Some(Health::Degraded);
        changes.push(("health", s));
        let mut s = healthy(11, 11, Some(0));
        s.active_site = Some("pdx".into());
        changes.push(("active site", s));
        let mut s = healthy(11, 11, Some(0));
        s.emergency_failover = Some(EmergencyFailoverStatus {
            from: "iad".into(),
            to: "pdx".into(),
            phase: EmergencyFailoverPhase::Fencing,
            reason: None,
            started_at: None,
            message: None,
        });
        changes.push(("failover progress", s));
        let mut s = healthy(11, 11, Some(0));
        s.sites[1].replicating = Some(false);
        changes.push(("a site stops replicating", s));
        let mut s = healthy(11, 11, Some(0));
        s.sites[1].lag_seconds = None;
        changes.push(("lag becomes unknown", s));
        let mut s = healthy(11, 11, Some(0));
        s.sites[0].gtid_executed = None;
        changes.push(("a site loses its set", s));
        let mut s = healthy(11, 11, Some(0));
        s.sites[1].message = Some("IO error 2003".into());
        changes.push(("a replication error", s));
        let mut s = healthy(11, 11, Some(0));
        s.observed_generation = Some(2);
        changes.push(("a new spec generation", s));
        for (what, decided) in changes {
            assert_eq!(
                status_write(Some(&published), &decided, recent, Millis(100)),
                StatusWrite::Now,
                "{what}"
            );
        }
    }

    #[test]
    fn the_held_status_counts_only_while_the_published_one_is_unchanged() {
        let published = Some(healthy(10, 10, Some(0)));
        let held = HeldStatus {
            published: published.clone(),
            status: healthy(20, 19, Some(1)),
        };
        assert_eq!(
            status_to_decide_from(published.clone(), Some(&held)),
            Some(held.status.clone())
        );
        assert_eq!(status_to_decide_from(published.clone(), None), published);
        // Someone else wrote the status meanwhile: theirs wins, ours is void.
        let edited = Some(healthy(12, 12, Some(0)));
        assert_eq!(status_to_decide_from(edited.clone(), Some(&held)), edited);
    }

    /// IAD, the primary, vanished. The operator last *published* 10 transactions for it
    /// but held back a later observation of 20 (quiet status). PDX, the only candidate,
    /// received 15. Against the published status alone PDX would look complete; the
    /// decision must use the held status and refuse to promote it.
    #[test]
    fn a_candidate_stale_against_the_held_status_is_not_promoted() {
        let published = healthy(10, 10, Some(0));
        let held = HeldStatus {
            published: Some(published.clone()),
            status: healthy(20, 15, Some(2)),
        };
        let snapshot_from = |status: MysqlFailoverGroupStatus| -> Snapshot {
            let mut snap = healthy_pair();
            snap.sites[0] = silent("iad", 11_000);
            snap.sites[1] = replica_of("pdx", "iad", iad_txns(15));
            replication_mut(&mut snap, "pdx").io_running = false;
            snap.status = status;
            for site in &mut snap.sites {
                site.last_seen = LastSeenGtids::recorded(&snap.status, &site.name);
            }
            snap
        };
        let decided_from = status_to_decide_from(Some(published.clone()), Some(&held));
        let Some(decided_from) = decided_from else {
            panic!("a status to decide from")
        };
        let d = decide(&snapshot_from(decided_from), at(60_000));
        assert!(promotions(&d).is_empty(), "{:?}", d.actions);
        assert_eq!(reasons(&d), [EventReason::FailoverBlocked]);
        assert!(
            d.events[0]
                .message
                .contains("pdx lacks 5 transaction(s) last seen on iad"),
            "{}",
            d.events[0].message
        );
        // What the held status protects: from the published one alone the same
        // candidate would be taken (the failover starts).
        let d = decide(&snapshot_from(published), at(60_000));
        assert_eq!(reasons(&d), [EventReason::FailoverStarted]);
        let missing: GtidSet = iad_txns(20).subtract(&iad_txns(15));
        assert_eq!(missing.count(), 5);
    }
}
