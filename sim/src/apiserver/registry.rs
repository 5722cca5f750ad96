//! Which resources the server knows: the built-in kinds (scope, group/version, plural,
//! short names, subresources) and the custom resources registered at runtime from
//! CustomResourceDefinition objects. Discovery and routing read only this table.

use std::collections::BTreeMap;
use std::sync::Arc;

use bloodraven::schema::CrdSchema;

use super::ResourceKey;

/// Where objects of a resource are stored. Two served resources can share storage
/// (core/v1 and events.k8s.io/v1 Events; the versions of one CRD).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageKey {
    pub group: String,
    pub resource: String,
}

/// How an object is converted between its stored form and the served version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// Only `apiVersion` changes (CRDs with conversion strategy `None`).
    None,
    /// events.k8s.io/v1 Event served from the core/v1 Event storage.
    EventsV1,
}

/// A column of `kubectl get` output (CRD additionalPrinterColumns or a built-in's own).
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: String,
    pub format: String,
    pub description: String,
    /// 0 = always shown; >0 = only with `-o wide`.
    pub priority: i64,
    /// JSONPath (kubectl's simple `.a.b[0].c` subset) into the object.
    pub json_path: String,
}

/// Everything the server knows about one served resource (group/version/plural).
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    pub key: ResourceKey,
    pub kind: String,
    pub list_kind: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    pub scale_subresource: bool,
    pub storage: StorageKey,
    pub conversion: Conversion,
    /// Custom resources only: the version's openAPIV3Schema.
    pub schema: Option<Arc<CrdSchema>>,
    /// Custom resources only (built-ins have their columns in `table.rs`).
    pub printer_columns: Vec<PrinterColumn>,
    /// True for resources registered from a CRD.
    pub custom: bool,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        self.key.api_version()
    }

    /// `pods`, or `deployments.apps` in messages and request counts.
    pub fn qualified_resource(&self) -> String {
        if self.key.group.is_empty() {
            self.key.resource.clone()
        } else {
            format!("{}.{}", self.key.resource, self.key.group)
        }
    }
}

/// The resource table.
#[derive(Clone, Debug, Default)]
pub(super) struct Registry {
    resources: BTreeMap<ResourceKey, Arc<ResourceInfo>>,
}

struct BuiltIn {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
}

const BUILT_INS: &[BuiltIn] = &[
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        status: true,
        scale: false,
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        status: true,
        scale: false,
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        status: true,
        scale: false,
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        status: true,
        scale: false,
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        status: false,
        scale: false,
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        status: false,
        scale: false,
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        scale: false,
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        namespaced: true,
        short_names: &["pvc"],
        categories: &[],
        status: true,
        scale: false,
    },
    BuiltIn {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        status: false,
        scale: false,
    },
    BuiltIn {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        status: false,
        scale: false,
    },
    BuiltIn {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        scale: false,
    },
    // Stored only (the simulation enforces no RBAC), so that the operator can apply
    // its sidecars' ServiceAccount, Role and RoleBinding unchanged.
    BuiltIn {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        status: false,
        scale: false,
    },
    BuiltIn {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "Role",
        plural: "roles",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        scale: false,
    },
    BuiltIn {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "RoleBinding",
        plural: "rolebindings",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        scale: false,
    },
    // Stored, not enforced: the simulated API server authorises every request (the chart
    // tests check the operator's calls against these objects' rules instead).
    BuiltIn {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRole",
        plural: "clusterroles",
        namespaced: false,
        short_names: &[],
        categories: &[],
        status: false,
        scale: false,
    },
    BuiltIn {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        namespaced: false,
        short_names: &[],
        categories: &[],
        status: false,
        scale: false,
    },
    BuiltIn {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
        short_names: &["sts"],
        categories: &["all"],
        status: true,
        scale: true,
    },
    BuiltIn {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        status: true,
        scale: true,
    },
    BuiltIn {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        namespaced: true,
        short_names: &["pdb"],
        categories: &[],
        status: true,
        scale: false,
    },
    BuiltIn {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        namespaced: true,
        short_names: &[],
        categories: &["all"],
        status: true,
        scale: false,
    },
    BuiltIn {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        namespaced: true,
        short_names: &["cj"],
        categories: &["all"],
        status: true,
        scale: false,
    },
    BuiltIn {
        group: "apiextensions.k8s.io",
        version: "v1",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        status: true,
        scale: false,
    },
];

impl Registry {
    /// The built-in kinds.
    pub(super) fn with_built_ins() -> Self {
        let mut registry = Registry::default();
        for b in BUILT_INS {
            let key = ResourceKey::new(b.group, b.version, b.plural);
            let (storage, conversion) = if b.group == "events.k8s.io" {
                (
                    StorageKey {
                        group: String::new(),
                        resource: "events".into(),
                    },
                    Conversion::EventsV1,
                )
            } else {
                (
                    StorageKey {
                        group: b.group.into(),
                        resource: b.plural.into(),
                    },
                    Conversion::None,
                )
            };
            registry.insert(ResourceInfo {
                key,
                kind: b.kind.into(),
                list_kind: format!("{}List", b.kind),
                singular: b.kind.to_lowercase(),
                namespaced: b.namespaced,
                short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
                categories: b.categories.iter().map(|s| s.to_string()).collect(),
                status_subresource: b.status,
                scale_subresource: b.scale,
                storage,
                conversion,
                schema: None,
                printer_columns: Vec::new(),
                custom: false,
            });
        }
        registry
    }

    pub(super) fn insert(&mut self, info: ResourceInfo) {
        self.resources.insert(info.key.clone(), Arc::new(info));
    }

    pub(super) fn remove_storage(&mut self, storage: &StorageKey) {
        self.resources.retain(|_, info| &info.storage != storage);
    }

    pub(super) fn get(&self, key: &ResourceKey) -> Option<&Arc<ResourceInfo>> {
        self.resources.get(key)
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.resources.values()
    }

    /// Group/versions in discovery order: core first, then groups by name.
    pub(super) fn group_versions(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for info in self.resources.values() {
            let versions = groups.entry(info.key.group.clone()).or_default();
            if !versions.contains(&info.key.version) {
                versions.push(info.key.version.clone());
            }
        }
        for versions in groups.values_mut() {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first.
pub(super) fn version_priority(version: &str) -> (u8, u64, u64) {
    let rest = version.strip_prefix('v').unwrap_or(version);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse::<u64>().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}
