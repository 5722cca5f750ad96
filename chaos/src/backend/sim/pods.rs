//! Pod lookups the sim backend's faults and its counter both need: which model a pod
//! runs (by container image), a container's environment with Secret references
//! resolved, and a Service's first port.

use std::collections::BTreeMap;

use bloodraven_sim::images::normalize_repository;
use bloodraven_sim::models::{DRAGONFLY_IMAGE, MYSQL_IMAGE};
use k8s_openapi::api::core::v1::{Container, Pod, Secret, Service};
use kube::api::Api;

use crate::scenario::Component;

/// The model image a component runs.
fn image_of(component: Component) -> &'static str {
    match component {
        Component::Mysql => MYSQL_IMAGE,
        Component::Dragonfly => DRAGONFLY_IMAGE,
    }
}

/// The pod's first container running the component's model (by its image).
pub(super) fn container_of(pod: &Pod, component: Component) -> Option<&Container> {
    let image = image_of(component);
    pod.spec.as_ref()?.containers.iter().find(|c| {
        c.image
            .as_deref()
            .is_some_and(|i| normalize_repository(i) == image)
    })
}

/// Whether a pod runs the component's model.
pub(super) fn runs(pod: &Pod, component: Component) -> bool {
    container_of(pod, component).is_some()
}

/// A Secret a container's environment refers to could not be read.
#[derive(Debug, thiserror::Error)]
#[error("get secret {secret}: {source}")]
pub(super) struct SecretLookupError {
    secret: String,
    #[source]
    source: kube::Error,
}

/// A container's environment, with `valueFrom.secretKeyRef` resolved (other
/// `valueFrom` sources are left out: the models' pods use none).
pub(super) async fn container_env(
    client: &kube::Client,
    namespace: &str,
    container: &Container,
) -> Result<BTreeMap<String, String>, SecretLookupError> {
    let mut out = BTreeMap::new();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for var in container.env.iter().flatten() {
        if let Some(v) = &var.value {
            out.insert(var.name.clone(), v.clone());
        } else if let Some(r) = var
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
        {
            let secret = secrets
                .get(&r.name)
                .await
                .map_err(|source| SecretLookupError {
                    secret: format!("{namespace}/{}", r.name),
                    source,
                })?;
            if let Some(value) = secret_value(&secret, &r.key) {
                out.insert(var.name.clone(), value);
            }
        }
    }
    Ok(out)
}

/// A Secret's value under `key`, from `data` or (as the simulated API server stores a
/// Secret created with it) `stringData`.
fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    from_data.or_else(|| secret.string_data.as_ref()?.get(key).cloned())
}

/// A Service's first port.
pub(super) fn service_port(service: &Service) -> Option<u16> {
    service
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .first()
        .and_then(|p| u16::try_from(p.port).ok())
}
