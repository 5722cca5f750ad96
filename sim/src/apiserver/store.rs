//! The object store and every write's semantics: resourceVersion, uid, generation,
//! optimistic concurrency, status subresource, finalizers, garbage collection,
//! namespace lifecycle, watch history and fan-out. All of it runs under the server's
//! one lock, so each write is atomic and watchers see changes in resourceVersion order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::apply::{self, ListTypes};
use super::error::{ApiError, StatusCause};
use super::registry::{Conversion, Registry, ResourceInfo, StorageKey};
use super::selector::{FieldSelector, LabelSelector, field_supported};
use super::{
    Caller, DeleteOptions, ListQuery, ObjectList, Patch, Propagation, RequestCountKey, ResourceKey,
    ServerConfig, Subresource, Watch, WatchEvent, crd, events, meta, patch,
};

/// (namespace or "" for cluster-scoped, name): sorts lists as kubectl shows them.
type ObjectKey = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One entry of the watch history.
struct Change {
    rv: u64,
    storage: StorageKey,
    kind: ChangeKind,
    old: Option<Arc<Value>>,
    new: Arc<Value>,
}

pub(super) struct Watcher {
    pub id: u64,
    key: ResourceKey,
    storage: StorageKey,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    tx: UnboundedSender<WatchEvent>,
}

pub(super) struct State {
    pub registry: Registry,
    pub rv: u64,
    objects: BTreeMap<StorageKey, BTreeMap<ObjectKey, Arc<Value>>>,
    /// The resourceVersion of each storage's newest write: lets a reader that lists
    /// many kinds re-list only those that changed.
    storage_rv: BTreeMap<StorageKey, u64>,
    history: VecDeque<Change>,
    /// The newest resourceVersion dropped from the history; watching from an older rv
    /// (or this one's predecessors) is 410 Gone.
    compacted_rv: u64,
    history_limit: usize,
    pub watchers: Vec<Watcher>,
    next_watch_id: u64,
    pub counts: BTreeMap<RequestCountKey, u64>,
    seed: u64,
    uid_counter: u64,
    service_ips: u64,
}

const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];
const GC_MANAGER: &str = "generic-garbage-collector";

impl State {
    pub fn new(config: &ServerConfig, now: &str) -> Self {
        let mut state = State {
            registry: Registry::with_built_ins(),
            rv: 0,
            objects: BTreeMap::new(),
            storage_rv: BTreeMap::new(),
            history: VecDeque::new(),
            compacted_rv: 0,
            history_limit: config.history_limit.max(1),
            watchers: Vec::new(),
            next_watch_id: 1,
            counts: BTreeMap::new(),
            seed: config.seed,
            uid_counter: 0,
            service_ips: 0,
        };
        let key = ResourceKey::core("v1", "namespaces");
        let system = Caller {
            user_agent: "kube-apiserver",
        };
        for ns in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            // Creating a fresh namespace in an empty store cannot fail; ignore to keep
            // construction infallible.
            let _ = state.create(&key, None, obj, &system, "kube-apiserver", now);
        }
        // The system namespaces are not requests anyone made.
        state.counts.clear();
        state
    }

    fn count(&mut self, verb: &str, info: &ResourceInfo, sub: Option<&str>, who: &Caller) {
        let mut resource = info.qualified_resource();
        if let Some(sub) = sub {
            resource = format!("{resource}/{sub}");
        }
        let key = RequestCountKey {
            verb: verb.into(),
            resource,
            user_agent: who.user_agent.to_string(),
        };
        *self.counts.entry(key).or_insert(0) += 1;
    }

    fn info(&self, key: &ResourceKey) -> Result<Arc<ResourceInfo>, ApiError> {
        self.registry.get(key).cloned().ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({}/{})",
                    key.api_version(),
                    key.resource
                ),
            )
        })
    }

    /// The namespace an object of `info` lives in: required for namespaced kinds,
    /// "" for cluster-scoped ones.
    fn object_namespace(info: &ResourceInfo, ns: Option<&str>) -> Result<String, ApiError> {
        match (info.namespaced, ns) {
            (true, Some(ns)) if !ns.is_empty() => Ok(ns.to_string()),
            (true, _) => Err(ApiError::bad_request(format!(
                "a namespace is required for namespaced resource {}",
                info.qualified_resource()
            ))),
            (false, _) => Ok(String::new()),
        }
    }

    fn stored(&self, storage: &StorageKey, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects
            .get(storage)?
            .get(&(ns.to_string(), name.to_string()))
    }

    // ---- reads ------------------------------------------------------------------

    pub fn get(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        who: &Caller,
    ) -> Result<Value, ApiError> {
        let info = self.info(key)?;
        self.count("get", &info, None, who);
        let ns = Self::object_namespace(&info, ns)?;
        let stored = self
            .stored(&info.storage, &ns, name)
            .ok_or_else(|| ApiError::not_found(&info.key.group, &info.key.resource, name))?;
        Ok(present(&info, stored))
    }

    pub fn list(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        q: &ListQuery,
        who: &Caller,
    ) -> Result<ObjectList, ApiError> {
        let info = self.info(key)?;
        self.count("list", &info, None, who);
        let filter = Filter::new(&info, ns, q)?;
        let items = self
            .objects
            .get(&info.storage)
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((obj_ns, _), _)| {
                        filter.namespace.as_ref().is_none_or(|want| want == obj_ns)
                    })
                    .map(|(_, obj)| present(&info, obj))
                    .filter(|obj| filter.matches(obj))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ObjectList {
            items,
            resource_version: self.rv,
        })
    }

    pub fn watch(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        q: &ListQuery,
        from_rv: Option<u64>,
        who: &Caller,
    ) -> Result<Watch, ApiError> {
        let info = self.info(key)?;
        self.count("watch", &info, None, who);
        let filter = Filter::new(&info, ns, q)?;
        let (tx, rx) = unbounded_channel();
        match from_rv {
            None | Some(0) => {
                if let Some(objects) = self.objects.get(&info.storage) {
                    for ((obj_ns, _), obj) in objects {
                        if filter.namespace.as_ref().is_some_and(|want| want != obj_ns) {
                            continue;
                        }
                        let presented = present(&info, obj);
                        if filter.matches(&presented) {
                            let _ = tx.send(WatchEvent::Added(presented));
                        }
                    }
                }
            }
            Some(from) => {
                if from < self.compacted_rv {
                    return Err(ApiError::gone(from, self.compacted_rv));
                }
                for change in self
                    .history
                    .iter()
                    .filter(|c| c.rv > from && c.storage == info.storage)
                {
                    if let Some(event) = filter.event_for(&info, change) {
                        let _ = tx.send(event);
                    }
                }
            }
        }
        let id = self.next_watch_id;
        self.next_watch_id += 1;
        self.watchers.push(Watcher {
            id,
            key: info.key.clone(),
            storage: info.storage.clone(),
            namespace: filter.namespace,
            labels: filter.labels,
            fields: filter.fields,
            tx,
        });
        Ok(Watch { id, events: rx })
    }

    /// The resourceVersion of the newest write to `key`'s objects (0: never written).
    pub fn storage_version(&self, key: &ResourceKey) -> Result<u64, ApiError> {
        let info = self.info(key)?;
        Ok(self.storage_rv.get(&info.storage).copied().unwrap_or(0))
    }

    pub fn send_bookmark(&mut self, watch_id: u64) {
        let rv = self.rv;
        self.watchers
            .retain(|w| w.id != watch_id || w.tx.send(WatchEvent::Bookmark(rv)).is_ok());
    }

    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    // ---- the write path -----------------------------------------------------------

    fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        meta::make_uid(self.seed, self.uid_counter)
    }

    /// Stores `obj` with a new resourceVersion and tells the watchers.
    fn put(&mut self, storage: &StorageKey, mut obj: Value, old: Option<Arc<Value>>) -> Value {
        self.rv += 1;
        meta::set_meta(
            &mut obj,
            "resourceVersion",
            Value::String(self.rv.to_string()),
        );
        let key = (
            meta::namespace(&obj).to_string(),
            meta::name(&obj).to_string(),
        );
        let stored = Arc::new(obj);
        self.objects
            .entry(storage.clone())
            .or_default()
            .insert(key, stored.clone());
        let kind = if old.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.record(Change {
            rv: self.rv,
            storage: storage.clone(),
            kind,
            old,
            new: stored.clone(),
        });
        (*stored).clone()
    }

    /// Removes an object for good (no finalizers left), then garbage-collects.
    fn remove(&mut self, storage: &StorageKey, ns: &str, name: &str, now: &str) -> Option<Value> {
        self.remove_final(storage, ns, name, None, now)
    }

    /// `remove`, with the object's last state when a write (the last finalizer
    /// removed) is what deletes it: the DELETED event carries that state.
    fn remove_final(
        &mut self,
        storage: &StorageKey,
        ns: &str,
        name: &str,
        last: Option<Value>,
        now: &str,
    ) -> Option<Value> {
        let old = self
            .objects
            .get_mut(storage)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let mut last = last.unwrap_or_else(|| (*old).clone());
        meta::set_meta(
            &mut last,
            "resourceVersion",
            Value::String(self.rv.to_string()),
        );
        let last = Arc::new(last);
        self.record(Change {
            rv: self.rv,
            storage: storage.clone(),
            kind: ChangeKind::Deleted,
            old: Some(old),
            new: last.clone(),
        });
        let uid = meta::uid(&last).to_string();
        self.after_removal(storage, &last, &uid, now);
        Some((*last).clone())
    }

    fn record(&mut self, change: Change) {
        match self.storage_rv.get_mut(&change.storage) {
            Some(rv) => *rv = change.rv,
            None => {
                self.storage_rv.insert(change.storage.clone(), change.rv);
            }
        }
        let registry = &self.registry;
        self.watchers.retain(|w| {
            if w.storage != change.storage {
                return !w.tx.is_closed();
            }
            let Some(info) = registry.get(&w.key) else {
                return false;
            };
            let filter = Filter {
                namespace: w.namespace.clone(),
                labels: w.labels.clone(),
                fields: w.fields.clone(),
            };
            match filter.event_for(info, &change) {
                Some(event) => w.tx.send(event).is_ok(),
                None => !w.tx.is_closed(),
            }
        });
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
    }

    pub fn create(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
        who: &Caller,
        manager: &str,
        now: &str,
    ) -> Result<Value, ApiError> {
        let info = self.info(key)?;
        self.count("create", &info, None, who);
        self.create_object(&info, ns, obj, manager, now, false)
    }

    fn create_object(
        &mut self,
        info: &Arc<ResourceInfo>,
        ns: Option<&str>,
        obj: Value,
        manager: &str,
        now: &str,
        applied: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_type(info, &obj)?;
        let body_ns = meta::namespace(&obj).to_string();
        let ns = match (info.namespaced, ns, body_ns.is_empty()) {
            (true, Some(ns), false) if ns != body_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (true, None, false) => Some(body_ns.as_str()),
            (_, ns, _) => ns,
        };
        let ns = Self::object_namespace(info, ns)?;
        let mut obj = absorb(info, obj);
        if info.namespaced {
            self.check_namespace_open(&ns)?;
        }
        {
            let metadata = meta::metadata_mut(&mut obj);
            for field in [
                "uid",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                metadata.remove(field);
            }
            if info.namespaced {
                metadata.insert("namespace".into(), Value::String(ns.clone()));
            } else {
                metadata.remove("namespace");
            }
        }
        let mut name = meta::name(&obj).to_string();
        if name.is_empty() {
            let prefix = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &info.key.group,
                    &info.kind,
                    "",
                    vec![
                        StatusCause::required("metadata.name")
                            .with_message("name or generateName is required"),
                    ],
                ));
            }
            // Retry on the (unlikely) collision, as the real server's caller would.
            for attempt in 0..16u64 {
                let candidate = format!(
                    "{prefix}{}",
                    meta::name_suffix(meta::mix(self.seed ^ self.rv ^ (attempt << 48)))
                );
                if self.stored(&info.storage, &ns, &candidate).is_none() {
                    name = candidate;
                    break;
                }
            }
            meta::set_meta(&mut obj, "name", Value::String(name.clone()));
        }
        let label_only = matches!(info.kind.as_str(), "Namespace" | "Service") && !info.custom;
        meta::validate_name(&name, label_only)
            .map_err(|cause| ApiError::invalid(&info.key.group, &info.kind, &name, vec![cause]))?;
        if self.stored(&info.storage, &ns, &name).is_some() {
            return Err(ApiError::already_exists(
                &info.key.group,
                &info.key.resource,
                &name,
            ));
        }
        self.prepare_create(info, &mut obj);
        if info.custom {
            crd::validate_custom(info, &mut obj, None)?;
        }
        if info.storage.resource == "customresourcedefinitions" && !info.custom {
            crd::validate_definition(&obj)?;
            crd::mark_established(&mut obj);
        }
        let uid = self.next_uid();
        {
            let metadata = meta::metadata_mut(&mut obj);
            metadata.insert("uid".into(), Value::String(uid));
            metadata.insert("creationTimestamp".into(), Value::String(now.to_string()));
            metadata.insert("generation".into(), json!(1));
        }
        let list_types = list_types(info);
        if !applied {
            apply::record_update(
                None,
                &mut obj,
                manager,
                &info.api_version(),
                now,
                &list_types,
                None,
            );
        }
        let stored = self.put(&info.storage.clone(), obj, None);
        if info.storage.resource == "customresourcedefinitions" && !info.custom {
            self.register_crd(&stored);
        }
        Ok(present(info, &stored))
    }

    /// Per-kind defaults and status resets on create (what the real registries'
    /// PrepareForCreate and defaulting do that clients rely on).
    fn prepare_create(&mut self, info: &ResourceInfo, obj: &mut Value) {
        if (info.custom || (info.status_subresource && info.kind != "Node"))
            && let Value::Object(map) = obj
        {
            map.remove("status");
        }
        if info.custom {
            return;
        }
        match info.kind.as_str() {
            "Namespace" => {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
            }
            "Pod" => {
                obj["status"] = json!({"phase": "Pending"});
                let spec = &mut obj["spec"];
                default_field(spec, "restartPolicy", json!("Always"));
                default_field(spec, "dnsPolicy", json!("ClusterFirst"));
                default_field(spec, "schedulerName", json!("default-scheduler"));
                default_field(spec, "terminationGracePeriodSeconds", json!(30));
                default_field(spec, "serviceAccountName", json!("default"));
                for list in ["containers", "initContainers"] {
                    if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
                        for container in containers {
                            default_container(container);
                        }
                    }
                }
            }
            "Service" => {
                let spec = &mut obj["spec"];
                default_field(spec, "type", json!("ClusterIP"));
                default_field(spec, "sessionAffinity", json!("None"));
                let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
                if spec.get("clusterIP").is_none_or(Value::is_null) {
                    self.service_ips += 1;
                    let n = self.service_ips;
                    let ip = format!("10.96.{}.{}", (n / 254) % 256, n % 254 + 1);
                    spec["clusterIP"] = json!(ip);
                    spec["clusterIPs"] = json!([ip]);
                } else if !headless && spec.get("clusterIPs").is_none() {
                    let ip = spec["clusterIP"].clone();
                    spec["clusterIPs"] = json!([ip]);
                }
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports {
                        default_field(port, "protocol", json!("TCP"));
                        if port.get("targetPort").is_none() {
                            port["targetPort"] = port.get("port").cloned().unwrap_or(Value::Null);
                        }
                    }
                }
                obj["status"] = json!({"loadBalancer": {}});
            }
            "Deployment" | "StatefulSet" => {
                default_field(&mut obj["spec"], "replicas", json!(1));
                if info.kind == "StatefulSet" {
                    default_field(
                        &mut obj["spec"],
                        "podManagementPolicy",
                        json!("OrderedReady"),
                    );
                    default_field(
                        &mut obj["spec"],
                        "updateStrategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                    );
                }
            }
            "PersistentVolumeClaim" => {
                obj["status"] = json!({"phase": "Pending"});
            }
            _ => {}
        }
    }

    fn check_namespace_open(&self, ns: &str) -> Result<(), ApiError> {
        let storage = StorageKey {
            group: String::new(),
            resource: "namespaces".into(),
        };
        match self.stored(&storage, "", ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(obj) if meta::is_deleting(obj) => Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ))),
            Some(_) => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        obj: Value,
        sub: Subresource,
        who: &Caller,
        manager: &str,
        now: &str,
    ) -> Result<Value, ApiError> {
        let info = self.info(key)?;
        self.count("update", &info, sub_name(sub), who);
        self.update_object(&info, ns, obj, sub, manager, now, false)
    }

    /// The update pipeline shared by PUT and every patch.
    #[allow(clippy::too_many_arguments)]
    fn update_object(
        &mut self,
        info: &Arc<ResourceInfo>,
        ns: Option<&str>,
        obj: Value,
        sub: Subresource,
        manager: &str,
        now: &str,
        applied: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_type(info, &obj)?;
        let ns = Self::object_namespace(info, ns)?;
        let name = meta::name(&obj).to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(
                &info.key.group,
                &info.kind,
                "",
                vec![StatusCause::required("metadata.name")],
            ));
        }
        let body_ns = meta::namespace(&obj);
        if info.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old = self
            .stored(&info.storage, &ns, &name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.key.group, &info.key.resource, &name))?;
        if let Some(rv) = meta::resource_version(&obj)
            && Some(rv) != meta::resource_version(&old)
        {
            return Err(ApiError::stale(&info.key.group, &info.key.resource, &name));
        }
        let body_uid = meta::uid(&obj);
        if !body_uid.is_empty() && body_uid != meta::uid(&old) {
            return Err(ApiError::conflict(
                &info.key.group,
                &info.key.resource,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {body_uid}, UID in object meta: {}",
                    meta::uid(&old)
                ),
            ));
        }
        let incoming = absorb(info, obj);
        let mut new = match sub {
            Subresource::Status => {
                // /status changes only the status.
                let mut new = (*old).clone();
                if applied && let Some(fields) = incoming.pointer("/metadata/managedFields") {
                    meta::set_meta(&mut new, "managedFields", fields.clone());
                }
                match incoming.get("status") {
                    Some(status) => new["status"] = status.clone(),
                    None => {
                        if let Value::Object(map) = &mut new {
                            map.remove("status");
                        }
                    }
                }
                new
            }
            Subresource::Main => {
                let mut new = incoming;
                if info.status_subresource {
                    match old.get("status") {
                        Some(status) => new["status"] = status.clone(),
                        None => {
                            if let Value::Object(map) = &mut new {
                                map.remove("status");
                            }
                        }
                    }
                }
                // Fields the server owns.
                let old_meta = old.get("metadata").cloned().unwrap_or(Value::Null);
                let metadata = meta::metadata_mut(&mut new);
                let owned: &[&str] = if applied {
                    &[
                        "uid",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                        "generation",
                        "namespace",
                    ]
                } else {
                    &[
                        "uid",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                        "generation",
                        "namespace",
                        "managedFields",
                    ]
                };
                for &field in owned {
                    match old_meta.get(field) {
                        Some(v) => metadata.insert(field.into(), v.clone()),
                        None => metadata.remove(field),
                    };
                }
                new
            }
        };
        if meta::is_deleting(&old) {
            // A terminating object may lose finalizers but gain none.
            let before: BTreeSet<String> = meta::finalizers(&old).into_iter().collect();
            let added: Vec<String> = meta::finalizers(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is being deleted: no new finalizers can be added ({})",
                    info.qualified_resource(),
                    added.join(", ")
                )));
            }
        }
        if info.custom {
            crd::validate_custom(info, &mut new, Some(&old))?;
        }
        if info.storage.resource == "customresourcedefinitions"
            && !info.custom
            && sub == Subresource::Main
        {
            crd::validate_definition(&new)?;
            crd::mark_established(&mut new);
        }
        if meta::spec_part(&new) != meta::spec_part(&old) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            meta::set_meta(&mut new, "generation", json!(generation));
        }
        let list_types = list_types(info);
        if !applied {
            apply::record_update(
                Some(&old),
                &mut new,
                manager,
                &info.api_version(),
                now,
                &list_types,
                sub_name(sub),
            );
        }
        if meta::without_bookkeeping(&new) == meta::without_bookkeeping(&old)
            && new.pointer("/metadata/managedFields") == old.pointer("/metadata/managedFields")
        {
            // No-op writes do not bump the resourceVersion (nor wake watchers).
            return Ok(present(info, &old));
        }
        if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() {
            let removed = self
                .remove_final(&info.storage.clone(), &ns, &name, Some(new), now)
                .unwrap_or_default();
            return Ok(present(info, &removed));
        }
        let stored = self.put(&info.storage.clone(), new, Some(old));
        if info.storage.resource == "customresourcedefinitions" && !info.custom {
            self.register_crd(&stored);
        }
        Ok(present(info, &stored))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        patch: Patch,
        sub: Subresource,
        who: &Caller,
        manager: &str,
        now: &str,
    ) -> Result<Value, ApiError> {
        let info = self.info(key)?;
        self.count("patch", &info, sub_name(sub), who);
        let obj_ns = Self::object_namespace(&info, ns)?;
        let existing = self
            .stored(&info.storage, &obj_ns, name)
            .map(|obj| present(&info, obj));
        match patch {
            Patch::Apply {
                field_manager,
                force,
                object,
            } => {
                if field_manager.is_empty() {
                    return Err(ApiError::bad_request(
                        "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
                    ));
                }
                check_type(&info, &object)?;
                let applied_name = meta::name(&object);
                if applied_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({applied_name}) does not match the name on the URL ({name})"
                    )));
                }
                let list_types = list_types(&info);
                let ignore_status = info.status_subresource && sub == Subresource::Main;
                let api_version = info.api_version();
                let merged = apply::apply(
                    existing.as_ref(),
                    &object,
                    &field_manager,
                    force,
                    &list_types,
                    ignore_status,
                    &api_version,
                    now,
                    sub_name(sub),
                )?;
                match existing {
                    None => self.create_object(&info, ns, merged, manager, now, true),
                    Some(_) => self.update_object(&info, ns, merged, sub, manager, now, true),
                }
            }
            other => {
                let mut target = existing.ok_or_else(|| {
                    ApiError::not_found(&info.key.group, &info.key.resource, name)
                })?;
                let live_rv = meta::resource_version(&target).map(str::to_string);
                match &other {
                    Patch::Merge(p) => patch::merge_patch(&mut target, p)?,
                    Patch::Json(p) => patch::json_patch(&mut target, p)?,
                    Patch::StrategicMerge(p) => {
                        if info.custom {
                            return Err(ApiError::unsupported_media_type(
                                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                            ));
                        }
                        patch::strategic_merge_patch(&mut target, p)?
                    }
                    Patch::Apply { .. } => {}
                }
                if meta::name(&target) != name {
                    return Err(ApiError::bad_request("a patch cannot change metadata.name"));
                }
                // A patch that sets no resourceVersion applies to the live object.
                if meta::resource_version(&target).is_none()
                    && let Some(rv) = live_rv
                {
                    meta::set_meta(&mut target, "resourceVersion", Value::String(rv));
                }
                self.update_object(&info, ns, target, sub, manager, now, false)
            }
        }
    }

    pub fn delete(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        who: &Caller,
        now: &str,
    ) -> Result<(Value, bool), ApiError> {
        let info = self.info(key)?;
        self.count("delete", &info, None, who);
        let ns = Self::object_namespace(&info, ns)?;
        let (obj, gone) = self
            .delete_object(&info.storage, &ns, name, opts, now)
            .ok_or_else(|| ApiError::not_found(&info.key.group, &info.key.resource, name))??;
        Ok((present(&info, &obj), gone))
    }

    pub fn delete_collection(
        &mut self,
        key: &ResourceKey,
        ns: Option<&str>,
        q: &ListQuery,
        who: &Caller,
        now: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let info = self.info(key)?;
        self.count("deletecollection", &info, None, who);
        let filter = Filter::new(&info, ns, q)?;
        let targets: Vec<ObjectKey> = self
            .objects
            .get(&info.storage)
            .map(|objects| {
                objects
                    .iter()
                    .filter(|((obj_ns, _), obj)| {
                        filter.namespace.as_ref().is_none_or(|w| w == obj_ns)
                            && filter.matches(&present(&info, obj))
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut deleted = Vec::new();
        for (obj_ns, name) in targets {
            if let Some(Ok((obj, _))) = self.delete_object(
                &info.storage,
                &obj_ns,
                &name,
                &DeleteOptions::default(),
                now,
            ) {
                deleted.push(present(&info, &obj));
            }
        }
        Ok(deleted)
    }

    /// None: not found. Some(Ok((object, gone))).
    fn delete_object(
        &mut self,
        storage: &StorageKey,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
        now: &str,
    ) -> Option<Result<(Value, bool), ApiError>> {
        let old = self.stored(storage, ns, name)?.clone();
        let group = &storage.group;
        if let Some(uid) = &opts.uid
            && uid != meta::uid(&old)
        {
            return Some(Err(ApiError::conflict(
                group,
                &storage.resource,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&old)
                ),
            )));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv.as_str()) != meta::resource_version(&old)
        {
            return Some(Err(ApiError::stale(group, &storage.resource, name)));
        }
        let is_namespace = storage.group.is_empty() && storage.resource == "namespaces";
        let mut finalizers = meta::finalizers(&old);
        match opts.propagation {
            Propagation::Orphan => self.orphan_dependents(meta::uid(&old), now),
            Propagation::Foreground
                if !meta::is_deleting(&old) && self.has_dependents(meta::uid(&old)) =>
            {
                finalizers.push("foregroundDeletion".into());
            }
            _ => {}
        }
        if finalizers.is_empty() && !is_namespace {
            let removed = self.remove(storage, ns, name, now)?;
            return Some(Ok((removed, true)));
        }
        if meta::is_deleting(&old) && !is_namespace {
            return Some(Ok(((*old).clone(), false)));
        }
        let mut new = (*old).clone();
        {
            let metadata = meta::metadata_mut(&mut new);
            metadata.insert("deletionTimestamp".into(), Value::String(now.to_string()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            metadata.insert("finalizers".into(), json!(finalizers));
            let generation = metadata
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            metadata.insert("generation".into(), json!(generation));
        }
        if is_namespace {
            if meta::is_deleting(&old) {
                return Some(Ok(((*old).clone(), false)));
            }
            new["status"] = json!({"phase": "Terminating"});
            self.put(storage, new, Some(old));
            self.empty_namespace(name, now);
            return Some(Ok(self.finish_namespace(name, now)));
        }
        let stored = self.put(storage, new, Some(old.clone()));
        if opts.propagation == Propagation::Foreground {
            self.delete_dependents(meta::uid(&old), now);
            self.finish_foreground(storage, ns, name, now);
            return match self.stored(storage, ns, name) {
                Some(obj) => Some(Ok(((**obj).clone(), false))),
                None => Some(Ok((stored, true))),
            };
        }
        Some(Ok((stored, false)))
    }

    // ---- garbage collection and namespace lifecycle -------------------------------

    /// Every stored object, in deterministic order, whose ownerReferences name `uid`.
    fn dependents_of(&self, uid: &str) -> Vec<(StorageKey, ObjectKey)> {
        if uid.is_empty() {
            return Vec::new();
        }
        let mut found = Vec::new();
        for (storage, objects) in &self.objects {
            for (key, obj) in objects {
                let owned = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                    });
                if owned {
                    found.push((storage.clone(), key.clone()));
                }
            }
        }
        found
    }

    fn has_dependents(&self, uid: &str) -> bool {
        !self.dependents_of(uid).is_empty()
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.objects
            .values()
            .any(|objects| objects.values().any(|obj| meta::uid(obj) == uid))
    }

    /// Called after an object is gone: background-cascade to its dependents, finish a
    /// foreground owner or a terminating namespace waiting for it, unregister a CRD.
    fn after_removal(&mut self, storage: &StorageKey, removed: &Value, uid: &str, now: &str) {
        if storage.group == "apiextensions.k8s.io"
            && storage.resource == "customresourcedefinitions"
        {
            self.unregister_crd(removed, now);
        }
        self.delete_dependents(uid, now);
        // Owners in foreground deletion that were waiting for this object.
        if let Some(refs) = removed
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
        {
            for owner_ref in refs {
                let Some(owner_uid) = owner_ref.get("uid").and_then(Value::as_str) else {
                    continue;
                };
                if let Some((owner_storage, (owner_ns, owner_name))) = self.find_by_uid(owner_uid) {
                    self.finish_foreground(&owner_storage, &owner_ns, &owner_name, now);
                }
            }
        }
        let ns = meta::namespace(removed).to_string();
        if !ns.is_empty() {
            let ns_storage = StorageKey {
                group: String::new(),
                resource: "namespaces".into(),
            };
            if self
                .stored(&ns_storage, "", &ns)
                .is_some_and(|n| meta::is_deleting(n))
            {
                self.finish_namespace(&ns, now);
            }
        }
    }

    fn find_by_uid(&self, uid: &str) -> Option<(StorageKey, ObjectKey)> {
        for (storage, objects) in &self.objects {
            for (key, obj) in objects {
                if meta::uid(obj) == uid {
                    return Some((storage.clone(), key.clone()));
                }
            }
        }
        None
    }

    /// Background cascade: a dependent whose owners are all gone is deleted; one with
    /// a surviving owner only loses the dangling reference.
    fn delete_dependents(&mut self, uid: &str, now: &str) {
        for (storage, (ns, name)) in self.dependents_of(uid) {
            let Some(obj) = self.stored(&storage, &ns, &name).cloned() else {
                continue;
            };
            let refs = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let surviving: Vec<Value> = refs
                .iter()
                .filter(|r| {
                    let other = r.get("uid").and_then(Value::as_str).unwrap_or_default();
                    other != uid && self.uid_exists(other)
                })
                .cloned()
                .collect();
            if surviving.is_empty() {
                let _ = self.delete_object(&storage, &ns, &name, &DeleteOptions::default(), now);
            } else {
                let mut new = (*obj).clone();
                meta::set_meta(&mut new, "ownerReferences", Value::Array(surviving));
                apply::record_update(
                    Some(&obj),
                    &mut new,
                    GC_MANAGER,
                    obj["apiVersion"].as_str().unwrap_or_default(),
                    now,
                    &ListTypes::BuiltIn,
                    None,
                );
                self.put(&storage, new, Some(obj));
            }
        }
    }

    fn orphan_dependents(&mut self, uid: &str, now: &str) {
        for (storage, (ns, name)) in self.dependents_of(uid) {
            let Some(obj) = self.stored(&storage, &ns, &name).cloned() else {
                continue;
            };
            let mut new = (*obj).clone();
            let refs: Vec<Value> = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .map(|refs| {
                    refs.iter()
                        .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if refs.is_empty() {
                meta::metadata_mut(&mut new).remove("ownerReferences");
            } else {
                meta::set_meta(&mut new, "ownerReferences", Value::Array(refs));
            }
            apply::record_update(
                Some(&obj),
                &mut new,
                GC_MANAGER,
                obj["apiVersion"].as_str().unwrap_or_default(),
                now,
                &ListTypes::BuiltIn,
                None,
            );
            self.put(&storage, new, Some(obj));
        }
    }

    /// Removes the `foregroundDeletion` finalizer once no dependents remain.
    fn finish_foreground(&mut self, storage: &StorageKey, ns: &str, name: &str, now: &str) {
        let Some(obj) = self.stored(storage, ns, name).cloned() else {
            return;
        };
        let finalizers = meta::finalizers(&obj);
        if !meta::is_deleting(&obj) || !finalizers.iter().any(|f| f == "foregroundDeletion") {
            return;
        }
        if self.has_dependents(meta::uid(&obj)) {
            return;
        }
        let rest: Vec<String> = finalizers
            .into_iter()
            .filter(|f| f != "foregroundDeletion")
            .collect();
        if rest.is_empty() {
            self.remove(storage, ns, name, now);
        } else {
            let mut new = (*obj).clone();
            meta::set_meta(&mut new, "finalizers", json!(rest));
            self.put(storage, new, Some(obj));
        }
    }

    /// Deletes every namespaced object in a terminating namespace (in storage, then
    /// name order).
    fn empty_namespace(&mut self, ns: &str, now: &str) {
        let namespaced: BTreeSet<StorageKey> = self
            .registry
            .all()
            .filter(|info| info.namespaced)
            .map(|info| info.storage.clone())
            .collect();
        for storage in namespaced {
            let names: Vec<String> = self
                .objects
                .get(&storage)
                .map(|objects| {
                    objects
                        .keys()
                        .filter(|(o_ns, _)| o_ns == ns)
                        .map(|(_, n)| n.clone())
                        .collect()
                })
                .unwrap_or_default();
            for name in names {
                let _ = self.delete_object(&storage, ns, &name, &DeleteOptions::default(), now);
            }
        }
    }

    /// Removes a terminating namespace once it holds nothing.
    fn finish_namespace(&mut self, ns: &str, now: &str) -> (Value, bool) {
        let ns_storage = StorageKey {
            group: String::new(),
            resource: "namespaces".into(),
        };
        let Some(obj) = self.stored(&ns_storage, "", ns).cloned() else {
            return (Value::Null, true);
        };
        let occupied = self.objects.iter().any(|(storage, objects)| {
            storage != &ns_storage && objects.keys().any(|(o_ns, _)| o_ns == ns)
        });
        if occupied || !meta::finalizers(&obj).is_empty() {
            return ((*obj).clone(), false);
        }
        match self.remove(&ns_storage, "", ns, now) {
            Some(removed) => (removed, true),
            None => ((*obj).clone(), false),
        }
    }

    // ---- CRDs ---------------------------------------------------------------------

    fn register_crd(&mut self, crd_obj: &Value) {
        let infos = crd::resources_for(crd_obj);
        if let Some(first) = infos.first() {
            let storage = first.storage.clone();
            self.registry.remove_storage(&storage);
        }
        for info in infos {
            self.registry.insert(info);
        }
    }

    fn unregister_crd(&mut self, crd_obj: &Value, now: &str) {
        let infos = crd::resources_for(crd_obj);
        let Some(first) = infos.first() else { return };
        let storage = first.storage.clone();
        let keys: Vec<ObjectKey> = self
            .objects
            .get(&storage)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, name) in keys {
            self.remove(&storage, &ns, &name, now);
        }
        self.objects.remove(&storage);
        self.registry.remove_storage(&storage);
        let registry = &self.registry;
        self.watchers.retain(|w| registry.get(&w.key).is_some());
    }
}

/// Namespace and selectors of a list or watch.
struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn new(info: &ResourceInfo, ns: Option<&str>, q: &ListQuery) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(q.label_selector.as_deref().unwrap_or_default())?;
        let supported = |field: &str| {
            field_supported(&info.key.group, &info.kind, field)
                || (info.custom && field.starts_with("metadata."))
        };
        let fields = FieldSelector::parse(
            q.field_selector.as_deref().unwrap_or_default(),
            &info.kind,
            &supported,
        )?;
        let namespace = if info.namespaced {
            ns.filter(|n| !n.is_empty()).map(str::to_string)
        } else {
            None
        };
        Ok(Filter {
            namespace,
            labels,
            fields,
        })
    }

    /// Matches a presented object (namespace included).
    fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| ns == meta::namespace(obj))
            && self.labels.matches_object(obj)
            && self.fields.matches(obj)
    }

    /// What a watcher with this filter sees of a change: an object entering the
    /// selection is ADDED, leaving it is DELETED (as the real watch cache does).
    fn event_for(&self, info: &ResourceInfo, change: &Change) -> Option<WatchEvent> {
        // Cheap namespace pre-check before presenting the object.
        if let Some(ns) = &self.namespace
            && ns != meta::namespace(&change.new)
        {
            return None;
        }
        let new = present(info, &change.new);
        let new_match = self.matches(&new);
        match change.kind {
            ChangeKind::Added => new_match.then_some(WatchEvent::Added(new)),
            ChangeKind::Deleted => {
                let old_match = change
                    .old
                    .as_ref()
                    .is_none_or(|old| self.matches(&present(info, old)));
                (old_match || new_match).then_some(WatchEvent::Deleted(new))
            }
            ChangeKind::Modified => {
                // Without selectors the old object matched too (same namespace): skip
                // converting it.
                let old_match = change.old.as_ref().is_some_and(|old| {
                    (self.labels.is_empty() && self.fields.is_empty())
                        || self.matches(&present(info, old))
                });
                match (old_match, new_match) {
                    (true, true) => Some(WatchEvent::Modified(new)),
                    (false, true) => Some(WatchEvent::Added(new)),
                    (true, false) => Some(WatchEvent::Deleted(new)),
                    (false, false) => None,
                }
            }
        }
    }
}

/// The stored object as the served version shows it.
fn present(info: &ResourceInfo, stored: &Value) -> Value {
    match info.conversion {
        Conversion::EventsV1 => events::from_core(stored.clone()),
        Conversion::None => {
            let mut obj = stored.clone();
            if info.custom
                && let Value::Object(map) = &mut obj
            {
                map.insert("apiVersion".into(), Value::String(info.api_version()));
            }
            obj
        }
    }
}

/// An incoming object in its stored form.
fn absorb(info: &ResourceInfo, obj: Value) -> Value {
    let mut obj = match info.conversion {
        Conversion::EventsV1 => events::to_core(obj),
        Conversion::None => obj,
    };
    if let Value::Object(map) = &mut obj {
        if info.conversion == Conversion::None {
            map.insert("apiVersion".into(), Value::String(info.api_version()));
        }
        map.insert("kind".into(), Value::String(info.kind.clone()));
    }
    if !info.custom && info.kind == "Secret" {
        meta::fold_string_data(&mut obj);
    }
    obj
}

/// apiVersion/kind in the body, when given, must name this resource.
fn check_type(info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != info.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the resource {} (kind {})",
            info.qualified_resource(),
            info.kind
        )));
    }
    if let Some(api_version) = obj.get("apiVersion").and_then(Value::as_str)
        && !api_version.is_empty()
        && api_version != info.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            info.api_version()
        )));
    }
    Ok(())
}

fn list_types(info: &ResourceInfo) -> ListTypes<'_> {
    match &info.schema {
        Some(schema) if info.custom => ListTypes::Schema(schema.schema()),
        _ => ListTypes::BuiltIn,
    }
}

fn sub_name(sub: Subresource) -> Option<&'static str> {
    match sub {
        Subresource::Main => None,
        Subresource::Status => Some("status"),
    }
}

/// The default field manager: the user agent up to its first '/', as Kubernetes does.
pub fn manager_name(user_agent: &str) -> String {
    let name = user_agent.split('/').next().unwrap_or_default();
    let name: String = name.chars().take(128).collect();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

fn default_field(obj: &mut Value, field: &str, value: Value) {
    if !obj.is_object() {
        *obj = json!({});
    }
    if obj.get(field).is_none_or(Value::is_null) {
        obj[field] = value;
    }
}

fn default_container(container: &mut Value) {
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let tag = image
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once(':'))
        .map(|(_, t)| t.to_string());
    let pull = match tag.as_deref() {
        None | Some("latest") => "Always",
        Some(_) => "IfNotPresent",
    };
    default_field(container, "imagePullPolicy", json!(pull));
    default_field(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    default_field(container, "terminationMessagePolicy", json!("File"));
    if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            default_field(port, "protocol", json!("TCP"));
        }
    }
}

impl StatusCause {
    fn with_message(mut self, message: &str) -> Self {
        self.message = message.to_string();
        self
    }
}
