//! The scenario parser. A scenario file is parsed in two passes: serde-saphyr checks
//! the structure (unknown keys, wrong types, unknown fault kinds, bad durations), then
//! `validate` checks what types cannot say (exactly one action per step, which keys go
//! with which check). Every error names file:line:column and the YAML path of the
//! offending key.
//!
//! Kept whole (about 730 lines): the raw serde mirror, the located parse and the
//! validation are two passes over one grammar and share its private raw types; the
//! model they produce is `scenario/mod.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bloodraven::engine::EventReason;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::duration::ScenarioDuration;
use crate::template::{self, Template};

use super::*;

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

/// Every sample name the operator can expose, from its own registry.
static OPERATOR_METRICS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(bloodraven::metrics::exposed_sample_names);

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
    fixture: Option<Spanned<String>>,
    #[serde(default)]
    workload: Option<WorkloadSpec>,
    #[serde(default)]
    invariants: Vec<Invariant>,
    steps: Spanned<Vec<Spanned<RawStep>>>,
    #[serde(default)]
    finally: Vec<Spanned<RawStep>>,
    #[serde(default)]
    alerts: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    simulation: Option<Spanned<SimulationSpec>>,
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
    #[serde(default, rename = "applyRefused")]
    apply_refused: Option<RefusedApply>,
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
    objects: Option<ObjectsCheck>,
    #[serde(default)]
    within: Option<ScenarioDuration>,
    #[serde(default)]
    hold: Option<ScenarioDuration>,
    #[serde(default)]
    during: Option<ScenarioDuration>,
}

/// Reads and parses a scenario file; the id is the file name without its extension.
/// Its fixture must exist (`fixtures/NAME.yaml` beside it): a missing one is a bad
/// file, named with the line of its `fixture:`, not a scenario failure at run time.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    let (scenario, fixture_at) = parse_located(path, &text)?;
    if let (Some(name), Some(at)) = (&scenario.fixture, fixture_at) {
        let fixture = crate::runner::fixture_path(&scenario, name);
        if !fixture.is_file() {
            return Err(ScenarioError::Invalid {
                path: path.to_owned(),
                line: at.line(),
                column: at.column(),
                key: "fixture".into(),
                message: format!("no fixture {name:?}: {} does not exist", fixture.display()),
            });
        }
    }
    Ok(scenario)
}

/// Parses scenario text as if it were the file at `path`.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    parse_located(path, text).map(|(scenario, _)| scenario)
}

/// A fixture name is a file name in `fixtures/`, nothing that could leave it.
fn valid_fixture_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// [`parse`], also returning where `fixture:` was written (for [`load`]'s check).
fn parse_located(
    path: &Path,
    text: &str,
) -> Result<(Scenario, Option<serde_saphyr::Location>), ScenarioError> {
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
    if raw.steps.value.is_empty() {
        return Err(invalid(
            &raw.steps.referenced,
            "steps".into(),
            "a scenario needs at least one step".into(),
        ));
    }
    let fixture_at = raw.fixture.as_ref().map(|f| f.referenced);
    if let Some(fixture) = &raw.fixture
        && !valid_fixture_name(&fixture.value)
    {
        return Err(invalid(
            &fixture.referenced,
            "fixture".into(),
            format!(
                "{:?} is not a fixture name: use the file name in fixtures/ without .yaml (letters, digits, '-', '_', '.'; no paths)",
                fixture.value
            ),
        ));
    }
    if let Some(alerts) = &raw.alerts {
        let known: Vec<String> = crate::alerts::chart_rules()
            .map_err(|e| invalid(&alerts.referenced, "alerts".into(), e.to_string()))?
            .into_iter()
            .map(|r| r.name)
            .collect();
        if let Some(unknown) = alerts.value.iter().find(|a| !known.contains(a)) {
            return Err(invalid(
                &alerts.referenced,
                "alerts".into(),
                format!(
                    "{unknown:?} is not an alert of the chart's PrometheusRule (alerts: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let backends = raw
        .backends
        .unwrap_or_else(|| vec![BackendKind::Sim, BackendKind::K3d]);
    if let Some(simulation) = &raw.simulation {
        if backends.iter().any(|b| *b != BackendKind::Sim) {
            return Err(invalid(
                &simulation.referenced,
                "simulation".into(),
                "applies to the sim backend only: add `backends: [sim]`".into(),
            ));
        }
        if let Err(e) = simulation.value.seam_faults.validate() {
            return Err(invalid(
                &simulation.referenced,
                "simulation.seamFaults".into(),
                e.to_string(),
            ));
        }
    }
    let mut steps = Vec::with_capacity(raw.steps.value.len());
    for (i, step) in raw.steps.value.into_iter().enumerate() {
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
    Ok((
        Scenario {
            id,
            path: path.to_owned(),
            description: raw.description,
            tags: raw.tags,
            backends,
            timeout: raw.timeout.unwrap_or(DEFAULT_TIMEOUT),
            fixture: raw.fixture.map(|f| f.value),
            workload: raw.workload,
            invariants: raw.invariants,
            steps,
            finally,
            alerts: raw.alerts.map(|a| a.value),
            simulation: raw.simulation.map(|s| s.value).unwrap_or_default(),
        },
        fixture_at,
    ))
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
    static SPANNED_HOP: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(
        || {
            regex::Regex::new(
                r"((?:steps|finally|where)\[\d+\]|^steps|^fixture|\.assert|\.refute|\.capture)\.value",
            )
            .ok()
        },
    );
    // Twice: `steps.value[0].value` has two nested hops, and one pass replaces only
    // non-overlapping matches of the original text.
    let mut path = match SPANNED_HOP.as_ref() {
        Some(re) => {
            let once = re.replace_all(raw, "$1").into_owned();
            re.replace_all(&once, "$1").into_owned()
        }
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
        let source = apply_source(manifest)
            .map_err(|m| invalid(&loc, format!("{key}.apply"), m.to_string()))?;
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
                .map_err(|m| invalid(&value.referenced, at.clone(), m.to_string()))?;
            uncaptured(std::slice::from_ref(&template), captured)
                .map_err(|m| invalid(&value.referenced, at, m.to_string()))?;
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
            return Err(invalid(
                &at,
                format!("{key}.capture.value"),
                message.to_string(),
            ));
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
    if let Some(refused) = raw.apply_refused {
        if !refused.manifest.is_object() {
            return Err(invalid(
                &loc,
                format!("{key}.applyRefused.manifest"),
                "must be an inline manifest (a map)".into(),
            ));
        }
        if let Err(e) = regex::Regex::new(&refused.message) {
            return Err(invalid(
                &loc,
                format!("{key}.applyRefused.message"),
                format!("bad regex: {e}"),
            ));
        }
        actions.push(("applyRefused", Action::ApplyRefused(refused)));
    }
    match actions.len() {
        1 => {
            let (_, action) = actions.remove(0);
            Ok(Step { name: raw.name, action, line: loc.line() })
        }
        0 => Err(invalid(
            &loc,
            key.to_owned(),
            "step has no action (one of apply, applyRefused, patch, annotate, capture, delete, fault, assert, refute, wait)"
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

/// A `${name}` that no earlier step captures.
#[derive(Debug, thiserror::Error)]
#[error("`${{{name}}}` is not captured by an earlier step (captured so far: {known})")]
struct Uncaptured {
    name: String,
    /// The names captured so far, or `none`.
    known: String,
}

/// Refuses a `${name}` that no earlier step captures.
fn uncaptured(
    templates: &[Template],
    captured: &std::collections::BTreeSet<String>,
) -> Result<(), Uncaptured> {
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
            Err(Uncaptured {
                name: unknown.to_owned(),
                known,
            })
        }
    }
}

/// Why an `apply:` value is neither an inline manifest nor `{file: path}`.
#[derive(Debug, thiserror::Error)]
enum ApplySourceError {
    #[error("expected an inline manifest or {{file: path}}")]
    NotAMap,
    #[error("`file` cannot be combined with an inline manifest")]
    FileAndInline,
    #[error("`file` must be a path")]
    FileNotAPath,
    #[error("inline manifest has no `{0}`")]
    Missing(&'static str),
    #[error("inline manifest has no metadata.name")]
    NoName,
}

fn apply_source(manifest: Value) -> Result<ApplySource, ApplySourceError> {
    let Value::Object(map) = &manifest else {
        return Err(ApplySourceError::NotAMap);
    };
    if let Some(file) = map.get("file") {
        if map.len() != 1 {
            return Err(ApplySourceError::FileAndInline);
        }
        let Some(file) = file.as_str() else {
            return Err(ApplySourceError::FileNotAPath);
        };
        return Ok(ApplySource::File(PathBuf::from(file)));
    }
    for required in ["apiVersion", "kind"] {
        if !map.contains_key(required) {
            return Err(ApplySourceError::Missing(required));
        }
    }
    if manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(ApplySourceError::NoName);
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
        ("objects", raw.objects.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, p)| p.then_some(name))
    .collect();
    if present.len() != 1 {
        return Err(invalid(
            &loc,
            key.to_owned(),
            format!(
                "needs exactly one of resource, events, metric, workload, objects; found {}",
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
                let at = || format!("{key}.{name}");
                let templates = crate::template::parse_strings(&fragment)
                    .map_err(|m| invalid(&loc, at(), m.to_string()))?;
                uncaptured(&templates, captured).map_err(|m| invalid(&loc, at(), m.to_string()))?;
                partial.insert(name.to_owned(), fragment);
            }
        }
        let mut where_ = Vec::new();
        for (i, expr) in raw.where_.unwrap_or_default().into_iter().enumerate() {
            if let Err(message) = crate::cel_where::compile(&expr.value) {
                return Err(invalid(
                    &expr.referenced,
                    format!("{key}.where[{i}]"),
                    message.to_string(),
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
        if let Some(reason) = &events.reason
            && events.for_object.kind == "MysqlFailoverGroup"
            && !EventReason::ALL.iter().any(|r| r.as_str() == reason)
        {
            let known: Vec<&str> = EventReason::ALL.iter().map(|r| r.as_str()).collect();
            return Err(invalid(
                &loc,
                format!("{key}.events.reason"),
                format!(
                    "the operator never emits {reason:?}; its reasons are {}",
                    known.join(", ")
                ),
            ));
        }
        Check::Events(events)
    } else if let Some(metric) = raw.metric {
        if !OPERATOR_METRICS.contains(&metric.name) {
            return Err(invalid(
                &loc,
                format!("{key}.metric.name"),
                format!(
                    "the operator's /metrics has no {:?}; its samples are {}",
                    metric.name,
                    OPERATOR_METRICS.join(", ")
                ),
            ));
        }
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
    } else if let Some(objects) = raw.objects {
        if !(objects.endpoint.starts_with("http://") || objects.endpoint.starts_with("https://")) {
            return Err(invalid(
                &loc,
                format!("{key}.objects.endpoint"),
                format!("{:?} is not http(s)://host[:port]", objects.endpoint),
            ));
        }
        Check::Objects(objects)
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
