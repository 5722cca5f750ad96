//! Prints issue 5's targets as measured in the simulation with the playground defaults:
//! emergency failover RTO, planned-failover write unavailability and the acknowledged
//! writes it lost (under the chaos runner's counter workload through the primary
//! Service), the API writes an idle healthy group causes over 10 simulated minutes
//! (by verb, resource and client), and the status writes per second of a healthy group
//! under the counter workload (issue 18's quiet status).
//!
//! Issue 18's breakdowns: where the planned write-unavailability and the emergency RTO
//! go, step by step. The steps come from three independent sources, each stamped with
//! simulated wall time: the operator's and sidecars' own log lines (`acting` with the
//! action; a sidecar lifting its fence), read by a tracing layer installed here; the
//! MySQL models' writability, sampled after every simulated tick; and the clients'
//! writes (the first one a site accepted after the fault or the fence).
//!
//!     cargo run [--release] -p bloodraven-component-tests --example targets [-- SEED]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloodraven::children::names;
use bloodraven::seams::Clock as _;
use bloodraven::seams::mysql::{MysqlConnector, MysqlTarget, MysqlTimeouts};
use bloodraven_sim::Placement;
use bloodraven_sim::dialer::ClusterDialer;
use bloodraven_sim::models::mysql::mysql_connector;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

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

/// Milliseconds since the Unix epoch, in simulated time.
type Millis = i64;

/// One log line of the operator or a sidecar, at simulated wall time.
#[derive(Clone, Debug)]
struct LogStep {
    at: Millis,
    /// The message, then ` field=value` for each field.
    text: String,
}

/// Every `bloodraven` log line at info level or above emitted inside a simulated host,
/// stamped with that host's simulated time. The simulation runs one world at a time on
/// one thread, so one layer serves every run; every World starts at the same simulated
/// epoch, so each run clears the lines of the runs before it.
#[derive(Clone, Default)]
struct StepLog(Arc<Mutex<Vec<LogStep>>>);

impl StepLog {
    fn install(&self) -> Result<(), Error> {
        tracing_subscriber::registry()
            .with(
                self.clone()
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            )
            .try_init()?;
        Ok(())
    }

    fn clear(&self) {
        if let Ok(mut lines) = self.0.lock() {
            lines.clear();
        }
    }

    /// When the operator first logged `acting` on `action` (the start of its Debug form,
    /// as `?action` prints it) at or after `after`.
    fn acted(&self, after: Millis, action: &str) -> Option<Millis> {
        self.first(after, &["acting", &format!("action={action}")])
    }

    /// The first line at or after `after` that contains every one of `parts`.
    fn first(&self, after: Millis, parts: &[&str]) -> Option<Millis> {
        let lines = self.0.lock().ok()?;
        lines
            .iter()
            .find(|l| l.at >= after && parts.iter().all(|p| l.text.contains(p)))
            .map(|l| l.at)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StepLog {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !event.metadata().target().starts_with("bloodraven") {
            return;
        }
        // Outside a simulated host there is no simulated time to stamp the line with.
        let Some(since_epoch) = turmoil::since_epoch() else {
            return;
        };
        let mut text = String::new();
        event.record(&mut LineFields(&mut text));
        if let Ok(mut lines) = self.0.lock() {
            lines.push(LogStep {
                at: i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX),
                text,
            });
        }
    }
}

struct LineFields<'a>(&'a mut String);

impl tracing::field::Visit for LineFields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = if field.name() == "message" {
            write!(self.0, "{value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }
}

/// Prints the steps that were seen in time order, each with its time since `start` and
/// the time since the step before it (the segment it ends); a step not seen is listed
/// as such, so that a missing one is never mistaken for a zero.
fn print_breakdown(title: &str, start: Millis, steps: &[(&str, Option<Millis>)]) {
    println!("  {title}");
    let mut seen: Vec<(&str, Millis)> = steps
        .iter()
        .filter_map(|(label, at)| at.map(|at| (*label, at)))
        .collect();
    seen.sort_by_key(|(_, at)| *at);
    let mut previous = start;
    for (label, at) in seen {
        println!(
            "    {label:<62} +{:>5} ms  ({:>5} ms)",
            at - start,
            at - previous
        );
        previous = at;
    }
    for (label, at) in steps {
        if at.is_none() {
            println!("    {label:<62} not seen");
        }
    }
}

/// An ordinary client of the playground group: one increment every 50 ms through the
/// primary Service, reconnecting after any failure; records when each write was
/// accepted and by which site's mysqld (the site is not known to a plain client, so
/// only the time is kept).
fn add_writer(world: &mut World, accepted: Rc<RefCell<Vec<Millis>>>) {
    let api = world.api().clone();
    let clock = world.clock().clone();
    let host = "targets-writer";
    world.add_host(host, Placement::ControlPlane, move || {
        let dialer = ClusterDialer::new(
            api.clone(),
            PLAYGROUND_NAMESPACE,
            host,
            Duration::from_secs(1),
        )
        .shared();
        let target = MysqlTarget {
            host: format!(
                "{}.{PLAYGROUND_NAMESPACE}",
                names::mysql_primary_service(PLAYGROUND_GROUP)
            ),
            port: 3306,
            user: "app".into(),
            // The playground Secret's `app-password` (examples/playground.yaml).
            password: "playground-app".into(),
        };
        let accepted = accepted.clone();
        let clock = clock.clone();
        async move {
            let connector = mysql_connector(
                dialer,
                MysqlTimeouts {
                    connect: Duration::from_millis(500),
                    request: Duration::from_millis(500),
                },
            );
            let mut session = None;
            loop {
                if session.is_none() {
                    session = connector.connect(&target).await.ok();
                }
                if let Some(s) = session.as_mut() {
                    match s.counter_increment("targets").await {
                        Ok(_) => accepted.borrow_mut().push(clock.now().as_millisecond()),
                        Err(_) => session = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
}

/// When the operator published an Event with `reason` at or after `after`
/// (`eventTime`, microsecond resolution).
fn event_time(world: &World, reason: &str, after: Millis) -> Option<Millis> {
    let events = world
        .api()
        .list(
            &ResourceKey::new("events.k8s.io", "v1", "events"),
            Some(PLAYGROUND_NAMESPACE),
            &Default::default(),
        )
        .ok()?;
    events
        .items
        .iter()
        .filter(|e| e["reason"] == reason)
        .filter_map(|e| e["eventTime"].as_str())
        .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .filter(|at| *at >= after)
        .min()
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
    let log = StepLog::default();
    log.install()?;

    // Emergency failover: crash the primary's node; time until the operator observes
    // the new primary writable (its probe read read_only=OFF: it accepts writes). A
    // plain client writes through the primary Service meanwhile, for the first write
    // the new primary accepted.
    let mut world = bootstrapped(seed)?;
    let accepted: Rc<RefCell<Vec<Millis>>> = Rc::default();
    add_writer(&mut world, accepted.clone());
    world.run_for(Duration::from_secs(3))?;
    let node = world.site_node("iad")?.to_string();
    let crashed = world.elapsed();
    let crashed_at = world.clock().now().as_millisecond();
    log.clear();
    world.apply(Fault::CrashNode(node))?;
    world.run_until(Duration::from_secs(60), |w| site_writable(w, "pdx"))?;
    let rto = world.elapsed() - crashed;
    let operator_saw_writable = world.clock().now().as_millisecond();
    // A little longer, for the steps after the operator saw it (DNS, the first write).
    world.run_for(Duration::from_secs(3))?;
    let emergency_steps = vec![
        (
            "failover started: detection (Event FailoverStarted)",
            event_time(&world, "FailoverStarted", crashed_at),
        ),
        (
            "iad's lease expired on the operator's clock: lease moved to pdx",
            log.acted(crashed_at, "MoveLease { to: \"pdx\""),
        ),
        (
            "promotion: writable grant written (acting Promote)",
            log.acted(crashed_at, "Promote { site: \"pdx\" }"),
        ),
        (
            "pdx's sidecar lifts its fence (read_only=OFF)",
            log.first(crashed_at, &["lifting the fence", "site=pdx"]),
        ),
        (
            "operator's probe sees pdx writable (the RTO above)",
            Some(operator_saw_writable),
        ),
        (
            "primary Service moved: pdx labelled primary",
            log.acted(crashed_at, "SetRoleLabel { site: \"pdx\", role: Primary }"),
        ),
        (
            "DNS points at pdx (acting UpdateDns)",
            log.acted(crashed_at, "UpdateDns { site: \"pdx\" }"),
        ),
        (
            "first write accepted through the primary Service",
            accepted
                .borrow()
                .iter()
                .copied()
                .find(|at| *at > crashed_at),
        ),
    ];

    // Planned failover under load: the chaos runner's counter (20 increments/s, one row
    // per increment, through the primary Service) runs before, during and after it.
    let planned = planned_under_load(seed, &log)?;

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
    print_breakdown(
        "where the emergency RTO goes (node crash at +0 ms; iad's node is down, so it is fenced by its lease expiring):",
        crashed_at,
        &emergency_steps,
    );
    println!(
        "  planned failover writeUnavailableMs (operator): {} ms (target <= 2000 ms)",
        planned.write_unavailable_ms
    );
    print_breakdown(
        &format!(
            "where the planned write-unavailability goes (annotation at +0 ms, {} -> {}):",
            planned.from, planned.to
        ),
        planned.annotated_at,
        &planned.steps,
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
    from: String,
    to: String,
    annotated_at: Millis,
    steps: Vec<(&'static str, Option<Millis>)>,
    write_unavailable_ms: Value,
    client_outage_ms: i64,
    acknowledged: usize,
    lost: Vec<u64>,
}

/// Bootstraps the playground on the sim's `DrivenWorld`, runs its counter workload
/// through the primary Service, annotates a planned failover to pdx, keeps writing until
/// it succeeded and a few seconds after, then checks every acknowledged increment on the
/// final primary (the no-acknowledged-write-lost invariant's own check).
fn planned_under_load(seed: u64, log: &StepLog) -> Result<PlannedUnderLoad, Error> {
    // Every World starts at the same simulated epoch: the lines of the runs before this
    // one carry times that this run's would be mistaken for.
    log.clear();
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
            // Only the changes from the annotation on.
            let _ = backend.writability_changes();
            let annotated_at = backend.clock().now().as_millisecond();
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
            let changes = backend.writability_changes().unwrap_or_default();
            Ok::<_, Error>((
                invariants::acknowledged_writes_lost(&history, &committed),
                history.acknowledged().count(),
                invariants::longest_unavailability(&windows).map_or(0, |w| w.duration_ms()),
                annotated_at,
                changes,
                history,
            ))
        },
    )?;
    let (lost, acknowledged, client_outage_ms, annotated_at, changes, history) = outcome?;
    let from = if target == "pdx" { "iad" } else { "pdx" };
    let fence_issued = log.acted(annotated_at, &format!("Fence {{ site: \"{from}\" }}"));
    let after_fence = fence_issued.unwrap_or(annotated_at);
    let writability = |site: &str, writable: bool| {
        changes
            .iter()
            .find(|c| c.at >= annotated_at && c.site == site && c.writable == writable)
            .map(|c| c.at)
    };
    let steps = vec![
        ("fence issued: writes stop (acting Fence)", fence_issued),
        (
            "old primary refuses writes (super_read_only=ON)",
            writability(from, false),
        ),
        (
            "exact catch-up seen: lease moved (acting MoveLease)",
            log.acted(after_fence, &format!("MoveLease {{ to: \"{target}\"")),
        ),
        (
            "writable grant written (acting Promote)",
            log.acted(after_fence, &format!("Promote {{ site: \"{target}\" }}")),
        ),
        (
            "target's sidecar lifts its fence",
            log.first(
                after_fence,
                &["lifting the fence", &format!("site={target}")],
            ),
        ),
        (
            "target accepts writes (read_only=OFF)",
            writability(target, true),
        ),
        (
            "primary Service moved: target labelled primary",
            log.acted(
                after_fence,
                &format!("SetRoleLabel {{ site: \"{target}\", role: Primary }}"),
            ),
        ),
        (
            "first write accepted by the target (counter)",
            history
                .acknowledged()
                .find(|w| w.invoked_at >= after_fence && w.acked_site() == Some(target))
                .map(|w| w.completed_at),
        ),
    ];
    Ok(PlannedUnderLoad {
        from: from.to_string(),
        to: target.to_string(),
        annotated_at,
        steps,
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
