//! Serve mode: the simulated playground cluster in real time, with the API server also
//! listening on a real local TCP port and a kubeconfig pointing at it, so that kubectl
//! works against the simulation (the playground that needs no Docker).
//!
//! The world is stepped in lockstep with the machine's monotonic clock. This is the one
//! place the simulation reads real time, and only to pace itself: simulated timestamps
//! still come from the world's clock (pinned epoch + elapsed), so a `--seed` replays the
//! same cluster modulo kubectl's own timing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::world::{World, WorldBuilder, WorldError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    World(#[from] WorldError),
    #[error("cannot install Bloodraven: {0}")]
    Install(#[from] crate::playground::InstallError),
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(std::io::Error),
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Local address of the real-TCP API server (port 0 picks a free port).
    pub listen: SocketAddr,
    pub kubeconfig: PathBuf,
    pub seed: u64,
    /// Install the Bloodraven CRDs and the operator Deployment before the manifests,
    /// so that a failover group applied afterwards is managed by the real operator.
    pub bloodraven: bool,
    /// Manifests (multi-document YAML) created once the cluster is up.
    pub manifests: Vec<PathBuf>,
    /// Stop after this much time (default: run until killed).
    pub duration: Option<Duration>,
    /// Simulated time per step.
    pub tick: Duration,
}

/// A kubeconfig for a plain-HTTP local server without credentials.
pub fn kubeconfig_yaml(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bloodraven-sim\n  cluster:\n    server: {server}\nusers:\n- name: bloodraven-sim\n  user: {{}}\ncontexts:\n- name: bloodraven-sim\n  context:\n    cluster: bloodraven-sim\n    user: bloodraven-sim\n    namespace: default\ncurrent-context: bloodraven-sim\n"
    )
}

/// Runs the playground in real time until killed (or `duration` passes).
pub fn serve(options: &ServeOptions) -> Result<(), ServeError> {
    let mut world: World = WorldBuilder::new(options.seed).tick(options.tick).build()?;
    if options.bloodraven {
        crate::playground::install(&world)?;
        tracing::info!("installed the Bloodraven CRDs and operator");
    }
    for manifest in &options.manifests {
        let created = crate::playground::apply_file(&world, manifest)?;
        tracing::info!(manifest = %manifest.display(), created, "applied");
    }

    let listener =
        std::net::TcpListener::bind(options.listen).map_err(|source| ServeError::Bind {
            addr: options.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: options.listen,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::Bind {
            addr: local,
            source,
        })?;
    let api = world.api().clone();
    // The real-TCP server runs on its own OS thread and runtime; it shares the store
    // (and the simulated clock) with the world stepped on this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    if let Err(err) = api.serve(listener).await {
                        tracing::error!(%err, "real-TCP API server stopped");
                    }
                }
                Err(err) => tracing::error!(%err, "cannot adopt the listener"),
            }
        });
    });

    let server = format!("http://{local}");
    std::fs::write(&options.kubeconfig, kubeconfig_yaml(&server)).map_err(|source| {
        ServeError::Kubeconfig {
            path: options.kubeconfig.clone(),
            source,
        }
    })?;
    println!(
        "bloodraven-sim: API server on {server}; kubeconfig written to {}",
        options.kubeconfig.display()
    );
    println!("  export KUBECONFIG={}", options.kubeconfig.display());

    // Real-time lockstep: the one legitimate wall-clock read in the simulation (it
    // paces the steps; it never becomes a timestamp).
    let started = std::time::Instant::now();
    loop {
        let real = started.elapsed();
        if options.duration.is_some_and(|limit| real >= limit) {
            return Ok(());
        }
        while world.elapsed() < real {
            world.step()?;
        }
        std::thread::sleep(options.tick.max(Duration::from_millis(1)));
    }
}
