//! The scenario model: what a scenario file (`scenarios/NN-name.yaml`) means once
//! parsed — steps and their actions, faults, checks, the workload and invariants. The
//! parser that builds it from YAML, and whose errors name file:line:column and the YAML
//! path, is [`parse`](mod@parse).

mod parse;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::ScenarioDuration;
use crate::template::Template;

pub use parse::{ScenarioError, discover, load, parse};

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
    /// `alerts:` the chart's alerts this scenario may fire. When given, any other
    /// alert that fires during the run (evaluated over the scraped /metrics) fails it;
    /// `[]` says that the run must page nobody. When absent the alerts are listed only.
    pub alerts: Option<Vec<String>>,
    /// `simulation:` the seed and seam faults of a sim run (the sweep writes them, so a
    /// failing seed's file replays it). Empty by default: `--seed` or the default
    /// seed, and no seam faults.
    pub simulation: SimulationSpec,
}

/// `simulation: {seed: N, seamFaults: {...}}`: sim backend only. `--seed` on the command
/// line wins over `seed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SimulationSpec {
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub seam_faults: bloodraven_sim::seam_faults::SeamFaults,
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
    /// An inline manifest the API server must refuse, with a message matching a regex.
    ApplyRefused(RefusedApply),
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
            Action::ApplyRefused(r) => {
                let kind = r
                    .manifest
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                let name = r.manifest.pointer("/metadata/name").and_then(Value::as_str);
                format!("apply {kind}/{} (must be refused)", name.unwrap_or("?"))
            }
        }
    }
}

/// `applyRefused: {manifest: {...}, message: REGEX}`: the apply must fail, and the
/// error (the API server's status message) must match `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusedApply {
    pub manifest: Value,
    pub message: String,
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
    /// Freeze the site's Dragonfly process (SIGSTOP; the cgroup freezer in the
    /// simulation): the pod stays Running, its cache answers nobody (connections hang)
    /// while the site's MySQL is untouched. Undone by thawing it (SIGCONT).
    FreezeDragonfly(Site),
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
            Fault::FreezeDragonfly(s) => write!(f, "freeze-dragonfly {s}"),
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
    Objects(ObjectsCheck),
}

/// `{objects: {endpoint, bucket, prefix?, credentialsSecret, minCount?}}`: the S3 store
/// at `endpoint` (as the cluster's pods reach it) holds at least `minCount` (default 1)
/// objects under `bucket`/`prefix`, listed with the production S3 client and the keys
/// `access-key-id` / `secret-access-key` of `credentialsSecret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectsCheck {
    pub endpoint: String,
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    pub credentials_secret: String,
    #[serde(default = "one_object")]
    pub min_count: usize,
}

fn one_object() -> usize {
    1
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
            Check::Objects(o) => format!(
                "objects in s3://{}/{}",
                o.bucket,
                o.prefix.as_deref().unwrap_or("")
            ),
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
    /// The cache half (`cache: true`): an INCR through the Dragonfly Service succeeded
    /// in the last 5 s (`true`) or not (`false`).
    #[serde(default)]
    pub cache_progressing: Option<bool>,
    /// Exactly this many times the cache counter went backwards (a successful INCR
    /// answered less than the one before it): sessions lost with the cache master.
    #[serde(default)]
    pub cache_resets: Option<u64>,
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
    /// At no tick do two pods match an app-facing Dragonfly Service's selector.
    SingleCacheMaster,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::SingleWriter => "single-writer",
            Invariant::NoAcknowledgedWriteLost => "no-acknowledged-write-lost",
            Invariant::SingleCacheMaster => "single-cache-master",
        })
    }
}
