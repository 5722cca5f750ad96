//! The runner end to end against the test double (tests/support): a deliberately
//! failing scenario must fail with a readable diff; the happy path walks faults,
//! polling asserts, hold, refutes, Events and metrics; the ledger survives a crash;
//! JUnit parses back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bloodraven_chaos::backend::SharedBackend;
use bloodraven_chaos::ledger::{self, Ledger};
use bloodraven_chaos::runner::{RunConfig, ScenarioOutcome, run_scenario};
use bloodraven_chaos::scenario::{self, BackendKind, Fault};
use bloodraven_chaos::{cli, report};
use serde_json::json;
use support::{FakeBackend, FakeCluster, group};

fn fixture(name: &str) -> scenario::Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runner")
        .join(name);
    scenario::load(&path).unwrap()
}

fn config(dir: &tempfile::TempDir, id: &str) -> RunConfig {
    let mut c = RunConfig::new(dir.path().join(format!("{id}.ledger")));
    c.seed = Some(42);
    c
}

#[tokio::test(start_paused = true)]
async fn deliberately_failing_scenario_fails_with_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(FakeCluster::default());
    let backend = Arc::new(FakeBackend::new(cluster.clone()));
    let s = fixture("91-deliberately-failing.yaml");
    let outcome = run_scenario(&s, backend.clone() as SharedBackend, &config(&dir, &s.id)).await;

    assert!(!outcome.passed());
    assert_eq!(outcome.failures.len(), 1, "{:#?}", outcome.failures);
    let text = report::failure_text(&outcome);
    println!("{text}");
    // Which step, what was expected, what was there, and a diff.
    assert!(
        text.contains("steps[1] (line 10): assert MysqlFailoverGroup/playground (pdx takes over)"),
        "{text}"
    );
    assert!(text.contains("did not hold within 5s"), "{text}");
    assert!(
        text.contains("expected status (PARTIAL):\n    activeSite: pdx"),
        "{text}"
    );
    assert!(
        text.contains("status.activeSite: expected \"pdx\", got \"iad\""),
        "{text}"
    );
    assert!(
        text.contains("status.sites[name=pdx].state: expected \"writable\", got \"read-only\""),
        "{text}"
    );
    assert!(
        text.contains("diff of status (- expected, + actual):"),
        "{text}"
    );
    assert!(
        text.contains("- activeSite: pdx") && text.contains("+ activeSite: iad"),
        "{text}"
    );
    assert!(
        text.contains("actual MysqlFailoverGroup/playground:"),
        "{text}"
    );
    assert!(
        text.contains("health: Healthy"),
        "the actual object is shown: {text}"
    );
    assert!(!text.contains("managedFields"), "noise is dropped: {text}");
    assert!(
        text.contains(
            "replay: bloodraven-chaos run 91-deliberately-failing --backend sim --seed 42"
        ),
        "{text}"
    );
    // The step after the failure did not run; finally did, and undid the fault.
    assert!(
        !outcome
            .timeline
            .iter()
            .any(|t| t.text.contains("never reached"))
    );
    assert_eq!(
        backend.executed(),
        vec![
            json!({"do": "kill-site iad"}),
            json!({"undo": "kill-site iad"})
        ]
    );
    // Polling: within 5s at 500ms intervals is about 11 looks, on (paused) tokio time.
    assert!(
        (5_000..6_500).contains(&outcome.simulated_ms),
        "{}",
        outcome.simulated_ms
    );
}

/// Plays the operator: after 4s, fail over to pdx, emit an Event, count a metric.
fn operator_fails_over(cluster: Arc<FakeCluster>, backend: Arc<FakeBackend>) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        cluster.set_status(
            "MysqlFailoverGroup",
            "playground",
            group("pdx", "Healthy")["status"].clone(),
        );
        let now = backend.clock.now().to_string();
        cluster.events.lock().unwrap().push(json!({
            "metadata": {"uid": "e1", "creationTimestamp": now},
            "involvedObject": {"kind": "MysqlFailoverGroup", "name": "playground"},
            "type": "Normal", "reason": "FailoverSucceeded", "message": "emergency failover iad -> pdx",
            "lastTimestamp": now, "count": 1
        }));
        *backend.metrics.lock().unwrap() = "# TYPE bloodraven_failovers_total counter\n\
            bloodraven_failovers_total{group=\"playground\",kind=\"emergency\"} 1\n"
            .into();
    });
}

#[tokio::test(start_paused = true)]
async fn happy_path_walks_every_kind_of_step() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(FakeCluster::default());
    let backend = Arc::new(FakeBackend::new(cluster.clone()));
    *cluster.flaky_gets.lock().unwrap() = 3; // transient API errors are survived
    operator_fails_over(cluster.clone(), backend.clone());
    let s = fixture("92-failover-passes.yaml");
    let c = config(&dir, &s.id);
    let outcome = run_scenario(&s, backend.clone() as SharedBackend, &c).await;
    assert!(outcome.passed(), "{}", report::failure_text(&outcome));
    assert_eq!(
        backend.executed(),
        vec![
            json!({"do": "kill-site iad"}),
            json!({"do": "cordon pdx"}),
            json!({"undo": "cordon pdx"}),
            json!({"undo": "kill-site iad"}),
        ],
        "recover undoes newest first"
    );
    let timeline: Vec<String> = outcome.timeline.iter().map(ToString::to_string).collect();
    let joined = timeline.join("\n");
    assert!(
        joined
            .contains("fixture playground: applied 2 object(s) in namespace bloodraven-playground"),
        "{joined}"
    );
    assert!(
        joined.contains("status.activeSite: iad -> pdx"),
        "status changes are in the timeline: {joined}"
    );
    assert!(
        joined.contains("Normal FailoverSucceeded: emergency failover iad -> pdx"),
        "{joined}"
    );
    assert!(
        joined.contains("bloodraven_failovers_total{kind=\"emergency\"} = 1"),
        "{joined}"
    );
    assert!(
        ledger::read_for_recovery(&c.ledger_path)
            .unwrap()
            .pending
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn persistent_errors_are_reported_as_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(FakeCluster::default());
    let backend = Arc::new(FakeBackend::new(cluster.clone()));
    let mut s = fixture("91-deliberately-failing.yaml");
    s.fixture = None;
    cluster.put(group("iad", "Healthy"));
    *cluster.flaky_gets.lock().unwrap() = 1_000;
    let outcome = run_scenario(&s, backend as SharedBackend, &config(&dir, &s.id)).await;
    let text = report::failure_text(&outcome);
    assert!(
        text.contains(
            "last error while polling: get MysqlFailoverGroup/playground: connection reset by peer"
        ),
        "{text}"
    );
}

/// A state shorter than a poll interval (the operator reports SplitBrain and ends it in
/// the next reconcile) is seen through the watch an assert keeps beside its polls; a
/// cluster that cannot watch only polls, and misses it.
#[tokio::test(start_paused = true)]
async fn assert_sees_a_state_too_short_for_polling_through_the_watch() {
    let text = r#"
description: transient
steps:
  - assert: {resource: {kind: MysqlFailoverGroup, name: playground}, status: {health: SplitBrain}, within: 3s}
"#;
    let s = scenario::parse(Path::new("t/94-transient.yaml"), text).unwrap();
    for watching in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Arc::new(FakeCluster::default());
        cluster.put(group("iad", "Healthy"));
        if watching {
            *cluster.watch_versions.lock().unwrap() = Some(vec![
                group("iad", "Healthy"),
                group("iad", "SplitBrain"),
                group("iad", "Healthy"),
            ]);
        }
        let backend = Arc::new(FakeBackend::new(cluster.clone()));
        let outcome = run_scenario(&s, backend as SharedBackend, &config(&dir, &s.id)).await;
        if watching {
            assert!(outcome.passed(), "{}", report::failure_text(&outcome));
            let timeline: Vec<String> = outcome.timeline.iter().map(|t| t.text.clone()).collect();
            assert!(
                timeline
                    .iter()
                    .any(|t| t.contains("status.health: Healthy -> SplitBrain")),
                "the watched change is in the timeline: {timeline:?}"
            );
        } else {
            assert!(
                outcome.failures[0]
                    .message
                    .contains("did not hold within 3s"),
                "{:?}",
                outcome.failures
            );
        }
    }
}

/// A captured value reaches the annotation written and a fragment compared; a capture
/// whose expression never yields a value fails with the last evaluation error.
#[tokio::test(start_paused = true)]
async fn captured_values_fill_annotations_and_fragments() {
    let text = r#"
description: capture
steps:
  - capture: {resource: {kind: MysqlFailoverGroup, name: playground}, value: "self.status.activeSite", as: site}
  - annotate: {resource: {kind: MysqlFailoverGroup, name: playground}, set: {note: "from-${site}"}}
  - assert: {resource: {kind: MysqlFailoverGroup, name: playground}, metadata: {annotations: {note: "from-${site}"}}, status: {activeSite: "${site}"}, within: 1s}
  - capture: {resource: {kind: MysqlFailoverGroup, name: playground}, value: "self.status.nope", as: nope, within: 2s}
"#;
    let s = scenario::parse(Path::new("t/95-capture.yaml"), text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(FakeCluster::default());
    cluster.put(group("iad", "Healthy"));
    let backend = Arc::new(FakeBackend::new(cluster.clone()));
    let outcome = run_scenario(&s, backend as SharedBackend, &config(&dir, &s.id)).await;
    let object = cluster.objects.lock().unwrap()["MysqlFailoverGroup/playground"].clone();
    assert_eq!(object["metadata"]["annotations"]["note"], "from-iad");
    assert!(
        outcome
            .timeline
            .iter()
            .any(|t| t.text == "captured site = \"iad\""),
        "{:?}",
        outcome.timeline
    );
    assert_eq!(outcome.failures.len(), 1, "{:?}", outcome.failures);
    let f = &outcome.failures[0];
    assert!(f.step.starts_with("steps[3]"), "{f}");
    assert!(
        f.message
            .contains("capture nope: `self.status.nope` yielded no string or number within 2s"),
        "{f}"
    );
    assert!(f.detail.contains("evaluation failed"), "{f}");
}

#[tokio::test(start_paused = true)]
async fn hold_fails_when_the_condition_stops_holding() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(FakeCluster::default());
    let backend = Arc::new(FakeBackend::new(cluster.clone()));
    cluster.put(group("iad", "Healthy"));
    let c2 = cluster.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        c2.set_status(
            "MysqlFailoverGroup",
            "playground",
            group("iad", "Degraded")["status"].clone(),
        );
    });
    let text = r#"
description: hold
steps:
  - assert: {resource: {kind: MysqlFailoverGroup, name: playground}, status: {health: Healthy}, within: 5s, hold: 10s}
"#;
    let s = scenario::parse(Path::new("t/93-hold.yaml"), text).unwrap();
    let outcome = run_scenario(&s, backend as SharedBackend, &config(&dir, &s.id)).await;
    let f = &outcome.failures[0];
    assert!(
        f.message.contains("held for 3500ms") && f.message.contains("but not for the required 10s"),
        "{f}"
    );
    assert!(
        f.detail
            .contains("status.health: expected \"Healthy\", got \"Degraded\""),
        "{f}"
    );
}

#[tokio::test(start_paused = true)]
async fn refute_without_during_watches_until_the_steps_end() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(FakeCluster::default());
    let backend = Arc::new(FakeBackend::new(cluster.clone()));
    cluster.put(group("iad", "Healthy"));
    let c2 = cluster.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        c2.set_status(
            "MysqlFailoverGroup",
            "playground",
            group("iad", "SplitBrain")["status"].clone(),
        );
    });
    let text = r#"
description: background refute
steps:
  - refute: {resource: {kind: MysqlFailoverGroup, name: playground}, status: {health: SplitBrain}}
  - wait: 1m
"#;
    let s = scenario::parse(Path::new("t/94-refute.yaml"), text).unwrap();
    let outcome = run_scenario(&s, backend as SharedBackend, &config(&dir, &s.id)).await;
    let f = &outcome.failures[0];
    assert!(f.step.starts_with("steps[0]"), "{f}");
    assert!(f.message.contains("refuted condition became true"), "{f}");
    assert!(
        f.detail.contains("health: SplitBrain"),
        "the evidence shows the object: {f}"
    );
    assert!(
        outcome.simulated_ms < 10_000,
        "it fails the moment it trips, not after the wait: {}",
        outcome.simulated_ms
    );
}

#[tokio::test(start_paused = true)]
async fn ledger_recovers_after_the_runner_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledgers/04-cordon-iad.ledger");
    {
        let mut l =
            Ledger::create(&path, BackendKind::K3d, "04-cordon-iad", None, "t0".into()).unwrap();
        l.record_fault(
            "steps[0]",
            &Fault::Cordon("iad".into()),
            vec![json!({"undo": "cordon iad"})],
            "t1".into(),
        )
        .unwrap();
        let seq = l
            .record_fault(
                "steps[1]",
                &Fault::NodeCrash("pdx".into()),
                vec![json!({"undo": "node-crash pdx"})],
                "t2".into(),
            )
            .unwrap();
        l.record_fault(
            "steps[2]",
            &Fault::KillSite("iad".into()),
            vec![],
            "t3".into(),
        )
        .unwrap();
        l.mark_undone(seq, "t4".into()).unwrap();
        // The runner "crashes" here: the ledger is dropped without recovering.
    }
    let backend = Arc::new(FakeBackend::new(Arc::new(FakeCluster::default())));
    let shared: SharedBackend = backend.clone();
    let result = cli::recover_ledger(&path, &shared).await.unwrap();
    assert_eq!(result.undone.len(), 2, "{result:?}");
    assert!(
        result.undone[0].starts_with("#3 kill-site iad"),
        "newest first: {result:?}"
    );
    assert_eq!(
        backend.executed(),
        vec![json!({"undo": "cordon iad"})],
        "kill-site has no undo operations"
    );
    // Recovery is recorded: a second recover finds nothing to do.
    assert!(
        cli::recover_ledger(&path, &shared)
            .await
            .unwrap()
            .undone
            .is_empty()
    );
}

fn outcome(id: &str, failing: bool) -> ScenarioOutcome {
    use bloodraven_chaos::runner::{Failure, TimelineEntry, TimelineKind};
    ScenarioOutcome {
        id: id.into(),
        backend: BackendKind::Sim,
        backend_description: "fake".into(),
        seed: Some(7),
        failures: if failing {
            vec![Failure {
                step: "steps[1] (line 11): assert MysqlFailoverGroup/playground".into(),
                message: "did not hold within 5s".into(),
                detail: "- activeSite: pdx\n+ activeSite: iad\n".into(),
                last_error: None,
            }]
        } else {
            vec![]
        },
        wall_ms: 1500,
        simulated_ms: 65_000,
        timeline: vec![TimelineEntry {
            at_ms: 1200,
            kind: TimelineKind::Fault,
            text: "#1 kill-site iad".into(),
        }],
        workload: None,
        alerts: if failing {
            vec![bloodraven_chaos::alerts::FiredAlert {
                name: "BloodravenEmergencyFailover".into(),
                severity: "warning".into(),
                labels: [("group".to_owned(), "playground".to_owned())].into(),
                firing_from_ms: 30_000,
                resolved_at_ms: None,
            }]
        } else {
            vec![]
        },
        ledger: "x.ledger".into(),
    }
}

#[test]
fn junit_parses_back_with_cases_properties_failures_and_timeline() {
    let outcomes = vec![
        outcome("01-bootstrap-healthy", false),
        outcome("02-kill-site-iad", true),
    ];
    let xml = report::junit("bloodraven-chaos", BackendKind::Sim, Some(7), &outcomes)
        .to_string()
        .unwrap();
    let parsed = quick_junit::Report::deserialize_from_str(&xml).unwrap();
    assert_eq!(parsed.test_suites.len(), 1);
    let suite = &parsed.test_suites[0];
    assert_eq!(suite.test_cases.len(), 2);
    assert_eq!((suite.tests, suite.failures), (2, 1));
    let props: Vec<(String, String)> = suite
        .properties
        .iter()
        .map(|p| (p.name.to_string(), p.value.to_string()))
        .collect();
    assert!(
        props.contains(&("backend".into(), "sim".into())),
        "{props:?}"
    );
    assert!(props.contains(&("seed".into(), "7".into())), "{props:?}");
    let failed = &suite.test_cases[1];
    assert_eq!(failed.name.as_str(), "02-kill-site-iad");
    match &failed.status {
        quick_junit::TestCaseStatus::NonSuccess {
            message,
            description,
            ..
        } => {
            assert!(
                message
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .contains("did not hold within 5s")
            );
            let d = description.as_ref().unwrap().as_str();
            assert!(d.contains("+ activeSite: iad"), "{d}");
            assert!(
                d.contains("replay: bloodraven-chaos run 02-kill-site-iad --backend sim --seed 7"),
                "{d}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let out = failed.system_out.as_ref().unwrap().as_str();
    assert!(
        out.contains("+    1.200s fault    #1 kill-site iad"),
        "{out}"
    );
    // Issue 17: the alerts that fired are listed with the timeline.
    assert!(
        out.contains(r#"alerts: BloodravenEmergencyFailover{group="playground"} (warning)"#),
        "{out}"
    );
    let quiet = suite.test_cases[0].system_out.as_ref().unwrap().as_str();
    assert!(quiet.contains("alerts: none"), "{quiet}");
    assert!(matches!(
        suite.test_cases[0].status,
        quick_junit::TestCaseStatus::Success { .. }
    ));

    let table = report::summary_table(&outcomes);
    assert!(
        table.contains("02-kill-site-iad      FAIL    1.5s  65.0s      -    7"),
        "{table}"
    );
    let dir = tempfile::tempdir().unwrap();
    let json_path = report::write_json(dir.path(), BackendKind::Sim, Some(7), &outcomes).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    assert_eq!(
        (json["passed"].as_u64(), json["failed"].as_u64()),
        (Some(1), Some(1))
    );
}
