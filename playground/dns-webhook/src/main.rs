//! `dns-webhook`: serves the in-memory external-dns webhook provider and its health
//! endpoint until interrupted.

use std::net::SocketAddr;

use bloodraven_dns_webhook::http::{Shared, health_router, webhook_router};
use bloodraven_dns_webhook::records::{DomainFilter, Zone};
use clap::Parser;

/// In-memory external-dns webhook provider (the Bloodraven playground's DNS).
///
/// external-dns's webhook provider calls GET / (negotiation: the domain filter),
/// GET /records, POST /records (apply changes) and POST /adjustendpoints on the webhook
/// address, in the media type application/external.dns.webhook+json;version=1. The
/// kubelet probes GET /healthz on the health address. Records are kept in memory only.
#[derive(Parser, Debug)]
#[command(name = "dns-webhook", version)]
struct Args {
    /// Address of the webhook API. external-dns's guide runs providers as a sidecar on
    /// localhost; the playground's dashboard also reads records, hence all interfaces.
    #[arg(long, env = "DNS_WEBHOOK_LISTEN", default_value = "0.0.0.0:8888")]
    listen: SocketAddr,
    /// Address of the health endpoint (GET /healthz).
    #[arg(
        long,
        env = "DNS_WEBHOOK_HEALTH_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    health_listen: SocketAddr,
    /// Domains served (repeatable; none serves every name).
    #[arg(long = "domain-filter", value_name = "DOMAIN")]
    include: Vec<String>,
    /// Domains refused even inside an included one (repeatable).
    #[arg(long = "exclude-domain", value_name = "DOMAIN")]
    exclude: Vec<String>,
}

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
    let zone = Shared::new(Zone::new(DomainFilter {
        include: args.include,
        exclude: args.exclude,
    }));
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
