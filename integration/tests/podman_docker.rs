//! The chaos runner's k3d backend, Docker half, against a real engine: podman's
//! Docker-compatible API service, started here on its own socket, with a network and
//! node containers this test creates. The production bollard client and the backend's
//! ledger operations (what `recover` replays) run for real: ping, exec with exit code
//! and stderr, network disconnect and reconnect keeping the static IP and aliases,
//! SIGKILL and start, and every undo twice (idempotent). Run by `make
//! test-integration`; an engine that cannot be started fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bloodraven_chaos::backend::k3d::{
    BollardDocker, DockerApi, DockerError, K3dBackend, K3dConfig, KubeNodes, NetworkEndpoint,
    remove_rule_command,
};
use bloodraven_chaos::backend::{BackendError, LedgerFaults};
use bloodraven_chaos::cluster::KubeCluster;
use bloodraven_integration::podman::{
    PodmanService, TestContainer, TestNetwork, ensure_node_image, run,
};
use serde_json::json;

/// The Docker API version podman 4 serves.
const API_VERSION: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

fn docker(service: &PodmanService) -> BollardDocker {
    let socket = format!("unix://{}", service.socket().display());
    BollardDocker(bollard::Docker::connect_with_unix(&socket, 60, &API_VERSION).unwrap())
}

/// A backend whose Docker is the engine; its Kubernetes clients point at nothing (no
/// Docker operation calls them).
fn backend(service: &PodmanService, network: &str) -> K3dBackend {
    let config: kube::Config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    K3dBackend::new(
        K3dConfig {
            network: network.to_owned(),
            ..K3dConfig::default()
        },
        Arc::new(docker(service)),
        Arc::new(KubeNodes(client.clone())),
        Arc::new(KubeCluster::new(client)),
        Arc::new(bloodraven::seams::SystemClock),
    )
}

fn engine() -> PodmanService {
    ensure_node_image().unwrap_or_else(|e| panic!("the node image could not be built: {e}"));
    PodmanService::start().unwrap_or_else(|e| panic!("podman's API service did not start: {e}"))
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs podman, runc, mmdebstrap)"]
async fn network_partition_and_its_undo_keep_the_nodes_ip_and_aliases() {
    let service = engine();
    let network = TestNetwork::create("10.89.71.0/24").unwrap();
    let node = TestContainer::run(&network, "10.89.71.10", "agent-iad").unwrap();
    let docker = docker(&service);
    docker.ping().await.unwrap();

    // What the plan records before the fault.
    let before = docker
        .network_endpoint(&network.name, &node.name)
        .await
        .unwrap()
        .expect("the node is on the network");
    assert_eq!(before.ipv4_address.as_deref(), Some("10.89.71.10"));
    assert!(
        before.aliases.iter().any(|a| a == "agent-iad"),
        "{before:?}"
    );

    let backend = backend(&service, &network.name);
    let apply =
        [json!({"op": "disconnect-network", "network": network.name, "container": node.name})];
    let undo = [json!({
        "op": "connect-network", "network": network.name, "container": node.name,
        "endpoint": {"ipv4_address": "10.89.71.10", "aliases": ["agent-iad"]},
    })];
    backend.execute(&apply).await.unwrap();
    assert_eq!(
        docker
            .network_endpoint(&network.name, &node.name)
            .await
            .unwrap(),
        None,
        "disconnected"
    );
    // A disconnect of a disconnected node is what a replayed apply would meet: podman
    // refuses it, so applies are never replayed; undos are.
    backend.execute(&undo).await.unwrap();
    let after = docker
        .network_endpoint(&network.name, &node.name)
        .await
        .unwrap()
        .expect("reconnected");
    assert_eq!(after.ipv4_address, before.ipv4_address, "the same address");
    assert!(after.aliases.iter().any(|a| a == "agent-iad"), "{after:?}");
    // `recover` may replay the undo after it ran: already connected is done.
    backend.execute(&undo).await.unwrap();
    let addr = run(
        "podman",
        &["exec", &node.name, "ip", "-4", "-o", "addr", "show"],
    )
    .unwrap();
    assert!(addr.contains("10.89.71.10/24"), "{addr}");
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs podman, runc, mmdebstrap)"]
async fn exec_keeps_exit_code_and_stderr_and_iptables_undos_are_idempotent() {
    let service = engine();
    let network = TestNetwork::create("10.89.72.0/24").unwrap();
    let node = TestContainer::run(&network, "10.89.72.10", "agent-pdx").unwrap();
    let docker = docker(&service);

    let cmd = ["sh", "-c", "echo out; echo 'it broke' >&2; exit 3"].map(String::from);
    let env = ["SECRET=not-in-argv".to_owned()];
    let out = docker.exec(&node.name, &cmd, &env).await.unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_str(), out.stderr.as_str()),
        (3, "out\n", "it broke\n")
    );
    let env_seen = docker
        .exec(
            &node.name,
            &["sh".into(), "-c".into(), "echo $SECRET".into()],
            &env,
        )
        .await
        .unwrap();
    assert_eq!(env_seen.stdout, "not-in-argv\n");

    // Through the backend: a failing command is an error that keeps its stderr.
    let backend = backend(&service, &network.name);
    let err = backend
        .execute(&[json!({"op": "exec", "container": node.name, "cmd": cmd})])
        .await
        .unwrap_err();
    match &err {
        BackendError::CommandFailed {
            exit_code, stderr, ..
        } => assert_eq!((*exit_code, stderr.as_str()), (3, "it broke")),
        other => panic!("{other}"),
    }

    // partition-between's rule, inserted twice (a fault applied twice), then its undo
    // run three times: every copy goes, and an undo with nothing left succeeds.
    let insert = json!({"op": "exec", "container": node.name,
        "cmd": ["iptables", "-w", "5", "-I", "INPUT", "-s", "10.89.72.99", "-j", "DROP"]});
    backend.execute(&[insert.clone(), insert]).await.unwrap();
    let undo = json!({"op": "exec", "container": node.name,
        "cmd": remove_rule_command("INPUT", "-s", "10.89.72.99")});
    for _ in 0..3 {
        backend.execute(std::slice::from_ref(&undo)).await.unwrap();
    }
    let rules = run("podman", &["exec", &node.name, "iptables", "-S", "INPUT"]).unwrap();
    assert!(!rules.contains("10.89.72.99"), "{rules}");
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs podman, runc, mmdebstrap)"]
async fn node_crash_is_a_sigkill_and_its_undo_starts_the_node_once_however_often_replayed() {
    let service = engine();
    let network = TestNetwork::create("10.89.73.0/24").unwrap();
    let node = TestContainer::run(&network, "10.89.73.10", "agent-iad").unwrap();
    let backend = backend(&service, &network.name);
    assert!(node.running().unwrap());

    let started = std::time::Instant::now();
    backend
        .execute(&[json!({"op": "kill-container", "container": node.name})])
        .await
        .unwrap();
    assert!(!node.running().unwrap());
    // SIGKILL, not `stop`'s SIGTERM and 10 s grace (`sleep` ignores SIGTERM as PID 1).
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let start = [json!({"op": "start-container", "container": node.name})];
    backend.execute(&start).await.unwrap();
    assert!(node.running().unwrap());
    // Replayed by `recover` on a running node: done, not an error.
    backend.execute(&start).await.unwrap();
    // The static address survives the restart.
    let endpoint = docker(&service)
        .network_endpoint(&network.name, &node.name)
        .await
        .unwrap();
    assert_eq!(
        endpoint.and_then(|e| e.ipv4_address).as_deref(),
        Some("10.89.73.10")
    );
}

#[tokio::test]
#[ignore = "integration tier: run by `make test-integration` (needs podman, runc, mmdebstrap)"]
async fn a_missing_container_and_a_dead_daemon_are_errors_naming_them() {
    let service = engine();
    let docker = docker(&service);
    let err = docker
        .exec("bloodraven-it-no-such-node", &["true".into()], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DockerError::Status { status: 404, object, .. } if object == "bloodraven-it-no-such-node"),
        "{err}"
    );
    let endpoint = NetworkEndpoint::default();
    let err = docker
        .connect_network(
            "bloodraven-it-no-such-net",
            "bloodraven-it-no-such-node",
            Some(&endpoint),
        )
        .await
        .unwrap_err();
    assert!(matches!(&err, DockerError::Status { .. }), "{err}");

    // A socket nobody listens on any more (a daemon that died): connection refused.
    let stale = std::env::temp_dir().join(bloodraven_integration::podman::unique_name("dead.sock"));
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let address = format!("unix://{}", stale.display());
    let dead =
        BollardDocker(bollard::Docker::connect_with_unix(&address, 5, &API_VERSION).unwrap());
    let err = dead.ping().await.unwrap_err();
    assert!(
        matches!(
            &err,
            DockerError::Transport {
                call: "GET /_ping",
                ..
            }
        ),
        "{err}"
    );
    let _ = std::fs::remove_file(&stale);
}
