//! The `bloodraven` binary as a user runs it: help, crd, rbac, validate and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn bloodraven(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bloodraven"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn help_teaches_the_commands() {
    let (code, out, _) = bloodraven(&["--help"]);
    assert_eq!(code, 0);
    for needle in [
        "crd",
        "validate",
        "two Kubernetes sites",
        "bloodraven validate -f",
    ] {
        assert!(out.contains(needle), "--help lacks {needle:?}:\n{out}");
    }
}

#[test]
fn crd_prints_the_committed_stream() {
    let (code, out, _) = bloodraven(&["crd"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/bloodraven/crds/bloodraven-crds.yaml"
    ))
    .unwrap();
    assert_eq!(out, committed);
}

#[test]
fn rbac_prints_the_committed_chart_template() {
    let (code, out, _) = bloodraven(&["rbac"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/bloodraven/templates/rbac.yaml"
    ))
    .unwrap();
    assert_eq!(
        out, committed,
        "charts/bloodraven/templates/rbac.yaml is stale: run `make generate`"
    );
}

#[test]
fn validate_exit_codes_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/playground.yaml");
    let (code, out, _) = bloodraven(&["validate", "-f", example]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 valid, 0 invalid"), "{out}");

    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("durability: async", "durability: eventually");
    std::fs::write(&bad, text).unwrap();
    let (code, out, _) = bloodraven(&["validate", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad.yaml:42:17: MysqlFailoverGroup/playground: spec.mysql.durability: Unsupported value: \"eventually\""), "{out}");

    let (code, _, err) = bloodraven(&["validate", "-f", "/nonexistent.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.yaml: cannot read"), "{err}");
}

/// Runs the binary with stdout a pipe whose reader has already gone, as in
/// `bloodraven crd | head -1` once head has exited.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_bloodraven"))
        .args(args)
        .stdout(writer)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn a_closed_stdout_ends_quietly_without_a_panic() {
    for args in [&["crd"][..], &["rbac"][..]] {
        let (code, err) = with_closed_stdout(args);
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
        assert_eq!(err, "", "{args:?} printed to stderr");
        assert_eq!(code, Some(141), "{args:?}");
    }
}

#[test]
fn validate_checks_every_file_reads_stdin_and_refuses_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/playground.yaml");
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing here\n---\n").unwrap();
    // An unreadable file first: the example after it is still checked and reported.
    let (code, out, err) = bloodraven(&[
        "validate",
        "-f",
        "/nonexistent.yaml",
        "-f",
        empty.to_str().unwrap(),
        "-f",
        example,
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("/nonexistent.yaml: cannot read"), "{err}");
    assert!(err.contains("empty.yaml: no objects in the file"), "{err}");
    assert!(
        out.contains("playground.yaml: 3 document(s): 1 valid"),
        "{out}"
    );

    // `-f -` reads standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_bloodraven"))
        .args(["validate", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let manifest = std::fs::read_to_string(example).unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(manifest.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("-: 3 document(s): 1 valid"), "{text}");
}
