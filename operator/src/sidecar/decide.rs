//! The sidecar's decisions, pure: from what it last learned about the writer lease, its
//! own renewal history and the mysqld's read-only mode, whether to renew, fence or lift
//! the fence. Time is an input ([`Millis`] on the sidecar's own monotonic clock).

use std::time::Duration;

use serde::Serialize;

use crate::engine::lease::{LeaseTiming, SidecarLease};
use crate::engine::time::Millis;
use crate::seams::ReadOnlyMode;

/// The sidecar's fixed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarSettings {
    pub site: String,
    pub timing: LeaseTiming,
    pub renew_interval: Duration,
}

/// What the sidecar last learned about the writer lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownLease {
    pub holder: Option<String>,
    /// The operator's writable grant names this site in the lease's current term.
    pub granted_to_me: bool,
}

/// Something that happened to the sidecar's view of the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseEvent {
    /// A read of the lease succeeded.
    Read(KnownLease),
    /// A read failed (API server unreachable, timeout): the view is unchanged and the
    /// renewal deadline keeps running.
    ReadFailed,
    /// A renewal that was sent at `started` was acknowledged.
    RenewalSucceeded { started: Millis, lease: KnownLease },
    /// The renewal was refused with 409; `latest` is the re-read lease.
    RenewalConflict { latest: KnownLease },
    /// No answer (timeout, connection error, response lost): nothing is known about
    /// whether it was applied, so it counts for nothing.
    RenewalFailed,
}

/// The sidecar's memory between ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SidecarMemory {
    pub lease: SidecarLease,
    pub known: Option<KnownLease>,
    pub last_renewal_attempt: Option<Millis>,
}

impl SidecarMemory {
    /// Folds an event into the memory. Seeing another holder ends our writability at
    /// once, whatever our last renewal says.
    pub(crate) fn record(&mut self, settings: &SidecarSettings, event: LeaseEvent) {
        let view = match event {
            LeaseEvent::Read(view) | LeaseEvent::RenewalConflict { latest: view } => view,
            LeaseEvent::RenewalSucceeded { started, lease } => {
                self.lease.renewal_succeeded(started);
                lease
            }
            LeaseEvent::ReadFailed | LeaseEvent::RenewalFailed => return,
        };
        if view.holder.as_deref() != Some(settings.site.as_str()) {
            self.lease.holdership_lost();
        }
        self.known = Some(view);
    }

    /// Records that a renewal request is being sent now.
    pub(crate) fn renewal_attempted(&mut self, now: Millis) {
        self.last_renewal_attempt = Some(now);
    }

    fn holds(&self, settings: &SidecarSettings) -> bool {
        self.known
            .as_ref()
            .is_some_and(|k| k.holder.as_deref() == Some(settings.site.as_str()))
    }
}

/// Renew while our site holds the lease, once per renew interval.
pub(crate) fn renewal_due(settings: &SidecarSettings, memory: &SidecarMemory, now: Millis) -> bool {
    memory.holds(settings)
        && memory
            .last_renewal_attempt
            .is_none_or(|last| now >= last.plus(settings.renew_interval))
}

/// How soon the next tick comes while a lease that moved here carries no grant yet
/// (see [`next_tick_in`]).
pub(crate) const GRANT_POLL: Duration = Duration::from_millis(100);

/// How long the sidecar waits before its next tick; `tick` normally. Two exceptions,
/// both for a lease that has just moved here, and both only about *when* the next
/// observe -> decide -> act runs, never about what it decides:
///
/// - At once, when this tick read the lease (the read succeeded) and it names this site
///   holder with no renewal attempted within the renew interval. The renewal that
///   follows is exactly the one the next tick would send, and lifting the fence needs
///   it acknowledged, so this moves the lift up to a tick earlier.
/// - After [`GRANT_POLL`] (if shorter than `tick`), while this site holds the lease
///   without the operator's grant and has held it for less than a lease duration
///   (`holder_since`, when this sidecar first saw itself named): the operator writes the
///   grant right after moving the lease, and the lift waits on seeing it. Bounded, so
///   that a holder left without a grant (an operator that stopped in between) goes
///   back to the tick interval; a holder whose grant was revoked to fence it has held
///   the lease for longer and is not affected.
///
/// A failed read or renewal waits the tick out, and an attempted renewal is not due
/// again for a renew interval, so this never loops.
pub(crate) fn next_tick_in(
    settings: &SidecarSettings,
    memory: &SidecarMemory,
    now: Millis,
    lease_read: bool,
    holder_since: Option<Millis>,
    tick: Duration,
) -> Duration {
    if lease_read && renewal_due(settings, memory, now) {
        return Duration::ZERO;
    }
    let awaiting_grant = memory.holds(settings)
        && memory.known.as_ref().is_some_and(|k| !k.granted_to_me)
        && holder_since.is_some_and(|since| now < since.plus(settings.timing.duration()));
    if awaiting_grant {
        tick.min(GRANT_POLL)
    } else {
        tick
    }
}

/// Why the mysqld must be read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum FenceReason {
    /// The sidecar has never read the lease.
    LeaseUnknown,
    /// Another site (or nobody) holds the lease.
    NotHolder { holder: Option<String> },
    /// The last acknowledged renewal is older than leaseDuration - margin (or there is
    /// none): the operator may soon promote another site.
    RenewalStale,
    /// We hold the lease but the operator has not granted writability in this term
    /// (not yet promoted, or a planned failover is fencing us).
    NoGrant,
}

/// What to do to the mysqld.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum MysqlAction {
    /// It is already as it must be (or unreachable: nothing can be done now).
    Nothing,
    /// `super_read_only=ON`, then kill client connections.
    Fence(FenceReason),
    /// `read_only=OFF`: the holder, freshly renewed and granted.
    LiftFence,
}

/// Whether the mysqld may be writable now, and if not, why.
pub(crate) fn writable_allowed(
    settings: &SidecarSettings,
    memory: &SidecarMemory,
    now: Millis,
) -> Result<(), FenceReason> {
    let Some(known) = &memory.known else {
        return Err(FenceReason::LeaseUnknown);
    };
    if known.holder.as_deref() != Some(settings.site.as_str()) {
        return Err(FenceReason::NotHolder {
            holder: known.holder.clone(),
        });
    }
    if !memory.lease.may_write(&settings.timing, now) {
        return Err(FenceReason::RenewalStale);
    }
    if !known.granted_to_me {
        return Err(FenceReason::NoGrant);
    }
    Ok(())
}

/// What the sidecar knows about its mysqld this tick: only the two read-only flags
/// (read on their own, so that nothing else the server reports, such as a GTID set
/// the operator cannot parse, can keep the fence out) and whether a CLONE is running
/// on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MysqldView {
    /// `None`: the flags could not be read (unreachable, or the query failed).
    pub mode: Option<ReadOnlyMode>,
    /// `performance_schema.clone_status` says `In Progress`.
    pub clone_in_progress: bool,
}

/// The action for a mysqld seen as `view`.
///
/// Unknown flags while writability is not allowed mean "fence": the attempt costs
/// nothing if the server is already fenced and is the only thing that can help if it
/// is not. A CLONE in progress needs `super_read_only` off (manual 7.6.7.3), and
/// re-fencing would kill it: it is exempt only while `read_only` stays ON (ordinary
/// clients are still refused, and the clone replaces the data anyway); a writable
/// server is fenced whatever runs on it.
pub(crate) fn mysql_action(
    settings: &SidecarSettings,
    memory: &SidecarMemory,
    view: MysqldView,
    now: Millis,
) -> MysqlAction {
    match (writable_allowed(settings, memory, now), view.mode) {
        (Err(_), Some(ReadOnlyMode::SuperReadOnly)) => MysqlAction::Nothing,
        (Err(_), Some(ReadOnlyMode::ReadOnly)) if view.clone_in_progress => MysqlAction::Nothing,
        (Err(reason), _) => MysqlAction::Fence(reason),
        (Ok(()), Some(ReadOnlyMode::ReadOnly | ReadOnlyMode::SuperReadOnly)) => {
            MysqlAction::LiftFence
        }
        (Ok(()), Some(ReadOnlyMode::Writable) | None) => MysqlAction::Nothing,
    }
}

/// How one `SET GLOBAL super_read_only = ON` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FenceAttempt {
    /// The fence holds.
    Held,
    /// The SET could not get the global read lock within `lock_wait_timeout` (or the
    /// request timed out waiting for it): a client holds a table lock, a long
    /// transaction or a commit waiting for a semisync ack.
    LockWaitTimedOut,
    /// The connection broke or could not be opened.
    ConnectionFailed,
    /// The server refused the statement for another reason (privileges, ...).
    Refused,
}

/// What to do after a fence attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FenceNext {
    /// Kill every client connection, so that no transaction opened before the fence
    /// commits after it; the fence is done.
    KillClients,
    /// Kill the clients holding the lock from a second connection (the first may be
    /// killed with them), then set the fence again on that second connection.
    KillBlockersAndRetry,
    /// Reconnect and set the fence again.
    ReconnectAndRetry,
    /// Stop for this tick; the next tick decides again.
    GiveUp,
}

/// How many fence attempts one tick makes before it yields (the next tick, half a
/// renew interval later, decides again and keeps trying while fencing is due).
pub(crate) const FENCE_ATTEMPTS_PER_TICK: u32 = 5;

/// After the `attempt`-th (1-based) fence attempt ended as `outcome`.
pub(crate) fn after_fence_attempt(outcome: FenceAttempt, attempt: u32) -> FenceNext {
    match outcome {
        FenceAttempt::Held => FenceNext::KillClients,
        _ if attempt >= FENCE_ATTEMPTS_PER_TICK => FenceNext::GiveUp,
        FenceAttempt::LockWaitTimedOut => FenceNext::KillBlockersAndRetry,
        // Once: a server that cannot be reached twice in a row will not be reached by
        // hammering it, and the loop must get back to renewing and reading the lease.
        FenceAttempt::ConnectionFailed if attempt == 1 => FenceNext::ReconnectAndRetry,
        FenceAttempt::ConnectionFailed => FenceNext::GiveUp,
        FenceAttempt::Refused => FenceNext::GiveUp,
    }
}

/// How long the next renewal may wait for its answer: never past the fence deadline,
/// so that a hung request cannot delay the fence.
pub(crate) fn renewal_timeout(
    settings: &SidecarSettings,
    memory: &SidecarMemory,
    now: Millis,
) -> Duration {
    let deadline = memory
        .lease
        .fence_at(&settings.timing)
        .filter(|fence| *fence > now)
        .map_or(settings.renew_interval, |fence| fence.since(now));
    deadline.min(settings.renew_interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MysqlAction::{Fence, LiftFence, Nothing};
    use ReadOnlyMode::{ReadOnly, SuperReadOnly, Writable};

    /// Playground defaults: lease 5 s, margin 1 s, renew every 1 s.
    fn settings() -> SidecarSettings {
        SidecarSettings {
            site: "iad".into(),
            timing: LeaseTiming::new(Duration::from_secs(5), Duration::from_secs(1)).unwrap(),
            renew_interval: Duration::from_secs(1),
        }
    }

    fn view(holder: Option<&str>, granted: bool) -> KnownLease {
        KnownLease {
            holder: holder.map(String::from),
            granted_to_me: granted,
        }
    }

    /// A sidecar whose site holds the lease, granted, last renewed at `renewed_at`.
    fn holder_renewed_at(renewed_at: u64) -> SidecarMemory {
        let mut memory = SidecarMemory::default();
        memory.renewal_attempted(Millis(renewed_at));
        memory.record(
            &settings(),
            LeaseEvent::RenewalSucceeded {
                started: Millis(renewed_at),
                lease: view(Some("iad"), true),
            },
        );
        memory
    }

    #[test]
    fn decision_table() {
        let s = settings();
        let granted_holder = holder_renewed_at(10_000);
        let mut not_granted = granted_holder.clone();
        not_granted.record(&s, LeaseEvent::Read(view(Some("iad"), false)));
        let mut other_holder = granted_holder.clone();
        other_holder.record(&s, LeaseEvent::Read(view(Some("pdx"), false)));
        let mut nobody = granted_holder.clone();
        nobody.record(&s, LeaseEvent::Read(view(None, false)));
        let never_renewed = {
            let mut m = SidecarMemory::default();
            m.record(&s, LeaseEvent::Read(view(Some("iad"), true)));
            m
        };
        let fresh = SidecarMemory::default();
        let pdx_holder = SidecarMemory {
            known: Some(view(Some("pdx"), false)),
            ..SidecarMemory::default()
        };

        #[rustfmt::skip]
        let table: Vec<(&str, &SidecarMemory, Option<ReadOnlyMode>, u64, MysqlAction)> = vec![
            ("holder, fresh, granted, writable", &granted_holder, Some(Writable), 12_000, Nothing),
            ("holder, fresh, granted, fenced: lift", &granted_holder, Some(SuperReadOnly), 12_000, LiftFence),
            ("holder, fresh, granted, read_only only: lift", &granted_holder, Some(ReadOnly), 12_000, LiftFence),
            ("last writable instant", &granted_holder, Some(Writable), 13_999, Nothing),
            ("renewal older than duration - margin: fence", &granted_holder, Some(Writable), 14_000, Fence(FenceReason::RenewalStale)),
            ("stale and already fenced: nothing, never lift", &granted_holder, Some(SuperReadOnly), 14_000, Nothing),
            ("grant revoked (planned failover): fence", &not_granted, Some(Writable), 12_000, Fence(FenceReason::NoGrant)),
            ("no grant and fenced: stay fenced", &not_granted, Some(SuperReadOnly), 12_000, Nothing),
            ("another holder: fence at once", &other_holder, Some(Writable), 10_001, Fence(FenceReason::NotHolder { holder: Some("pdx".into()) })),
            ("another holder, read_only only: fence fully", &pdx_holder, Some(ReadOnly), 0, Fence(FenceReason::NotHolder { holder: Some("pdx".into()) })),
            ("nobody holds: fence", &nobody, Some(Writable), 10_001, Fence(FenceReason::NotHolder { holder: None })),
            ("never renewed, though granted: fence", &never_renewed, Some(Writable), 0, Fence(FenceReason::RenewalStale)),
            ("never read the lease: fence", &fresh, Some(Writable), 0, Fence(FenceReason::LeaseUnknown)),
            ("flags unknown, another holder: fence", &other_holder, None, 10_001, Fence(FenceReason::NotHolder { holder: Some("pdx".into()) })),
            ("flags unknown, stale renewal: fence", &granted_holder, None, 14_000, Fence(FenceReason::RenewalStale)),
            ("flags unknown, lease never read: fence", &fresh, None, 0, Fence(FenceReason::LeaseUnknown)),
            ("flags unknown, holder fresh and granted: nothing (never lift blind)", &granted_holder, None, 12_000, Nothing),
        ];
        for (case, memory, mode, now, expected) in table {
            for clone_in_progress in [false, true] {
                let view = MysqldView {
                    mode,
                    clone_in_progress,
                };
                let expected = match (&expected, mode) {
                    // The one case the clone exemption changes.
                    (Fence(_), Some(ReadOnly)) if clone_in_progress => Nothing,
                    _ => expected.clone(),
                };
                assert_eq!(
                    mysql_action(&s, memory, view, Millis(now)),
                    expected,
                    "{case} (clone in progress: {clone_in_progress})"
                );
            }
        }
    }

    fn seen(mode: ReadOnlyMode) -> MysqldView {
        MysqldView {
            mode: Some(mode),
            clone_in_progress: false,
        }
    }

    #[test]
    fn a_clone_in_progress_is_left_alone_only_while_read_only_holds() {
        let s = settings();
        let replica = SidecarMemory {
            known: Some(view(Some("pdx"), false)),
            ..SidecarMemory::default()
        };
        let cloning = |mode| MysqldView {
            mode: Some(mode),
            clone_in_progress: true,
        };
        let not_holder = Fence(FenceReason::NotHolder {
            holder: Some("pdx".into()),
        });
        // CLONE lowered super_read_only; re-fencing would kill it.
        assert_eq!(
            mysql_action(&s, &replica, cloning(ReadOnly), Millis(0)),
            Nothing
        );
        // Never while the server takes writes from ordinary clients.
        assert_eq!(
            mysql_action(&s, &replica, cloning(Writable), Millis(0)),
            not_holder
        );
        // Once the clone is over, the fence comes back.
        assert_eq!(
            mysql_action(&s, &replica, seen(ReadOnly), Millis(0)),
            not_holder
        );
        // Unknown flags: the clone state cannot be trusted either.
        let unknown = MysqldView {
            mode: None,
            clone_in_progress: true,
        };
        assert_eq!(mysql_action(&s, &replica, unknown, Millis(0)), not_holder);
    }

    #[test]
    fn a_fence_that_cannot_get_the_lock_kills_the_blockers_and_retries() {
        use FenceAttempt::*;
        use FenceNext::*;
        #[rustfmt::skip]
        let table = [
            ("held: kill clients so nothing opened before commits after", Held, 1, KillClients),
            ("held on the last attempt: still kill", Held, FENCE_ATTEMPTS_PER_TICK, KillClients),
            ("lock wait timed out: kill blockers from a second connection", LockWaitTimedOut, 1, KillBlockersAndRetry),
            ("lock wait timed out again: again", LockWaitTimedOut, FENCE_ATTEMPTS_PER_TICK - 1, KillBlockersAndRetry),
            ("connection broke: reconnect and retry", ConnectionFailed, 1, ReconnectAndRetry),
            ("reconnecting failed too: the next tick tries again", ConnectionFailed, 2, GiveUp),
            ("refused (privileges): retrying cannot help", Refused, 1, GiveUp),
            ("attempts of this tick used up: the next tick decides again", LockWaitTimedOut, FENCE_ATTEMPTS_PER_TICK, GiveUp),
        ];
        for (case, outcome, attempt, expected) in table {
            assert_eq!(after_fence_attempt(outcome, attempt), expected, "{case}");
        }
    }

    #[test]
    fn a_lost_renewal_response_fences_on_the_last_acknowledged_one() {
        let s = settings();
        let mut memory = holder_renewed_at(0);
        // Renewals at 1 s, 2 s and 3 s reach the API server, but their responses are
        // lost: the sidecar cannot count them.
        for at in [1_000, 2_000, 3_000] {
            assert!(renewal_due(&s, &memory, Millis(at)));
            memory.renewal_attempted(Millis(at));
            memory.record(&s, LeaseEvent::RenewalFailed);
        }
        assert_eq!(
            mysql_action(&s, &memory, seen(Writable), Millis(3_999)),
            Nothing
        );
        assert_eq!(
            mysql_action(&s, &memory, seen(Writable), Millis(4_000)),
            Fence(FenceReason::RenewalStale)
        );
    }

    #[test]
    fn an_unreachable_api_server_fences_the_primary_by_itself_and_lifting_needs_a_fresh_renewal() {
        let s = settings();
        let mut memory = holder_renewed_at(0);
        let mut t = 0;
        let mut fenced_at = None;
        while t <= 10_000 {
            if renewal_due(&s, &memory, Millis(t)) {
                memory.renewal_attempted(Millis(t));
                memory.record(&s, LeaseEvent::RenewalFailed);
            } else {
                memory.record(&s, LeaseEvent::ReadFailed);
            }
            if fenced_at.is_none()
                && mysql_action(&s, &memory, seen(Writable), Millis(t)) != Nothing
            {
                fenced_at = Some(t);
            }
            t += 500;
        }
        assert_eq!(fenced_at, Some(4_000), "0 + 5 s - 1 s");
        // The API server returns and still names us holder with the grant: only an
        // acknowledged renewal makes the sidecar lift again.
        memory.record(&s, LeaseEvent::Read(view(Some("iad"), true)));
        assert_eq!(
            mysql_action(&s, &memory, seen(SuperReadOnly), Millis(10_500)),
            Nothing
        );
        memory.record(
            &s,
            LeaseEvent::RenewalSucceeded {
                started: Millis(10_500),
                lease: view(Some("iad"), true),
            },
        );
        assert_eq!(
            mysql_action(&s, &memory, seen(SuperReadOnly), Millis(10_600)),
            LiftFence
        );
    }

    #[test]
    fn a_conflict_revealing_another_holder_fences_at_once_and_stops_renewing() {
        let s = settings();
        let mut memory = holder_renewed_at(10_000);
        memory.renewal_attempted(Millis(11_000));
        memory.record(
            &s,
            LeaseEvent::RenewalConflict {
                latest: view(Some("pdx"), false),
            },
        );
        assert_eq!(
            mysql_action(&s, &memory, seen(Writable), Millis(11_001)),
            Fence(FenceReason::NotHolder {
                holder: Some("pdx".into())
            })
        );
        assert!(!renewal_due(&s, &memory, Millis(20_000)));
        // Even if the lease comes back to us later, the old renewal no longer counts.
        memory.record(&s, LeaseEvent::Read(view(Some("iad"), true)));
        assert_eq!(
            mysql_action(&s, &memory, seen(SuperReadOnly), Millis(11_500)),
            Nothing
        );
    }

    #[test]
    fn renews_only_while_holding_once_per_interval() {
        let s = settings();
        assert!(!renewal_due(&s, &SidecarMemory::default(), Millis(0)));
        let mut memory = SidecarMemory::default();
        memory.record(&s, LeaseEvent::Read(view(Some("pdx"), false)));
        assert!(!renewal_due(&s, &memory, Millis(0)), "replica never renews");
        memory.record(&s, LeaseEvent::Read(view(Some("iad"), false)));
        assert!(
            renewal_due(&s, &memory, Millis(0)),
            "new holder renews at once"
        );
        memory.renewal_attempted(Millis(0));
        assert!(!renewal_due(&s, &memory, Millis(999)));
        assert!(renewal_due(&s, &memory, Millis(1_000)));
    }

    #[test]
    fn a_renewal_never_waits_past_the_fence_deadline() {
        let s = settings();
        let memory = holder_renewed_at(0);
        assert_eq!(
            renewal_timeout(&s, &memory, Millis(1_000)),
            Duration::from_secs(1)
        );
        assert_eq!(
            renewal_timeout(&s, &memory, Millis(3_700)),
            Duration::from_millis(300)
        );
        assert_eq!(
            renewal_timeout(&s, &SidecarMemory::default(), Millis(0)),
            Duration::from_secs(1)
        );
    }

    /// Issue 18: a lease that just moved here is renewed at once, and its grant polled
    /// for every 100 ms for at most a lease duration; anything else waits for the tick
    /// (no hot loop on failures, none as a replica or as a revoked long-time holder).
    #[test]
    fn next_tick_comes_sooner_only_right_after_the_lease_moved_here() {
        let s = settings();
        let tick = Duration::from_millis(500);
        let read = |holder: Option<&str>, granted: bool| {
            let mut memory = SidecarMemory::default();
            memory.record(&s, LeaseEvent::Read(view(holder, granted)));
            memory
        };
        let fresh_holder = read(Some("iad"), false);
        let replica = read(Some("pdx"), true);
        let no_holder = read(None, false);
        let renewed = holder_renewed_at(10_000);
        let mut renewed_no_grant = SidecarMemory::default();
        renewed_no_grant.renewal_attempted(Millis(10_000));
        renewed_no_grant.record(
            &s,
            LeaseEvent::RenewalSucceeded {
                started: Millis(10_000),
                lease: view(Some("iad"), false),
            },
        );
        let mut failed_renewal = renewed.clone();
        failed_renewal.renewal_attempted(Millis(11_000));
        failed_renewal.record(&s, LeaseEvent::RenewalFailed);
        let at_once = Duration::ZERO;
        let poll = GRANT_POLL;
        // (case, memory, now, this tick's read succeeded, holder since, expected)
        type Case<'a> = (&'a str, &'a SidecarMemory, u64, bool, Option<u64>, Duration);
        #[rustfmt::skip]
        let cases: [Case; 14] = [
            // (case, memory, now, this tick's read succeeded, holder since, expected)
            ("lease just moved here: renew at once", &fresh_holder, 0, true, Some(0), at_once),
            ("moved here, granted already: renew at once", &read(Some("iad"), true), 0, true, Some(0), at_once),
            ("moved here but the read failed", &fresh_holder, 0, false, Some(0), poll),
            ("a replica", &replica, 0, true, None, tick),
            ("nobody holds it", &no_holder, 0, true, None, tick),
            ("renewed, granted", &renewed, 10_500, true, Some(9_000), tick),
            ("renewed, no grant yet, held 1.5 s: poll for it", &renewed_no_grant, 10_500, true, Some(9_000), poll),
            ("renewed, no grant, held just under 5 s", &renewed_no_grant, 10_500, true, Some(5_501), poll),
            ("renewed, no grant, held 5 s: back to the tick", &renewed_no_grant, 10_500, true, Some(5_500), tick),
            ("revoked long-time holder (planned fence)", &renewed_no_grant, 10_500, true, Some(0), tick),
            ("renewal due, this tick renewed (not a read)", &renewed, 11_000, false, Some(0), tick),
            ("renewal failed just now", &failed_renewal, 11_100, false, Some(0), tick),
            ("renewal failed, read since", &failed_renewal, 11_100, true, Some(0), tick),
            ("a 1 s tick is shortened to the poll too", &renewed_no_grant, 10_500, true, Some(10_000), poll),
        ];
        for (case, memory, now, lease_read, since, expected) in cases {
            assert_eq!(
                next_tick_in(&s, memory, Millis(now), lease_read, since.map(Millis), tick),
                expected,
                "{case}"
            );
        }
        // A tick already under the poll interval is never lengthened.
        assert_eq!(
            next_tick_in(
                &s,
                &renewed_no_grant,
                Millis(10_500),
                true,
                Some(Millis(10_000)),
                Duration::from_millis(50)
            ),
            Duration::from_millis(50)
        );
    }
}
