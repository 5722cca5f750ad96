//! Observe for pruning: the children of the prunable kinds that the caches hold in one
//! namespace, with their uid and controller owner. `children::prune::unwanted` decides
//! which of them the spec no longer asks for.

use kube::Resource;
use kube::core::ApiResource;
use kube::runtime::reflector::Store;

use super::indexes::Indexes;
use crate::children::prune::ExistingChild;

fn existing<K>(store: &Store<K>, namespace: &str) -> Vec<ExistingChild>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    store
        .state()
        .iter()
        .filter(|object| object.meta().namespace.as_deref() == Some(namespace))
        .map(|object| {
            let meta = object.meta();
            ExistingChild {
                resource: resource.clone(),
                namespace: namespace.to_string(),
                name: meta.name.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
                controller_uid: meta
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|owner| owner.controller == Some(true))
                    .map(|owner| owner.uid.clone()),
            }
        })
        .collect()
}

/// Every cached StatefulSet, Service, PodDisruptionBudget, DNSEndpoint and CronJob in
/// `namespace` (the caches only hold objects labelled managed-by=bloodraven).
pub(crate) fn existing_children(indexes: &Indexes, namespace: &str) -> Vec<ExistingChild> {
    let mut out = existing(&indexes.statefulsets, namespace);
    out.extend(existing(&indexes.services, namespace));
    out.extend(existing(&indexes.pdbs, namespace));
    out.extend(existing(&indexes.dns_endpoints, namespace));
    out.extend(existing(&indexes.cronjobs, namespace));
    out
}
