//! The scenario model and its parser. A scenario file (`scenarios/NN-name.yaml`) is
//! parsed in two passes: serde-saphyr checks the structure (unknown keys, wrong types,
//! unknown fault kinds, bad durations), then `validate` checks what types cannot say
//! (exactly one action per step, which keys go with which check). Every error names
//! file:line:column and the YAML path of the offending key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::duration::ScenarioDuration;
use crate::template::{self, Template};

/// The whole-scenario timeout when a scenario does not set one.
pub const DEFAULT_TIMEOUT: ScenarioDuration = ScenarioDuration::from_secs(600);
/// How long an `assert` polls when it does not say `within`.
pub const DEFAULT_WITHIN: ScenarioDuration = ScenarioDuration::from_secs(60);

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// The file name without `.yaml`, e.g. `02-kill-site-iad`.
    pub id: String,
    pub path: PathBuf,
    pub description: String,
    pub tags: Vec<String>,
    pub backends: Vec<BackendKind>,
    pub timeout: ScenarioDuration,
    pub fixture: Option<String>,
    pub workload: Option<WorkloadSpec>,
    pub invariants: Vec<Invariant>,
    pub steps: Vec<Step>,
    pub finally: Vec<Step>,
}

impl Scenario {
    pub fn supports(&self, backend: BackendKind) -> bool {
        self.backends.contains(&backend)
    }

    /// The directory relative paths in the scenario (`apply: {file: ...}`) resolve against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }
}

/// Where a scenario can run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The deterministic simulated cluster (bloodraven-sim).
    Sim,
    /// A live k3d cluster built by playground/setup.sh.
    K3d,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Sim => "sim",
            BackendKind::K3d => "k3d",
        })
    }
}

/// A named step with exactly one action, and where it was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub name: Option<String>,
    pub action: Action,
    /// `file:line` of the step, for failure messages.
    pub line: u64,
}

impl Step {
    /// A one-line label for progress output and reports.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} ({name})", self.action.summary()),
            None => self.action.summary(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Apply(ApplySource),
    Patch(PatchAction),
    Annotate(AnnotateAction),
    Delete(ObjectRef),
    Fault(Fault),
    Assert(Assertion),
    Refute(Refutation),
    Wait(ScenarioDuration),
    Capture(CaptureAction),
}

impl Action {
    pub fn summary(&self) -> String {
        match self {
            Action::Apply(ApplySource::File(path)) => format!("apply {}", path.display()),
            Action::Apply(ApplySource::Inline(manifest)) => {
                let kind = manifest.get("kind").and_then(Value::as_str).unwrap_or("?");
                let name = manifest.pointer("/metadata/name").and_then(Value::as_str);
                format!("apply {kind}/{}", name.unwrap_or("?"))
            }
            Action::Patch(p) => format!("patch {}", p.resource),
            Action::Annotate(a) => format!("annotate {}", a.resource),
            Action::Delete(r) => format!("delete {r}"),
            Action::Fault(f) => format!("fault {f}"),
            Action::Assert(a) => format!("assert {}", a.check.summary()),
            Action::Refute(r) => format!("refute {}", r.check.summary()),
            Action::Wait(d) => format!("wait {d}"),
            Action::Capture(c) => format!("capture {} from {}", c.name, c.resource),
        }
    }
}

/// A manifest to apply: inline, or `{file: path}` relative to the scenario file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ApplySource {
    Inline(Value),
    File(PathBuf),
}

/// `{kind: MysqlFailoverGroup, name: playground}`; the namespace defaults to the
/// fixture's namespace, `apiVersion` is needed only when a kind name is ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectRef {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{} -n {ns}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchAction {
    pub resource: ObjectRef,
    /// A JSON merge patch (RFC 7386).
    pub merge: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnotateAction {
    pub resource: ObjectRef,
    /// Annotations to set, values with `${name}` references to captured values;
    /// `null` removes one.
    pub set: BTreeMap<String, Option<Template>>,
}

/// `{resource: REF, value: CEL, as: name, within?}`: polls the object until the CEL
/// expression (with `self` bound to it) yields a string or a number, and keeps that as
/// `name` for later `${name}` references.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureAction {
    pub resource: ObjectRef,
    pub value: String,
    #[serde(rename = "as")]
    pub name: String,
    pub within: ScenarioDuration,
}

/// A site name as the group spells it (`iad`, `pdx`).
pub type Site = String;

/// Every fault a scenario can inject. Each has an undo, written to the ledger before
/// the fault is applied (see `ledger`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Delete every pod of the site (MySQL, Dragonfly, sidecar).
    KillSite(Site),
    /// Delete one component's pod at a site.
    KillPod { site: Site, component: Component },
    /// Delete the site's Dragonfly pod (same as kill-pod with component dragonfly).
    KillDragonfly(Site),
    /// Cordon the site's node(s) and evict the site's pods from them.
    Cordon(Site),
    /// Uncordon the site's node(s).
    Uncordon(Site),
    /// Isolate the site from everything, control plane included.
    NetworkPartition(Site),
    /// Cut traffic between two sites; both still reach the control plane.
    Partition { between: [Site; 2] },
    /// The site's node dies (not just its pods) until recovered.
    NodeCrash(Site),
    /// Commit transactions on the site bypassing read-only, as a SUPER user would.
    WriteDivergent { site: Site, transactions: u32 },
    /// Delay the site's replication applier by `seconds`.
    ReplicationDelay { site: Site, seconds: u32 },
    /// Make the site's mysqld writable behind the operator's back, as root would
    /// (`SET GLOBAL super_read_only=OFF, read_only=OFF`): a second writable site.
    ForceWritable(Site),
    /// Freeze the site's fencing sidecar (SIGSTOP; the cgroup freezer in the
    /// simulation): mysqld runs on with nobody beside it to fence it. Undone by thawing
    /// it (SIGCONT); a restart of the container also ends it.
    DisableSidecar(Site),
    /// Delete the operator's pod.
    KillOperator {},
    /// Undo faults recorded in the ledger, newest first.
    Recover(RecoverScope),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillSite(s) => write!(f, "kill-site {s}"),
            Fault::KillPod { site, component } => write!(f, "kill-pod {site}/{component}"),
            Fault::KillDragonfly(s) => write!(f, "kill-dragonfly {s}"),
            Fault::Cordon(s) => write!(f, "cordon {s}"),
            Fault::Uncordon(s) => write!(f, "uncordon {s}"),
            Fault::NetworkPartition(s) => write!(f, "network-partition {s}"),
            Fault::Partition { between: [a, b] } => write!(f, "partition {a}<->{b}"),
            Fault::NodeCrash(s) => write!(f, "node-crash {s}"),
            Fault::WriteDivergent { site, transactions } => {
                write!(f, "write-divergent {site} x{transactions}")
            }
            Fault::ReplicationDelay { site, seconds } => {
                write!(f, "replication-delay {site} {seconds}s")
            }
            Fault::ForceWritable(s) => write!(f, "force-writable {s}"),
            Fault::DisableSidecar(s) => write!(f, "disable-sidecar {s}"),
            Fault::KillOperator {} => write!(f, "kill-operator"),
            Fault::Recover(RecoverScope::All) => write!(f, "recover all"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Mysql,
    Dragonfly,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::Mysql => "mysql",
            Component::Dragonfly => "dragonfly",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoverScope {
    All,
}

/// What an assert/refute looks at.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Resource(ResourceCheck),
    Events(EventCheck),
    Metric(MetricCheck),
    Workload(WorkloadCheck),
}

impl Check {
    pub fn summary(&self) -> String {
        match self {
            Check::Resource(r) => format!("{}", r.resource),
            Check::Events(e) => {
                let mut s = format!("event for {}", e.for_object);
                if let Some(reason) = &e.reason {
                    s.push_str(&format!(" reason={reason}"));
                }
                s
            }
            Check::Metric(m) => format!("metric {} {} {}", m.name, m.op, m.value),
            Check::Workload(_) => "workload".to_owned(),
        }
    }
}

/// `{resource: REF, status: PARTIAL, spec: PARTIAL, metadata: PARTIAL, where: [CEL]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceCheck {
    pub resource: ObjectRef,
    /// Top-level field name (`status`, `spec`, `metadata`) -> expected fragment.
    pub partial: BTreeMap<String, Value>,
    #[serde(rename = "where")]
    pub where_: Vec<String>,
}

/// `{for: REF, reason: X, type: Warning, message: REGEX}`: an Event about the object,
/// new since the scenario started, that matches every listed field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventCheck {
    #[serde(rename = "for")]
    pub for_object: ObjectRef,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// A regular expression searched for in the Event's message.
    #[serde(default)]
    pub message: Option<String>,
}

/// `{name, labels, op, value}` against the operator's /metrics. All series whose labels
/// include the listed ones are summed (so `{kind: emergency}` counts every such series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricCheck {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub op: CompareOp,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CompareOp {
    #[default]
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl CompareOp {
    pub fn holds(self, actual: f64, expected: f64) -> bool {
        match self {
            CompareOp::Eq => actual == expected,
            CompareOp::Ne => actual != expected,
            CompareOp::Lt => actual < expected,
            CompareOp::Le => actual <= expected,
            CompareOp::Gt => actual > expected,
            CompareOp::Ge => actual >= expected,
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        })
    }
}

/// Checks over the counter workload's history so far. Every listed field must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadCheck {
    /// Writes are flowing: an increment was acknowledged after the check started.
    #[serde(default)]
    pub progressing: Option<bool>,
    /// At least this many increments acknowledged in total.
    #[serde(default)]
    pub min_acknowledged: Option<u64>,
    /// Exactly this many acknowledged increments missing on the current primary.
    #[serde(default)]
    pub acknowledged_writes_lost: Option<u64>,
    /// The longest write-unavailability window so far is at most this.
    #[serde(default)]
    pub max_write_unavailable: Option<ScenarioDuration>,
    /// Exactly this many changes of the site acknowledging writes.
    #[serde(default)]
    pub failovers: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assertion {
    pub check: Check,
    pub within: ScenarioDuration,
    pub hold: Option<ScenarioDuration>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refutation {
    pub check: Check,
    /// How long the condition must stay false; `None` means to the end of the steps.
    pub during: Option<ScenarioDuration>,
}

/// The background client, `{counter: {writesPerSecond: 20, cache: true}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub counter: CounterSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CounterSpec {
    pub writes_per_second: u32,
    /// Also INCR through the Dragonfly Service on every tick.
    #[serde(default)]
    pub cache: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    SingleWriter,
    NoAcknowledgedWriteLost,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::SingleWriter => "single-writer",
            Invariant::NoAcknowledgedWriteLost => "no-acknowledged-write-lost",
        })
    }
}

// ---------------------------------------------------------------------------------
// Parsing

/// A scenario file that could not be read or is not a valid scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `file:line:column: path: message`; line/column are 1-based.
    #[error("{}:{line}:{column}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: u64,
        column: u64,
        key: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    NoLocation { path: PathBuf, message: String },
}

/// The top-level keys, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    backends: Option<Vec<BackendKind>>,
    #[serde(default)]
    timeout: Option<ScenarioDuration>,
    #[serde(default)]
    fixture: Option<String>,
    #[serde(default)]
    workload: Option<WorkloadSpec>,
    #[serde(default)]
    invariants: Vec<Invariant>,
    steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    finally: Vec<Spanned<RawStep>>,
}

/// A step as written: every action key optional; `validate` requires exactly one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    apply: Option<Value>,
    #[serde(default)]
    patch: Option<PatchAction>,
    #[serde(default)]
    annotate: Option<RawAnnotate>,
    #[serde(default)]
    capture: Option<Spanned<RawCapture>>,
    #[serde(default)]
    delete: Option<ObjectRef>,
    #[serde(default)]
    fault: Option<Fault>,
    #[serde(default)]
    assert: Option<Spanned<RawCheck>>,
    #[serde(default)]
    refute: Option<Spanned<RawCheck>>,
    #[serde(default)]
    wait: Option<ScenarioDuration>,
}

/// An annotate as written: values located, so a bad `${...}` names its line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnnotate {
    resource: ObjectRef,
    set: BTreeMap<String, Option<Spanned<String>>>,
}

/// A capture as written. Its errors are reported at the capture's own location (spans
/// on its fields would put `.value` hops into the key path).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    resource: ObjectRef,
    value: String,
    #[serde(rename = "as")]
    name: String,
    #[serde(default)]
    within: Option<ScenarioDuration>,
}

/// An assert/refute as written: one of resource/events/metric/workload plus timing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(default)]
    resource: Option<ObjectRef>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    spec: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default, rename = "where")]
    where_: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    events: Option<EventCheck>,
    #[serde(default)]
    metric: Option<MetricCheck>,
    #[serde(default)]
    workload: Option<WorkloadCheck>,
    #[serde(default)]
    within: Option<ScenarioDuration>,
    #[serde(default)]
    hold: Option<ScenarioDuration>,
    #[serde(default)]
    during: Option<ScenarioDuration>,
}

/// Reads and parses a scenario file; the id is the file name without its extension.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses scenario text as if it were the file at `path`.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let raw: RawScenario = deserialize_with_path(path, text)?;
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let invalid =
        |loc: &serde_saphyr::Location, key: String, message: String| ScenarioError::Invalid {
            path: path.to_owned(),
            line: loc.line(),
            column: loc.column(),
            key,
            message,
        };
    // A `${name}` must be captured by an earlier step; `finally` may use any capture
    // of the steps (and says so at run time if that step never ran).
    let mut captured = std::collections::BTreeSet::new();
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (i, step) in raw.steps.into_iter().enumerate() {
        steps.push(validate_step(
            step,
            &format!("steps[{i}]"),
            &mut captured,
            &invalid,
        )?);
    }
    let mut finally = Vec::with_capacity(raw.finally.len());
    for (i, step) in raw.finally.into_iter().enumerate() {
        finally.push(validate_step(
            step,
            &format!("finally[{i}]"),
            &mut captured,
            &invalid,
        )?);
    }
    Ok(Scenario {
        id,
        path: path.to_owned(),
        description: raw.description,
        tags: raw.tags,
        backends: raw
            .backends
            .unwrap_or_else(|| vec![BackendKind::Sim, BackendKind::K3d]),
        timeout: raw.timeout.unwrap_or(DEFAULT_TIMEOUT),
        fixture: raw.fixture,
        workload: raw.workload,
        invariants: raw.invariants,
        steps,
        finally,
    })
}

/// Runs serde-saphyr under serde_path_to_error so that a structural error carries both
/// the location (from saphyr) and the YAML path of the key (from path_to_error).
fn deserialize_with_path<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ScenarioError> {
    let mut key_path = None;
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|err| {
            key_path = Some(err.path().to_string());
            err.into_inner()
        })
    });
    result.map_err(|err| {
        let message = strip_location_suffix(&err.without_snippet().to_string());
        let key = readable_key_path(key_path.as_deref().unwrap_or("."), &message);
        match err.location() {
            Some(loc) if loc.line() > 0 => ScenarioError::Invalid {
                path: path.to_owned(),
                line: loc.line(),
                column: loc.column(),
                key,
                message,
            },
            _ => ScenarioError::NoLocation {
                path: path.to_owned(),
                message: format!("{key}: {message}"),
            },
        }
    })
}

/// serde_path_to_error's path, minus the `.value` hops through `Spanned` wrappers, and
/// with the missing field appended for "missing field" errors (which are reported at the
/// enclosing map).
fn readable_key_path(raw: &str, message: &str) -> String {
    static SPANNED_HOP: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| {
            regex::Regex::new(
                r"((?:steps|finally|where)\[\d+\]|\.assert|\.refute|\.capture)\.value",
            )
            .ok()
        });
    let mut path = match SPANNED_HOP.as_ref() {
        Some(re) => re.replace_all(raw, "$1").into_owned(),
        None => raw.to_owned(),
    };
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        path = if path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
    }
    path
}

/// serde-saphyr appends " at line N, column M" to its messages; we print the location
/// up front in the `file:line:column:` form editors understand, so drop the suffix.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(idx) if message[idx..].contains("column") => message[..idx].to_owned(),
        _ => message.to_owned(),
    }
}

fn validate_step(
    step: Spanned<RawStep>,
    key: &str,
    captured: &mut std::collections::BTreeSet<String>,
    invalid: &dyn Fn(&serde_saphyr::Location, String, String) -> ScenarioError,
) -> Result<Step, ScenarioError> {
    let loc = step.referenced;
    let raw = step.value;
    let mut actions: Vec<(&str, Action)> = Vec::new();
    if let Some(manifest) = raw.apply {
        let source =
            apply_source(manifest).map_err(|m| invalid(&loc, format!("{key}.apply"), m))?;
        actions.push(("apply", Action::Apply(source)));
    }
    if let Some(p) = raw.patch {
        if !p.merge.is_object() {
            return Err(invalid(
                &loc,
                format!("{key}.patch.merge"),
                "must be a map".into(),
            ));
        }
        actions.push(("patch", Action::Patch(p)));
    }
    if let Some(a) = raw.annotate {
        let mut set = BTreeMap::new();
        for (name, value) in a.set {
            let Some(value) = value else {
                set.insert(name, None);
                continue;
            };
            let at = format!("{key}.annotate.set.{name}");
            let template = Template::parse(&value.value)
                .map_err(|m| invalid(&value.referenced, at.clone(), m))?;
            uncaptured(std::slice::from_ref(&template), captured)
                .map_err(|m| invalid(&value.referenced, at, m))?;
            set.insert(name, Some(template));
        }
        actions.push((
            "annotate",
            Action::Annotate(AnnotateAction {
                resource: a.resource,
                set,
            }),
        ));
    }
    if let Some(c) = raw.capture {
        let at = c.referenced;
        let c = c.value;
        if let Err(message) = crate::cel_where::compile(&c.value) {
            return Err(invalid(&at, format!("{key}.capture.value"), message));
        }
        if !template::valid_name(&c.name) {
            return Err(invalid(
                &at,
                format!("{key}.capture.as"),
                format!(
                    "{:?} cannot be captured into: {}",
                    c.name,
                    template::name_rule()
                ),
            ));
        }
        captured.insert(c.name.clone());
        actions.push((
            "capture",
            Action::Capture(CaptureAction {
                resource: c.resource,
                value: c.value,
                name: c.name,
                within: c.within.unwrap_or(DEFAULT_WITHIN),
            }),
        ));
    }
    if let Some(r) = raw.delete {
        actions.push(("delete", Action::Delete(r)));
    }
    if let Some(f) = raw.fault {
        if let Fault::Partition { between: [a, b] } = &f
            && a == b
        {
            return Err(invalid(
                &loc,
                format!("{key}.fault.partition.between"),
                format!("needs two different sites, got [{a}, {b}]"),
            ));
        }
        actions.push(("fault", Action::Fault(f)));
    }
    if let Some(check) = raw.assert {
        let k = format!("{key}.assert");
        let (check, timing) = validate_check(check, &k, captured, invalid)?;
        if timing.during.is_some() {
            return Err(invalid(
                &timing.loc,
                format!("{k}.during"),
                "`during` belongs to refute; an assert uses `within` and `hold`".into(),
            ));
        }
        actions.push((
            "assert",
            Action::Assert(Assertion {
                check,
                within: timing.within.unwrap_or(DEFAULT_WITHIN),
                hold: timing.hold,
            }),
        ));
    }
    if let Some(check) = raw.refute {
        let k = format!("{key}.refute");
        let (check, timing) = validate_check(check, &k, captured, invalid)?;
        for (name, present) in [
            ("within", timing.within.is_some()),
            ("hold", timing.hold.is_some()),
        ] {
            if present {
                return Err(invalid(
                    &timing.loc,
                    format!("{k}.{name}"),
                    format!("`{name}` belongs to assert; a refute uses `during`"),
                ));
            }
        }
        actions.push((
            "refute",
            Action::Refute(Refutation {
                check,
                during: timing.during,
            }),
        ));
    }
    if let Some(d) = raw.wait {
        actions.push(("wait", Action::Wait(d)));
    }
    match actions.len() {
        1 => {
            let (_, action) = actions.remove(0);
            Ok(Step { name: raw.name, action, line: loc.line() })
        }
        0 => Err(invalid(
            &loc,
            key.to_owned(),
            "step has no action (one of apply, patch, annotate, capture, delete, fault, assert, refute, wait)"
                .into(),
        )),
        _ => {
            let names: Vec<&str> = actions.iter().map(|(n, _)| *n).collect();
            Err(invalid(
                &loc,
                key.to_owned(),
                format!("step has {} actions ({}); split it into one step each", names.len(), names.join(", ")),
            ))
        }
    }
}

/// Refuses a `${name}` that no earlier step captures.
fn uncaptured(
    templates: &[Template],
    captured: &std::collections::BTreeSet<String>,
) -> Result<(), String> {
    let unknown = templates
        .iter()
        .flat_map(Template::references)
        .find(|r| !captured.contains(*r));
    match unknown {
        None => Ok(()),
        Some(unknown) => {
            let known = if captured.is_empty() {
                "none".to_owned()
            } else {
                captured.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            Err(format!(
                "`${{{unknown}}}` is not captured by an earlier step (captured so far: {known})"
            ))
        }
    }
}

fn apply_source(manifest: Value) -> Result<ApplySource, String> {
    let Value::Object(map) = &manifest else {
        return Err("expected an inline manifest or {file: path}".into());
    };
    if let Some(file) = map.get("file") {
        if map.len() != 1 {
            return Err("`file` cannot be combined with an inline manifest".into());
        }
        let Some(file) = file.as_str() else {
            return Err("`file` must be a path".into());
        };
        return Ok(ApplySource::File(PathBuf::from(file)));
    }
    for required in ["apiVersion", "kind"] {
        if !map.contains_key(required) {
            return Err(format!("inline manifest has no `{required}`"));
        }
    }
    if manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err("inline manifest has no metadata.name".into());
    }
    Ok(ApplySource::Inline(manifest))
}

struct Timing {
    loc: serde_saphyr::Location,
    within: Option<ScenarioDuration>,
    hold: Option<ScenarioDuration>,
    during: Option<ScenarioDuration>,
}

fn validate_check(
    check: Spanned<RawCheck>,
    key: &str,
    captured: &std::collections::BTreeSet<String>,
    invalid: &dyn Fn(&serde_saphyr::Location, String, String) -> ScenarioError,
) -> Result<(Check, Timing), ScenarioError> {
    let loc = check.referenced;
    let raw = check.value;
    let timing = Timing {
        loc,
        within: raw.within,
        hold: raw.hold,
        during: raw.during,
    };
    let present: Vec<&str> = [
        ("resource", raw.resource.is_some()),
        ("events", raw.events.is_some()),
        ("metric", raw.metric.is_some()),
        ("workload", raw.workload.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, p)| p.then_some(name))
    .collect();
    if present.len() != 1 {
        return Err(invalid(
            &loc,
            key.to_owned(),
            format!(
                "needs exactly one of resource, events, metric, workload; found {}",
                if present.is_empty() {
                    "none".to_owned()
                } else {
                    present.join(", ")
                }
            ),
        ));
    }
    let resource_only = [
        ("status", raw.status.is_some()),
        ("spec", raw.spec.is_some()),
        ("metadata", raw.metadata.is_some()),
        ("where", raw.where_.is_some()),
    ];
    if raw.resource.is_none()
        && let Some((name, _)) = resource_only.iter().find(|(_, p)| *p)
    {
        return Err(invalid(
            &loc,
            format!("{key}.{name}"),
            format!("`{name}` applies only to a `resource` check"),
        ));
    }
    let check = if let Some(resource) = raw.resource {
        let mut partial = BTreeMap::new();
        for (name, fragment) in [
            ("status", raw.status),
            ("spec", raw.spec),
            ("metadata", raw.metadata),
        ] {
            if let Some(fragment) = fragment {
                crate::template::parse_strings(&fragment)
                    .and_then(|templates| uncaptured(&templates, captured))
                    .map_err(|m| invalid(&loc, format!("{key}.{name}"), m))?;
                partial.insert(name.to_owned(), fragment);
            }
        }
        let mut where_ = Vec::new();
        for (i, expr) in raw.where_.unwrap_or_default().into_iter().enumerate() {
            if let Err(message) = crate::cel_where::compile(&expr.value) {
                return Err(invalid(
                    &expr.referenced,
                    format!("{key}.where[{i}]"),
                    message,
                ));
            }
            where_.push(expr.value);
        }
        Check::Resource(ResourceCheck {
            resource,
            partial,
            where_,
        })
    } else if let Some(events) = raw.events {
        if let Some(pattern) = &events.message
            && let Err(e) = regex::Regex::new(pattern)
        {
            return Err(invalid(
                &loc,
                format!("{key}.events.message"),
                format!("bad regex: {e}"),
            ));
        }
        Check::Events(events)
    } else if let Some(metric) = raw.metric {
        Check::Metric(metric)
    } else if let Some(workload) = raw.workload {
        if workload == WorkloadCheck::default() {
            return Err(invalid(
                &loc,
                format!("{key}.workload"),
                "lists no check".into(),
            ));
        }
        Check::Workload(workload)
    } else {
        return Err(invalid(&loc, key.to_owned(), "needs a check".into()));
    };
    Ok((check, timing))
}

/// Lists `*.yaml` scenarios in `dir` (not its `fixtures/`), sorted by id.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ScenarioError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    Ok(paths)
}
