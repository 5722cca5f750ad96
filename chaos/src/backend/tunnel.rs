//! Port-forward tunnels from the runner's machine into the k3d cluster: a local TCP
//! listener on 127.0.0.1 per target whose every accepted connection is forwarded to a
//! pod port through the API server (`pods/portforward`, kube's `ws` feature), so that
//! ordinary clients (the operator's MySQL protocol client, the redis crate) can reach pods.
//!
//! A target is a label selector, not a pod: the pod is resolved again for each accepted
//! connection, so a client that reconnects after a failover reaches the new primary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// A byte stream to a pod port.
pub trait PodStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PodStream for T {}

pub type BoxPodStream = Box<dyn PodStream>;

/// Where a tunnel forwards to: the pods matching `selector` in `namespace`, on `port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TunnelTarget {
    pub namespace: String,
    pub selector: String,
    pub port: u16,
}

impl std::fmt::Display for TunnelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/[{}]:{}", self.namespace, self.selector, self.port)
    }
}

/// The pod a selector resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPod {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The Kubernetes calls a tunnel makes (tests record them).
pub trait PodForwarder: Send + Sync {
    /// The pod that `selector` currently means: the first by name of the Running pods
    /// matching it that are not being deleted; `None` when there is none.
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResolvedPod>, String>>;
    /// Opens a stream to `pod:port` (POST pods/<pod>/portforward?ports=<port>).
    fn forward<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<BoxPodStream, String>>;
}

pub type SharedForwarder = Arc<dyn PodForwarder>;

/// What the tunnel's latest accepted connection reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastConnection {
    Forwarded(ResolvedPod),
    Failed(String),
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
) -> Result<(ResolvedPod, BoxPodStream), String> {
    tokio::time::timeout(FORWARD_TIMEOUT, connect_unbounded(forwarder, target))
        .await
        .map_err(|_| format!("port-forward to {target} timed out after {FORWARD_TIMEOUT:?}"))?
}

async fn connect_unbounded(
    forwarder: &dyn PodForwarder,
    target: &TunnelTarget,
) -> Result<(ResolvedPod, BoxPodStream), String> {
    let pod = forwarder
        .resolve(&target.namespace, &target.selector)
        .await
        .map_err(|e| format!("resolving pods {target}: {e}"))?
        .ok_or_else(|| format!("no Running pod matches {target}"))?;
    let stream = forwarder
        .forward(&target.namespace, &pod.name, target.port)
        .await
        .map_err(|e| {
            format!(
                "port-forward to {}/{}:{}: {e}",
                target.namespace, pod.name, target.port
            )
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

    pub async fn get(&self, target: TunnelTarget) -> Result<Arc<Tunnel>, String> {
        let mut open = self.open.lock().await;
        if let Some(t) = open.get(&target) {
            return Ok(t.clone());
        }
        let tunnel = Arc::new(
            Tunnel::open(self.forwarder.clone(), target.clone())
                .await
                .map_err(|e| format!("opening a local listener for {target}: {e}"))?,
        );
        open.insert(target, tunnel.clone());
        Ok(tunnel)
    }
}

/// `PodForwarder` over kube: pods are listed with the selector, streams come from
/// `Api::<Pod>::portforward` (a WebSocket to the API server, which the kubelet bridges
/// to the pod's network namespace).
pub struct KubeForwarder(pub kube::Client);

impl PodForwarder for KubeForwarder {
    fn resolve<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResolvedPod>, String>> {
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(self.0.clone(), namespace);
            let pods = api
                .list(&kube::api::ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?;
            let mut running: Vec<ResolvedPod> = pods
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .filter_map(|p| {
                    Some(ResolvedPod {
                        name: p.metadata.name?,
                        labels: p.metadata.labels.unwrap_or_default(),
                    })
                })
                .collect();
            running.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(running.into_iter().next())
        })
    }

    fn forward<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> BoxFuture<'a, Result<BoxPodStream, String>> {
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(self.0.clone(), namespace);
            let mut forwarder = api
                .portforward(pod, &[port])
                .await
                .map_err(|e| e.to_string())?;
            let stream = forwarder
                .take_stream(port)
                .ok_or_else(|| format!("the port-forward to {pod} has no stream for {port}"))?;
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
            selector: &'a str,
        ) -> BoxFuture<'a, Result<Option<ResolvedPod>, String>> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("resolve {namespace} {selector}"));
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
        ) -> BoxFuture<'a, Result<BoxPodStream, String>> {
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
            selector: "shipstream.io/role=primary".into(),
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
                "resolve ns shipstream.io/role=primary",
                "forward ns/mysql-iad-0:3306",
                "resolve ns shipstream.io/role=primary",
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
            selector: "shipstream.io/site=iad".into(),
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
            selector: "shipstream.io/site=iad".into(),
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
            Some(LastConnection::Failed(
                "no Running pod matches ns/[shipstream.io/site=iad]:3306".into()
            ))
        );
    }
}
