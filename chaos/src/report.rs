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
    let mut out = String::new();
    for f in &outcome.failures {
        out.push_str(&f.to_string());
    }
    out.push_str(&format!("replay: {}\n", replay_command(outcome)));
    out
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
    out
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
