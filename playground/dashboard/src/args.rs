//! The dashboard's command line, shared by the binary and the simulation's pod program.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// The port the guide port-forwards to (`svc/dashboard 8091:8091`).
pub const DASHBOARD_PORT: u16 = 8091;

/// Live view of a Bloodraven failover group for the playground.
#[derive(Parser, Debug, Clone)]
// Later flags win (the simulation turns env into flags placed before the args).
#[command(name = "dashboard", version, args_override_self = true)]
pub struct Args {
    /// Address of the page and its JSON (`/api/state`).
    #[arg(long, env = "DASHBOARD_LISTEN", default_value = "0.0.0.0:8091")]
    pub listen: SocketAddr,
    /// The operator's state feed (read-only WebSocket; `namespace` selects what it shows).
    #[arg(
        long,
        env = "OPERATOR_FEED_URL",
        default_value = "ws://bloodraven-operator.bloodraven-playground:8080/ws/state?namespace=bloodraven-playground"
    )]
    pub operator_feed: String,
    /// The dns-webhook's API (its `GET /records`); empty reads DNSEndpoint objects only.
    #[arg(
        long,
        env = "DNS_WEBHOOK_URL",
        default_value = "http://dns-webhook:8888"
    )]
    pub dns_webhook: String,
    /// How often the webhook's records are read, in milliseconds (the guide: 3 s).
    #[arg(long, default_value_t = 3000)]
    pub dns_poll_ms: u64,
    /// Namespace and group the toolbar's kubectl commands name.
    #[arg(
        long,
        env = "PLAYGROUND_NAMESPACE",
        default_value = "bloodraven-playground"
    )]
    pub namespace: String,
    #[arg(long, env = "PLAYGROUND_GROUP", default_value = "playground")]
    pub group: String,
}

impl Args {
    pub fn dns_poll_interval(&self) -> Duration {
        Duration::from_millis(self.dns_poll_ms.max(100))
    }
}
