//! The operator's controller on the simulation, no faults beyond the ones each test
//! names: the real `bloodraven operator` runs as a Deployment through the Bloodraven
//! image, the real sidecar beside each mysqld, against the simulated API server and
//! MySQL model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bloodraven_sim::World;
use bloodraven_sim::apiserver::ResourceKey;
use bloodraven_sim::playground::{self, PLAYGROUND_GROUP, PLAYGROUND_NAMESPACE};
use serde_json::Value;

fn groups() -> ResourceKey {
    ResourceKey::new(
        "bloodraven.shipstream.io",
        "v1alpha1",
        "mysqlfailovergroups",
    )
}

fn status(world: &World) -> Value {
    world
        .api()
        .get(&groups(), Some(PLAYGROUND_NAMESPACE), PLAYGROUND_GROUP)
        .map(|g| g.get("status").cloned().unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn site_state(status: &Value, site: &str) -> Option<String> {
    status
        .get("sites")?
        .as_array()?
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(site))
        .and_then(|s| s.get("state"))
        .and_then(Value::as_str)
        .map(String::from)
}

fn healthy_with(world: &World, active: &str) -> bool {
    let s = status(world);
    str_at(&s, "/health") == Some("Healthy") && str_at(&s, "/activeSite") == Some(active)
}

/// A playground world with the operator installed and the group bootstrapped.
fn bootstrapped(seed: u64) -> World {
    let mut world = World::playground(seed).unwrap();
    playground::install(&world).unwrap();
    playground::apply_file(&world, &playground::playground_manifest()).unwrap();
    let ok = world
        .run_until(Duration::from_secs(120), |w| healthy_with(w, "iad"))
        .unwrap();
    assert!(
        ok,
        "seed {seed}: not Healthy with iad active after 120s: {:#}\n{}",
        status(&world),
        world.event_trace()
    );
    world
}

#[test]
fn bootstrap_makes_the_first_site_writable_and_the_other_a_replica() {
    let world = bootstrapped(1);
    let s = status(&world);
    assert_eq!(site_state(&s, "iad").as_deref(), Some("writable"), "{s:#}");
    assert_eq!(site_state(&s, "pdx").as_deref(), Some("read-only"), "{s:#}");
    let pdx = s["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "pdx")
        .unwrap();
    assert_eq!(pdx["replicating"], Value::Bool(true), "{s:#}");
    let dns = world
        .api()
        .get(
            &ResourceKey::new("externaldns.k8s.io", "v1alpha1", "dnsendpoints"),
            Some(PLAYGROUND_NAMESPACE),
            PLAYGROUND_GROUP,
        )
        .unwrap();
    assert_eq!(
        dns.pointer("/spec/endpoints/0/targets/0")
            .and_then(Value::as_str),
        Some("playground-mysql-iad.bloodraven-playground.svc.cluster.local"),
        "{dns:#}"
    );
    let ready = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True", "{s:#}");
}

/// Every request the operator made so far is granted by its API_ACCESS tables (the
/// chart's RBAC is generated from them; tests/chart.rs checks that step).
fn assert_operator_calls_granted(world: &World) {
    use bloodraven_component_tests::rbac_audit::{calls_outside, operator_rule_sets};
    let counts = world.api().request_counts();
    let calls = counts
        .keys()
        .filter(|k| k.user_agent == bloodraven_sim::bloodraven_image::OPERATOR_USER_AGENT)
        .map(|k| (k.verb.as_str(), k.resource.as_str()));
    let outside = calls_outside(calls, &operator_rule_sets());
    assert!(
        outside.is_empty(),
        "the operator made calls no API_ACCESS table declares: {outside:?}"
    );
}

fn annotate(world: &World, key: &str, value: &str) {
    use bloodraven_sim::apiserver::{Caller, Patch, Subresource};
    world
        .api()
        .patch(
            &groups(),
            Some(PLAYGROUND_NAMESPACE),
            PLAYGROUND_GROUP,
            Patch::Merge(serde_json::json!({"metadata": {"annotations": {key: value}}})),
            Subresource::Main,
            &Caller {
                user_agent: "component-test",
            },
        )
        .unwrap();
}

fn events(world: &World, reason: &str) -> Vec<String> {
    let list = world
        .api()
        .list(
            &ResourceKey::new("events.k8s.io", "v1", "events"),
            Some(PLAYGROUND_NAMESPACE),
            &Default::default(),
        )
        .unwrap();
    list.items
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| e["note"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_crashed_primary_fails_over_to_the_replica() {
    let mut world = bootstrapped(2);
    let node = world.site_node("iad").unwrap().to_string();
    let crashed_at = world.elapsed();
    world.apply(bloodraven_sim::Fault::CrashNode(node)).unwrap();
    let ok = world
        .run_until(Duration::from_secs(60), |w| {
            site_state(&status(w), "pdx").as_deref() == Some("writable")
        })
        .unwrap();
    assert!(ok, "pdx never writable: {:#}", status(&world));
    let rto = world.elapsed() - crashed_at;
    let s = status(&world);
    assert_eq!(str_at(&s, "/activeSite"), Some("pdx"), "{s:#}");
    assert_eq!(str_at(&s, "/lastFailover/kind"), Some("Emergency"), "{s:#}");
    assert!(rto <= Duration::from_secs(10), "RTO {rto:?}: {s:#}");
    assert!(!events(&world, "FailoverStarted").is_empty());
    assert_operator_calls_granted(&world);
}

const PLANNED: &str = "bloodraven.shipstream.io/planned-failover";

#[test]
fn a_planned_failover_moves_the_primary_and_records_write_unavailability() {
    let mut world = bootstrapped(3);
    annotate(&world, PLANNED, "pdx");
    let ok = world
        .run_until(Duration::from_secs(60), |w| {
            str_at(&status(w), "/plannedFailover/phase") == Some("Succeeded")
        })
        .unwrap();
    let s = status(&world);
    assert!(ok, "planned failover did not succeed: {s:#}");
    assert_eq!(str_at(&s, "/activeSite"), Some("pdx"), "{s:#}");
    let unavailable = s
        .pointer("/plannedFailover/writeUnavailableMs")
        .and_then(Value::as_i64)
        .unwrap();
    assert!(unavailable > 0 && unavailable <= 2_000, "{s:#}");
    assert_eq!(str_at(&s, "/lastFailover/kind"), Some("Planned"), "{s:#}");
    // The old primary rejoins as a replica, and the annotation was consumed.
    let ok = world
        .run_until(Duration::from_secs(30), |w| healthy_with(w, "pdx"))
        .unwrap();
    assert!(ok, "{:#}", status(&world));
    let group = world
        .api()
        .get(&groups(), Some(PLAYGROUND_NAMESPACE), PLAYGROUND_GROUP)
        .unwrap();
    assert!(
        group
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(PLANNED))
            .is_none()
    );
    assert_operator_calls_granted(&world);
}

#[test]
fn planned_failover_rejections_name_the_problem() {
    let mut world = bootstrapped(4);
    for (target, message) in [
        ("ord", "unknown site \"ord\" (sites: iad, pdx)"),
        ("iad", "site iad is already the active site"),
    ] {
        annotate(&world, PLANNED, target);
        let ok = world
            .run_until(Duration::from_secs(10), |w| {
                str_at(&status(w), "/plannedFailover/message") == Some(message)
            })
            .unwrap();
        let s = status(&world);
        assert!(ok, "{target}: {s:#}");
        assert_eq!(str_at(&s, "/plannedFailover/phase"), Some("Rejected"));
        assert!(
            events(&world, "PlannedFailoverRejected")
                .iter()
                .any(|e| e.ends_with(message)),
            "{target}: {:?}",
            events(&world, "PlannedFailoverRejected")
        );
        assert_eq!(str_at(&s, "/activeSite"), Some("iad"));
    }
}
