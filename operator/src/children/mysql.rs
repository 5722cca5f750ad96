//! Builders for one site's MySQL children (StatefulSet, headless and per-site Services,
//! PodDisruptionBudget) and the app-facing primary Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe,
    SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    BuildContext, INSTANCE_LABEL, MYSQL_APP_NAME, NAME_LABEL, Owner, SIDECAR_HTTP_PORT, names,
};
use crate::api::{Durability, MysqlFailoverGroup, ROLE_LABEL, SiteSpec};
use crate::hash::fnv1a32;

/// Secret keys the pods read (documented on `MysqlSpec::credentials_secret`).
pub const ROOT_PASSWORD_KEY: &str = "root-password";
/// The ordinary application account every mysqld creates at first boot (the official
/// image's `MYSQL_USER`/`MYSQL_PASSWORD` contract), with its password under this key:
/// what apps and the chaos runner's counter write as, never root.
pub const APP_USER: &str = "app";
pub const APP_PASSWORD_KEY: &str = "app-password";
/// The database the application account owns: the image creates it and grants the
/// account every privilege on it (its `MYSQL_DATABASE` contract). Optional: without the
/// key the account exists but may use no database, exactly as the image leaves it.
pub const APP_DATABASE_KEY: &str = "app-database";
/// The replication account (see `controllers::accounts`): its password under this key
/// (required), its user name under `replication-user` (optional, default `repl`).
pub const REPLICATION_PASSWORD_KEY: &str = "replication-password";
pub const REPLICATION_USER_KEY: &str = "replication-user";
/// The longest replication password MySQL stores for a channel: `CREATE USER` accepts
/// longer ones, but `CHANGE REPLICATION SOURCE TO SOURCE_PASSWORD` refuses them with
/// `ER_CHANGE_SOURCE_PASSWORD_LENGTH` (3056) — long after the account exists (MySQL 8.4
/// manual, 15.4.2.3 "CHANGE REPLICATION SOURCE TO Statement").
pub const MAX_REPLICATION_PASSWORD_CHARS: usize = 32;

/// The password's length in characters when MySQL would refuse it for replication.
pub fn replication_password_too_long(password: &str) -> Option<usize> {
    let length = password.chars().count();
    (length > MAX_REPLICATION_PASSWORD_CHARS).then_some(length)
}
pub const DEFAULT_REPLICATION_USER: &str = "repl";
/// Environment variable the sidecar reads the MySQL password from.
pub const SIDECAR_PASSWORD_ENV: &str = "BLOODRAVEN_MYSQL_PASSWORD";
/// The role label value of the writable site's pod.
pub const ROLE_PRIMARY: &str = "primary";
/// The role label value of a replica pod.
pub const ROLE_REPLICA: &str = "replica";

/// The mysqld container in the MySQL pod (chaos reads `read_only` inside it by name).
pub const MYSQL_CONTAINER: &str = "mysqld";
/// The fencing sidecar's container in the MySQL pod (chaos faults stop it by name).
pub const SIDECAR_CONTAINER: &str = "sidecar";
pub(super) const DATA_DIR: &str = "/var/lib/mysql";

/// A stable MySQL `server_id` for a site: derived from the site name alone (FNV-1a,
/// mapped into 1..=2^32-1; 0 disables replication), so that reordering `spec.sites`
/// or recreating a pod never changes it.
pub fn server_id(site: &str) -> u32 {
    fnv1a32(site.as_bytes()) % (u32::MAX - 1) + 1
}

/// The per-site StatefulSet: one mysqld pod and its sidecar, pinned to the site's nodes.
pub fn statefulset(
    owner: &Owner,
    group: &MysqlFailoverGroup,
    site: &SiteSpec,
    ctx: &BuildContext,
) -> StatefulSet {
    let name = names::mysql_statefulset(&owner.name, &site.name);
    let labels = owner.site_labels(&site.name);
    let storage = &group.spec.mysql.storage;
    let mysqld = mysqld_container(owner, group, &site.name);
    StatefulSet {
        metadata: owner.child_meta(name, labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names::mysql_headless_service(&owner.name, &site.name)),
            selector: LabelSelector {
                match_labels: Some(owner.site_selector(&site.name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                // The role label is absent on purpose: the controller sets it on the
                // pod, and a template value would reset it on every restart.
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: Some(site.node_selector.clone()),
                    service_account_name: Some(names::sidecar_account(&owner.name)),
                    // mysqld needs time to flush on SIGTERM; a killed mysqld recovers
                    // but a clean shutdown keeps restarts fast.
                    termination_grace_period_seconds: Some(30),
                    init_containers: Some(vec![mysql_init_container(&mysqld)]),
                    containers: vec![mysqld, sidecar_container(owner, group, &site.name, ctx)],
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(names::DATA_VOLUME.to_string()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_string()]),
                    storage_class_name: storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(storage.size.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// The port of mysqld's administrative interface (MySQL's default `admin_port`), on the
/// pod's loopback address only: meant for the sidecar's fence, so that a storm of
/// client connections filling `max_connections` (and the one extra SUPER slot, which the
/// operator may be using) cannot keep the fence out (MySQL 8.4 manual, 7.1.12.1
/// "Connection Interfaces", "Administrative Connection Management").
pub const ADMIN_PORT: u16 = 33062;
const ADMIN_ADDRESS: &str = "127.0.0.1";

/// The clone plugin's shared library, loaded at boot on every mysqld of the group
/// (donor and recipient both need it: manual 7.6.7.1 "Installing the Clone Plugin").
pub const CLONE_PLUGIN_LIBRARY: &str = "mysql_clone.so";

/// The init container that prepares an empty data directory before mysqld first runs.
pub const MYSQL_INIT_CONTAINER: &str = "mysql-init";

/// What the init container runs (bash, with the official image's entrypoint sourced for
/// its functions): on an empty data directory exactly what the entrypoint's `_main`
/// does on first start, but with a server that is neither fenced nor binlogging. The
/// real server's arguments cannot be used: with `--super-read-only=ON` the
/// entrypoint's `ALTER USER root`, `CREATE USER` and time-zone load fail with 1290 and
/// init aborts half done; with the binary log on, those statements become transactions
/// under each site's own server UUID (errant on whichever site becomes the replica, and
/// `CREATE USER app` replicated onto a replica that has it stops its SQL thread, 1396).
/// With a data directory present it does nothing, and the mysqld container's
/// entrypoint skips its own init for the same reason.
pub const MYSQL_INIT_SCRIPT: &str = r#"set -eo pipefail
source /usr/local/bin/docker-entrypoint.sh
set -- mysqld --skip-log-bin
mysql_check_config "$@"
docker_setup_env "$@"
docker_create_db_directories "$@"
if [ -n "$DATABASE_ALREADY_EXISTS" ]; then
  mysql_note "data directory present: nothing to initialise"
  exit 0
fi
exec gosu mysql bash -c '
  set -eo pipefail
  source /usr/local/bin/docker-entrypoint.sh
  docker_setup_env "$@"
  docker_verify_minimum_env
  docker_init_database_dir "$@"
  docker_temp_server_start "$@"
  if declare -F mysql_socket_fix >/dev/null; then mysql_socket_fix; fi
  docker_setup_db
  docker_process_init_files /docker-entrypoint-initdb.d/*
  docker_temp_server_stop
  mysql_note "initialised without fence and without binary log"
' bash "$@"
"#;

/// mysqld's command-line flags. Every mysqld boots fenced (`super_read_only=ON`): only
/// the lease holder is made writable, so a new or restarted server can never take
/// writes on its own (docs/design.md "Safety assumptions"). The first start's
/// initialisation runs before, in [`MYSQL_INIT_CONTAINER`], without these flags.
pub fn mysqld_args(group: &MysqlFailoverGroup, site: &str, namespace: &str) -> Vec<String> {
    let group_name = group.metadata.name.as_deref().unwrap_or_default();
    let mut args = vec![
        format!("--server-id={}", server_id(site)),
        format!("--port={}", group.spec.mysql.port),
        "--read-only=ON".to_string(),
        "--super-read-only=ON".to_string(),
        // `SET PERSIST super_read_only = OFF` by anyone would otherwise make this server
        // boot writable: persisted globals (mysqld-auto.cnf) override the command line
        // (manual 7.1.9.3 "Persisted System Variables"). The command line is the only
        // configuration.
        "--persisted-globals-load=OFF".to_string(),
        format!("--admin-address={ADMIN_ADDRESS}"),
        format!("--admin-port={ADMIN_PORT}"),
        // CLONE needs the plugin on donor and recipient (manual 7.6.7.1); without it
        // `clone_valid_donor_list` is an unknown variable (1193).
        format!("--plugin-load-add={CLONE_PLUGIN_LIBRARY}"),
        "--gtid-mode=ON".to_string(),
        "--enforce-gtid-consistency=ON".to_string(),
        "--log-bin=mysql-bin".to_string(),
        "--binlog-format=ROW".to_string(),
        "--log-replica-updates=ON".to_string(),
        // A restarted replica must not resume replicating before the operator has
        // checked it for divergence and chosen its source.
        "--skip-replica-start=ON".to_string(),
        // Crash safety of the replica's position, so a crash never re-applies events.
        "--relay-log-recovery=ON".to_string(),
        // A replica must notice a dead link to its source in seconds, not MySQL's
        // default 60 s: until it does, it reports a running IO thread and zero lag while
        // receiving nothing, and an emergency failover in that window would promote a
        // replica missing everything since the link died. The heartbeat (half of this)
        // keeps a quiet but healthy link alive.
        "--replica-net-timeout=5".to_string(),
        format!(
            "--report-host={}",
            names::mysql_pod_host(group_name, site, namespace)
        ),
    ];
    if group.spec.mysql.durability == Durability::Semisync {
        // Both sides on every server, so that either site can be the source after a
        // failover: a source with the source side enabled waits for a replica's ack
        // (up to `semisyncTimeout`, then async until a replica catches up), a replica
        // with the replica side enabled acknowledges. Both variables are OFF by default:
        // loading the plugins alone changes nothing (manual 19.4.10.2 "Installing
        // Semisynchronous Replication", 19.4.10.3 "Semisynchronous Replication
        // Monitoring").
        args.push("--plugin-load-add=semisync_source.so".to_string());
        args.push("--plugin-load-add=semisync_replica.so".to_string());
        args.push("--rpl-semi-sync-source-enabled=ON".to_string());
        args.push("--rpl-semi-sync-replica-enabled=ON".to_string());
        args.push(format!(
            "--rpl-semi-sync-source-timeout={}",
            group.spec.mysql.semisync_timeout.as_millis()
        ));
    }
    args
}

/// Runs before mysqld on the same data volume and environment; see [`MYSQL_INIT_SCRIPT`].
fn mysql_init_container(mysqld: &Container) -> Container {
    Container {
        name: MYSQL_INIT_CONTAINER.to_string(),
        image: mysqld.image.clone(),
        command: Some(vec![
            "bash".to_string(),
            "-c".to_string(),
            MYSQL_INIT_SCRIPT.to_string(),
        ]),
        env: mysqld.env.clone(),
        resources: mysqld.resources.clone(),
        volume_mounts: mysqld.volume_mounts.clone(),
        ..Container::default()
    }
}

pub(super) fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    secret_env_optional(name, secret, key, false)
}

fn secret_env_optional(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn mysqld_container(owner: &Owner, group: &MysqlFailoverGroup, site: &str) -> Container {
    let mysql = &group.spec.mysql;
    Container {
        name: MYSQL_CONTAINER.to_string(),
        image: Some(mysql.image.clone()),
        args: Some(mysqld_args(group, site, &owner.namespace)),
        env: Some(vec![
            secret_env(
                "MYSQL_ROOT_PASSWORD",
                &mysql.credentials_secret,
                ROOT_PASSWORD_KEY,
            ),
            EnvVar {
                name: "MYSQL_USER".to_string(),
                value: Some(APP_USER.to_string()),
                ..EnvVar::default()
            },
            secret_env(
                "MYSQL_PASSWORD",
                &mysql.credentials_secret,
                APP_PASSWORD_KEY,
            ),
            secret_env_optional(
                "MYSQL_DATABASE",
                &mysql.credentials_secret,
                APP_DATABASE_KEY,
                true,
            ),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("mysql".to_string()),
            container_port: mysql.port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        // `mysqladmin ping` succeeds for a running server even without credentials,
        // so the probe needs no password; a read-only replica is ready too (the
        // primary Service selects by role label, not readiness alone).
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "mysqladmin".to_string(),
                    "ping".to_string(),
                    "--host=127.0.0.1".to_string(),
                    format!("--port={}", mysql.port),
                    "--silent".to_string(),
                ]),
            }),
            period_seconds: Some(2),
            timeout_seconds: Some(1),
            failure_threshold: Some(2),
            ..Probe::default()
        }),
        // Liveness only checks that the port accepts connections: a busy server must
        // not be restarted for being slow, and crash recovery can take a while.
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("mysql".to_string()),
                ..TCPSocketAction::default()
            }),
            initial_delay_seconds: Some(30),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        resources: mysql.resources.clone(),
        volume_mounts: Some(vec![VolumeMount {
            name: names::DATA_VOLUME.to_string(),
            mount_path: DATA_DIR.to_string(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// The fencing agent beside mysqld. Its lease timings come from the group's
/// `spec.failover`; the password comes from the Secret, never from an argument.
pub fn sidecar_args(owner: &Owner, group: &MysqlFailoverGroup, site: &str) -> Vec<String> {
    let failover = &group.spec.failover;
    vec![
        "sidecar".to_string(),
        format!("--group={}", owner.name),
        format!("--site={site}"),
        // The administrative interface: not counted against max_connections, so a
        // connection storm that also takes the one extra CONNECTION_ADMIN slot of the
        // client port cannot keep the fence out (manual 7.1.12.1, 7.1.12.2).
        format!("--mysql-port={ADMIN_PORT}"),
        format!("--lease-duration={}", failover.lease_duration),
        format!("--lease-renew-interval={}", failover.lease_renew_interval),
        format!("--lease-safety-margin={}", failover.lease_safety_margin),
        format!("--listen=0.0.0.0:{SIDECAR_HTTP_PORT}"),
    ]
}

fn sidecar_container(
    owner: &Owner,
    group: &MysqlFailoverGroup,
    site: &str,
    ctx: &BuildContext,
) -> Container {
    let health = |period| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".to_string()),
            port: IntOrString::String("sidecar-http".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        ..Probe::default()
    };
    Container {
        name: SIDECAR_CONTAINER.to_string(),
        image: Some(ctx.sidecar_image.clone()),
        args: Some(sidecar_args(owner, group, site)),
        env: Some(vec![
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_NAME", "metadata.name"),
            secret_env(
                SIDECAR_PASSWORD_ENV,
                &group.spec.mysql.credentials_secret,
                ROOT_PASSWORD_KEY,
            ),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("sidecar-http".to_string()),
            container_port: SIDECAR_HTTP_PORT,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(health(5)),
        liveness_probe: Some(health(10)),
        ..Container::default()
    }
}

fn mysql_port(group: &MysqlFailoverGroup) -> ServicePort {
    ServicePort {
        name: Some("mysql".to_string()),
        port: group.spec.mysql.port,
        target_port: Some(IntOrString::String("mysql".to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// The headless Service that gives `<group>-mysql-<site>-0` its DNS name. It publishes
/// not-ready addresses: the operator must reach a mysqld that is up but not yet ready
/// (or fenced) to observe and fence it.
pub fn headless_service(owner: &Owner, group: &MysqlFailoverGroup, site: &str) -> Service {
    Service {
        metadata: owner.child_meta(
            names::mysql_headless_service(&owner.name, site),
            owner.site_labels(site),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(owner.site_selector(site)),
            ports: Some(vec![mysql_port(group)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A ClusterIP Service per site, for clients that want one site regardless of role
/// (read scaling, the dashboard, debugging).
pub fn site_service(owner: &Owner, group: &MysqlFailoverGroup, site: &str) -> Service {
    Service {
        metadata: owner.child_meta(
            names::mysql_site_service(&owner.name, site),
            owner.site_labels(site),
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(owner.site_selector(site)),
            ports: Some(vec![mysql_port(group)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The app-facing Service: whichever pod carries `shipstream.io/role=primary`. The
/// controller moves the label only after promotion, so the Service never points at a
/// fenced server for longer than a relabel.
pub fn primary_service(owner: &Owner, group: &MysqlFailoverGroup) -> Service {
    Service {
        metadata: owner.child_meta(
            names::mysql_primary_service(&owner.name),
            owner.labels(MYSQL_APP_NAME),
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(BTreeMap::from([
                (NAME_LABEL.to_string(), MYSQL_APP_NAME.to_string()),
                (INSTANCE_LABEL.to_string(), owner.name.clone()),
                (ROLE_LABEL.to_string(), ROLE_PRIMARY.to_string()),
            ])),
            ports: Some(vec![mysql_port(group)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A PodDisruptionBudget per site that forbids voluntary eviction of the site's pod
/// while it is the primary (selector includes `role=primary`): draining the primary's
/// node would otherwise cause an emergency failover. A replica's pod stays evictable;
/// drain a primary's node after a planned failover.
pub fn pod_disruption_budget(
    owner: &Owner,
    _group: &MysqlFailoverGroup,
    site: &str,
) -> PodDisruptionBudget {
    let mut selector = owner.site_selector(site);
    selector.insert(ROLE_LABEL.to_string(), ROLE_PRIMARY.to_string());
    PodDisruptionBudget {
        metadata: owner.child_meta(names::mysql_pdb(&owner.name, site), owner.site_labels(site)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(0)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
