//! What the page shows, decided from what the sources last delivered: the health
//! banner's level, which DNS records to show (the webhook's, or the DNSEndpoint objects
//! when the webhook is unreachable or empty), and the toolbar's kubectl commands. Pure:
//! the sources (`sources`) fetch, this decides, the page only renders.

use bloodraven::api::Endpoint;
use bloodraven::state_feed::{EventLine, GroupState, StateSnapshot};
use serde::Serialize;

/// The banner's colour class: the guide's green, amber and pulsing red, plus grey
/// while nothing is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Critical,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Banner {
    pub level: Level,
    /// `Healthy`, `Degraded`, `Split Brain`, `No Primary`, or why it is unknown.
    pub text: String,
    /// The active site and any failover in progress, for the line under the banner.
    pub detail: String,
}

/// The banner for the group `group` (the playground's), from the feed's last snapshot.
pub fn banner(snapshot: Option<&StateSnapshot>, group: &str, feed_connected: bool) -> Banner {
    let unknown = |text: &str| Banner {
        level: Level::Unknown,
        text: text.to_string(),
        detail: String::new(),
    };
    let Some(snapshot) = snapshot else {
        return unknown("Waiting for the operator");
    };
    let Some(state) = snapshot.groups.iter().find(|g| g.name == group) else {
        return unknown(&format!("No MysqlFailoverGroup {group}"));
    };
    let health = state.status.get("health").and_then(|h| h.as_str());
    let (level, text) = match health {
        Some("Healthy") => (Level::Ok, "Healthy"),
        Some("Degraded") => (Level::Warn, "Degraded"),
        Some("SplitBrain") => (Level::Critical, "Split Brain"),
        Some("NoPrimary") => (Level::Critical, "No Primary"),
        Some(_) | None => (Level::Unknown, "Bootstrapping"),
    };
    let mut detail = Vec::new();
    if let Some(active) = state.status.get("activeSite").and_then(|a| a.as_str()) {
        detail.push(format!("primary: {active}"));
    }
    for (key, label) in [
        ("emergencyFailover", "emergency failover"),
        ("plannedFailover", "planned failover"),
    ] {
        if let Some(f) = state.status.get(key)
            && let Some(phase) = f.get("phase").and_then(|p| p.as_str())
        {
            let to = f.get("to").and_then(|t| t.as_str()).unwrap_or("?");
            detail.push(format!("{label} to {to}: {phase}"));
        }
    }
    if !feed_connected {
        detail.push("operator feed disconnected, showing the last state".to_string());
    }
    Banner {
        level,
        text: text.to_string(),
        detail: detail.join(" · "),
    }
}

/// Where the DNS records shown came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DnsSource {
    /// What external-dns published to the dns-webhook.
    #[serde(rename = "dns-webhook")]
    Webhook,
    /// The operator's DNSEndpoint objects (what it asked external-dns to publish).
    #[serde(rename = "DNSEndpoint objects")]
    DnsEndpoints,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsView {
    pub source: DnsSource,
    pub records: Vec<Endpoint>,
    /// Why the fallback is shown, when it is.
    pub note: Option<String>,
}

/// The webhook's records when it answered with some; otherwise the DNSEndpoint
/// objects from the operator's feed, saying why.
pub fn dns_view(
    webhook: Option<&Result<Vec<Endpoint>, String>>,
    snapshot: Option<&StateSnapshot>,
) -> DnsView {
    let fallback = |note: String| DnsView {
        source: DnsSource::DnsEndpoints,
        records: snapshot
            .map(|s| {
                s.dns_endpoints
                    .iter()
                    .flat_map(|d| d.endpoints.iter().cloned())
                    .collect()
            })
            .unwrap_or_default(),
        note: Some(note),
    };
    match webhook {
        Some(Ok(records)) if !records.is_empty() => DnsView {
            source: DnsSource::Webhook,
            records: records.clone(),
            note: None,
        },
        Some(Ok(_)) => fallback("the dns-webhook holds no records yet".to_string()),
        Some(Err(error)) => fallback(format!("dns-webhook unreachable: {error}")),
        None => fallback("no dns-webhook configured".to_string()),
    }
}

/// A toolbar button: its label and the command it copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    pub label: String,
    pub command: String,
}

/// The guide's commands for this namespace and group.
pub fn toolbar(namespace: &str, group: &str) -> Vec<Command> {
    let c = |label: &str, command: String| Command {
        label: label.to_string(),
        command,
    };
    vec![
        c(
            "Status",
            format!("kubectl -n {namespace} get mysqlfailovergroups"),
        ),
        c(
            "Planned failover to pdx",
            format!(
                "kubectl -n {namespace} annotate mysqlfailovergroup {group} bloodraven.shipstream.io/planned-failover=pdx"
            ),
        ),
        c(
            "Planned failover to iad",
            format!(
                "kubectl -n {namespace} annotate mysqlfailovergroup {group} bloodraven.shipstream.io/planned-failover=iad --overwrite"
            ),
        ),
        c(
            "Kill iad MySQL pod",
            format!("kubectl delete pod -n {namespace} -l shipstream.io/site=iad"),
        ),
        c(
            "Cordon iad",
            "kubectl cordon $(kubectl get nodes -l topology.kubernetes.io/zone=zone-iad -o name)"
                .to_string(),
        ),
        c(
            "Uncordon all",
            "kubectl uncordon $(kubectl get nodes -o name | tr '\\n' ' ')".to_string(),
        ),
        c(
            "Events",
            format!("kubectl -n {namespace} get events --sort-by=.lastTimestamp"),
        ),
        c(
            "Operator logs",
            format!("kubectl -n {namespace} logs -l app.kubernetes.io/name=bloodraven -f"),
        ),
    ]
}

/// Everything `GET /api/state` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardState {
    pub banner: Banner,
    pub feed_connected: bool,
    pub feed_error: Option<String>,
    pub group: Option<GroupState>,
    pub dns: DnsView,
    pub events: Vec<EventLine>,
    pub toolbar: Vec<Command>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap(status: serde_json::Value) -> StateSnapshot {
        bloodraven::state_feed::snapshot(
            "ns",
            vec![GroupState {
                name: "playground".into(),
                status,
            }],
            vec![bloodraven::state_feed::DnsEndpointState {
                name: "playground".into(),
                endpoints: vec![endpoint("crd-target")],
            }],
            vec![],
        )
    }

    fn endpoint(target: &str) -> Endpoint {
        Endpoint {
            dns_name: "mysql.example".into(),
            targets: vec![target.into()],
            ..Endpoint::default()
        }
    }

    #[test]
    fn banner_levels_follow_the_guide() {
        let table = [
            (json!({"health": "Healthy"}), Level::Ok, "Healthy"),
            (json!({"health": "Degraded"}), Level::Warn, "Degraded"),
            (
                json!({"health": "SplitBrain"}),
                Level::Critical,
                "Split Brain",
            ),
            (
                json!({"health": "NoPrimary"}),
                Level::Critical,
                "No Primary",
            ),
            // A status the dashboard does not know is never shown as healthy.
            (
                json!({"health": "Mystery"}),
                Level::Unknown,
                "Bootstrapping",
            ),
            (json!(null), Level::Unknown, "Bootstrapping"),
        ];
        for (status, level, text) in table {
            let b = banner(Some(&snap(status.clone())), "playground", true);
            assert_eq!((b.level, b.text.as_str()), (level, text), "{status}");
        }
    }

    #[test]
    fn banner_without_state_or_group_is_unknown_and_says_why() {
        assert_eq!(banner(None, "playground", false).level, Level::Unknown);
        let other = banner(Some(&snap(json!({"health": "Healthy"}))), "other", true);
        assert_eq!(other.level, Level::Unknown);
        assert!(other.text.contains("other"), "{other:?}");
    }

    #[test]
    fn banner_detail_names_primary_failover_and_a_lost_feed() {
        let s = snap(json!({"health": "Degraded", "activeSite": "iad",
            "plannedFailover": {"to": "pdx", "phase": "WaitingForLag"}}));
        let b = banner(Some(&s), "playground", false);
        assert!(b.detail.contains("primary: iad"), "{b:?}");
        assert!(
            b.detail.contains("planned failover to pdx: WaitingForLag"),
            "{b:?}"
        );
        assert!(b.detail.contains("disconnected"), "{b:?}");
    }

    type WebhookAnswer = Result<Vec<Endpoint>, String>;

    #[test]
    fn dns_prefers_the_webhook_and_falls_back_to_the_objects_saying_why() {
        let s = snap(json!({}));
        let live = Ok(vec![endpoint("webhook-target")]);
        let empty = Ok(vec![]);
        let down = Err("connection refused".to_string());
        let table: [(Option<&WebhookAnswer>, DnsSource, &str, Option<&str>); 4] = [
            (Some(&live), DnsSource::Webhook, "webhook-target", None),
            (
                Some(&empty),
                DnsSource::DnsEndpoints,
                "crd-target",
                Some("no records"),
            ),
            (
                Some(&down),
                DnsSource::DnsEndpoints,
                "crd-target",
                Some("connection refused"),
            ),
            (
                None,
                DnsSource::DnsEndpoints,
                "crd-target",
                Some("no dns-webhook"),
            ),
        ];
        for (webhook, source, target, note) in table {
            let view = dns_view(webhook, Some(&s));
            assert_eq!(view.source, source, "{webhook:?}");
            assert_eq!(view.records[0].targets, vec![target.to_string()]);
            match note {
                Some(n) => assert!(view.note.as_deref().unwrap_or("").contains(n), "{view:?}"),
                None => assert_eq!(view.note, None),
            }
        }
        // Neither source: an empty list, not an error.
        assert!(dns_view(Some(&down), None).records.is_empty());
    }

    #[test]
    fn toolbar_commands_are_the_guides() {
        let commands = toolbar("bloodraven-playground", "playground");
        let all: Vec<&str> = commands.iter().map(|c| c.command.as_str()).collect();
        assert!(
            all.contains(&"kubectl delete pod -n bloodraven-playground -l shipstream.io/site=iad")
        );
        assert!(all.contains(&"kubectl -n bloodraven-playground annotate mysqlfailovergroup playground bloodraven.shipstream.io/planned-failover=pdx"));
        assert!(all.contains(
            &"kubectl cordon $(kubectl get nodes -l topology.kubernetes.io/zone=zone-iad -o name)"
        ));
    }
}
