//! The production implementations of the k3d backend's two request boundaries:
//! [`DockerApi`] over bollard and [`NodeApi`] over kube. Every call is bounded (bollard's
//! own timeout covers only the response headers, kube-client has no read timeout), and
//! every failure names the call and its object.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};

use super::api::{
    DockerApi, DockerError, ExecOutput, NetworkEndpoint, NodeApi, NodeInfo, NodeLabels, PodRef,
};
use crate::cluster::{ClusterError, bounded, bounded_opt, list_pods};

/// How long one Docker request may take, its streamed answer included (an exec's
/// output, which iptables' own lock wait bounds at a few seconds).
pub const DOCKER_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `DockerApi` over bollard.
pub struct BollardDocker(pub bollard::Docker);

/// Runs one Docker request, bounded by [`DOCKER_CALL_TIMEOUT`]; a failure names `call`
/// and `object`. `done`: the error answers (status, a phrase of the message) that mean
/// the goal already holds (an undo replayed by `recover`), answered as success.
async fn docker_call<T: Default>(
    call: &'static str,
    object: &str,
    done: &[(u16, &str)],
    request: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, DockerError> {
    match tokio::time::timeout(DOCKER_CALL_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            let error = docker_error(call, object, e);
            let goal_holds = matches!(&error, DockerError::Status { status, message, .. }
                if done.iter().any(|(s, says)| s == status && message.contains(says)));
            if goal_holds {
                Ok(T::default())
            } else {
                Err(error)
            }
        }
        Err(_) => Err(DockerError::TimedOut {
            call,
            object: object.to_owned(),
            after: DOCKER_CALL_TIMEOUT,
        }),
    }
}

/// A bollard error as a [`DockerError`] naming `call` and `object`.
fn docker_error(call: &'static str, object: &str, e: bollard::errors::Error) -> DockerError {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Status {
            call,
            object: object.to_owned(),
            status: status_code,
            message,
        },
        other => DockerError::Transport {
            call,
            object: object.to_owned(),
            message: other.to_string(),
        },
    }
}

impl DockerApi for BollardDocker {
    fn ping(&self) -> BoxFuture<'_, Result<(), DockerError>> {
        Box::pin(async move {
            docker_call("GET /_ping", "(daemon)", &[], self.0.ping())
                .await
                .map(|_| ())
        })
    }

    fn kill_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            // SIGKILL, as a power cut: `docker stop` would let k3s shut down cleanly.
            let options = bollard::query_parameters::KillContainerOptions {
                signal: "SIGKILL".into(),
            };
            docker_call(
                "kill",
                container,
                &[],
                self.0.kill_container(container, Some(options)),
            )
            .await
        })
    }

    fn start_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            // 304: already running (an undo replayed by `recover`) is done, not failed.
            docker_call(
                "start",
                container,
                &[(304, "")],
                self.0.start_container(container, None),
            )
            .await
        })
    }

    fn disconnect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let request = bollard::models::NetworkDisconnectRequest {
                container: container.to_owned(),
                force: Some(true),
            };
            docker_call(
                "network disconnect",
                &format!("{container} from {network}"),
                &[],
                self.0.disconnect_network(network, request),
            )
            .await
        })
    }

    fn connect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
        endpoint: Option<&'a NetworkEndpoint>,
    ) -> BoxFuture<'a, Result<(), DockerError>> {
        Box::pin(async move {
            let endpoint_config = endpoint.map(|e| bollard::models::EndpointSettings {
                ipam_config: e.ipv4_address.as_ref().map(|ip| {
                    bollard::models::EndpointIpamConfig {
                        ipv4_address: Some(ip.clone()),
                        ..Default::default()
                    }
                }),
                aliases: (!e.aliases.is_empty()).then(|| e.aliases.clone()),
                ..Default::default()
            });
            let request = bollard::models::NetworkConnectRequest {
                container: container.to_owned(),
                endpoint_config,
            };
            // A connected container (an undo replayed by `recover`, or a fault that
            // never applied) is refused: Docker answers 403 "endpoint ... already
            // exists in network", podman 500 "... network is already connected". The
            // undo's goal holds, so it is done.
            docker_call(
                "network connect",
                &format!("{container} to {network}"),
                &[(403, "already exists"), (500, "already connected")],
                self.0.connect_network(network, request),
            )
            .await
        })
    }

    fn network_endpoint<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkEndpoint>, DockerError>> {
        Box::pin(async move {
            let inspected = docker_call(
                "inspect",
                container,
                &[],
                self.0.inspect_container(container, None),
            )
            .await?;
            Ok(inspected
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut nets| nets.remove(network))
                .map(|e| NetworkEndpoint {
                    ipv4_address: e.ip_address.filter(|ip| !ip.is_empty()),
                    aliases: e.aliases.unwrap_or_default(),
                }))
        })
    }

    fn exec<'a>(
        &'a self,
        container: &'a str,
        cmd: &'a [String],
        env: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, DockerError>> {
        Box::pin(async move {
            // One bound for the whole exec: create, the streamed output, and inspect.
            match tokio::time::timeout(
                DOCKER_CALL_TIMEOUT,
                self.exec_unbounded(container, cmd, env),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(DockerError::TimedOut {
                    call: "exec",
                    object: container.to_owned(),
                    after: DOCKER_CALL_TIMEOUT,
                }),
            }
        })
    }
}

impl BollardDocker {
    async fn exec_unbounded(
        &self,
        container: &str,
        cmd: &[String],
        env: &[String],
    ) -> Result<ExecOutput, DockerError> {
        use futures::StreamExt;
        let failed = |e| docker_error("exec", container, e);
        let options = bollard::exec::CreateExecOptions {
            cmd: Some(cmd.to_vec()),
            env: Some(env.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        let created = self
            .0
            .create_exec(container, options)
            .await
            .map_err(failed)?;
        match self.0.start_exec(&created.id, None).await.map_err(failed)? {
            bollard::exec::StartExecResults::Attached { mut output, .. } => {
                // Drain the output so the command runs to completion; keep it for the
                // caller (stderr says why a command failed).
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(failed)? {
                        bollard::container::LogOutput::StdErr { message } => {
                            stderr.push_str(&String::from_utf8_lossy(&message));
                        }
                        other => stdout.push_str(&other.to_string()),
                    }
                }
            }
            bollard::exec::StartExecResults::Detached => {}
        }
        let inspected = self.0.inspect_exec(&created.id).await.map_err(failed)?;
        let exit_code = inspected.exit_code.ok_or_else(|| DockerError::NoExitCode {
            container: container.to_owned(),
        })?;
        Ok(ExecOutput {
            exit_code,
            stdout,
            stderr,
        })
    }
}

/// `NodeApi` over kube.
pub struct KubeNodes(pub kube::Client);

impl KubeNodes {
    fn pods(&self, namespace: &str) -> kube::Api<Pod> {
        kube::Api::namespaced(self.0.clone(), namespace)
    }

    async fn list_pods(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<Vec<Pod>, ClusterError> {
        list_pods(&self.0, namespace, params).await
    }
}

impl NodeApi for KubeNodes {
    fn nodes_with_label<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeInfo>, ClusterError>> {
        Box::pin(async move {
            let api: kube::Api<Node> = kube::Api::all(self.0.clone());
            let params = ListParams::default().labels(selector);
            let list = bounded("list", format!("nodes [{selector}]"), api.list(&params)).await?;
            Ok(list
                .items
                .into_iter()
                .map(|node| {
                    let internal_ip = node
                        .status
                        .and_then(|s| s.addresses)
                        .unwrap_or_default()
                        .into_iter()
                        .find(|a| a.type_ == "InternalIP")
                        .map(|a| a.address);
                    NodeInfo {
                        name: node.metadata.name.unwrap_or_default(),
                        internal_ip,
                    }
                })
                .collect())
        })
    }

    fn delete_pods<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        node: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>> {
        Box::pin(async move {
            let mut params = ListParams::default().labels(selector);
            let field;
            if let Some(node) = node {
                field = format!("spec.nodeName={node}");
                params = params.fields(&field);
            }
            let api = self.pods(namespace);
            let mut deleted = Vec::new();
            for pod in self.list_pods(Some(namespace), &params).await? {
                let Some(name) = pod.metadata.name else {
                    continue;
                };
                // The pod's own grace period (a graceful delete, as `kubectl delete pod`
                // does): a force delete (grace 0) removes the object while its
                // containers may still run, and the StatefulSet then starts a
                // same-named pod on the same volume beside them.
                let dp = kube::api::DeleteParams::default();
                let object = format!("pod {namespace}/{name}");
                if bounded_opt("delete", object, api.delete(&name, &dp))
                    .await?
                    .is_some()
                {
                    deleted.push(name);
                }
            }
            Ok(deleted)
        })
    }

    fn set_unschedulable<'a>(
        &'a self,
        node: &'a str,
        unschedulable: bool,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            let api: kube::Api<Node> = kube::Api::all(self.0.clone());
            let patch = serde_json::json!({"spec": {"unschedulable": unschedulable}});
            let params = PatchParams::default();
            bounded(
                "patch",
                format!("node {node}"),
                api.patch(node, &params, &Patch::Merge(&patch)),
            )
            .await
            .map(|_| ())
        })
    }

    fn site_node_selector<'a>(
        &'a self,
        namespace: &'a str,
        site: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, ClusterError>> {
        Box::pin(async move {
            let api: kube::Api<bloodraven::api::MysqlFailoverGroup> =
                kube::Api::namespaced(self.0.clone(), namespace);
            let object = format!("MysqlFailoverGroups in {namespace}");
            let mut groups = bounded("list", object, api.list(&ListParams::default()))
                .await?
                .items;
            groups.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            Ok(groups.into_iter().find_map(|g| {
                g.spec
                    .sites
                    .into_iter()
                    .find(|s| s.name == site)
                    .map(|s| s.node_selector)
            }))
        })
    }

    fn pod_nodes<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterError>> {
        Box::pin(async move {
            let params = ListParams::default().labels(selector);
            Ok(self
                .list_pods(Some(namespace), &params)
                .await?
                .into_iter()
                .filter_map(|p| p.spec?.node_name)
                .collect())
        })
    }

    fn pods_in_all_namespaces<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodRef>, ClusterError>> {
        Box::pin(async move {
            let params = ListParams::default().labels(selector);
            Ok(self
                .list_pods(None, &params)
                .await?
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| {
                    Some(PodRef {
                        namespace: p.metadata.namespace?,
                        name: p.metadata.name?,
                        node: p.spec.and_then(|s| s.node_name),
                    })
                })
                .collect())
        })
    }

    fn lease_holder<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>> {
        Box::pin(async move {
            let api: kube::Api<Lease> = kube::Api::namespaced(self.0.clone(), namespace);
            let lease = bounded(
                "get",
                format!("Lease {namespace}/{name}"),
                api.get_opt(name),
            )
            .await?;
            Ok(lease.and_then(|l| l.spec?.holder_identity))
        })
    }

    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<String, ClusterError>> {
        Box::pin(async move {
            let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics");
            let object = format!("{namespace}/{pod}:{port}/metrics");
            let request =
                http::Request::get(&uri)
                    .body(Vec::new())
                    .map_err(|e| ClusterError::Api {
                        verb: "GET",
                        object: object.clone(),
                        message: e.to_string(),
                    })?;
            bounded("GET", object, self.0.request_text(request)).await
        })
    }

    fn node_labels<'a>(&'a self) -> BoxFuture<'a, Result<NodeLabels, ClusterError>> {
        Box::pin(async move {
            let api: kube::Api<Node> = kube::Api::all(self.0.clone());
            let list = bounded("list", "nodes", api.list(&ListParams::default())).await?;
            Ok(list
                .items
                .into_iter()
                .filter_map(|n| Some((n.metadata.name?, n.metadata.labels.unwrap_or_default())))
                .collect())
        })
    }

    fn api_version(&self) -> BoxFuture<'_, Result<String, ClusterError>> {
        Box::pin(async move {
            let info = bounded("GET", "/version", self.0.apiserver_version()).await?;
            Ok(info.git_version)
        })
    }
}
