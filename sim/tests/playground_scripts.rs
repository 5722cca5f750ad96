#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The playground scripts' kubectl-only paths against the simulated playground in serve
//! mode, run as a person runs them (bash, the real kubectl, KUBECONFIG): every script's
//! --help, `chaos.sh dragonfly-status`, `verify-backup.sh status|cleanup [--failed]|
//! schedule-list`, `reset-mysql.sh --yes` and, last, `teardown.sh --yes`.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// PATH with the kubectl the tests use first, so the scripts run that one.
fn path_with_kubectl() -> std::ffi::OsString {
    let kubectl = support::kubectl();
    let dir = kubectl.parent().unwrap().to_path_buf();
    let mut dirs = vec![dir];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// Runs `playground/SCRIPT args` with the kubeconfig; (success, stdout+stderr).
fn script(kubeconfig: &Path, name: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new("bash")
        .arg(repo().join("playground").join(name))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", path_with_kubectl())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(support::kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(()) => return,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what} did not happen within {timeout:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The API server's address from the kubeconfig serve mode wrote (`http://127.0.0.1:N`).
fn api_address(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: http://"))
        .unwrap();
    server.to_string()
}

/// Sets a verification's status phase as the operator would, with a raw merge patch on
/// the status subresource (kubectl's --subresource needs 1.24; CI's may be 1.20).
fn set_phase(kubeconfig: &Path, name: &str, phase: &str) {
    let address = api_address(kubeconfig);
    let body = format!(r#"{{"status":{{"phase":"{phase}","backup":"playground-minio-1"}}}}"#);
    let request = format!(
        "PATCH /apis/bloodraven.shipstream.io/v1alpha1/namespaces/bloodraven-playground/mysqlbackupverifications/{name}/status HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/merge-patch+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

const VERIFICATION: &str = r#"apiVersion: bloodraven.shipstream.io/v1alpha1
kind: MysqlBackupVerification
metadata:
  name: NAME
  namespace: bloodraven-playground
spec:
  group: playground
  profile: minio
"#;

#[test]
fn scripts_work_against_serve_mode() {
    support::kubectl();
    let dir = std::env::temp_dir().join(format!(
        "bloodraven-playground-scripts-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let examples = repo().join("examples");
    let child = Command::new(env!("CARGO_BIN_EXE_bloodraven-sim"))
        .args([
            "serve",
            "--port",
            "0",
            "--seed",
            "6",
            "--duration-seconds",
            "600",
            "--bloodraven",
            "--operator-namespace",
            "bloodraven-playground",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--apply")
        .arg(examples.join("playground.yaml"))
        .arg("--apply")
        .arg(examples.join("playground-minio.yaml"))
        .arg("--apply")
        .arg(examples.join("playground-dns.yaml"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);

    // --help teaches without a cluster.
    for name in [
        "setup.sh",
        "rebuild.sh",
        "chaos.sh",
        "reset-mysql.sh",
        "verify-backup.sh",
        "teardown.sh",
    ] {
        let (ok, help) = script(&dir.join("no-such-kubeconfig"), name, &["--help"]);
        assert!(ok && help.contains("Usage: playground/"), "{name}: {help}");
    }
    let (ok, out) = script(&kubeconfig, "chaos.sh", &["kill-site", "sfo"]);
    assert!(!ok && out.contains("unknown site 'sfo'"), "{out}");
    let (ok, out) = script(&kubeconfig, "rebuild.sh", &["operatr"]);
    assert!(!ok && out.contains("unknown component 'operatr'"), "{out}");

    eventually("kubeconfig written", Duration::from_secs(120), || {
        if kubeconfig.exists() {
            Ok(())
        } else {
            Err("no kubeconfig yet".into())
        }
    });
    let group = |path: &str| {
        kubectl(
            &kubeconfig,
            &[
                "-n",
                "bloodraven-playground",
                "get",
                "mysqlfailovergroup",
                "playground",
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
        .1
    };
    eventually(
        "the group is Healthy with Dragonfly on iad",
        Duration::from_secs(180),
        || {
            let (health, master) = (
                group("{.status.health}"),
                group("{.status.dragonfly.masterSite}"),
            );
            if health == "Healthy" && master == "iad" {
                Ok(())
            } else {
                Err(format!("{health} {master}"))
            }
        },
    );

    // The DNS pipeline ran: each container's output is its own.
    eventually(
        "the webhook logged the pushed record",
        Duration::from_secs(60),
        || {
            let logs = |container: &str| {
                kubectl(
                    &kubeconfig,
                    &[
                        "-n",
                        "bloodraven-playground",
                        "logs",
                        "-l",
                        "app.kubernetes.io/name=external-dns",
                        "-c",
                        container,
                        "--tail=-1",
                    ],
                )
                .1
            };
            let (webhook, external_dns) = (logs("dns-webhook"), logs("external-dns"));
            if webhook.contains("bloodraven_dns_webhook::http: applied changes create=1")
                && external_dns.contains("negotiated the domain filter")
                && !external_dns.contains("bloodraven_dns_webhook")
            {
                Ok(())
            } else {
                Err(format!(
                    "dns-webhook:\n{webhook}\nexternal-dns:\n{external_dns}"
                ))
            }
        },
    );

    // chaos.sh dragonfly-status: the operator's view, the pods' labels, the endpoints.
    eventually(
        "dragonfly-status shows the iad master serving",
        Duration::from_secs(60),
        || {
            let (ok, out) = script(&kubeconfig, "chaos.sh", &["dragonfly-status"]);
            let wanted = [
                "master site: iad",
                "playground-dragonfly-iad-0",
                "playground-dragonfly-pdx-0",
                "DRAGONFLY-ROLE",
                "master",
                "replica",
            ];
            let endpoints = out
                .split("endpoints (the pod apps reach):")
                .nth(1)
                .unwrap_or_default();
            if ok && wanted.iter().all(|w| out.contains(w)) && endpoints.contains("iad") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );

    // verify-backup.sh: schedule-list, status, cleanup, cleanup --failed.
    eventually(
        "the verification CronJob is listed",
        Duration::from_secs(60),
        || {
            let (ok, out) = script(&kubeconfig, "verify-backup.sh", &["schedule-list"]);
            if ok && out.contains("mysql-playground-verify-minio") && out.contains("*/30 * * * *") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    let manifest = dir.join("verifications.yaml");
    std::fs::write(
        &manifest,
        ["check-ok", "check-bad", "check-running"]
            .map(|n| VERIFICATION.replace("NAME", n))
            .join("---\n"),
    )
    .unwrap();
    let (ok, out) = kubectl(&kubeconfig, &["create", "-f", manifest.to_str().unwrap()]);
    assert!(ok, "{out}");
    // The operator's verification controller refuses all three at once (their backup
    // does not exist): wait for that final verdict, then give them the phases the
    // script's views are tested with.
    eventually(
        "the operator has refused the hand-made verifications",
        Duration::from_secs(60),
        || {
            let (ok, out) = kubectl(
                &kubeconfig,
                &[
                    "-n",
                    "bloodraven-playground",
                    "get",
                    "mysqlbackupverifications",
                    "-o",
                    "jsonpath={.items[*].status.phase}",
                ],
            );
            if ok && out.split_whitespace().filter(|p| *p == "Failed").count() >= 3 {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    set_phase(&kubeconfig, "check-ok", "Succeeded");
    set_phase(&kubeconfig, "check-bad", "Failed");
    set_phase(&kubeconfig, "check-running", "Running");
    let (ok, status) = script(&kubeconfig, "verify-backup.sh", &["status"]);
    assert!(ok, "{status}");
    for line in [
        ("check-ok", "Succeeded"),
        ("check-bad", "Failed"),
        ("check-running", "Running"),
    ] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(line.0) && l.contains(line.1) && l.contains("minio")),
            "{line:?} in:\n{status}"
        );
    }
    let names = || {
        kubectl(
            &kubeconfig,
            &[
                "-n",
                "bloodraven-playground",
                "get",
                "mysqlbackupverifications",
                "-o",
                "name",
            ],
        )
        .1
    };
    let (ok, out) = script(&kubeconfig, "verify-backup.sh", &["cleanup"]);
    assert!(ok, "{out}");
    let left = names();
    assert!(
        !left.contains("check-ok") && left.contains("check-bad") && left.contains("check-running"),
        "{left}"
    );
    let (ok, out) = script(&kubeconfig, "verify-backup.sh", &["cleanup", "--failed"]);
    assert!(ok, "{out}");
    let left = names();
    assert!(
        !left.contains("check-bad") && left.contains("check-running"),
        "{left}"
    );
    let (ok, out) = script(&kubeconfig, "verify-backup.sh", &["cleanup", "--failed"]);
    assert!(ok && out.contains("no Failed verifications"), "{out}");
    let (ok, out) = script(&kubeconfig, "verify-backup.sh", &["logs"]);
    assert!(
        !ok && out.contains("check-running") && out.contains("has no Job yet"),
        "{out}"
    );

    // reset-mysql.sh: a new group on new volumes, Healthy again.
    let before = group("{.metadata.uid}");
    let volumes = || {
        kubectl(
            &kubeconfig,
            &[
                "-n",
                "bloodraven-playground",
                "get",
                "pvc",
                "-l",
                "app.kubernetes.io/name=mysql",
                "-o",
                "jsonpath={.items[*].metadata.uid}",
            ],
        )
        .1
    };
    let old_volumes = volumes();
    assert!(!old_volumes.is_empty(), "no MySQL PVCs before the reset");
    let (ok, out) = script(&kubeconfig, "reset-mysql.sh", &[]);
    assert!(
        !ok && out.contains("--yes"),
        "refuses without a terminal: {out}"
    );
    let (ok, out) = script(
        &kubeconfig,
        "reset-mysql.sh",
        &["--yes", "--timeout", "240"],
    );
    assert!(ok && out.contains("is Healthy after"), "{out}");
    let after = group("{.metadata.uid}");
    assert!(!after.is_empty() && after != before, "{before} -> {after}");
    let new_volumes = volumes();
    assert!(
        old_volumes
            .split_whitespace()
            .all(|uid| !new_volumes.contains(uid)),
        "old volumes kept: {old_volumes} / {new_volumes}"
    );

    // teardown.sh: group, namespace, CRDs and site labels gone; the nodes stay.
    let (ok, out) = script(&kubeconfig, "teardown.sh", &[]);
    assert!(
        !ok && out.contains("--yes"),
        "refuses without a terminal: {out}"
    );
    let (ok, out) = script(&kubeconfig, "teardown.sh", &["--yes"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&kubeconfig, &["get", "namespace", "bloodraven-playground"]);
    assert!(!ok && out.contains("NotFound"), "{out}");
    let (ok, out) = kubectl(
        &kubeconfig,
        &["get", "crd", "mysqlfailovergroups.bloodraven.shipstream.io"],
    );
    assert!(!ok && out.contains("NotFound"), "{out}");
    let (ok, zones) = kubectl(
        &kubeconfig,
        &["get", "nodes", "-L", "topology.kubernetes.io/zone"],
    );
    assert!(ok && zones.contains("bloodraven-iad"), "{zones}");
    assert!(
        !zones.contains("zone-iad") && !zones.contains("zone-pdx"),
        "{zones}"
    );
}
