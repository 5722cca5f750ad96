//! `dashboard`: serves the playground's dashboard over TCP, following the operator's
//! state feed and the dns-webhook's records over plain TCP.

use std::sync::Arc;

use bloodraven::seams::object_storage::TcpDialer;
use bloodraven_dashboard::Args;
use clap::Parser;

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server stopped: {0}")]
    Serve(std::io::Error),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dashboard: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: args.listen,
            source,
        })?;
    let app = bloodraven_dashboard::start(&args, Arc::new(TcpDialer));
    tracing::info!(listen = %args.listen, feed = %args.operator_feed, "serving");
    tokio::select! {
        result = axum::serve(listener, app) => result.map_err(Error::Serve),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
