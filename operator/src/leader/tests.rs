use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::production::fake_api::{FakeApi, conflict, not_found};
use crate::seams::Clock;

fn settings(identity: &str) -> LeaderSettings {
    LeaderSettings {
        identity: identity.into(),
        timing: LeaseTiming::new(Duration::from_secs(15), Duration::from_secs(2)).unwrap(),
        renew_interval: Duration::from_secs(5),
    }
}

fn record(holder: Option<&str>, rv: &str) -> LeaseRecord {
    LeaseRecord {
        holder: holder.map(String::from),
        renew_time: Some(format!("t{rv}")),
        resource_version: Some(rv.into()),
        declared_duration: Some(Duration::from_secs(15)),
        holder_granted: false,
    }
}

#[test]
fn acquires_a_missing_lease_by_creating_it() {
    let s = settings("op-a");
    let mut m = LeaderMemory::default();
    assert_eq!(
        next_step(&s, &m, Millis(0)),
        LeaderStep::Wait,
        "nothing read yet"
    );
    m.record(&s, LeaderEvent::Read(None), Millis(0));
    assert_eq!(next_step(&s, &m, Millis(0)), LeaderStep::Create);
    assert!(!is_leader(&s, &m, Millis(0)));
    m.record(
        &s,
        LeaderEvent::Written {
            started: Millis(0),
            record: record(Some("op-a"), "1"),
        },
        Millis(30),
    );
    assert!(is_leader(&s, &m, Millis(30)));
}

#[test]
fn waits_for_another_holder_to_expire_on_its_own_clock_then_acquires() {
    let s = settings("op-b");
    let mut m = LeaderMemory::default();
    m.record(
        &s,
        LeaderEvent::Read(Some(record(Some("op-a"), "7"))),
        Millis(1_000),
    );
    // Unchanged for duration + margin = 17 s after first seen.
    m.record(
        &s,
        LeaderEvent::Read(Some(record(Some("op-a"), "7"))),
        Millis(17_999),
    );
    assert_eq!(next_step(&s, &m, Millis(17_999)), LeaderStep::Wait);
    assert_eq!(next_step(&s, &m, Millis(18_000)), LeaderStep::Acquire);
    // A renewal seen in between restarts the wait.
    m.record(
        &s,
        LeaderEvent::Read(Some(record(Some("op-a"), "8"))),
        Millis(18_000),
    );
    assert_eq!(next_step(&s, &m, Millis(34_999)), LeaderStep::Wait);
    assert!(!is_leader(&s, &m, Millis(18_000)));
}

#[test]
fn renews_on_interval_and_loses_leadership_when_renewals_stop_succeeding() {
    let s = settings("op-a");
    let mut m = LeaderMemory::default();
    m.record(
        &s,
        LeaderEvent::Written {
            started: Millis(0),
            record: record(Some("op-a"), "1"),
        },
        Millis(10),
    );
    m.last_attempt = Some(Millis(0));
    assert_eq!(next_step(&s, &m, Millis(4_999)), LeaderStep::Wait);
    assert_eq!(next_step(&s, &m, Millis(5_000)), LeaderStep::Renew);
    // Every renewal from now on fails (API server unreachable, response lost).
    m.last_attempt = Some(Millis(5_000));
    m.record(&s, LeaderEvent::WriteFailed, Millis(5_000));
    assert!(is_leader(&s, &m, Millis(12_999)));
    assert!(
        !is_leader(&s, &m, Millis(13_000)),
        "0 + 15 s - 2 s: stop acting"
    );
}

#[test]
fn two_replicas_never_lead_at_once() {
    // op-a leads and its renewals start failing at 5 s (last ack'd start: 0). op-b sees
    // the last change at 100 ms. op-a stops at 13 s; op-b may acquire from 17.1 s.
    let (a, b) = (settings("op-a"), settings("op-b"));
    let mut ma = LeaderMemory::default();
    ma.record(
        &a,
        LeaderEvent::Written {
            started: Millis(0),
            record: record(Some("op-a"), "1"),
        },
        Millis(50),
    );
    let mut mb = LeaderMemory::default();
    mb.record(
        &b,
        LeaderEvent::Read(Some(record(Some("op-a"), "1"))),
        Millis(100),
    );
    let mut t = 0;
    while t < 40_000 {
        if next_step(&b, &mb, Millis(t)) == LeaderStep::Acquire
            && mb.own.fence_at(&b.timing).is_none()
        {
            mb.record(
                &b,
                LeaderEvent::Written {
                    started: Millis(t),
                    record: record(Some("op-b"), "2"),
                },
                Millis(t),
            );
        }
        assert!(
            !(is_leader(&a, &ma, Millis(t)) && is_leader(&b, &mb, Millis(t))),
            "both lead at {t} ms"
        );
        t += 100;
    }
    assert!(is_leader(&b, &mb, Millis(17_200)) || mb.own.fence_at(&b.timing).is_some());
}

#[test]
fn a_409_race_leaves_exactly_one_leader() {
    let (a, b) = (settings("op-a"), settings("op-b"));
    let expired = record(Some("op-old"), "5");
    let mut ma = LeaderMemory::default();
    let mut mb = LeaderMemory::default();
    ma.record(&a, LeaderEvent::Read(Some(expired.clone())), Millis(0));
    mb.record(&b, LeaderEvent::Read(Some(expired)), Millis(0));
    assert_eq!(next_step(&a, &ma, Millis(20_000)), LeaderStep::Acquire);
    assert_eq!(next_step(&b, &mb, Millis(20_000)), LeaderStep::Acquire);
    // Both write with resourceVersion 5; a wins, b gets 409 and re-reads a's lease.
    ma.record(
        &a,
        LeaderEvent::Written {
            started: Millis(20_000),
            record: record(Some("op-a"), "6"),
        },
        Millis(20_010),
    );
    mb.record(
        &b,
        LeaderEvent::Conflict {
            latest: record(Some("op-a"), "6"),
        },
        Millis(20_010),
    );
    assert!(is_leader(&a, &ma, Millis(20_010)));
    assert!(!is_leader(&b, &mb, Millis(20_010)));
    assert_eq!(next_step(&b, &mb, Millis(20_010)), LeaderStep::Wait);
}

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        "2031-02-03T04:05:06Z".parse().unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn the_elector_creates_the_lease_with_the_injected_clock_and_loses_a_409_race() {
    // A lease that does not exist yet: op-a creates it with renewTime from its clock.
    let api = FakeApi::with(|req| match req.method.as_str() {
        "GET" => (404, not_found()),
        _ => {
            let mut body = req.body.clone();
            body["metadata"]["resourceVersion"] = json!("1");
            (201, body)
        }
    });
    let elector = Elector::new(
        settings("op-a"),
        Api::namespaced(api.client(), "ops"),
        LEADER_LEASE,
        Arc::new(FixedClock),
    );
    elector.step().await;
    assert!(elector.is_leader(), "read 404, created, acknowledged");
    let create = api
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        create.path,
        "/apis/coordination.k8s.io/v1/namespaces/ops/leases"
    );
    assert_eq!(create.body["spec"]["holderIdentity"], "op-a");
    assert_eq!(
        create.body["spec"]["renewTime"],
        "2031-02-03T04:05:06.000000Z"
    );

    // op-b finds an expired lease but op-c takes it first: the PUT is refused with 409.
    let stale = json!({"metadata": {"name": LEADER_LEASE, "namespace": "ops", "resourceVersion": "9"},
                       "spec": {"holderIdentity": "op-old", "leaseDurationSeconds": 15, "renewTime": "2031-01-01T00:00:00.000000Z"}});
    let winner = json!({"metadata": {"name": LEADER_LEASE, "namespace": "ops", "resourceVersion": "10"},
                        "spec": {"holderIdentity": "op-c", "leaseDurationSeconds": 15, "renewTime": "2031-02-03T04:05:06.000000Z"}});
    let puts = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen_put = puts.clone();
    let api = FakeApi::with(move |req| match req.method.as_str() {
        "PUT" => {
            seen_put.store(true, std::sync::atomic::Ordering::SeqCst);
            (409, conflict())
        }
        _ if seen_put.load(std::sync::atomic::Ordering::SeqCst) => (200, winner.clone()),
        _ => (200, stale.clone()),
    });
    let b = Elector::new(
        settings("op-b"),
        Api::namespaced(api.client(), "ops"),
        LEADER_LEASE,
        Arc::new(FixedClock),
    );
    b.step().await;
    tokio::time::advance(Duration::from_secs(18)).await;
    b.step().await;
    assert!(!b.is_leader());
    let methods: Vec<String> = api.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET", "GET", "GET", "PUT", "GET"]);
    assert_eq!(
        b.memory().sighting.unwrap().record.holder.as_deref(),
        Some("op-c")
    );
}

/// Issue 18: a leader that shuts down releases the lease (no holder); a candidate takes
/// it at its next round instead of waiting out duration + margin, while a lease that
/// still names a holder keeps the full wait.
#[test]
fn a_released_lease_is_taken_at_once_and_a_held_one_only_after_its_term() {
    let b = settings("op-b");
    let mut m = LeaderMemory::default();
    m.record(
        &b,
        LeaderEvent::Read(Some(record(Some("op-a"), "7"))),
        Millis(1_000),
    );
    assert_eq!(next_step(&b, &m, Millis(1_500)), LeaderStep::Wait);
    // op-a released it: same lease object, holder cleared, a new resourceVersion.
    m.record(
        &b,
        LeaderEvent::Read(Some(record(None, "8"))),
        Millis(2_000),
    );
    assert_eq!(
        next_step(&b, &m, Millis(2_000)),
        LeaderStep::Acquire,
        "no holder: nobody may still be acting under it"
    );
    // Someone took it meanwhile: back to the full wait for that holder.
    m.record(
        &b,
        LeaderEvent::Read(Some(record(Some("op-c"), "9"))),
        Millis(2_100),
    );
    assert_eq!(next_step(&b, &m, Millis(18_000)), LeaderStep::Wait);
    assert_eq!(next_step(&b, &m, Millis(19_100)), LeaderStep::Acquire);
}

#[test]
fn a_released_replica_never_acts_or_takes_the_lease_again() {
    let a = settings("op-a");
    let mut m = LeaderMemory::default();
    m.record(
        &a,
        LeaderEvent::Written {
            started: Millis(0),
            record: record(Some("op-a"), "1"),
        },
        Millis(10),
    );
    assert!(is_leader(&a, &m, Millis(10)));
    m.released = true;
    assert!(
        !is_leader(&a, &m, Millis(10)),
        "stops acting before the write"
    );
    m.record(&a, LeaderEvent::Read(Some(record(None, "2"))), Millis(20));
    assert_eq!(next_step(&a, &m, Millis(60_000)), LeaderStep::Wait);
}

#[tokio::test(start_paused = true)]
async fn release_writes_the_lease_without_holder_only_while_it_names_us() {
    let held = json!({"metadata": {"name": LEADER_LEASE, "namespace": "ops", "resourceVersion": "3"},
                      "spec": {"holderIdentity": "op-a", "leaseDurationSeconds": 15, "renewTime": "2031-02-03T04:05:00.000000Z"}});
    let lease = held.clone();
    let api = FakeApi::with(move |req| match req.method.as_str() {
        "PUT" => {
            let mut body = req.body.clone();
            body["metadata"]["resourceVersion"] = json!("4");
            (200, body)
        }
        _ => (200, lease.clone()),
    });
    let elector = Elector::new(
        settings("op-a"),
        Api::namespaced(api.client(), "ops"),
        LEADER_LEASE,
        Arc::new(FixedClock),
    );
    elector.step().await;
    assert!(elector.is_leader(), "read, renewed");
    assert!(elector.release().await);
    assert!(!elector.is_leader());
    let put = api
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(put.body["spec"]["holderIdentity"], serde_json::Value::Null);
    assert_eq!(put.body["metadata"]["resourceVersion"], "3", "guarded");
    // A second release (or one by a replica that does not hold it) writes nothing.
    let puts = api.requests().iter().filter(|r| r.method == "PUT").count();
    assert!(!elector.release().await);
    assert_eq!(
        api.requests().iter().filter(|r| r.method == "PUT").count(),
        puts
    );
}
