//! A read-only side channel into the running MySQL models, for checkers that must see
//! every server's state at one simulated instant (the chaos runner's single-writer
//! invariant samples it after every tick). It never changes a server and is not a
//! protocol: nothing under test can see it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use super::server::Server;

/// What the observer shows of one running mysqld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedServer {
    /// The pod's turmoil host (also the registry key).
    pub host: String,
    pub namespace: String,
    pub pod: String,
    /// The node the pod runs on.
    pub node: String,
    pub read_only: bool,
    pub super_read_only: bool,
}

impl ObservedServer {
    /// Whether an ordinary (non-SUPER) client's commit would be accepted right now: the
    /// server is up and neither `read_only` nor `super_read_only` is ON.
    pub fn accepts_writes(&self) -> bool {
        accepts_writes(self.read_only, self.super_read_only)
    }
}

fn accepts_writes(read_only: bool, super_read_only: bool) -> bool {
    !read_only && !super_read_only
}

struct Entry {
    namespace: String,
    pod: String,
    node: String,
    /// False for a backup verification's scratch mysqld: it holds a loaded copy, no
    /// Service routes clients to it, and its writability is no site's.
    serves_site: bool,
    server: Weak<Server>,
}

/// Registry of running MySQL models. Cloning shares it; give one to
/// [`super::MysqlProgram::with_observer`] and read it with [`MysqlObserver::servers`].
#[derive(Clone, Default)]
pub struct MysqlObserver {
    servers: Arc<Mutex<BTreeMap<String, Entry>>>,
}

impl std::fmt::Debug for MysqlObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlObserver").finish_non_exhaustive()
    }
}

impl MysqlObserver {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every server accepting connections now, ordered by host. A crashed, deleted or
    /// restarting server is absent.
    pub fn servers(&self) -> Vec<ObservedServer> {
        self.lock()
            .iter()
            .filter_map(|(host, entry)| {
                let server = entry.server.upgrade()?;
                let state = server.state();
                Some(ObservedServer {
                    host: host.clone(),
                    namespace: entry.namespace.clone(),
                    pod: entry.pod.clone(),
                    node: entry.node.clone(),
                    read_only: state.read_only,
                    super_read_only: state.super_read_only,
                })
            })
            .collect()
    }

    /// Whether any site's server running on `node` accepts ordinary writes now (what
    /// [`Self::servers`] shows, without copying it: the chaos driver asks after every
    /// tick). A verification's scratch mysqld is writable by design and serves no site,
    /// so it does not count.
    pub fn accepts_writes_on(&self, node: &str) -> bool {
        self.lock().values().any(|entry| {
            entry.node == node
                && entry.serves_site
                && entry.server.upgrade().is_some_and(|server| {
                    let state = server.state();
                    accepts_writes(state.read_only, state.super_read_only)
                })
        })
    }

    /// Registers a server for as long as the returned guard lives.
    pub(super) fn register(
        &self,
        host: &str,
        namespace: &str,
        pod: &str,
        node: &str,
        labels: &std::collections::BTreeMap<String, String>,
        server: &Arc<Server>,
    ) -> Registration {
        let serves_site =
            !labels.contains_key(bloodraven::children::verification::VERIFICATION_LABEL);
        self.lock().insert(
            host.to_string(),
            Entry {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                node: node.to_string(),
                serves_site,
                server: Arc::downgrade(server),
            },
        );
        Registration {
            observer: self.clone(),
            host: host.to_string(),
        }
    }
}

/// Removes a server from the observer when its run ends (crash, deletion, restart).
pub(super) struct Registration {
    observer: MysqlObserver,
    host: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.observer.lock().remove(&self.host);
    }
}
