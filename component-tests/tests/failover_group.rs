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
