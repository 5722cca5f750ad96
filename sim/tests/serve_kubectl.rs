#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Serve mode against the real kubectl: the simulated playground in real time must
//! answer `get nodes/pods -o wide`, `cordon`/`uncordon`, `delete pod` (recreated by its
//! StatefulSet), `get events --sort-by=.lastTimestamp` (in order, ages relative to now),
//! `create namespace|secret|configmap|job --from=cronjob` (sent as protobuf) and `logs`;
//! the guide's pod-kill walkthrough must fail over, and its backup verification run from
//! `kubectl create job verify-now --from=cronjob/mysql-playground-verify-minio`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

#[test]
fn kubectl_works_against_serve_mode() {
    support::kubectl();
    let dir = tempfile_dir();
    let kubeconfig = dir.join("kubeconfig");
    let manifest = dir.join("web.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_bloodraven-sim"))
        .args([
            "serve",
            "--port",
            "0",
            "--seed",
            "5",
            "--duration-seconds",
            "600",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--apply")
        .arg(&manifest)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    eventually("kubeconfig written", Duration::from_secs(120), || {
        if kubeconfig.exists() {
            Ok(())
        } else {
            Err("no kubeconfig yet".into())
        }
    });

    let (ok, nodes) = kubectl(&kubeconfig, &["get", "nodes", "-o", "wide"]);
    assert!(ok, "{nodes}");
    for expected in [
        "bloodraven-control-plane",
        "bloodraven-iad",
        "bloodraven-pdx",
        "Ready",
        "192.168.",
    ] {
        assert!(
            nodes.contains(expected),
            "missing {expected:?} in:\n{nodes}"
        );
    }
    let (ok, zoned) = kubectl(
        &kubeconfig,
        &[
            "get",
            "nodes",
            "-l",
            "topology.kubernetes.io/zone=zone-iad",
            "-o",
            "name",
        ],
    );
    assert!(ok && zoned.trim() == "node/bloodraven-iad", "{zoned}");

    eventually("web pods running", Duration::from_secs(120), || {
        let (_, pods) = kubectl(&kubeconfig, &["get", "pods", "-o", "wide"]);
        if pods.matches("Running").count() == 2 && pods.contains("bloodraven-iad") {
            Ok(())
        } else {
            Err(pods)
        }
    });

    let (ok, out) = kubectl(&kubeconfig, &["cordon", "bloodraven-iad"]);
    assert!(ok, "{out}");
    let (_, nodes) = kubectl(&kubeconfig, &["get", "nodes"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    let (ok, out) = kubectl(&kubeconfig, &["uncordon", "bloodraven-iad"]);
    assert!(ok, "{out}");
    let (_, nodes) = kubectl(&kubeconfig, &["get", "nodes"]);
    assert!(!nodes.contains("SchedulingDisabled"), "{nodes}");

    let (_, before) = kubectl(
        &kubeconfig,
        &["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}"],
    );
    let (ok, out) = kubectl(
        &kubeconfig,
        &["delete", "pod", "web-0", "--wait=true", "--timeout=120s"],
    );
    assert!(ok, "{out}");
    eventually(
        "web-0 recreated by its StatefulSet",
        Duration::from_secs(120),
        || {
            let (_, uid) = kubectl(
                &kubeconfig,
                &["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}"],
            );
            let (_, phase) = kubectl(
                &kubeconfig,
                &["get", "pod", "web-0", "-o", "jsonpath={.status.phase}"],
            );
            if !uid.is_empty() && uid != before && phase == "Running" {
                Ok(())
            } else {
                Err(format!("{uid} {phase}"))
            }
        },
    );

    let (ok, events) = kubectl(&kubeconfig, &["get", "events", "--sort-by=.lastTimestamp"]);
    assert!(ok, "{events}");
    for expected in ["Scheduled", "Started", "Killing", "SuccessfulCreate"] {
        assert!(
            events.contains(expected),
            "missing {expected:?} in:\n{events}"
        );
    }
    let (ok, stamps) = kubectl(
        &kubeconfig,
        &[
            "get",
            "events",
            "--sort-by=.lastTimestamp",
            "-o",
            "jsonpath={range .items[*]}{.lastTimestamp}{\"\\n\"}{end}",
        ],
    );
    assert!(ok, "{stamps}");
    let stamps: Vec<&str> = stamps.lines().collect();
    assert!(
        stamps.len() > 4 && stamps.iter().all(|s| !s.is_empty()),
        "{stamps:?}"
    );
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "not in order: {stamps:?}"
    );
    // The serve-mode clock starts at the real current time: the newest event is seconds
    // old, not hundreds of days.
    let newest = jiff::Timestamp::from_str(stamps.last().unwrap()).unwrap();
    let age = jiff::Timestamp::now().as_second() - newest.as_second();
    assert!((-5..300).contains(&age), "newest event is {age}s old");

    // kubectl's typed clients send these as protobuf.
    let creates: &[&[&str]] = &[
        &["create", "namespace", "x"],
        &[
            "-n",
            "x",
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=hunter2",
        ],
        &[
            "-n",
            "x",
            "create",
            "configmap",
            "settings",
            "--from-literal=mode=demo",
        ],
        &[
            "-n",
            "x",
            "create",
            "cronjob",
            "nightly",
            "--image=bloodraven.sim/job",
            "--schedule=0 3 * * *",
        ],
        &["-n", "x", "create", "job", "now", "--from=cronjob/nightly"],
    ];
    for args in creates {
        let (ok, out) = kubectl(&kubeconfig, args);
        assert!(ok, "kubectl {args:?}: {out}");
    }
    let (_, secret) = kubectl(
        &kubeconfig,
        &[
            "-n",
            "x",
            "get",
            "secret",
            "creds",
            "-o",
            "jsonpath={.data.password}",
        ],
    );
    assert_eq!(secret, "aHVudGVyMg==");
    let (_, owner) = kubectl(
        &kubeconfig,
        &[
            "-n",
            "x",
            "get",
            "job",
            "now",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
    );
    assert!(
        owner.contains("cronjob.kubernetes.io/instantiate"),
        "{owner}"
    );
    eventually(
        "the job from the cronjob completes",
        Duration::from_secs(60),
        || {
            let (_, status) = kubectl(
                &kubeconfig,
                &[
                    "-n",
                    "x",
                    "get",
                    "job",
                    "now",
                    "-o",
                    "jsonpath={.status.succeeded}",
                ],
            );
            if status == "1" { Ok(()) } else { Err(status) }
        },
    );

    let (ok, logs) = kubectl(&kubeconfig, &["logs", "web-0", "--timestamps"]);
    assert!(ok, "{logs}");
    assert!(logs.contains("Bind") && logs.contains("7000"), "{logs}");
    let (ok, missing) = kubectl(&kubeconfig, &["logs", "web-0", "-c", "nope"]);
    assert!(!ok && missing.contains("not valid"), "{missing}");
}

/// The guide's "Try a failover": kill the primary's pods; the operator detects the
/// outage and fails over to pdx, because mysqld takes seconds to come back.
#[test]
fn playground_pod_kill_fails_over() {
    support::kubectl();
    let dir = tempfile_dir().join("playground");
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/playground.yaml");
    let child = Command::new(env!("CARGO_BIN_EXE_bloodraven-sim"))
        .args([
            "serve",
            "--port",
            "0",
            "--seed",
            "3",
            "--duration-seconds",
            "600",
            "--bloodraven",
            "--operator-namespace",
            "bloodraven-playground",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--apply")
        .arg(&manifest)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
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
        "the group is Healthy on iad",
        Duration::from_secs(120),
        || {
            let (active, ready) = (
                group("{.status.activeSite}"),
                group("{.status.conditions[?(@.type==\"Ready\")].reason}"),
            );
            if active == "iad" && ready == "Healthy" {
                Ok(())
            } else {
                Err(format!("{active} {ready}"))
            }
        },
    );
    let (ok, out) = kubectl(
        &kubeconfig,
        &[
            "delete",
            "pod",
            "-n",
            "bloodraven-playground",
            "-l",
            "shipstream.io/site=iad",
        ],
    );
    assert!(ok, "{out}");
    eventually("failover to pdx", Duration::from_secs(90), || {
        let (active, ready) = (
            group("{.status.activeSite}"),
            group("{.status.conditions[?(@.type==\"Ready\")].reason}"),
        );
        if active == "pdx" && ready == "Healthy" {
            Ok(())
        } else {
            Err(format!("{active} {ready}"))
        }
    });
    let (ok, events) = kubectl(
        &kubeconfig,
        &[
            "-n",
            "bloodraven-playground",
            "get",
            "events",
            "--sort-by=.lastTimestamp",
        ],
    );
    assert!(ok, "{events}");
    let started = events
        .find("FailoverStarted")
        .expect("FailoverStarted event");
    let succeeded = events
        .find("FailoverSucceeded")
        .expect("FailoverSucceeded event");
    assert!(started < succeeded, "{events}");
    // The operator's own output, as `kubectl logs -l` shows it.
    let (ok, logs) = kubectl(
        &kubeconfig,
        &[
            "-n",
            "bloodraven-playground",
            "logs",
            "-l",
            "app.kubernetes.io/name=bloodraven",
            "--tail=-1",
        ],
    );
    assert!(ok && logs.contains("bloodraven::controllers"), "{logs}");
}

/// The guide's "Exercise backup verification": fire the operator's verification CronJob
/// as a one-off Job with `kubectl create job verify-now --from=cronjob/...`; its
/// trigger-verification creates a MysqlBackupVerification of the latest backup, with the
/// profile's sanity check copied on, and the verification controller runs it to
/// Succeeded.
#[test]
fn playground_verification_runs_from_its_cronjob() {
    support::kubectl();
    let dir = tempfile_dir().join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let child = Command::new(env!("CARGO_BIN_EXE_bloodraven-sim"))
        .args([
            "serve",
            "--port",
            "0",
            "--seed",
            "4",
            "--duration-seconds",
            "600",
            "--bloodraven",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--apply")
        .arg(examples.join("playground.yaml"))
        .arg("--apply")
        .arg(examples.join("playground-minio.yaml"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    eventually("kubeconfig written", Duration::from_secs(120), || {
        if kubeconfig.exists() {
            Ok(())
        } else {
            Err("no kubeconfig yet".into())
        }
    });
    let ns = |args: &[&str]| {
        let mut all = vec!["-n", "bloodraven-playground"];
        all.extend_from_slice(args);
        kubectl(&kubeconfig, &all)
    };
    eventually("the group is Healthy", Duration::from_secs(120), || {
        let (_, ready) = ns(&[
            "get",
            "mysqlfailovergroup",
            "playground",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
        ]);
        if ready == "Healthy" {
            Ok(())
        } else {
            Err(ready)
        }
    });
    // The playground's sanity query reads the counter app's `counter.counters`; serve
    // mode runs no counter app and the MySQL model's one table is
    // `bloodraven_counter.counters`, so the profile's query is pointed there.
    let (ok, out) = ns(&[
        "patch",
        "mysqlfailovergroup",
        "playground",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/backup/profiles/0/verification/sanityCheck", "value": {"query": "SELECT value FROM bloodraven_counter.counters WHERE name = 'main'", "expectRows": 0}}]"#,
    ]);
    assert!(ok, "{out}");
    let backup = dir.join("backup.yaml");
    std::fs::write(
        &backup,
        "apiVersion: bloodraven.shipstream.io/v1alpha1\nkind: MysqlBackup\nmetadata: {name: by-hand, namespace: bloodraven-playground}\nspec: {group: playground, profile: minio}\n",
    )
    .unwrap();
    let (ok, out) = kubectl(&kubeconfig, &["apply", "-f", backup.to_str().unwrap()]);
    assert!(ok, "{out}");
    eventually("the backup succeeds", Duration::from_secs(120), || {
        let (_, phase) = ns(&[
            "get",
            "mysqlbackup",
            "by-hand",
            "-o",
            "jsonpath={.status.phase}",
        ]);
        if phase == "Succeeded" {
            Ok(())
        } else {
            Err(phase)
        }
    });
    let (ok, out) = ns(&[
        "create",
        "job",
        "verify-now",
        "--from=cronjob/mysql-playground-verify-minio",
    ]);
    assert!(ok, "{out}");
    eventually("verify-now completes", Duration::from_secs(60), || {
        let (_, status) = ns(&[
            "get",
            "job",
            "verify-now",
            "-o",
            "jsonpath={.status.succeeded}",
        ]);
        if status == "1" { Ok(()) } else { Err(status) }
    });
    eventually(
        "its MysqlBackupVerification succeeds",
        Duration::from_secs(120),
        || {
            let (_, found) = ns(&[
                "get",
                "mysqlbackupverifications",
                "-o",
                "jsonpath={range .items[*]}{.status.phase} {.status.backup} {.status.result} {.spec.sanityCheck.query}{\"\\n\"}{end}",
            ]);
            let line = found.trim();
            if line.starts_with("Succeeded by-hand Passed SELECT value FROM bloodraven_counter") {
                Ok(())
            } else {
                Err(found)
            }
        },
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bloodraven-sim-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 7000
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  replicas: 2
  serviceName: web
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      nodeSelector:
        topology.kubernetes.io/zone: zone-iad
      containers:
      - name: echo
        image: bloodraven.sim/echo:1
        env:
        - name: PORT
          value: "7000"
"#;
