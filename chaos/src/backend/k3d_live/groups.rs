//! The production [`GroupApi`]: the data plane's Kubernetes reads over kube, each
//! bounded (`cluster::bounded`).

use bloodraven::api::MysqlFailoverGroup;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Secret};

use super::{GroupApi, GroupInfo, PodPlacement};
use crate::cluster::{ClusterError, bounded, list_pods};

/// `GroupApi` over kube.
pub struct KubeGroups(pub kube::Client);

impl KubeGroups {
    /// The pods matching `selector` in `namespace`, sorted by name.
    async fn list_pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>, ClusterError> {
        let params = kube::api::ListParams::default().labels(selector);
        list_pods(&self.0, Some(namespace), &params).await
    }
}

impl GroupApi for KubeGroups {
    fn groups(&self) -> BoxFuture<'_, Result<Vec<GroupInfo>, ClusterError>> {
        Box::pin(async move {
            let api: kube::Api<MysqlFailoverGroup> = kube::Api::all(self.0.clone());
            let params = kube::api::ListParams::default();
            let list = bounded("list", "MysqlFailoverGroups", api.list(&params)).await?;
            let mut groups: Vec<GroupInfo> = list
                .items
                .into_iter()
                .map(|g| GroupInfo {
                    namespace: g.metadata.namespace.clone().unwrap_or_default(),
                    name: g.metadata.name.clone().unwrap_or_default(),
                    sites: g.spec.sites.iter().map(|s| s.name.clone()).collect(),
                    credentials_secret: g.spec.mysql.credentials_secret.clone(),
                    mysql_port: u16::try_from(g.spec.mysql.port).unwrap_or(3306),
                })
                .collect();
            groups.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            Ok(groups)
        })
    }

    fn secret_value<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>> {
        Box::pin(async move {
            let api: kube::Api<Secret> = kube::Api::namespaced(self.0.clone(), namespace);
            let secret =
                bounded("get", format!("Secret {namespace}/{name}"), api.get(name)).await?;
            Ok(secret_key(&secret, key))
        })
    }

    fn pod_placement<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodPlacement>, ClusterError>> {
        Box::pin(async move {
            Ok(self
                .list_pods(namespace, selector)
                .await?
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .find_map(|p| {
                    Some(PodPlacement {
                        pod: p.metadata.name?,
                        node: p.spec?.node_name?,
                    })
                }))
        })
    }

    fn dragonfly_password<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, ClusterError>> {
        Box::pin(async move {
            let Some(pod) = self
                .list_pods(namespace, selector)
                .await?
                .into_iter()
                .next()
            else {
                return Err(ClusterError::Api {
                    verb: "find",
                    object: format!("pods [{selector}] in {namespace}"),
                    message: "no pod matches".into(),
                });
            };
            for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                if let Some(var) = container
                    .env
                    .iter()
                    .flatten()
                    .find(|v| v.name == "DFLY_requirepass")
                {
                    if let Some(value) = &var.value {
                        return Ok(Some(value.clone()));
                    }
                    if let Some(r) = var
                        .value_from
                        .as_ref()
                        .and_then(|f| f.secret_key_ref.as_ref())
                    {
                        return self.secret_value(namespace, &r.name, &r.key).await;
                    }
                }
                if let Some(pass) = container
                    .args
                    .iter()
                    .flatten()
                    .find_map(|a| a.strip_prefix("--requirepass="))
                {
                    return Ok(Some(pass.to_owned()));
                }
            }
            Ok(None)
        })
    }
}

fn secret_key(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| secret.string_data.as_ref()?.get(key).cloned())
}
