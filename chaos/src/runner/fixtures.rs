//! Fixtures: the manifests a scenario names, their namespace, whether they need the
//! operator, and installing them (waiting for their groups to become Healthy).

#[allow(clippy::wildcard_imports)]
use super::*;

/// How long the fixture's groups get to become Healthy.
pub const FIXTURE_HEALTHY_WITHIN: Duration = Duration::from_secs(300);

impl Run<'_> {
    pub(super) async fn apply_fixture(&self, name: &str) -> Result<String, Failure> {
        let path = fixture_path(self.scenario, name);
        let fail = |message: String| Failure::new(format!("fixture {name}"), message);
        let manifests = load_manifests(&path).map_err(|e| fail(e.to_string()))?;
        let namespace = fixture_namespace(&manifests);
        for m in &manifests {
            self.cluster
                .apply(m, &namespace)
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        self.note(
            TimelineKind::Note,
            format!(
                "fixture {name}: applied {} object(s) in namespace {namespace}",
                manifests.len()
            ),
        );
        for m in manifests
            .iter()
            .filter(|m| m.get("kind").and_then(Value::as_str) == Some("MysqlFailoverGroup"))
        {
            let Some(group) = m.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let healthy = Assertion {
                check: Check::Resource(ResourceCheck {
                    resource: ObjectRef {
                        kind: "MysqlFailoverGroup".into(),
                        name: group.into(),
                        // `self.namespace` is set only once the fixture is in place.
                        namespace: Some(
                            m.pointer("/metadata/namespace")
                                .and_then(Value::as_str)
                                .unwrap_or(&namespace)
                                .to_owned(),
                        ),
                        api_version: None,
                    },
                    partial: BTreeMap::from([(
                        "status".to_owned(),
                        serde_json::json!({"health": "Healthy"}),
                    )]),
                    where_: Vec::new(),
                }),
                within: crate::duration::ScenarioDuration(FIXTURE_HEALTHY_WITHIN),
                hold: None,
            };
            self.assert(&healthy).await.map_err(|mut f| {
                f.step = format!("fixture {name}: waiting for {group} to be Healthy");
                f
            })?;
        }
        Ok(namespace)
    }
}

/// A manifest file that could not be read or is not YAML.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
}

/// Reads a (possibly multi-document) manifest file.
pub fn load_manifests(path: &Path) -> Result<Vec<Value>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| ManifestError::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `fixtures/<name>.yaml` next to the scenario file.
pub fn fixture_path(scenario: &Scenario, name: &str) -> PathBuf {
    scenario
        .base_dir()
        .join("fixtures")
        .join(format!("{name}.yaml"))
}

/// Whether the scenario's fixture holds a MysqlFailoverGroup, which only the operator
/// makes Healthy (a backend that can install the operator does so for it).
pub fn fixture_needs_operator(scenario: &Scenario) -> Result<bool, ManifestError> {
    let Some(name) = &scenario.fixture else {
        return Ok(false);
    };
    let manifests = load_manifests(&fixture_path(scenario, name))?;
    Ok(manifests
        .iter()
        .any(|m| m.get("kind").and_then(Value::as_str) == Some("MysqlFailoverGroup")))
}

/// The fixture's namespace: its Namespace object, else the first namespaced object's.
pub fn fixture_namespace(manifests: &[Value]) -> String {
    manifests
        .iter()
        .find(|m| m.get("kind").and_then(Value::as_str) == Some("Namespace"))
        .and_then(|m| m.pointer("/metadata/name"))
        .or_else(|| {
            manifests
                .iter()
                .find_map(|m| m.pointer("/metadata/namespace"))
        })
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned()
}
