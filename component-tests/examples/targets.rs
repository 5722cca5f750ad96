//! Prints issue 5's targets as measured in the simulation with the playground defaults:
//! emergency failover RTO, planned-failover write unavailability, and the API writes an
//! idle healthy group causes over 10 simulated minutes (by verb, resource and client).
//!
//!     cargo run --release -p bloodraven-component-tests --example targets [-- SEED]

use std::collections::BTreeMap;
use std::time::Duration;

use bloodraven_sim::apiserver::ResourceKey;
use bloodraven_sim::playground::{self, PLAYGROUND_GROUP, PLAYGROUND_NAMESPACE};
use bloodraven_sim::{Fault, World};
use serde_json::Value;

type Error = Box<dyn std::error::Error>;

fn status(world: &World) -> Value {
    world
        .api()
        .get(
            &ResourceKey::new(
                "bloodraven.shipstream.io",
                "v1alpha1",
                "mysqlfailovergroups",
            ),
            Some(PLAYGROUND_NAMESPACE),
            PLAYGROUND_GROUP,
        )
        .ok()
        .and_then(|g| g.get("status").cloned())
        .unwrap_or(Value::Null)
}

fn site_writable(world: &World, site: &str) -> bool {
    status(world)["sites"].as_array().is_some_and(|sites| {
        sites
            .iter()
            .any(|s| s["name"] == site && s["state"] == "writable")
    })
}

fn healthy(world: &World, active: &str) -> bool {
    let s = status(world);
    s["health"] == "Healthy" && s["activeSite"] == active
}

fn bootstrapped(seed: u64) -> Result<World, Error> {
    let mut world = World::playground(seed)?;
    playground::install(&world)?;
    playground::apply_file(&world, &playground::playground_manifest())?;
    if !world.run_until(Duration::from_secs(120), |w| healthy(w, "iad"))? {
        return Err(format!("seed {seed}: the group never became Healthy").into());
    }
    Ok(world)
}

fn writes(world: &World) -> BTreeMap<(String, String, String), u64> {
    world
        .api()
        .request_counts()
        .into_iter()
        .filter(|(k, _)| !matches!(k.verb.as_str(), "get" | "list" | "watch"))
        .map(|(k, n)| ((k.user_agent, k.verb, k.resource), n))
        .collect()
}

fn main() -> Result<(), Error> {
    let seed: u64 = std::env::args().nth(1).map_or(Ok(1), |s| s.parse())?;

    // Emergency failover: crash the primary's node; time until the operator observes
    // the new primary writable (its probe read read_only=OFF: it accepts writes).
    let mut world = bootstrapped(seed)?;
    let node = world.site_node("iad")?.to_string();
    let crashed = world.elapsed();
    world.apply(Fault::CrashNode(node))?;
    world.run_until(Duration::from_secs(60), |w| site_writable(w, "pdx"))?;
    let rto = world.elapsed() - crashed;

    // Planned failover: writeUnavailableMs as the operator records it.
    let mut world = bootstrapped(seed)?;
    world.api().patch(
        &ResourceKey::new(
            "bloodraven.shipstream.io",
            "v1alpha1",
            "mysqlfailovergroups",
        ),
        Some(PLAYGROUND_NAMESPACE),
        PLAYGROUND_GROUP,
        bloodraven_sim::apiserver::Patch::Merge(serde_json::json!(
            {"metadata": {"annotations": {"bloodraven.shipstream.io/planned-failover": "pdx"}}}
        )),
        bloodraven_sim::apiserver::Subresource::Main,
        &bloodraven_sim::apiserver::Caller {
            user_agent: "targets",
        },
    )?;
    world.run_until(Duration::from_secs(60), |w| {
        status(w)["plannedFailover"]["phase"] == "Succeeded"
    })?;
    let planned = status(&world)["plannedFailover"]["writeUnavailableMs"].clone();

    // Idle: a Healthy group left alone for 10 simulated minutes.
    let mut world = bootstrapped(seed)?;
    world.run_for(Duration::from_secs(30))?;
    let before = writes(&world);
    world.run_for(Duration::from_secs(600))?;
    let after = writes(&world);

    println!("Bloodraven targets, simulation seed {seed} (playground defaults)");
    println!(
        "  emergency failover, node crash -> new primary writable: {:.2} s (target <= 10 s)",
        rto.as_secs_f64()
    );
    println!("  planned failover writeUnavailableMs: {planned} ms (target <= 2000 ms)");
    println!(
        "  acknowledged writes lost in planned failover: not measured (no write workload yet)"
    );
    println!("  API writes over 10 idle simulated minutes, by client, verb and resource:");
    let mut operator_group_writes = 0;
    for (key, n) in &after {
        let delta = n - before.get(key).copied().unwrap_or(0);
        if delta == 0 {
            continue;
        }
        println!("    {:<22} {:<7} {:<40} {delta}", key.0, key.1, key.2);
        if key.0 == "bloodraven-operator"
            && !(key.2 == "leases.coordination.k8s.io" && key.1 == "update")
        {
            operator_group_writes += delta;
        }
    }
    println!(
        "  operator writes for the group (everything but its own leader-lease renewals): {operator_group_writes} (target 0)"
    );
    Ok(())
}
