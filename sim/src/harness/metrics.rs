//! The operator's /metrics, scraped over the simulated network from inside a client
//! host: the Running operator pods are found through the API, and each is asked in turn
//! (by its stable pod DNS name and its `metrics` container port) with hyper over the
//! sim's turmoil connector, until one answers.

use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::transport::SimConnector;

/// How the operator's pods are found (the label its Deployment sets).
pub const OPERATOR_SELECTOR: &str = bloodraven::deploy::OPERATOR_POD_SELECTOR;
/// The operator's metrics port when its pod names no `metrics` container port.
pub const OPERATOR_METRICS_PORT: u16 = bloodraven::deploy::METRICS_PORT;
/// Bound on one scrape (connect, request and body): turmoil TCP does not retransmit, so
/// an exchange stalled by a partition never finishes on its own.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why no operator /metrics body was read.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("listing pods {selector}: {source}")]
    ListPods {
        selector: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error(
        "no operator /metrics reachable: no Running pod labelled {selector} (is the operator installed?)"
    )]
    NoOperatorPod { selector: &'static str },
    #[error("no operator /metrics reachable: {}", .0.join("; "))]
    Unreachable(Vec<String>),
}

/// One endpoint's failure, for [`ScrapeError::Unreachable`].
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("bad URI {uri}: {source}")]
    Uri {
        uri: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("request: {0}")]
    Request(#[from] hyper_util::client::legacy::Error),
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error("reading the body: {0}")]
    Body(#[from] hyper::Error),
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

/// The first answering operator pod's /metrics body (pods in name order).
pub async fn scrape_operator(client: &kube::Client) -> Result<String, ScrapeError> {
    let endpoints = operator_endpoints(client).await?;
    if endpoints.is_empty() {
        return Err(ScrapeError::NoOperatorPod {
            selector: OPERATOR_SELECTOR,
        });
    }
    let mut errors = Vec::new();
    for (host, port) in endpoints {
        match get_metrics(&host, port).await {
            Ok(body) => return Ok(body),
            Err(e) => errors.push(format!("{host}:{port}: {e}")),
        }
    }
    Err(ScrapeError::Unreachable(errors))
}

/// The Running operator pods' metrics endpoints (`host`, `port`), sorted.
async fn operator_endpoints(client: &kube::Client) -> Result<Vec<(String, u16)>, ScrapeError> {
    let api: Api<Pod> = Api::all(client.clone());
    let pods = api
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await
        .map_err(|source| ScrapeError::ListPods {
            selector: OPERATOR_SELECTOR,
            source,
        })?;
    let mut out: Vec<(String, u16)> = pods
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| {
            let ns = p.metadata.namespace.as_deref()?;
            let name = p.metadata.name.as_deref()?;
            let port = p
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|port| port.name.as_deref() == Some(bloodraven::deploy::METRICS_PORT_NAME))
                .and_then(|port| u16::try_from(port.container_port).ok())
                .unwrap_or(OPERATOR_METRICS_PORT);
            Some((crate::cluster::pod_host_name(ns, name), port))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// `GET /metrics` on `host:port` over simulated TCP; the body of a 200 response.
pub async fn get_metrics(host: &str, port: u16) -> Result<String, EndpointError> {
    let uri = format!("http://{host}:{port}/metrics");
    let uri: Uri = uri
        .parse()
        .map_err(|source| EndpointError::Uri { uri, source })?;
    // No pooling: one exchange per scrape, and no idle connection left behind that a
    // partition could silently kill.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, Empty<Bytes>>(SimConnector {
            connect_timeout: CONNECT_TIMEOUT,
        });
    let exchange = async {
        let response = client.get(uri).await?;
        if response.status() != StatusCode::OK {
            return Err(EndpointError::Status(response.status()));
        }
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
        .await
        .map_err(|_| EndpointError::TimedOut(SCRAPE_TIMEOUT))?
}
