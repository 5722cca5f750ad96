//! `bloodraven-sim`: runs the simulated cluster outside tests. `serve` is the playground
//! that needs no Docker: the simulated cluster in real time, reachable with kubectl.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser)]
#[command(
    name = "bloodraven-sim",
    about = "Deterministic simulated Kubernetes cluster for Bloodraven"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the simulated playground in real time with the API server on a local port.
    Serve {
        /// Local port of the API server (0 picks a free one; see the kubeconfig).
        #[arg(long, default_value_t = 6443)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
        address: IpAddr,
        /// Where to write the kubeconfig.
        #[arg(long, default_value = "bloodraven-sim.kubeconfig")]
        kubeconfig: PathBuf,
        /// The seed of every random choice in the simulation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Install the Bloodraven CRDs and operator first (the no-Docker playground:
        /// `--bloodraven --apply examples/playground.yaml`).
        #[arg(long)]
        bloodraven: bool,
        /// Namespace of the operator with `--bloodraven` (the playground's is
        /// `bloodraven-playground`, where the guide looks for its logs).
        #[arg(long, default_value = bloodraven::deploy::OPERATOR_NAMESPACE)]
        operator_namespace: String,
        /// Manifests (multi-document YAML) to create at start.
        #[arg(long = "apply", value_name = "FILE")]
        manifests: Vec<PathBuf>,
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(long)]
        duration_seconds: Option<u64>,
        /// Simulated milliseconds per step.
        #[arg(long, default_value_t = 2)]
        tick_ms: u64,
        /// Simulated wall-clock start, in seconds since the Unix epoch (default: now,
        /// so that ages in kubectl are relative to the real time).
        #[arg(long)]
        epoch_seconds: Option<u64>,
        /// Serve a Service's port on a real local port (repeatable):
        /// NAMESPACE/SERVICE:PORT[=LOCAL_PORT]. The stand-in for `kubectl port-forward`,
        /// which the simulated API server does not serve.
        #[arg(long = "expose", value_name = "NS/SVC:PORT[=LOCAL]")]
        exposures: Vec<bloodraven_sim::expose::Exposure>,
    },
}

fn main() -> std::process::ExitCode {
    // Two outputs with their own filters: the process's stderr (RUST_LOG, default warn)
    // and the simulated containers' output for `kubectl logs` (info and above).
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        );
    tracing_subscriber::registry()
        .with(stderr)
        .with(bloodraven_sim::logs::ContainerLogLayer.with_filter(LevelFilter::INFO))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            port,
            address,
            kubeconfig,
            seed,
            bloodraven,
            operator_namespace,
            manifests,
            duration_seconds,
            tick_ms,
            epoch_seconds,
            exposures,
        } => bloodraven_sim::serve::serve(&bloodraven_sim::serve::ServeOptions {
            listen: SocketAddr::new(address, port),
            kubeconfig,
            seed,
            bloodraven,
            operator_namespace,
            manifests,
            duration: duration_seconds.map(Duration::from_secs),
            tick: Duration::from_millis(tick_ms.max(1)),
            epoch_seconds,
            exposures,
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bloodraven-sim: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
