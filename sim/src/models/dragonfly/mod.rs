//! A model of a Dragonfly server (the per-site cache/session store): a RESP server with
//! the commands the operator and the counter app use, Dragonfly's master/replica
//! replication (full sync then stable sync, INFO replication as Dragonfly prints it),
//! `REPLTAKEOVER` and `REPLICAOF NO ONE` promotion, and `--break_replication_on_master_restart`.
//! Data is in memory only: a restart loses it. See docs/simulation.md, "Dragonfly model".
//!
//! This module is the server process (its state, journal and accept loop); `config`
//! holds the flags, `commands` the client protocol (AUTH, the data commands, ROLE and
//! INFO), `replication` both sides of the replication link and the takeover.

mod commands;
mod config;
mod connector;
mod replication;
pub mod resp;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::task::AbortHandle;

use commands::handle_client;
pub use config::DragonflyConfig;
pub use connector::SimDragonflyConnector;
use replication::{ReplicaSession, Role};

use crate::pod::{PodContext, PodProgram, ProgramFuture, SharedDialer};

/// The port Dragonfly listens on.
pub const DRAGONFLY_PORT: u16 = 6379;

/// The Dragonfly model as a pod program (image `docker.dragonflydb.io/dragonflydb/dragonfly:*`).
#[derive(Debug, Clone, Default)]
pub struct DragonflyProgram {
    config: DragonflyConfig,
}

impl DragonflyProgram {
    pub fn new(config: DragonflyConfig) -> Self {
        Self { config }
    }
}

impl PodProgram for DragonflyProgram {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        let mut config = self.config.clone();
        Box::pin(async move {
            config.apply_args(&ctx.args);
            // Dragonfly reads every flag from `DFLY_<flag>` too; a flag given on the
            // command line wins.
            if config.requirepass.is_none()
                && let Some(password) = ctx.env.get("DFLY_requirepass")
            {
                config.requirepass = Some(password.clone()).filter(|p| !p.is_empty());
            }
            if config.masterauth.is_none()
                && let Some(password) = ctx.env.get("DFLY_masterauth")
            {
                config.masterauth = Some(password.clone()).filter(|p| !p.is_empty());
            }
            run(config, ctx).await
        })
    }
}

#[derive(Clone)]
enum JournalOp {
    Set(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
}

struct State {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Journal: every write since this process started, with its offset (LSN).
    journal: Vec<(u64, JournalOp)>,
    offset: u64,
    replid: String,
    /// The replid of the master this node last fully synced from.
    master_replid: Option<String>,
    role: Role,
    /// Set while a REPLTAKEOVER drains this master: regular clients are refused.
    taken_over: bool,
    sessions: BTreeMap<u64, ReplicaSession>,
    next_id: u64,
    tasks: Vec<AbortHandle>,
}

struct Server {
    config: DragonflyConfig,
    host: String,
    /// The container's freezer: a frozen Dragonfly stops answering on every
    /// connection, not only in its accept loop.
    freezer: crate::pod::Freezer,
    dialer: SharedDialer,
    state: Mutex<State>,
    /// Bumped on every journal write and every ack.
    changed: watch::Sender<u64>,
    /// Ends the process after a successful takeover.
    shutdown: tokio::sync::Notify,
    /// The S3 snapshot store, with `--dir s3://...`.
    snapshots: Option<snapshot::SnapshotStore>,
}

impl Server {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn spawn<F>(&self, future: F) -> AbortHandle
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(self.freezer.clone().run(future)).abort_handle();
        self.state().tasks.push(handle.clone());
        handle
    }

    /// Saves the data to the S3 snapshot store (`SAVE`, and on SIGTERM).
    async fn save_snapshot(&self) -> Result<(), snapshot::SnapshotError> {
        let Some(store) = &self.snapshots else {
            return Ok(());
        };
        let data = self.state().data.clone();
        store.save(&data).await
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn write(&self, op: JournalOp) {
        {
            let mut state = self.state();
            match &op {
                JournalOp::Set(key, value) => {
                    state.data.insert(key.clone(), value.clone());
                }
                JournalOp::Del(key) => {
                    state.data.remove(key);
                }
            }
            state.offset += 1;
            let offset = state.offset;
            state.journal.push((offset, op));
        }
        self.bump();
    }
}

/// A fresh 40-hex-digit replication id, deterministic per host and simulated time.
fn new_replid(host: &str) -> String {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_nanos();
    let mut hash: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    for byte in host.bytes().chain(elapsed.to_le_bytes()) {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    format!("{hash:032x}{:08x}", (hash >> 64) as u32)
}

async fn run(config: DragonflyConfig, ctx: PodContext) -> crate::pod::ProgramResult {
    ctx.ready.set(false);
    tokio::time::sleep(config.startup_time).await;
    // An S3 snapshot directory must be usable before anything is served: Dragonfly
    // v1.38 exits at start-up when the bucket or the credentials are unavailable.
    let location = snapshot::SnapshotLocation::from_flags(
        config.dir.as_deref(),
        config.dbfilename.as_deref(),
        config.s3_endpoint.as_deref(),
        config.s3_use_https,
        ctx.env.get("AWS_REGION").map(String::as_str),
    );
    let (snapshots, data) = match location {
        None => (None, BTreeMap::new()),
        Some(location) => {
            let store = snapshot::SnapshotStore::open(location, &ctx.env, ctx.dialer.clone())
                .await
                .inspect_err(|err| tracing::error!(host = %ctx.host, %err, "dragonfly exiting"))?;
            let data = store
                .load()
                .await
                .inspect_err(|err| tracing::error!(host = %ctx.host, %err, "dragonfly exiting"))?
                .unwrap_or_default();
            tracing::info!(host = %ctx.host, keys = data.len(), "dragonfly loaded its S3 snapshot");
            (Some(store), data)
        }
    };
    // With snapshots the process saves before it exits on SIGTERM; without, it is
    // killed at once as before.
    let terminated: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> =
        if snapshots.is_some() {
            Box::pin(ctx.termination.requested())
        } else {
            Box::pin(std::future::pending())
        };
    tokio::pin!(terminated);
    let server = Arc::new(Server {
        host: ctx.host.clone(),
        freezer: ctx.freezer.clone(),
        dialer: ctx.dialer.clone(),
        state: Mutex::new(State {
            data,
            journal: Vec::new(),
            offset: 0,
            replid: new_replid(&ctx.host),
            master_replid: None,
            role: Role::Master,
            taken_over: false,
            sessions: BTreeMap::new(),
            next_id: 1,
            tasks: Vec::new(),
        }),
        changed: watch::channel(0).0,
        shutdown: tokio::sync::Notify::new(),
        snapshots,
        config,
    });
    let _guard = AbortAll(server.clone());
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", server.config.port)).await?;
    ctx.ready.set(true);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let id = { let mut s = server.state(); s.next_id += 1; s.next_id };
                server.spawn(handle_client(server.clone(), id, stream, peer.ip().to_string()));
            }
            () = server.shutdown.notified() => {
                tracing::info!(host = %ctx.host, "dragonfly shutting down after takeover");
                ctx.ready.set(false);
                return Ok(());
            }
            () = &mut terminated => {
                ctx.ready.set(false);
                if let Err(err) = server.save_snapshot().await {
                    tracing::warn!(host = %ctx.host, %err, "dragonfly could not save on shutdown");
                }
                return Ok(());
            }
        }
    }
}

struct AbortAll(Arc<Server>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        let tasks = std::mem::take(&mut self.0.state().tasks);
        for task in tasks {
            task.abort();
        }
        if let Role::Replica { task, .. } = &self.0.state().role {
            task.abort();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
