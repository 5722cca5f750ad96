//! The k3d backend at its request boundary: for each fault, the exact Docker and
//! Kubernetes calls it makes and the calls that undo it (no Docker engine runs here, so
//! recording doubles stand in for bollard and kube).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bloodraven_chaos::backend::k3d::preflight::PreflightError;
use bloodraven_chaos::backend::k3d::{
    DockerApi, DockerError, ExecOutput, K3dBackend, K3dConfig, NetworkEndpoint, NodeApi, NodeInfo,
    PodRef,
};
use bloodraven_chaos::backend::{Backend, BackendError, LedgerFaults};
use bloodraven_chaos::cluster::ClusterError;
use bloodraven_chaos::scenario::{Component, Fault};
use futures::future::BoxFuture;

/// Recorded calls, the operator's pods, and why Docker is down (`None`: it answers).
struct Calls(Mutex<Vec<String>>, Mutex<Operators>, Mutex<Option<String>>);

/// The operator's pods (namespace, name), the node they run on, and its
/// leader-election Lease's holder.
struct Operators {
    pods: Vec<(&'static str, &'static str)>,
    node: &'static str,
    holder: Option<&'static str>,
}

/// The playground's k3s server (control-plane) node.
const SERVER: &str = "k3d-bloodraven-server-0";

impl Default for Calls {
    fn default() -> Self {
        // The playground: one operator replica, in bloodraven-playground.
        Self(
            Mutex::default(),
            Mutex::new(Operators {
                pods: vec![("bloodraven-playground", "bloodraven-7d9f-abcde")],
                node: SERVER,
                holder: Some("bloodraven-7d9f-abcde"),
            }),
            Mutex::default(),
        )
    }
}

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
    fn ping(&self) -> BoxFuture<'_, Result<(), DockerError>> {
        self.0.push("docker GET /_ping".into());
        let down = self.0.2.lock().unwrap().clone();
        Box::pin(async move {
            down.map_or(Ok(()), |message| {
                Err(DockerError::Transport {
                    call: "GET /_ping",
                    object: "(daemon)".into(),
                    message,
                })
            })
        })
    }
    fn kill_container<'a>(&'a self, c: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        self.0
            .push(format!("docker POST /containers/{c}/kill?signal=SIGKILL"));
        Box::pin(async { Ok(()) })
    }
    fn start_container<'a>(&'a self, c: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        self.0.push(format!("docker POST /containers/{c}/start"));
        Box::pin(async { Ok(()) })
    }
    fn disconnect_network<'a>(
        &'a self,
        n: &'a str,
        c: &'a str,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        self.0
            .push(format!("docker POST /networks/{n}/disconnect {c}"));
        Box::pin(async { Ok(()) })
    }
    fn connect_network<'a>(
        &'a self,
        n: &'a str,
        c: &'a str,
        endpoint: Option<&'a NetworkEndpoint>,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        let endpoint = endpoint
            .map(|e| format!(" IPv4Address={:?} Aliases={:?}", e.ipv4_address, e.aliases))
            .unwrap_or_default();
        self.0
            .push(format!("docker POST /networks/{n}/connect {c}{endpoint}"));
        Box::pin(async { Ok(()) })
    }
    fn network_endpoint<'a>(
        &'a self,
        n: &'a str,
        c: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkEndpoint>, DockerError>> {
        self.0
            .push(format!("docker GET /containers/{c}/json (network {n})"));
        // An agent: Docker gave it a dynamic address and k3d its node-name alias.
        let endpoint = (n == "k3d-bloodraven").then(|| NetworkEndpoint {
            ipv4_address: Some("172.18.0.3".into()),
            aliases: vec![c.to_owned(), "5f2c9a1b7d3e".into()],
        });
        Box::pin(async move { Ok(endpoint) })
    }
    fn exec<'a>(
        &'a self,
        c: &'a str,
        cmd: &'a [String],
        _env: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, DockerError>> {
        self.0.push(format!("docker exec {c}: {}", cmd.join(" ")));
        // A rule deletion that finds no rule exits 1, as iptables does.
        let missing = cmd.iter().any(|a| a == "10.0.0.99");
        let out = ExecOutput {
            exit_code: i64::from(missing),
            stdout: String::new(),
            stderr: if missing {
                "iptables: Bad rule (does a matching rule exist in that chain?).\n".into()
            } else {
                String::new()
            },
        };
        Box::pin(async move { Ok(out) })
    }
}

struct RecordingNodes(Arc<Calls>);

impl NodeApi for RecordingNodes {
    fn nodes_with_label<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeInfo>, ClusterError>> {
        self.0
            .push(format!("kube GET /api/v1/nodes?labelSelector={selector}"));
        // The playground's nodes: agents labelled zone-<site> (the guide's commands),
        // and an unlabelled agent that site dal's pods run on.
        let iad = NodeInfo {
            name: "k3d-bloodraven-agent-0".into(),
            internal_ip: Some("172.18.0.3".into()),
        };
        let pdx = NodeInfo {
            name: "k3d-bloodraven-agent-1".into(),
            internal_ip: Some("172.18.0.4".into()),
        };
        let dal = NodeInfo {
            name: "k3d-bloodraven-agent-2".into(),
            internal_ip: Some("172.18.0.5".into()),
        };
        let nodes = match selector {
            "topology.kubernetes.io/zone=zone-iad" => vec![iad],
            "topology.kubernetes.io/zone=zone-pdx" => vec![pdx],
            "" => vec![iad, pdx, dal],
            _ => vec![],
        };
        Box::pin(async move { Ok(nodes) })
    }
    fn site_node_selector<'a>(
        &'a self,
        ns: &'a str,
        site: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, ClusterError>> {
        self.0.push(format!(
            "kube GET /apis/bloodraven.shipstream.io/v1alpha1/namespaces/{ns}/mysqlfailovergroups (site {site})"
        ));
        // iad, pdx and sfo carry the playground's nodeSelector; dal has none.
        let selector = match site {
            "iad" | "pdx" | "sfo" => Some(BTreeMap::from([(
                "topology.kubernetes.io/zone".to_owned(),
                format!("zone-{site}"),
            )])),
            "dal" => Some(BTreeMap::new()),
            _ => None,
        };
        Box::pin(async move { Ok(selector) })
    }
    fn pod_nodes<'a>(
        &'a self,
        ns: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>> {
        self.0
            .push(format!("kube GET pods -n {ns} labelSelector={selector}"));
        let nodes = if selector == "shipstream.io/site=dal" {
            vec!["k3d-bloodraven-agent-2".to_owned(); 2]
        } else {
            vec![]
        };
        Box::pin(async move { Ok(nodes) })
    }
    fn delete_pods<'a>(
        &'a self,
        ns: &'a str,
        selector: &'a str,
        node: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>> {
        let node = node
            .map(|n| format!("&fieldSelector=spec.nodeName={n}"))
            .unwrap_or_default();
        self.0.push(format!(
            "kube DELETE pods -n {ns} labelSelector={selector}{node}"
        ));
        // Site ord has no pods at all; the operator's pods live in their own namespace.
        let ops = self.0.1.lock().unwrap();
        let deleted = if selector.contains("site=ord") {
            vec![]
        } else if selector == "app.kubernetes.io/name=bloodraven" {
            ops.pods
                .iter()
                .filter(|(pns, _)| *pns == ns)
                .map(|(_, n)| (*n).to_owned())
                .collect()
        } else {
            vec!["pod-0".to_owned()]
        };
        Box::pin(async move { Ok(deleted) })
    }
    fn pods_in_all_namespaces<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodRef>, ClusterError>> {
        self.0
            .push(format!("kube GET /api/v1/pods?labelSelector={selector}"));
        let operators = self.0.1.lock().unwrap();
        let pods = match selector {
            "app.kubernetes.io/name=bloodraven" => operators
                .pods
                .iter()
                .map(|(ns, name)| PodRef {
                    namespace: (*ns).to_owned(),
                    name: (*name).to_owned(),
                    node: Some(operators.node.to_owned()),
                })
                .collect(),
            "k8s-app=kube-dns" => vec![PodRef {
                namespace: "kube-system".into(),
                name: "coredns-ccb96694c-x7x2p".into(),
                node: Some(SERVER.into()),
            }],
            other => panic!("unexpected pod selector {other}"),
        };
        Box::pin(async move { Ok(pods) })
    }
    fn lease_holder<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>> {
        self.0.push(format!(
            "kube GET /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}"
        ));
        let holder = self.0.1.lock().unwrap().holder.map(str::to_owned);
        Box::pin(async move { Ok(holder) })
    }
    fn set_unschedulable<'a>(
        &'a self,
        node: &'a str,
        unschedulable: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.0.push(format!(
            "kube PATCH /api/v1/nodes/{node} {{\"spec\":{{\"unschedulable\":{unschedulable}}}}}"
        ));
        Box::pin(async { Ok(()) })
    }
    fn pod_metrics<'a>(
        &'a self,
        ns: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<String, ClusterError>> {
        self.0.push(format!(
            "kube GET /api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy/metrics"
        ));
        let body = format!("up{{pod=\"{pod}\"}} 1\n");
        Box::pin(async move { Ok(body) })
    }
    fn node_labels<'a>(
        &'a self,
    ) -> BoxFuture<'a, Result<BTreeMap<String, BTreeMap<String, String>>, ClusterError>> {
        self.0.push("kube GET /api/v1/nodes".into());
        let labels = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let nodes = BTreeMap::from([
            (
                SERVER.to_owned(),
                labels("node-role.kubernetes.io/control-plane", "true"),
            ),
            (
                "k3d-bloodraven-agent-0".to_owned(),
                labels("topology.kubernetes.io/zone", "zone-iad"),
            ),
            (
                "k3d-bloodraven-agent-1".to_owned(),
                labels("topology.kubernetes.io/zone", "zone-pdx"),
            ),
        ]);
        Box::pin(async move { Ok(nodes) })
    }
    fn api_version(&self) -> BoxFuture<'_, Result<String, ClusterError>> {
        self.0.push("kube GET /version".into());
        Box::pin(async { Ok("v1.31.5+k3s1".to_owned()) })
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
async fn kill_operator_deletes_the_operator_pod_in_the_namespace_it_runs_in() {
    let (apply, undo) = calls_for(Fault::KillOperator {}).await;
    assert_eq!(
        apply,
        strings(&[
            "kube DELETE pods -n bloodraven-playground labelSelector=app.kubernetes.io/name=bloodraven"
        ])
    );
    assert!(undo.is_empty());
}

#[tokio::test]
async fn kills_that_match_nothing_are_errors() {
    let (b, calls) = backend();
    // No operator pod anywhere: planning fails, naming the selector.
    calls.1.lock().unwrap().pods.clear();
    let err = b
        .plan_fault(&Fault::KillOperator {}, "bloodraven-playground")
        .await;
    assert!(
        matches!(&err, Err(BackendError::NoPodsMatched { selector, .. }) if selector == "app.kubernetes.io/name=bloodraven"),
        "{err:?}"
    );
    // A site without Dragonfly pods: the kill deletes nothing, which is an error.
    let plan = b
        .plan_fault(&Fault::KillDragonfly("ord".into()), "bloodraven-playground")
        .await
        .unwrap();
    let err = b.execute(&plan.apply).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no pod labelled shipstream.io/site=ord,app.kubernetes.io/name=dragonfly in namespace bloodraven-playground"),
        "{err}"
    );
    let plan = b
        .plan_fault(&Fault::KillSite("ord".into()), "bloodraven-playground")
        .await
        .unwrap();
    assert!(b.execute(&plan.apply).await.is_err());
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
        strings(&["docker POST /containers/k3d-bloodraven-agent-1/kill?signal=SIGKILL"])
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
        strings(&[
            "docker POST /networks/k3d-bloodraven/connect k3d-bloodraven-agent-0 IPv4Address=Some(\"172.18.0.3\") Aliases=[\"k3d-bloodraven-agent-0\", \"5f2c9a1b7d3e\"]"
        ])
    );
}

#[tokio::test]
async fn network_partition_records_the_address_and_aliases_in_the_ledger_at_plan_time() {
    let (b, calls) = backend();
    let plan = b
        .plan_fault(&Fault::NetworkPartition("iad".into()), "ns")
        .await
        .unwrap();
    assert!(calls.take().contains(
        &"docker GET /containers/k3d-bloodraven-agent-0/json (network k3d-bloodraven)".to_owned()
    ));
    assert_eq!(
        plan.undo,
        vec![serde_json::json!({
            "op": "connect-network",
            "network": "k3d-bloodraven",
            "container": "k3d-bloodraven-agent-0",
            "endpoint": {"ipv4_address": "172.18.0.3", "aliases": ["k3d-bloodraven-agent-0", "5f2c9a1b7d3e"]}
        })]
    );
    // A ledger written before endpoints were recorded still replays (plain connect).
    b.execute(&[serde_json::json!({"op": "connect-network", "network": "k3d-bloodraven", "container": "k3d-bloodraven-agent-0"})])
        .await
        .unwrap();
    assert_eq!(
        calls.take(),
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
            "docker exec k3d-bloodraven-agent-0: iptables -w 5 -I INPUT -s 172.18.0.4 -j DROP",
            "docker exec k3d-bloodraven-agent-0: iptables -w 5 -I OUTPUT -d 172.18.0.4 -j DROP",
            "docker exec k3d-bloodraven-agent-1: iptables -w 5 -I INPUT -s 172.18.0.3 -j DROP",
            "docker exec k3d-bloodraven-agent-1: iptables -w 5 -I OUTPUT -d 172.18.0.3 -j DROP",
        ])
    );
    let removal = |node: &str, rule: &str| {
        format!(
            "docker exec {node}: sh -c while iptables -w 5 -C {rule} 2>/dev/null; do iptables -w 5 -D {rule} || exit 1; done"
        )
    };
    assert_eq!(
        undo,
        vec![
            removal("k3d-bloodraven-agent-0", "INPUT -s 172.18.0.4 -j DROP"),
            removal("k3d-bloodraven-agent-0", "OUTPUT -d 172.18.0.4 -j DROP"),
            removal("k3d-bloodraven-agent-1", "INPUT -s 172.18.0.3 -j DROP"),
            removal("k3d-bloodraven-agent-1", "OUTPUT -d 172.18.0.3 -j DROP"),
        ]
    );
}

/// The undo script against an iptables stand-in that keeps rules in a file and exits
/// 1 on `-C`/`-D` of a missing rule, as iptables does: removing a rule that is not
/// there, twice, or after a doubled insert all succeed and leave no rule behind.
#[test]
fn the_partition_undo_is_idempotent() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::write(&rules, "").unwrap();
    let fake = dir.path().join("iptables");
    std::fs::write(
        &fake,
        r#"#!/bin/sh
[ "$1" = -w ] && [ "$2" = 5 ] || { echo "expected -w 5" >&2; exit 2; }
shift 2; action=$1; shift; rule="$*"
case "$action" in
  -I) echo "$rule" >> "$RULES" ;;
  -C) grep -qxF -- "$rule" "$RULES" ;;
  -D) grep -qxF -- "$rule" "$RULES" || { echo "iptables: Bad rule" >&2; exit 1; }
      awk -v r="$rule" '!done && $0 == r { done = 1; next } { print }' "$RULES" > "$RULES.new" && mv "$RULES.new" "$RULES" ;;
  *) exit 2 ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |cmd: &[String]| {
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap()
        );
        std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("PATH", path)
            .env("RULES", &rules)
            .status()
            .unwrap()
            .code()
    };
    let undo = bloodraven_chaos::backend::k3d::remove_rule_command("INPUT", "-s", "172.18.0.4");
    // Nothing applied (a crash between the ledger's fsync and the apply): succeeds.
    assert_eq!(run(&undo), Some(0));
    // Applied twice: both copies go.
    let insert = strings(&[
        "iptables",
        "-w",
        "5",
        "-I",
        "INPUT",
        "-s",
        "172.18.0.4",
        "-j",
        "DROP",
    ]);
    let other = strings(&[
        "iptables",
        "-w",
        "5",
        "-I",
        "OUTPUT",
        "-d",
        "172.18.0.4",
        "-j",
        "DROP",
    ]);
    assert_eq!(run(&insert), Some(0));
    assert_eq!(run(&insert), Some(0));
    assert_eq!(run(&other), Some(0));
    assert_eq!(run(&undo), Some(0));
    assert_eq!(
        std::fs::read_to_string(&rules).unwrap(),
        "OUTPUT -d 172.18.0.4 -j DROP\n",
        "only the matching rule is removed"
    );
    // Replayed by a second `recover`: still succeeds.
    assert_eq!(run(&undo), Some(0));
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
        strings(&[
            "docker GET /_ping",
            "kube GET /apis/bloodraven.shipstream.io/v1alpha1/namespaces/ns/mysqlfailovergroups (site iad)",
            "kube GET /api/v1/nodes?labelSelector=topology.kubernetes.io/zone=zone-iad"
        ])
    );
    // The undo is data the ledger can store and another process can replay.
    assert_eq!(
        plan.undo,
        vec![serde_json::json!({"op": "start-container", "container": "k3d-bloodraven-agent-0"})]
    );
}

#[tokio::test]
async fn docker_is_pinged_for_node_faults_only_and_a_dead_daemon_fails_them_before_any_change() {
    let (b, calls) = backend();
    *calls.2.lock().unwrap() = Some("connection refused (/var/run/docker.sock)".into());
    // Kubernetes-only faults and their undos need no Docker.
    for fault in [
        Fault::KillSite("iad".into()),
        Fault::Cordon("iad".into()),
        Fault::KillOperator {},
    ] {
        let plan = b.plan_fault(&fault, "ns").await.unwrap();
        b.execute(&plan.apply).await.unwrap();
        b.execute(&plan.undo).await.unwrap();
    }
    assert!(
        !calls.take().iter().any(|c| c.starts_with("docker")),
        "no Docker call for Kubernetes faults"
    );
    for fault in [
        Fault::NodeCrash("iad".into()),
        Fault::NetworkPartition("iad".into()),
        Fault::DisableSidecar("iad".into()),
        Fault::FreezeDragonfly("iad".into()),
        Fault::Partition {
            between: ["iad".into(), "pdx".into()],
        },
    ] {
        let err = b.plan_fault(&fault, "ns").await.unwrap_err();
        assert!(
            matches!(&err, BackendError::Docker { source, .. }
                if matches!(source.as_ref(), DockerError::Transport { message, .. } if message.contains("connection refused"))),
            "{fault}: {err}"
        );
        assert_eq!(calls.take(), strings(&["docker GET /_ping"]), "{fault}");
    }
}

#[tokio::test]
async fn a_site_without_a_node_selector_takes_the_nodes_its_pods_run_on() {
    let (b, calls) = backend();
    let plan = b
        .plan_fault(&Fault::NodeCrash("dal".into()), "ns")
        .await
        .unwrap();
    assert_eq!(
        plan.apply,
        vec![serde_json::json!({"op": "kill-container", "container": "k3d-bloodraven-agent-2"})]
    );
    assert_eq!(
        calls.take(),
        strings(&[
            "docker GET /_ping",
            "kube GET /apis/bloodraven.shipstream.io/v1alpha1/namespaces/ns/mysqlfailovergroups (site dal)",
            "kube GET pods -n ns labelSelector=shipstream.io/site=dal",
            "kube GET /api/v1/nodes?labelSelector=",
        ])
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
        "k3d backend: site \"sfo\" has no node (looked for nodes labelled topology.kubernetes.io/zone=zone-sfo (the site's nodeSelector))"
    );
    let err = b
        .plan_fault(&Fault::NodeCrash("ord".into()), "ns")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "k3d backend: site \"ord\" has no node (looked for the nodes of pods shipstream.io/site=ord in ns)"
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
    assert!(
        err.to_string().contains("Bad rule"),
        "exec stderr is kept: {err}"
    );
    let err = b
        .execute(&[serde_json::json!({"op": "reboot-datacenter"})])
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::BadOperation { .. }), "{err}");
}

#[tokio::test]
async fn metrics_are_scraped_through_the_api_server_proxy() {
    let (b, calls) = backend();
    assert_eq!(
        b.scrape_metrics().await.unwrap(),
        "up{pod=\"bloodraven-7d9f-abcde\"} 1\n"
    );
    assert_eq!(
        calls.take(),
        strings(&[
            "kube GET /api/v1/pods?labelSelector=app.kubernetes.io/name=bloodraven",
            "kube GET /api/v1/namespaces/bloodraven-playground/pods/bloodraven-7d9f-abcde:8080/proxy/metrics"
        ])
    );
}

#[tokio::test]
async fn metrics_of_two_replicas_are_scraped_from_the_lease_holder() {
    let (b, calls) = backend();
    *calls.1.lock().unwrap() = Operators {
        node: SERVER,
        pods: vec![
            ("bloodraven-playground", "bloodraven-a"),
            ("bloodraven-playground", "bloodraven-b"),
        ],
        holder: Some("bloodraven-b"),
    };
    assert_eq!(
        b.scrape_metrics().await.unwrap(),
        "up{pod=\"bloodraven-b\"} 1\n"
    );
    assert_eq!(
        calls.take(),
        strings(&[
            "kube GET /api/v1/pods?labelSelector=app.kubernetes.io/name=bloodraven",
            "kube GET /apis/coordination.k8s.io/v1/namespaces/bloodraven-playground/leases/bloodraven-operator",
            "kube GET /api/v1/namespaces/bloodraven-playground/pods/bloodraven-b:8080/proxy/metrics"
        ])
    );
    // No replica holds the Lease: an error naming both, not a standby's zeros.
    calls.1.lock().unwrap().holder = None;
    let err = b.scrape_metrics().await.unwrap_err().to_string();
    assert!(err.contains("bloodraven-playground/bloodraven-a"), "{err}");
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

#[tokio::test]
async fn freeze_dragonfly_stops_the_sites_dragonfly_process_in_its_node_and_continues_it() {
    let (apply, undo) = calls_for(Fault::FreezeDragonfly("pdx".into())).await;
    let stop = bloodraven_chaos::backend::k3d::dragonfly_signal_command("pdx", "STOP", true);
    let cont = bloodraven_chaos::backend::k3d::dragonfly_signal_command("pdx", "CONT", false);
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
    assert!(
        stop[2].contains("kill -STOP") && stop[2].contains("--break_replication_on_master_restart")
    );
    assert!(
        stop[2].ends_with("exit 1; }"),
        "the fault fails when no Dragonfly is found"
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

#[tokio::test]
async fn preflight_checks_the_api_server_and_that_operator_and_coredns_run_on_the_control_plane() {
    let (b, calls) = backend();
    b.preflight().await.unwrap();
    assert_eq!(
        calls.take(),
        strings(&[
            "kube GET /version",
            "kube GET /api/v1/pods?labelSelector=app.kubernetes.io/name=bloodraven",
            "kube GET /api/v1/pods?labelSelector=k8s-app=kube-dns",
            "kube GET /api/v1/nodes",
        ])
    );
    // The chart's operator landed on iad's agent: a partition of iad would cut it off.
    calls.1.lock().unwrap().node = "k3d-bloodraven-agent-0";
    let err = b.preflight().await.unwrap_err();
    let BackendError::Preflight { source, .. } = &err else {
        panic!("{err}")
    };
    match source.as_ref() {
        PreflightError::Placement { problems } => assert_eq!(
            problems,
            &strings(&[
                "operator pod bloodraven-playground/bloodraven-7d9f-abcde runs on k3d-bloodraven-agent-0, not on a node labelled node-role.kubernetes.io/control-plane=true"
            ])
        ),
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().contains("pin them to the control plane"),
        "{err}"
    );
}
