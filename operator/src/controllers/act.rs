//! Act: each engine `Action` is one small named operation on the cluster (fence,
//! promote, configure a replica, clone, move the writer lease, relabel, update DNS,
//! remove a consumed annotation). The controller carries them out in order and stops
//! at the first failure: a later action may only be safe because an earlier one
//! succeeded (`Promote` after `MoveLease`).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::indexes::Indexes;
use super::observe::{Prober, mysql_target};
use crate::api::MysqlFailoverGroup;
use crate::children::{self, BuildError, DesiredObject, Owner, names};
use crate::engine::{Action, Role};
use crate::production::kube::{KubeWriteError, apply_children, set_pod_role};
use crate::production::lease::{self as lease_object, LeaseWriteError};
use crate::seams::{
    CloneDonor, MysqlError, ReadOnlyMode, ReplicationAccount, ReplicationSource, SharedClock,
    SharedMysqlConnector,
};

/// How long a CLONE may take before the operator gives up waiting for it.
pub(crate) const CLONE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the operations call directly (see `crate::rbac`); the Lease replace and the
/// applies go through `production`, whose tables list them.
pub(crate) const API_ACCESS: &[crate::rbac::ApiAccess] = &[
    crate::rbac::ApiAccess {
        group: "coordination.k8s.io",
        resource: "leases",
        // create at bootstrap; update (and get after a 409) through replace_guarded.
        verbs: &["create", "get", "update"],
        scope: crate::rbac::Scope::Watched,
        why: "MoveLease and the writable grant: the writer Lease, resourceVersion-guarded",
    },
    crate::rbac::ApiAccess {
        group: "bloodraven.shipstream.io",
        resource: "mysqlfailovergroups",
        verbs: &["patch"],
        scope: crate::rbac::Scope::Watched,
        why: "RemoveAnnotation consumes a handled planned-failover or reclone annotation",
    },
];

/// An operation that did not happen, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("{operation} on site {site}: {source}")]
    Mysql {
        site: String,
        operation: &'static str,
        #[source]
        source: Box<MysqlError>,
    },
    #[error("writer Lease {lease}: {source}")]
    Lease {
        lease: String,
        #[source]
        source: LeaseWriteError,
    },
    #[error(
        "writer Lease {lease} changed since the decision (expected resourceVersion {expected:?}, \
         found {found:?}); deciding again"
    )]
    LeaseChanged {
        lease: String,
        expected: Option<String>,
        found: Option<String>,
    },
    #[error("writer Lease {lease} names {holder:?}, not {site}: refusing to grant writability")]
    NotHolder {
        lease: String,
        site: String,
        holder: Option<String>,
    },
    #[error("creating writer Lease {lease}: {source}")]
    CreateLease {
        lease: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{0}")]
    Kube(#[from] KubeWriteError),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("serializing {object}: {source}")]
    Serialize {
        object: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("pod {pod} of site {site} is not in the index; cannot relabel it")]
    NoPod { site: String, pod: String },
    #[error("removing annotation {key} from MysqlFailoverGroup {group}: {source}")]
    Annotation {
        key: &'static str,
        group: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// The MySQL statements the operations run.
enum Statement<'a> {
    StopReplica,
    ResetReplicaAll,
    SuperReadOnly,
    KillClientConnections,
    ChangeSource(&'a ReplicationSource),
    StartReplica,
    Clone(&'a CloneDonor),
    EnsureReplicationAccount(&'a ReplicationAccount),
    EnableReplicaSideDisabledEvents,
}

impl Statement<'_> {
    fn name(&self) -> &'static str {
        match self {
            Statement::StopReplica => "STOP REPLICA",
            Statement::ResetReplicaAll => "RESET REPLICA ALL",
            Statement::SuperReadOnly => "SET GLOBAL super_read_only=ON",
            Statement::KillClientConnections => "KILL client connections",
            Statement::ChangeSource(_) => "CHANGE REPLICATION SOURCE",
            Statement::StartReplica => "START REPLICA",
            Statement::Clone(_) => "CLONE INSTANCE",
            Statement::EnsureReplicationAccount(_) => "CREATE USER (replication account)",
            Statement::EnableReplicaSideDisabledEvents => "ALTER EVENT ... ENABLE",
        }
    }
}

/// Everything the operations need for one group during one reconcile.
pub(crate) struct Operations<'a> {
    pub client: &'a Client,
    pub group: &'a MysqlFailoverGroup,
    pub indexes: &'a Indexes,
    pub prober: &'a mut Prober,
    pub connector: &'a SharedMysqlConnector,
    pub clock: &'a SharedClock,
    /// The operator's own (root) password.
    pub password: &'a str,
    /// The account replicas and clone recipients use to reach the primary.
    pub replication: &'a ReplicationAccount,
    /// Bound on connecting for an operation.
    pub connect_timeout: Duration,
    /// The writer Lease as the last write returned it (newer than the index).
    pub latest_lease: Option<Lease>,
}

impl Operations<'_> {
    fn namespace(&self) -> String {
        self.group.namespace().unwrap_or_default()
    }

    fn lease_name(&self) -> String {
        names::writer_lease(&self.group.name_any())
    }

    fn lease_api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace())
    }

    /// The writer Lease: as the last write returned it, else from the index.
    fn current_lease(&self) -> Option<Lease> {
        self.latest_lease.clone().or_else(|| {
            self.indexes
                .leases
                .get(&ObjectRef::new(&self.lease_name()).within(&self.namespace()))
                .map(|l| (*l).clone())
        })
    }

    fn lease_error(&self, source: LeaseWriteError) -> ActError {
        ActError::Lease {
            lease: self.lease_name(),
            source,
        }
    }

    fn lease_duration_seconds(&self) -> i32 {
        let millis = self.group.spec.failover.lease_duration.as_millis();
        i32::try_from(millis.div_ceil(1_000)).unwrap_or(i32::MAX)
    }

    pub(crate) async fn carry_out(&mut self, action: &Action) -> Result<(), ActError> {
        match action {
            Action::MoveLease {
                to,
                expected_resource_version,
            } => {
                self.move_lease(to, expected_resource_version.as_deref())
                    .await
            }
            Action::Promote { site } => self.promote(site).await,
            Action::Fence { site } => self.fence(site).await,
            Action::ConfigureReplica { site, source } => self.configure_replica(site, source).await,
            Action::StartReplica { site } => self.mysql(site, Statement::StartReplica).await,
            Action::Clone { site, donor } => self.clone_site(site, donor).await,
            Action::SetRoleLabel { site, role } => self.set_role_label(site, *role).await,
            Action::UpdateDns { site } => self.update_dns(site).await,
            Action::RemoveAnnotation { key } => self.remove_annotation(key).await,
        }
    }

    /// Runs one statement on `site`'s mysqld.
    async fn mysql(&mut self, site: &str, statement: Statement<'_>) -> Result<(), ActError> {
        let target = mysql_target(self.group, site, self.password);
        let result = match self
            .prober
            .session(self.connector, site, &target, self.connect_timeout)
            .await
        {
            Ok(session) => match &statement {
                Statement::StopReplica => session.stop_replica().await,
                Statement::ResetReplicaAll => session.reset_replica_all().await,
                Statement::SuperReadOnly => {
                    session.set_read_only(ReadOnlyMode::SuperReadOnly).await
                }
                Statement::KillClientConnections => {
                    session.kill_client_connections().await.map(|_| ())
                }
                Statement::ChangeSource(source) => session.change_source(source).await,
                Statement::StartReplica => session.start_replica().await,
                Statement::Clone(donor) => session.clone_from(donor, CLONE_TIMEOUT).await,
                Statement::EnsureReplicationAccount(account) => {
                    session.ensure_replication_account(account).await
                }
                Statement::EnableReplicaSideDisabledEvents => {
                    match session.enable_replica_side_disabled_events().await {
                        Ok(0) => Ok(()),
                        Ok(enabled) => {
                            tracing::info!(%site, enabled, "re-enabled events replication had disabled");
                            Ok(())
                        }
                        Err(err) => Err(err),
                    }
                }
            },
            Err(err) => Err(err),
        };
        result.map_err(|source| {
            // A failed statement may have left the connection broken: reconnect next time.
            self.prober.forget(site);
            ActError::Mysql {
                site: site.to_string(),
                operation: statement.name(),
                source: Box::new(source),
            }
        })
    }

    /// Names `to` as holder with a write guarded by the resourceVersion the decision
    /// saw (`None`: the Lease must not exist yet). A lease that already names `to` at
    /// that version needs no write: only the operator ever changes the holder.
    async fn move_lease(&mut self, to: &str, expected: Option<&str>) -> Result<(), ActError> {
        let current = self.current_lease();
        let found = current.as_ref().and_then(|l| l.resource_version());
        if found.as_deref() != expected {
            return Err(ActError::LeaseChanged {
                lease: self.lease_name(),
                expected: expected.map(String::from),
                found,
            });
        }
        let now = self.clock.now();
        let seconds = self.lease_duration_seconds();
        let written = match current {
            Some(lease) if lease_object::holder(&lease) == Some(to) => lease,
            Some(lease) => {
                let moved = lease_object::moved_to(&lease, to, seconds, now);
                lease_object::replace_guarded(&self.lease_api(), &moved)
                    .await
                    .map_err(|e| self.lease_error(e))?
            }
            None => {
                let owner = Owner::of(self.group)?;
                let template = children::writer_lease(&owner, self.group);
                let created = lease_object::moved_to(&template, to, seconds, now);
                self.lease_api()
                    .create(&PostParams::default(), &created)
                    .await
                    .map_err(|source| ActError::CreateLease {
                        lease: self.lease_name(),
                        source: Box::new(source),
                    })?
            }
        };
        self.latest_lease = Some(written);
        Ok(())
    }

    /// Rewrites the lease with `change` unless `done` already holds; on a conflict
    /// (the holder's sidecar renewed meanwhile) once more from the fresh read.
    async fn rewrite_lease(
        &mut self,
        done: impl Fn(&Lease) -> bool,
        change: impl Fn(&Lease) -> Result<Lease, ActError>,
    ) -> Result<(), ActError> {
        let mut current = self.current_lease();
        for _ in 0..2 {
            let Some(lease) = current.take() else {
                return Err(ActError::NotHolder {
                    lease: self.lease_name(),
                    site: String::new(),
                    holder: None,
                });
            };
            if done(&lease) {
                self.latest_lease = Some(lease);
                return Ok(());
            }
            match lease_object::replace_guarded(&self.lease_api(), &change(&lease)?).await {
                Ok(written) => {
                    self.latest_lease = Some(written);
                    return Ok(());
                }
                Err(LeaseWriteError::Conflict { latest, .. }) => current = Some(*latest),
                Err(err) => return Err(self.lease_error(err)),
            }
        }
        Err(ActError::LeaseChanged {
            lease: self.lease_name(),
            expected: None,
            found: None,
        })
    }

    /// The lease holder `site` stops replicating, then its sidecar is granted
    /// writability for this lease term (it lifts the fence on its next tick, after a
    /// fresh renewal of its own: the sidecar alone turns `read_only` off).
    async fn promote(&mut self, site: &str) -> Result<(), ActError> {
        self.mysql(site, Statement::StopReplica).await?;
        self.mysql(site, Statement::ResetReplicaAll).await?;
        let lease_name = self.lease_name();
        self.rewrite_lease(
            |lease| lease_object::grants_writable(lease, site),
            |lease| {
                if lease_object::holder(lease) != Some(site) {
                    return Err(ActError::NotHolder {
                        lease: lease_name.clone(),
                        site: site.to_string(),
                        holder: lease_object::holder(lease).map(String::from),
                    });
                }
                lease_object::granted(lease).ok_or_else(|| ActError::NotHolder {
                    lease: lease_name.clone(),
                    site: site.to_string(),
                    holder: None,
                })
            },
        )
        .await
    }

    /// Withdraws a grant `site` holds (so that its sidecar does not lift the fence
    /// again), then `super_read_only=ON` and kill client connections so that no open
    /// transaction commits after the fence.
    async fn fence(&mut self, site: &str) -> Result<(), ActError> {
        if self
            .current_lease()
            .is_some_and(|l| lease_object::grant(&l).is_some_and(|g| g.site == site))
        {
            self.rewrite_lease(
                |lease| lease_object::grant(lease).is_none_or(|g| g.site != site),
                |lease| Ok(lease_object::grant_revoked(lease)),
            )
            .await?;
        }
        self.mysql(site, Statement::SuperReadOnly).await?;
        self.mysql(site, Statement::KillClientConnections).await
    }

    async fn configure_replica(&mut self, site: &str, source: &str) -> Result<(), ActError> {
        let source = ReplicationSource {
            host: mysql_target(self.group, source, "").host,
            port: u16::try_from(self.group.spec.mysql.port).unwrap_or(3306),
            user: self.replication.user.clone(),
            password: self.replication.password.clone(),
            delay_seconds: 0,
            connect_retry_seconds: 1,
        };
        self.mysql(site, Statement::StopReplica).await?;
        self.mysql(site, Statement::ChangeSource(&source)).await?;
        self.mysql(site, Statement::StartReplica).await
    }

    /// `CLONE INSTANCE FROM` the donor; the server restarts afterwards, so the session
    /// is dropped either way.
    async fn clone_site(&mut self, site: &str, donor: &str) -> Result<(), ActError> {
        let target = mysql_target(self.group, donor, "");
        let donor = CloneDonor {
            host: target.host,
            port: target.port,
            user: self.replication.user.clone(),
            password: self.replication.password.clone(),
        };
        let result = self.mysql(site, Statement::Clone(&donor)).await;
        self.prober.forget(site);
        result
    }

    /// What a new primary needs once it is writable (`site` is the writable lease
    /// holder; see `accounts::account_site`): the replication account, created or
    /// updated there so that it replicates; and the events it received as a replica,
    /// which replication left `REPLICA_SIDE_DISABLED`, enabled again (otherwise they
    /// never run after a failover: manual 19.5.1.16 "Replication of Invoked Features").
    pub(crate) async fn set_up_primary(&mut self, site: &str) -> Result<(), ActError> {
        let account = self.replication;
        self.mysql(site, Statement::EnsureReplicationAccount(account))
            .await?;
        self.mysql(site, Statement::EnableReplicaSideDisabledEvents)
            .await
    }

    async fn set_role_label(&mut self, site: &str, role: Role) -> Result<(), ActError> {
        let pod_name = names::mysql_pod(&self.group.name_any(), site);
        let pod = self
            .indexes
            .pods
            .get(&ObjectRef::new(&pod_name).within(&self.namespace()))
            .ok_or_else(|| ActError::NoPod {
                site: site.to_string(),
                pod: pod_name,
            })?;
        set_pod_role(self.client, &pod, role.as_str()).await?;
        Ok(())
    }

    /// Points the DNSEndpoint at `site`'s targets (server-side apply of the child).
    async fn update_dns(&mut self, site: &str) -> Result<(), ActError> {
        let owner = Owner::of(self.group)?;
        let Some(endpoint) = children::dns_endpoint(&owner, self.group, Some(site))? else {
            return Ok(());
        };
        let object = DesiredObject::of(&endpoint).map_err(|source| ActError::Serialize {
            object: format!("DNSEndpoint {}", endpoint.name_any()),
            source,
        })?;
        apply_children(self.client, &[object], self.indexes).await?;
        Ok(())
    }

    /// Removes a handled annotation, but only if it still holds the value that was
    /// handled (a JSON patch `test`): a new request typed meanwhile is not lost.
    async fn remove_annotation(&mut self, key: &'static str) -> Result<(), ActError> {
        let Some(value) = self.group.annotations().get(key).cloned() else {
            return Ok(());
        };
        let path = format!(
            "/metadata/annotations/{}",
            key.replace('~', "~0").replace('/', "~1")
        );
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": path, "value": value},
            {"op": "remove", "path": path},
        ]))
        .map_err(|source| ActError::Serialize {
            object: format!("annotation patch for {key}"),
            source,
        })?;
        let api: Api<MysqlFailoverGroup> = Api::namespaced(self.client.clone(), &self.namespace());
        api.patch(
            &self.group.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
        .map_err(|source| ActError::Annotation {
            key,
            group: self.group.name_any(),
            source: Box::new(source),
        })?;
        Ok(())
    }
}
