//! The HTTP transport the S3 client runs on: hyper over the injected [`StorageDialer`]
//! (TLS on top for `https://` endpoints), with a connect timeout, a response timeout, a
//! silent-body timeout, and a fixed retry schedule for transient failures.
//!
//! object_store's own retries are switched off (see `client.rs`): they jitter from the
//! thread RNG, which would make the simulation depend on something other than its seed.
//! Retrying here, below object_store, keeps the schedule reproducible.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Uri};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};

use crate::seams::object_storage::{BoxedByteStream, SharedStorageDialer};

/// Bounds on every exchange with the object store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Establishing a connection (TCP, plus TLS for https).
    pub connect: Duration,
    /// From sending a request to receiving the response headers. A part upload sends
    /// its whole body first, so this must cover one part at the slowest expected rate.
    pub response: Duration,
    /// A response body (a download) that delivers nothing for this long is failed.
    pub body_idle: Duration,
    /// Pooled idle connections are dropped after this long.
    pub pool_idle: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(120),
            body_idle: Duration::from_secs(60),
            pool_idle: Duration::from_secs(30),
        }
    }
}

/// How often, and how patiently, a transient failure is retried.
///
/// No jitter: one backup Job is one client, where jitter buys nothing, and a jitter drawn
/// from an unseeded generator would make simulated runs unreproducible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries of one request, the first included (1 = never retry).
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// What one try of a request ended with, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response arrived with this status.
    Status(u16),
    /// No connection could be made: the request never reached the server.
    ConnectFailed,
    /// The request was (maybe) sent but no response arrived: timeout or broken connection.
    NoResponse,
}

/// Whether to try `method` again after `outcome` on try number `attempt` (1-based), and
/// after how long. Pure: the table in the tests is the whole policy.
///
/// A request that never reached the server is always safe to repeat. Otherwise only
/// idempotent methods are repeated (GET, HEAD, PUT of an object or a part, DELETE): a POST
/// (create or complete a multipart upload) that may have taken effect is not, except on
/// 503, which S3 answers (`SlowDown`) before doing anything.
pub fn retry_after(
    method: &Method,
    outcome: Outcome,
    attempt: u32,
    policy: &RetryPolicy,
) -> Option<Duration> {
    if attempt >= policy.attempts {
        return None;
    }
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE
    );
    let transient = match outcome {
        Outcome::ConnectFailed => true,
        Outcome::NoResponse => idempotent,
        Outcome::Status(503) => true,
        Outcome::Status(500 | 502 | 504) => idempotent,
        Outcome::Status(_) => false,
    };
    if !transient {
        return None;
    }
    let doublings = attempt.saturating_sub(1).min(16);
    let backoff = policy.first_backoff.saturating_mul(1u32 << doublings);
    Some(backoff.min(policy.max_backoff))
}

/// hyper-util connector dialing through the storage dialer, with a connect timeout.
#[derive(Clone)]
pub(crate) struct DialConnector {
    dialer: SharedStorageDialer,
    connect_timeout: Duration,
}

impl tower::Service<Uri> for DialConnector {
    type Response = DialedStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<DialedStream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
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
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            match tokio::time::timeout(timeout, dialer.dial(&host, port)).await {
                Ok(Ok(stream)) => Ok(DialedStream(TokioIo::new(stream))),
                Ok(Err(err)) => Err(err),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {host}:{port} timed out after {timeout:?}"),
                )),
            }
        })
    }
}

/// A dialed stream as a hyper connection.
pub(crate) struct DialedStream(TokioIo<BoxedByteStream>);

impl Connection for DialedStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for DialedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for DialedStream {
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

enum Pool {
    Plain(Client<DialConnector, HttpRequestBody>),
    Tls(Client<hyper_rustls::HttpsConnector<DialConnector>, HttpRequestBody>),
}

/// The object store's HTTP client: object_store's [`HttpService`] and [`HttpConnector`]
/// over the injected dialer.
#[derive(Clone)]
pub struct StorageHttp {
    pool: Arc<Pool>,
    timeouts: HttpTimeouts,
    retry: RetryPolicy,
}

impl fmt::Debug for StorageHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = matches!(*self.pool, Pool::Tls(_));
        f.debug_struct("StorageHttp")
            .field("tls", &tls)
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .finish()
    }
}

impl StorageHttp {
    /// `tls`: speak HTTPS (the endpoint is `https://`), verifying the server against the
    /// system's root certificates. Fails only when TLS is asked for and no root
    /// certificate can be loaded.
    pub fn new(
        dialer: SharedStorageDialer,
        tls: bool,
        timeouts: HttpTimeouts,
        retry: RetryPolicy,
    ) -> io::Result<Self> {
        let connector = DialConnector {
            dialer,
            connect_timeout: timeouts.connect,
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(timeouts.pool_idle)
            .pool_max_idle_per_host(8);
        let pool = if tls {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(rustls::crypto::ring::default_provider())?
                .https_only()
                .enable_http1()
                .wrap_connector(connector);
            Pool::Tls(builder.build(https))
        } else {
            Pool::Plain(builder.build(connector))
        };
        Ok(Self {
            pool: Arc::new(pool),
            timeouts,
            retry,
        })
    }

    async fn send_once(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let sent = async {
            match &*self.pool {
                Pool::Plain(client) => client.request(request).await,
                Pool::Tls(client) => client.request(request).await,
            }
        };
        let response = match tokio::time::timeout(self.timeouts.response, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                let kind = if err.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                return Err(HttpError::new(kind, err));
            }
            Err(_) => {
                return Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no response within {:?} (connection presumed stalled)",
                            self.timeouts.response
                        ),
                    ),
                ));
            }
        };
        let idle = self.timeouts.body_idle;
        Ok(response.map(|body| HttpResponseBody::new(IdleTimeoutBody::new(body, idle))))
    }
}

fn outcome_of(result: &Result<HttpResponse, HttpError>) -> Outcome {
    match result {
        Ok(response) => Outcome::Status(response.status().as_u16()),
        Err(err) if err.kind() == HttpErrorKind::Connect => Outcome::ConnectFailed,
        Err(_) => Outcome::NoResponse,
    }
}

#[async_trait]
impl HttpService for StorageHttp {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let mut attempt = 1;
        loop {
            // The body is `Bytes` or a list of `Bytes`: cloning it for a retry copies no data.
            let mut again = http::Request::new(body.clone());
            *again.method_mut() = parts.method.clone();
            *again.uri_mut() = parts.uri.clone();
            *again.version_mut() = parts.version;
            *again.headers_mut() = parts.headers.clone();
            let result = self.send_once(again).await;
            match retry_after(&parts.method, outcome_of(&result), attempt, &self.retry) {
                Some(backoff) => {
                    tracing::debug!(
                        method = %parts.method,
                        uri = %parts.uri,
                        attempt,
                        ?backoff,
                        outcome = ?outcome_of(&result),
                        "object storage request failed transiently; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                None => return result,
            }
        }
    }
}

impl HttpConnector for StorageHttp {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.clone()))
    }
}

/// A response body that fails when no frame arrives for `idle`: a download stalled by a
/// dead connection must end, not hang the Job.
struct IdleTimeoutBody {
    inner: hyper::body::Incoming,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeoutBody {
    fn new(inner: hyper::body::Incoming, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl HttpBody for IdleTimeoutBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(
                    frame.map(|result| {
                        result.map_err(|err| HttpError::new(HttpErrorKind::Decode, err))
                    }),
                )
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("response body idle for {:?}", this.idle),
                    ),
                )))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        }
    }

    #[test]
    fn retry_table() {
        let ms = Duration::from_millis;
        // (method, outcome, attempt, expected)
        let cases: &[(Method, Outcome, u32, Option<Duration>)] = &[
            // Nothing reached the server: always safe, backoff doubles up to the cap.
            (Method::POST, Outcome::ConnectFailed, 1, Some(ms(100))),
            (Method::GET, Outcome::ConnectFailed, 2, Some(ms(200))),
            (Method::GET, Outcome::ConnectFailed, 3, Some(ms(300))),
            // The last try is final.
            (Method::GET, Outcome::ConnectFailed, 4, None),
            // A lost response: idempotent methods only.
            (Method::GET, Outcome::NoResponse, 1, Some(ms(100))),
            (Method::PUT, Outcome::NoResponse, 1, Some(ms(100))),
            (Method::DELETE, Outcome::NoResponse, 1, Some(ms(100))),
            (Method::POST, Outcome::NoResponse, 1, None),
            // Server errors.
            (Method::PUT, Outcome::Status(500), 1, Some(ms(100))),
            (Method::HEAD, Outcome::Status(502), 1, Some(ms(100))),
            (Method::POST, Outcome::Status(500), 1, None),
            (Method::POST, Outcome::Status(503), 1, Some(ms(100))),
            // Answers that a retry cannot change.
            (Method::GET, Outcome::Status(200), 1, None),
            (Method::GET, Outcome::Status(403), 1, None),
            (Method::GET, Outcome::Status(404), 1, None),
            (Method::PUT, Outcome::Status(400), 1, None),
        ];
        for (method, outcome, attempt, expected) in cases {
            assert_eq!(
                retry_after(method, *outcome, *attempt, &policy()),
                *expected,
                "{method} {outcome:?} attempt {attempt}"
            );
        }
    }

    #[test]
    fn one_attempt_never_retries() {
        let once = RetryPolicy {
            attempts: 1,
            ..policy()
        };
        assert_eq!(
            retry_after(&Method::GET, Outcome::ConnectFailed, 1, &once),
            None
        );
    }

    #[test]
    fn backoff_does_not_overflow_on_many_attempts() {
        let many = RetryPolicy {
            attempts: u32::MAX,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        };
        assert_eq!(
            retry_after(&Method::GET, Outcome::ConnectFailed, 1000, &many),
            Some(Duration::from_secs(30))
        );
    }
}
