#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The real kubectl against the simulated API server on 127.0.0.1: discovery, tables,
//! apply (client-side, strategic merge for built-ins), annotate, label, delete,
//! describe, events sorted by time, and CRD printer columns.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use bloodraven::seams::Clock;
use bloodraven_sim::apiserver::{ApiServer, Caller, Patch, ResourceKey, Subresource};
use serde_json::json;

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        "2025-01-01T00:00:00Z".parse().unwrap()
    }
}

struct Harness {
    api: ApiServer,
    dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Harness {
    fn start() -> Self {
        support::kubectl();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let api = ApiServer::new(Arc::new(FixedClock));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(api.clone().serve(listener));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\n\
             current-context: sim\nusers:\n- name: sim\n  user: {{}}\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
        Harness {
            api,
            dir,
            _runtime: runtime,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs kubectl; panics with its output if it fails.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(
            code,
            0,
            "kubectl {} failed:\nstdout:\n{out}\nstderr:\n{err}",
            args.join(" ")
        );
        out
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(support::kubectl())
            .args(args)
            .arg("--kubeconfig")
            .arg(self.path("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.path("cache"))
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// A node and a scheduled, running pod, written the way the simulated kubelet will.
    fn seed_node_and_pod(&self) {
        let who = Caller {
            user_agent: "kubelet/v1.33.0",
        };
        self.api
            .create(
                &ResourceKey::core("v1", "nodes"),
                None,
                json!({"metadata": {"name": "node-iad", "labels": {"topology.kubernetes.io/zone": "zone-iad", "node-role.kubernetes.io/worker": ""}},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                  "addresses": [{"type": "InternalIP", "address": "10.0.1.1"}],
                                  "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "sim", "kernelVersion": "6.0", "containerRuntimeVersion": "sim://1"}}}),
                &who,
            )
            .unwrap();
        let pods = ResourceKey::core("v1", "pods");
        let pod = self
            .api
            .create(
                &pods,
                Some("default"),
                json!({"metadata": {"name": "mysql-iad-0", "labels": {"app": "mysql"}},
                       "spec": {"nodeName": "node-iad", "containers": [{"name": "mysql", "image": "mysql:8.4"}]}}),
                &who,
            )
            .unwrap();
        let mut status = pod.clone();
        status["status"] = json!({"phase": "Running", "podIP": "10.244.1.5",
            "containerStatuses": [{"name": "mysql", "ready": true, "restartCount": 2, "image": "mysql:8.4", "imageID": "", "state": {"running": {}}}]});
        self.api
            .update_status(&pods, Some("default"), status, &who)
            .unwrap();
    }
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn get_nodes_and_pods_wide_yaml_and_jsonpath() {
    let h = Harness::start();
    h.seed_node_and_pod();
    let nodes = h.ok(&["get", "nodes", "-o", "wide"]);
    let header = columns(nodes.lines().next().unwrap());
    assert_eq!(
        &header[..5],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{nodes}"
    );
    assert!(header.contains(&"INTERNAL-IP"), "{nodes}");
    assert_eq!(
        &columns(line_with(&nodes, "node-iad"))[..5],
        ["node-iad", "Ready", "worker", "0s", "v1.33.0"]
    );

    let pods = h.ok(&["get", "pods"]);
    assert_eq!(
        columns(pods.lines().next().unwrap()),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    assert_eq!(
        columns(line_with(&pods, "mysql-iad-0")),
        ["mysql-iad-0", "1/1", "Running", "2", "0s"]
    );
    let wide = h.ok(&["get", "pods", "-o", "wide"]);
    let row = columns(line_with(&wide, "mysql-iad-0"));
    assert_eq!(&row[5..7], ["10.244.1.5", "node-iad"], "{wide}");

    let yaml = h.ok(&["get", "pod", "mysql-iad-0", "-o", "yaml"]);
    assert!(yaml.contains("nodeName: node-iad"), "{yaml}");
    assert!(yaml.contains("kind: Pod"), "{yaml}");
    let ip = h.ok(&[
        "get",
        "pod",
        "mysql-iad-0",
        "-o",
        "jsonpath={.status.podIP}",
    ]);
    assert_eq!(ip, "10.244.1.5");
    let names = h.ok(&["get", "po", "-l", "app=mysql", "-o", "name"]);
    assert_eq!(names.trim(), "pod/mysql-iad-0");
    let by_node = h.ok(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "spec.nodeName=node-iad",
        "-o",
        "name",
    ]);
    assert_eq!(by_node.trim(), "pod/mysql-iad-0");
}

#[test]
fn apply_annotate_label_delete() {
    let h = Harness::start();
    let manifest = h.write(
        "app.yaml",
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: "1"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: counter
spec:
  replicas: 1
  selector:
    matchLabels: {app: counter}
  template:
    metadata:
      labels: {app: counter}
    spec:
      containers:
      - name: app
        image: counter:1
"#,
    );
    let out = h.ok(&["apply", "-f", &manifest]);
    assert!(
        out.contains("configmap/settings created")
            && out.contains("deployment.apps/counter created"),
        "{out}"
    );
    // Re-apply with a change: client-side apply patches (strategic merge for built-ins).
    let changed = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("a: \"1\"", "a: \"2\"")
        .replace("counter:1", "counter:2");
    std::fs::write(&manifest, changed).unwrap();
    let out = h.ok(&["apply", "-f", &manifest]);
    assert!(
        out.contains("configmap/settings configured")
            && out.contains("deployment.apps/counter configured"),
        "{out}"
    );
    assert_eq!(
        h.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.a}"]),
        "2"
    );
    assert_eq!(
        h.ok(&[
            "get",
            "deploy",
            "counter",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "counter:2"
    );
    assert_eq!(
        h.ok(&[
            "get",
            "deploy",
            "counter",
            "-o",
            "jsonpath={.metadata.generation}"
        ]),
        "2"
    );

    h.ok(&[
        "annotate",
        "cm",
        "settings",
        "bloodraven.shipstream.io/planned-failover=pdx",
    ]);
    h.ok(&["label", "cm", "settings", "tier=db"]);
    let obj = h.ok(&["get", "cm", "settings", "-o", "json"]);
    let obj: serde_json::Value = serde_json::from_str(&obj).unwrap();
    assert_eq!(
        obj["metadata"]["annotations"]["bloodraven.shipstream.io/planned-failover"],
        "pdx"
    );
    assert_eq!(obj["metadata"]["labels"]["tier"], "db");
    assert_eq!(
        h.ok(&["get", "cm", "-l", "tier=db", "-o", "name"]).trim(),
        "configmap/settings"
    );
    let (code, _, err) = h.run(&[
        "annotate",
        "cm",
        "settings",
        "bloodraven.shipstream.io/planned-failover=iad",
    ]);
    assert_ne!(
        code, 0,
        "annotate without --overwrite must refuse to change a value"
    );
    assert!(err.contains("already has a value"), "{err}");

    let out = h.ok(&["delete", "cm", "settings"]);
    assert!(out.contains("configmap \"settings\" deleted"), "{out}");
    let (code, _, err) = h.run(&["get", "cm", "settings"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn describe_and_events_sorted_by_time() {
    let h = Harness::start();
    h.seed_node_and_pod();
    let events = ResourceKey::core("v1", "events");
    let who = Caller {
        user_agent: "bloodraven/0.1",
    };
    let pod = h
        .api
        .get(
            &ResourceKey::core("v1", "pods"),
            Some("default"),
            "mysql-iad-0",
        )
        .unwrap();
    let uid = pod["metadata"]["uid"].clone();
    for (name, reason, time, message) in [
        (
            "e2",
            "FailoverCompleted",
            "2025-01-01T00:00:00Z",
            "pdx promoted",
        ),
        (
            "e1",
            "FailoverStarted",
            "2024-12-31T23:59:00Z",
            "iad unreachable",
        ),
    ] {
        h.api
            .create(
                &events,
                Some("default"),
                json!({"metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": "mysql-iad-0", "namespace": "default", "apiVersion": "v1", "uid": uid},
                       "reason": reason, "message": message, "type": "Warning", "source": {"component": "bloodraven"},
                       "firstTimestamp": time, "lastTimestamp": time, "count": 1}),
                &who,
            )
            .unwrap();
    }
    let out = h.ok(&["get", "events", "--sort-by=.lastTimestamp"]);
    let started = out
        .find("FailoverStarted")
        .unwrap_or_else(|| panic!("{out}"));
    let completed = out.find("FailoverCompleted").unwrap();
    assert!(started < completed, "sorted by lastTimestamp:\n{out}");
    assert!(
        line_with(&out, "FailoverStarted").contains("pod/mysql-iad-0"),
        "{out}"
    );

    let out = h.ok(&["describe", "pod", "mysql-iad-0"]);
    assert!(out.contains("Node:") && out.contains("node-iad"), "{out}");
    assert!(out.contains("IP:") && out.contains("10.244.1.5"), "{out}");
    assert!(
        out.contains("FailoverStarted") && out.contains("iad unreachable"),
        "describe shows the pod's events:\n{out}"
    );
}

#[test]
fn crd_printer_columns_in_kubectl_get() {
    let h = Harness::start();
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/bloodraven/crds/bloodraven-crds.yaml");
    h.ok(&["apply", "-f", crds.to_str().unwrap()]);
    let group = h.write(
        "group.yaml",
        r#"apiVersion: bloodraven.shipstream.io/v1alpha1
kind: MysqlFailoverGroup
metadata:
  name: playground
spec:
  sites:
  - name: iad
    nodeSelector: {zone: iad}
  - name: pdx
    nodeSelector: {zone: pdx}
  mysql:
    credentialsSecret: creds
"#,
    );
    h.ok(&["apply", "-f", &group]);
    let status = json!({"status": {"activeSite": "iad", "health": "Healthy", "sites": [{"name": "iad", "state": "writable"}, {"name": "pdx", "state": "read-only"}]}});
    // Through the in-process API: `kubectl patch --subresource` needs kubectl 1.24+,
    // and Debian's kubectl is 1.20 (the status subresource over HTTP is covered by
    // apiserver_http and the conformance tests).
    h.api
        .patch(
            &ResourceKey::new(
                "bloodraven.shipstream.io",
                "v1alpha1",
                "mysqlfailovergroups",
            ),
            Some("default"),
            "playground",
            Patch::Merge(status),
            Subresource::Status,
            &Caller::IN_PROCESS,
        )
        .unwrap();
    let out = h.ok(&["get", "mfg"]);
    assert_eq!(
        columns(out.lines().next().unwrap()),
        ["NAME", "ACTIVE", "HEALTH", "PLANNED", "AGE"],
        "{out}"
    );
    assert_eq!(
        columns(line_with(&out, "playground")),
        ["playground", "iad", "Healthy", "0s"],
        "an absent column is blank:\n{out}"
    );
    let wide = h.ok(&["get", "mysqlfailovergroup", "-o", "wide"]);
    assert!(
        columns(wide.lines().next().unwrap()).contains(&"STATE-2"),
        "{wide}"
    );
    assert!(
        line_with(&wide, "playground").contains("read-only"),
        "{wide}"
    );
    // A schema violation comes back as kubectl prints a 422.
    let bad = h.write(
        "bad.yaml",
        &std::fs::read_to_string(h.path("group.yaml"))
            .unwrap()
            .replace("name: pdx", "name: PDX!"),
    );
    let (code, _, err) = h.run(&["apply", "-f", &bad]);
    assert_ne!(code, 0);
    assert!(err.contains("spec.sites[1].name"), "{err}");
}
