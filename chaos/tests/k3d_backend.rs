//! The k3d backend at its request boundary: for each fault, the exact Docker and
//! Kubernetes calls it makes and the calls that undo it (no Docker engine runs here, so
//! recording doubles stand in for bollard and kube).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use bloodraven_chaos::backend::k3d::{DockerApi, K3dBackend, K3dConfig, NodeApi, NodeInfo};
use bloodraven_chaos::backend::{Backend, BackendError, LedgerFaults};
use bloodraven_chaos::scenario::{Component, Fault};
use futures::future::BoxFuture;

#[derive(Default)]
struct Calls(Mutex<Vec<String>>);

impl Calls {
    fn push(&self, call: String) {
        self.0.lock().unwrap().push(call);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct RecordingDocker(Arc<Calls>);

impl DockerApi for RecordingDocker {
    fn stop_container<'a>(&'a self, c: &'a str) -> BoxFuture<'a, Result<(), String>> {
        self.0.push(format!("docker POST /containers/{c}/stop"));
        Box::pin(async { Ok(()) })
    }
    fn start_container<'a>(&'a self, c: &'a str) -> BoxFuture<'a, Result<(), String>> {
        self.0.push(format!("docker POST /containers/{c}/start"));
        Box::pin(async { Ok(()) })
    }
    fn disconnect_network<'a>(
        &'a self,
        n: &'a str,
        c: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.0
            .push(format!("docker POST /networks/{n}/disconnect {c}"));
        Box::pin(async { Ok(()) })
    }
    fn connect_network<'a>(&'a self, n: &'a str, c: &'a str) -> BoxFuture<'a, Result<(), String>> {
        self.0
            .push(format!("docker POST /networks/{n}/connect {c}"));
        Box::pin(async { Ok(()) })
    }
    fn exec<'a>(&'a self, c: &'a str, cmd: &'a [String]) -> BoxFuture<'a, Result<i64, String>> {
        self.0.push(format!("docker exec {c}: {}", cmd.join(" ")));
        // A rule deletion that finds no rule exits 1, as iptables does.
        let code = i64::from(cmd.iter().any(|a| a == "10.0.0.99"));
        Box::pin(async move { Ok(code) })
    }
}

struct RecordingNodes(Arc<Calls>);

impl NodeApi for RecordingNodes {
    fn nodes_with_label<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeInfo>, String>> {
        self.0
            .push(format!("kube GET /api/v1/nodes?labelSelector={selector}"));
        let nodes = match selector {
            "topology.kubernetes.io/zone=iad" => vec![NodeInfo {
                name: "k3d-bloodraven-agent-0".into(),
                internal_ip: Some("172.18.0.3".into()),
            }],
            "topology.kubernetes.io/zone=pdx" => vec![NodeInfo {
                name: "k3d-bloodraven-agent-1".into(),
                internal_ip: Some("172.18.0.4".into()),
            }],
            _ => vec![],
        };
        Box::pin(async move { Ok(nodes) })
    }
    fn delete_pods<'a>(
        &'a self,
        ns: &'a str,
        selector: &'a str,
        node: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, String>> {
        let node = node
            .map(|n| format!("&fieldSelector=spec.nodeName={n}"))
            .unwrap_or_default();
        self.0.push(format!(
            "kube DELETE pods -n {ns} labelSelector={selector}{node}"
        ));
        Box::pin(async { Ok(vec!["pod-0".into()]) })
    }
    fn set_unschedulable<'a>(
        &'a self,
        node: &'a str,
        unschedulable: bool,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.0.push(format!(
            "kube PATCH /api/v1/nodes/{node} {{\"spec\":{{\"unschedulable\":{unschedulable}}}}}"
        ));
        Box::pin(async { Ok(()) })
    }
    fn service_metrics<'a>(
        &'a self,
        ns: &'a str,
        svc: &'a str,
    ) -> BoxFuture<'a, Result<String, String>> {
        self.0.push(format!(
            "kube GET /api/v1/namespaces/{ns}/services/{svc}/proxy/metrics"
        ));
        Box::pin(async { Ok("up 1\n".into()) })
    }
}

fn backend() -> (K3dBackend, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let cluster = Arc::new(support::FakeCluster::default());
    let clock = Arc::new(support::TokioClock(tokio::time::Instant::now()));
    let b = K3dBackend::new(
        K3dConfig::default(),
        Arc::new(RecordingDocker(calls.clone())),
        Arc::new(RecordingNodes(calls.clone())),
        cluster,
        clock,
    );
    (b, calls)
}

/// Plans the fault, executes it, then executes its undo; returns (apply calls, undo calls)
/// without the read-only lookups made while planning.
async fn calls_for(fault: Fault) -> (Vec<String>, Vec<String>) {
    let (b, calls) = backend();
    let plan = b.plan_fault(&fault, "bloodraven-playground").await.unwrap();
    calls.take();
    b.execute(&plan.apply).await.unwrap();
    let apply = calls.take();
    b.execute(&plan.undo).await.unwrap();
    (apply, calls.take())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn kill_site_deletes_the_sites_pods_and_needs_no_undo() {
    let (apply, undo) = calls_for(Fault::KillSite("iad".into())).await;
    assert_eq!(
        apply,
        strings(&[
            "kube DELETE pods -n bloodraven-playground labelSelector=shipstream.io/site=iad"
        ])
    );
    assert!(undo.is_empty());
}

#[tokio::test]
async fn kill_pod_and_kill_dragonfly_select_the_component() {
    let (apply, _) = calls_for(Fault::KillPod {
        site: "pdx".into(),
        component: Component::Mysql,
    })
    .await;
    assert_eq!(
        apply,
        strings(&[
            "kube DELETE pods -n bloodraven-playground labelSelector=shipstream.io/site=pdx,app.kubernetes.io/name=mysql"
        ])
    );
    let (apply, _) = calls_for(Fault::KillDragonfly("iad".into())).await;
    assert_eq!(
        apply,
        strings(&[
            "kube DELETE pods -n bloodraven-playground labelSelector=shipstream.io/site=iad,app.kubernetes.io/name=dragonfly"
        ])
    );
}

#[tokio::test]
async fn kill_operator_deletes_the_operator_pod() {
    let (apply, undo) = calls_for(Fault::KillOperator {}).await;
    assert_eq!(
        apply,
        strings(&[
            "kube DELETE pods -n bloodraven-system labelSelector=app.kubernetes.io/name=bloodraven"
        ])
    );
    assert!(undo.is_empty());
}

#[tokio::test]
async fn cordon_cordons_and_evicts_and_is_undone_by_uncordon() {
    let (apply, undo) = calls_for(Fault::Cordon("iad".into())).await;
    assert_eq!(
        apply,
        strings(&[
            "kube PATCH /api/v1/nodes/k3d-bloodraven-agent-0 {\"spec\":{\"unschedulable\":true}}",
            "kube DELETE pods -n bloodraven-playground labelSelector=shipstream.io/site=iad&fieldSelector=spec.nodeName=k3d-bloodraven-agent-0",
        ])
    );
    assert_eq!(
        undo,
        strings(&[
            "kube PATCH /api/v1/nodes/k3d-bloodraven-agent-0 {\"spec\":{\"unschedulable\":false}}"
        ])
    );
    let (apply, undo) = calls_for(Fault::Uncordon("iad".into())).await;
    assert_eq!(
        apply,
        strings(&[
            "kube PATCH /api/v1/nodes/k3d-bloodraven-agent-0 {\"spec\":{\"unschedulable\":false}}"
        ])
    );
    assert!(undo.is_empty());
}

#[tokio::test]
async fn node_crash_stops_and_restarts_the_node_container() {
    let (apply, undo) = calls_for(Fault::NodeCrash("pdx".into())).await;
    assert_eq!(
        apply,
        strings(&["docker POST /containers/k3d-bloodraven-agent-1/stop"])
    );
    assert_eq!(
        undo,
        strings(&["docker POST /containers/k3d-bloodraven-agent-1/start"])
    );
}

#[tokio::test]
async fn network_partition_disconnects_and_reconnects_the_node() {
    let (apply, undo) = calls_for(Fault::NetworkPartition("iad".into())).await;
    assert_eq!(
        apply,
        strings(&["docker POST /networks/k3d-bloodraven/disconnect k3d-bloodraven-agent-0"])
    );
    assert_eq!(
        undo,
        strings(&["docker POST /networks/k3d-bloodraven/connect k3d-bloodraven-agent-0"])
    );
}

#[tokio::test]
async fn partition_between_sites_inserts_and_deletes_iptables_rules_on_both_sides() {
    let (apply, undo) = calls_for(Fault::Partition {
        between: ["iad".into(), "pdx".into()],
    })
    .await;
    assert_eq!(
        apply,
        strings(&[
            "docker exec k3d-bloodraven-agent-0: iptables -w -I INPUT -s 172.18.0.4 -j DROP",
            "docker exec k3d-bloodraven-agent-0: iptables -w -I OUTPUT -d 172.18.0.4 -j DROP",
            "docker exec k3d-bloodraven-agent-1: iptables -w -I INPUT -s 172.18.0.3 -j DROP",
            "docker exec k3d-bloodraven-agent-1: iptables -w -I OUTPUT -d 172.18.0.3 -j DROP",
        ])
    );
    assert_eq!(
        undo,
        strings(&[
            "docker exec k3d-bloodraven-agent-0: iptables -w -D INPUT -s 172.18.0.4 -j DROP",
            "docker exec k3d-bloodraven-agent-0: iptables -w -D OUTPUT -d 172.18.0.4 -j DROP",
            "docker exec k3d-bloodraven-agent-1: iptables -w -D INPUT -s 172.18.0.3 -j DROP",
            "docker exec k3d-bloodraven-agent-1: iptables -w -D OUTPUT -d 172.18.0.3 -j DROP",
        ])
    );
}

#[tokio::test]
async fn planning_reads_nodes_but_changes_nothing() {
    let (b, calls) = backend();
    let plan = b
        .plan_fault(&Fault::NodeCrash("iad".into()), "ns")
        .await
        .unwrap();
    assert_eq!(
        calls.take(),
        strings(&["kube GET /api/v1/nodes?labelSelector=topology.kubernetes.io/zone=iad"])
    );
    // The undo is data the ledger can store and another process can replay.
    assert_eq!(
        plan.undo,
        vec![serde_json::json!({"op": "start-container", "container": "k3d-bloodraven-agent-0"})]
    );
}

#[tokio::test]
async fn a_site_without_nodes_and_unsupported_faults_are_clear_errors() {
    let (b, _) = backend();
    let err = b
        .plan_fault(&Fault::NodeCrash("sfo".into()), "ns")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "k3d backend: site \"sfo\" has no node (looked for nodes labelled topology.kubernetes.io/zone=sfo)"
    );
    let err = b
        .plan_fault(
            &Fault::WriteDivergent {
                site: "iad".into(),
                transactions: 3,
            },
            "ns",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::UnsupportedFault { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("k3d backend cannot inject `write-divergent iad x3`"),
        "{err}"
    );
}

#[tokio::test]
async fn failing_exec_and_unknown_ledger_ops_are_errors() {
    let (b, _) = backend();
    let op = serde_json::json!({"op": "exec", "container": "n", "cmd": ["iptables", "-D", "INPUT", "-s", "10.0.0.99"]});
    let err = b.execute(&[op]).await.unwrap_err();
    assert!(err.to_string().contains("exited with 1"), "{err}");
    let err = b
        .execute(&[serde_json::json!({"op": "reboot-datacenter"})])
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::BadOperation { .. }), "{err}");
}

#[tokio::test]
async fn metrics_are_scraped_through_the_api_server_proxy() {
    let (b, calls) = backend();
    assert_eq!(b.scrape_metrics().await.unwrap(), "up 1\n");
    assert_eq!(
        calls.take(),
        strings(&[
            "kube GET /api/v1/namespaces/bloodraven-system/services/bloodraven-metrics:8080/proxy/metrics"
        ])
    );
}

#[tokio::test]
async fn disable_sidecar_stops_the_sites_sidecar_process_in_its_node_and_continues_it() {
    let (apply, undo) = calls_for(Fault::DisableSidecar("pdx".into())).await;
    let stop = bloodraven_chaos::backend::k3d::sidecar_signal_command("pdx", "STOP", true);
    let cont = bloodraven_chaos::backend::k3d::sidecar_signal_command("pdx", "CONT", false);
    assert_eq!(
        apply,
        vec![format!(
            "docker exec k3d-bloodraven-agent-1: {}",
            stop.join(" ")
        )]
    );
    assert_eq!(
        undo,
        vec![format!(
            "docker exec k3d-bloodraven-agent-1: {}",
            cont.join(" ")
        )]
    );
    assert_eq!(stop[..2], ["sh", "-c"]);
    assert!(stop[2].contains("kill -STOP") && stop[2].contains("--site=pdx"));
    assert!(
        stop[2].ends_with("exit 1; }"),
        "the fault fails when no sidecar is found"
    );
    assert!(cont[2].contains("kill -CONT") && cont[2].ends_with("true"));
}

/// The script itself, run by this machine's sh against a stand-in process whose command
/// line looks like the sidecar's: it is stopped (state T), then continued, and a site
/// with no sidecar is an error for the fault but not for its undo.
#[cfg(target_os = "linux")]
#[test]
fn sidecar_signal_script_stops_and_continues_only_the_matching_process() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("bloodraven");
    std::fs::write(&fake, "#!/bin/sh\nsleep 30\n").unwrap();
    let site = format!("test{}", std::process::id());
    // Its own process group, so that the script's `sleep` dies with it at the end
    // (killing only the shell would leave the sleep holding the test's pipes).
    let mut child = std::os::unix::process::CommandExt::process_group(
        Command::new("sh")
            .arg(&fake)
            .args([
                "sidecar",
                "--group=playground",
                &format!("--site={site}"),
                "--mysql-port=3306",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
        0,
    )
    .spawn()
    .unwrap();
    let pid = child.id();
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    // Wait until the shell has exec'd into its command line.
    for _ in 0..100 {
        if std::fs::read(format!("/proc/{pid}/cmdline")).unwrap().len() > 10 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let run = |cmd: Vec<String>| Command::new(&cmd[0]).args(&cmd[1..]).output().unwrap();
    use bloodraven_chaos::backend::k3d::sidecar_signal_command;
    let stopped = run(sidecar_signal_command(&site, "STOP", true));
    assert!(stopped.status.success(), "{stopped:?}");
    assert_eq!(state(), "T");
    let continued = run(sidecar_signal_command(&site, "CONT", false));
    assert!(continued.status.success(), "{continued:?}");
    assert_ne!(state(), "T");
    let missing = run(sidecar_signal_command("nosuchsite", "STOP", true));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no sidecar process for site nosuchsite")
    );
    assert!(
        run(sidecar_signal_command("nosuchsite", "CONT", false))
            .status
            .success()
    );
    // The shell's own `kill` (a fresh Debian machine may lack procps' /usr/bin/kill).
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -KILL -{pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap();
}
