//! The production implementations of the k3d backend's two request boundaries:
//! [`DockerApi`] over bollard and [`NodeApi`] over kube.

use futures::future::BoxFuture;

use super::{DockerApi, NodeApi, NodeInfo};

/// `DockerApi` over bollard.
pub struct BollardDocker(pub bollard::Docker);

impl DockerApi for BollardDocker {
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
            self.0
                .start_container(container, None)
                .await
                .map_err(|e| e.to_string())
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
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let request = bollard::models::NetworkConnectRequest {
                container: container.to_owned(),
                endpoint_config: None,
            };
            self.0
                .connect_network(network, request)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn exec<'a>(
        &'a self,
        container: &'a str,
        cmd: &'a [String],
    ) -> BoxFuture<'a, Result<i64, String>> {
        use futures::StreamExt;
        Box::pin(async move {
            let options = bollard::exec::CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
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
                    // Drain the output so the command runs to completion.
                    while let Some(chunk) = output.next().await {
                        chunk.map_err(|e| e.to_string())?;
                    }
                }
                bollard::exec::StartExecResults::Detached => {}
            }
            let inspected = self
                .0
                .inspect_exec(&created.id)
                .await
                .map_err(|e| e.to_string())?;
            inspected
                .exit_code
                .ok_or_else(|| "exec finished without an exit code".to_owned())
        })
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
                // Grace period 0: a killed site dies now, as in a crash.
                let dp = kube::api::DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                };
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

    fn service_metrics<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let uri = format!("/api/v1/namespaces/{namespace}/services/{service}/proxy/metrics");
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
