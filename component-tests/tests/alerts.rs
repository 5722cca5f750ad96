//! The chart's alerts and dashboard (charts/bloodraven/templates/prometheusrule.yaml and
//! grafana-dashboard.yaml): rendered by the small Helm renderer, checked by promtool
//! (`check rules`, and `test rules` with firing and non-firing cases for every alert
//! from component-tests/promtool/alerts.test.yaml), every expression naming only series
//! the operator's registry exports, and every alert linked to a runbook page that exists
//! and listed in docs/alerts.md with that runbook.
//!
//! promtool is required: without it these tests fail with the install command, they do
//! not pass silently (`.ci/run` installs Debian's `prometheus`, which ships promtool).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bloodraven::api::{FailoverKind, FailoverResult, Health};
use bloodraven::engine::backup_freshness::ProfileFreshness;
use bloodraven::metrics::{Metrics, ReconcileResult, SiteGauges};
use bloodraven_component_tests::markdown::{heading_anchors, links};
use bloodraven_component_tests::promql::{exported_series, metric_names};
use bloodraven_component_tests::{helm, promtool};
use serde_json::{Value, json};

const RELEASE: &str = "bloodraven";
const NAMESPACE: &str = "bloodraven-system";
const RULES_FILE: &str = "bloodraven-rules.yaml";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool() -> PathBuf {
    promtool::find().unwrap_or_else(|e| panic!("{e}"))
}

fn run(promtool: &Path, args: &[&str], dir: &Path) -> String {
    promtool::run(promtool, args, dir).unwrap_or_else(|e| panic!("{e}"))
}

/// The chart's objects with the rules and the dashboard enabled.
fn rendered(overrides: &Value) -> Vec<Value> {
    let files = helm::render_chart(
        &repo().join("charts/bloodraven"),
        overrides,
        RELEASE,
        NAMESPACE,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut objects = Vec::new();
    for (file, text) in files {
        if !file.ends_with(".yaml") {
            continue;
        }
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{file} does not parse as YAML: {e}\n{text}"));
        objects.extend(documents.into_iter().filter(|d| !d.is_null()));
    }
    objects
}

fn enabled() -> Vec<Value> {
    rendered(&json!({"prometheusRule": {"enabled": true}, "grafanaDashboard": {"enabled": true}}))
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

/// The PrometheusRule's alerting rules, by alert name.
fn alerts(rule: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap_or_else(|| {
                panic!("a rule without `alert` (recording rules belong elsewhere): {rule}")
            });
            assert!(
                out.insert(name.to_string(), rule.clone()).is_none(),
                "{name} twice"
            );
        }
    }
    out
}

#[test]
fn rules_and_dashboard_are_off_by_default() {
    let objects = rendered(&json!({}));
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "PrometheusRule" || o["kind"] == "ConfigMap")
    );
}

#[test]
fn promtool_checks_the_rules_and_every_alert_fires_and_stays_quiet_when_it_should() {
    let promtool = promtool();
    let objects = enabled();
    let rule = one(&objects, "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    let alerts = alerts(rule);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(RULES_FILE),
        serde_saphyr::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    let checked = run(&promtool, &["check", "rules", RULES_FILE], dir.path());
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{checked}"
    );

    let cases_path = repo().join("component-tests/promtool/alerts.test.yaml");
    let mut cases: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&cases_path).unwrap()).unwrap();
    assert_eq!(cases["rule_files"], json!([RULES_FILE]));
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in cases["tests"].as_array_mut().unwrap() {
        let test_name = test["name"].as_str().unwrap().to_string();
        for case in test["alert_rule_test"].as_array_mut().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_string();
            let rule = alerts.get(&name).unwrap_or_else(|| {
                panic!("case `{test_name}` tests {name}, which the chart does not define")
            });
            let expected = case["exp_alerts"].as_array_mut().unwrap();
            if expected.is_empty() {
                quiet.insert(name.clone());
            } else {
                fires.insert(name.clone());
            }
            for alert in expected {
                let labels = alert["exp_labels"].as_object().unwrap().clone();
                assert_eq!(
                    labels.get("severity"),
                    Some(&rule["labels"]["severity"]),
                    "{name} in `{test_name}`"
                );
                let annotations: serde_json::Map<String, Value> = rule["annotations"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            json!(
                                promtool::expand_labels(v.as_str().unwrap(), &labels)
                                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                            ),
                        )
                    })
                    .collect();
                alert["exp_annotations"] = Value::Object(annotations);
            }
        }
    }
    for name in alerts.keys() {
        assert!(
            fires.contains(name),
            "no promtool case in which {name} fires"
        );
        assert!(
            quiet.contains(name),
            "no promtool case in which {name} stays quiet"
        );
    }
    std::fs::write(
        dir.path().join("alerts.test.yaml"),
        serde_saphyr::to_string(&cases).unwrap(),
    )
    .unwrap();
    let tested = run(
        &promtool,
        &["test", "rules", "alerts.test.yaml"],
        dir.path(),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every expression of the rules and every query of the dashboard (its panels and its
/// variables' `label_values(...)` selectors), with Grafana's interval variables made
/// concrete.
fn expressions(objects: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, rule) in alerts(one(objects, "PrometheusRule")) {
        out.push((
            format!("alert {name}"),
            rule["expr"].as_str().unwrap().to_string(),
        ));
    }
    let config_map = one(objects, "ConfigMap");
    let dashboard: Value = serde_json::from_str(
        config_map["data"]["bloodraven.json"]
            .as_str()
            .expect("the ConfigMap holds bloodraven.json"),
    )
    .unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}"));
    let grafana = |expr: &str| {
        expr.replace("$__rate_interval", "5m")
            .replace("$__range", "6h")
            .replace("$__interval", "1m")
    };
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            out.push((
                format!("panel {title}"),
                grafana(target["expr"].as_str().unwrap()),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"].as_str().unwrap();
        let selector = query
            .strip_prefix("label_values(")
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _)| selector.trim().to_string())
            .unwrap_or_else(|| {
                panic!("variable query {query} is not label_values(selector, label)")
            });
        out.push((format!("variable {}", variable["name"]), selector));
    }
    out
}

/// The series the operator's real registry exports, with one sample in every family set
/// through the setters the controllers call: prometheus-client writes no TYPE line for
/// a family that holds no sample yet. A family added with a new setter must be set here
/// too, or a rule naming it fails this test (the safe direction).
fn exported() -> BTreeSet<String> {
    let metrics = Metrics::new();
    metrics.set_health("ns", "g", Health::Healthy);
    metrics.set_active_site("ns", "g", &["a", "b"], Some("a"));
    metrics.set_site(
        "ns",
        "g",
        "b",
        SiteGauges {
            writable: false,
            reachable: true,
            replicating: true,
            lag_seconds: Some(1.0),
            divergent_transactions: 0,
        },
    );
    metrics.failover(
        "ns",
        "g",
        FailoverKind::Emergency,
        FailoverResult::Succeeded,
        Duration::from_secs(1),
    );
    metrics.split_brain_detected("ns", "g");
    metrics.reconciled(
        "ns",
        "g",
        ReconcileResult::success,
        Duration::from_millis(1),
    );
    metrics.status_write_dropped("ns", "g");
    metrics.set_dns_site("ns", "g", &["a", "b"], Some(Some("a")));
    metrics.set_writer_lease_renewal_age("ns", "g", Some(Duration::from_secs(1)));
    metrics.set_leader(true);
    metrics.set_dragonfly("ns", "g", &[("a", Some("master"))], Some(true), Some(true));
    metrics.backup_finished("ns", "g", "p", false, Some(Duration::from_secs(3)));
    metrics.verification_finished(
        "ns",
        "g",
        "p",
        false,
        Some(Duration::from_secs(3)),
        jiff::Timestamp::UNIX_EPOCH,
    );
    metrics.set_backup_freshness(
        "ns",
        "g",
        &[ProfileFreshness {
            profile: "p".into(),
            last_success: Some((jiff::Timestamp::UNIX_EPOCH, Some(1))),
            max_age: Some(jiff::SignedDuration::from_hours(1)),
        }],
    );
    let text = metrics.render();
    let exported = exported_series(&text).unwrap();
    // The suffix rules agree with the samples the registry really wrote.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(
            exported.contains(name),
            "sample {name} is not among {exported:?}"
        );
    }
    exported
}

#[test]
fn every_expression_parses_and_names_only_series_the_operator_exports() {
    let promtool = promtool();
    let exported = exported();
    let expressions = expressions(&enabled());
    let mut used = BTreeSet::new();
    for (origin, expr) in &expressions {
        let names = metric_names(expr).unwrap_or_else(|e| panic!("{origin}: {e}"));
        assert!(!names.is_empty(), "{origin} reads no metric: {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{origin} reads {name}, which the operator does not export (it exports {exported:?})"
            );
            used.insert(name);
        }
    }
    // Every expression parses: promtool checks them as recording rules.
    let rules: Vec<Value> = expressions
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("bloodraven:check:{i}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("expressions.yaml"),
        serde_saphyr::to_string(&json!({"groups": [{"name": "expressions", "rules": rules}]}))
            .unwrap(),
    )
    .unwrap();
    let checked = run(
        &promtool,
        &["check", "rules", "expressions.yaml"],
        dir.path(),
    );
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", expressions.len())),
        "{checked}"
    );
    // The dashboard shows every family the operator exports.
    for family in [
        "bloodraven_group_health",
        "bloodraven_active_site",
        "bloodraven_site_writable",
        "bloodraven_site_reachable",
        "bloodraven_site_replicating",
        "bloodraven_site_replication_lag_seconds",
        "bloodraven_divergent_transactions",
        "bloodraven_split_brain",
        "bloodraven_split_brain_detected_total",
        "bloodraven_failovers_total",
        "bloodraven_failover_duration_seconds_bucket",
        "bloodraven_reconciles_total",
        "bloodraven_reconcile_duration_seconds_bucket",
        "bloodraven_status_writes_dropped_total",
        "bloodraven_leader",
    ] {
        assert!(
            exported.contains(family),
            "{family} is no longer exported: update the dashboard"
        );
        assert!(used.contains(family), "no rule or panel reads {family}");
    }
}

/// `runbook_url` -> (docs-relative page, anchor).
fn runbook_of(alert: &str, rule: &Value, base: &str) -> (String, Option<String>) {
    let url = rule["annotations"]["runbook_url"]
        .as_str()
        .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
    let path = url
        .strip_prefix(base)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or_else(|| panic!("{alert}: runbook_url {url} is not under {base}"));
    match path.split_once('#') {
        Some((page, anchor)) => (page.to_string(), Some(anchor.to_string())),
        None => (path.to_string(), None),
    }
}

#[test]
fn every_alert_links_to_an_existing_runbook_and_the_alert_map_lists_it() {
    let base = "https://runbooks.example/docs";
    let objects = rendered(&json!({"prometheusRule": {"enabled": true, "runbookBaseUrl": base}}));
    let docs = repo().join("docs");
    let alert_map = std::fs::read_to_string(docs.join("alerts.md")).unwrap();
    let map_links: BTreeSet<String> = links(&alert_map).into_iter().collect();
    for (name, rule) in alerts(one(&objects, "PrometheusRule")) {
        let (page, anchor) = runbook_of(&name, &rule, base);
        assert!(
            page.starts_with("runbooks/"),
            "{name}: {page} is not a runbook page"
        );
        let text = std::fs::read_to_string(docs.join(&page))
            .unwrap_or_else(|e| panic!("{name}: runbook {page}: {e}"));
        if let Some(anchor) = &anchor {
            assert!(
                heading_anchors(&text).contains(anchor),
                "{name}: {page} has no section #{anchor} (it has {:?})",
                heading_anchors(&text)
            );
        }
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        // The map names the alert on a row that links the same runbook section.
        let row = alert_map
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{name}`")))
            .unwrap_or_else(|| panic!("docs/alerts.md has no row for `{name}`"));
        let target = match &anchor {
            Some(anchor) => format!("{page}#{anchor}"),
            None => page.clone(),
        };
        assert!(
            links(row).contains(&target),
            "docs/alerts.md's row for {name} does not link {target}: {row}"
        );
    }
    // Every runbook page is in the map, and every row of the map that names a Bloodraven
    // alert either is a rule or says plainly that it waits for metrics.
    for entry in std::fs::read_dir(docs.join("runbooks")).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        if !file.ends_with(".md") {
            continue;
        }
        let page = format!("runbooks/{file}");
        assert!(
            map_links
                .iter()
                .any(|l| l == &page || l.starts_with(&format!("{page}#"))),
            "docs/alerts.md does not map any alert to {page}"
        );
    }
    let defined = alerts(one(&objects, "PrometheusRule"));
    for row in alert_map.lines().filter(|l| l.starts_with("| `Bloodraven")) {
        let name = row.split('`').nth(1).unwrap();
        assert!(
            defined.contains_key(name) || row.contains("pending metric"),
            "docs/alerts.md lists {name}, which is neither a rule nor marked pending metrics: {row}"
        );
        if row.contains("pending metric") {
            assert!(
                !defined.contains_key(name),
                "{name} is a rule but marked pending: {row}"
            );
        }
    }
}

#[test]
fn the_dashboard_and_rule_carry_their_selector_labels() {
    let objects = rendered(&json!({
        "prometheusRule": {"enabled": true, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": true, "namespace": "monitoring"},
    }));
    let rule = one(&objects, "PrometheusRule");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let config_map = one(&objects, "ConfigMap");
    drop(
        serde_json::from_value::<k8s_openapi::api::core::v1::ConfigMap>(config_map.clone())
            .unwrap(),
    );
    assert_eq!(config_map["metadata"]["namespace"], "monitoring");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    // Grafana's legend templates survive Helm.
    let json = config_map["data"]["bloodraven.json"].as_str().unwrap();
    assert!(
        json.contains(r#""legendFormat": "{{group}}/{{site}}""#),
        "{json}"
    );
}
