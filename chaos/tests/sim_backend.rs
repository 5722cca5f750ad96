//! The sim backend on the real simulated playground, without the operator: a MySQL
//! StatefulSet app (tests/fixtures/sim) whose pods the image registry runs as MySQL
//! models. Pod kills, cordon + evict, network partition + recover, single-writer read
//! from the models, single-cache-master over the Dragonfly Service, a ledger recover
//! after the runner itself crashed, the deliberately failing scenario's readable diff,
//! replay by seed, and the fault plans.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bloodraven_chaos::backend::sim;
use bloodraven_chaos::backend::{LedgerFaults, SharedBackend};
use bloodraven_chaos::ledger;
use bloodraven_chaos::runner::{self, RunConfig, ScenarioOutcome};
use bloodraven_chaos::scenario::{self, Fault, Scenario};
use bloodraven_chaos::{cli, report};
use bloodraven_sim::apiserver::ResourceKey;
use bloodraven_sim::harness::{DrivenWorld, DriverError};
use serde_json::json;

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sim")
        .join(name);
    scenario::load(&path).unwrap()
}

fn config(dir: &tempfile::TempDir, id: &str, seed: u64) -> RunConfig {
    let mut c = RunConfig::new(dir.path().join(format!("{id}.ledger")));
    c.seed = Some(seed);
    c
}

fn run(name: &str, seed: u64) -> ScenarioOutcome {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(name);
    let outcome = sim::run_scenario(&s, &config(&dir, &s.id, seed));
    println!("{}", report::failure_text(&outcome));
    for line in &outcome.timeline {
        println!("{line}");
    }
    outcome
}

#[test]
fn killed_site_pods_come_back_ready() {
    let outcome = run("01-kill-site-pods-return.yaml", 11);
    assert!(outcome.passed(), "{}", report::failure_text(&outcome));
    let faults: Vec<&str> = outcome
        .timeline
        .iter()
        .filter(|t| t.kind == runner::TimelineKind::Fault)
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(
        faults[0].contains(r#""op":"delete-pods""#) && faults[0].contains(r#""site":"iad""#),
        "{faults:?}"
    );
    // Simulated minutes, wall seconds.
    assert!(outcome.simulated_ms > 1_000, "{}", outcome.simulated_ms);
}

#[test]
fn cordon_evicts_and_leaves_pods_pending_until_uncordon() {
    let outcome = run("02-cordon-evict-pending.yaml", 12);
    assert!(outcome.passed(), "{}", report::failure_text(&outcome));
}

#[test]
fn network_partition_stops_writes_and_recover_heals() {
    let outcome = run("03-network-partition-recover.yaml", 13);
    assert!(outcome.passed(), "{}", report::failure_text(&outcome));
    let w = outcome.workload.as_ref().unwrap();
    assert!(w.acknowledged > 10, "{w:?}");
    assert_eq!(w.acknowledged_writes_lost, Some(vec![]), "{w:?}");
    // The partition is one write-unavailability window of roughly its length.
    let longest = w.longest_unavailability_ms.unwrap();
    assert!(longest >= 40_000, "{w:?}");
}

#[test]
fn single_writer_reads_the_models_and_catches_two_writable_sites() {
    let outcome = run("90-two-writable-sites.yaml", 14);
    assert!(!outcome.passed());
    let text = report::failure_text(&outcome);
    assert!(text.contains("invariant single-writer"), "{text}");
    assert!(text.contains("two sites writable at once"), "{text}");
    assert!(
        text.contains("iad (observed) and pdx (observed) both writable"),
        "{text}"
    );
}

#[test]
fn single_cache_master_catches_two_pods_behind_the_dragonfly_service() {
    let outcome = run("92-two-cache-masters.yaml", 16);
    assert!(!outcome.passed());
    let text = report::failure_text(&outcome);
    assert!(text.contains("invariant single-cache-master"), "{text}");
    assert!(
        text.contains("two pods behind the app-facing Dragonfly Service"),
        "{text}"
    );
    assert!(text.contains("selected 2 pods: cache-0, cache-1"), "{text}");
}

#[test]
fn deliberately_failing_scenario_fails_readably_with_seed_and_replay() {
    let outcome = run("91-deliberately-failing.yaml", 15);
    assert!(!outcome.passed());
    assert_eq!(outcome.failures.len(), 2, "{:#?}", outcome.failures);
    let text = report::failure_text(&outcome);
    assert!(
        text.contains("steps[0] (line 10): assert StatefulSet/mysql-iad (two replicas)"),
        "{text}"
    );
    assert!(text.contains("did not hold within 20s"), "{text}");
    assert!(
        text.contains("status.readyReplicas: expected 2, got 1"),
        "{text}"
    );
    assert!(
        text.contains("- readyReplicas: 2") && text.contains("+ readyReplicas: 1"),
        "{text}"
    );
    assert!(
        text.contains("no operator /metrics reachable"),
        "the metric assertion names the missing operator: {text}"
    );
    assert_eq!(outcome.seed, Some(15));
    assert_eq!(
        report::replay_command(&outcome),
        "bloodraven-chaos run 91-deliberately-failing --backend sim --seed 15"
    );
}

#[test]
fn same_seed_same_timeline() {
    let first = run("01-kill-site-pods-return.yaml", 21);
    let second = run("01-kill-site-pods-return.yaml", 21);
    assert!(first.passed(), "{}", report::failure_text(&first));
    assert!(!first.timeline.is_empty());
    assert_eq!(first.timeline, second.timeline);
    assert_eq!(first.simulated_ms, second.simulated_ms);
}

/// The runner dies mid-scenario with faults in effect; `recover_ledger` run by a new
/// runner host against the same World undoes exactly those, newest first, once.
#[test]
fn ledger_recover_after_a_runner_crash_heals_the_world() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = scenario("02-cordon-evict-pending.yaml");
    s.steps = serde_saphyr_steps(
        r#"
- assert: {resource: {kind: StatefulSet, name: mysql-iad}, status: {readyReplicas: 1}, within: 60s}
- fault: {cordon: iad}
- fault: {partition: {between: [iad, pdx]}}
- wait: 10m
"#,
    );
    let cfg = config(&dir, &s.id, 31);
    let mut world = DrivenWorld::playground(31).unwrap();
    let owned = s.clone();
    let run_cfg = cfg.clone();
    let crashed = sim::run_backend(
        &mut world,
        Duration::from_secs(90),
        move |backend| async move { runner::run_scenario(&owned, backend, &run_cfg).await },
    );
    assert!(
        matches!(crashed, Err(DriverError::Stuck(_))),
        "runner must die mid-wait"
    );

    let api = world.world().api().clone();
    let node = |api: &bloodraven_sim::apiserver::ApiServer| {
        api.get(&ResourceKey::core("v1", "nodes"), None, "bloodraven-iad")
            .unwrap()
    };
    assert_eq!(node(&api)["spec"]["unschedulable"], json!(true));
    assert_eq!(world.world().network().faults().len(), 1);
    let pending = ledger::read_for_recovery(&cfg.ledger_path).unwrap().pending;
    assert_eq!(pending.len(), 2, "{pending:?}");

    let path = cfg.ledger_path.clone();
    let result = sim::run_backend(
        &mut world,
        Duration::from_secs(60),
        move |backend| async move {
            let backend: SharedBackend = backend;
            cli::recover_ledger(&path, &backend).await
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(result.errors, Vec::<String>::new());
    assert_eq!(result.undone.len(), 2);
    assert!(
        result.undone[0].contains("partition"),
        "{:?}",
        result.undone
    );
    assert!(result.undone[1].contains("cordon"), "{:?}", result.undone);
    // The undo takes effect in the World.
    world.run_for(Duration::from_millis(200)).unwrap();
    assert!(
        node(&api)["spec"]["unschedulable"].is_null(),
        "{}",
        node(&api)
    );
    assert!(world.world().network().faults().is_empty());
    assert!(
        ledger::read_for_recovery(&cfg.ledger_path)
            .unwrap()
            .pending
            .is_empty()
    );
}

fn serde_saphyr_steps(yaml: &str) -> Vec<scenario::Step> {
    let text = format!("description: steps\nsteps:{}", indent(yaml));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steps.yaml");
    std::fs::write(&path, text).unwrap();
    scenario::load(&path).unwrap().steps
}

fn indent(yaml: &str) -> String {
    yaml.lines().map(|l| format!("\n  {l}")).collect()
}

/// Each fault's plan: the World/API/model operations and their undo, as the ledger
/// stores them.
#[test]
fn every_fault_kind_has_a_plan_and_an_undo() {
    let mut world = DrivenWorld::playground(5).unwrap();
    let plans = sim::run_backend(&mut world, Duration::from_secs(5), |backend| async move {
        let mut out = Vec::new();
        for yaml in [
            "{kill-site: iad}",
            "{kill-pod: {site: pdx, component: dragonfly}}",
            "{kill-dragonfly: iad}",
            "{cordon: iad}",
            "{uncordon: iad}",
            "{network-partition: iad}",
            "{partition: {between: [iad, pdx]}}",
            "{node-crash: pdx}",
            "{write-divergent: {site: iad, transactions: 3}}",
            "{replication-delay: {site: pdx, seconds: 30}}",
            "{kill-operator: {}}",
            "{disable-sidecar: pdx}",
            "{freeze-dragonfly: pdx}",
        ] {
            let fault: Fault = serde_saphyr::from_str(yaml).unwrap();
            let plan = backend.plan_fault(&fault, "ns").await.unwrap();
            out.push((fault.to_string(), json!(plan.apply), json!(plan.undo)));
        }
        let unknown: Fault = serde_saphyr::from_str("{kill-site: sfo}").unwrap();
        let err = backend.plan_fault(&unknown, "ns").await.unwrap_err();
        out.push(("error".into(), json!(err.to_string()), json!(null)));
        out
    })
    .unwrap();
    let get = |name: &str| plans.iter().find(|p| p.0 == name).unwrap().clone();
    let (_, apply, undo) = get("kill-site iad");
    assert_eq!(
        apply,
        json!([{"op": "delete-pods", "namespace": "ns", "site": "iad", "components": ["mysql", "dragonfly"]}])
    );
    assert_eq!(undo, json!([]));
    let (_, apply, _) = get("kill-pod pdx/dragonfly");
    assert_eq!(apply[0]["components"], json!(["dragonfly"]));
    let (_, apply, undo) = get("cordon iad");
    assert_eq!(
        apply,
        json!([{"op": "cordon", "site": "iad"}, {"op": "delete-pods", "namespace": "ns", "site": "iad", "components": []}])
    );
    assert_eq!(undo, json!([{"op": "uncordon", "site": "iad"}]));
    let (_, apply, undo) = get("network-partition iad");
    assert_eq!(apply, json!([{"op": "isolate-site", "site": "iad"}]));
    assert_eq!(undo, json!([{"op": "heal-site", "site": "iad"}]));
    let (_, apply, undo) = get("partition iad<->pdx");
    assert_eq!(
        apply,
        json!([{"op": "partition-sites", "sites": ["iad", "pdx"]}])
    );
    assert_eq!(undo, json!([{"op": "heal-sites", "sites": ["iad", "pdx"]}]));
    let (_, apply, undo) = get("node-crash pdx");
    assert_eq!(apply, json!([{"op": "crash-node", "site": "pdx"}]));
    assert_eq!(undo, json!([{"op": "recover-node", "site": "pdx"}]));
    let (_, apply, undo) = get("write-divergent iad x3");
    assert_eq!(
        apply,
        json!([{"op": "forced-writes", "namespace": "ns", "site": "iad", "transactions": 3}])
    );
    assert_eq!(undo, json!([]));
    let (_, apply, undo) = get("replication-delay pdx 30s");
    assert_eq!(apply[0]["seconds"], 30);
    assert_eq!(undo[0]["seconds"], 0);
    let (_, apply, _) = get("kill-operator");
    assert_eq!(apply[0]["op"], "delete-operator-pods");
    let (_, apply, undo) = get("disable-sidecar pdx");
    assert_eq!(
        apply,
        json!([{"op": "freeze-container", "namespace": "ns", "site": "pdx", "component": "mysql", "container": "sidecar", "frozen": true}])
    );
    assert_eq!(
        undo,
        json!([{"op": "freeze-container", "namespace": "ns", "site": "pdx", "component": "mysql", "container": "sidecar", "frozen": false}])
    );
    let (_, apply, undo) = get("freeze-dragonfly pdx");
    assert_eq!(
        apply,
        json!([{"op": "freeze-container", "namespace": "ns", "site": "pdx", "component": "dragonfly", "container": "dragonfly", "frozen": true}])
    );
    assert_eq!(
        undo,
        json!([{"op": "freeze-container", "namespace": "ns", "site": "pdx", "component": "dragonfly", "container": "dragonfly", "frozen": false}])
    );
    // A ledger written before Dragonfly could be frozen has no component: MySQL's.
    let old: bloodraven_chaos::backend::sim::SimOp = serde_json::from_value(
        json!({"op": "freeze-container", "namespace": "ns", "site": "pdx", "container": "sidecar", "frozen": true}),
    )
    .unwrap();
    assert_eq!(json!(old)["component"], "mysql");
    let (_, err, _) = get("error");
    assert!(err.as_str().unwrap().contains("sfo"), "{err}");
}

/// `Arc<SimBackend>` is what the runner gets; keep the coercion visible.
#[allow(dead_code)]
fn backend_is_shared(b: Arc<sim::SimBackend>) -> SharedBackend {
    b
}
