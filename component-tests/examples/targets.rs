//! Prints issue 5's targets as measured in the simulation with the playground defaults:
//! emergency failover RTO, planned-failover write unavailability and the acknowledged
//! writes it lost (under the chaos runner's counter workload through the primary
//! Service), the API writes an idle healthy group causes over 10 simulated minutes
//! (by verb, resource and client), and the status writes per second of a healthy group
//! under the counter workload (issue 18's quiet status).
//!
//!     cargo run [--release] -p bloodraven-component-tests --example targets [-- SEED]

use std::collections::BTreeMap;
use std::time::Duration;

use bloodraven_sim::apiserver::ResourceKey;
use bloodraven_sim::playground::{self, PLAYGROUND_GROUP, PLAYGROUND_NAMESPACE};
use bloodraven_sim::{Fault, World};
use serde_json::Value;

type Error = Box<dyn std::error::Error>;

fn status(world: &World) -> Value {
    bloodraven_sim::playground::playground_status(world)
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

    // Planned failover under load: the chaos runner's counter (20 increments/s, one row
    // per increment, through the primary Service) runs before, during and after it.
    let planned = planned_under_load(seed)?;

    // Loaded: a Healthy group under the counter workload for 120 simulated seconds.
    let loaded = loaded_status_writes(seed, Duration::from_secs(120))?;

    // Idle: a Healthy group left alone for 10 simulated minutes.
    let mut world = bootstrapped(seed)?;
    world.run_for(Duration::from_secs(30))?;
    let before = writes(&world);
    world.run_for(Duration::from_secs(600))?;
    let after = writes(&world);

    println!("Bloodraven targets, simulation seed {seed} (playground defaults)");
    println!(
        "  command: cargo run -p bloodraven-component-tests --example targets -- {seed} (the simulation is deterministic: --release gives the same figures, faster)"
    );
    println!(
        "  emergency failover, node crash -> new primary writable: {:.2} s (target <= 10 s)",
        rto.as_secs_f64()
    );
    println!(
        "  planned failover writeUnavailableMs (operator): {} ms (target <= 2000 ms)",
        planned.write_unavailable_ms
    );
    println!(
        "  planned failover, longest write outage seen by the counter: {} ms",
        planned.client_outage_ms
    );
    println!(
        "  acknowledged writes lost in planned failover: {} of {} acknowledged (target 0){}",
        planned.lost.len(),
        planned.acknowledged,
        if planned.lost.is_empty() {
            String::new()
        } else {
            format!(": increments {:?}", planned.lost)
        }
    );
    println!(
        "  status writes of a healthy group under 20 writes/s: {} in {} s = {:.3}/s (target <= 0.1/s)",
        loaded.status_writes,
        loaded.window.as_secs(),
        loaded.per_second()
    );
    println!(
        "  operator API requests meanwhile: {} in {} s = {:.2}/s ({})",
        loaded.operator_requests.values().sum::<u64>(),
        loaded.window.as_secs(),
        loaded.operator_requests.values().sum::<u64>() as f64 / loaded.window.as_secs_f64(),
        loaded
            .operator_requests
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
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

/// Status writes of one healthy group under the counter workload.
struct LoadedStatusWrites {
    window: Duration,
    status_writes: u64,
    /// The operator's requests in the window by verb and resource.
    operator_requests: BTreeMap<String, u64>,
}

impl LoadedStatusWrites {
    fn per_second(&self) -> f64 {
        self.status_writes as f64 / self.window.as_secs_f64()
    }
}

/// Bootstraps the playground on the `DrivenWorld`, runs the counter workload (20
/// increments/s through the primary Service) and counts the operator's status patches
/// over `window`, after 10 s of warm-up under load.
fn loaded_status_writes(seed: u64, window: Duration) -> Result<LoadedStatusWrites, Error> {
    use bloodraven_chaos::backend::Backend;
    use bloodraven_chaos::backend::sim::run_backend;
    use bloodraven_chaos::scenario::CounterSpec;
    use bloodraven_chaos::workload::{self, SharedHistory};
    use bloodraven_sim::harness::DrivenWorld;

    let mut sim = DrivenWorld::playground(seed)?;
    sim.install_operator()?;
    playground::apply_file(sim.world(), &playground::playground_manifest())?;
    let healthy_any = |w: &World| ["iad", "pdx"].iter().any(|site| healthy(w, site));
    if !sim
        .world()
        .run_until(Duration::from_secs(120), healthy_any)?
    {
        return Err(
            format!("seed {seed}: the group never became Healthy on the DrivenWorld").into(),
        );
    }
    let api = sim.world().api().clone();
    let counts = move || -> BTreeMap<String, u64> {
        api.request_counts()
            .into_iter()
            .filter(|(k, _)| k.user_agent == "bloodraven-operator")
            .map(|(k, n)| (format!("{} {}", k.verb, k.resource), n))
            .collect()
    };
    let (before, after) = run_backend(
        &mut sim,
        window + Duration::from_secs(60),
        move |backend| async move {
            let counter = backend
                .counter("default")
                .ok_or("the sim backend has no counter workload")?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let writer = tokio::spawn(workload::run_counter(
                counter,
                CounterSpec {
                    writes_per_second: 20,
                    cache: false,
                },
                backend.clock(),
                SharedHistory::default(),
                stopped,
            ));
            tokio::time::sleep(Duration::from_secs(10)).await;
            let before = counts();
            tokio::time::sleep(window).await;
            let after = counts();
            let _ = stop.send(true);
            writer.await?;
            Ok::<_, Error>((before, after))
        },
    )??;
    let delta: BTreeMap<String, u64> = after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    if !healthy_any(sim.world()) {
        return Err(format!(
            "seed {seed}: the group was not Healthy at the end of the load: {:#}",
            status(sim.world())
        )
        .into());
    }
    Ok(LoadedStatusWrites {
        window,
        status_writes: delta
            .get("patch mysqlfailovergroups.bloodraven.shipstream.io/status")
            .copied()
            .unwrap_or(0),
        operator_requests: delta,
    })
}

/// What the planned failover under the counter workload measured.
struct PlannedUnderLoad {
    write_unavailable_ms: Value,
    client_outage_ms: i64,
    acknowledged: usize,
    lost: Vec<u64>,
}

/// Bootstraps the playground on the sim's `DrivenWorld`, runs its counter workload
/// through the primary Service, annotates a planned failover to pdx, keeps writing until
/// it succeeded and a few seconds after, then checks every acknowledged increment on the
/// final primary (the no-acknowledged-write-lost invariant's own check).
fn planned_under_load(seed: u64) -> Result<PlannedUnderLoad, Error> {
    use bloodraven_chaos::backend::Backend;
    use bloodraven_chaos::backend::sim::run_backend;
    use bloodraven_chaos::invariants;
    use bloodraven_chaos::scenario::CounterSpec;
    use bloodraven_chaos::workload::{self, SharedHistory};
    use bloodraven_sim::harness::DrivenWorld;

    let mut sim = DrivenWorld::playground(seed)?;
    sim.install_operator()?;
    playground::apply_file(sim.world(), &playground::playground_manifest())?;
    // With this World's slower mysqld start-up either site may win the bootstrap
    // election; the planned failover goes to the other one.
    let healthy_any = |w: &World| ["iad", "pdx"].iter().any(|site| healthy(w, site));
    if !sim
        .world()
        .run_until(Duration::from_secs(120), healthy_any)?
    {
        return Err(format!(
            "seed {seed}: the group never became Healthy on the DrivenWorld: {:#}",
            status(sim.world())
        )
        .into());
    }
    let target = if healthy(sim.world(), "iad") {
        "pdx"
    } else {
        "iad"
    };
    let api = sim.world().api().clone();
    let outcome = run_backend(
        &mut sim,
        Duration::from_secs(180),
        move |backend| async move {
            let counter = backend
                .counter("default")
                .ok_or("the sim backend has no counter workload")?;
            let history = SharedHistory::default();
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let writer = tokio::spawn(workload::run_counter(
                counter.clone(),
                CounterSpec {
                    writes_per_second: 20,
                    cache: false,
                },
                backend.clock(),
                history.clone(),
                stopped,
            ));
            tokio::time::sleep(Duration::from_secs(3)).await;
            api.patch(
            &groups(),
            Some(PLAYGROUND_NAMESPACE),
            PLAYGROUND_GROUP,
            bloodraven_sim::apiserver::Patch::Merge(serde_json::json!(
                {"metadata": {"annotations": {"bloodraven.shipstream.io/planned-failover": target}}}
            )),
            bloodraven_sim::apiserver::Subresource::Main,
            &bloodraven_sim::apiserver::Caller {
                user_agent: "targets",
            },
        )?;
            let phase = |api: &bloodraven_sim::apiserver::ApiServer| {
                api.get(&groups(), Some(PLAYGROUND_NAMESPACE), PLAYGROUND_GROUP)
                    .ok()
                    .and_then(|g| g.pointer("/status/plannedFailover/phase").cloned())
            };
            let mut waited = Duration::ZERO;
            while phase(&api) != Some(Value::from("Succeeded")) {
                if waited >= Duration::from_secs(60) {
                    return Err(format!(
                        "the planned failover did not succeed within 60s (phase {:?})",
                        phase(&api)
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += Duration::from_millis(100);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            let _ = stop.send(true);
            writer.await?;
            let history = history
                .lock()
                .map_err(|_| "counter history poisoned")?
                .clone();
            let committed = counter.committed().await?;
            let end = history.writes.last().map_or(0, |w| w.completed_at);
            let windows = invariants::unavailability_windows(&history.writes, end);
            Ok::<_, Error>((
                invariants::acknowledged_writes_lost(&history, &committed),
                history.acknowledged().count(),
                invariants::longest_unavailability(&windows).map_or(0, |w| w.duration_ms()),
            ))
        },
    )?;
    let (lost, acknowledged, client_outage_ms) = outcome?;
    Ok(PlannedUnderLoad {
        write_unavailable_ms: status(sim.world())["plannedFailover"]["writeUnavailableMs"].clone(),
        client_outage_ms,
        acknowledged,
        lost,
    })
}

fn groups() -> ResourceKey {
    ResourceKey::new(
        "bloodraven.shipstream.io",
        "v1alpha1",
        "mysqlfailovergroups",
    )
}
