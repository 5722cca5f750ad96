//! Runs one scenario against a backend: fixture, steps (first failure stops them),
//! `finally`, leftover-fault recovery, then the invariants over the workload history.
//! Produces a `ScenarioOutcome` with the verdict, the timeline and the figures reports
//! print. Time: `tokio::time` for polling and elapsed (simulated on sim), the backend's
//! clock for timestamps. This module drives the steps; [`checks`] looks at the cluster
//! and judges, [`faults`] injects and recovers through the ledger, [`fixtures`] installs
//! a scenario's manifests, [`outcome`] is what a run produces, [`render`] prints objects
//! and Events for failure texts.

mod checks;
mod faults;
mod fixtures;
mod observer;
mod outcome;
mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::alerts::{self, FiredAlert};
use crate::backend::SharedBackend;
use crate::cel_where::{self, WhereOutcome};
use crate::cluster::SharedCluster;
use crate::invariants::{self, Failover, UnavailabilityWindow};
use crate::ledger::Ledger;
use crate::metrics;
use crate::partial;
use crate::scenario::{
    Action, ApplySource, Assertion, BackendKind, CaptureAction, Check, Fault, Invariant, ObjectRef,
    Refutation, ResourceCheck, Scenario, Step, WorkloadCheck,
};
use crate::template;
use crate::workload::{self, History, Millis, SharedHistory};
use bloodraven::api::duration::format as format_duration;

pub use checks::Probe;
pub use fixtures::{
    FIXTURE_HEALTHY_WITHIN, fixture_namespace, fixture_needs_operator, fixture_path, load_manifests,
};
pub use outcome::{Failure, ScenarioOutcome, TimelineEntry, TimelineKind, WorkloadSummary};
use render::shown_object;

pub type ProgressFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Knobs for one run.
#[derive(Clone)]
pub struct RunConfig {
    pub seed: Option<u64>,
    pub ledger_path: PathBuf,
    pub poll_interval: Duration,
    pub progress: Option<ProgressFn>,
}

impl RunConfig {
    pub fn new(ledger_path: PathBuf) -> Self {
        Self {
            seed: None,
            ledger_path,
            poll_interval: Duration::from_millis(500),
            progress: None,
        }
    }
}

struct Run<'a> {
    scenario: &'a Scenario,
    backend: SharedBackend,
    cluster: SharedCluster,
    config: &'a RunConfig,
    namespace: String,
    started: Instant,
    /// Clock time (ms) when steps started; Events older than this are not "new".
    started_wall_ms: Millis,
    ledger: Mutex<Ledger>,
    timeline: Mutex<Vec<TimelineEntry>>,
    history: SharedHistory,
    /// The counter the workload writes through, kept for the whole run: the
    /// acknowledged-writes check must ask the same client what it attempted.
    workload_target: Option<Arc<dyn workload::CounterTarget>>,
    last_status: Mutex<BTreeMap<String, Value>>,
    seen_events: Mutex<BTreeMap<String, i64>>,
    /// Values kept by `capture` steps, by name, for `${name}` references.
    captured: Mutex<BTreeMap<String, String>>,
    /// The chart's alerts that fired, once the run is over.
    alerts: Mutex<Vec<FiredAlert>>,
}

/// How often the runner scrapes the operator's /metrics for the alert evaluation (a
/// common Prometheus scrape and rule evaluation interval).
pub const ALERT_SCRAPE_INTERVAL: Duration = Duration::from_secs(15);

/// Runs `scenario` on `backend`. Never panics on scenario failure: everything ends up
/// in the outcome.
pub async fn run_scenario(
    scenario: &Scenario,
    backend: SharedBackend,
    config: &RunConfig,
) -> ScenarioOutcome {
    let wall_start = std::time::Instant::now();
    let started = Instant::now();
    let clock = backend.clock();
    let mut outcome = ScenarioOutcome::not_run(
        &scenario.id,
        backend.kind(),
        backend.describe(),
        config.seed,
        config.ledger_path.clone(),
    );
    let ledger = match Ledger::create(
        &config.ledger_path,
        backend.kind(),
        &scenario.id,
        config.seed,
        clock.now().to_string(),
    ) {
        Ok(l) => l,
        Err(e) => {
            outcome.failures.push(Failure::setup(format!(
                "cannot create the fault ledger: {e}"
            )));
            return outcome;
        }
    };
    let mut run = Run {
        scenario,
        cluster: backend.cluster(),
        backend: backend.clone(),
        config,
        namespace: "default".into(),
        started,
        started_wall_ms: workload::now_ms(&clock),
        ledger: Mutex::new(ledger),
        timeline: Mutex::new(Vec::new()),
        history: SharedHistory::default(),
        workload_target: None,
        last_status: Mutex::new(BTreeMap::new()),
        seen_events: Mutex::new(BTreeMap::new()),
        captured: Mutex::new(BTreeMap::new()),
        alerts: Mutex::new(Vec::new()),
    };
    let (failures, workload) = run.execute().await;
    outcome.failures = failures;
    outcome.workload = workload;
    outcome.timeline = run.timeline.lock().map(|t| t.clone()).unwrap_or_default();
    outcome.alerts = run.alerts.lock().map(|a| a.clone()).unwrap_or_default();
    outcome.simulated_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    outcome.wall_ms = u64::try_from(wall_start.elapsed().as_millis()).unwrap_or(u64::MAX);
    outcome
}

fn step_label(list: &str, index: usize, step: &Step) -> String {
    format!("{list}[{index}] (line {}): {}", step.line, step.label())
}

impl Run<'_> {
    fn note(&self, kind: TimelineKind, text: impl Into<String>) {
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let text = text.into();
        if let Ok(mut t) = self.timeline.lock() {
            t.push(TimelineEntry { at_ms, kind, text });
        }
    }

    fn progress(&self, text: &str) {
        if let Some(p) = &self.config.progress {
            p(&format!("{} {text}", self.scenario.id));
        }
    }

    fn now_ms(&self) -> Millis {
        workload::now_ms(&self.backend.clock())
    }

    async fn execute(&mut self) -> (Vec<Failure>, Option<WorkloadSummary>) {
        let mut failures = Vec::new();
        if !self.scenario.supports(self.backend.kind()) {
            failures.push(Failure::setup(format!(
                "scenario runs only on {:?}, not on {}",
                self.scenario.backends,
                self.backend.kind()
            )));
            return (failures, None);
        }
        if let Some(fixture) = &self.scenario.fixture {
            match self.apply_fixture(fixture).await {
                Ok(namespace) => self.namespace = namespace,
                Err(f) => {
                    failures.push(f);
                    self.recover_leftovers(&mut failures).await;
                    return (failures, None);
                }
            }
        }
        self.started_wall_ms = self.now_ms();

        // Background: the counter workload and the writability observer.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut background = Vec::new();
        let workload_target = match &self.scenario.workload {
            Some(spec) => match self.backend.counter(&self.namespace) {
                Some(target) => {
                    self.note(
                        TimelineKind::Workload,
                        format!(
                            "counter started: {} writes/s{}",
                            spec.counter.writes_per_second,
                            if spec.counter.cache {
                                ", cache INCR"
                            } else {
                                ""
                            }
                        ),
                    );
                    background.push(tokio::spawn(workload::run_counter(
                        target.clone(),
                        spec.counter.clone(),
                        self.backend.clock(),
                        self.history.clone(),
                        stop_rx.clone(),
                    )));
                    Some(target)
                }
                None => {
                    failures.push(Failure::new("workload", format!(
                            "the {} backend has no counter client, so this scenario's workload cannot run",
                            self.backend.kind()
                        )));
                    None
                }
            },
            None => None,
        };
        self.workload_target = workload_target.clone();
        let observer = tokio::spawn(observer::observe_writability(
            self.backend.clone(),
            self.history.clone(),
            self.config.poll_interval,
            stop_rx.clone(),
            self.namespace.clone(),
        ));

        // Background: /metrics as a Prometheus would scrape it, for the alerts.
        let scraper = {
            let backend = self.backend.clone();
            let started = self.started;
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut scrapes = Vec::new();
                let mut answered = false;
                loop {
                    let at_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let body = backend.scrape_metrics().await.ok();
                    match body.and_then(|b| metrics::parse(&b).ok()) {
                        Some(samples) => {
                            answered = true;
                            scrapes.push(alerts::scrape(at_ms, &samples));
                        }
                        // A target that stops answering: its series go stale, as they
                        // do in Prometheus. Before the operator first answered (no
                        // operator in this fixture) there is nothing to evaluate.
                        None if answered => scrapes.push(alerts::scrape(at_ms, &[])),
                        None => {}
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(ALERT_SCRAPE_INTERVAL) => {}
                        _ = stop.changed() => return scrapes,
                    }
                }
            })
        };

        if failures.is_empty() {
            let steps = self.run_steps();
            match tokio::time::timeout(self.scenario.timeout.as_duration(), steps).await {
                Ok(Some(f)) => failures.push(f),
                Ok(None) => {}
                Err(_) => failures.push(Failure::new(
                    "scenario",
                    format!("timed out after {}", self.scenario.timeout),
                )),
            }
        }
        for (i, step) in self.scenario.finally.iter().enumerate() {
            let label = step_label("finally", i, step);
            self.progress(&label);
            self.note(TimelineKind::Step, label.clone());
            if let Err(mut f) = self.run_step(step).await {
                f.step = label;
                failures.push(f);
            }
        }
        let _ = stop_tx.send(true);
        for task in background {
            let _ = task.await;
        }
        let _ = observer.await;
        let scrapes = scraper.await.unwrap_or_default();
        self.evaluate_alerts(scrapes, &mut failures);
        if let Some(changes) = self.backend.writability_changes()
            && let Ok(mut h) = self.history.lock()
        {
            h.writability.extend(changes);
        }
        self.recover_leftovers(&mut failures).await;
        let summary = self.check_invariants(workload_target, &mut failures).await;
        (failures, summary)
    }

    /// Evaluates the chart's alerts over the run's scrapes, puts each firing and
    /// resolution on the timeline, and fails the run for an alert the scenario's
    /// `alerts:` does not allow.
    fn evaluate_alerts(&self, scrapes: Vec<alerts::promql::Scrape>, failures: &mut Vec<Failure>) {
        // at_ms counts from the start of the run; time() needs the wall clock then.
        let elapsed_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let timeline = alerts::promql::Timeline {
            scrapes,
            unix_ms_at_start: self
                .backend
                .clock()
                .now()
                .as_millisecond()
                .saturating_sub(elapsed_ms),
        };
        let fired = match alerts::chart_rules()
            .map_err(|e| e.to_string())
            .and_then(|rules| alerts::evaluate(&rules, &timeline).map_err(|e| e.to_string()))
        {
            Ok(fired) => fired,
            Err(why) => {
                let why = format!("the chart's alerts could not be evaluated: {why}");
                if self.scenario.alerts.is_some() {
                    failures.push(Failure::new("alerts", why));
                } else {
                    self.note(TimelineKind::Note, why);
                }
                return;
            }
        };
        if let Ok(mut t) = self.timeline.lock() {
            for alert in &fired {
                t.push(TimelineEntry {
                    at_ms: alert.firing_from_ms,
                    kind: TimelineKind::Alert,
                    text: format!("firing: {}", alert.describe()),
                });
                if let Some(at_ms) = alert.resolved_at_ms {
                    t.push(TimelineEntry {
                        at_ms,
                        kind: TimelineKind::Alert,
                        text: format!("resolved: {}", alert.describe()),
                    });
                }
            }
            t.sort_by_key(|e| e.at_ms);
        }
        if let Some(allowed) = &self.scenario.alerts {
            for alert in fired.iter().filter(|a| !allowed.contains(&a.name)) {
                failures.push(Failure::new(
                    "alerts",
                    format!(
                        "{} fired at +{:.1}s; this scenario allows {}",
                        alert.describe(),
                        alert.firing_from_ms as f64 / 1000.0,
                        if allowed.is_empty() {
                            "no alert".to_owned()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                ));
            }
        }
        if let Ok(mut a) = self.alerts.lock() {
            *a = fired;
        }
    }

    /// Runs the steps; the first failure stops them. Refutes without `during` watch in
    /// the background until the steps end and fail the run the moment they trip.
    async fn run_steps(&self) -> Option<Failure> {
        let (trip_tx, mut trip_rx) = tokio::sync::mpsc::unbounded_channel::<Failure>();
        let monitors = monitors::Monitors::default();
        let steps = async {
            for (i, step) in self.scenario.steps.iter().enumerate() {
                let label = step_label("steps", i, step);
                self.progress(&label);
                self.note(TimelineKind::Step, label.clone());
                if let Action::Refute(Refutation {
                    check,
                    during: None,
                }) = &step.action
                {
                    monitors.add(label, check.clone());
                    continue;
                }
                if let Err(mut f) = self.run_step(step).await {
                    f.step = label;
                    return Some(f);
                }
            }
            None
        };
        let watch = async {
            loop {
                let checks = monitors.snapshot();
                for (label, check) in checks {
                    if let Probe::Holds(seen) = self.probe(&check).await {
                        let _ = trip_tx.send(
                            Failure::new(
                                label,
                                format!("refuted condition became true: {}", check.summary()),
                            )
                            .with_detail(seen),
                        );
                        return;
                    }
                }
                tokio::time::sleep(self.config.poll_interval).await;
            }
        };
        tokio::select! {
            result = steps => {
                // One last look: a refute must also hold at the end of the steps.
                for (label, check) in monitors.snapshot() {
                    if let Probe::Holds(seen) = self.probe(&check).await {
                        return Some(Failure::new(label, format!("refuted condition became true: {}", check.summary())).with_detail(seen));
                    }
                }
                result
            }
            _ = watch => trip_rx.recv().await,
        }
    }

    async fn run_step(&self, step: &Step) -> Result<(), Failure> {
        let fail = |message: String| Failure::new("", message);
        match &step.action {
            Action::Apply(source) => {
                let manifests = match source {
                    ApplySource::Inline(m) => vec![m.clone()],
                    ApplySource::File(path) => load_manifests(&self.scenario.base_dir().join(path))
                        .map_err(|e| fail(e.to_string()))?,
                };
                for m in &manifests {
                    self.cluster
                        .apply(m, &self.namespace)
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                }
                Ok(())
            }
            Action::ApplyRefused(refused) => {
                match self.cluster.apply(&refused.manifest, &self.namespace).await {
                    Ok(()) => Err(fail(format!(
                        "the API server accepted the manifest; it must refuse it with a message matching {:?}",
                        refused.message
                    ))),
                    Err(e) => {
                        let text = e.to_string();
                        let pattern = regex::Regex::new(&refused.message)
                            .map_err(|e| fail(format!("applyRefused.message: bad regex: {e}")))?;
                        if pattern.is_match(&text) {
                            Ok(())
                        } else {
                            Err(fail(format!(
                                "refused, but the error does not match {:?}: {text}",
                                refused.message
                            )))
                        }
                    }
                }
            }
            Action::Patch(p) => self
                .cluster
                .merge_patch(&p.resource, &self.namespace, &p.merge)
                .await
                .map_err(|e| fail(e.to_string())),
            Action::Annotate(a) => {
                let captured = self.captured.lock().map(|c| c.clone()).unwrap_or_default();
                let mut annotations = serde_json::Map::new();
                for (key, value) in &a.set {
                    let value = match value {
                        Some(template) => Value::String(
                            template
                                .render(&captured)
                                .map_err(|e| fail(format!("annotation {key}: {e}")))?,
                        ),
                        None => Value::Null,
                    };
                    annotations.insert(key.clone(), value);
                }
                let patch = serde_json::json!({"metadata": {"annotations": annotations}});
                self.cluster
                    .merge_patch(&a.resource, &self.namespace, &patch)
                    .await
                    .map_err(|e| fail(e.to_string()))
            }
            Action::Delete(r) => self
                .cluster
                .delete(r, &self.namespace)
                .await
                .map_err(|e| fail(e.to_string())),
            Action::Fault(fault) => self
                .inject(step, fault)
                .await
                .map_err(|e| fail(e.to_string())),
            Action::Wait(d) => {
                tokio::time::sleep(d.as_duration()).await;
                Ok(())
            }
            Action::Assert(a) => self.assert(a).await,
            Action::Refute(r) => self.refute(r).await,
            Action::Capture(c) => self.capture(c).await,
        }
    }

    /// Polls the object until the expression yields a value, and keeps it.
    async fn capture(&self, c: &CaptureAction) -> Result<(), Failure> {
        let deadline = Instant::now() + c.within.as_duration();
        let mut last_explanation = String::from("(never looked)");
        let mut last_error = None;
        loop {
            match self.cluster.get(&c.resource, &self.namespace).await {
                Ok(Some(object)) => {
                    self.record_status_change(&c.resource, &object);
                    match cel_where::evaluate_value(&c.value, &object) {
                        Ok(value) => {
                            self.note(
                                TimelineKind::Step,
                                format!("captured {} = {value:?}", c.name),
                            );
                            if let Ok(mut captured) = self.captured.lock() {
                                captured.insert(c.name.clone(), value);
                            }
                            return Ok(());
                        }
                        Err(e) => {
                            last_explanation = format!(
                                "`{}`: {e}\nactual {}:\n{}",
                                c.value,
                                c.resource,
                                partial::indent(&partial::to_yaml(&shown_object(&object)))
                            );
                        }
                    }
                }
                Ok(None) => last_explanation = format!("{} does not exist", c.resource),
                Err(e) => last_error = Some(e.to_string()),
            }
            if Instant::now() >= deadline {
                return Err(Failure::new(
                    "",
                    format!(
                        "capture {}: `{}` yielded no string or number within {}",
                        c.name, c.value, c.within
                    ),
                )
                .with_detail(last_explanation)
                .with_last_error(last_error));
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }
}

/// Refutes without `during`, watched until the steps end.
mod monitors {
    use std::sync::Mutex;

    use crate::scenario::Check;

    #[derive(Default)]
    pub(super) struct Monitors(Mutex<Vec<(String, Check)>>);

    impl Monitors {
        pub(super) fn add(&self, label: String, check: Check) {
            if let Ok(mut m) = self.0.lock() {
                m.push((label, check));
            }
        }

        pub(super) fn snapshot(&self) -> Vec<(String, Check)> {
            self.0.lock().map(|m| m.clone()).unwrap_or_default()
        }
    }
}
