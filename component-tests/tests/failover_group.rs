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
    playground::groups_key()
}

fn status(world: &World) -> Value {
    playground::playground_status(world)
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

/// Issue 12 item 3: with every watch event delivered up to 400 ms late, a pass that
/// runs before the operator's own status write comes back must act on what it wrote,
/// not on the older cached status: one failover is one FailoverStarted and one
/// FailoverSucceeded, both in the Events and in the counter.
#[test]
fn a_late_watch_does_not_repeat_a_failover_or_its_events() {
    let seed = 12;
    let mut world = bloodraven_sim::WorldBuilder::new(seed)
        .watch_delay(Duration::from_millis(400))
        .build()
        .unwrap();
    playground::install(&world).unwrap();
    playground::apply_file(&world, &playground::playground_manifest()).unwrap();
    let ok = world
        .run_until(Duration::from_secs(180), |w| healthy_with(w, "iad"))
        .unwrap();
    assert!(ok, "not Healthy with iad: {:#}", status(&world));
    let node = world.site_node("iad").unwrap().to_string();
    world.apply(bloodraven_sim::Fault::CrashNode(node)).unwrap();
    let ok = world
        .run_until(Duration::from_secs(60), |w| {
            str_at(&status(w), "/activeSite") == Some("pdx")
                && site_state(&status(w), "pdx").as_deref() == Some("writable")
        })
        .unwrap();
    assert!(ok, "pdx never writable: {:#}", status(&world));
    // Passes keep running on the delayed cache for a while after the failover.
    world.run_for(Duration::from_secs(20)).unwrap();
    let s = status(&world);
    assert_eq!(str_at(&s, "/lastFailover/kind"), Some("Emergency"), "{s:#}");
    assert_eq!(
        event_count(&world, "FailoverStarted"),
        1,
        "{}",
        world.event_trace()
    );
    assert_eq!(
        event_count(&world, "FailoverSucceeded"),
        1,
        "{}",
        world.event_trace()
    );
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

// ---------------------------------------------------------------------------------
// The tests below run on the sim's `DrivenWorld` (the same playground World plus a
// driver that runs client hosts): they reach the MySQL models as root, as a person with
// SUPER would, through the sim's own MySQL client, scrape the operator's /metrics from a
// client host, and write through the chaos sim backend's counter workload.

use bloodraven::seams::mysql::MysqlConnector;
use bloodraven::seams::mysql::{MysqlTarget, MysqlTimeouts};
use bloodraven_chaos::backend::{Backend, sim::SimBackend};
use bloodraven_sim::StartupProfile;
use bloodraven_sim::apiserver::ApiServer;
use bloodraven_sim::harness::DrivenWorld;
use bloodraven_sim::models::mysql::{MYSQL_PORT, mysql_connector};

/// A session through the production connector over the simulated network.
type SimMysqlSession = Box<dyn bloodraven::seams::mysql::MysqlSession>;

const RECLONE: &str = "bloodraven.shipstream.io/reclone-site";

/// The playground group bootstrapped on a `DrivenWorld` whose mysqld starts within
/// `mysql_startup` (the model's default: about a second, well inside the detection window).
fn sim_bootstrapped(seed: u64, mysql_startup: StartupProfile) -> DrivenWorld {
    let mut sim = DrivenWorld::playground_with_mysql_startup(seed, mysql_startup).unwrap();
    sim.install_operator().unwrap();
    playground::apply_file(sim.world(), &playground::playground_manifest()).unwrap();
    let ok = sim
        .world()
        .run_until(Duration::from_secs(120), |w| healthy_with(w, "iad"))
        .unwrap();
    assert!(
        ok,
        "seed {seed}: not Healthy with iad active after 120s: {:#}\n{}",
        status(sim.world()),
        sim.world().event_trace()
    );
    sim
}

/// Where a root session to `site`'s mysqld goes (its pod's stable DNS name, the
/// group Secret's root password).
fn root_target(world: &World, site: &str) -> MysqlTarget {
    let secret = world
        .api()
        .get(
            &ResourceKey::core("v1", "secrets"),
            Some(PLAYGROUND_NAMESPACE),
            "playground-mysql",
        )
        .unwrap();
    // Through the typed Secret: it decodes `data` (base64) and keeps `stringData`.
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(secret).unwrap();
    let key = bloodraven::children::ROOT_PASSWORD_KEY;
    let password = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8(b.0.clone()).unwrap())
        .or_else(|| secret.string_data.as_ref()?.get(key).cloned())
        .expect("the playground Secret has the root password");
    MysqlTarget {
        host: bloodraven::children::names::mysql_pod_host(
            PLAYGROUND_GROUP,
            site,
            PLAYGROUND_NAMESPACE,
        ),
        port: MYSQL_PORT,
        user: "root".into(),
        password,
    }
}

async fn root_session(api: &ApiServer, target: &MysqlTarget) -> SimMysqlSession {
    let dialer = bloodraven_sim::dialer::ClusterDialer::new(
        api.clone(),
        PLAYGROUND_NAMESPACE,
        "component-test",
        Duration::from_secs(1),
    )
    .shared();
    mysql_connector(dialer, MysqlTimeouts::default())
        .connect(target)
        .await
        .unwrap_or_else(|e| panic!("root session to {}: {e}", target.address()))
}

/// Runs `work` with a root session to `site`'s mysqld, on a client host of the World,
/// within 30 simulated seconds.
fn as_root<T, F, Fut>(sim: &mut DrivenWorld, site: &str, work: F) -> T
where
    T: 'static,
    F: FnOnce(SimMysqlSession) -> Fut + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let target = root_target(sim.world(), site);
    let api = sim.world().api().clone();
    sim.run_client(Duration::from_secs(30), move |_| async move {
        work(root_session(&api, &target).await).await
    })
    .unwrap()
}

/// The operator's /metrics, scraped over the simulated network.
fn scrape(sim: &mut DrivenWorld) -> Vec<bloodraven_chaos::metrics::Sample> {
    let body = sim
        .run_client(Duration::from_secs(10), |host| async move {
            host.operator_metrics().await
        })
        .unwrap()
        .unwrap();
    bloodraven_chaos::metrics::parse(&body).unwrap()
}

/// The sum of a metric's series whose labels include `labels`.
fn metric(
    samples: &[bloodraven_chaos::metrics::Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// How many times Events with `reason` were emitted (each Event object counts its series).
fn event_count(world: &World, reason: &str) -> u64 {
    world
        .api()
        .list(
            &ResourceKey::new("events.k8s.io", "v1", "events"),
            Some(PLAYGROUND_NAMESPACE),
            &Default::default(),
        )
        .unwrap()
        .items
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| {
            e.pointer("/series/count")
                .and_then(Value::as_u64)
                .unwrap_or(1)
        })
        .sum()
}

/// (type, note) of every Event with `reason`.
fn typed_events(world: &World, reason: &str) -> Vec<(String, String)> {
    world
        .api()
        .list(
            &ResourceKey::new("events.k8s.io", "v1", "events"),
            Some(PLAYGROUND_NAMESPACE),
            &Default::default(),
        )
        .unwrap()
        .items
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn site_status(status: &Value, site: &str) -> Value {
    status["sites"]
        .as_array()
        .and_then(|sites| sites.iter().find(|s| s["name"] == site))
        .cloned()
        .unwrap_or(Value::Null)
}

fn group_annotation(world: &World, key: &str) -> Option<String> {
    world
        .api()
        .get(&groups(), Some(PLAYGROUND_NAMESPACE), PLAYGROUND_GROUP)
        .unwrap()
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .map(String::from)
}

/// The writer Lease: (holder, leaseTransitions).
fn writer_lease(world: &World) -> (Option<String>, i64) {
    let lease = world
        .api()
        .get(
            &ResourceKey::new("coordination.k8s.io", "v1", "leases"),
            Some(PLAYGROUND_NAMESPACE),
            &bloodraven::children::names::writer_lease(PLAYGROUND_GROUP),
        )
        .unwrap();
    (
        lease
            .pointer("/spec/holderIdentity")
            .and_then(Value::as_str)
            .map(String::from),
        lease
            .pointer("/spec/leaseTransitions")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    )
}

/// Annotates a planned failover to `target` and waits for the rejection that names
/// `expected`; returns the status message.
fn assert_planned_rejected(
    sim: &mut DrivenWorld,
    target: &str,
    expected: impl Fn(&str) -> bool,
) -> String {
    let before = typed_events(sim.world(), "PlannedFailoverRejected").len();
    annotate(sim.world(), PLANNED, target);
    let ok = sim
        .world()
        .run_until(Duration::from_secs(10), |w| {
            let s = status(w);
            str_at(&s, "/plannedFailover/phase") == Some("Rejected")
                && str_at(&s, "/plannedFailover/message").is_some_and(&expected)
                && group_annotation(w, PLANNED).is_none()
        })
        .unwrap();
    let s = status(sim.world());
    assert!(
        ok,
        "planned failover to {target} not rejected as expected: {s:#}"
    );
    let message = str_at(&s, "/plannedFailover/message").unwrap().to_string();
    let events = typed_events(sim.world(), "PlannedFailoverRejected");
    assert!(
        events.len() > before,
        "no new PlannedFailoverRejected Event: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(kind, note)| kind == "Warning" && note.ends_with(&message)),
        "no Warning Event naming {message:?}: {events:?}"
    );
    assert_eq!(str_at(&s, "/activeSite"), Some("iad"), "{s:#}");
    assert_eq!(site_state(&s, "iad").as_deref(), Some("writable"), "{s:#}");
    message
}

#[test]
fn a_primary_restarted_within_the_detection_window_resumes_without_a_failover() {
    let mut sim = sim_bootstrapped(5, StartupProfile::default());
    let before = status(sim.world());
    let failovers_before = metric(&scrape(&mut sim), "bloodraven_failovers_total", &[]);
    let lease_before = writer_lease(sim.world());
    let node = sim.world().site_node("iad").unwrap().to_string();

    // Power iad's node off for one second: mysqld and its sidecar restart, and mysqld
    // answers again (super_read_only at boot) well within the 3 s detection window.
    sim.world()
        .apply(bloodraven_sim::Fault::CrashNode(node.clone()))
        .unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    sim.world()
        .apply(bloodraven_sim::Fault::RecoverNode(node))
        .unwrap();

    // For the next 15 s the operator must never start a failover or move the primary.
    let mut departures = Vec::new();
    sim.world()
        .run_until(Duration::from_secs(15), |w| {
            let s = status(w);
            if str_at(&s, "/activeSite") != Some("iad") || s.get("emergencyFailover").is_some() {
                departures.push(s);
            }
            false
        })
        .unwrap();
    assert!(
        departures.is_empty(),
        "the operator moved: {:#}",
        departures[0]
    );

    // The restart happened (the mysql container restarted) and writes resume on iad.
    let pod = sim
        .world()
        .api()
        .get(
            &ResourceKey::core("v1", "pods"),
            Some(PLAYGROUND_NAMESPACE),
            &bloodraven::children::names::mysql_pod(PLAYGROUND_GROUP, "iad"),
        )
        .unwrap();
    let restarts: i64 = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    assert!(restarts > 0, "iad's pod never restarted: {pod:#}");
    let ack = sim
        .run_client(Duration::from_secs(20), |host| async move {
            let counter = SimBackend::new(host).counter("default").unwrap();
            let mut last = String::new();
            for seq in 1..=50 {
                match counter.increment(seq).await {
                    Ok(ack) => return Ok(ack),
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(last)
        })
        .unwrap();
    let ack = ack.unwrap_or_else(|e| panic!("writes did not resume on iad: {e}"));
    assert_eq!(ack.site, "iad");

    let s = status(sim.world());
    assert!(healthy_with(sim.world(), "iad"), "{s:#}");
    assert_eq!(site_state(&s, "iad").as_deref(), Some("writable"), "{s:#}");
    assert_eq!(s.get("lastFailover"), before.get("lastFailover"), "{s:#}");
    assert_eq!(event_count(sim.world(), "FailoverStarted"), 0);
    assert_eq!(writer_lease(sim.world()), lease_before);
    let failovers_after = metric(&scrape(&mut sim), "bloodraven_failovers_total", &[]);
    assert_eq!(failovers_after, failovers_before);
}

#[test]
fn planned_failover_to_a_lagging_or_not_replicating_replica_is_rejected() {
    let mut sim = sim_bootstrapped(6, StartupProfile::default());

    // Lag over the limit (5 s): pdx applies 30 s late, and iad commits one transaction.
    as_root(&mut sim, "pdx", |mut pdx| async move {
        pdx.stop_replica().await.unwrap();
        pdx.set_source_delay(30).await.unwrap();
        pdx.start_replica().await.unwrap();
    });
    as_root(&mut sim, "iad", |mut iad| async move {
        iad.forced_write("component-test/lag", 1).await.unwrap();
    });
    let lagging = sim
        .world()
        .run_until(Duration::from_secs(20), |w| {
            site_status(&status(w), "pdx")["lagSeconds"]
                .as_i64()
                .is_some_and(|lag| lag > 6)
        })
        .unwrap();
    assert!(lagging, "{:#}", status(sim.world()));
    let message = assert_planned_rejected(&mut sim, "pdx", |m| {
        m.starts_with("site pdx lags ") && m.ends_with("s behind the primary, over the limit of 5s")
    });
    assert!(message.starts_with("site pdx lags "), "{message}");
    as_root(&mut sim, "pdx", |mut pdx| async move {
        pdx.stop_replica().await.unwrap();
        pdx.set_source_delay(0).await.unwrap();
        pdx.start_replica().await.unwrap();
    });

    // Read-only but not replicating: the sites cannot reach each other (the operator
    // restarts a replica that merely stopped, so the break must persist).
    sim.world()
        .apply(bloodraven_sim::Fault::PartitionSites(
            "iad".into(),
            "pdx".into(),
        ))
        .unwrap();
    let broken = sim
        .world()
        .run_until(Duration::from_secs(30), |w| {
            let pdx = site_status(&status(w), "pdx");
            pdx["state"] == "read-only" && pdx["replicating"] == false
        })
        .unwrap();
    assert!(broken, "{:#}", status(sim.world()));
    let message = assert_planned_rejected(&mut sim, "pdx", |m| {
        m == "site is read-only but not replicating"
    });
    assert_eq!(message, "site is read-only but not replicating");

    // Unhealthy: pdx's node is down.
    sim.world()
        .apply(bloodraven_sim::Fault::HealSites("iad".into(), "pdx".into()))
        .unwrap();
    let node = sim.world().site_node("pdx").unwrap().to_string();
    sim.world()
        .apply(bloodraven_sim::Fault::CrashNode(node))
        .unwrap();
    let down = sim
        .world()
        .run_until(Duration::from_secs(20), |w| {
            site_state(&status(w), "pdx").as_deref() == Some("unreachable")
        })
        .unwrap();
    assert!(down, "{:#}", status(sim.world()));
    assert_planned_rejected(&mut sim, "pdx", |m| {
        m == "site pdx is unhealthy: unreachable"
    });
    assert_eq!(event_count(sim.world(), "FailoverStarted"), 0);
}

#[test]
fn a_diverged_site_waits_for_a_confirmed_reclone_and_refuses_a_wrong_token() {
    let mut sim = sim_bootstrapped(7, StartupProfile::default());

    // Three commits on the replica that bypass read-only, as a SUPER user would.
    as_root(&mut sim, "pdx", |mut pdx| async move {
        for n in 1..=3 {
            pdx.forced_write(&format!("component-test/divergent/{n}"), n)
                .await
                .unwrap();
        }
    });
    let pending = sim
        .world()
        .run_until(Duration::from_secs(20), |w| {
            site_status(&status(w), "pdx")["recoveryState"] == "RecoveryPending"
        })
        .unwrap();
    let s = status(sim.world());
    assert!(pending, "{s:#}");
    let pdx = site_status(&s, "pdx");
    let uuid = pdx["serverUuid"].as_str().unwrap().to_string();
    let divergent = pdx["divergentGtid"].as_str().unwrap().to_string();
    assert_eq!(divergent, format!("{uuid}:1-3"), "{s:#}");
    assert_eq!(pdx["divergentTransactionCount"], 3, "{s:#}");
    let token = uuid.split('-').next().unwrap().to_string();
    assert!(
        typed_events(sim.world(), "DivergenceDetected")
            .iter()
            .any(|(kind, note)| kind == "Warning"
                && note.contains(&format!("{RECLONE}=pdx:{token}"))),
        "{:?}",
        typed_events(sim.world(), "DivergenceDetected")
    );
    assert_eq!(
        str_at(&s, "/health"),
        Some("Degraded"),
        "a diverged site degrades the group: {s:#}"
    );

    // It is not a planned-failover target either.
    assert_planned_rejected(&mut sim, "pdx", |m| {
        m == "site pdx is RecoveryPending: reclone it first"
    });

    // A wrong token: Warning RecloneRejected naming what was expected; nothing changes.
    annotate(sim.world(), RECLONE, "pdx:00000000");
    let handled = sim
        .world()
        .run_until(Duration::from_secs(10), |w| {
            group_annotation(w, RECLONE).is_none()
        })
        .unwrap();
    assert!(handled, "the wrong reclone annotation was never removed");
    let rejected = typed_events(sim.world(), "RecloneRejected");
    let expected = format!("wrong token \"00000000\" for site pdx: expected pdx:{token}");
    assert!(
        rejected
            .iter()
            .any(|(kind, note)| kind == "Warning" && note.contains(&expected)),
        "want a Warning containing {expected:?}: {rejected:?}"
    );
    sim.world().run_for(Duration::from_secs(3)).unwrap();
    let after = site_status(&status(sim.world()), "pdx");
    assert_eq!(after["recoveryState"], "RecoveryPending", "{after:#}");
    assert_eq!(after["divergentGtid"], divergent.as_str(), "{after:#}");
    assert_eq!(event_count(sim.world(), "RecloneStarted"), 0);
    let still_there = as_root(&mut sim, "pdx", |mut pdx| async move {
        pdx.counter_read("component-test/divergent/1")
            .await
            .unwrap()
    });
    assert_eq!(
        still_there,
        Some(1),
        "a refused reclone must not touch the data"
    );

    // The right `<site>:<token>`: CLONE from iad, replicate, clear recoveryState.
    annotate(sim.world(), RECLONE, &format!("pdx:{token}"));
    let recloned = sim
        .world()
        .run_until(Duration::from_secs(60), |w| {
            let pdx = site_status(&status(w), "pdx");
            // The status is written before the reconcile's Events are published:
            // wait for the Event too, or the check below races the publisher.
            pdx.get("recoveryState").is_none_or(Value::is_null)
                && pdx["replicating"] == true
                && healthy_with(w, "iad")
                && event_count(w, "RecloneSucceeded") >= 1
        })
        .unwrap();
    let s = status(sim.world());
    assert!(recloned, "{s:#}\n{}", sim.world().event_trace());
    assert!(group_annotation(sim.world(), RECLONE).is_none());
    assert_eq!(event_count(sim.world(), "RecloneStarted"), 1);
    assert_eq!(event_count(sim.world(), "RecloneSucceeded"), 1);
    let pdx = site_status(&s, "pdx");
    assert!(
        pdx.get("divergentGtid").is_none_or(Value::is_null),
        "{pdx:#}"
    );
    assert!(
        !pdx["gtidExecuted"].as_str().unwrap().contains(&uuid),
        "pdx still has its own transactions after the clone: {pdx:#}"
    );
    let gone = as_root(&mut sim, "pdx", |mut pdx| async move {
        pdx.counter_read("component-test/divergent/1")
            .await
            .unwrap()
    });
    assert_eq!(gone, None, "the clone replaced pdx's divergent data");
    assert_eq!(str_at(&s, "/activeSite"), Some("iad"));
}

#[test]
fn split_brain_is_detected_and_the_site_without_the_lease_is_fenced() {
    let mut sim = sim_bootstrapped(8, StartupProfile::default());
    let target = root_target(sim.world(), "pdx");
    let api = sim.world().api().clone();

    // Keep forcing pdx writable (as root, faster than its sidecar re-fences it) until
    // the operator reports SplitBrain in its status and its /metrics. The scrape is
    // its own check: the operator is woken by its own status write and may fence pdx
    // (and clear the gauge) before a scrape that follows the status arrives, so the
    // gauge is polled until a scrape sees it, not read once after the status.
    let metrics_during = sim
        .run_client(Duration::from_secs(30), move |host| async move {
            let mut session: Option<SimMysqlSession> = None;
            let mut seen_in_status = false;
            loop {
                seen_in_status |= api
                    .get(&groups(), Some(PLAYGROUND_NAMESPACE), PLAYGROUND_GROUP)
                    .ok()
                    .and_then(|g| g.pointer("/status/health").cloned())
                    == Some(Value::from("SplitBrain"));
                if seen_in_status {
                    let body = host.operator_metrics().await.unwrap();
                    let samples = bloodraven_chaos::metrics::parse(&body).unwrap();
                    let split_gauge = samples.iter().any(|s| {
                        s.name == "bloodraven_split_brain"
                            && s.labels.get("group").map(String::as_str) == Some(PLAYGROUND_GROUP)
                            && s.value == 1.0
                    });
                    if split_gauge {
                        return body;
                    }
                }
                if session.is_none() {
                    session = Some(root_session(&api, &target).await);
                }
                let forced = session
                    .as_mut()
                    .unwrap()
                    .set_read_only(bloodraven::seams::ReadOnlyMode::Writable)
                    .await;
                if forced.is_err() {
                    // The fence kills client connections: reconnect.
                    session = None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .unwrap();
    let during = bloodraven_chaos::metrics::parse(&metrics_during).unwrap();
    let group_labels = [
        ("namespace", PLAYGROUND_NAMESPACE),
        ("group", PLAYGROUND_GROUP),
    ];
    assert_eq!(
        metric(&during, "bloodraven_split_brain", &group_labels),
        1.0
    );
    assert!(
        metric(
            &during,
            "bloodraven_split_brain_detected_total",
            &group_labels
        ) >= 1.0
    );
    let detected = typed_events(sim.world(), "SplitBrainDetected");
    assert!(
        detected
            .iter()
            .any(|(kind, note)| kind == "Warning" && note.contains("the lease holder is iad")),
        "{detected:?}"
    );

    // Left alone, pdx is fenced (the operator fences the non-holder) and iad stays.
    let fenced = sim
        .world()
        .run_until(Duration::from_secs(10), |w| {
            site_state(&status(w), "pdx").as_deref() == Some("read-only") && healthy_with(w, "iad")
        })
        .unwrap();
    let s = status(sim.world());
    assert!(fenced, "{s:#}");
    assert!(
        typed_events(sim.world(), "SiteFenced")
            .iter()
            .any(|(kind, note)| kind == "Warning" && note.starts_with("fenced pdx")),
        "{:?}",
        typed_events(sim.world(), "SiteFenced")
    );
    assert_eq!(writer_lease(sim.world()).0.as_deref(), Some("iad"));
    assert_eq!(site_state(&s, "iad").as_deref(), Some("writable"));
    let after = scrape(&mut sim);
    assert_eq!(metric(&after, "bloodraven_split_brain", &group_labels), 0.0);
}

#[test]
fn an_operator_restarted_mid_failover_resumes_and_promotes_once() {
    let mut sim = sim_bootstrapped(9, StartupProfile::default());
    let (holder, term_before) = writer_lease(sim.world());
    assert_eq!(holder.as_deref(), Some("iad"));
    let node = sim.world().site_node("iad").unwrap().to_string();
    sim.world()
        .apply(bloodraven_sim::Fault::CrashNode(node))
        .unwrap();
    let started = sim
        .world()
        .run_until(Duration::from_secs(30), |w| {
            status(w).get("emergencyFailover").is_some()
        })
        .unwrap();
    assert!(started, "{:#}", status(sim.world()));
    let in_progress = status(sim.world())["emergencyFailover"].clone();

    // Kill the operator's pod; its Deployment starts a new one.
    let pods = ResourceKey::core("v1", "pods");
    let operators: Vec<String> = sim
        .world()
        .api()
        .list(
            &pods,
            Some(playground::OPERATOR_NAMESPACE),
            &Default::default(),
        )
        .unwrap()
        .items
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(operators.len(), 1, "{operators:?}");
    sim.world()
        .api()
        .delete(
            &pods,
            Some(playground::OPERATOR_NAMESPACE),
            &operators[0],
            &bloodraven_sim::apiserver::Caller {
                user_agent: "component-test",
            },
        )
        .unwrap();

    let done = sim
        .world()
        .run_until(Duration::from_secs(90), |w| {
            let s = status(w);
            str_at(&s, "/activeSite") == Some("pdx")
                && site_state(&s, "pdx").as_deref() == Some("writable")
                && str_at(&s, "/lastFailover/result") == Some("Succeeded")
                && s.get("emergencyFailover").is_none()
        })
        .unwrap();
    let s = status(sim.world());
    assert!(
        done,
        "failover in progress when the operator died: {in_progress:#}\nnow: {s:#}\n{}",
        sim.world().event_trace()
    );
    // Let the new operator settle, then count: one lease move, one success.
    sim.world().run_for(Duration::from_secs(10)).unwrap();
    let running: Vec<Value> = sim
        .world()
        .api()
        .list(
            &pods,
            Some(playground::OPERATOR_NAMESPACE),
            &Default::default(),
        )
        .unwrap()
        .items;
    assert!(
        running
            .iter()
            .all(|p| p["metadata"]["name"] != operators[0].as_str()),
        "the old operator pod is still there"
    );
    assert_eq!(
        writer_lease(sim.world()),
        (Some("pdx".to_string()), term_before + 1),
        "the writer lease must have moved exactly once"
    );
    assert_eq!(str_at(&s, "/lastFailover/kind"), Some("Emergency"));
    assert_eq!(str_at(&s, "/lastFailover/from"), Some("iad"));
    assert_eq!(str_at(&s, "/lastFailover/to"), Some("pdx"));
    assert_eq!(
        event_count(sim.world(), "FailoverSucceeded"),
        1,
        "{}",
        sim.world().event_trace()
    );
    assert_eq!(
        event_count(sim.world(), "FailoverStarted"),
        1,
        "{}",
        sim.world().event_trace()
    );
    let samples = scrape(&mut sim);
    assert!(
        metric(
            &samples,
            "bloodraven_failovers_total",
            &[("kind", "emergency")]
        ) <= 1.0,
        "the new operator counted a second emergency failover"
    );
    assert_eq!(str_at(&status(sim.world()), "/activeSite"), Some("pdx"));
}

/// The replication account exists on both sites after bootstrap (created on the
/// primary, replicated to the replica), with the Secret's password, and is not root:
/// it cannot touch data. The application account writes to its own database.
#[test]
fn bootstrap_creates_a_replication_account_that_replicates_and_is_not_root() {
    let mut sim = sim_bootstrapped(31, StartupProfile::default());
    let world = sim.world();
    let target = |site: &str, user: &str, password: &str| MysqlTarget {
        user: user.into(),
        password: password.into(),
        ..root_target(world, site)
    };
    let repl_iad = target("iad", "repl", "playground-repl");
    let repl_pdx = target("pdx", "repl", "playground-repl");
    let wrong = target("iad", "repl", "not-the-password");
    let app_iad = target("iad", "app", "playground-app");
    let api = world.api().clone();
    let outcome = sim
        .run_client(Duration::from_secs(30), move |_| async move {
            let dialer = bloodraven_sim::dialer::ClusterDialer::new(
                api.clone(),
                PLAYGROUND_NAMESPACE,
                "component-test",
                Duration::from_secs(1),
            )
            .shared();
            let connect = |t: MysqlTarget| {
                let dialer = dialer.clone();
                async move {
                    mysql_connector(dialer, MysqlTimeouts::default())
                        .connect(&t)
                        .await
                }
            };
            let mut on_iad = connect(repl_iad)
                .await
                .expect("repl logs in to the primary");
            let on_pdx = connect(repl_pdx).await;
            let wrong = connect(wrong).await;
            let repl_write = on_iad.counter_increment("component-test/repl").await;
            let mut app = connect(app_iad).await.expect("app logs in to the primary");
            let app_write = app.counter_increment("component-test/app").await;
            (on_pdx.is_ok(), wrong.err(), repl_write.err(), app_write)
        })
        .unwrap();
    let (replicated, wrong, repl_write, app_write) = outcome;
    assert!(
        replicated,
        "the replication account did not reach the replica"
    );
    assert_eq!(
        wrong.and_then(|e| e.server_code()),
        Some(bloodraven::seams::mysql::error_codes::ACCESS_DENIED)
    );
    assert_eq!(
        repl_write.and_then(|e| e.server_code()),
        Some(bloodraven::seams::mysql::error_codes::DATABASE_ACCESS_DENIED),
        "the replication account must hold no data privileges"
    );
    assert_eq!(app_write.unwrap(), 1);
}
