//! `dns-webhook`: serves the in-memory external-dns webhook provider and its health
//! endpoint until interrupted.

use std::net::SocketAddr;

use bloodraven_dns_webhook::cli::Args;
use bloodraven_dns_webhook::http::{Shared, health_router, webhook_router};
use clap::Parser;

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the {which} server stopped: {source}")]
    Serve {
        which: &'static str,
        source: std::io::Error,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dns-webhook: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let zone = Shared::new(args.zone());
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })
    };
    let webhook = bind(args.listen).await?;
    let health = bind(args.health_listen).await?;
    tracing::info!(webhook = %args.listen, health = %args.health_listen, "serving");
    let webhook = axum::serve(webhook, webhook_router(zone));
    let health = axum::serve(health, health_router());
    tokio::select! {
        result = webhook => result.map_err(|source| Error::Serve { which: "webhook", source }),
        result = health => result.map_err(|source| Error::Serve { which: "health", source }),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
