//! Cluster DNS for pod programs: resolves the names a pod would dial live and opens a
//! simulated TCP connection.
//!
//! - `pod.service.ns.svc.cluster.local` (and shorter `pod.service.ns`) -> that pod's host;
//! - `service.ns.svc.cluster.local`, `service.ns`, or a bare `service` in the caller's
//!   namespace -> the first ready endpoint of the Service (ordered by pod name), on the
//!   endpoint port matching the Service port — so a Service whose selector matches no
//!   ready pod refuses connections, as a live ClusterIP with no endpoints does;
//! - `kubernetes.default.svc` -> the API server; `localhost` -> the caller's own host;
//! - anything else -> a turmoil host name.
//!
//! Deliberately not modelled: ClusterIPs and kube-proxy load balancing (a Service dial
//! always picks the first ready endpoint), DNS TTLs and negative caching.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::apiserver::{ApiServer, ResourceKey};
use crate::hosts::pod_host_name;
use crate::object::{at, str_at};
use crate::pod::{DialFuture, Dialer, HostDialer, SharedDialer};
use crate::transport::{API_SERVER_HOST, API_SERVER_PORT};

const CLUSTER_DOMAIN: &str = "cluster.local";

/// Where a name points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A turmoil host (name or IP text) and port.
    Host(String, u16),
}

/// DNS-aware dialer for one pod (namespace-relative names resolve in `namespace`).
#[derive(Clone)]
pub struct ClusterDialer {
    api: ApiServer,
    namespace: String,
    /// The caller's own host, for `localhost`.
    own_host: String,
    inner: HostDialer,
}

impl ClusterDialer {
    pub fn new(api: ApiServer, namespace: &str, own_host: &str, connect_timeout: Duration) -> Self {
        Self {
            api,
            namespace: namespace.to_string(),
            own_host: own_host.to_string(),
            inner: HostDialer { connect_timeout },
        }
    }

    pub fn shared(self) -> SharedDialer {
        Arc::new(self)
    }

    /// Resolves `name:port` to a host and port, or explains why it cannot.
    pub fn resolve(&self, name: &str, port: u16) -> io::Result<Resolved> {
        let trimmed = name.trim_end_matches('.');
        if trimmed == "localhost" || trimmed == "127.0.0.1" {
            return Ok(Resolved::Host(self.own_host.clone(), port));
        }
        let short = trimmed
            .strip_suffix(&format!(".svc.{CLUSTER_DOMAIN}"))
            .or_else(|| trimmed.strip_suffix(".svc"))
            .unwrap_or(trimmed);
        if matches!(short, "kubernetes.default" | "kubernetes") {
            return Ok(Resolved::Host(API_SERVER_HOST.to_string(), API_SERVER_PORT));
        }
        let parts: Vec<&str> = short.split('.').collect();
        match parts[..] {
            [pod, service, ns] if self.service(ns, service).is_some() => {
                Ok(Resolved::Host(pod_host_name(ns, pod), port))
            }
            [service, ns] if self.service(ns, service).is_some() => {
                self.service_endpoint(ns, service, port)
            }
            [service] if self.service(&self.namespace, service).is_some() => {
                self.service_endpoint(&self.namespace.clone(), service, port)
            }
            _ => Ok(Resolved::Host(trimmed.to_string(), port)),
        }
    }

    fn service(&self, ns: &str, name: &str) -> Option<Value> {
        self.api
            .get(&ResourceKey::core("v1", "services"), Some(ns), name)
            .ok()
    }

    fn service_endpoint(&self, ns: &str, service: &str, port: u16) -> io::Result<Resolved> {
        let refused = |why: String| io::Error::new(io::ErrorKind::ConnectionRefused, why);
        let svc = self
            .service(ns, service)
            .ok_or_else(|| refused(format!("service {ns}/{service} not found")))?;
        let service_port = at(&svc, &["spec", "ports"])
            .and_then(Value::as_array)
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(port)))
            })
            .cloned();
        let endpoints = self
            .api
            .get(&ResourceKey::core("v1", "endpoints"), Some(ns), service)
            .map_err(|_| refused(format!("service {ns}/{service} has no endpoints")))?;
        let subsets = endpoints
            .get("subsets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for subset in &subsets {
            let Some(address) = subset
                .get("addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            else {
                continue;
            };
            let Some(ip) = str_at(address, &["ip"]) else {
                continue;
            };
            let ports = subset
                .get("ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let target = match &service_port {
                Some(sp) => {
                    let port_name = str_at(sp, &["name"]);
                    ports
                        .iter()
                        .find(|p| str_at(p, &["name"]) == port_name)
                        .or_else(|| ports.first())
                        .and_then(|p| p.get("port").and_then(Value::as_u64))
                }
                None => Some(u64::from(port)),
            };
            let target = target.and_then(|p| u16::try_from(p).ok()).unwrap_or(port);
            return Ok(Resolved::Host(ip.to_string(), target));
        }
        Err(refused(format!(
            "service {ns}/{service} has no ready endpoints"
        )))
    }
}

impl Dialer for ClusterDialer {
    fn dial(&self, host: &str, port: u16) -> DialFuture {
        match self.resolve(host, port) {
            Ok(Resolved::Host(target, target_port)) => self.inner.dial(&target, target_port),
            Err(err) => Box::pin(async move { Err(err) }),
        }
    }
}
