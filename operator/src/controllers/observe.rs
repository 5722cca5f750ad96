//! Observe: one snapshot of a group per reconcile, from the indexes and from MySQL
//! probes. Probes run through the injected `MysqlConnector`, each bounded by
//! `probeTimeout`; the first failure of a run of failures is remembered so that the
//! engine can count the detection window from it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::indexes::Indexes;
use crate::api::{
    FORCE_FAILOVER_ANNOTATION, MysqlFailoverGroup, PLANNED_FAILOVER_ANNOTATION,
    RECLONE_SITE_ANNOTATION, RESTORE_IN_PROGRESS_ANNOTATION, ROLE_LABEL,
};
use crate::children::names;
use crate::engine::{
    Annotations, EngineMemory, Knobs, LastSeenGtids, Leadership, LeaseRecord, Millis,
    MysqlObservation, MysqlProbe, PodObservation, ReplicationObservation, Role, SiteObservation,
    Snapshot,
};
use crate::seams::{
    CloneState, IoThreadState, MysqlError, MysqlSession, MysqlStatus, MysqlTarget, ReplicaStatus,
    SharedMysqlConnector,
};

/// The account the operator uses for probes and operations (the image creates it from
/// `root-password`). Replicas and clones use the replication account instead
/// (`accounts`).
pub(crate) const OPERATOR_MYSQL_USER: &str = "root";

/// Where a site's mysqld is reached: its pod's stable DNS name.
pub(crate) fn mysql_target(group: &MysqlFailoverGroup, site: &str, password: &str) -> MysqlTarget {
    let namespace = group.namespace().unwrap_or_default();
    MysqlTarget {
        host: names::mysql_pod_host(&group.name_any(), site, &namespace),
        port: u16::try_from(group.spec.mysql.port).unwrap_or(3306),
        user: OPERATOR_MYSQL_USER.to_string(),
        password: password.to_string(),
    }
}

/// Open sessions and failure runs per site, kept across reconciles of one group.
#[derive(Default)]
pub(crate) struct Prober {
    sessions: BTreeMap<String, Box<dyn MysqlSession>>,
    failing_since: BTreeMap<String, Millis>,
}

impl Prober {
    /// The open session to `site`, connecting when needed (bounded by `timeout`).
    pub(crate) async fn session(
        &mut self,
        connector: &SharedMysqlConnector,
        site: &str,
        target: &MysqlTarget,
        timeout: Duration,
    ) -> Result<&mut Box<dyn MysqlSession>, MysqlError> {
        if !self.sessions.contains_key(site) {
            let session = tokio::time::timeout(timeout, connector.connect(target))
                .await
                .map_err(|_| MysqlError::Timeout {
                    address: target.address(),
                    operation: "connect",
                    after: timeout,
                })??;
            self.sessions.insert(site.to_string(), session);
        }
        self.sessions
            .get_mut(site)
            .ok_or_else(|| MysqlError::Timeout {
                address: target.address(),
                operation: "connect",
                after: timeout,
            })
    }

    /// Drops a session whose connection may be broken; the next use reconnects.
    pub(crate) fn forget(&mut self, site: &str) {
        self.sessions.remove(site);
    }

    /// The site's `performance_schema.clone_status` over its open session, bounded by
    /// `timeout`; `None` when it cannot be read (the reclone then just waits).
    pub(crate) async fn clone_status(
        &mut self,
        site: &str,
        timeout: Duration,
    ) -> Option<CloneState> {
        let session = self.sessions.get_mut(site)?;
        match tokio::time::timeout(timeout, session.clone_state()).await {
            Ok(Ok(state)) => state,
            Ok(Err(_)) | Err(_) => {
                self.forget(site);
                None
            }
        }
    }

    /// Probes one site: one bounded `observe` call.
    pub(crate) async fn probe(
        &mut self,
        connector: &SharedMysqlConnector,
        site: &str,
        target: &MysqlTarget,
        timeout: Duration,
        now: Millis,
    ) -> Result<MysqlStatus, Millis> {
        let result = match self.session(connector, site, target, timeout).await {
            Ok(session) => match tokio::time::timeout(timeout, session.observe()).await {
                Ok(result) => result,
                Err(_) => Err(MysqlError::Timeout {
                    address: target.address(),
                    operation: "observe",
                    after: timeout,
                }),
            },
            Err(err) => Err(err),
        };
        match result {
            Ok(status) => {
                self.failing_since.remove(site);
                Ok(status)
            }
            // The error itself is not kept: the engine counts the run of failures, and
            // the site's status says what the pod and node look like.
            Err(_) => {
                self.forget(site);
                Err(*self.failing_since.entry(site.to_string()).or_insert(now))
            }
        }
    }
}

/// Maps a replica's `Source_Host` back to the site it names (the pod DNS name the
/// operator configures, or the site's Service name).
pub(crate) fn source_site(group: &MysqlFailoverGroup, source_host: &str) -> Option<String> {
    let namespace = group.namespace().unwrap_or_default();
    let name = group.name_any();
    let host = source_host.trim_end_matches('.');
    group
        .spec
        .sites
        .iter()
        .find(|site| {
            let pod_host = names::mysql_pod_host(&name, &site.name, &namespace);
            let service = names::mysql_site_service(&name, &site.name);
            host == pod_host
                || host == format!("{pod_host}.cluster.local")
                || host == service
                || host.starts_with(&format!("{service}.{namespace}"))
        })
        .map(|site| site.name.clone())
}

pub(crate) fn replication_observation(
    group: &MysqlFailoverGroup,
    replica: &ReplicaStatus,
) -> ReplicationObservation {
    ReplicationObservation {
        source_site: source_site(group, &replica.source_host),
        auto_position: replica.auto_position,
        io_running: replica.io_thread == IoThreadState::Running,
        sql_running: replica.sql_thread_running,
        retrieved: replica.retrieved_gtid_set.clone(),
        lag_seconds: replica.seconds_behind_source,
        last_io_error: replica
            .last_io_error
            .as_ref()
            .map(|e| format!("IO error {}: {}", e.number, e.message)),
        last_sql_error: replica
            .last_sql_error
            .as_ref()
            .map(|e| format!("SQL error {}: {}", e.number, e.message)),
    }
}

/// `probed_at`: when the probe started, on the operator's monotonic clock.
pub(crate) fn mysql_observation(
    group: &MysqlFailoverGroup,
    status: &MysqlStatus,
    probed_at: Millis,
) -> MysqlObservation {
    MysqlObservation {
        probed_at,
        read_only: status.read_only,
        super_read_only: status.super_read_only,
        gtid_executed: status.gtid_executed.clone(),
        server_uuid: status.server_uuid.clone(),
        replication: status
            .replica
            .as_ref()
            .map(|r| replication_observation(group, r)),
        semisync_source_active: status.semisync_source.active,
        clone_status: None,
    }
}

/// The pod and node facts of one site, from the indexes.
pub(crate) fn pod_observation(pod: Option<&Pod>, node: Option<&Node>) -> PodObservation {
    let Some(pod) = pod else {
        return PodObservation::default();
    };
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let role_label = match pod.labels().get(ROLE_LABEL).map(String::as_str) {
        Some("primary") => Some(Role::Primary),
        Some("replica") => Some(Role::Replica),
        _ => None,
    };
    let node_not_ready = node.is_some_and(|n| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status != "True"))
    });
    PodObservation {
        exists: true,
        role_label,
        ready,
        deleting: pod.metadata.deletion_timestamp.is_some(),
        node_not_ready,
        node_unschedulable: node
            .and_then(|n| n.spec.as_ref())
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
    }
}

/// The group's pod of `site` and its node, from the indexes.
pub(crate) fn site_pod(
    indexes: &Indexes,
    group: &MysqlFailoverGroup,
    site: &str,
) -> PodObservation {
    let namespace = group.namespace().unwrap_or_default();
    let pod = indexes
        .pods
        .get(&ObjectRef::new(&names::mysql_pod(&group.name_any(), site)).within(&namespace));
    let node = pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.node_name.clone())
        .and_then(|n| indexes.nodes.get(&ObjectRef::new(&n)));
    pod_observation(pod.as_deref(), node.as_deref())
}

/// The site the group's DNSEndpoint points at: the site whose targets it carries.
pub(crate) fn dns_target(indexes: &Indexes, group: &MysqlFailoverGroup) -> Option<String> {
    let dns = group.spec.dns.as_ref()?;
    let namespace = group.namespace().unwrap_or_default();
    let endpoint = indexes
        .dns_endpoints
        .get(&ObjectRef::new(&names::dns_endpoint(&group.name_any())).within(&namespace))?;
    let published = &endpoint.spec.endpoints.first()?.targets;
    dns.targets
        .iter()
        .find(|(_, targets)| *targets == published)
        .map(|(site, _)| site.clone())
}

/// Reads the writer Lease from the index and folds it into the sightings.
pub(crate) fn writer_lease_sighting(
    indexes: &Indexes,
    group: &MysqlFailoverGroup,
) -> crate::engine::LeaseSighting {
    let namespace = group.namespace().unwrap_or_default();
    let name = names::writer_lease(&group.name_any());
    let record = indexes
        .leases
        .get(&ObjectRef::new(&name).within(&namespace))
        .map_or_else(LeaseRecord::absent, |l| {
            crate::production::lease::record(&l)
        });
    indexes.sightings.observe(&namespace, &name, record)
}

pub(crate) fn annotations(group: &MysqlFailoverGroup) -> Annotations {
    let get = |key: &str| {
        group
            .annotations()
            .get(key)
            // An empty value is still a request: the engine consumes and refuses it
            // with a Warning, like any other bad value (issue 12).
            .map(|v| v.trim().to_string())
    };
    Annotations {
        planned_failover: get(PLANNED_FAILOVER_ANNOTATION),
        reclone_site: get(RECLONE_SITE_ANNOTATION),
        force_failover: get(FORCE_FAILOVER_ANNOTATION),
        // Present means paused, whatever the value: a pause must not be undone by a typo.
        restore_in_progress: get(RESTORE_IN_PROGRESS_ANNOTATION),
    }
}

/// Everything but the probes, assembled into the engine's snapshot.
#[allow(clippy::too_many_arguments)]
pub(crate) fn snapshot(
    indexes: &Indexes,
    group: &MysqlFailoverGroup,
    knobs: Knobs,
    probes: BTreeMap<String, MysqlProbe>,
    leadership: Leadership,
    memory: EngineMemory,
    dragonfly: Option<crate::engine::dragonfly::DragonflyObservation>,
) -> Snapshot {
    let status = group.status.clone().unwrap_or_default();
    let sites = group
        .spec
        .sites
        .iter()
        .map(|site| SiteObservation {
            name: site.name.clone(),
            probe: probes
                .get(&site.name)
                .cloned()
                .unwrap_or(MysqlProbe::Failing { since: Millis(0) }),
            pod: site_pod(indexes, group, &site.name),
            last_seen: LastSeenGtids::recorded(&status, &site.name),
        })
        .collect();
    Snapshot {
        leadership,
        knobs,
        sites,
        lease: writer_lease_sighting(indexes, group),
        status,
        annotations: annotations(group),
        dns_target: dns_target(indexes, group),
        memory,
        dragonfly,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_annotation_values_reach_the_engine() {
        let mut group = crate::children::tests::playground();
        group.metadata.annotations = Some(
            [
                (PLANNED_FAILOVER_ANNOTATION, ""),
                (RECLONE_SITE_ANNOTATION, " "),
                (FORCE_FAILOVER_ANNOTATION, ""),
                (RESTORE_IN_PROGRESS_ANNOTATION, ""),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let seen = annotations(&group);
        assert_eq!(seen.planned_failover.as_deref(), Some(""));
        assert_eq!(seen.reclone_site.as_deref(), Some(""));
        assert_eq!(seen.force_failover.as_deref(), Some(""));
        assert_eq!(seen.restore_in_progress.as_deref(), Some(""));
    }

    #[test]
    fn a_replicas_source_host_maps_back_to_its_site() {
        let group = crate::children::tests::playground();
        let pod_host = names::mysql_pod_host("playground", "iad", "bp");
        assert_eq!(source_site(&group, &pod_host).as_deref(), Some("iad"));
        assert_eq!(
            source_site(&group, &format!("{pod_host}.cluster.local")).as_deref(),
            Some("iad")
        );
        assert_eq!(
            source_site(&group, "playground-mysql-pdx").as_deref(),
            Some("pdx")
        );
        assert_eq!(source_site(&group, "elsewhere.example"), None);
    }

    #[test]
    fn pod_facts_come_from_conditions_labels_and_the_node() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {ROLE_LABEL: "primary"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
        }))
        .unwrap();
        let seen = pod_observation(Some(&pod), Some(&node));
        assert!(seen.exists && seen.ready && seen.node_not_ready && seen.node_unschedulable);
        assert_eq!(seen.role_label, Some(Role::Primary));
        assert_eq!(pod_observation(None, None), PodObservation::default());
    }
}
