//! Transports over the simulated network: a `kube::Client` that reaches the API server
//! over turmoil TCP, and a seeded watcher backoff. (The turmoil listener the API server
//! serves on is `apiserver::TurmoilListener`.)
//!
//! turmoil's TCP does not retransmit: a connection that lost segments in a partition
//! stalls forever after repair, and a connect to a crashed host hangs until it is
//! bounced. Every client built here therefore bounds connects, requests, idle pooled
//! connections and silent response bodies (watches) with timeouts. A crashed host's
//! sockets close with FIN/RST, so pooled connections to it are discarded, not reused;
//! docs/simulation.md, "Transport behaviour on an API-host crash", has the details.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kube::client::middleware::BaseUriLayer;
use tower::ServiceBuilder;

/// The turmoil host name of the simulated API server.
pub const API_SERVER_HOST: &str = "kube-apiserver";
/// The port the simulated API server listens on (plain HTTP inside the simulation).
pub const API_SERVER_PORT: u16 = 6443;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Timeouts of a simulated `kube::Client`. Defaults suit the simulation: short enough
/// that a connection stalled by a partition is abandoned within seconds.
#[derive(Clone, Debug)]
pub struct SimClientConfig {
    /// Bound on establishing a TCP connection (a crashed host never answers).
    pub connect_timeout: Duration,
    /// Bound on receiving response headers.
    pub request_timeout: Duration,
    /// A response body (a watch) that delivers nothing for this long is failed, so that
    /// a watch stalled by lost segments is re-established. Must exceed the watch
    /// `timeoutSeconds` callers use, or idle watches are cut early (harmless: the
    /// watcher resumes from its last resourceVersion).
    pub body_idle_timeout: Duration,
    /// Pooled idle connections are dropped after this long (a pooled connection may be
    /// silently dead after a partition).
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub default_namespace: String,
    /// The `User-Agent` header, by which the API server counts requests per client.
    pub user_agent: Option<String>,
}

impl Default for SimClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            body_idle_timeout: Duration::from_secs(15),
            pool_idle_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 4,
            default_namespace: "default".to_string(),
            user_agent: None,
        }
    }
}

/// Builds a `kube::Client` that talks to `host:port` over simulated TCP.
///
/// Must be called inside turmoil host software (the client spawns its request buffer
/// on the host's runtime).
pub fn kube_client(
    host: &str,
    port: u16,
    config: &SimClientConfig,
) -> Result<kube::Client, http::Error> {
    let base_uri = Uri::builder()
        .scheme("http")
        .authority(format!("{host}:{port}"))
        .path_and_query("/")
        .build()?;
    let connector = SimConnector {
        connect_timeout: config.connect_timeout,
    };
    let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .build::<_, kube::client::Body>(connector);
    let body_idle_timeout = config.body_idle_timeout;
    let user_agent = config
        .user_agent
        .as_deref()
        .and_then(|ua| http::HeaderValue::from_str(ua).ok());
    let service = ServiceBuilder::new()
        .layer(BaseUriLayer::new(base_uri))
        .map_request(move |mut request: http::Request<kube::client::Body>| {
            if let Some(ua) = &user_agent {
                request
                    .headers_mut()
                    .insert(http::header::USER_AGENT, ua.clone());
            }
            request
        })
        .map_response(move |response: http::Response<hyper::body::Incoming>| {
            response.map(|body| IdleTimeoutBody::new(body, body_idle_timeout))
        })
        .layer(tower::timeout::TimeoutLayer::new(config.request_timeout))
        .map_err(BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace.clone()))
}

/// A `kube::Client` for the simulated API server, with the default timeouts.
pub fn api_server_client() -> Result<kube::Client, http::Error> {
    kube_client(
        API_SERVER_HOST,
        API_SERVER_PORT,
        &SimClientConfig::default(),
    )
}

/// hyper-util connector dialing turmoil TCP with a connect timeout.
#[derive(Clone, Debug)]
pub struct SimConnector {
    pub connect_timeout: Duration,
}

impl tower::Service<Uri> for SimConnector {
    type Response = SimStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<SimStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("URI {uri} has no host"),
                    )
                })?
                .to_string();
            let port = uri.port_u16().unwrap_or(80);
            match tokio::time::timeout(
                timeout,
                turmoil::net::TcpStream::connect((host.as_str(), port)),
            )
            .await
            {
                Ok(Ok(stream)) => Ok(SimStream(TokioIo::new(stream))),
                Ok(Err(err)) => Err(err),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {host}:{port} timed out after {timeout:?}"),
                )),
            }
        })
    }
}

/// A turmoil TCP stream as a hyper connection.
#[derive(Debug)]
pub struct SimStream(TokioIo<turmoil::net::TcpStream>);

impl Connection for SimStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A response body that fails when no frame arrives for `idle` (see
/// [`SimClientConfig::body_idle_timeout`]).
pub struct IdleTimeoutBody<B> {
    inner: B,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> HttpBody for IdleTimeoutBody<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "response body idle for {:?} (connection presumed stalled)",
                        this.idle
                    ),
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A watcher backoff with kube's default shape (800 ms doubling to 30 s, reset after
/// 120 s without a backoff) whose jitter comes from a seeded generator, and whose reset
/// timer reads tokio's (simulated) clock: kube's `DefaultBackoff` jitters from the
/// thread RNG and times resets with `std::time::Instant`, both nondeterministic.
pub struct SeededBackoff {
    rng: crate::rng::SimRng,
    min: Duration,
    max: Duration,
    reset_after: Duration,
    current: Duration,
    last: Option<tokio::time::Instant>,
}

impl SeededBackoff {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: crate::rng::SimRng::new(seed, crate::rng::Stream::WatcherBackoff),
            min: Duration::from_millis(800),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(120),
            current: Duration::ZERO,
            last: None,
        }
    }

    /// Overrides the delay bounds (the first delay is `min`, doubling up to `max`).
    pub fn with_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min = min;
        self.max = max;
        self
    }
}

impl Iterator for SeededBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) >= self.reset_after)
        {
            self.current = Duration::ZERO;
        }
        self.last = Some(now);
        self.current = if self.current.is_zero() {
            self.min
        } else {
            (self.current * 2).min(self.max)
        };
        // Full jitter on top, as backon's `with_jitter` does: [current, 2 * current).
        let jitter = self.rng.unit();
        Some(self.current.mul_f64(1.0 + jitter))
    }
}

impl kube::runtime::utils::Backoff for SeededBackoff {
    fn reset(&mut self) {
        self.current = Duration::ZERO;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn seeded_backoff_replays_and_doubles() {
        let first: Vec<Duration> = SeededBackoff::new(7).take(8).collect();
        let again: Vec<Duration> = SeededBackoff::new(7).take(8).collect();
        let other: Vec<Duration> = SeededBackoff::new(8).take(8).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert!(
            first[0] >= Duration::from_millis(800) && first[0] < Duration::from_millis(1600),
            "{first:?}"
        );
        assert!(
            first[7] >= Duration::from_secs(30) && first[7] < Duration::from_secs(60),
            "{first:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn seeded_backoff_resets_after_quiet_period() {
        use kube::runtime::utils::Backoff;
        let mut backoff =
            SeededBackoff::new(1).with_bounds(Duration::from_secs(1), Duration::from_secs(8));
        let _ = backoff.next();
        let _ = backoff.next();
        let third = backoff.next().unwrap_or_default();
        assert!(third >= Duration::from_secs(4), "{third:?}");
        tokio::time::advance(Duration::from_secs(121)).await;
        let after_quiet = backoff.next().unwrap_or_default();
        assert!(after_quiet < Duration::from_secs(2), "{after_quiet:?}");
        backoff.reset();
        let after_reset = backoff.next().unwrap_or_default();
        assert!(after_reset < Duration::from_secs(2), "{after_reset:?}");
    }
}
