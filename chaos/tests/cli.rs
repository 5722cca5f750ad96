//! The `bloodraven-chaos` binary as a user runs it: bad options are exit 2 with a
//! message, never a panic, and a reader that goes away (`| head -1`) is not a crash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn scenarios_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"))
}

fn chaos(args: &[&str], report_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bloodraven-chaos"))
        .arg("--scenarios-dir")
        .arg(scenarios_dir())
        .arg("--report-dir")
        .arg(report_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_sweep_past_the_last_seed_is_refused_not_an_overflow() {
    let reports = tempfile::tempdir().unwrap();
    for args in [
        &["sweep", "--first", "18446744073709551615"][..],
        &["sweep", "--first", "18446744073709551615", "--show"][..],
        &["sweep", "--first", "10", "--seeds", "18446744073709551610"][..],
    ] {
        let out = chaos(args, reports.path());
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
        assert_eq!(out.status.code(), Some(2), "{args:?}:\n{err}");
        assert!(
            err.contains("--first"),
            "{args:?} does not name --first:\n{err}"
        );
    }
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let reports = tempfile::tempdir().unwrap();
    for args in [
        &["list"][..],
        &["sweep", "--show", "--seeds", "3"][..],
        &["--help"][..],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_bloodraven-chaos"))
            .arg("--scenarios-dir")
            .arg(scenarios_dir())
            .arg("--report-dir")
            .arg(reports.path())
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}:\n{err}");
    }
}

#[test]
fn a_tag_no_scenario_has_is_an_error_naming_it() {
    let reports = tempfile::tempdir().unwrap();
    for args in [
        &["run-all", "--tag", "nosuchtag"][..],
        &["list", "--tag", "nosuchtag"][..],
    ] {
        let out = chaos(args, reports.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}:\n{err}");
        assert!(err.contains("nosuchtag"), "{args:?}:\n{err}");
    }
}

#[test]
fn parallel_zero_is_refused() {
    let reports = tempfile::tempdir().unwrap();
    for args in [
        &["run-all", "--parallel", "0"][..],
        &["run", "01-bootstrap-healthy", "--parallel", "0"][..],
        &["sweep", "--parallel", "0", "--seeds", "1"][..],
        &["report", "--parallel", "0"][..],
    ] {
        let out = chaos(args, reports.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}:\n{err}");
        assert!(err.contains("at least 1"), "{args:?}:\n{err}");
    }
}

/// Scenario 12 crashes a node: turmoil drops the crashed host's loopback streams, which
/// under `spawn_blocking` spawned onto the CLI's runtime and printed a panic backtrace
/// from a run that passed.
#[test]
fn a_passing_sim_run_prints_no_panic() {
    let reports = tempfile::tempdir().unwrap();
    let out = chaos(&["run", "12-node-crash-iad"], reports.path());
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
