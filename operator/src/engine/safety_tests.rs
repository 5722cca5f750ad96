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
