#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The API server over real loopback TCP, driven by `kube::Client` and
//! `kube::runtime::watcher`/reflector exactly as the operator will use them.

use std::sync::Arc;
use std::time::Duration;

use bloodraven::seams::Clock;
use bloodraven_sim::apiserver::{ApiServer, ResourceKey, ServerConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        "2025-01-01T00:00:00Z".parse().unwrap()
    }
}

async fn start(config: ServerConfig) -> (ApiServer, kube::Client) {
    let api = ApiServer::with_config(Arc::new(FixedClock), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api.clone().serve(listener));
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    (api, client)
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "x"}}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn kube_client_crud_patch_and_errors() {
    let (_api, client) = start(ServerConfig::default()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let got = cms.get("a").await.unwrap();
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    let list = cms
        .list(&ListParams::default().labels("app=x"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);

    let merged = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap()["m"], "1");
    let strategic = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"s": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.data.unwrap()["s"], "1");
    let json_patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/data/j", "value": "1"}])).unwrap();
    let jp = cms
        .patch("a", &PatchParams::default(), &Patch::Json::<()>(json_patch))
        .await
        .unwrap();
    assert_eq!(jp.data.unwrap()["j"], "1");
    let applied = cms
        .patch("a", &PatchParams::apply("tester").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "applied"}})))
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["k"], "applied");

    // Stale update: 409 as a kube::Error::Api with the Status fields.
    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    match cms.replace("a", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "Conflict");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match cms.get("missing").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"))
        }
        other => panic!("expected not found, got {other:?}"),
    }
    // Delete of an object without finalizers: gone at once (Right(Status)).
    let deleted = cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right());
}

#[tokio::test]
async fn reflector_follows_changes_and_relists_after_410() {
    // A tiny history so that the watch's resourceVersion is compacted away quickly.
    let (api, client) = start(ServerConfig {
        history_limit: 2,
        ..ServerConfig::default()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store::<Pod>();
    // 1 s watch timeout: the watcher re-watches from its last rv every second.
    let stream = reflector(
        writer,
        watcher(
            pods.clone(),
            watcher::Config::default().labels("app=db").timeout(1),
        ),
    )
    .applied_objects()
    .boxed();
    let handle = tokio::spawn(async move {
        let mut stream = stream;
        while stream.next().await.is_some() {}
    });
    let pod = |name: &str, app: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}})).unwrap()
    };
    pods.create(&PostParams::default(), &pod("db-0", "db"))
        .await
        .unwrap();
    wait_for(|| reader.state().len() == 1).await;
    // Changes the watch does not select move the history on without it seeing them,
    // so its next watch from its last rv is 410 Gone; the watcher must re-list.
    for i in 0..5 {
        pods.create(&PostParams::default(), &pod(&format!("web-{i}"), "web"))
            .await
            .unwrap();
    }
    let lists_before = count(&api, "list");
    api.compact();
    // Within a second the watch times out and re-watches from its old rv: 410, re-list.
    wait_for(|| count(&api, "list") > lists_before).await;
    pods.create(&PostParams::default(), &pod("db-1", "db"))
        .await
        .unwrap();
    wait_for(|| reader.state().len() == 2).await;
    pods.delete("db-0", &DeleteParams::default()).await.unwrap();
    wait_for(|| reader.state().len() == 1).await;
    let names: Vec<String> = reader
        .state()
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["db-1"]);
    handle.abort();
}

fn count(api: &ApiServer, verb: &str) -> u64 {
    api.request_counts()
        .iter()
        .filter(|(k, _)| k.verb == verb && k.resource == "pods")
        .map(|(_, v)| v)
        .sum()
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached within 4 s");
}

/// Issue 12: a seeded delay on watch delivery, so that a client acting on its watch
/// cache before its own write arrived can be caught; deterministic per seed.
#[tokio::test]
async fn watch_delivery_can_lag_behind_writes_by_a_seeded_delay() {
    use bloodraven_sim::apiserver::watch_delay;
    let max = Duration::from_millis(400);
    let delays: Vec<_> = (0..64).map(|i| watch_delay(7, 1, i, max)).collect();
    assert_eq!(
        delays,
        (0..64)
            .map(|i| watch_delay(7, 1, i, max))
            .collect::<Vec<_>>()
    );
    assert!(delays.iter().all(|d| *d <= max));
    assert!(
        delays.iter().any(|d| *d >= Duration::from_millis(100)),
        "{delays:?}"
    );
    assert_ne!(
        delays,
        (0..64)
            .map(|i| watch_delay(8, 1, i, max))
            .collect::<Vec<_>>()
    );
    assert_eq!(watch_delay(7, 1, 0, Duration::ZERO), Duration::ZERO);

    let (_api, client) = start(ServerConfig {
        seed: 7,
        watch_delay_max: max,
        ..ServerConfig::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let params = kube::api::WatchParams::default().timeout(30);
    let mut stream = cms.watch(&params, "0").await.unwrap().boxed();
    let mut written = Vec::new();
    for i in 0..8 {
        let created = cms
            .create(&PostParams::default(), &cm(&format!("d{i}")))
            .await
            .unwrap();
        written.push((created.metadata.name.unwrap(), tokio::time::Instant::now()));
    }
    let mut lagged = Duration::ZERO;
    for (name, at) in &written {
        match stream.next().await.unwrap().unwrap() {
            kube::api::WatchEvent::Added(o) => {
                assert_eq!(o.metadata.name.as_ref(), Some(name), "order is kept");
                lagged = lagged.max(tokio::time::Instant::now() - *at);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        lagged >= Duration::from_millis(100),
        "the watch lagged only {lagged:?}"
    );
}

#[tokio::test]
async fn http_watch_streams_events_bookmarks_and_410() {
    let (api, client) = start(ServerConfig {
        bookmark_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start_rv = api.resource_version().to_string();
    let params = kube::api::WatchParams::default().timeout(2);
    let mut stream = cms.watch(&params, &start_rv).await.unwrap().boxed();
    cms.create(&PostParams::default(), &cm("w")).await.unwrap();
    let mut saw_added = false;
    let mut saw_bookmark = false;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            kube::api::WatchEvent::Added(o) => saw_added = o.metadata.name.as_deref() == Some("w"),
            kube::api::WatchEvent::Bookmark(b) => {
                saw_bookmark = true;
                assert!(saw_added, "bookmark after the event it covers");
                assert!(b.metadata.resource_version.parse::<u64>().unwrap() >= 1);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_added && saw_bookmark);
    api.compact();
    let mut stream = cms
        .watch(&kube::api::WatchParams::default(), &start_rv)
        .await
        .unwrap()
        .boxed();
    match stream.next().await.unwrap().unwrap() {
        kube::api::WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test]
async fn crd_over_http_and_discovery() {
    let (api, client) = start(ServerConfig::default()).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in bloodraven::api::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let established = kube::runtime::wait::await_condition(
        crds.clone(),
        "mysqlfailovergroups.bloodraven.shipstream.io",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(5), established)
        .await
        .unwrap()
        .unwrap();
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (resource, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(r, _)| r.kind == "MysqlFailoverGroup")
        .expect("discovered");
    assert_eq!(resource.plural, "mysqlfailovergroups");
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "status"));
    let groups: Api<bloodraven::api::MysqlFailoverGroup> =
        Api::namespaced(client.clone(), "default");
    let bad = json!({"apiVersion": "bloodraven.shipstream.io/v1alpha1", "kind": "MysqlFailoverGroup", "metadata": {"name": "bad"}, "spec": {"sites": [], "mysql": {}}});
    let err = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::erase::<bloodraven::api::MysqlFailoverGroup>(&()),
    )
    .create(
        &PostParams::default(),
        &serde_json::from_value(bad).unwrap(),
    )
    .await
    .unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422);
            let causes = status.details.unwrap().causes;
            assert!(
                causes
                    .iter()
                    .any(|c| c.field == "spec.mysql.credentialsSecret"),
                "{causes:?}"
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    assert!(
        groups
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        api.resource(&ResourceKey::new(
            "bloodraven.shipstream.io",
            "v1alpha1",
            "mysqlfailovergroups"
        ))
        .is_some()
    );
}

/// Issue 13 part 3: the HTTP layer's seam faults hit the product's clients only; a lost
/// response still commits the write; 409 and 429 are refused before anything commits.
#[tokio::test]
async fn seam_faults_hit_the_products_requests_only_and_lost_responses_commit() {
    use bloodraven_sim::seam_faults::SeamFaults;
    let client_as = |addr: &str, agent: Option<&str>| {
        let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        if let Some(agent) = agent {
            config
                .headers
                .push((http::header::USER_AGENT, agent.parse().unwrap()));
        }
        kube::Client::try_from(config).unwrap()
    };
    let serve = |faults: SeamFaults| async move {
        let api = ApiServer::with_config(
            Arc::new(FixedClock),
            ServerConfig {
                seed: 3,
                seam_faults: faults,
                ..ServerConfig::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(api.clone().serve(listener));
        (api, addr)
    };

    // Every request lost: the operator's create commits but its answer never arrives;
    // the runner (another User-Agent) is never faulted and sees the object.
    let (_api, addr) = serve(SeamFaults {
        api_lost_response_percent: 20.0,
        ..SeamFaults::off()
    })
    .await;
    let operator: Api<ConfigMap> =
        Api::namespaced(client_as(&addr, Some("bloodraven-operator")), "default");
    let runner: Api<ConfigMap> = Api::namespaced(client_as(&addr, None), "default");
    let mut lost = 0;
    for i in 0..40 {
        let name = format!("lost-{i}");
        if operator
            .create(&PostParams::default(), &cm(&name))
            .await
            .is_err()
        {
            lost += 1;
        }
        // Committed either way.
        runner.get(&name).await.unwrap();
    }
    assert!((2..=20).contains(&lost), "{lost} of 40 lost");
    for _ in 0..40 {
        runner.list(&ListParams::default()).await.unwrap();
    }

    // 409 and 429: refused, nothing written.
    let (_api, addr) = serve(SeamFaults {
        api_conflict_percent: 10.0,
        api_throttle_percent: 10.0,
        ..SeamFaults::off()
    })
    .await;
    let operator: Api<ConfigMap> =
        Api::namespaced(client_as(&addr, Some("bloodraven-operator")), "default");
    let runner: Api<ConfigMap> = Api::namespaced(client_as(&addr, None), "default");
    runner
        .create(&PostParams::default(), &cm("c"))
        .await
        .unwrap();
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..100 {
        let patch = json!({"data": {"k": format!("v{i}")}});
        match operator
            .patch("c", &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => *codes.entry(200).or_insert(0) += 1,
            Err(kube::Error::Api(status)) => {
                *codes.entry(status.code).or_insert(0) += 1;
                // Refused before the write: the value is the last accepted one.
                let now = runner.get("c").await.unwrap();
                assert_ne!(
                    now.data.unwrap().get("k").cloned(),
                    Some(format!("v{i}")),
                    "a refused patch committed"
                );
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(codes.get(&409).is_some_and(|n| *n >= 3), "{codes:?}");
    // No 429 reaches the caller: kube's client retries it (Retry-After) on its own.
    assert!(!codes.contains_key(&429), "{codes:?}");
    assert!(codes.get(&200).is_some_and(|n| *n >= 60), "{codes:?}");
}
