//! Serve mode: the simulated playground cluster in real time, with the API server also
//! listening on a real local TCP port and a kubeconfig pointing at it, so that kubectl
//! works against the simulation (the playground that needs no Docker).
//!
//! The world is stepped in lockstep with the machine's monotonic clock. This is the one
//! place the simulation reads real time: to pace itself, and once at start to pin the
//! epoch to the real current time (so kubectl's ages are relative to now; `--epoch-seconds`
//! pins another). Timestamps then come from the world's clock (epoch + elapsed), so a
//! `--seed` with a pinned epoch replays the same cluster modulo kubectl's own timing.

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
    #[error("cannot expose a Service on a local port: {0}")]
    Expose(std::io::Error),
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
    /// Namespace of the operator's Deployment (with `bloodraven`).
    pub operator_namespace: String,
    /// Manifests (multi-document YAML) created once the cluster is up.
    pub manifests: Vec<PathBuf>,
    /// Stop after this much time (default: run until killed).
    pub duration: Option<Duration>,
    /// Simulated time per step.
    pub tick: Duration,
    /// The simulated wall-clock start in seconds since the Unix epoch; `None` is the
    /// real current time.
    pub epoch_seconds: Option<u64>,
    /// Services reachable on real local ports (`--expose`), on the listen address.
    pub exposures: Vec<crate::expose::Exposure>,
}

/// The real current time in whole seconds since the Unix epoch: the serve-mode epoch, so
/// that Event and pod ages read relative to now in kubectl.
fn now_unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A kubeconfig for a plain-HTTP local server without credentials.
pub fn kubeconfig_yaml(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bloodraven-sim\n  cluster:\n    server: {server}\nusers:\n- name: bloodraven-sim\n  user: {{}}\ncontexts:\n- name: bloodraven-sim\n  context:\n    cluster: bloodraven-sim\n    user: bloodraven-sim\n    namespace: default\ncurrent-context: bloodraven-sim\n"
    )
}

/// Runs the playground in real time until killed (or `duration` passes).
pub fn serve(options: &ServeOptions) -> Result<(), ServeError> {
    let mut builder = WorldBuilder::new(options.seed)
        .tick(options.tick)
        .epoch_seconds(options.epoch_seconds.unwrap_or_else(now_unix_seconds));
    // mysqld takes seconds to come back, as in the driven playground the chaos runner
    // uses: with the kubelet's default half second a killed primary was writable again
    // before the operator's detection window closed, and the guide's pod-kill walkthrough
    // never failed over.
    builder.images_mut().register(
        crate::models::MYSQL_IMAGE,
        crate::models::mysql::MysqlProgram::default(),
        crate::harness::REALISTIC_MYSQL_STARTUP,
    );
    let mut world: World = builder.build()?;
    // CRDs, then the manifests, then the operator: a manifest may create the
    // operator's namespace (the playground's does).
    if options.bloodraven {
        crate::playground::install_crds(&world)?;
    }
    for manifest in &options.manifests {
        let created = crate::playground::apply_file(&world, manifest)?;
        tracing::info!(manifest = %manifest.display(), created, "applied");
    }
    if options.bloodraven {
        crate::playground::install_operator_in(&world, &options.operator_namespace)?;
        tracing::info!(namespace = %options.operator_namespace, "installed the Bloodraven CRDs and operator");
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
    let exposed = crate::expose::install(
        &mut world,
        &options.exposures,
        options.listen.ip(),
        &runtime,
    )
    .map_err(ServeError::Expose)?;
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
    for (exposure, local) in options.exposures.iter().zip(&exposed) {
        println!(
            "  http://{local} -> svc/{} port {} in {}",
            exposure.service, exposure.port, exposure.namespace
        );
    }

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
