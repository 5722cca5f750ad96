//! The contract between the simulated kubelet and the software a pod runs.
//!
//! A pod's container image selects a [`PodProgram`] from the image registry (the MySQL
//! and Dragonfly models, later the operator, its sidecar, the counter app and the
//! dns-webhook). The kubelet starts the program on the pod's own simulated host with a
//! [`PodContext`]; a crash or restart of the pod runs it again with the same context, so
//! anything that must survive a restart lives in a [`Volume`].

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloodraven::seams::SharedClock;

/// What a program returns; turmoil reports an `Err` as the host failing.
pub type ProgramResult = Result<(), Box<dyn std::error::Error>>;

/// The future a program runs as. Not `Send`: turmoil runs each host on its own
/// single-threaded runtime.
pub type ProgramFuture = Pin<Box<dyn Future<Output = ProgramResult>>>;

/// Software a pod can run, chosen by its container image.
pub trait PodProgram: Send + Sync + 'static {
    /// Runs the program until it exits or its host is crashed.
    fn run(&self, ctx: PodContext) -> ProgramFuture;
}

/// Everything the kubelet hands a pod's program.
#[derive(Clone)]
pub struct PodContext {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    /// The turmoil host the program runs on (also its address on the simulated network).
    pub host: String,
    pub container: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// Container environment with `valueFrom` (Secrets, ConfigMaps, fieldRefs) resolved.
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Volumes by their name in the pod spec. PVC-backed volumes outlive the pod.
    pub volumes: BTreeMap<String, Volume>,
    /// The program reports readiness here; the kubelet turns it into the Ready condition.
    pub ready: Readiness,
    pub clock: SharedClock,
    /// Dials other hosts and Services by DNS name on the simulated network.
    pub dialer: SharedDialer,
    /// SIGTERM: raised by the kubelet when the pod is deleted.
    pub termination: Termination,
    /// The cgroup freezer of this run. The kubelet runs the program under it; a
    /// program runs the tasks it spawns under it too (`Freezer::run`), so that a frozen
    /// container stops as a whole, as SIGSTOP stops every thread of a process.
    pub freezer: Freezer,
}

/// Whether the container's current run is frozen (never, by default).
#[derive(Clone)]
pub struct Freezer {
    frozen: tokio::sync::watch::Receiver<bool>,
}

impl Default for Freezer {
    fn default() -> Self {
        // The sender is dropped: never frozen, and `run` polls the future directly.
        Self::new(tokio::sync::watch::channel(false).1)
    }
}

impl Freezer {
    pub(crate) fn new(frozen: tokio::sync::watch::Receiver<bool>) -> Self {
        Self { frozen }
    }

    /// Runs `future` like a process the cgroup freezer can stop: while frozen the
    /// future is not polled at all (its timers run out meanwhile and fire on thaw, as
    /// a stopped process's would); it resumes where it was. `biased` keeps the select
    /// from drawing on a random number, so runs stay deterministic.
    pub async fn run<F: Future>(self, future: F) -> F::Output {
        let mut frozen = self.frozen;
        tokio::pin!(future);
        loop {
            if *frozen.borrow_and_update() {
                if frozen.changed().await.is_err() {
                    // The kubelet forgot the container: nobody can thaw it, nor needs to.
                    return std::future::pending().await;
                }
                continue;
            }
            // The freeze is looked at first, so that a container frozen between two
            // polls of its program is not polled once more.
            tokio::select! {
                biased;
                changed = frozen.changed() => {
                    if changed.is_err() {
                        return future.await;
                    }
                }
                output = &mut future => return output,
            }
        }
    }
}

/// The pod's SIGTERM. A program that waits for it (`requested`) is given the pod's
/// grace period to stop on its own when the pod is deleted, then killed; a program
/// that never asked is killed at once, as a process that exits on SIGTERM would be.
#[derive(Clone)]
pub struct Termination {
    raised: Arc<tokio::sync::watch::Sender<bool>>,
    handled: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for Termination {
    fn default() -> Self {
        Self {
            raised: Arc::new(tokio::sync::watch::channel(false).0),
            handled: Arc::default(),
        }
    }
}

impl Termination {
    /// Completes once SIGTERM is raised; from this call on the program counts as
    /// handling it (the kubelet waits for it to exit, up to the grace period).
    pub fn requested(&self) -> impl Future<Output = ()> + 'static {
        self.handled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut raised = self.raised.subscribe();
        async move {
            let _ = raised.wait_for(|r| *r).await;
        }
    }

    pub(crate) fn raise(&self) {
        self.raised.send_replace(true);
    }

    pub(crate) fn is_raised(&self) -> bool {
        *self.raised.borrow()
    }

    pub(crate) fn is_handled(&self) -> bool {
        self.handled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl fmt::Debug for PodContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The env holds credentials: never print it.
        f.debug_struct("PodContext")
            .field("namespace", &self.namespace)
            .field("pod", &self.pod)
            .field("node", &self.node)
            .field("host", &self.host)
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

/// Storage that outlives a program run (and, for PVC-backed volumes, the pod).
///
/// Programs keep typed state here: `volume.get_or_init(|| MyData::default())` returns
/// the same `Arc` on every restart, so whatever the program committed before a crash is
/// still there afterwards, and whatever it held only in local variables is lost.
#[derive(Clone, Default)]
pub struct Volume {
    slots: Arc<Mutex<BTreeMap<&'static str, Arc<dyn Any + Send + Sync>>>>,
}

impl Volume {
    /// The state of type `T` on this volume, created by `init` the first time.
    pub fn get_or_init<T, F>(&self, init: F) -> Arc<T>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> T,
    {
        let key = std::any::type_name::<T>();
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = slots.get(key).cloned()
            && let Ok(typed) = existing.downcast::<T>()
        {
            return typed;
        }
        let fresh = Arc::new(init());
        slots.insert(key, fresh.clone());
        fresh
    }

    /// Wipes the volume (PVC deleted and re-provisioned).
    pub fn clear(&self) {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

/// A program's readiness, read by the kubelet.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.send_replace(ready);
    }
    pub fn get(&self) -> bool {
        *self.0.borrow()
    }
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Future returned by [`Dialer::dial`]. `Send`, because the operator's transports (which
/// dial through it in the simulation) must also run on tokio's multi-threaded runtime in
/// production and therefore return `Send` futures.
pub type DialFuture = Pin<Box<dyn Future<Output = io::Result<turmoil::net::TcpStream>> + Send>>;

/// Opens TCP connections on the simulated network by name: turmoil host names, pod DNS
/// names (`pod.headless-svc.ns.svc.cluster.local`) and Service names (resolved through
/// their ready endpoints). Every dial is bounded by a connect timeout, because turmoil
/// hangs a connect to a crashed host until it is bounced.
pub trait Dialer: Send + Sync + 'static {
    fn dial(&self, host: &str, port: u16) -> DialFuture;
}

pub type SharedDialer = Arc<dyn Dialer>;

/// Dials turmoil host names directly, with a connect timeout. The cluster's DNS-aware
/// dialer wraps this after resolving a name to a host.
#[derive(Clone, Debug)]
pub struct HostDialer {
    pub connect_timeout: Duration,
}

impl Default for HostDialer {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
        }
    }
}

impl Dialer for HostDialer {
    fn dial(&self, host: &str, port: u16) -> DialFuture {
        let host = host.to_string();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            match tokio::time::timeout(
                timeout,
                turmoil::net::TcpStream::connect((host.as_str(), port)),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {host}:{port} timed out after {timeout:?}"),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Counter(std::sync::atomic::AtomicU64);

    #[test]
    fn volume_returns_the_same_state_every_time() {
        let volume = Volume::default();
        let first = volume.get_or_init(Counter::default);
        first.0.store(7, std::sync::atomic::Ordering::SeqCst);
        let again = volume.get_or_init(Counter::default);
        assert_eq!(again.0.load(std::sync::atomic::Ordering::SeqCst), 7);
        volume.clear();
        let fresh = volume.get_or_init(Counter::default);
        assert_eq!(fresh.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
