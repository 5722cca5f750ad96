//! The playground's DNS pipeline end to end on the simulation: the operator writes the
//! DNSEndpoint, the external-dns stand-in pushes it to the dns-webhook pod, and a
//! failover moves the webhook's record to the new site (what the dashboard shows).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloodraven_dns_webhook::records::Endpoint;
use bloodraven_sim::apiserver::{Caller, Patch, ResourceKey, Subresource};
use bloodraven_sim::dialer::ClusterDialer;
use bloodraven_sim::external_dns::WebhookClient;
use bloodraven_sim::playground::{self, PLAYGROUND_GROUP, PLAYGROUND_NAMESPACE};
use bloodraven_sim::{Placement, World};
use serde_json::Value;

const HOSTNAME: &str = "mysql.playground.bloodraven.internal";

fn target(records: &[Endpoint]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.dns_name == HOSTNAME)
        .flat_map(|r| r.targets.clone())
        .collect()
}

#[test]
fn a_planned_failover_moves_the_webhooks_record() {
    let mut world = World::playground(4).unwrap();
    playground::install(&world).unwrap();
    playground::apply_file(&world, &playground::playground_manifest()).unwrap();
    playground::apply_file(&world, &playground::playground_dns_manifest()).unwrap();

    // A reader on the control plane, as the dashboard polls the webhook's Service.
    let seen: Arc<Mutex<Option<Vec<Endpoint>>>> = Arc::default();
    let dialer = ClusterDialer::new(
        world.api().clone(),
        PLAYGROUND_NAMESPACE,
        "dns-reader",
        Duration::from_secs(1),
    )
    .shared();
    let latest = seen.clone();
    world.add_client("dns-reader", Placement::ControlPlane, async move {
        let client = WebhookClient::new(dialer, "http://dns-webhook:8888")?;
        loop {
            if let Ok(records) = client.records().await {
                *latest.lock().unwrap() = Some(records);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let on = |world: &World, site: &str| {
        let _ = world;
        seen.lock()
            .unwrap()
            .as_deref()
            .map(target)
            .is_some_and(|t| {
                t == [format!(
                    "playground-mysql-{site}.bloodraven-playground.svc.cluster.local"
                )]
            })
    };
    let ok = world
        .run_until(Duration::from_secs(120), |w| on(w, "iad"))
        .unwrap();
    assert!(
        ok,
        "the webhook never held the iad record: {:?}\n{}",
        seen.lock().unwrap(),
        world.event_trace()
    );

    world
        .api()
        .patch(
            &playground::groups_key(),
            Some(PLAYGROUND_NAMESPACE),
            PLAYGROUND_GROUP,
            Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "bloodraven.shipstream.io/planned-failover": "pdx"}}})),
            Subresource::Main,
            &Caller {
                user_agent: "component-test",
            },
        )
        .unwrap();
    let ok = world
        .run_until(Duration::from_secs(120), |w| on(w, "pdx"))
        .unwrap();
    assert!(
        ok,
        "the webhook's record never moved to pdx: {:?}\nstatus: {:#}",
        seen.lock().unwrap(),
        playground::playground_status(&world)
    );
    assert_eq!(
        playground::playground_status(&world)
            .get("activeSite")
            .and_then(Value::as_str),
        Some("pdx")
    );

    // external-dns records what it pushed on the DNSEndpoint's status.
    let dns = world
        .api()
        .get(
            &ResourceKey::new("externaldns.k8s.io", "v1alpha1", "dnsendpoints"),
            Some(PLAYGROUND_NAMESPACE),
            PLAYGROUND_GROUP,
        )
        .unwrap();
    let generation = dns.pointer("/metadata/generation").and_then(Value::as_i64);
    let ok = world
        .run_until(Duration::from_secs(10), |w| {
            w.api()
                .get(
                    &ResourceKey::new("externaldns.k8s.io", "v1alpha1", "dnsendpoints"),
                    Some(PLAYGROUND_NAMESPACE),
                    PLAYGROUND_GROUP,
                )
                .ok()
                .and_then(|d| {
                    d.pointer("/status/observedGeneration")
                        .and_then(Value::as_i64)
                })
                == generation
        })
        .unwrap();
    assert!(
        ok,
        "observedGeneration never reached {generation:?}: {dns:#}"
    );
}
