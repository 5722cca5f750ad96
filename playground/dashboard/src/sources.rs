//! The dashboard's two sources, each a loop that keeps the latest delivery in
//! [`Sources`]: the operator's state feed (a WebSocket client that reconnects after a
//! second whenever the connection ends) and the dns-webhook's `GET /records` (polled).
//! Both dial through the injected `StorageDialer` seam: TCP on a cluster, simulated TCP
//! in the simulation.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bloodraven::api::Endpoint;
use bloodraven::seams::object_storage::SharedStorageDialer;
use bloodraven::state_feed::StateSnapshot;
use futures::StreamExt;
use http::Uri;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;

use crate::view::{DashboardState, banner, dns_view, toolbar};

/// How long a connection attempt, handshake or exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);
/// Wait before reconnecting to the feed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// The webhook API's media type (external-dns webhook API v1).
const WEBHOOK_MEDIA_TYPE: &str = "application/external.dns.webhook+json;version=1";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("bad URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("connecting to {address}: {source}")]
    Dial {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} at {address} timed out after {after:?}")]
    Timeout {
        what: &'static str,
        address: String,
        after: Duration,
    },
    #[error("WebSocket handshake with {url}: {source}")]
    Handshake {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("HTTP exchange with {address}: {source}")]
    Http {
        address: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered JSON that is not a list of endpoints: {source}")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Default)]
struct Latest {
    snapshot: Option<StateSnapshot>,
    feed_connected: bool,
    feed_error: Option<String>,
    /// `None` until the first poll, or when no webhook is configured.
    webhook: Option<Result<Vec<Endpoint>, String>>,
}

/// The latest delivery of each source, shared by the loops and the HTTP handlers.
#[derive(Clone, Default)]
pub struct Sources {
    latest: Arc<Mutex<Latest>>,
    namespace: String,
    group: String,
}

impl Sources {
    pub fn new(namespace: &str, group: &str) -> Self {
        Self {
            latest: Arc::default(),
            namespace: namespace.to_string(),
            group: group.to_string(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Latest> {
        // Every write replaces whole fields, so a poisoned lock still guards usable data.
        self.latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the page shows now.
    pub fn state(&self) -> DashboardState {
        let latest = self.lock();
        let snapshot = latest.snapshot.as_ref();
        DashboardState {
            banner: banner(snapshot, &self.group, latest.feed_connected),
            feed_connected: latest.feed_connected,
            feed_error: latest.feed_error.clone(),
            group: snapshot.and_then(|s| s.groups.iter().find(|g| g.name == self.group).cloned()),
            dns: dns_view(latest.webhook.as_ref(), snapshot),
            events: snapshot.map(|s| s.events.clone()).unwrap_or_default(),
            toolbar: toolbar(&self.namespace, &self.group),
        }
    }
}

/// `host`, `port` and path-and-query of a `ws://` or `http://` URL (no TLS: the
/// playground's in-cluster traffic is plain).
fn split_url(url: &str, default_port: u16) -> Result<(String, u16, String), SourceError> {
    let bad = |message: &str| SourceError::Url {
        url: url.to_string(),
        message: message.to_string(),
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("ws" | "http") => {}
        _ => return Err(bad("the scheme must be ws:// or http://")),
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?.to_string();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    Ok((host, uri.port_u16().unwrap_or(default_port), path))
}

async fn dial(
    dialer: &SharedStorageDialer,
    host: &str,
    port: u16,
) -> Result<bloodraven::seams::object_storage::BoxedByteStream, SourceError> {
    let address = format!("{host}:{port}");
    match tokio::time::timeout(EXCHANGE_TIMEOUT, dialer.dial(host, port)).await {
        Err(_) => Err(SourceError::Timeout {
            what: "connecting",
            address,
            after: EXCHANGE_TIMEOUT,
        }),
        Ok(Err(source)) => Err(SourceError::Dial { address, source }),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// Follows the operator's state feed forever: connect, store every snapshot, and on
/// any end or error record why and reconnect after [`RECONNECT_DELAY`].
pub async fn follow_feed(sources: Sources, dialer: SharedStorageDialer, url: String) {
    loop {
        let error = match feed_once(&sources, &dialer, &url).await {
            Ok(()) => "the operator closed the feed".to_string(),
            Err(error) => error.to_string(),
        };
        {
            let mut latest = sources.lock();
            if latest.feed_connected || latest.feed_error.as_deref() != Some(error.as_str()) {
                tracing::warn!(%url, %error, "operator state feed lost");
            }
            latest.feed_connected = false;
            latest.feed_error = Some(error);
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn feed_once(
    sources: &Sources,
    dialer: &SharedStorageDialer,
    url: &str,
) -> Result<(), SourceError> {
    let (host, port, _) = split_url(url, 80)?;
    let stream = dial(dialer, &host, port).await?;
    let handshake = tokio_tungstenite::client_async(url, stream);
    let (mut socket, _) = match tokio::time::timeout(EXCHANGE_TIMEOUT, handshake).await {
        Err(_) => {
            return Err(SourceError::Timeout {
                what: "the WebSocket handshake",
                address: format!("{host}:{port}"),
                after: EXCHANGE_TIMEOUT,
            });
        }
        Ok(result) => result.map_err(|source| SourceError::Handshake {
            url: url.to_string(),
            source: Box::new(source),
        })?,
    };
    tracing::info!(%url, "following the operator's state feed");
    {
        let mut latest = sources.lock();
        latest.feed_connected = true;
        latest.feed_error = None;
    }
    while let Some(message) = socket.next().await {
        match message {
            Ok(Message::Text(text)) => match serde_json::from_str::<StateSnapshot>(&text) {
                Ok(snapshot) => {
                    let mut latest = sources.lock();
                    latest.feed_error = snapshot.error.clone();
                    latest.snapshot = Some(snapshot);
                }
                Err(error) => {
                    tracing::warn!(%error, "unreadable state feed message");
                }
            },
            Ok(Message::Close(_)) => return Ok(()),
            Ok(_) => {}
            Err(source) => {
                return Err(SourceError::Handshake {
                    url: url.to_string(),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(())
}

/// Reads the webhook's records every `interval`, storing each answer or failure.
pub async fn poll_dns(
    sources: Sources,
    dialer: SharedStorageDialer,
    url: String,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let result = webhook_records(&dialer, &url)
            .await
            .map_err(|e| e.to_string());
        sources.lock().webhook = Some(result);
    }
}

/// One `GET /records` on the dns-webhook at `base`.
pub async fn webhook_records(
    dialer: &SharedStorageDialer,
    base: &str,
) -> Result<Vec<Endpoint>, SourceError> {
    let url = format!("{}/records", base.trim_end_matches('/'));
    let (host, port, path) = split_url(&url, 80)?;
    let address = format!("{host}:{port}");
    let exchange = async {
        let stream = dial(dialer, &host, port).await?;
        let http_error = |source| SourceError::Http {
            address: address.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_error)?;
        tokio::spawn(connection);
        let request = http::Request::get(path.as_str())
            .header(http::header::HOST, address.as_str())
            .header(http::header::ACCEPT, WEBHOOK_MEDIA_TYPE)
            .body(Empty::<axum::body::Bytes>::new())
            .map_err(|e| SourceError::Url {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(http_error)?
            .to_bytes();
        if !status.is_success() {
            return Err(SourceError::Status {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        serde_json::from_slice(&body).map_err(|source| SourceError::Json {
            url: url.clone(),
            source,
        })
    };
    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
        Err(_) => Err(SourceError::Timeout {
            what: "GET /records",
            address,
            after: EXCHANGE_TIMEOUT,
        }),
        Ok(result) => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            split_url("ws://op.ns:8080/ws/state?namespace=x", 80).unwrap(),
            (
                "op.ns".to_string(),
                8080,
                "/ws/state?namespace=x".to_string()
            )
        );
        assert_eq!(
            split_url("http://dns-webhook/records", 80).unwrap(),
            ("dns-webhook".to_string(), 80, "/records".to_string())
        );
        for bad in ["https://x/records", "wss://x/", "no url at all", "/records"] {
            assert!(split_url(bad, 80).is_err(), "{bad}");
        }
    }
}
