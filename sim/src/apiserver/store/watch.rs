//! Watch history and fan-out: every stored change is offered to each watcher through
//! its filter (namespace, label and field selectors) and kept in a bounded history
//! that a watch from an older resourceVersion replays (410 Gone once compacted away).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::{State, present};
use crate::apiserver::error::ApiError;
use crate::apiserver::registry::{ResourceInfo, StorageKey};
use crate::apiserver::selector::{FieldSelector, LabelSelector, field_supported};
use crate::apiserver::{Caller, ListQuery, ResourceKey, Watch, WatchEvent, meta};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One entry of the watch history.
pub(super) struct Change {
    pub(super) rv: u64,
    pub(super) storage: StorageKey,
    pub(super) kind: ChangeKind,
    pub(super) old: Option<Arc<Value>>,
    pub(super) new: Arc<Value>,
}

pub(in crate::apiserver) struct Watcher {
    pub(in crate::apiserver) id: u64,
    pub(super) key: ResourceKey,
    storage: StorageKey,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    tx: UnboundedSender<WatchEvent>,
}

impl State {
    pub(in crate::apiserver) fn watch(
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

    pub(in crate::apiserver) fn send_bookmark(&mut self, watch_id: u64) {
        let rv = self.rv;
        self.watchers
            .retain(|w| w.id != watch_id || w.tx.send(WatchEvent::Bookmark(rv)).is_ok());
    }

    pub(in crate::apiserver) fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    pub(super) fn record(&mut self, change: Change) {
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
}

/// Namespace and selectors of a list or watch.
pub(super) struct Filter {
    pub(super) namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub(super) fn new(
        info: &ResourceInfo,
        ns: Option<&str>,
        q: &ListQuery,
    ) -> Result<Self, ApiError> {
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
    pub(super) fn matches(&self, obj: &Value) -> bool {
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
