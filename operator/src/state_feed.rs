//! The operator's read-only state feed for the playground dashboard: a WebSocket at
//! `GET /ws/state?namespace=NS` (on the metrics listener) that sends a JSON
//! [`StateSnapshot`] of the namespace's failover groups, DNSEndpoints and recent Events
//! whenever it changes. It only lists through the API; what a client sends is ignored.

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::api::DNSEndpoint;
use crate::api::MysqlFailoverGroup;

/// Where the feed is served.
pub const STATE_FEED_PATH: &str = "/ws/state";
/// How many of the newest Events a snapshot carries.
pub const RECENT_EVENTS: usize = 50;
/// How often the feed re-reads the API; a snapshot is sent only when it changed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) const API_ACCESS: &[crate::rbac::ApiAccess] = &[
    crate::rbac::ApiAccess::watched(
        "bloodraven.shipstream.io",
        "mysqlfailovergroups",
        &["list"],
        "the dashboard's state feed (/ws/state): group status",
    ),
    crate::rbac::ApiAccess::watched(
        "externaldns.k8s.io",
        "dnsendpoints",
        &["list"],
        "the dashboard's state feed (/ws/state): the DNS records the operator asked for",
    ),
    crate::rbac::ApiAccess::watched(
        "events.k8s.io",
        "events",
        &["list"],
        "the dashboard's state feed (/ws/state): recent Events",
    ),
];

/// What one message of the feed carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateSnapshot {
    pub namespace: String,
    pub groups: Vec<GroupState>,
    pub dns_endpoints: Vec<DnsEndpointState>,
    /// The newest [`RECENT_EVENTS`] Events, oldest first.
    pub events: Vec<EventLine>,
    /// Why the last read failed, if it did (the rest is then the last good read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupState {
    pub name: String,
    /// The group's status as stored (health, activeSite, sites, failovers, dns, ...).
    pub status: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsEndpointState {
    pub name: String,
    pub endpoints: Vec<crate::api::Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    /// RFC 3339; the Event's eventTime, else its last (deprecated) timestamp, else its
    /// creation time.
    pub time: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub reason: String,
    pub note: String,
    /// `Kind/name` of the object the Event is about.
    pub regarding: String,
}

/// Builds a snapshot from what was listed: groups and DNSEndpoints by name, Events
/// ordered by time (ties by reason and note, so equal inputs give equal snapshots)
/// and cut to the newest [`RECENT_EVENTS`].
pub fn snapshot(
    namespace: &str,
    groups: Vec<GroupState>,
    dns_endpoints: Vec<DnsEndpointState>,
    events: Vec<EventLine>,
) -> StateSnapshot {
    let mut groups = groups;
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    let mut dns_endpoints = dns_endpoints;
    dns_endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    let mut events = events;
    // By instant, not by text: eventTime carries microseconds, the other stamps do not.
    let instant = |e: &EventLine| e.time.parse::<jiff::Timestamp>().ok();
    events.sort_by(|a, b| (instant(a), &a.reason, &a.note).cmp(&(instant(b), &b.reason, &b.note)));
    let skip = events.len().saturating_sub(RECENT_EVENTS);
    StateSnapshot {
        namespace: namespace.to_string(),
        groups,
        dns_endpoints,
        events: events.split_off(skip),
        error: None,
    }
}

/// One Event as the feed shows it. RFC 3339 strings of one format sort by time.
pub fn event_line(event: &Event) -> EventLine {
    let time = event
        .event_time
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| {
            event
                .deprecated_last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
        .or_else(|| {
            event
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
        .unwrap_or_default();
    let regarding = event
        .regarding
        .as_ref()
        .map(|r| {
            format!(
                "{}/{}",
                r.kind.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    EventLine {
        time,
        kind: event.type_.clone().unwrap_or_default(),
        reason: event.reason.clone().unwrap_or_default(),
        note: event.note.clone().unwrap_or_default(),
        regarding,
    }
}

/// Lists the namespace's groups, DNSEndpoints and Events.
pub async fn observe(client: &kube::Client, namespace: &str) -> Result<StateSnapshot, kube::Error> {
    let params = ListParams::default();
    let groups = Api::<MysqlFailoverGroup>::namespaced(client.clone(), namespace)
        .list(&params)
        .await?
        .items
        .into_iter()
        .map(|g| GroupState {
            name: g.metadata.name.clone().unwrap_or_default(),
            status: serde_json::to_value(&g.status).unwrap_or(Value::Null),
        })
        .collect();
    let dns = Api::<DNSEndpoint>::namespaced(client.clone(), namespace)
        .list(&params)
        .await?
        .items
        .into_iter()
        .map(|d| DnsEndpointState {
            name: d.metadata.name.clone().unwrap_or_default(),
            endpoints: d.spec.endpoints,
        })
        .collect();
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&params)
        .await?
        .items
        .iter()
        .map(event_line)
        .collect();
    Ok(snapshot(namespace, groups, dns, events))
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    namespace: String,
}

/// The feed's route; merge it into the metrics router.
pub fn router(client: kube::Client) -> Router {
    Router::new()
        .route(STATE_FEED_PATH, get(upgrade))
        .with_state(client)
}

/// Answers the WebSocket handshake (RFC 6455 section 4.2.2) and hands the upgraded
/// connection to [`feed`].
async fn upgrade(
    State(client): State<kube::Client>,
    Query(query): Query<FeedQuery>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    let is_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return (
            StatusCode::BAD_REQUEST,
            "a WebSocket handshake (Upgrade: websocket, Sec-WebSocket-Key) is required",
        )
            .into_response();
    };
    if !is_websocket {
        return (StatusCode::BAD_REQUEST, "Upgrade: websocket is required").into_response();
    }
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                feed(socket, client, query.namespace).await;
            }
            Err(err) => tracing::debug!(%err, "state feed upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Sends a snapshot now and whenever one differs from the last sent, until the client
/// closes or a send fails.
async fn feed<S>(socket: WebSocketStream<S>, client: kube::Client, namespace: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = socket.split();
    let mut last: Option<StateSnapshot> = None;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            message = incoming.next() => match message {
                // Pings are answered by tungstenite itself; anything else is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {
                let next = match observe(&client, &namespace).await {
                    Ok(snapshot) => snapshot,
                    Err(err) => match &last {
                        Some(previous) => StateSnapshot { error: Some(err.to_string()), ..previous.clone() },
                        None => snapshot(&namespace, vec![], vec![], vec![]).with_error(err.to_string()),
                    },
                };
                if last.as_ref() == Some(&next) {
                    continue;
                }
                let Ok(text) = serde_json::to_string(&next) else { return };
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                last = Some(next);
            }
        }
    }
}

impl StateSnapshot {
    fn with_error(self, error: String) -> Self {
        Self {
            error: Some(error),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time: &str, reason: &str) -> EventLine {
        EventLine {
            time: time.into(),
            kind: "Normal".into(),
            reason: reason.into(),
            note: String::new(),
            regarding: "MysqlFailoverGroup/playground".into(),
        }
    }

    #[test]
    fn events_come_oldest_first_and_only_the_newest_are_kept() {
        let mut events: Vec<EventLine> = (0..RECENT_EVENTS + 5)
            .rev()
            .map(|i| {
                event(
                    &format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
                    "Tick",
                )
            })
            .collect();
        events.push(event("2026-01-01T00:00:00Z", "Earliest"));
        let snap = snapshot("ns", vec![], vec![], events);
        assert_eq!(snap.events.len(), RECENT_EVENTS);
        // The five oldest ticks and the earliest event were cut.
        assert_eq!(snap.events[0].time, "2026-01-01T00:00:05Z");
        assert_eq!(
            snap.events.last().map(|e| e.time.as_str()),
            Some("2026-01-01T00:00:54Z")
        );
        assert!(snap.events.windows(2).all(|w| w[0].time <= w[1].time));
    }

    #[test]
    fn equal_inputs_in_another_order_give_an_equal_snapshot() {
        // The feed sends only changes, so list order must not look like a change.
        let g = |n: &str| GroupState {
            name: n.into(),
            status: Value::Null,
        };
        let a = snapshot(
            "ns",
            vec![g("b"), g("a")],
            vec![],
            vec![event("t1", "B"), event("t1", "A")],
        );
        let b = snapshot(
            "ns",
            vec![g("a"), g("b")],
            vec![],
            vec![event("t1", "A"), event("t1", "B")],
        );
        assert_eq!(a, b);
        assert_eq!(a.groups[0].name, "a");
    }

    #[test]
    fn an_event_without_event_time_falls_back_to_its_timestamps() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let at = |s: &str| Time(s.parse().unwrap());
        let mut e = Event {
            reason: Some("FailoverStarted".into()),
            ..Event::default()
        };
        e.metadata.creation_timestamp = Some(at("2026-01-01T00:00:01Z"));
        assert_eq!(event_line(&e).time, "2026-01-01T00:00:01Z");
        e.deprecated_last_timestamp = Some(at("2026-01-01T00:00:02Z"));
        assert_eq!(event_line(&e).time, "2026-01-01T00:00:02Z");
        assert_eq!(event_line(&e).reason, "FailoverStarted");
        assert_eq!(event_line(&e).regarding, "");
    }
}
