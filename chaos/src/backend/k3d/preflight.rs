//! What `K3dBackend::connect` checks before a scenario touches the cluster, and where it
//! finds the Docker daemon. The decisions are pure (table-tested); `connect` gathers
//! their inputs. Placement: the operator and CoreDNS must run on the control plane,
//! because a partition or a crash of a site's node must not cut them off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::api::PodRef;

/// The node label k3s puts on server (control-plane) nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// CoreDNS's pods, as k3s deploys them.
pub const COREDNS_SELECTOR: &str = "k8s-app=kube-dns";

/// Why the cluster is not fit for a live run, before anything changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    #[error("the API server of context {context} does not answer: {reason}")]
    ApiServer { context: String, reason: String },
    #[error(
        "placement: {}; pin them to the control plane (docs/scenarios.md, \"Running on a live cluster\")",
        problems.join("; ")
    )]
    Placement { problems: Vec<String> },
    #[error("Docker context {context}: {path}: {reason}")]
    DockerContext {
        context: String,
        path: PathBuf,
        reason: String,
    },
}

/// One pod the placement check looks at, and what it is (for the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPod {
    pub role: &'static str,
    pub pod: PodRef,
}

/// Every pod in `pods` that is not on a control-plane node (by `node_labels`, node
/// name -> labels), one line each. A role with no pod at all is a problem too: the
/// check would otherwise pass while looking at nothing.
pub fn placement_problems(
    roles: &[&'static str],
    pods: &[PlacedPod],
    node_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for role in roles {
        if !pods.iter().any(|p| p.role == *role) {
            problems.push(format!("no {role} pod found"));
        }
    }
    for placed in pods {
        let PodRef {
            namespace, name, ..
        } = &placed.pod;
        match &placed.pod.node {
            None => problems.push(format!(
                "{} pod {namespace}/{name} is not scheduled",
                placed.role
            )),
            Some(node) => {
                let on_control_plane = node_labels
                    .get(node)
                    .and_then(|labels| labels.get(CONTROL_PLANE_LABEL))
                    .is_some_and(|v| v == "true");
                if !on_control_plane {
                    problems.push(format!(
                        "{} pod {namespace}/{name} runs on {node}, not on a node labelled {CONTROL_PLANE_LABEL}=true",
                        placed.role
                    ));
                }
            }
        }
    }
    problems
}

/// Where the Docker daemon is, as the docker CLI decides it: `DOCKER_HOST`, else the
/// context named by `DOCKER_CONTEXT`, else the `currentContext` of `config.json` in the
/// Docker config directory (`DOCKER_CONFIG`, default `~/.docker`). `None`: the
/// default socket. `read` reads a file (tests pass a map).
pub fn docker_host(
    docker_host: Option<&str>,
    docker_context: Option<&str>,
    config_dir: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Option<String>, PreflightError> {
    if let Some(host) = docker_host.filter(|h| !h.is_empty()) {
        return Ok(Some(host.to_owned()));
    }
    let context = match docker_context.filter(|c| !c.is_empty()) {
        Some(c) => c.to_owned(),
        None => {
            let path = config_dir.join("config.json");
            let current = match read(&path) {
                Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| PreflightError::DockerContext {
                        context: "(current)".into(),
                        path: path.clone(),
                        reason: e.to_string(),
                    })?
                    .get("currentContext")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                // No config file: the default context.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(PreflightError::DockerContext {
                        context: "(current)".into(),
                        path,
                        reason: e.to_string(),
                    });
                }
            };
            match current {
                Some(c) if !c.is_empty() => c,
                _ => return Ok(None),
            }
        }
    };
    if context == "default" {
        return Ok(None);
    }
    // The CLI stores a context under the SHA-256 of its name.
    let digest = {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(context.as_bytes());
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let path = config_dir
        .join("contexts")
        .join("meta")
        .join(digest)
        .join("meta.json");
    let fail = |reason: String| PreflightError::DockerContext {
        context: context.clone(),
        path: path.clone(),
        reason,
    };
    let text = read(&path).map_err(|e| fail(e.to_string()))?;
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    meta.pointer("/Endpoints/docker/Host")
        .and_then(serde_json::Value::as_str)
        .filter(|h| !h.is_empty())
        .map(|h| Some(h.to_owned()))
        .ok_or_else(|| fail("no Endpoints.docker.Host".into()))
}

/// The Docker config directory: `DOCKER_CONFIG`, else `$HOME/.docker`.
pub fn docker_config_dir(docker_config: Option<&str>, home: Option<&str>) -> PathBuf {
    match docker_config.filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(home.unwrap_or("/")).join(".docker"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(role: &'static str, name: &str, node: Option<&str>) -> PlacedPod {
        PlacedPod {
            role,
            pod: PodRef {
                namespace: "ns".into(),
                name: name.into(),
                node: node.map(str::to_owned),
            },
        }
    }

    fn nodes() -> BTreeMap<String, BTreeMap<String, String>> {
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        BTreeMap::from([
            (
                "k3d-bloodraven-server-0".to_owned(),
                labels(&[(CONTROL_PLANE_LABEL, "true")]),
            ),
            (
                "k3d-bloodraven-agent-0".to_owned(),
                labels(&[("topology.kubernetes.io/zone", "zone-iad")]),
            ),
        ])
    }

    #[test]
    fn placement_table() {
        let roles = ["operator", "CoreDNS"];
        let server = Some("k3d-bloodraven-server-0");
        let agent = Some("k3d-bloodraven-agent-0");
        let cases: Vec<(&str, Vec<PlacedPod>, Vec<&str>)> = vec![
            (
                "both on the server",
                vec![pod("operator", "op", server), pod("CoreDNS", "dns", server)],
                vec![],
            ),
            (
                "operator on a site agent",
                vec![pod("operator", "op", agent), pod("CoreDNS", "dns", server)],
                vec![
                    "operator pod ns/op runs on k3d-bloodraven-agent-0, not on a node labelled node-role.kubernetes.io/control-plane=true",
                ],
            ),
            (
                "CoreDNS unscheduled",
                vec![pod("operator", "op", server), pod("CoreDNS", "dns", None)],
                vec!["CoreDNS pod ns/dns is not scheduled"],
            ),
            (
                "no CoreDNS at all",
                vec![pod("operator", "op", server)],
                vec!["no CoreDNS pod found"],
            ),
            (
                "a node the list does not know",
                vec![
                    pod("operator", "op", Some("gone")),
                    pod("CoreDNS", "dns", server),
                ],
                vec![
                    "operator pod ns/op runs on gone, not on a node labelled node-role.kubernetes.io/control-plane=true",
                ],
            ),
        ];
        for (name, pods, want) in cases {
            assert_eq!(placement_problems(&roles, &pods, &nodes()), want, "{name}");
        }
    }

    #[test]
    fn docker_host_resolution() {
        let dir = Path::new("/home/u/.docker");
        let files = |config: Option<&'static str>, meta: Option<&'static str>| {
            move |p: &Path| -> std::io::Result<String> {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let found = match name {
                    "config.json" => config,
                    "meta.json" => meta,
                    _ => None,
                };
                found
                    .map(str::to_owned)
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        };
        let meta = r#"{"Name":"colima","Endpoints":{"docker":{"Host":"unix:///home/u/.colima/docker.sock"}}}"#;
        // DOCKER_HOST wins over everything.
        assert_eq!(
            docker_host(
                Some("tcp://10.0.0.1:2375"),
                Some("colima"),
                dir,
                &files(None, Some(meta))
            ),
            Ok(Some("tcp://10.0.0.1:2375".into()))
        );
        // DOCKER_CONTEXT names a context: its meta.json's host.
        assert_eq!(
            docker_host(None, Some("colima"), dir, &files(None, Some(meta))),
            Ok(Some("unix:///home/u/.colima/docker.sock".into()))
        );
        // config.json's currentContext.
        assert_eq!(
            docker_host(
                None,
                None,
                dir,
                &files(Some(r#"{"currentContext":"colima"}"#), Some(meta))
            ),
            Ok(Some("unix:///home/u/.colima/docker.sock".into()))
        );
        // No config file, or the default context: the default socket.
        assert_eq!(docker_host(None, None, dir, &files(None, None)), Ok(None));
        assert_eq!(
            docker_host(None, Some("default"), dir, &files(None, Some(meta))),
            Ok(None)
        );
        // A context whose meta is missing is an error naming it and the path.
        let err = docker_host(None, Some("gone"), dir, &files(None, None)).unwrap_err();
        assert!(
            matches!(&err, PreflightError::DockerContext { context, path, .. }
                if context == "gone" && path.starts_with("/home/u/.docker/contexts/meta")),
            "{err}"
        );
    }

    #[test]
    fn context_directory_is_the_sha256_of_the_name() {
        // `docker context create colima` stores its meta under this directory.
        let seen = std::cell::RefCell::new(Vec::new());
        let read = |p: &Path| -> std::io::Result<String> {
            seen.borrow_mut().push(p.to_path_buf());
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        let _ = docker_host(None, Some("default2"), Path::new("/d"), &read);
        let seen = seen.into_inner();
        assert_eq!(seen.len(), 1);
        let digest_dir = seen[0]
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .unwrap()
            .to_owned();
        // sha256("default2"), computed independently with `printf default2 | sha256sum`.
        assert_eq!(digest_dir, SHA256_OF_DEFAULT2);
    }

    const SHA256_OF_DEFAULT2: &str =
        "f6b0be07b1a9fd7f4c0bb0e064a4eb0b964994b36b1112ea1c1f57ed8fdb8f3f";
}
