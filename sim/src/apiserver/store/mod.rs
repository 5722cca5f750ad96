//! The object store: the `State` behind the server's one lock, its reads and the
//! storage primitives every write goes through (resourceVersion, put, remove, CRD
//! registration). All of it runs under that lock, so each write is atomic and watchers
//! see changes in resourceVersion order. The seams live in the children: `write` (the
//! create/update/patch/delete pipelines), `watch` (history and fan-out), `gc` (owner
//! references and cascading deletion), `namespaces` (namespace lifecycle) and
//! `defaults` (what the real registries default on create).

mod defaults;
mod gc;
mod namespaces;
mod watch;
mod write;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use super::apply::ListTypes;
use super::error::ApiError;
use super::registry::{Conversion, Registry, ResourceInfo, StorageKey};
use super::{
    Caller, ListQuery, ObjectList, RequestCountKey, ResourceKey, ServerConfig, Subresource, crd,
    events, meta,
};
use watch::{Change, ChangeKind, Filter, Watcher};

/// (namespace or "" for cluster-scoped, name): sorts lists as kubectl shows them.
type ObjectKey = (String, String);

pub(super) struct State {
    pub(super) registry: Registry,
    pub(super) rv: u64,
    objects: BTreeMap<StorageKey, BTreeMap<ObjectKey, Arc<Value>>>,
    /// The resourceVersion of each storage's newest write: lets a reader that lists
    /// many kinds re-list only those that changed.
    storage_rv: BTreeMap<StorageKey, u64>,
    history: VecDeque<Change>,
    /// The newest resourceVersion dropped from the history; watching from an older rv
    /// (or this one's predecessors) is 410 Gone.
    compacted_rv: u64,
    history_limit: usize,
    pub(super) watchers: Vec<Watcher>,
    next_watch_id: u64,
    pub(super) counts: BTreeMap<RequestCountKey, u64>,
    seed: u64,
    uid_counter: u64,
    service_ips: u64,
}

impl State {
    pub(super) fn new(config: &ServerConfig, now: &str) -> Self {
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
        state.create_system_namespaces(now);
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

    pub(super) fn get(
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

    pub(super) fn list(
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

    /// The resourceVersion of the newest write to `key`'s objects (0: never written).
    pub(super) fn storage_version(&self, key: &ResourceKey) -> Result<u64, ApiError> {
        let info = self.info(key)?;
        Ok(self.storage_rv.get(&info.storage).copied().unwrap_or(0))
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

/// A write's body must be a JSON object, and its apiVersion/kind, when given, must name
/// this resource.
fn check_type(info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
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
pub(super) fn manager_name(user_agent: &str) -> String {
    let name = user_agent.split('/').next().unwrap_or_default();
    let name: String = name.chars().take(128).collect();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}
