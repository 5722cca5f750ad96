//! The production implementations of the k3d backend's two request boundaries:
//! [`DockerApi`] over bollard and [`NodeApi`] over kube.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{DockerApi, ExecOutput, NetworkEndpoint, NodeApi, NodeInfo, PodRef};

/// `DockerApi` over bollard.
pub struct BollardDocker(pub bollard::Docker);

impl DockerApi for BollardDocker {
    fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.0.ping().await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn stop_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .stop_container(container, None)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn start_container<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // 304: already running (an undo replayed by `recover`) is done, not failed.
            match self.0.start_container(container, None).await {
                Ok(()) => Ok(()),
                Err(e) if docker_status(&e) == Some(304) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn disconnect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let request = bollard::models::NetworkDisconnectRequest {
                container: container.to_owned(),
                force: Some(true),
            };
            self.0
                .disconnect_network(network, request)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn connect_network<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
        endpoint: Option<&'a NetworkEndpoint>,
    ) -> BoxFuture<'a, Result<(), String>> {
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
            // Docker answers 403 "already exists in network" when the container is
            // connected (an undo replayed by `recover`, or a fault that never applied):
            // the undo's goal holds, so it is done.
            match self.0.connect_network(network, request).await {
                Ok(()) => Ok(()),
                Err(e) if docker_status(&e) == Some(403) && e.to_string().contains("already") => {
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn network_endpoint<'a>(
        &'a self,
        network: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkEndpoint>, String>> {
        Box::pin(async move {
            let inspected = self
                .0
                .inspect_container(container, None)
                .await
                .map_err(|e| e.to_string())?;
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
    ) -> BoxFuture<'a, Result<ExecOutput, String>> {
        use futures::StreamExt;
        Box::pin(async move {
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
                .map_err(|e| e.to_string())?;
            match self
                .0
                .start_exec(&created.id, None)
                .await
                .map_err(|e| e.to_string())?
            {
                bollard::exec::StartExecResults::Attached { mut output, .. } => {
                    // Drain the output so the command runs to completion; keep it for
                    // the caller (stderr says why a command failed).
                    while let Some(chunk) = output.next().await {
                        match chunk.map_err(|e| e.to_string())? {
                            bollard::container::LogOutput::StdErr { message } => {
                                stderr.push_str(&String::from_utf8_lossy(&message));
                            }
                            other => stdout.push_str(&other.to_string()),
                        }
                    }
                }
                bollard::exec::StartExecResults::Detached => {}
            }
            let inspected = self
                .0
                .inspect_exec(&created.id)
                .await
                .map_err(|e| e.to_string())?;
            let exit_code = inspected
                .exit_code
                .ok_or_else(|| "exec finished without an exit code".to_owned())?;
            Ok(ExecOutput {
                exit_code,
                stdout,
                stderr,
            })
        })
    }
}

/// The HTTP status of a Docker API error answer, if it was one.
fn docker_status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// `NodeApi` over kube.
pub struct KubeNodes(pub kube::Client);

impl NodeApi for KubeNodes {
    fn nodes_with_label<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NodeInfo>, String>> {
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.0.clone());
            let list = api
                .list(&kube::api::ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?;
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
    ) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(self.0.clone(), namespace);
            let mut params = kube::api::ListParams::default().labels(selector);
            let field;
            if let Some(node) = node {
                field = format!("spec.nodeName={node}");
                params = params.fields(&field);
            }
            let pods = api.list(&params).await.map_err(|e| e.to_string())?;
            let mut deleted = Vec::new();
            for pod in pods.items {
                let Some(name) = pod.metadata.name else {
                    continue;
                };
                // The pod's own grace period (a graceful delete, as `kubectl delete pod`
                // does): a force delete (grace 0) removes the object while its
                // containers may still run, and the StatefulSet then starts a
                // same-named pod on the same volume beside them.
                let dp = kube::api::DeleteParams::default();
                match api.delete(&name, &dp).await {
                    Ok(_) => deleted.push(name),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(format!("delete pod {namespace}/{name}: {e}")),
                }
            }
            Ok(deleted)
        })
    }

    fn set_unschedulable<'a>(
        &'a self,
        node: &'a str,
        unschedulable: bool,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.0.clone());
            let patch = serde_json::json!({"spec": {"unschedulable": unschedulable}});
            api.patch(
                node,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
    }

    fn site_node_selector<'a>(
        &'a self,
        namespace: &'a str,
        site: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, String>> {
        Box::pin(async move {
            let api: kube::Api<bloodraven::api::MysqlFailoverGroup> =
                kube::Api::namespaced(self.0.clone(), namespace);
            let mut groups = api
                .list(&kube::api::ListParams::default())
                .await
                .map_err(|e| e.to_string())?
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
    ) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(self.0.clone(), namespace);
            let pods = api
                .list(&kube::api::ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?;
            Ok(pods
                .items
                .into_iter()
                .filter_map(|p| p.spec?.node_name)
                .collect())
        })
    }

    fn pods_in_all_namespaces<'a>(
        &'a self,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodRef>, String>> {
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(self.0.clone());
            let list = api
                .list(&kube::api::ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?;
            Ok(list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| {
                    Some(PodRef {
                        namespace: p.metadata.namespace?,
                        name: p.metadata.name?,
                    })
                })
                .collect())
        })
    }

    fn lease_holder<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
                kube::Api::namespaced(self.0.clone(), namespace);
            let lease = api.get_opt(name).await.map_err(|e| e.to_string())?;
            Ok(lease.and_then(|l| l.spec?.holder_identity))
        })
    }

    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics");
            let request = http::Request::get(uri)
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            self.0
                .request_text(request)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
