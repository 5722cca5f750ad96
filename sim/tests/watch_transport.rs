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

#[test]
#[ignore = "known issue: after an API-host crash this reflector's kube::Client gets IncompleteMessage on every \
            request while fresh clients on the same host succeed; see docs/simulation.md, World: known issues"]
fn reflector_relists_after_api_server_crash_and_410() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (mut world, store) = world_with_reflector(12);
    create(&world, "one");
    assert!(
        world
            .run_until(Duration::from_secs(10), |_| names(&store) == ["one"])
            .unwrap()
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
    assert_eq!(names(&store), ["one"]);

    world.apply(Fault::RecoverApiServer).unwrap();
    let relisted = world.run_until(Duration::from_secs(90), |_| names(&store) == ["two"]);
    assert!(
        relisted.unwrap(),
        "reflector stuck at {:?}; requests {:?}",
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
        "expected an initial list and a re-list: {counts:?}"
    );
}
