//! What a run produces: the verdict (failures, first first), the timeline, and the
//! workload figures reports print.

#[allow(clippy::wildcard_imports)]
use super::*;

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
    Alert,
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

impl Failure {
    /// A failure of `step` with no detail and no last error.
    pub fn new(step: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            step: step.into(),
            message: message.into(),
            detail: String::new(),
            last_error: None,
        }
    }

    /// A failure before the scenario's first step (backend, ledger, fixture).
    pub fn setup(message: impl Into<String>) -> Self {
        Self::new("setup", message)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn with_last_error(mut self, last_error: Option<String>) -> Self {
        self.last_error = last_error;
        self
    }
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
    /// The chart's alerts that would have fired during the run (see `crate::alerts`).
    pub alerts: Vec<crate::alerts::FiredAlert>,
    pub ledger: PathBuf,
}

impl ScenarioOutcome {
    /// The outcome of a scenario that has not run (yet): no failures, no time spent.
    pub fn not_run(
        id: impl Into<String>,
        backend: BackendKind,
        backend_description: String,
        seed: Option<u64>,
        ledger: PathBuf,
    ) -> Self {
        Self {
            id: id.into(),
            backend,
            backend_description,
            seed,
            failures: Vec::new(),
            wall_ms: 0,
            simulated_ms: 0,
            timeline: Vec::new(),
            workload: None,
            alerts: Vec::new(),
            ledger,
        }
    }

    /// This outcome failed in setup with `message`.
    pub fn setup_failed(mut self, message: impl Into<String>) -> Self {
        self.failures.push(Failure::setup(message));
        self
    }

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
