//! The chart's alerts evaluated over what the real operator exported during a run on the
//! simulation. The playground bootstraps and runs healthy, then the active site's node
//! crashes and stays down. The operator's /metrics is scraped every 15 simulated seconds
//! throughout; the samples become promtool input series, and `promtool test rules`
//! checks that no alert fires while the group is healthy, that the emergency failover
//! (about 8 s) pages `BloodravenEmergencyFailover` and never "no primary", and that the
//! lost standby pages `BloodravenReplicationStopped` with the site that is gone, and
//! the cache that lost its replica with it pages `BloodravenDragonflyDegraded`.
//!
//! Like tests/alerts.rs it needs promtool and fails with the install hint without it.
//! The chaos runner evaluates the same rules over every scenario's scrapes with its own
//! small evaluator (chaos/src/alerts/); this test keeps promtool as the reference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bloodraven_chaos::metrics::{Sample, parse};
use bloodraven_component_tests::{helm, promtool};
use bloodraven_sim::World;
use bloodraven_sim::harness::DrivenWorld;
use bloodraven_sim::playground::{self, PLAYGROUND_GROUP, PLAYGROUND_NAMESPACE};
use serde_json::{Value, json};

const SCRAPE: Duration = Duration::from_secs(15);
/// The `instance` label Prometheus would give the one operator replica's target.
const INSTANCE: &str = "bloodraven-operator";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn group_status(world: &World) -> Value {
    bloodraven_sim::playground::playground_status(world)
}

/// `count` scrapes of the operator's /metrics, one every [`SCRAPE`] of simulated time.
fn scrapes(sim: &mut DrivenWorld, count: usize) -> Vec<Vec<Sample>> {
    let limit = SCRAPE * u32::try_from(count + 2).unwrap();
    let bodies = sim
        .run_client(limit, move |host| async move {
            let mut bodies = Vec::new();
            for _ in 0..count {
                tokio::time::sleep(SCRAPE).await;
                bodies.push(host.operator_metrics().await);
            }
            bodies
        })
        .unwrap();
    bodies
        .into_iter()
        .map(|body| parse(&body.unwrap()).unwrap())
        .collect()
}

/// The scrapes as promtool input series: one per distinct name and label set, `_` where
/// a scrape did not have it (a series that appeared or went away).
fn input_series(timeline: &[Vec<Sample>]) -> Vec<Value> {
    let mut series: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for (i, scrape) in timeline.iter().enumerate() {
        for sample in scrape {
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap()))
                .collect();
            labels.push(format!("instance=\"{INSTANCE}\""));
            let key = format!("{}{{{}}}", sample.name, labels.join(","));
            series
                .entry(key)
                .or_insert_with(|| vec![None; timeline.len()])[i] = Some(sample.value);
        }
    }
    series
        .into_iter()
        .map(|(key, values)| {
            let values: Vec<String> = values
                .into_iter()
                .map(|v| v.map_or_else(|| "_".to_string(), |v| v.to_string()))
                .collect();
            json!({"series": key, "values": values.join(" ")})
        })
        .collect()
}

fn minutes_seconds(at: Duration) -> String {
    format!("{}s", at.as_secs())
}

#[test]
fn a_healthy_run_pages_nobody_and_a_lost_primary_pages_its_runbook() {
    let promtool = promtool::find().unwrap_or_else(|e| panic!("{e}"));
    let mut sim = DrivenWorld::playground(17).unwrap();
    sim.install_operator().unwrap();
    playground::apply_file(sim.world(), &playground::playground_manifest()).unwrap();
    let healthy = sim
        .world()
        .run_until(Duration::from_secs(120), |w| {
            group_status(w)["health"] == "Healthy"
        })
        .unwrap();
    assert!(healthy, "never Healthy: {:#}", group_status(sim.world()));

    // Five healthy minutes, then iad's node crashes and stays down for six and a half:
    // long enough for the 5-minute `for` of BloodravenReplicationStopped.
    let healthy_scrapes = 20;
    let mut timeline = scrapes(&mut sim, healthy_scrapes);
    let node = sim.world().site_node("iad").unwrap().to_string();
    sim.world()
        .apply(bloodraven_sim::Fault::CrashNode(node))
        .unwrap();
    timeline.extend(scrapes(&mut sim, 26));
    let status = group_status(sim.world());
    assert_eq!(status["activeSite"], "pdx", "{status:#}");

    // Sample i is at i * 15 s on promtool's clock.
    let at = |i: usize| SCRAPE * u32::try_from(i).unwrap();
    let end = at(timeline.len() - 1);
    let objects = helm::render_chart(
        &repo().join("charts/bloodraven"),
        &json!({"prometheusRule": {"enabled": true}}),
        "bloodraven",
        "bloodraven-system",
    )
    .unwrap();
    let rule_text = &objects
        .iter()
        .find(|(f, _)| f.ends_with("prometheusrule.yaml"))
        .unwrap()
        .1;
    let rule: Value = serde_saphyr::from_str(rule_text).unwrap();
    let mut quiet_at_end = Vec::new();
    let mut cases = Vec::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for alert in group["rules"].as_array().unwrap() {
            let name = alert["alert"].as_str().unwrap();
            // While healthy: nothing, at every minute.
            for i in (3..healthy_scrapes).step_by(4) {
                cases.push(json!({"eval_time": minutes_seconds(at(i)), "alertname": name, "exp_alerts": []}));
            }
            // Through the failover and after it: no "no primary" page, ever.
            if name == "BloodravenNoPrimary" || name == "BloodravenFailoverBlocked" {
                for i in (healthy_scrapes..timeline.len()).step_by(2) {
                    cases.push(json!({"eval_time": minutes_seconds(at(i)), "alertname": name, "exp_alerts": []}));
                }
            }
            if ![
                "BloodravenReplicationStopped",
                "BloodravenEmergencyFailover",
                "BloodravenDragonflyDegraded",
            ]
            .contains(&name)
            {
                quiet_at_end.push(name.to_string());
            }
        }
    }
    for name in &quiet_at_end {
        cases.push(json!({"eval_time": minutes_seconds(end), "alertname": name, "exp_alerts": []}));
    }
    let firing = |alert: &str, labels: Value| {
        let rule = rule["spec"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .find(|r| r["alert"] == alert)
            .unwrap();
        let mut labels = labels.as_object().unwrap().clone();
        labels.insert("severity".into(), rule["labels"]["severity"].clone());
        let annotations: serde_json::Map<String, Value> = rule["annotations"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let text = promtool::expand_labels(v.as_str().unwrap(), &labels);
                (k.clone(), json!(text.unwrap()))
            })
            .collect();
        json!([{"exp_labels": labels, "exp_annotations": annotations}])
    };
    let group = json!({"namespace": PLAYGROUND_NAMESPACE, "group": PLAYGROUND_GROUP});
    // The failover pages its runbook right after it happened ...
    cases.push(
        json!({"eval_time": minutes_seconds(at(healthy_scrapes + 2)),
                      "alertname": "BloodravenEmergencyFailover",
                      "exp_alerts": firing("BloodravenEmergencyFailover", group.clone())}),
    );
    // ... and the old primary, gone for over 5 minutes, leaves the group without standby.
    let mut iad = group.clone();
    iad["site"] = json!("iad");
    cases.push(
        json!({"eval_time": minutes_seconds(end), "alertname": "BloodravenReplicationStopped",
                      "exp_alerts": firing("BloodravenReplicationStopped", iad)}),
    );
    // The playground's Dragonfly lost iad's cache with the node: degraded, not MySQL's page.
    cases.push(
        json!({"eval_time": minutes_seconds(end), "alertname": "BloodravenDragonflyDegraded",
                      "exp_alerts": firing("BloodravenDragonflyDegraded", group.clone())}),
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_saphyr::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    let test = json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "15s",
        "tests": [{
            "name": "playground: healthy, then iad's node crashes",
            "interval": "15s",
            "input_series": input_series(&timeline),
            "alert_rule_test": cases,
        }],
    });
    std::fs::write(
        dir.path().join("timeline.test.yaml"),
        serde_saphyr::to_string(&test).unwrap(),
    )
    .unwrap();
    promtool::run(
        &promtool,
        &["test", "rules", "timeline.test.yaml"],
        dir.path(),
    )
    .unwrap_or_else(|e| panic!("the alerts over the run's metrics: {e}"));

    // The chaos runner's own evaluator, over the same scrapes, agrees with promtool:
    // nothing while healthy, the failover right after it, the lost standby at the end,
    // and nothing else.
    // promtool's time() counts from 0 at the first sample; so does this one's.
    let chaos_timeline = bloodraven_chaos::alerts::promql::Timeline {
        unix_ms_at_start: 0,
        scrapes: timeline
            .iter()
            .enumerate()
            .map(|(i, samples)| {
                let at_ms = u64::try_from(at(i).as_millis()).unwrap();
                bloodraven_chaos::alerts::scrape(at_ms, samples)
            })
            .collect(),
    };
    let rules = bloodraven_chaos::alerts::chart_rules().unwrap();
    let fired = bloodraven_chaos::alerts::evaluate(&rules, &chaos_timeline).unwrap();
    let crash_ms = u64::try_from(at(healthy_scrapes).as_millis()).unwrap();
    let mut names: Vec<(&str, Option<&str>)> = fired
        .iter()
        .map(|a| (a.name.as_str(), a.labels.get("site").map(String::as_str)))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            ("BloodravenDragonflyDegraded", None),
            ("BloodravenEmergencyFailover", None),
            ("BloodravenReplicationStopped", Some("iad")),
        ],
        "{fired:#?}"
    );
    assert!(
        fired.iter().all(|a| a.firing_from_ms >= crash_ms),
        "{fired:#?}"
    );
    assert!(
        fired
            .iter()
            .find(|a| a.name == "BloodravenEmergencyFailover")
            .is_some_and(|a| a.firing_from_ms <= crash_ms + 30_000),
        "the failover pages within two scrapes: {fired:#?}"
    );
}
