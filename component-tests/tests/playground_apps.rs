//! The playground's apps on the simulation, reached over the simulated network as a
//! browser behind port-forward would: the counter app (same library as the binary)
//! against the operator-managed MySQL and Dragonfly, and the dashboard following the
//! operator's state feed, across a planned failover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bloodraven_sim::World;
use bloodraven_sim::apiserver::{Caller, Patch, Subresource};
use bloodraven_sim::dialer::ClusterDialer;
use bloodraven_sim::harness::{ClientHost, DrivenWorld};
use bloodraven_sim::playground::{self, PLAYGROUND_GROUP, PLAYGROUND_NAMESPACE};
use bloodraven_sim::pod::Dialer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn healthy_with(world: &World, active: &str) -> bool {
    let s = playground::playground_status(world);
    s["health"] == "Healthy" && s["activeSite"] == active
}

fn playground_with_apps(seed: u64) -> DrivenWorld {
    let mut driven = DrivenWorld::playground(seed).unwrap();
    let world = driven.world();
    playground::apply_file(world, &playground::playground_manifest()).unwrap();
    // Where the guide runs it, and where the dashboard's feed URL points (the manifest
    // above creates the namespace).
    playground::install_operator_in(world, "bloodraven-playground").unwrap();
    playground::apply_file(world, &playground::playground_apps_manifest()).unwrap();
    let ok = world
        .run_until(Duration::from_secs(120), |w| healthy_with(w, "iad"))
        .unwrap();
    assert!(
        ok,
        "seed {seed}: not Healthy on iad: {:#}",
        playground::playground_status(world)
    );
    driven
}

/// One HTTP/1.1 exchange with `Connection: close` from `client`, through its cluster
/// DNS: status and JSON body.
async fn http(
    client: &ClientHost,
    service: &str,
    port: u16,
    method: &str,
    path: &str,
) -> Result<(u16, Value), String> {
    let dialer = ClusterDialer::new(
        client.world.api().clone(),
        PLAYGROUND_NAMESPACE,
        &client.name,
        Duration::from_secs(1),
    );
    let exchange = async {
        let mut stream = dialer
            .dial(service, port)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {service}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&response).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no header end in {text:?}"))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{method} {path} on {service}:{port} timed out"))?
}

/// `POST /api/increment` until it succeeds (the app or MySQL may still be starting).
async fn increment(client: &ClientHost) -> Value {
    let mut last = String::new();
    for _ in 0..60 {
        match http(client, "counter-app", 8090, "POST", "/api/increment").await {
            Ok((200, body)) => return body,
            Ok((status, body)) => last = format!("{status}: {body}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no increment succeeded in 30 s; last: {last}");
}

async fn read(client: &ClientHost) -> Value {
    let mut last = String::new();
    for _ in 0..60 {
        match http(client, "counter-app", 8090, "GET", "/api/counter").await {
            Ok((200, body)) => return body,
            Ok((status, body)) => last = format!("{status}: {body}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no read succeeded in 30 s; last: {last}");
}

/// The dashboard's `/api/state` once `done` holds for it (the feed and the DNS poll are
/// asynchronous), or the last one seen.
async fn dashboard_state_when(client: &ClientHost, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..60 {
        if let Ok((200, body)) = http(client, "dashboard", 8091, "GET", "/api/state").await {
            if done(&body) {
                return body;
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the dashboard never showed the expected state; last: {last:#}");
}

fn site_card<'a>(state: &'a Value, site: &str) -> &'a Value {
    state["group"]["status"]["sites"]
        .as_array()
        .and_then(|sites| sites.iter().find(|s| s["name"] == site))
        .unwrap_or(&Value::Null)
}

fn dns_targets(state: &Value) -> Vec<String> {
    state["dns"]["records"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(String::from))
        .collect()
}

#[test]
fn counter_app_counts_in_mysql_and_dragonfly_and_keeps_the_count_across_a_planned_failover() {
    let mut driven = playground_with_apps(1);
    let before = driven
        .run_client(Duration::from_secs(120), |client| async move {
            let (status, health) = http(&client, "counter-app", 8090, "GET", "/healthz")
                .await
                .unwrap();
            assert_eq!((status, health), (200, Value::String("ok".into())));
            for _ in 0..3 {
                increment(&client).await;
            }
            let counter = read(&client).await;
            let dashboard = dashboard_state_when(&client, |s| {
                s["banner"]["text"] == "Healthy" && s["feedConnected"] == true
            })
            .await;
            (counter, dashboard)
        })
        .unwrap();
    let (before, dashboard) = before;
    assert_eq!(dashboard["banner"]["level"], "ok", "{dashboard:#}");
    assert_eq!(
        site_card(&dashboard, "iad")["state"],
        "writable",
        "{dashboard:#}"
    );
    assert_eq!(
        site_card(&dashboard, "pdx")["state"],
        "read-only",
        "{dashboard:#}"
    );
    assert_eq!(
        site_card(&dashboard, "pdx")["replicating"],
        true,
        "{dashboard:#}"
    );
    // No dns-webhook runs in this world: the records come from the DNSEndpoint objects.
    assert_eq!(
        dashboard["dns"]["source"], "DNSEndpoint objects",
        "{dashboard:#}"
    );
    assert_eq!(
        dns_targets(&dashboard),
        vec!["playground-mysql-iad.bloodraven-playground.svc.cluster.local"],
        "{dashboard:#}"
    );
    assert!(
        dashboard["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "DNSUpdated"),
        "{dashboard:#}"
    );
    assert_eq!(before["mysql"]["value"], 3, "{before:#}");
    assert_eq!(
        before["mysql"]["target"], "playground-mysql-primary:3306",
        "{before:#}"
    );
    assert_eq!(before["cache"]["value"], 3, "{before:#}");

    driven
        .world()
        .api()
        .patch(
            &playground::groups_key(),
            Some(PLAYGROUND_NAMESPACE),
            PLAYGROUND_GROUP,
            Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "bloodraven.shipstream.io/planned-failover": "pdx"
            }}})),
            Subresource::Main,
            &Caller {
                user_agent: "component-test",
            },
        )
        .unwrap();
    let world = driven.world();
    let moved = world
        .run_until(Duration::from_secs(120), |w| healthy_with(w, "pdx"))
        .unwrap();
    assert!(
        moved,
        "not Healthy on pdx: {:#}",
        playground::playground_status(world)
    );

    let after = driven
        .run_client(Duration::from_secs(120), |client| async move {
            let read_back = read(&client).await;
            let next = increment(&client).await;
            let dashboard = dashboard_state_when(&client, |s| {
                site_card(s, "pdx")["state"] == "writable"
                    && dns_targets(s).iter().any(|t| t.contains("mysql-pdx"))
            })
            .await;
            (read_back, next, dashboard)
        })
        .unwrap();
    let dashboard = &after.2;
    assert_eq!(
        site_card(dashboard, "iad")["state"],
        "read-only",
        "{dashboard:#}"
    );
    assert_eq!(
        dashboard["group"]["status"]["activeSite"], "pdx",
        "{dashboard:#}"
    );
    assert!(
        dashboard["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "FailoverSucceeded"),
        "{dashboard:#}"
    );
    // The durable counter survives the failover, and the app follows the new primary.
    assert_eq!(after.0["mysql"]["value"], 3, "{:#}", after.0);
    assert_eq!(after.1["mysql"]["value"], 4, "{:#}", after.1);
    // A planned failover preserves Dragonfly's sessions (REPLTAKEOVER), so the cache
    // counter too.
    assert_eq!(after.1["cache"]["value"], 4, "{:#}", after.1);
}
