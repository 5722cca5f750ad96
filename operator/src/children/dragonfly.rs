//! Builders for the co-managed Dragonfly cache: one StatefulSet, headless Service and
//! PodDisruptionBudget per site, and the app-facing Service that selects the pod labelled
//! master *and* traffic-enabled. Also the flags the operator owns (they are built here,
//! and validation refuses `spec.dragonfly.args` that set them). Pure: no I/O, no clock.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::mysql::secret_env;
use super::{INSTANCE_LABEL, NAME_LABEL, Owner, names};
use crate::api::{
    DRAGONFLY_ROLE_LABEL, DRAGONFLY_TRAFFIC_LABEL, DragonflySnapshotSpec, DragonflySpec,
    MysqlFailoverGroup, SiteSpec,
};
use crate::storage::{DEFAULT_REGION, S3Credentials};

/// `app.kubernetes.io/name` of every Dragonfly pod and Dragonfly child.
pub const DRAGONFLY_APP_NAME: &str = "dragonfly";
/// The Redis-protocol port clients and replicas use.
pub const DRAGONFLY_PORT: i32 = 6379;
/// Dragonfly's admin port (RESP and HTTP, same password): the operator's commands
/// (`REPLTAKEOVER`, `REPLICAOF`) do not compete with application connections for it.
pub const DRAGONFLY_ADMIN_PORT: i32 = 9999;
/// The key of the group Secret (`spec.mysql.credentialsSecret`) that holds the password
/// every Dragonfly requires and every replica presents to its master.
pub const DRAGONFLY_PASSWORD_KEY: &str = "dragonfly-password";
/// `dragonfly-role` label values.
pub const DRAGONFLY_ROLE_MASTER: &str = "master";
pub const DRAGONFLY_ROLE_REPLICA: &str = "replica";
/// `dragonfly-traffic` label values.
pub const DRAGONFLY_TRAFFIC_ENABLED: &str = "enabled";
pub const DRAGONFLY_TRAFFIC_DISABLED: &str = "disabled";
/// The Dragonfly container (chaos faults and the sim find it by name).
pub const DRAGONFLY_CONTAINER: &str = "dragonfly";

/// The environment Dragonfly's S3 client reads its credentials and region from.
pub const S3_ACCESS_KEY_ID_ENV: &str = "AWS_ACCESS_KEY_ID";
pub const S3_SECRET_ACCESS_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";
pub const S3_REGION_ENV: &str = "AWS_REGION";

/// Flags the operator sets and `spec.dragonfly.args` may not: changing any of them
/// breaks replication, authentication, the Service's port or the memory contract.
/// Dragonfly also reads every flag from `DFLY_<flag>`; the password ones come that way.
pub const OWNED_FLAGS: &[&str] = &[
    "port",
    "admin_port",
    "requirepass",
    "masterauth",
    "break_replication_on_master_restart",
    "maxmemory",
    "proactor_threads",
];

/// Flags the guide discourages in `spec.dragonfly.args`, by name prefix, with the
/// trade-off a user accepts by setting them. Allowed (an escape hatch), but reported as
/// a Warning Event and the `DragonflyConfigWarning` condition.
pub const DISCOURAGED_FLAGS: &[(&str, &str)] = &[
    (
        "tiered_",
        "tiered storage: values on local disk are lost with the pod's ephemeral storage and slow full syncs and takeovers",
    ),
    (
        "aclfile",
        "ACL file: users from a file in the pod are not replicated and not managed by the operator; a takeover leaves the new master with a different file",
    ),
    (
        "default_lua_flags",
        "Lua relaxations: scripts touching undeclared keys lose atomicity and can diverge between master and replica",
    ),
    (
        "lua_undeclared_keys_shas",
        "Lua relaxations: scripts touching undeclared keys lose atomicity and can diverge between master and replica",
    ),
    (
        "tls_replication",
        "TLS replication: the certificates are not managed by the operator; an expired one stops replication and takeovers",
    ),
    (
        "snapshot_cron",
        "snapshot scheduling: snapshots add master latency and memory, and land on ephemeral storage",
    ),
    (
        "save_schedule",
        "snapshot scheduling: snapshots add master latency and memory, and land on ephemeral storage",
    ),
    (
        "dbfilename",
        "load/import: data loaded at start-up bypasses the replication journal, so the replica never receives it",
    ),
    (
        "dir",
        "load/import: data loaded at start-up bypasses the replication journal, so the replica never receives it",
    ),
];

/// One discouraged argument and its trade-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscouragedArg {
    pub arg: String,
    pub tradeoff: &'static str,
}

/// The flag name an argument sets (`--tiered_prefix=/x` -> `tiered_prefix`), with
/// dashes as underscores and absl's `no` prefix of booleans kept (it still names the
/// flag for matching prefixes that cannot start with `no`).
fn flag_name(arg: &str) -> Option<String> {
    let option = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let name = option.split(['=', ' ']).next().unwrap_or_default();
    (!name.is_empty()).then(|| name.replace('-', "_"))
}

/// The arguments of `args` that the guide discourages, in order.
pub fn discouraged_args(args: &[String]) -> Vec<DiscouragedArg> {
    args.iter()
        .filter_map(|arg| {
            let name = flag_name(arg)?;
            DISCOURAGED_FLAGS
                .iter()
                .find(|(prefix, _)| {
                    if prefix.ends_with('_') {
                        name.starts_with(prefix)
                    } else {
                        name == *prefix
                    }
                })
                .map(|(_, tradeoff)| DiscouragedArg {
                    arg: arg.clone(),
                    tradeoff,
                })
        })
        .collect()
}

const DATA_VOLUME: &str = "data";
const DATA_DIR: &str = "/data";
/// Share of the memory limit given to `--maxmemory`. The rest is headroom for what
/// grows beside the dataset (connection buffers, the replication journal, full-sync
/// serialisation), so that a full cache is not OOM-killed during a sync. Our choice,
/// documented in docs/dragonfly.md.
const MAXMEMORY_PERCENT_OF_LIMIT: u128 = 80;

/// Every Dragonfly child of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct DragonflyChildren {
    pub sites: Vec<DragonflySiteChildren>,
    /// The app-facing Service: role=master AND traffic=enabled.
    pub service: Service,
}

/// The Dragonfly children of one site.
#[derive(Debug, Clone, PartialEq)]
pub struct DragonflySiteChildren {
    pub site: String,
    pub headless_service: Service,
    pub statefulset: StatefulSet,
    pub pod_disruption_budget: PodDisruptionBudget,
}

/// `None` without `spec.dragonfly`: the controller then deletes what an earlier spec
/// asked for.
pub fn dragonfly_children(owner: &Owner, group: &MysqlFailoverGroup) -> Option<DragonflyChildren> {
    let spec = group.spec.dragonfly.as_ref()?;
    let secret = &group.spec.mysql.credentials_secret;
    let sites = group
        .spec
        .sites
        .iter()
        .map(|site| DragonflySiteChildren {
            site: site.name.clone(),
            headless_service: headless_service(owner, &site.name),
            statefulset: statefulset(owner, spec, site, secret),
            pod_disruption_budget: pod_disruption_budget(owner, &site.name),
        })
        .collect();
    Some(DragonflyChildren {
        sites,
        service: app_service(owner),
    })
}

/// Dragonfly's command line for one site: the owned flags first, then the snapshot
/// flags when `spec.dragonfly.snapshot` is set, then `spec.dragonfly.args` (validation
/// has refused any that set an owned or, with snapshots, a snapshot flag). The
/// passwords and S3 keys are not here: they arrive as environment variables from
/// Secrets.
pub fn dragonfly_args(spec: &DragonflySpec, group: &str, site: &str) -> Vec<String> {
    let mut args = vec![
        format!("--port={DRAGONFLY_PORT}"),
        format!("--admin_port={DRAGONFLY_ADMIN_PORT}"),
        // A replica whose master restarted (empty: storage is ephemeral) must not
        // full-sync from it and wipe its own copy; it stops replicating instead, so the
        // operator can promote it and keep the sessions (docs/dragonfly.md).
        "--break_replication_on_master_restart=true".to_string(),
    ];
    args.extend(sizing_args(spec.resources.as_ref()));
    if let Some(snapshot) = &spec.snapshot {
        args.extend(snapshot_args(snapshot, group, site));
    }
    args.extend(spec.args.iter().cloned());
    args
}

/// The snapshot object's name (`--dbfilename`) of a site: one per site, so that the two
/// sites never overwrite each other's snapshot and a restarted pod loads its own.
pub fn snapshot_file_name(group: &str, site: &str) -> String {
    format!("{group}-{site}")
}

/// `--dir=s3://<bucket>[/<prefix>]`, `--dbfilename`, and for an S3-compatible store
/// `--s3_endpoint=<host[:port]>` with `--s3_use_https` from the endpoint's scheme
/// (Dragonfly takes the host and the scheme apart).
pub fn snapshot_args(snapshot: &DragonflySnapshotSpec, group: &str, site: &str) -> Vec<String> {
    let mut dir = format!("s3://{}", snapshot.bucket);
    if let Some(prefix) = snapshot
        .prefix
        .as_deref()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        dir.push('/');
        dir.push_str(prefix);
    }
    let mut args = vec![
        format!("--dir={dir}"),
        format!("--dbfilename={}", snapshot_file_name(group, site)),
    ];
    if let Some(endpoint) = snapshot.endpoint.as_deref() {
        let (https, host) = match endpoint.strip_prefix("https://") {
            Some(host) => (true, host),
            None => (false, endpoint.strip_prefix("http://").unwrap_or(endpoint)),
        };
        args.push(format!("--s3_endpoint={}", host.trim_end_matches('/')));
        args.push(format!("--s3_use_https={https}"));
    }
    args
}

/// The S3 credentials (from the snapshot's Secret, never inline) and region.
fn snapshot_env(snapshot: &DragonflySnapshotSpec) -> Vec<EnvVar> {
    let secret = &snapshot.credentials_secret;
    vec![
        secret_env(S3_ACCESS_KEY_ID_ENV, secret, S3Credentials::ACCESS_KEY_ID),
        secret_env(
            S3_SECRET_ACCESS_KEY_ENV,
            secret,
            S3Credentials::SECRET_ACCESS_KEY,
        ),
        EnvVar {
            name: S3_REGION_ENV.to_string(),
            value: Some(
                snapshot
                    .region
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REGION.to_string()),
            ),
            ..EnvVar::default()
        },
    ]
}

/// `--maxmemory` and `--proactor_threads` from the container's limits (requests when
/// no limit is set). A quantity that does not parse leaves Dragonfly's own detection
/// (from the cgroup) in place; validation reports it.
pub fn sizing_args(resources: Option<&ResourceRequirements>) -> Vec<String> {
    let Some(resources) = resources else {
        return Vec::new();
    };
    let pick = |name: &str| {
        resources
            .limits
            .as_ref()
            .and_then(|l| l.get(name))
            .or_else(|| resources.requests.as_ref().and_then(|r| r.get(name)))
            .map(|q| q.0.clone())
    };
    let mut args = Vec::new();
    if let Some(bytes) = pick("memory").as_deref().and_then(memory_bytes) {
        args.push(format!(
            "--maxmemory={}",
            bytes * MAXMEMORY_PERCENT_OF_LIMIT / 100
        ));
    }
    if let Some(threads) = pick("cpu").as_deref().and_then(cpu_threads) {
        args.push(format!("--proactor_threads={threads}"));
    }
    args
}

/// A Kubernetes memory quantity in bytes (`512Mi`, `2G`, `1.5Gi`, `1e9`, `1048576`).
pub fn memory_bytes(quantity: &str) -> Option<u128> {
    const SUFFIXES: &[(&str, u128)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
    ];
    let quantity = quantity.trim();
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| quantity.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((quantity, 1));
    let value: f64 = number.parse().ok()?;
    if !value.is_finite() || value <= 0.0 {
        return None;
    }
    // f64 holds every integer below 2^53 exactly; larger memory sizes do not exist.
    let bytes = (value * factor as f64).floor();
    (bytes >= 1.0).then_some(bytes as u128)
}

/// A CPU quantity as a whole number of threads, rounded up, at least 1 (`500m` -> 1,
/// `2` -> 2, `2.5` -> 3).
pub fn cpu_threads(quantity: &str) -> Option<u32> {
    let quantity = quantity.trim();
    let cores: f64 = match quantity.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => quantity.parse().ok()?,
    };
    if !cores.is_finite() || cores <= 0.0 || cores > f64::from(u16::MAX) {
        return None;
    }
    Some((cores.ceil() as u32).max(1))
}

/// The per-site StatefulSet: one Dragonfly pod on the site's nodes, data on an
/// `emptyDir` (cache/session state is never durable: DESIGN.md "Dragonfly").
pub fn statefulset(
    owner: &Owner,
    spec: &DragonflySpec,
    site: &SiteSpec,
    secret: &str,
) -> StatefulSet {
    let name = names::dragonfly_statefulset(&owner.name, &site.name);
    let labels = owner.app_site_labels(DRAGONFLY_APP_NAME, &site.name);
    let tcp_probe = |initial, period, failures| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("redis".to_string()),
            ..TCPSocketAction::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let port = |name: &str, number| ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    };
    StatefulSet {
        metadata: owner.child_meta(name, labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names::dragonfly_headless_service(&owner.name, &site.name)),
            // The operator decides when each pod restarts (replica first, the master
            // only after a takeover): `engine::dragonfly_rollout`.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_string()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(owner.app_site_selector(DRAGONFLY_APP_NAME, &site.name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                // No role or traffic label here: the controller sets them on the pod. A
                // new pod starts without them, so it matches no app-facing selector
                // until the operator has decided what it is.
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: Some(site.node_selector.clone()),
                    termination_grace_period_seconds: Some(10),
                    containers: vec![Container {
                        name: DRAGONFLY_CONTAINER.to_string(),
                        image: Some(spec.image.clone()),
                        args: Some(dragonfly_args(spec, &owner.name, &site.name)),
                        env: Some(
                            [
                                secret_env("DFLY_requirepass", secret, DRAGONFLY_PASSWORD_KEY),
                                secret_env("DFLY_masterauth", secret, DRAGONFLY_PASSWORD_KEY),
                            ]
                            .into_iter()
                            .chain(spec.snapshot.iter().flat_map(snapshot_env))
                            .collect(),
                        ),
                        ports: Some(vec![
                            port("redis", DRAGONFLY_PORT),
                            port("admin", DRAGONFLY_ADMIN_PORT),
                        ]),
                        readiness_probe: Some(tcp_probe(0, 2, 2)),
                        // A replica in full sync is slow but alive; only a closed port
                        // for a minute restarts it (and a restart empties the cache).
                        liveness_probe: Some(tcp_probe(10, 10, 6)),
                        resources: spec.resources.clone(),
                        volume_mounts: Some(vec![VolumeMount {
                            name: DATA_VOLUME.to_string(),
                            mount_path: DATA_DIR.to_string(),
                            ..VolumeMount::default()
                        }]),
                        ..Container::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: DATA_VOLUME.to_string(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn redis_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// The per-site headless Service: the pod's stable name for replication and for the
/// operator, published while not ready (a syncing replica must stay reachable).
pub fn headless_service(owner: &Owner, site: &str) -> Service {
    Service {
        metadata: owner.child_meta(
            names::dragonfly_headless_service(&owner.name, site),
            owner.app_site_labels(DRAGONFLY_APP_NAME, site),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(owner.app_site_selector(DRAGONFLY_APP_NAME, site)),
            ports: Some(vec![
                redis_port("redis", DRAGONFLY_PORT),
                redis_port("admin", DRAGONFLY_ADMIN_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The selector of the app-facing Service. Both labels are required: the operator
/// removes `traffic` from the old master *before* a takeover, so during the takeover
/// at most one pod matches, whatever the role labels say.
pub fn app_service_selector(group: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), DRAGONFLY_APP_NAME.to_string()),
        (INSTANCE_LABEL.to_string(), group.to_string()),
        (
            DRAGONFLY_ROLE_LABEL.to_string(),
            DRAGONFLY_ROLE_MASTER.to_string(),
        ),
        (
            DRAGONFLY_TRAFFIC_LABEL.to_string(),
            DRAGONFLY_TRAFFIC_ENABLED.to_string(),
        ),
    ])
}

/// The app-facing Service `<group>-dragonfly` (Redis port only, never the admin port).
pub fn app_service(owner: &Owner) -> Service {
    Service {
        metadata: owner.child_meta(
            names::dragonfly_service(&owner.name),
            owner.labels(DRAGONFLY_APP_NAME),
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(app_service_selector(&owner.name)),
            ports: Some(vec![redis_port("redis", DRAGONFLY_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A PodDisruptionBudget per site that forbids evicting the site's Dragonfly while it is
/// the master (a drain would throw away the sessions a planned takeover keeps); the
/// replica stays evictable, as the MySQL replica does.
pub fn pod_disruption_budget(owner: &Owner, site: &str) -> PodDisruptionBudget {
    let mut selector = owner.app_site_selector(DRAGONFLY_APP_NAME, site);
    selector.insert(
        DRAGONFLY_ROLE_LABEL.to_string(),
        DRAGONFLY_ROLE_MASTER.to_string(),
    );
    PodDisruptionBudget {
        metadata: owner.child_meta(
            names::dragonfly_pdb(&owner.name, site),
            owner.app_site_labels(DRAGONFLY_APP_NAME, site),
        ),
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

#[cfg(test)]
#[path = "dragonfly_tests.rs"]
mod tests;
