//! `MysqlFailoverGroup`: two sites, one writable MySQL primary and one GTID replica, with
//! failover, fencing, DNS steering, an optional Dragonfly cache and backups.
//!
//! Field names are the ones runbooks and users type (docs/api.md); do not rename.
//! This file holds the spec; the status the operator writes is in
//! `failover_group_status`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;
use super::failover_group_status::MysqlFailoverGroupStatus;

/// Annotation that starts a planned failover to the named site.
pub const PLANNED_FAILOVER_ANNOTATION: &str = "bloodraven.shipstream.io/planned-failover";
/// Annotation that confirms a destructive reclone: `<site>:<token>`, where the token is
/// the first segment of the site's divergent GTID's UUID.
pub const RECLONE_SITE_ANNOTATION: &str = "bloodraven.shipstream.io/reclone-site";
/// Annotation that confirms promoting a stale emergency candidate: `<site>:<count>`,
/// where the count is the number of transactions last seen on the lost primary that the
/// site does not have and that the promotion gives up.
pub const FORCE_FAILOVER_ANNOTATION: &str = "bloodraven.shipstream.io/force-failover";
/// Set by the restore controller (value: the `MysqlRestore`'s name) while a restore
/// runs: the engine starts no emergency failover and no planned failover meanwhile.
pub const RESTORE_IN_PROGRESS_ANNOTATION: &str = "bloodraven.shipstream.io/restore-in-progress";

/// Pod label naming the site a pod belongs to.
pub const SITE_LABEL: &str = "shipstream.io/site";
/// Pod label: `primary` or `replica`.
pub const ROLE_LABEL: &str = "shipstream.io/role";
/// Pod label: `master` or `replica` (Dragonfly).
pub const DRAGONFLY_ROLE_LABEL: &str = "shipstream.io/dragonfly-role";
/// Pod label: `enabled` or `disabled`; the app-facing Dragonfly Service requires `enabled`.
pub const DRAGONFLY_TRAFFIC_LABEL: &str = "shipstream.io/dragonfly-traffic";

/// A MySQL service kept writable across two sites.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bloodraven.shipstream.io",
    version = "v1alpha1",
    kind = "MysqlFailoverGroup",
    plural = "mysqlfailovergroups",
    shortname = "mfg",
    category = "bloodraven",
    namespaced,
    status = "MysqlFailoverGroupStatus",
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeSite","description":"The writable site"}"#,
    printcolumn = r#"{"name":"Health","type":"string","jsonPath":".status.health"}"#,
    printcolumn = r#"{"name":"Planned","type":"string","jsonPath":".status.plannedFailover.phase","description":"Phase of the current or last planned failover"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Site-1","type":"string","jsonPath":".status.sites[0].name","priority":1}"#,
    printcolumn = r#"{"name":"State-1","type":"string","jsonPath":".status.sites[0].state","priority":1}"#,
    printcolumn = r#"{"name":"Site-2","type":"string","jsonPath":".status.sites[1].name","priority":1}"#,
    printcolumn = r#"{"name":"State-2","type":"string","jsonPath":".status.sites[1].state","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.dns) || self.sites.all(s, s.name in self.dns.targets)", "message": "dns.targets needs an entry for every site", "fieldPath": ".dns.targets"}
]))]
pub struct MysqlFailoverGroupSpec {
    /// The two sites, in preference order: on a fresh group with equal data the first
    /// site becomes the primary. Names must be distinct.
    #[schemars(length(min = 2, max = 2))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub sites: Vec<SiteSpec>,
    pub mysql: MysqlSpec,
    #[serde(default)]
    pub failover: FailoverSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSpec>,
    /// A co-managed Dragonfly cache per site. Remove the block to disable it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dragonfly: Option<DragonflySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
}

/// One site: where its pods run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteSpec {
    /// Short lower-case name used in pod names, labels and annotations (`iad`, `pdx`).
    #[schemars(length(min = 1, max = 20), pattern(r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Node labels that pin the site's pods, e.g. `topology.kubernetes.io/zone: zone-iad`.
    /// At least one: an empty selector would let a site's pods land anywhere, on the
    /// other site's nodes too.
    // schemars' `length` does not apply to maps; minProperties says it for an object.
    #[schemars(extend("minProperties" = 1))]
    pub node_selector: BTreeMap<String, String>,
}

/// Which MySQL-compatible server the image runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MysqlFlavor {
    /// Oracle MySQL 8.0 or 8.4.
    #[default]
    Mysql,
    /// Percona Server for MySQL 8.0 or 8.4.
    Percona,
}

/// How a commit on the primary relates to the replica.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Commits return before the replica has them; a failover may lose the last few.
    #[default]
    Async,
    /// Commits wait for the replica's acknowledgement, up to `semisyncTimeout`.
    Semisync,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlSpec {
    #[serde(default = "default_mysql_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default)]
    pub flavor: MysqlFlavor,
    /// Secret with keys `root-password` (the operator's account), `replication-password`
    /// (and optionally `replication-user`, default `repl`: the account replicas and
    /// clones use, created by the operator), `app-password` (and optionally
    /// `app-database`: the application account `app` the image creates). Never logged.
    #[schemars(length(min = 1))]
    pub credentials_secret: String,
    #[serde(default)]
    pub storage: StorageSpec,
    #[serde(default)]
    pub durability: Durability,
    /// How long a semisync commit waits for the replica before falling back to async.
    #[serde(default = "default_semisync_timeout")]
    pub semisync_timeout: Duration,
    #[serde(default = "default_mysql_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// PVC size per site, as a Kubernetes quantity.
    #[serde(default = "default_storage_size")]
    #[schemars(pattern(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Failure detection, fencing and failover timing. The defaults fail over a crashed
/// primary in well under ten seconds while tolerating a probe or two lost.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "duration(self.leaseSafetyMargin) < duration(self.leaseDuration)", "message": "leaseSafetyMargin must be shorter than leaseDuration", "fieldPath": ".leaseSafetyMargin"},
    {"rule": "duration(self.leaseRenewInterval) < duration(self.leaseDuration) - duration(self.leaseSafetyMargin)", "message": "leaseRenewInterval must be shorter than leaseDuration minus leaseSafetyMargin, or the primary fences itself between renewals", "fieldPath": ".leaseRenewInterval"},
    {"rule": "duration(self.probeInterval) <= duration(self.detectionWindow)", "message": "probeInterval must not be longer than detectionWindow", "fieldPath": ".probeInterval"}
]))]
pub struct FailoverSpec {
    /// Fail over automatically when the active site is lost. When false the operator
    /// still fences and reports, but only planned failovers move the primary.
    #[serde(default = "default_true")]
    pub automatic: bool,
    /// How often each site's MySQL is probed.
    #[serde(default = "default_probe_interval")]
    pub probe_interval: Duration,
    /// How long one probe may take before it counts as failed.
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout: Duration,
    /// A site is unreachable only after its probes have failed for this long.
    #[serde(default = "default_detection_window")]
    pub detection_window: Duration,
    /// Validity of the writer lease (`<group>-writer`) after each renewal.
    #[serde(default = "default_lease_duration")]
    pub lease_duration: Duration,
    /// How often the active site's sidecar renews the writer lease.
    #[serde(default = "default_lease_renew_interval")]
    pub lease_renew_interval: Duration,
    /// Subtracted by the sidecar (fences early) and added by the operator (promotes
    /// late) so that the fence always precedes a promotion.
    #[serde(default = "default_lease_safety_margin")]
    pub lease_safety_margin: Duration,
    /// Bound on waiting for the candidate to apply its relay log before promotion.
    #[serde(default = "default_relay_log_drain_timeout")]
    pub relay_log_drain_timeout: Duration,
    /// A planned failover is refused while the target lags more than this.
    #[serde(default = "default_max_lag_for_planned_failover")]
    pub max_lag_for_planned_failover: Duration,
    /// Bound on a planned failover's catch-up; on expiry it is undone and marked Failed.
    #[serde(default = "default_planned_failover_timeout")]
    pub planned_failover_timeout: Duration,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        Self {
            automatic: true,
            probe_interval: default_probe_interval(),
            probe_timeout: default_probe_timeout(),
            detection_window: default_detection_window(),
            lease_duration: default_lease_duration(),
            lease_renew_interval: default_lease_renew_interval(),
            lease_safety_margin: default_lease_safety_margin(),
            relay_log_drain_timeout: default_relay_log_drain_timeout(),
            max_lag_for_planned_failover: default_max_lag_for_planned_failover(),
            planned_failover_timeout: default_planned_failover_timeout(),
        }
    }
}

/// DNS record type published for the group hostname.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[default]
    #[serde(rename = "CNAME")]
    Cname,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Cname => "CNAME",
        }
    }
}

/// DNS steering through an external-dns `DNSEndpoint`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsSpec {
    /// The name applications use, e.g. `mysql.playground.example.internal`.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?$")
    )]
    pub hostname: String,
    /// Record TTL in seconds; keep it short so that clients follow a failover.
    #[serde(default = "default_dns_ttl")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl: i64,
    #[serde(default)]
    pub record_type: RecordType,
    /// The record targets per site name: where the hostname points while that site is
    /// active. Every site needs an entry.
    pub targets: BTreeMap<String, Vec<String>>,
}

/// A co-managed Dragonfly per site (cache/session state, never durable data).
/// The rules refuse args that set a flag the operator owns (the list is
/// `children::dragonfly::OWNED_FLAGS`; a test keeps both in step) and images older
/// than v1.38.0.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.args) || self.args.all(a, !a.matches('^--?port([= ].*)?$'))", "message": "args must not set --port: the operator owns it (the Services, probes and replicas use 6379)", "fieldPath": ".args"},
    {"rule": "!has(self.args) || self.args.all(a, !a.matches('^--?admin[-_]port([= ].*)?$'))", "message": "args must not set --admin_port: the operator owns it (the operator's commands use 9999)", "fieldPath": ".args"},
    {"rule": "!has(self.args) || self.args.all(a, !a.matches('^--?requirepass([= ].*)?$'))", "message": "args must not set --requirepass: the operator owns it (it comes from the group Secret's dragonfly-password)", "fieldPath": ".args"},
    {"rule": "!has(self.args) || self.args.all(a, !a.matches('^--?masterauth([= ].*)?$'))", "message": "args must not set --masterauth: the operator owns it (it comes from the group Secret's dragonfly-password)", "fieldPath": ".args"},
    {"rule": "!has(self.args) || self.args.all(a, !a.matches('^--?(no)?break[-_]replication[-_]on[-_]master[-_]restart([= ].*)?$'))", "message": "args must not set --break_replication_on_master_restart: the operator owns it (a replica must keep its data when its master restarts empty)", "fieldPath": ".args"},
    {"rule": "!has(self.args) || self.args.all(a, !a.matches('^--?maxmemory([= ].*)?$'))", "message": "args must not set --maxmemory: the operator owns it (it follows resources)", "fieldPath": ".args"},
    {"rule": "!has(self.args) || self.args.all(a, !a.matches('^--?proactor[-_]threads([= ].*)?$'))", "message": "args must not set --proactor_threads: the operator owns it (it follows resources)", "fieldPath": ".args"},
    {"rule": "!has(self.snapshot) || !has(self.args) || self.args.all(a, !a.matches('^--?(no)?(dir|dbfilename|s3[-_][a-z_-]+)([= ].*)?$'))", "message": "args must not set --dir, --dbfilename or --s3_* while snapshot is set: the operator derives them from spec.dragonfly.snapshot", "fieldPath": ".args"},
    {"rule": "self.image.matches('@sha256:[0-9a-f]{64}$') || self.image.matches(':v?(([2-9]|[1-9][0-9]+)[.][0-9]+|1[.](3[89]|[4-9][0-9]|[1-9][0-9][0-9]+))[.][0-9]+(-[0-9A-Za-z.-]+)?$')", "message": "image must be Dragonfly v1.38.0 or newer, as a version tag (vX.Y.Z) or a digest (@sha256:...): older releases have replication, snapshot and expiry bugs", "fieldPath": ".image"}
]))]
pub struct DragonflySpec {
    /// `vX.Y.Z` tag at v1.38.0 or newer, or a digest reference.
    #[serde(default = "default_dragonfly_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Extra Dragonfly flags. The operator owns the safety-critical ones (--port,
    /// --admin_port, --requirepass, --masterauth, --break_replication_on_master_restart,
    /// --maxmemory, --proactor_threads); setting one is refused. Bounded so that the
    /// API server's CEL cost estimate stays within its budget.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<DragonflySnapshotSpec>,
}

/// S3 snapshots of the cache (the guide's D6a path): each site's Dragonfly saves to and
/// loads from `s3://<bucket>/<prefix>/<group>-<site>`. Dragonfly v1.38 exits at start-up
/// when the bucket or the credentials are unavailable: provision them first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.endpoint) || self.endpoint.matches('^https?://[^/?#]+/?$')", "message": "endpoint must be http(s)://host[:port] (Dragonfly takes a host and a scheme, no path)", "fieldPath": ".endpoint"}
]))]
pub struct DragonflySnapshotSpec {
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix inside the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub prefix: Option<String>,
    /// Endpoint URL of an S3-compatible store (MinIO, RustFS), `http(s)://host[:port]`;
    /// none means AWS S3 in `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// Secret with `access-key-id` and `secret-access-key` (as backup profiles).
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub profiles: Vec<BackupProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrSpec>,
}

/// A named backup destination with its schedule, retention and verification.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupProfile {
    #[schemars(length(min = 1, max = 40), pattern(r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    pub storage: BackupStorage,
    /// Cron schedule (5 fields) for backups; none means on demand only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSpec>,
}

/// Where backups are written. Exactly one of the kinds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.s3) != has(self.pvc)", "message": "set exactly one of s3 or pvc"}
]))]
pub struct BackupStorage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcStorage>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Endpoint URL for S3-compatible stores (MinIO, RustFS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret with `access-key-id` and `secret-access-key`.
    #[schemars(length(min = 1))]
    pub credentials_secret: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcStorage {
    #[schemars(length(min = 1))]
    pub claim_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep at least this many successful backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_last: Option<i32>,
    /// Delete successful backups older than this (beyond `keepLast`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

/// Scheduled verification: restore the latest backup into a scratch mysqld and check it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSpec {
    /// Cron schedule (5 fields), e.g. `*/30 * * * *`.
    #[schemars(length(min = 1))]
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanity_check: Option<SanityCheck>,
}

/// A query run against the restored data; the verification fails if it errors or, when
/// `expectRows` is set, returns fewer rows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SanityCheck {
    #[schemars(length(min = 1))]
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub expect_rows: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PitrSpec {
    #[serde(default)]
    pub enabled: bool,
}

// Defaults. Functions, because serde and schemars both read them.

fn default_true() -> bool {
    true
}
fn default_mysql_image() -> String {
    "mysql:8.4".to_string()
}
fn default_mysql_port() -> i32 {
    3306
}
fn default_storage_size() -> String {
    "10Gi".to_string()
}
fn default_semisync_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_probe_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_probe_timeout() -> Duration {
    Duration::from_millis(800)
}
fn default_detection_window() -> Duration {
    Duration::from_secs(3)
}
fn default_lease_duration() -> Duration {
    Duration::from_secs(5)
}
fn default_lease_renew_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_lease_safety_margin() -> Duration {
    Duration::from_secs(1)
}
fn default_relay_log_drain_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_lag_for_planned_failover() -> Duration {
    Duration::from_secs(5)
}
fn default_planned_failover_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_dns_ttl() -> i64 {
    30
}
fn default_dragonfly_image() -> String {
    "docker.dragonflydb.io/dragonflydb/dragonfly:v1.38.0".to_string()
}
