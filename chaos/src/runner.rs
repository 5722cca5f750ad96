//! Runs one scenario against a backend: fixture, steps (first failure stops them),
//! `finally`, leftover-fault recovery, then the invariants over the workload history.
//! Produces a `ScenarioOutcome` with the verdict, the timeline and the figures reports
//! print. Time: `tokio::time` for polling and elapsed (simulated on sim), the backend's
//! clock for timestamps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::backend::SharedBackend;
use crate::cel_where::{self, WhereOutcome};
use crate::cluster::SharedCluster;
use crate::duration::format_duration;
use crate::invariants::{self, Failover, UnavailabilityWindow};
use crate::ledger::Ledger;
use crate::metrics;
use crate::partial;
use crate::scenario::{
    Action, ApplySource, Assertion, BackendKind, CaptureAction, Check, Fault, Invariant, ObjectRef,
    Refutation, ResourceCheck, Scenario, Step, WorkloadCheck,
};
use crate::template;
use crate::workload::{self, History, Millis, SharedHistory, WritabilitySample};

/// How long the fixture's groups get to become Healthy.
pub const FIXTURE_HEALTHY_WITHIN: Duration = Duration::from_secs(300);

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimelineKind {
    Step,
    Fault,
    Undo,
    Status,
    Event,
    Metric,
    Workload,
    Note,
}

/// One line of the run's story, for reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// Milliseconds since the scenario started (simulated on sim).
    pub at_ms: u64,
    pub kind: TimelineKind,
    pub text: String,
}

impl std::fmt::Display for TimelineEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = serde_json::to_value(self.kind).ok();
        let kind = kind.as_ref().and_then(Value::as_str).unwrap_or("?");
        write!(
            f,
            "+{:>9.3}s {:<8} {}",
            self.at_ms as f64 / 1000.0,
            kind,
            self.text
        )
    }
}

/// Why a scenario failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// `steps[3] (line 21): assert MysqlFailoverGroup/playground`, or `invariant ...`.
    pub step: String,
    pub message: String,
    /// Expected fragment, actual object and diff, or the evidence of a refutation.
    pub detail: String,
    pub last_error: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: {}", self.step, self.message)?;
        if !self.detail.is_empty() {
            writeln!(f, "{}", self.detail.trim_end())?;
        }
        if let Some(e) = &self.last_error {
            writeln!(f, "last error while polling: {e}")?;
        }
        Ok(())
    }
}

/// Workload figures for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkloadSummary {
    pub attempts: u64,
    pub acknowledged: u64,
    pub unavailability_windows: Vec<UnavailabilityWindow>,
    pub longest_unavailability_ms: Option<i64>,
    pub failovers: Vec<Failover>,
    /// `None` when not checked (no invariant, or no counter).
    pub acknowledged_writes_lost: Option<Vec<u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioOutcome {
    pub id: String,
    pub backend: BackendKind,
    pub backend_description: String,
    pub seed: Option<u64>,
    /// All failures, first one first (steps stop at the first; finally and invariants add).
    pub failures: Vec<Failure>,
    pub wall_ms: u64,
    pub simulated_ms: u64,
    pub timeline: Vec<TimelineEntry>,
    pub workload: Option<WorkloadSummary>,
    pub ledger: PathBuf,
}

impl ScenarioOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Recovery time of each failover the workload saw, for the summary table.
    pub fn rto_ms(&self) -> Vec<i64> {
        self.workload
            .as_ref()
            .map(|w| w.failovers.iter().map(|f| f.rto_ms).collect())
            .unwrap_or_default()
    }
}

/// The result of one look at a check.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The condition holds; the text is what was seen.
    Holds(String),
    /// It does not (yet); the text explains why: mismatches, diff, actual.
    NotYet(String),
    /// Looking failed (API error, scrape error...); transient while polling.
    Error(String),
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
}

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
    let mut outcome = ScenarioOutcome {
        id: scenario.id.clone(),
        backend: backend.kind(),
        backend_description: backend.describe(),
        seed: config.seed,
        failures: Vec::new(),
        wall_ms: 0,
        simulated_ms: 0,
        timeline: Vec::new(),
        workload: None,
        ledger: config.ledger_path.clone(),
    };
    let ledger = match Ledger::create(
        &config.ledger_path,
        backend.kind(),
        &scenario.id,
        config.seed,
        clock.now().to_string(),
    ) {
        Ok(l) => l,
        Err(e) => {
            outcome.failures.push(Failure {
                step: "setup".into(),
                message: format!("cannot create the fault ledger: {e}"),
                detail: String::new(),
                last_error: None,
            });
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
    };
    let (failures, workload) = run.execute().await;
    outcome.failures = failures;
    outcome.workload = workload;
    outcome.timeline = run.timeline.lock().map(|t| t.clone()).unwrap_or_default();
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
            failures.push(Failure {
                step: "setup".into(),
                message: format!(
                    "scenario runs only on {:?}, not on {}",
                    self.scenario.backends,
                    self.backend.kind()
                ),
                detail: String::new(),
                last_error: None,
            });
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
            Some(spec) => match self.backend.counter() {
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
                    failures.push(Failure {
                        step: "workload".into(),
                        message: format!(
                            "the {} backend has no counter client, so this scenario's workload cannot run",
                            self.backend.kind()
                        ),
                        detail: String::new(),
                        last_error: None,
                    });
                    None
                }
            },
            None => None,
        };
        self.workload_target = workload_target.clone();
        let observer = {
            let backend = self.backend.clone();
            let history = self.history.clone();
            let poll = self.config.poll_interval;
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut last: BTreeMap<String, bool> = BTreeMap::new();
                loop {
                    if let Some(changes) = backend.writability_changes() {
                        // The backend saw every change at its instant: take them as they are.
                        if let Ok(mut h) = history.lock() {
                            h.writability.extend(changes);
                        }
                    } else if let Ok(Some(sites)) = backend.writability().await {
                        let at = workload::now_ms(&backend.clock());
                        if let Ok(mut h) = history.lock() {
                            for (site, writable) in sites {
                                if last.get(&site) != Some(&writable) {
                                    h.writability.push(WritabilitySample {
                                        at,
                                        site: site.clone(),
                                        writable,
                                    });
                                    last.insert(site, writable);
                                }
                            }
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = stop.changed() => return,
                    }
                }
            })
        };

        if failures.is_empty() {
            let steps = self.run_steps();
            match tokio::time::timeout(self.scenario.timeout.as_duration(), steps).await {
                Ok(Some(f)) => failures.push(f),
                Ok(None) => {}
                Err(_) => failures.push(Failure {
                    step: "scenario".into(),
                    message: format!("timed out after {}", self.scenario.timeout),
                    detail: String::new(),
                    last_error: None,
                }),
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
        if let Some(changes) = self.backend.writability_changes()
            && let Ok(mut h) = self.history.lock()
        {
            h.writability.extend(changes);
        }
        self.recover_leftovers(&mut failures).await;
        let summary = self.check_invariants(workload_target, &mut failures).await;
        (failures, summary)
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
                        let _ = trip_tx.send(Failure {
                            step: label,
                            message: format!("refuted condition became true: {}", check.summary()),
                            detail: seen,
                            last_error: None,
                        });
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
                        return Some(Failure {
                            step: label,
                            message: format!("refuted condition became true: {}", check.summary()),
                            detail: seen,
                            last_error: None,
                        });
                    }
                }
                result
            }
            _ = watch => trip_rx.recv().await,
        }
    }

    async fn run_step(&self, step: &Step) -> Result<(), Failure> {
        let fail = |message: String| Failure {
            step: String::new(),
            message,
            detail: String::new(),
            last_error: None,
        };
        match &step.action {
            Action::Apply(source) => {
                let manifests = match source {
                    ApplySource::Inline(m) => vec![m.clone()],
                    ApplySource::File(path) => {
                        load_manifests(&self.scenario.base_dir().join(path)).map_err(fail)?
                    }
                };
                for m in &manifests {
                    self.cluster
                        .apply(m, &self.namespace)
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                }
                Ok(())
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
            Action::Fault(fault) => self.inject(step, fault).await.map_err(fail),
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
                return Err(Failure {
                    step: String::new(),
                    message: format!(
                        "capture {}: `{}` yielded no string or number within {}",
                        c.name, c.value, c.within
                    ),
                    detail: last_explanation,
                    last_error,
                });
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    async fn inject(&self, step: &Step, fault: &Fault) -> Result<(), String> {
        if let Fault::Recover(_) = fault {
            return self.recover_all().await;
        }
        let plan = self
            .backend
            .plan_fault(fault, &self.namespace)
            .await
            .map_err(|e| e.to_string())?;
        let at = self.backend.clock().now().to_string();
        let seq = self
            .ledger
            .lock()
            .map_err(|_| "ledger lock poisoned".to_owned())?
            .record_fault(&step.label(), fault, plan.undo.clone(), at)
            .map_err(|e| e.to_string())?;
        self.note(
            TimelineKind::Fault,
            format!("#{seq} {fault}: {}", ops_summary(&plan.apply)),
        );
        self.backend
            .execute(&plan.apply)
            .await
            .map_err(|e| e.to_string())
    }

    /// Undoes every fault still in effect, newest first.
    async fn recover_all(&self) -> Result<(), String> {
        let pending = self
            .ledger
            .lock()
            .map(|l| l.pending_newest_first())
            .unwrap_or_default();
        let mut errors = Vec::new();
        for entry in pending {
            match self.backend.execute(&entry.undo).await {
                Ok(()) => {
                    let at = self.backend.clock().now().to_string();
                    if let Ok(mut l) = self.ledger.lock()
                        && let Err(e) = l.mark_undone(entry.seq, at)
                    {
                        errors.push(e.to_string());
                    }
                    self.note(
                        TimelineKind::Undo,
                        format!(
                            "#{} {}: {}",
                            entry.seq,
                            entry.fault,
                            ops_summary(&entry.undo)
                        ),
                    );
                }
                Err(e) => errors.push(format!("undo #{} {}: {e}", entry.seq, entry.fault)),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    async fn recover_leftovers(&self, failures: &mut Vec<Failure>) {
        let left = self
            .ledger
            .lock()
            .map(|l| l.pending_newest_first().len())
            .unwrap_or(0);
        if left == 0 {
            return;
        }
        self.note(
            TimelineKind::Note,
            format!("{left} fault(s) still in effect after the run; undoing them"),
        );
        if let Err(e) = self.recover_all().await {
            failures.push(Failure {
                step: "recover".into(),
                message: format!("could not undo every fault: {e}"),
                detail: format!(
                    "the ledger {} still lists them; run `bloodraven-chaos recover --ledger {}`",
                    self.config.ledger_path.display(),
                    self.config.ledger_path.display()
                ),
                last_error: None,
            });
        }
    }

    async fn apply_fixture(&self, name: &str) -> Result<String, Failure> {
        let path = fixture_path(self.scenario, name);
        let fail = |message: String| Failure {
            step: format!("fixture {name}"),
            message,
            detail: String::new(),
            last_error: None,
        };
        let manifests = load_manifests(&path).map_err(fail)?;
        let namespace = fixture_namespace(&manifests);
        for m in &manifests {
            self.cluster
                .apply(m, &namespace)
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        self.note(
            TimelineKind::Note,
            format!(
                "fixture {name}: applied {} object(s) in namespace {namespace}",
                manifests.len()
            ),
        );
        for m in manifests
            .iter()
            .filter(|m| m.get("kind").and_then(Value::as_str) == Some("MysqlFailoverGroup"))
        {
            let Some(group) = m.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let healthy = Assertion {
                check: Check::Resource(ResourceCheck {
                    resource: ObjectRef {
                        kind: "MysqlFailoverGroup".into(),
                        name: group.into(),
                        // `self.namespace` is set only once the fixture is in place.
                        namespace: Some(
                            m.pointer("/metadata/namespace")
                                .and_then(Value::as_str)
                                .unwrap_or(&namespace)
                                .to_owned(),
                        ),
                        api_version: None,
                    },
                    partial: BTreeMap::from([(
                        "status".to_owned(),
                        serde_json::json!({"health": "Healthy"}),
                    )]),
                    where_: Vec::new(),
                }),
                within: crate::duration::ScenarioDuration(FIXTURE_HEALTHY_WITHIN),
                hold: None,
            };
            self.assert(&healthy).await.map_err(|mut f| {
                f.step = format!("fixture {name}: waiting for {group} to be Healthy");
                f
            })?;
        }
        Ok(namespace)
    }

    async fn assert(&self, a: &Assertion) -> Result<(), Failure> {
        let polling = self.assert_by_polling(a);
        let Check::Resource(r) = &a.check else {
            return polling.await;
        };
        // Polls and watches at once: whichever sees the object satisfy the check first.
        // `biased` keeps the select from drawing a random number (determinism on sim).
        tokio::select! {
            biased;
            result = polling => result,
            () = self.watch_until_holds(r) => match a.hold {
                None => Ok(()),
                Some(hold) => self.hold(&a.check, hold.as_duration()).await,
            },
        }
    }

    async fn assert_by_polling(&self, a: &Assertion) -> Result<(), Failure> {
        let deadline = Instant::now() + a.within.as_duration();
        let mut last_explanation = String::from("(never looked)");
        let mut last_error = None;
        loop {
            match self.probe(&a.check).await {
                Probe::Holds(_) => match a.hold {
                    None => return Ok(()),
                    Some(hold) => return self.hold(&a.check, hold.as_duration()).await,
                },
                Probe::NotYet(why) => last_explanation = why,
                Probe::Error(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                return Err(Failure {
                    step: String::new(),
                    message: format!("{} did not hold within {}", a.check.summary(), a.within),
                    detail: last_explanation,
                    last_error,
                });
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    async fn hold(&self, check: &Check, hold: Duration) -> Result<(), Failure> {
        let start = Instant::now();
        let mut last_error = None;
        while start.elapsed() < hold {
            tokio::time::sleep(self.config.poll_interval).await;
            match self.probe(check).await {
                Probe::Holds(_) => {}
                Probe::Error(e) => last_error = Some(e),
                Probe::NotYet(why) => {
                    return Err(Failure {
                        step: String::new(),
                        message: format!(
                            "{} held for {} but not for the required {}",
                            check.summary(),
                            format_duration(start.elapsed()),
                            format_duration(hold)
                        ),
                        detail: why,
                        last_error,
                    });
                }
            }
        }
        Ok(())
    }

    async fn refute(&self, r: &Refutation) -> Result<(), Failure> {
        let during = r.during.map(|d| d.as_duration()).unwrap_or_default();
        let start = Instant::now();
        loop {
            if let Probe::Holds(seen) = self.probe(&r.check).await {
                return Err(Failure {
                    step: String::new(),
                    message: format!(
                        "refuted condition became true after {}: {}",
                        format_duration(start.elapsed()),
                        r.check.summary()
                    ),
                    detail: seen,
                    last_error: None,
                });
            }
            if start.elapsed() >= during {
                return Ok(());
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// One look at a check.
    pub(crate) async fn probe(&self, check: &Check) -> Probe {
        match check {
            Check::Resource(r) => self.probe_resource(r).await,
            Check::Events(e) => {
                let events = match self.cluster.events(&e.for_object, &self.namespace).await {
                    Ok(ev) => ev,
                    Err(err) => return Probe::Error(err.to_string()),
                };
                let new: Vec<&Value> = events
                    .iter()
                    .filter(|ev| event_time_ms(ev) >= self.started_wall_ms - 1000)
                    .collect();
                for ev in &new {
                    let key = ev
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned();
                    let count = ev.get("count").and_then(Value::as_i64).unwrap_or(1);
                    let first = self
                        .seen_events
                        .lock()
                        .map(|mut s| s.insert(key, count) != Some(count))
                        .unwrap_or(false);
                    if first {
                        self.note(TimelineKind::Event, describe_event(ev));
                    }
                }
                let regex = e.message.as_deref().map(regex::Regex::new).transpose();
                let regex = match regex {
                    Ok(r) => r,
                    Err(err) => return Probe::Error(format!("bad message regex: {err}")),
                };
                let matching = new.iter().find(|ev| {
                    let field = |k: &str| ev.get(k).and_then(Value::as_str);
                    e.reason
                        .as_deref()
                        .is_none_or(|r| field("reason") == Some(r))
                        && e.event_type
                            .as_deref()
                            .is_none_or(|t| field("type") == Some(t))
                        && regex
                            .as_ref()
                            .is_none_or(|re| re.is_match(field("message").unwrap_or("")))
                });
                match matching {
                    Some(ev) => Probe::Holds(format!("event: {}", describe_event(ev))),
                    None => {
                        let wanted = serde_json::to_value(e)
                            .map(|v| partial::to_yaml(&v))
                            .unwrap_or_default();
                        let seen: String = if new.is_empty() {
                            "    (no events since the scenario started)\n".into()
                        } else {
                            new.iter()
                                .map(|ev| format!("    {}\n", describe_event(ev)))
                                .collect()
                        };
                        Probe::NotYet(format!(
                            "expected an event:\n{}events seen for {}:\n{seen}",
                            partial::indent(&wanted),
                            e.for_object
                        ))
                    }
                }
            }
            Check::Metric(m) => {
                let body = match self.backend.scrape_metrics().await {
                    Ok(b) => b,
                    Err(e) => return Probe::Error(e.to_string()),
                };
                let samples = match metrics::parse(&body) {
                    Ok(s) => s,
                    Err(e) => return Probe::Error(e.to_string()),
                };
                let (ok, reading) = metrics::holds(&samples, m);
                let labels = m
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(",");
                let seen = match reading.value {
                    Some(v) => format!(
                        "{}{{{labels}}} = {v} (sum of {} series)",
                        m.name, reading.series
                    ),
                    None => format!("{}{{{labels}}}: no such series", m.name),
                };
                self.note(TimelineKind::Metric, seen.clone());
                if ok {
                    Probe::Holds(seen)
                } else {
                    Probe::NotYet(format!("want {} {} {}, got {seen}", m.name, m.op, m.value))
                }
            }
            Check::Workload(w) => self.probe_workload(w).await,
        }
    }

    async fn probe_resource(&self, r: &ResourceCheck) -> Probe {
        let object = match self.cluster.get(&r.resource, &self.namespace).await {
            Ok(Some(o)) => o,
            Ok(None) => return Probe::NotYet(format!("{} does not exist", r.resource)),
            Err(e) => return Probe::Error(e.to_string()),
        };
        self.record_status_change(&r.resource, &object);
        self.judge_resource(r, &object)
    }

    /// Watches the object and returns once a version of it satisfies the check. A
    /// state that lasts less than a poll interval (a split brain the operator ends in
    /// the reconcile after the one that saw it) is visible only this way. Never
    /// returns when the cluster cannot watch; a watch that fails is reopened.
    async fn watch_until_holds(&self, r: &ResourceCheck) {
        use futures::StreamExt;
        let mut from = String::from("0");
        loop {
            match self
                .cluster
                .watch(&r.resource, &self.namespace, &from)
                .await
            {
                None => return std::future::pending().await,
                Some(Err(_)) => from = String::from("0"),
                Some(Ok(mut versions)) => {
                    while let Some(version) = versions.next().await {
                        let Ok(object) = version else {
                            // An expired resourceVersion, say: start again from now.
                            from = String::from("0");
                            break;
                        };
                        if let Some(rv) = object
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                        {
                            from = rv.to_owned();
                        }
                        self.record_status_change(&r.resource, &object);
                        if let Probe::Holds(_) = self.judge_resource(r, &object) {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// Whether `object` satisfies the resource check, and if not, why.
    fn judge_resource(&self, r: &ResourceCheck, object: &Value) -> Probe {
        let captured = self.captured.lock().map(|c| c.clone()).unwrap_or_default();
        let mut why = String::new();
        for (field, expected) in &r.partial {
            let expected = &match template::render_strings(expected, &captured) {
                Ok(rendered) => rendered,
                Err(e) => return Probe::Error(format!("{field}: {e}")),
            };
            let actual = object.get(field);
            let ok = actual.is_some_and(|a| partial::matches(expected, a));
            if !ok {
                why.push_str(&format!(
                    "expected {field} (PARTIAL):\n{}",
                    partial::indent(&partial::to_yaml(expected))
                ));
                why.push_str(&partial::explain(field, expected, actual));
            }
        }
        for expr in &r.where_ {
            match cel_where::evaluate(expr, object) {
                WhereOutcome::True => {}
                WhereOutcome::False => why.push_str(&format!("where `{expr}` is false\n")),
                WhereOutcome::Error(e) => why.push_str(&format!("where `{expr}`: {e}\n")),
            }
        }
        let shown = shown_object(object);
        if why.is_empty() {
            Probe::Holds(format!(
                "{} matched; actual object:\n{}",
                r.resource,
                partial::indent(&partial::to_yaml(&shown))
            ))
        } else {
            why.push_str(&format!(
                "actual {}:\n{}",
                r.resource,
                partial::indent(&partial::to_yaml(&shown))
            ));
            Probe::NotYet(why)
        }
    }

    fn record_status_change(&self, object: &ObjectRef, value: &Value) {
        let status = value.get("status").cloned().unwrap_or(Value::Null);
        let key = object.to_string();
        let previous = self
            .last_status
            .lock()
            .ok()
            .and_then(|mut m| m.insert(key.clone(), status.clone()));
        if previous.as_ref() == Some(&status) {
            return;
        }
        let mut changes = Vec::new();
        leaf_changes(
            "status",
            previous.as_ref().unwrap_or(&Value::Null),
            &status,
            &mut changes,
        );
        let text = if changes.len() > 6 {
            format!(
                "{key}: {} status fields changed ({}, ...)",
                changes.len(),
                changes[..6].join(", ")
            )
        } else {
            format!("{key}: {}", changes.join(", "))
        };
        self.note(TimelineKind::Status, text);
    }

    async fn probe_workload(&self, w: &WorkloadCheck) -> Probe {
        let snapshot = self.history.lock().map(|h| h.clone()).unwrap_or_default();
        let now = self.now_ms();
        let mut why = Vec::new();
        let acked = snapshot.acknowledged().count() as u64;
        if let Some(want) = w.progressing {
            let recent = snapshot
                .acknowledged()
                .any(|a| a.completed_at >= now - 5_000);
            if recent != want {
                why.push(format!(
                    "progressing: want {want}, last ack {}",
                    last_ack_age(&snapshot, now)
                ));
            }
        }
        if let Some(min) = w.min_acknowledged
            && acked < min
        {
            why.push(format!("minAcknowledged: want >= {min}, got {acked}"));
        }
        if let Some(max) = w.max_write_unavailable {
            let windows = invariants::unavailability_windows(&snapshot.writes, now);
            if let Some(longest) = invariants::longest_unavailability(&windows)
                && longest.duration_ms()
                    > i64::try_from(max.as_duration().as_millis()).unwrap_or(i64::MAX)
            {
                why.push(format!(
                    "maxWriteUnavailable: want <= {max}, longest window {} ms",
                    longest.duration_ms()
                ));
            }
        }
        if let Some(want) = w.failovers {
            let got = invariants::failovers(&snapshot.writes).len() as u64;
            if got != want {
                why.push(format!("failovers: want {want}, got {got}"));
            }
        }
        if let Some(want) = w.acknowledged_writes_lost {
            let Some(target) = self.workload_target.clone() else {
                return Probe::Error("this scenario runs no counter workload".into());
            };
            match target.committed().await {
                Ok(committed) => {
                    let lost = invariants::acknowledged_writes_lost(&snapshot, &committed);
                    if lost.len() as u64 != want {
                        why.push(format!(
                            "acknowledgedWritesLost: want {want}, got {} ({:?})",
                            lost.len(),
                            lost
                        ));
                    }
                }
                Err(e) => return Probe::Error(format!("reading committed increments: {e}")),
            }
        }
        let seen = format!("{} attempts, {acked} acknowledged", snapshot.writes.len());
        if why.is_empty() {
            Probe::Holds(seen)
        } else {
            Probe::NotYet(format!("{}\n({seen})", why.join("\n")))
        }
    }

    async fn check_invariants(
        &self,
        target: Option<Arc<dyn workload::CounterTarget>>,
        failures: &mut Vec<Failure>,
    ) -> Option<WorkloadSummary> {
        let history = self.history.lock().map(|h| h.clone()).unwrap_or_default();
        let end = self.now_ms();
        let invariant_failure = |inv: Invariant, message: String, detail: String| Failure {
            step: format!("invariant {inv}"),
            message,
            detail,
            last_error: None,
        };
        let mut summary = None;
        if target.is_some() || !history.writes.is_empty() {
            let windows = invariants::unavailability_windows(&history.writes, end);
            summary = Some(WorkloadSummary {
                attempts: history.writes.len() as u64,
                acknowledged: history.acknowledged().count() as u64,
                longest_unavailability_ms: invariants::longest_unavailability(&windows)
                    .map(|w| w.duration_ms()),
                unavailability_windows: windows,
                failovers: invariants::failovers(&history.writes),
                acknowledged_writes_lost: None,
            });
        }
        for inv in &self.scenario.invariants {
            match inv {
                Invariant::SingleWriter => {
                    if history.writability.is_empty() {
                        failures.push(invariant_failure(
                            *inv,
                            format!(
                                "cannot be checked: the {} backend reported no site writability",
                                self.backend.kind()
                            ),
                            String::new(),
                        ));
                        continue;
                    }
                    let violations = invariants::single_writer(&history, end);
                    if !violations.is_empty() {
                        failures.push(invariant_failure(
                            *inv,
                            format!(
                                "{} violation(s): two sites writable at once",
                                violations.len()
                            ),
                            violations.iter().map(|v| format!("  {v}\n")).collect(),
                        ));
                    }
                }
                Invariant::NoAcknowledgedWriteLost => {
                    let Some(target) = &target else {
                        failures.push(invariant_failure(
                            *inv,
                            "cannot be checked: no counter workload ran".into(),
                            String::new(),
                        ));
                        continue;
                    };
                    match target.committed().await {
                        Ok(committed) => {
                            let lost = invariants::acknowledged_writes_lost(&history, &committed);
                            if !lost.is_empty() {
                                failures.push(invariant_failure(
                                    *inv,
                                    format!(
                                        "{} acknowledged increment(s) missing on the final primary",
                                        lost.len()
                                    ),
                                    format!("  missing: {}\n", invariants::as_ranges(&lost)),
                                ));
                            }
                            if let Some(s) = summary.as_mut() {
                                s.acknowledged_writes_lost = Some(lost);
                            }
                        }
                        Err(e) => failures.push(invariant_failure(
                            *inv,
                            format!("cannot read the final primary: {e}"),
                            String::new(),
                        )),
                    }
                }
            }
        }
        summary
    }
}

/// The object as shown in failures: without managedFields, which only add noise.
fn shown_object(object: &Value) -> Value {
    let mut shown = object.clone();
    if let Some(meta) = shown.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    shown
}

fn last_ack_age(history: &History, now: Millis) -> String {
    match history.acknowledged().last() {
        Some(a) => format!("{} ms ago", now - a.completed_at),
        None => "never".into(),
    }
}

fn leaf_changes(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                leaf_changes(
                    &format!("{path}.{k}"),
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a == b => {}
        (Value::Null, Value::Object(b)) => {
            for (k, v) in b {
                leaf_changes(&format!("{path}.{k}"), &Value::Null, v, out);
            }
        }
        (a, b) => out.push(format!("{path}: {} -> {}", compact(a), compact(b))),
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) => s.clone(),
        other => {
            let s = other.to_string();
            if s.len() > 60 {
                format!("{}...", &s[..57])
            } else {
                s
            }
        }
    }
}

fn describe_event(ev: &Value) -> String {
    let f = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("");
    format!("{} {}: {}", f("type"), f("reason"), f("message"))
}

/// The latest time an Event says it happened, in Unix ms (0 when it says nothing).
fn event_time_ms(ev: &Value) -> Millis {
    ["lastTimestamp", "eventTime", "firstTimestamp"]
        .iter()
        .filter_map(|k| ev.get(*k).and_then(Value::as_str))
        .chain(
            ev.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str),
        )
        .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .max()
        .unwrap_or(0)
}

fn ops_summary(ops: &[Value]) -> String {
    if ops.is_empty() {
        return "(no operations)".into();
    }
    ops.iter()
        .map(|op| op.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads a (possibly multi-document) manifest file.
pub fn load_manifests(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `fixtures/<name>.yaml` next to the scenario file.
pub fn fixture_path(scenario: &Scenario, name: &str) -> PathBuf {
    scenario
        .base_dir()
        .join("fixtures")
        .join(format!("{name}.yaml"))
}

/// Whether the scenario's fixture holds a MysqlFailoverGroup, which only the operator
/// makes Healthy (a backend that can install the operator does so for it).
pub fn fixture_needs_operator(scenario: &Scenario) -> Result<bool, String> {
    let Some(name) = &scenario.fixture else {
        return Ok(false);
    };
    let manifests = load_manifests(&fixture_path(scenario, name))?;
    Ok(manifests
        .iter()
        .any(|m| m.get("kind").and_then(Value::as_str) == Some("MysqlFailoverGroup")))
}

/// The fixture's namespace: its Namespace object, else the first namespaced object's.
pub fn fixture_namespace(manifests: &[Value]) -> String {
    manifests
        .iter()
        .find(|m| m.get("kind").and_then(Value::as_str) == Some("Namespace"))
        .and_then(|m| m.pointer("/metadata/name"))
        .or_else(|| {
            manifests
                .iter()
                .find_map(|m| m.pointer("/metadata/namespace"))
        })
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned()
}

/// Refutes without `during`, watched until the steps end.
mod monitors {
    use std::sync::Mutex;

    use crate::scenario::Check;

    #[derive(Default)]
    pub struct Monitors(Mutex<Vec<(String, Check)>>);

    impl Monitors {
        pub fn add(&self, label: String, check: Check) {
            if let Ok(mut m) = self.0.lock() {
                m.push((label, check));
            }
        }

        pub fn snapshot(&self) -> Vec<(String, Check)> {
            self.0.lock().map(|m| m.clone()).unwrap_or_default()
        }
    }
}
