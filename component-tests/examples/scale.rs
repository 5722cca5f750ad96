//! Issue 18's scale benchmark: 1, 10 and 100 failover groups under one operator in the
//! simulation, each with a write workload (an ordinary client incrementing a counter
//! through the group's primary Service). Over a steady window it prints the operator's
//! API requests per second by verb, the status writes per group, the reconcile pass
//! latency p50/p99 (from the operator's own histogram, so as bucket upper bounds), the
//! process's resident memory and CPU per simulated second (the whole simulation: the
//! API server, every mysqld model and sidecar, and the operator), and the RTO of one
//! group whose primary pod dies while the others keep writing.
//!
//! The operator's own share is measured by taking it away: every host of the
//! simulation shares this process, so at the end its host is crashed (turmoil drops
//! its runtime and every task, connection and cache it held, at once) and the heap's
//! live bytes before and after, from a counting allocator, differ by the operator's
//! heap; a further window without the operator gives the CPU the rest of the
//! simulation costs, so the difference is the operator's CPU (with the API server's
//! work on its behalf).
//!
//!     cargo run --release -p bloodraven-component-tests --example scale [-- SEED [GROUPS...]]

use std::alloc::System;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bloodraven::children::names;
use bloodraven::seams::mysql::{MysqlConnector, MysqlTarget, MysqlTimeouts};
use bloodraven_sim::apiserver::ResourceKey;
use bloodraven_sim::dialer::ClusterDialer;
use bloodraven_sim::models::mysql::mysql_connector;
use bloodraven_sim::playground::{self, OPERATOR_NAMESPACE};
use bloodraven_sim::{Placement, World};
use serde_json::Value;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// Counts every allocation of the process: the operator's heap is the difference of
/// the live bytes before and after its host is crashed.
#[global_allocator]
static HEAP: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type Error = Box<dyn std::error::Error>;

/// Increments per second per group.
const WRITES_PER_SECOND: u64 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// How long the simulation runs on after the operator's host was crashed, for the CPU
/// the rest of it costs.
const WITHOUT_OPERATOR: Duration = Duration::from_secs(10);

fn namespace(i: usize) -> String {
    format!("scale-{i:03}")
}

fn group_name(_i: usize) -> String {
    "db".to_string()
}

/// One group per namespace: the playground's sites and failover settings, no DNS,
/// Dragonfly or backups (what is measured is the MySQL failover path).
fn manifest(i: usize) -> String {
    let ns = namespace(i);
    let name = group_name(i);
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}-mysql, namespace: {ns}}}
type: Opaque
stringData:
  root-password: root
  replication-password: repl
  app-password: app
  app-database: bloodraven_counter
---
apiVersion: bloodraven.shipstream.io/v1alpha1
kind: MysqlFailoverGroup
metadata: {{name: {name}, namespace: {ns}}}
spec:
  sites:
    - name: iad
      nodeSelector: {{topology.kubernetes.io/zone: zone-iad}}
    - name: pdx
      nodeSelector: {{topology.kubernetes.io/zone: zone-pdx}}
  mysql:
    image: mysql:8.4
    flavor: mysql
    credentialsSecret: {name}-mysql
    durability: async
    storage: {{size: 1Gi}}
  failover:
    automatic: true
    probeInterval: 1s
    detectionWindow: 3s
    leaseDuration: 5s
    leaseRenewInterval: 1s
    leaseSafetyMargin: 1s
    relayLogDrainTimeout: 10s
    maxLagForPlannedFailover: 5s
"#
    )
}

fn groups_key() -> ResourceKey {
    bloodraven_sim::playground::groups_key()
}

fn status(world: &World, i: usize) -> Value {
    world
        .api()
        .get(&groups_key(), Some(&namespace(i)), &group_name(i))
        .ok()
        .and_then(|g| g.get("status").cloned())
        .unwrap_or(Value::Null)
}

fn healthy(world: &World, i: usize) -> bool {
    status(world, i)["health"] == "Healthy"
}

fn writable_site(world: &World, i: usize) -> Option<String> {
    status(world, i)["sites"].as_array().and_then(|sites| {
        sites
            .iter()
            .find(|s| s["state"] == "writable")
            .and_then(|s| s["name"].as_str())
            .map(str::to_string)
    })
}

/// An ordinary client writing `WRITES_PER_SECOND` increments through the group's
/// primary Service, reconnecting after any failure (the primary may have moved).
fn add_writer(world: &mut World, i: usize) {
    let ns = namespace(i);
    let host = format!("writer-{i:03}");
    let api = world.api().clone();
    let own_host = host.clone();
    world.add_host(&host, Placement::ControlPlane, move || {
        let dialer =
            ClusterDialer::new(api.clone(), &ns, &own_host, Duration::from_secs(1)).shared();
        let target = MysqlTarget {
            host: format!("{}.{ns}", names::mysql_primary_service(&group_name(i))),
            port: 3306,
            user: "app".into(),
            password: "app".into(),
        };
        async move {
            let connector = mysql_connector(
                dialer,
                MysqlTimeouts {
                    connect: Duration::from_secs(1),
                    request: Duration::from_secs(1),
                },
            );
            let mut session = None;
            let pause = Duration::from_millis(1_000 / WRITES_PER_SECOND);
            loop {
                if session.is_none() {
                    session = connector.connect(&target).await.ok();
                }
                if let Some(s) = session.as_mut()
                    && s.counter_increment("scale").await.is_err()
                {
                    session = None;
                }
                tokio::time::sleep(pause).await;
            }
        }
    });
}

/// The operator pod's host and metrics port.
fn operator_endpoint(world: &World) -> Result<(String, u16), Error> {
    let pods = world.api().list(
        &ResourceKey::core("v1", "pods"),
        Some(OPERATOR_NAMESPACE),
        &Default::default(),
    )?;
    let pod = pods
        .items
        .iter()
        .find(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .and_then(|p| p.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .ok_or("no operator pod")?;
    Ok((
        bloodraven_sim::hosts::pod_host_name(OPERATOR_NAMESPACE, pod),
        bloodraven::deploy::METRICS_PORT,
    ))
}

/// Scrapes the operator's /metrics from a client host on the simulated network.
fn scrape(world: &mut World, tag: &str) -> Result<String, Error> {
    let (host, port) = operator_endpoint(world)?;
    let body: Rc<RefCell<Option<String>>> = Rc::default();
    let out = body.clone();
    world.add_client(
        &format!("scrape-{tag}"),
        Placement::ControlPlane,
        async move {
            let text = bloodraven_sim::harness::metrics::get_metrics(&host, port).await?;
            *out.borrow_mut() = Some(text);
            Ok(())
        },
    );
    world.run_until(Duration::from_secs(10), |_| body.borrow().is_some())?;
    let text = body.borrow_mut().take();
    text.ok_or_else(|| "the operator's /metrics did not answer".into())
}

/// A histogram's buckets summed over every group: (upper bound, cumulative count).
/// `family` is `reconcile_duration_seconds` or `probe_duration_seconds`.
fn histogram_buckets(metrics: &str, family: &str) -> BTreeMap<String, f64> {
    let prefix = format!("bloodraven_{family}_bucket{{");
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let Some(le) = rest.split("le=\"").nth(1).and_then(|s| s.split('"').next()) else {
            continue;
        };
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        *out.entry(le.to_string()).or_insert(0.0) += value;
    }
    out
}

/// The smallest bucket bound holding `q` of the passes between two scrapes.
fn quantile(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, q: f64) -> String {
    let mut buckets: Vec<(f64, String, f64)> = after
        .iter()
        .map(|(le, n)| {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            (
                bound,
                le.clone(),
                n - before.get(le).copied().unwrap_or(0.0),
            )
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.2);
    if total <= 0.0 {
        return "no passes".into();
    }
    buckets
        .iter()
        .find(|b| b.2 >= q * total)
        .map_or("?".into(), |b| format!("<= {} s", b.1))
}

fn operator_requests(world: &World) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (key, n) in world.api().request_counts() {
        if key.user_agent == "bloodraven-operator" {
            *out.entry(key.verb.clone()).or_insert(0) += n;
            if key.resource.ends_with("/status") && key.resource.starts_with("mysqlfailovergroups")
            {
                *out.entry("status-writes".to_string()).or_insert(0) += n;
            }
        }
    }
    out
}

/// (resident KiB now, peak resident KiB) from /proc/self/status.
fn memory_kib() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes allocated and not yet freed, by the whole process.
fn heap_live_bytes() -> u64 {
    let stats = HEAP.stats();
    u64::try_from(
        stats
            .bytes_allocated
            .saturating_sub(stats.bytes_deallocated),
    )
    .unwrap_or(u64::MAX)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// User + system CPU time of this process (from /proc/self/stat, in clock ticks of
/// 10 ms on Linux).
fn cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = text
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0, utime 11, stime 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn run(seed: u64, groups: usize) -> Result<(), Error> {
    let wall = Instant::now();
    // Every group's sidecars connect to the API server within the same few steps;
    // turmoil's default of 64 pending connections per listener is kept up to 8 groups.
    let mut world = bloodraven_sim::WorldBuilder::new(seed)
        .tcp_capacity(64.max(8 * groups))
        .build()?;
    playground::install(&world)?;
    for i in 0..groups {
        playground::apply_text(&world, std::path::Path::new("scale.yaml"), &manifest(i))?;
    }
    let all_healthy = |w: &World| (0..groups).all(|i| healthy(w, i));
    if !world.run_until(Duration::from_secs(900), all_healthy)? {
        let sick: Vec<usize> = (0..groups).filter(|i| !healthy(&world, *i)).collect();
        return Err(format!(
            "{} of {groups} groups never became Healthy: {sick:?}",
            sick.len()
        )
        .into());
    }
    let bootstrap = world.elapsed();
    // Printed at once: a large run takes long, and this shows how far it got.
    println!("{groups} group(s), {WRITES_PER_SECOND} writes/s each, seed {seed}:");
    println!(
        "  bootstrap to all Healthy: {:.1} simulated s",
        bootstrap.as_secs_f64()
    );
    for i in 0..groups {
        add_writer(&mut world, i);
    }
    world.run_for(Duration::from_secs(15))?;

    let requests_before = operator_requests(&world);
    let scraped = scrape(&mut world, "before")?;
    let reconciles_before = histogram_buckets(&scraped, "reconcile_duration_seconds");
    let probes_before = histogram_buckets(&scraped, "probe_duration_seconds");
    let cpu_before = cpu_time();
    let wall_before = Instant::now();
    let sim_before = world.elapsed();
    world.run_for(WINDOW)?;
    let simulated = world.elapsed() - sim_before;
    let wall_window = wall_before.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let requests_after = operator_requests(&world);
    let scraped = scrape(&mut world, "after")?;
    let reconciles_after = histogram_buckets(&scraped, "reconcile_duration_seconds");
    let probes_after = histogram_buckets(&scraped, "probe_duration_seconds");
    let (rss, peak) = memory_kib();
    let heap_window = heap_live_bytes();
    let healthy_after = (0..groups).filter(|i| healthy(&world, *i)).count();

    // One group's primary pod dies (its host crashes: mysqld and its sidecar stop at
    // once, nothing answers) while the others keep writing.
    let victim = 0;
    let primary = writable_site(&world, victim).ok_or("group 0 has no writable site")?;
    let pod = names::mysql_pod(&group_name(victim), &primary);
    world.network().crash(&bloodraven_sim::hosts::pod_host_name(
        &namespace(victim),
        &pod,
    ));
    let frozen_at = world.elapsed();
    let moved = world.run_until(Duration::from_secs(120), |w| {
        writable_site(w, victim).is_some_and(|s| s != primary)
    })?;
    let rto = world.elapsed() - frozen_at;

    // The operator's share: its host is crashed (nothing restarts a crashed host), which
    // frees its heap at once; then the rest of the simulation runs on without it.
    let heap_with_operator = heap_live_bytes();
    let (operator_host, _) = operator_endpoint(&world)?;
    world.network().crash(&operator_host);
    let heap_without_operator = heap_live_bytes();
    let operator_heap = heap_with_operator.saturating_sub(heap_without_operator);
    let cpu_before_rest = cpu_time();
    let sim_before_rest = world.elapsed();
    world.run_for(WITHOUT_OPERATOR)?;
    let rest_cpu_per_second = cpu_time().saturating_sub(cpu_before_rest).as_secs_f64()
        / (world.elapsed() - sim_before_rest).as_secs_f64();

    let per_second = |key: &str| {
        let n = requests_after.get(key).copied().unwrap_or(0)
            - requests_before.get(key).copied().unwrap_or(0);
        n as f64 / simulated.as_secs_f64()
    };
    let verbs: Vec<String> = requests_after
        .keys()
        .filter(|k| *k != "status-writes")
        .map(|verb| format!("{verb} {:.2}", per_second(verb)))
        .collect();
    let total: f64 = requests_after
        .keys()
        .filter(|k| *k != "status-writes")
        .map(|k| per_second(k))
        .sum();
    println!(
        "  operator API requests/s over {} simulated s: {total:.2} ({})",
        simulated.as_secs(),
        verbs.join(", ")
    );
    println!(
        "  status writes/s per group: {:.3}",
        per_second("status-writes") / groups as f64
    );
    println!(
        "  reconcile pass latency (simulated): p50 {}, p99 {}",
        quantile(&reconciles_before, &reconciles_after, 0.5),
        quantile(&reconciles_before, &reconciles_after, 0.99)
    );
    println!(
        "  probe pass latency (simulated, both sites in turn): p50 {}, p99 {}",
        quantile(&probes_before, &probes_after, 0.5),
        quantile(&probes_before, &probes_after, 0.99)
    );
    println!(
        "  process memory (whole simulation): {} MiB resident, {} MiB peak; heap {:.1} MiB live",
        rss / 1024,
        peak / 1024,
        mib(heap_window)
    );
    println!(
        "  operator heap (allocator: live bytes freed when its host was crashed): {:.1} MiB ({:.0} KiB per group)",
        mib(operator_heap),
        operator_heap as f64 / 1024.0 / groups as f64
    );
    let cpu_per_second = cpu.as_secs_f64() / simulated.as_secs_f64();
    println!(
        "  process CPU per simulated second (whole simulation): {cpu_per_second:.3} s ({:.1} s wall for the window)",
        wall_window.as_secs_f64()
    );
    println!(
        "  operator CPU per simulated second (whole simulation minus {} s without the operator, {rest_cpu_per_second:.3} s): {:.3} s",
        WITHOUT_OPERATOR.as_secs(),
        (cpu_per_second - rest_cpu_per_second).max(0.0)
    );
    println!("  groups Healthy at the end of the window: {healthy_after} of {groups}");
    if moved {
        println!(
            "  RTO of group 0 (primary pod dead, the others writing): {:.2} s",
            rto.as_secs_f64()
        );
    } else {
        println!("  RTO of group 0: no failover within 120 s");
    }
    println!(
        "  wall time of this run: {:.1} s",
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().map_or(Ok(1), |s| s.parse())?;
    let sizes: Vec<usize> = args.map(|s| s.parse()).collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![1, 10, 100]
    } else {
        sizes
    };
    println!(
        "Bloodraven scale benchmark (simulation): cargo run --release -p bloodraven-component-tests --example scale -- {seed} {}",
        sizes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for groups in sizes {
        run(seed, groups)?;
    }
    Ok(())
}
