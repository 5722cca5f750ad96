//! The playground's dashboard: a page showing the group's health banner, site cards,
//! DNS records and Events, kept live from the operator's state feed (a WebSocket) and
//! the dns-webhook's records (polled every 3 s, DNSEndpoint objects as the fallback).
//! The same library runs as the `dashboard` binary and as a simulated pod program;
//! only the dialer (TCP or simulated TCP) and the listener differ.

pub mod args;
pub mod http;
pub mod sources;
pub mod view;

pub use args::Args;

use bloodraven::seams::object_storage::SharedStorageDialer;

/// Starts the source loops on the current runtime and returns the router serving
/// the page; the caller serves it on its listener.
pub fn start(args: &Args, dialer: SharedStorageDialer) -> axum::Router {
    let sources = sources::Sources::new(&args.namespace, &args.group);
    tokio::spawn(sources::follow_feed(
        sources.clone(),
        dialer.clone(),
        args.operator_feed.clone(),
    ));
    if !args.dns_webhook.is_empty() {
        tokio::spawn(sources::poll_dns(
            sources.clone(),
            dialer,
            args.dns_webhook.clone(),
            args.dns_poll_interval(),
        ));
    }
    http::router(sources)
}
