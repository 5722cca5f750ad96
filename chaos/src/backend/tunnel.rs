//! Port-forward tunnels from the runner's machine into the k3d cluster: a local TCP
//! listener on 127.0.0.1 per target whose every accepted connection is forwarded to a
//! pod port through the API server (`pods/portforward`, kube's `ws` feature), so that
//! ordinary clients (the operator's MySQL protocol client, the redis crate) can reach pods.
//!
//! A target is a set of pods, not a pod: a label selector, or a Service's ready
//! endpoints (what a client of the Service reaches). The pod is resolved again for each
//! accepted connection, so a client that reconnects after a failover reaches the new
//! primary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::cluster::{ClusterError, bounded, bounded_opt, list_pods};

/// A byte stream to a pod port.
pub trait PodStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PodStream for T {}

pub type BoxPodStream = Box<dyn PodStream>;

/// Where a tunnel forwards to: one of `pods` in `namespace`, on `port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TunnelTarget {
    pub namespace: String,
    pub pods: PodSource,
    pub port: u16,
}

/// Which pods a tunnel may forward to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodSource {
    /// The Running, not-terminating pods matching a label selector.
    Selector(String),
    /// The ready endpoints of a Service (its EndpointSlices): exactly the pods a
    /// client of the Service can reach, readiness included.
    Service(String),
}

impl std::fmt::Display for PodSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Selector(selector) => write!(f, "[{selector}]"),
            Self::Service(service) => write!(f, "service/{service}"),
        }
    }
}

impl std::fmt::Display for TunnelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.pods, self.port)
    }
}

/// Why a tunnel could not forward a connection, or could not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    #[error("opening a local listener for {target}: {message}")]
    Listen { target: String, message: String },
    #[error("resolving pods {target}: {message}")]
    Resolve { target: String, message: String },
    /// Nothing to forward to: no Running pod matches the selector, or the Service has
    /// no ready endpoint.
    #[error("no {wanted} for {target}")]
    NoPod {
        target: String,
        wanted: &'static str,
    },
    #[error("port-forward to {namespace}/{pod}:{port}: {message}")]
    Forward {
        namespace: String,
        pod: String,
        port: u16,
        message: String,
    },
    #[error("port-forward to {target} timed out after {after:?}")]
    TimedOut { target: String, after: Duration },
}

/// The pod a target resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPod {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The Kubernetes calls a tunnel makes (tests record them).
pub trait PodForwarder: Send + Sync {
    /// The pod that `pods` currently means: the first by name of the Running pods a
    /// selector matches that are not being deleted, or of a Service's ready endpoints;
    /// `None` when there is none.
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        pods: &'a PodSource,
    ) -> BoxFuture<'a, Result<Option<ResolvedPod>, ClusterError>>;
    /// Opens a stream to `pod:port` (POST pods/<pod>/portforward?ports=<port>).
    fn forward<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<BoxPodStream, ClusterError>>;
}

pub type SharedForwarder = Arc<dyn PodForwarder>;

/// What the tunnel's latest accepted connection reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastConnection {
    Forwarded(ResolvedPod),
    Failed(TunnelError),
}

/// One local listener forwarding to whatever pod its target resolves to. Dropping it
/// stops accepting; connections already forwarded run until either side closes.
pub struct Tunnel {
    target: TunnelTarget,
    local: SocketAddr,
    last: Arc<Mutex<Option<LastConnection>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Tunnel {
    /// Binds 127.0.0.1:0 and starts accepting.
    pub async fn open(forwarder: SharedForwarder, target: TunnelTarget) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let local = listener.local_addr()?;
        let last: Arc<Mutex<Option<LastConnection>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(
            listener,
            forwarder,
            target.clone(),
            last.clone(),
        ));
        Ok(Self {
            target,
            local,
            last,
            accept,
        })
    }

    pub fn target(&self) -> &TunnelTarget {
        &self.target
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The pod the latest accepted connection was forwarded to (or why it was not). A
    /// client that is the tunnel's only user reads it right after connecting to learn
    /// which pod it reached.
    pub fn last_connection(&self) -> Option<LastConnection> {
        self.last.lock().ok().and_then(|l| l.clone())
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    forwarder: SharedForwarder,
    target: TunnelTarget,
    last: Arc<Mutex<Option<LastConnection>>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Each connection is forwarded on its own: one port-forward hanging on a
        // cut-off node must not hold up the next client (the writability poll).
        tokio::spawn(forward_one(
            client,
            forwarder.clone(),
            target.clone(),
            last.clone(),
        ));
    }
}

async fn forward_one(
    mut client: tokio::net::TcpStream,
    forwarder: SharedForwarder,
    target: TunnelTarget,
    last: Arc<Mutex<Option<LastConnection>>>,
) {
    // Recorded before a single byte is copied, so that a client that is the tunnel's
    // only user reads which pod it reached once its protocol has greeted it.
    let forwarded = connect(&*forwarder, &target).await;
    let record = match &forwarded {
        Ok((pod, _)) => LastConnection::Forwarded(pod.clone()),
        Err(e) => LastConnection::Failed(e.clone()),
    };
    if let Ok(mut l) = last.lock() {
        *l = Some(record);
    }
    match forwarded {
        Ok((pod, mut upstream)) => {
            tracing::debug!(%target, pod = %pod.name, "tunnel connection forwarded");
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        // Closing the client's connection is how it learns: its protocol sees EOF.
        Err(e) => tracing::debug!(%target, error = %e, "tunnel connection refused"),
    }
}

/// Bounds resolving and opening one forward: a port-forward to a node that was cut off
/// can hang. Clients' connect timeouts must be longer, so that they see the tunnel's
/// reason rather than their own timeout.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

async fn connect(
    forwarder: &dyn PodForwarder,
    target: &TunnelTarget,
) -> Result<(ResolvedPod, BoxPodStream), TunnelError> {
    tokio::time::timeout(FORWARD_TIMEOUT, connect_unbounded(forwarder, target))
        .await
        .map_err(|_| TunnelError::TimedOut {
            target: target.to_string(),
            after: FORWARD_TIMEOUT,
        })?
}

async fn connect_unbounded(
    forwarder: &dyn PodForwarder,
    target: &TunnelTarget,
) -> Result<(ResolvedPod, BoxPodStream), TunnelError> {
    let pod = forwarder
        .resolve(&target.namespace, &target.pods)
        .await
        .map_err(|e| TunnelError::Resolve {
            target: target.to_string(),
            message: e.to_string(),
        })?
        .ok_or_else(|| TunnelError::NoPod {
            target: target.to_string(),
            wanted: match target.pods {
                PodSource::Selector(_) => "Running pod",
                PodSource::Service(_) => "ready endpoint",
            },
        })?;
    let stream = forwarder
        .forward(&target.namespace, &pod.name, target.port)
        .await
        .map_err(|e| TunnelError::Forward {
            namespace: target.namespace.clone(),
            pod: pod.name.clone(),
            port: target.port,
            message: e.to_string(),
        })?;
    Ok((pod, stream))
}

/// Tunnels by target, opened on first use and kept for the backend's lifetime.
pub struct Tunnels {
    forwarder: SharedForwarder,
    open: tokio::sync::Mutex<BTreeMap<TunnelTarget, Arc<Tunnel>>>,
}

impl Tunnels {
    pub fn new(forwarder: SharedForwarder) -> Self {
        Self {
            forwarder,
            open: tokio::sync::Mutex::default(),
        }
    }

    pub async fn get(&self, target: TunnelTarget) -> Result<Arc<Tunnel>, TunnelError> {
        let mut open = self.open.lock().await;
        if let Some(t) = open.get(&target) {
            return Ok(t.clone());
        }
        let tunnel = Arc::new(
            Tunnel::open(self.forwarder.clone(), target.clone())
                .await
                .map_err(|e| TunnelError::Listen {
                    target: target.to_string(),
                    message: e.to_string(),
                })?,
        );
        open.insert(target, tunnel.clone());
        Ok(tunnel)
    }
}

/// `PodForwarder` over kube: pods come from a label selector's list or from a
/// Service's EndpointSlices, streams from `Api::<Pod>::portforward` (a WebSocket to the
/// API server, which the kubelet bridges to the pod's network namespace).
pub struct KubeForwarder(pub kube::Client);

impl KubeForwarder {
    fn pods(&self, namespace: &str) -> kube::Api<Pod> {
        kube::Api::namespaced(self.0.clone(), namespace)
    }

    /// The first by name of the Running, not-terminating pods matching `selector`.
    async fn by_selector(
        &self,
        namespace: &str,
        selector: &str,
    ) -> Result<Option<ResolvedPod>, ClusterError> {
        let params = kube::api::ListParams::default().labels(selector);
        let pods = list_pods(&self.0, Some(namespace), &params).await?;
        // Sorted by name already: the first Running, not-terminating one.
        Ok(pods
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .find_map(|p| {
                Some(ResolvedPod {
                    name: p.metadata.name?,
                    labels: p.metadata.labels.unwrap_or_default(),
                })
            }))
    }

    /// The first by name of the pods behind `service`'s ready endpoints.
    async fn by_service(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Option<ResolvedPod>, ClusterError> {
        let api: kube::Api<EndpointSlice> = kube::Api::namespaced(self.0.clone(), namespace);
        let params = kube::api::ListParams::default()
            .labels(&format!("kubernetes.io/service-name={service}"));
        let object = format!("EndpointSlices of service {namespace}/{service}");
        let slices = bounded("list", object, api.list(&params)).await?;
        let endpoints = slices.items.into_iter().flat_map(|s| s.endpoints);
        let Some(name) = ready_endpoint_pods(endpoints).into_iter().next() else {
            return Ok(None);
        };
        let object = format!("pod {namespace}/{name}");
        let pod = bounded_opt("get", object, self.pods(namespace).get(&name)).await?;
        Ok(pod.map(|p| ResolvedPod {
            name,
            labels: p.metadata.labels.unwrap_or_default(),
        }))
    }
}

/// The pods behind the ready, not-terminating endpoints, sorted by name. A `ready` left
/// unset means ready, as the EndpointSlice API says consumers should read it.
pub fn ready_endpoint_pods(endpoints: impl IntoIterator<Item = Endpoint>) -> Vec<String> {
    let mut pods: Vec<String> = endpoints
        .into_iter()
        .filter(|e| {
            let c = e.conditions.as_ref();
            c.and_then(|c| c.ready).unwrap_or(true)
                && !c.and_then(|c| c.terminating).unwrap_or(false)
        })
        .filter_map(|e| {
            e.target_ref
                .filter(|r| r.kind.as_deref() == Some("Pod"))?
                .name
        })
        .collect();
    pods.sort();
    pods.dedup();
    pods
}

impl PodForwarder for KubeForwarder {
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        pods: &'a PodSource,
    ) -> BoxFuture<'a, Result<Option<ResolvedPod>, ClusterError>> {
        Box::pin(async move {
            match pods {
                PodSource::Selector(selector) => self.by_selector(namespace, selector).await,
                PodSource::Service(service) => self.by_service(namespace, service).await,
            }
        })
    }

    fn forward<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<BoxPodStream, ClusterError>> {
        Box::pin(async move {
            let api = self.pods(namespace);
            let object = format!("{namespace}/{pod}:{port}");
            let mut forwarder =
                bounded("port-forward", &object, api.portforward(pod, &[port])).await?;
            let stream = forwarder
                .take_stream(port)
                .ok_or_else(|| ClusterError::Api {
                    verb: "port-forward",
                    object: object.clone(),
                    message: "the answer has no stream for the port".into(),
                })?;
            // The forwarder's message loop runs in its own task and ends when the stream
            // closes; dropping the handle here detaches it rather than stopping it.
            drop(forwarder);
            Ok(Box::new(stream) as BoxPodStream)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Each forwarded stream greets with the pod's name, then echoes.
    struct Greeter {
        pods: Mutex<Vec<&'static str>>,
        calls: Mutex<Vec<String>>,
        /// Pods whose port-forward never answers (their node is cut off).
        hanging: Mutex<Vec<&'static str>>,
    }

    impl PodForwarder for Greeter {
        fn resolve<'a>(
            &'a self,
            namespace: &'a str,
            pods: &'a PodSource,
        ) -> BoxFuture<'a, Result<Option<ResolvedPod>, ClusterError>> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("resolve {namespace} {pods}"));
            let pod = self.pods.lock().unwrap().first().map(|n| ResolvedPod {
                name: (*n).to_owned(),
                labels: BTreeMap::new(),
            });
            Box::pin(async move { Ok(pod) })
        }
        fn forward<'a>(
            &'a self,
            namespace: &'a str,
            pod: &'a str,
            port: u16,
        ) -> BoxFuture<'a, Result<BoxPodStream, ClusterError>> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("forward {namespace}/{pod}:{port}"));
            if self.hanging.lock().unwrap().contains(&pod) {
                return Box::pin(futures::future::pending());
            }
            let (ours, mut theirs) = tokio::io::duplex(1024);
            let greeting = format!("{pod}\n");
            tokio::spawn(async move {
                theirs.write_all(greeting.as_bytes()).await.unwrap();
                let mut buf = [0u8; 64];
                while let Ok(n) = theirs.read(&mut buf).await {
                    if n == 0 || theirs.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            Box::pin(async move { Ok(Box::new(ours) as BoxPodStream) })
        }
    }

    async fn greeting(addr: SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = vec![0u8; 64];
        let mut got = String::new();
        while !got.ends_with("ping") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {got:?}");
            got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        got
    }

    #[tokio::test]
    async fn forwards_bytes_and_resolves_again_for_each_connection() {
        let forwarder = Arc::new(Greeter {
            pods: Mutex::new(vec!["mysql-iad-0"]),
            calls: Mutex::default(),
            hanging: Mutex::default(),
        });
        let target = TunnelTarget {
            namespace: "ns".into(),
            pods: PodSource::Selector("shipstream.io/role=primary".into()),
            port: 3306,
        };
        let tunnel = Tunnel::open(forwarder.clone(), target).await.unwrap();
        assert!(tunnel.local_addr().ip().is_loopback());
        assert_eq!(greeting(tunnel.local_addr()).await, "mysql-iad-0\nping");
        // The primary moves: the next connection reaches the new pod.
        *forwarder.pods.lock().unwrap() = vec!["mysql-pdx-0"];
        assert_eq!(greeting(tunnel.local_addr()).await, "mysql-pdx-0\nping");
        assert_eq!(
            tunnel.last_connection(),
            Some(LastConnection::Forwarded(ResolvedPod {
                name: "mysql-pdx-0".into(),
                labels: BTreeMap::new()
            }))
        );
        assert_eq!(
            *forwarder.calls.lock().unwrap(),
            vec![
                "resolve ns [shipstream.io/role=primary]",
                "forward ns/mysql-iad-0:3306",
                "resolve ns [shipstream.io/role=primary]",
                "forward ns/mysql-pdx-0:3306",
            ]
        );
    }

    #[tokio::test]
    async fn a_hanging_forward_does_not_hold_up_the_next_connection() {
        let forwarder = Arc::new(Greeter {
            pods: Mutex::new(vec!["mysql-iad-0"]),
            calls: Mutex::default(),
            hanging: Mutex::new(vec!["mysql-iad-0"]),
        });
        let target = TunnelTarget {
            namespace: "ns".into(),
            pods: PodSource::Selector("shipstream.io/site=iad".into()),
            port: 3306,
        };
        let tunnel = Tunnel::open(forwarder.clone(), target).await.unwrap();
        // The first client's forward hangs (until FORWARD_TIMEOUT)...
        let _stuck = tokio::net::TcpStream::connect(tunnel.local_addr())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ...while the next one, to a pod that answers, is served at once.
        forwarder.hanging.lock().unwrap().clear();
        *forwarder.pods.lock().unwrap() = vec!["mysql-iad-1"];
        let served = tokio::time::timeout(Duration::from_secs(1), greeting(tunnel.local_addr()))
            .await
            .expect("served while the first forward still hangs");
        assert_eq!(served, "mysql-iad-1\nping");
    }

    #[tokio::test]
    async fn no_matching_pod_closes_the_connection_and_says_why() {
        let forwarder = Arc::new(Greeter {
            pods: Mutex::new(vec![]),
            calls: Mutex::default(),
            hanging: Mutex::default(),
        });
        let target = TunnelTarget {
            namespace: "ns".into(),
            pods: PodSource::Selector("shipstream.io/site=iad".into()),
            port: 3306,
        };
        let tunnel = Tunnel::open(forwarder, target).await.unwrap();
        let mut s = tokio::net::TcpStream::connect(tunnel.local_addr())
            .await
            .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        assert!(buf.is_empty());
        assert_eq!(
            tunnel.last_connection(),
            Some(LastConnection::Failed(TunnelError::NoPod {
                target: "ns/[shipstream.io/site=iad]:3306".into(),
                wanted: "Running pod",
            }))
        );
    }

    #[test]
    fn only_ready_not_terminating_pod_endpoints_count() {
        use k8s_openapi::api::core::v1::ObjectReference;
        use k8s_openapi::api::discovery::v1::EndpointConditions;
        let endpoint =
            |pod: &str, kind: &str, ready: Option<bool>, terminating: Option<bool>| Endpoint {
                conditions: Some(EndpointConditions {
                    ready,
                    terminating,
                    ..Default::default()
                }),
                target_ref: Some(ObjectReference {
                    kind: Some(kind.into()),
                    name: Some(pod.into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
        let pods = ready_endpoint_pods([
            // Labelled primary and Running, but its readiness probe fails.
            endpoint("mysql-pdx-0", "Pod", Some(false), None),
            endpoint("mysql-iad-0", "Pod", Some(true), None),
            // Unset readiness means ready, as the API says.
            endpoint("mysql-dal-0", "Pod", None, None),
            endpoint("mysql-old-0", "Pod", Some(true), Some(true)),
            endpoint("external", "Node", Some(true), None),
        ]);
        assert_eq!(pods, vec!["mysql-dal-0", "mysql-iad-0"]);
    }
}
