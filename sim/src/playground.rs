//! The playground in the simulation: the CRDs, the operator Deployment on the
//! control-plane node (running the real controller through the Bloodraven image), and
//! `examples/playground.yaml`. Tests, benchmarks and `make playground-sim` start here.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::apiserver::{ApiError, ApiServer, Caller, ResourceKey};
use crate::bloodraven_image::BLOODRAVEN_IMAGE;
use crate::world::World;

/// Namespace of the operator Deployment.
pub const OPERATOR_NAMESPACE: &str = bloodraven::deploy::OPERATOR_NAMESPACE;
pub const OPERATOR_NAME: &str = "bloodraven-operator";
/// Namespace and name of the playground group in `examples/playground.yaml`.
pub const PLAYGROUND_NAMESPACE: &str = "bloodraven-playground";
pub const PLAYGROUND_GROUP: &str = "playground";

/// The API server's key for MysqlFailoverGroups.
pub fn groups_key() -> ResourceKey {
    ResourceKey::new(
        "bloodraven.shipstream.io",
        "v1alpha1",
        "mysqlfailovergroups",
    )
}

/// The playground group's status as the API server holds it now (`null` while the
/// group or its status does not exist).
pub fn playground_status(world: &World) -> Value {
    world
        .api()
        .get(&groups_key(), Some(PLAYGROUND_NAMESPACE), PLAYGROUND_GROUP)
        .ok()
        .and_then(|g| g.get("status").cloned())
        .unwrap_or(Value::Null)
}

const INSTALLER: Caller<'static> = Caller {
    user_agent: "bloodraven-playground-installer",
};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("installing {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: ApiError,
    },
    #[error("serializing CRD {name}: {source}")]
    Crd {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: document {index}: {message}")]
    Manifest {
        path: PathBuf,
        index: usize,
        message: String,
    },
}

fn create(
    api: &ApiServer,
    key: &ResourceKey,
    ns: Option<&str>,
    obj: Value,
) -> Result<(), InstallError> {
    let what = format!(
        "{} {}",
        obj.get("kind").and_then(Value::as_str).unwrap_or_default(),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    );
    match api.create(key, ns, obj, &INSTALLER) {
        Ok(_) => Ok(()),
        Err(source) => Err(InstallError::Api { what, source }),
    }
}

/// The operator Deployment in `namespace`: one replica of `bloodraven operator` on the
/// control plane.
pub fn operator_deployment(image_tag: &str, namespace: &str) -> Value {
    use bloodraven::deploy::{METRICS_PORT, METRICS_PORT_NAME, OPERATOR_APP_NAME};
    let image = format!("{BLOODRAVEN_IMAGE}:{image_tag}");
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": OPERATOR_NAME, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": OPERATOR_APP_NAME}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": OPERATOR_APP_NAME}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": OPERATOR_APP_NAME}},
                "spec": {
                    "nodeSelector": {"node-role.kubernetes.io/control-plane": "true"},
                    "tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                     "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{
                        "name": "operator",
                        "image": image,
                        "args": ["operator", format!("--sidecar-image={image}")],
                        "ports": [{"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT}]
                    }]
                }
            }
        }
    })
}

/// Installs the CRDs, the operator's namespace and its Deployment (no RBAC: the
/// simulated API server does not enforce it).
pub fn install(world: &World) -> Result<(), InstallError> {
    install_crds(world)?;
    install_operator(world)
}

/// Installs the Bloodraven CRDs only.
pub fn install_crds(world: &World) -> Result<(), InstallError> {
    let api = world.api();
    let crd_key = ResourceKey::new("apiextensions.k8s.io", "v1", "customresourcedefinitions");
    for crd in bloodraven::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let value =
            serde_json::to_value(&crd).map_err(|source| InstallError::Crd { name, source })?;
        create(api, &crd_key, None, value)?;
    }
    Ok(())
}

/// Installs the operator's namespace and Deployment (the CRDs must be there already).
pub fn install_operator(world: &World) -> Result<(), InstallError> {
    install_operator_in(world, OPERATOR_NAMESPACE)
}

/// Installs the operator's Deployment into `namespace`, creating the namespace unless a
/// manifest already did (the playground's operator shares `bloodraven-playground` with
/// its group, where the guide's `kubectl logs -l ...` looks for it).
pub fn install_operator_in(world: &World, namespace: &str) -> Result<(), InstallError> {
    let api = world.api();
    let namespaces = ResourceKey::core("v1", "namespaces");
    if api.get(&namespaces, None, namespace).is_err() {
        create(
            api,
            &namespaces,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )?;
    }
    create(
        api,
        &ResourceKey::new("apps", "v1", "deployments"),
        Some(namespace),
        operator_deployment("dev", namespace),
    )?;
    create(
        api,
        &ResourceKey::core("v1", "services"),
        Some(namespace),
        operator_service(namespace),
    )
}

/// The operator's Service: its metrics port, which also serves the dashboard's state
/// feed (`/ws/state`). Any replica answers the feed (it only reads), so no leader
/// selection is needed.
pub fn operator_service(namespace: &str) -> Value {
    use bloodraven::deploy::{METRICS_PORT, METRICS_PORT_NAME, OPERATOR_APP_NAME};
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": OPERATOR_NAME, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": OPERATOR_APP_NAME}},
        "spec": {
            "selector": {"app.kubernetes.io/name": OPERATOR_APP_NAME},
            "ports": [{"name": METRICS_PORT_NAME, "port": METRICS_PORT, "targetPort": METRICS_PORT_NAME}]
        }
    })
}

/// Creates every object of a manifest (multi-document YAML).
pub fn apply_file(world: &World, path: &Path) -> Result<usize, InstallError> {
    let text = std::fs::read_to_string(path).map_err(|source| InstallError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    apply_text(world, path, &text)
}

/// Creates every object of a manifest given as text (`path` names it in errors).
pub fn apply_text(world: &World, path: &Path, text: &str) -> Result<usize, InstallError> {
    let api = world.api();
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|err| InstallError::Manifest {
            path: path.to_path_buf(),
            index: 0,
            message: err.to_string(),
        })?;
    let mut created = 0;
    for (index, object) in documents
        .into_iter()
        .enumerate()
        .filter(|(_, d)| !d.is_null())
    {
        let fail = |message: String| InstallError::Manifest {
            path: path.to_path_buf(),
            index: index + 1,
            message,
        };
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let resource = api
            .resources()
            .into_iter()
            .find(|r| r.kind == kind && r.api_version() == api_version)
            .ok_or_else(|| fail(format!("no resource serves {api_version} {kind}")))?;
        let namespace = resource.namespaced.then(|| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string()
        });
        api.create(&resource.key, namespace.as_deref(), object, &INSTALLER)
            .map_err(|err| fail(err.to_string()))?;
        created += 1;
    }
    Ok(created)
}

/// `examples/playground.yaml` from the repository.
pub fn playground_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/playground.yaml")
}

/// `examples/playground-dns.yaml`: external-dns and the dns-webhook provider.
pub fn playground_dns_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/playground-dns.yaml")
}

/// `examples/playground-apps.yaml`: the counter app (and its Service).
pub fn playground_apps_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/playground-apps.yaml")
}
