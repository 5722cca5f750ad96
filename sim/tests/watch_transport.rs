#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The simulated kube::Client transport under faults: a kube-runtime watcher and
//! reflector on a simulated host survive a partition of their site and a crash of the
//! API server's host (re-listing after 410 Gone).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloodraven_sim::apiserver::{Caller, ResourceKey};
use bloodraven_sim::transport::{SeededBackoff, api_server_client};
use bloodraven_sim::{Fault, Placement, World};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::WatchEvent;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

fn config_map(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"k": name}})
}

fn names(store: &Arc<Mutex<Option<Store<ConfigMap>>>>) -> Vec<String> {
    let guard = store.lock().unwrap();
    let mut names: Vec<String> = guard
        .as_ref()
        .map(|s| {
            s.state()
                .iter()
                .filter_map(|c| c.metadata.name.clone())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A world with a watcher/reflector on ConfigMaps on host `watcher` in site iad.
fn world_with_reflector(seed: u64) -> (World, Arc<Mutex<Option<Store<ConfigMap>>>>) {
    let mut world = World::playground(seed).unwrap();
    let shared: Arc<Mutex<Option<Store<ConfigMap>>>> = Arc::new(Mutex::new(None));
    let out = shared.clone();
    world.add_client("watcher", Placement::Site("iad".to_string()), async move {
        let client = api_server_client()?;
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
        let (reader, writer) = reflector::store();
        *out.lock().unwrap() = Some(reader);
        // Watch timeouts of seconds: a watch stalled by lost segments is replaced soon.
        let config = watcher::Config::default().timeout(5);
        let stream =
            reflector::reflector(writer, watcher(api, config)).backoff(SeededBackoff::new(seed));
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(err) = event {
                tracing::debug!(%err, "watch error (retried)");
            }
        }
        Ok(())
    });
    (world, shared)
}

fn create(world: &World, name: &str) {
    world
        .api()
        .create(
            &ResourceKey::core("v1", "configmaps"),
            Some("default"),
            config_map(name),
            &Caller { user_agent: "test" },
        )
        .unwrap();
}

#[test]
fn reflector_catches_up_after_its_site_is_partitioned() {
    let (mut world, store) = world_with_reflector(11);
    create(&world, "before");
    assert!(
        world
            .run_until(Duration::from_secs(10), |_| names(&store) == ["before"])
            .unwrap(),
        "{:?}",
        names(&store)
    );

    world.apply(Fault::IsolateSite("iad".to_string())).unwrap();
    create(&world, "during");
    world.run_for(Duration::from_secs(20)).unwrap();
    assert_eq!(
        names(&store),
        ["before"],
        "an isolated watcher cannot see new objects"
    );

    world.apply(Fault::HealSite("iad".to_string())).unwrap();
    create(&world, "after");
    let caught_up = world.run_until(Duration::from_secs(60), |_| {
        names(&store) == ["after", "before", "during"]
    });
    assert!(caught_up.unwrap(), "reflector stuck at {:?}", names(&store));
}

/// Runs over 20 seeds: each seed orders hosts, backoff jitter and the crash timing
/// relative to in-flight requests differently.
#[test]
fn reflector_relists_after_api_server_crash_and_410() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    for seed in 100..120 {
        reflector_relists_after_api_server_crash_and_410_with(seed);
    }
}

fn reflector_relists_after_api_server_crash_and_410_with(seed: u64) {
    let (mut world, store) = world_with_reflector(seed);
    create(&world, "one");
    assert!(
        world
            .run_until(Duration::from_secs(10), |_| names(&store) == ["one"])
            .unwrap(),
        "seed {seed}: initial list never reached the store"
    );

    world.apply(Fault::CrashApiServer).unwrap();
    world.run_for(Duration::from_secs(3)).unwrap();
    create(&world, "two");
    world
        .api()
        .delete(
            &ResourceKey::core("v1", "configmaps"),
            Some("default"),
            "one",
            &Caller { user_agent: "test" },
        )
        .unwrap();
    // Compaction: the watcher's last resourceVersion is now too old (410 Gone).
    world.api().compact();
    world.run_for(Duration::from_secs(5)).unwrap();
    assert_eq!(names(&store), ["one"], "seed {seed}: API host is down");

    world.apply(Fault::RecoverApiServer).unwrap();
    let relisted = world.run_until(Duration::from_secs(90), |_| names(&store) == ["two"]);
    assert!(
        relisted.unwrap(),
        "seed {seed}: reflector stuck at {:?}; requests {:?}",
        names(&store),
        world.api().request_counts()
    );
    let counts = world.api().request_counts();
    let lists = counts
        .iter()
        .filter(|(k, _)| k.verb == "list" && k.resource == "configmaps")
        .map(|(_, n)| n)
        .sum::<u64>();
    assert!(
        lists >= 2,
        "seed {seed}: expected an initial list and a re-list: {counts:?}"
    );
}

/// What the prober on host `prober` saw, one entry per round: `Ok(true)` when its watch
/// from a compacted resourceVersion was answered with 410 Gone, `Ok(false)` when the
/// watch ran without one, `Err` for a transport or API error.
type Outcomes = Arc<Mutex<Vec<Result<bool, String>>>>;

/// A world with host `prober` in site iad and ONE `kube::Client` that keeps a long watch
/// open (so a response is mid-stream when the API host crashes) and, every 250 ms, lists
/// ConfigMaps and watches from the resourceVersion of its FIRST list (which goes stale
/// once the test compacts) to the end of the watch, recording each round. This is the
/// request a kube-runtime watcher repeats after losing its watch.
fn world_with_prober(seed: u64) -> (World, Outcomes) {
    let mut world = World::playground(seed).unwrap();
    let outcomes: Outcomes = Arc::new(Mutex::new(Vec::new()));
    let out = outcomes.clone();
    world.add_client("prober", Placement::Site("iad".to_string()), async move {
        let client = api_server_client()?;
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
        let long_watch = api.clone();
        tokio::spawn(async move {
            loop {
                let params = kube::api::WatchParams::default().timeout(30);
                if let Ok(stream) = long_watch.watch(&params, "0").await {
                    let mut stream = std::pin::pin!(stream);
                    while stream.next().await.is_some() {}
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let mut first_rv: Option<String> = None;
        loop {
            let round = async {
                let list = api.list(&kube::api::ListParams::default()).await?;
                let listed_rv = list.metadata.resource_version.unwrap_or_default();
                let rv = first_rv.get_or_insert(listed_rv).clone();
                let params = kube::api::WatchParams::default().timeout(1);
                let stream = api.watch(&params, &rv).await?;
                let mut stream = std::pin::pin!(stream);
                let mut gone = false;
                while let Some(event) = stream.next().await {
                    if let WatchEvent::Error(status) = event? {
                        gone |= status.code == 410;
                    }
                }
                Ok::<bool, kube::Error>(gone)
            };
            let outcome = round.await.map_err(|err| format!("{err:?}"));
            out.lock().unwrap().push(outcome);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    (world, outcomes)
}

/// Regression for the "IncompleteMessage after an API-host crash" failure: after the API
/// host was crashed and bounced (and its watch history compacted meanwhile), the SAME
/// client, not a rebuilt one, gets answers again within a bounded simulated time,
/// including the 410 Gone that tells a watcher to re-list, and keeps getting them.
/// (The API server once sent its own `Transfer-Encoding: chunked` header on watch
/// responses; on the one-line 410 response axum also set Content-Length, hyper refused
/// the head and closed the connection, so every retry of that watch failed with
/// IncompleteMessage. See docs/simulation.md, "Transport behaviour on an API-host crash".)
#[test]
fn same_client_is_answered_soon_after_api_host_crash_and_bounce() {
    for seed in [21, 22, 23, 24, 25] {
        let (mut world, outcomes) = world_with_prober(seed);
        create(&world, "one");
        let ok_before = world.run_until(Duration::from_secs(10), |_| {
            outcomes
                .lock()
                .unwrap()
                .iter()
                .filter(|o| o.is_ok())
                .count()
                >= 3
        });
        assert!(
            ok_before.unwrap(),
            "seed {seed}: {:?}",
            outcomes.lock().unwrap()
        );

        world.apply(Fault::CrashApiServer).unwrap();
        world.run_for(Duration::from_secs(2)).unwrap();
        create(&world, "two");
        world.api().compact();
        world.run_for(Duration::from_secs(2)).unwrap();
        world.apply(Fault::RecoverApiServer).unwrap();
        let rounds_at_bounce = outcomes.lock().unwrap().len();
        let bounced_at = world.elapsed();

        // Bound: a round whose connect is stuck on the crashed host (1 s connect
        // timeout) or whose connection died with it (5 s request timeout), plus slack.
        let bound = Duration::from_secs(8);
        let recovered = world.run_until(bound, |_| {
            outcomes.lock().unwrap()[rounds_at_bounce..]
                .iter()
                .any(|o| matches!(o, Ok(true)))
        });
        let after: Vec<_> = outcomes.lock().unwrap()[rounds_at_bounce..].to_vec();
        assert!(
            recovered.unwrap(),
            "seed {seed}: the same client got no 410 answer within {bound:?} of the bounce: {after:?}"
        );
        let recovery = world.elapsed() - bounced_at;

        // And it stays healthy: every round of the next 5 s is answered with 410.
        let rounds_recovered = outcomes.lock().unwrap().len();
        world.run_for(Duration::from_secs(5)).unwrap();
        let later: Vec<_> = outcomes.lock().unwrap()[rounds_recovered..].to_vec();
        assert!(later.len() >= 3, "seed {seed}: prober stalled: {later:?}");
        assert!(
            later.iter().all(|o| matches!(o, Ok(true))),
            "seed {seed}: failures after recovery ({recovery:?} after bounce): {later:?}"
        );
    }
}
