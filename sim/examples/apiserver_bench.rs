//! Throughput of the simulated API server: GETs and watch events, in process and over
//! loopback HTTP with `kube::Client`. Prints measured figures; asserts nothing.
//!
//!     cargo run --release -p bloodraven-sim --example apiserver_bench

use std::sync::Arc;
use std::time::Instant;

use bloodraven::seams::SystemClock;
use bloodraven_sim::apiserver::{
    ApiServer, Caller, ListQuery, Patch, ResourceKey, Subresource, WatchEvent,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent as KubeWatchEvent, WatchParams};
use serde_json::json;

const WHO: Caller<'static> = Caller {
    user_agent: "bench",
};

fn pod(name: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "labels": {"app": "mysql", "shipstream.io/site": "iad"}},
           "spec": {"nodeName": "node-iad", "containers": [{"name": "mysql", "image": "mysql:8.4",
                    "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 3306}]}]}})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = ApiServer::new(Arc::new(SystemClock));
    let pods = ResourceKey::core("v1", "pods");
    for i in 0..100 {
        api.create(&pods, Some("default"), pod(&format!("p{i}")), &WHO)?;
    }

    // In-process GETs.
    let n = 200_000;
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(api.get(&pods, Some("default"), &format!("p{}", i % 100))?);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("in-process GET:            {rate:>10.0} /s ({n} gets of a pod)");

    // In-process watch events: one watcher, merge patches.
    let mut watch = api.watch(
        &pods,
        Some("default"),
        &ListQuery::default(),
        Some(api.resource_version()),
    )?;
    let n = 50_000;
    let start = Instant::now();
    for i in 0..n {
        let patch = Patch::Merge(json!({"metadata": {"annotations": {"n": i.to_string()}}}));
        api.patch(
            &pods,
            Some("default"),
            &format!("p{}", i % 100),
            patch,
            Subresource::Main,
            &WHO,
        )?;
    }
    let mut received = 0;
    while received < n {
        match watch.recv().await {
            Some(WatchEvent::Modified(_)) => received += 1,
            Some(_) => {}
            None => break,
        }
    }
    let rate = received as f64 / start.elapsed().as_secs_f64();
    println!(
        "in-process watch events:   {rate:>10.0} /s ({received} patches, each delivered to one watcher)"
    );

    // Over loopback HTTP with kube::Client.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(api.clone().serve(listener));
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse()?))?;
    let kpods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let n = 20_000;
    let concurrency = 16;
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let kpods = kpods.clone();
            async move { kpods.get(&format!("p{}", i % 100)).await }
        })
        .buffer_unordered(concurrency)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("HTTP GET (kube::Client):   {rate:>10.0} /s ({n} gets, {concurrency} in flight)");

    let rv = api.resource_version().to_string();
    let mut stream = kpods
        .watch(&WatchParams::default().timeout(60), &rv)
        .await?
        .boxed();
    let n = 20_000;
    let start = Instant::now();
    let writer = {
        let api = api.clone();
        let pods = pods.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..n {
                let patch =
                    Patch::Merge(json!({"metadata": {"annotations": {"h": i.to_string()}}}));
                let _ = api.patch(
                    &pods,
                    Some("default"),
                    &format!("p{}", i % 100),
                    patch,
                    Subresource::Main,
                    &WHO,
                );
            }
        })
    };
    let mut received = 0;
    while received < n {
        match stream.next().await {
            Some(Ok(KubeWatchEvent::Modified(_))) => received += 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    writer.await?;
    let rate = received as f64 / start.elapsed().as_secs_f64();
    println!(
        "HTTP watch events:         {rate:>10.0} /s ({received} events on one kube watch stream)"
    );
    Ok(())
}
