//! Structural-schema validation of Kubernetes objects, as the API server does it for
//! CRDs: types, required fields, enums, bounds, patterns, list-map keys, unknown fields,
//! defaults and `x-kubernetes-validations` CEL rules.
//!
//! One implementation serves `bloodraven validate` (offline, with file:line) and the
//! simulated API server (422 responses with field causes).

mod structural;
pub mod yaml;

pub use structural::{FieldError, FieldErrorKind, UnknownFields, validate_structure};

use std::sync::{Arc, OnceLock};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde_json::Value;

/// The served schema of one CRD version, ready to validate objects.
#[derive(Debug, Clone)]
pub struct CrdSchema {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The version's `openAPIV3Schema`, as JSON (private: the compiled rules below are
    /// derived from it).
    schema: Value,
    /// The CEL rules compiled once, on first use: the simulated API server validates
    /// every write of a custom object, and compiling the rules dominated that.
    rules: Arc<OnceLock<CompiledRules>>,
}

struct CompiledRules {
    validator: Validator,
    schema: CompiledSchema,
}

impl std::fmt::Debug for CompiledRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRules").finish_non_exhaustive()
    }
}

/// Why a CRD's schema could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CrdSchemaError {
    #[error("CRD {crd}: version {version} has no openAPIV3Schema")]
    MissingSchema { crd: String, version: String },
    #[error("CRD {crd}: its schema does not serialise: {source}")]
    Serialise {
        crd: String,
        source: serde_json::Error,
    },
}

impl CrdSchema {
    pub fn new(group: &str, version: &str, kind: &str, schema: Value) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            schema,
            rules: Arc::default(),
        }
    }

    /// The version's `openAPIV3Schema`, as JSON.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// One `CrdSchema` per served version of `crd`.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Result<Vec<Self>, CrdSchemaError> {
        let crd_name = crd.metadata.name.clone().unwrap_or_default();
        let mut out = Vec::new();
        for version in crd.spec.versions.iter().filter(|v| v.served) {
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .ok_or_else(|| CrdSchemaError::MissingSchema {
                    crd: crd_name.clone(),
                    version: version.name.clone(),
                })?;
            let schema =
                serde_json::to_value(schema).map_err(|source| CrdSchemaError::Serialise {
                    crd: crd_name.clone(),
                    source,
                })?;
            out.push(Self::new(
                &crd.spec.group,
                &version.name,
                &crd.spec.names.kind,
                schema,
            ));
        }
        Ok(out)
    }

    /// `group/version`, as written in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The object with schema defaults filled in, as the API server stores it.
    pub fn with_defaults(&self, object: &Value) -> Value {
        kube::core::cel::apply_defaults(&self.schema, object)
    }

    /// Every problem with `object` (defaults applied first, as the API server does).
    /// Structural errors come first; CEL rules run only on a structurally valid object,
    /// because a rule over a mistyped field would only add noise.
    pub fn validate(&self, object: &Value, unknown: UnknownFields) -> Vec<FieldError> {
        let defaulted = self.with_defaults(object);
        // apiVersion, kind and metadata are the API server's own (ObjectMeta has its
        // own rules); CRD schemas describe the rest.
        let mut body = defaulted.clone();
        if let Some(fields) = body.as_object_mut() {
            for implicit in ["apiVersion", "kind", "metadata"] {
                fields.remove(implicit);
            }
        }
        let mut errors = validate_structure(&self.schema, &body, unknown);
        if errors.is_empty() {
            errors.extend(self.validate_rules(&defaulted, None));
        }
        errors
    }

    /// Evaluates the `x-kubernetes-validations` rules (`old` enables transition rules).
    pub fn validate_rules(&self, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let rules = self.rules.get_or_init(|| {
            let mut schema = compile_schema(&self.schema);
            keep_ruled(&mut schema);
            CompiledRules {
                validator: Validator::new(),
                schema,
            }
        });
        match rules
            .validator
            .validate_compiled(&rules.schema, object, old)
        {
            Ok(()) => Vec::new(),
            Err(errors) => {
                let mut errors: Vec<FieldError> = errors
                    .into_vec()
                    .into_iter()
                    .map(|e| FieldError {
                        path: e.field_path.trim_start_matches('.').to_string(),
                        kind: FieldErrorKind::Invalid,
                        value: None,
                        detail: e.message,
                    })
                    .collect();
                // The compiled tree keeps properties in a HashMap (random order per
                // process): order the errors by field path so that messages replay.
                errors.sort_by(|a, b| path_order(&a.path).cmp(&path_order(&b.path)));
                errors
            }
        }
    }
}

/// Drops the subtrees that hold no rule; returns whether `node` holds one. The
/// validator converts the value to CEL at every node it walks, so walking rule-less
/// subtrees (all of `status`) only costs. Below a node with rules everything stays:
/// its rules see its whole (defaulted) subtree.
fn keep_ruled(node: &mut CompiledSchema) -> bool {
    if !node.validations.is_empty() {
        return true;
    }
    node.properties.retain(|_, child| keep_ruled(child));
    if node.items.as_mut().is_some_and(|items| !keep_ruled(items)) {
        node.items = None;
    }
    if node
        .additional_properties
        .as_mut()
        .is_some_and(|additional| !keep_ruled(additional))
    {
        node.additional_properties = None;
    }
    node.all_of.retain_mut(keep_ruled);
    node.one_of.retain_mut(keep_ruled);
    node.any_of.retain_mut(keep_ruled);
    !node.properties.is_empty()
        || node.items.is_some()
        || node.additional_properties.is_some()
        || !node.all_of.is_empty()
        || !node.one_of.is_empty()
        || !node.any_of.is_empty()
}

/// A field path (`spec.sites[10].name`) as segments that sort as the schema walk
/// visits them: parents first, names alphabetically, list indices numerically.
fn path_order(path: &str) -> Vec<(&str, u64)> {
    path.split(['.', '['])
        .map(
            |segment| match segment.strip_suffix(']').map(str::parse::<u64>) {
                Some(Ok(index)) => ("", index),
                _ => (segment, 0),
            },
        )
        .collect()
}

/// The schemas of every Bloodraven CRD (all served versions).
pub fn bloodraven_schemas() -> Result<Vec<CrdSchema>, CrdSchemaError> {
    let mut out = Vec::new();
    for crd in crate::api::crds() {
        out.extend(CrdSchema::from_crd(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_errors_come_in_field_order_with_rules_compiled_once() {
        let positive = |what: &str| json!([{"rule": "self > 0", "message": format!("{what} must be positive")}]);
        let schema = json!({"type": "object", "properties": {
            "b": {"type": "integer", "x-kubernetes-validations": positive("b")},
            "a": {"type": "integer", "x-kubernetes-validations": positive("a")},
            "items": {"type": "array", "items": {"type": "integer", "x-kubernetes-validations": positive("an item")}},
        }});
        let crd = CrdSchema::new("example.com", "v1", "Thing", schema);
        let object = json!({"b": -1, "a": -1, "items": [1, 1, -1, 1, 1, 1, 1, 1, 1, 1, -1]});
        for _ in 0..2 {
            let errors: Vec<(String, String)> = crd
                .validate_rules(&object, None)
                .into_iter()
                .map(|e| (e.path, e.detail))
                .collect();
            assert_eq!(
                errors,
                [
                    ("a".into(), "a must be positive".into()),
                    ("b".into(), "b must be positive".into()),
                    ("items[2]".into(), "an item must be positive".into()),
                    ("items[10]".into(), "an item must be positive".into()),
                ]
            );
            assert!(
                crd.rules.get().is_some(),
                "compiled on first use, then kept"
            );
        }
        assert!(
            crd.validate_rules(&json!({"a": 1, "b": 2, "items": [3]}), None)
                .is_empty()
        );
    }

    #[test]
    fn a_rule_sees_its_whole_subtree_with_defaults_when_rule_less_parts_are_skipped() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object",
                "x-kubernetes-validations": [{"rule": "self.replicas == 1 && self.site.name == 'iad'", "message": "one replica at iad"}],
                "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "site": {"type": "object", "properties": {"name": {"type": "string", "default": "iad"}}},
                }},
            "status": {"type": "object", "properties": {"sites": {"type": "array", "items": {"type": "object"}}}},
        }});
        let crd = CrdSchema::new("example.com", "v1", "Thing", schema);
        let status = json!({"sites": [{"name": "iad"}, {"name": "pdx"}]});
        let object = |spec: Value| json!({"spec": spec, "status": status});
        // The defaults below the rule's node are applied before it runs.
        assert_eq!(crd.validate_rules(&object(json!({"site": {}})), None), []);
        let errors = crd.validate_rules(&object(json!({"replicas": 2, "site": {}})), None);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "spec");
        assert_eq!(errors[0].detail, "one replica at iad");
    }
}
