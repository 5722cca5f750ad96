//! Reports of a run: the terminal summary table, JUnit XML (one testsuite per run, one
//! testcase per scenario, seed and backend as properties, the timeline in system-out)
//! and a JSON report with everything in `ScenarioOutcome`.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use crate::runner::ScenarioOutcome;
use crate::scenario::BackendKind;

/// The command that reruns one scenario exactly (with its seed on sim).
pub fn replay_command(outcome: &ScenarioOutcome) -> String {
    let mut cmd = format!(
        "bloodraven-chaos run {} --backend {}",
        outcome.id, outcome.backend
    );
    if let Some(seed) = outcome.seed {
        cmd.push_str(&format!(" --seed {seed}"));
    }
    cmd
}

fn ms(value: u64) -> String {
    format!("{:.1}s", value as f64 / 1000.0)
}

/// The summary table: scenario, result, wall time, simulated time, RTO, seed.
pub fn summary_table(outcomes: &[ScenarioOutcome]) -> String {
    let rows: Vec<[String; 6]> = outcomes
        .iter()
        .map(|o| {
            let rto = o.rto_ms();
            [
                o.id.clone(),
                if o.passed() {
                    "PASS".into()
                } else {
                    "FAIL".into()
                },
                ms(o.wall_ms),
                ms(o.simulated_ms),
                if rto.is_empty() {
                    "-".into()
                } else {
                    rto.iter()
                        .map(|r| format!("{:.1}s", *r as f64 / 1000.0))
                        .collect::<Vec<_>>()
                        .join(",")
                },
                o.seed.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["scenario", "result", "wall", "simulated", "RTO", "seed"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(&format!("{cell:<w$}"));
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    out.push_str(&line(
        widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str),
    ));
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    out.push_str(&format!(
        "\n{} scenario(s), {} passed, {failed} failed\n",
        outcomes.len(),
        outcomes.len() - failed
    ));
    out
}

/// The failure text of one scenario: every failure, then how to replay it.
pub fn failure_text(outcome: &ScenarioOutcome) -> String {
    let mut out = failures_only(outcome);
    out.push_str(&seed_text(outcome));
    out.push_str(&format!("replay: {}\n", replay_command(outcome)));
    out
}

/// `seed N (generator G, commit C)` of a sim run, with a newline; empty otherwise. The
/// commit and generator say what else the replay needs besides the seed.
fn seed_text(outcome: &ScenarioOutcome) -> String {
    match (outcome.backend, outcome.seed) {
        (BackendKind::Sim, Some(seed)) => format!("{}\n", bloodraven_sim::rng::seed_line(seed)),
        _ => String::new(),
    }
}

/// What a failing test prints: every failure, the timeline, then `replay` (the
/// command that reruns it; a sweep seed replays through `sweep`, not `run`).
pub fn failure_with_timeline(outcome: &ScenarioOutcome, replay: &str) -> String {
    let mut out = failures_only(outcome);
    out.push_str("timeline:\n");
    for entry in &outcome.timeline {
        out.push_str(&format!("  {entry}\n"));
    }
    out.push_str(&seed_text(outcome));
    out.push_str(&format!("replay: {replay}\n"));
    out
}

fn failures_only(outcome: &ScenarioOutcome) -> String {
    outcome.failures.iter().map(ToString::to_string).collect()
}

fn timeline_text(outcome: &ScenarioOutcome) -> String {
    let mut out = format!("backend: {}\n", outcome.backend_description);
    for entry in &outcome.timeline {
        out.push_str(&format!("{entry}\n"));
    }
    if let Some(w) = &outcome.workload {
        out.push_str(&format!(
            "workload: {} attempts, {} acknowledged, longest write-unavailability {}, failovers {}\n",
            w.attempts,
            w.acknowledged,
            w.longest_unavailability_ms.map(|m| format!("{m} ms")).unwrap_or_else(|| "none".into()),
            w.failovers.iter().map(|f| format!("{}->{} RTO {} ms", f.from_site, f.to_site, f.rto_ms)).collect::<Vec<_>>().join(", ")
        ));
    }
    out.push_str(&format!("alerts: {}\n", alerts_fired(outcome)));
    out
}

/// The alerts that fired during the run, by name and labels, or `none`.
pub fn alerts_fired(outcome: &ScenarioOutcome) -> String {
    if outcome.alerts.is_empty() {
        return "none".to_owned();
    }
    outcome
        .alerts
        .iter()
        .map(|a| a.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

/// JUnit: one testsuite named after the run, one testcase per scenario.
pub fn junit(
    run_name: &str,
    backend: BackendKind,
    seed: Option<u64>,
    outcomes: &[ScenarioOutcome],
) -> Report {
    let mut suite = TestSuite::new(run_name);
    suite.add_property(Property::new("backend", backend.to_string()));
    if let Some(seed) = seed {
        suite.add_property(Property::new("seed", seed.to_string()));
    }
    let mut total = 0u64;
    for o in outcomes {
        total += o.wall_ms;
        let status = if o.passed() {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let first = &o.failures[0];
            s.set_message(format!("{}: {}", first.step, first.message));
            s.set_type("scenario-failure");
            s.set_description(failure_text(o));
            s
        };
        let mut case = TestCase::new(o.id.clone(), status);
        case.set_classname(format!("bloodraven-chaos.{}", o.backend));
        case.set_time(Duration::from_millis(o.wall_ms));
        case.add_property(Property::new("backend", o.backend.to_string()));
        if let Some(seed) = o.seed {
            case.add_property(Property::new("seed", seed.to_string()));
        }
        case.add_property(Property::new("simulated_ms", o.simulated_ms.to_string()));
        case.set_system_out(timeline_text(o));
        suite.add_test_case(case);
    }
    suite.set_time(Duration::from_millis(total));
    let mut report = Report::new("bloodraven-chaos");
    report.add_test_suite(suite);
    report
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("rendering the JUnit report: {0}")]
    Junit(String),
    #[error("rendering the JSON report: {0}")]
    Json(String),
}

pub fn write_junit(path: &Path, report: &Report) -> Result<(), ReportError> {
    let xml = report
        .to_string()
        .map_err(|e| ReportError::Junit(e.to_string()))?;
    write_file(path, &xml)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    backend: BackendKind,
    seed: Option<u64>,
    passed: usize,
    failed: usize,
    scenarios: &'a [ScenarioOutcome],
}

/// Writes `report.json` (the whole run) into `dir`; returns its path.
pub fn write_json(
    dir: &Path,
    backend: BackendKind,
    seed: Option<u64>,
    outcomes: &[ScenarioOutcome],
) -> Result<std::path::PathBuf, ReportError> {
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let report = JsonReport {
        backend,
        seed,
        passed: outcomes.len() - failed,
        failed,
        scenarios: outcomes,
    };
    let text =
        serde_json::to_string_pretty(&report).map_err(|e| ReportError::Json(e.to_string()))?;
    let path = dir.join("report.json");
    write_file(&path, &text)?;
    Ok(path)
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// Writes `text` to `path`, creating its directory.
pub fn write_text(path: &Path, text: &str) -> Result<(), ReportError> {
    write_file(path, text)
}

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory: String,
    pub os: String,
}

impl Machine {
    /// Reads the CPU count, `/proc/meminfo` and `/etc/os-release` (Linux; "unknown"
    /// elsewhere).
    pub fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
            })
            .unwrap_or_else(|| "unknown".into());
        let pretty = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|r| {
                r.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_owned())
            });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|k| k.trim().to_owned());
        let os = match (pretty, kernel) {
            (Some(p), Some(k)) => format!("{p}, Linux {k}"),
            (Some(p), None) => p,
            (None, Some(k)) => format!("Linux {k}"),
            (None, None) => std::env::consts::OS.to_owned(),
        };
        Self { cpus, memory, os }
    }
}

/// The names of the alerts that fired (each once), for the report's table.
fn alert_names(outcome: &ScenarioOutcome) -> String {
    let mut names: Vec<&str> = outcome.alerts.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// `docs/report.md`: per scenario the simulated RTO of each failover, the longest
/// write-unavailability window, acknowledged writes lost, wall and simulated time; the
/// suite's wall time; the sweep; the machine.
pub fn markdown(
    outcomes: &[ScenarioOutcome],
    suite_wall_ms: u64,
    sweep: &crate::sweep::SweepSummary,
    machine: &Machine,
) -> String {
    let mut out = String::from(
        "# Measured report\n\n\
         Generated by `make report` (`bloodraven-chaos report`) from a real run on the sim\n\
         backend; do not edit by hand. RTO and write-unavailability are measured by the\n\
         counter workload (20 writes/s through the primary Service) on simulated time; a\n\
         scenario's RTO column lists every change of the acknowledging site, including the\n\
         planned failover some scenarios use to make iad the primary first.\n\n",
    );
    out.push_str(&format!(
        "Machine: {} CPU(s), {} memory, {}.\n\n",
        machine.cpus, machine.memory, machine.os
    ));
    out.push_str("## Scenarios\n\n");
    out.push_str(
        "| scenario | result | seed | RTO (simulated) | longest write-unavailability | acknowledged writes lost | alerts fired | wall | simulated |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let w = o.workload.as_ref();
        let rto = o.rto_ms();
        let rto = if rto.is_empty() {
            "-".to_owned()
        } else {
            rto.iter()
                .map(|r| format!("{:.1} s", *r as f64 / 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let longest = w
            .and_then(|w| w.longest_unavailability_ms)
            .map_or("-".to_owned(), |m| format!("{:.1} s", m as f64 / 1000.0));
        let lost = w
            .and_then(|w| w.acknowledged_writes_lost.as_ref())
            .map_or("not checked".to_owned(), |l| {
                format!("{} of {}", l.len(), w.map_or(0, |w| w.acknowledged))
            });
        out.push_str(&format!(
            "| {} | {} | {} | {rto} | {longest} | {lost} | {} | {} | {} |\n",
            o.id,
            if o.passed() { "pass" } else { "FAIL" },
            o.seed.map_or("-".to_owned(), |s| s.to_string()),
            alert_names(o),
            secs(o.wall_ms),
            secs(o.simulated_ms),
        ));
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    out.push_str(&format!(
        "\nSuite: {} scenario(s), {failed} failed, **{} wall** for the whole suite \
         ({} parallel World(s); target: under 60 s on 2 cores).\n\n",
        outcomes.len(),
        secs(suite_wall_ms),
        sweep.parallel,
    ));
    for o in outcomes.iter().filter(|o| !o.passed()) {
        out.push_str(&format!(
            "- {} failed: `{}` — replay: `{}`\n",
            o.id,
            o.failures
                .first()
                .map(|f| format!("{}: {}", f.step, f.message))
                .unwrap_or_default()
                .replace('`', "'"),
            replay_command(o)
        ));
    }
    out.push_str("## Seed sweep\n\n");
    out.push_str(&format!(
        "Seeds {}..{} ({} random fault schedules over the playground, both invariants on), \
         {} parallel World(s): **{} wall**{}, {} simulated, **{} violation(s)**.\n",
        sweep.first_seed,
        sweep.first_seed + sweep.seeds,
        sweep.seeds,
        sweep.parallel,
        secs(sweep.wall_ms),
        sweep
            .cpu_ms
            .map_or(String::new(), |cpu| format!(" ({} CPU)", secs(cpu))),
        secs(sweep.simulated_ms),
        sweep.failed.len()
    ));
    for r in &sweep.failed {
        out.push_str(&format!(
            "- seed {}: `{}` — replay: `{}`\n",
            r.seed,
            r.failure.as_deref().unwrap_or("?").replace('`', "'"),
            r.replay
        ));
    }
    out
}
