//! The provider's command line, shared by the `dns-webhook` binary and the simulation's
//! pod program (which runs the same routers on simulated sockets), so both accept the
//! same flags with the same defaults.

use std::net::SocketAddr;

use clap::Parser;

use crate::records::{DomainFilter, Zone};

/// In-memory external-dns webhook provider (the Bloodraven playground's DNS).
///
/// external-dns's webhook provider calls GET / (negotiation: the domain filter),
/// GET /records, POST /records (apply changes) and POST /adjustendpoints on the webhook
/// address, in the media type application/external.dns.webhook+json;version=1. The
/// kubelet probes GET /healthz on the health address. Records are kept in memory only.
#[derive(Parser, Debug, Clone)]
#[command(name = "dns-webhook", version)]
pub struct Args {
    /// Address of the webhook API. external-dns's guide runs providers as a sidecar on
    /// localhost; the playground's dashboard also reads records, hence all interfaces.
    #[arg(long, env = "DNS_WEBHOOK_LISTEN", default_value = "0.0.0.0:8888")]
    pub listen: SocketAddr,
    /// Address of the health endpoint (GET /healthz).
    #[arg(
        long,
        env = "DNS_WEBHOOK_HEALTH_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub health_listen: SocketAddr,
    /// Domains served (repeatable; none serves every name).
    #[arg(long = "domain-filter", value_name = "DOMAIN")]
    pub include: Vec<String>,
    /// Domains refused even inside an included one (repeatable).
    #[arg(long = "exclude-domain", value_name = "DOMAIN")]
    pub exclude: Vec<String>,
}

impl Args {
    /// An empty zone with the flags' domain filter.
    pub fn zone(&self) -> Zone {
        Zone::new(DomainFilter {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
        })
    }
}
