//! Structural-schema validation of Kubernetes objects, as the API server does it for
//! CRDs: types, required fields, enums, bounds, patterns, list-map keys, unknown fields,
//! defaults and `x-kubernetes-validations` CEL rules.
//!
//! One implementation serves `bloodraven validate` (offline, with file:line) and the
//! simulated API server (422 responses with field causes).

mod structural;
pub mod yaml;

pub use structural::{FieldError, FieldErrorKind, UnknownFields, validate_structure};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// The served schema of one CRD version, ready to validate objects.
#[derive(Debug, Clone)]
pub struct CrdSchema {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The version's `openAPIV3Schema`, as JSON.
    pub schema: Value,
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
            out.push(Self {
                group: crd.spec.group.clone(),
                version: version.name.clone(),
                kind: crd.spec.names.kind.clone(),
                schema,
            });
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
        let validator = kube::core::cel::Validator::new();
        match validator.validate(&self.schema, object, old) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .into_vec()
                .into_iter()
                .map(|e| FieldError {
                    path: e.field_path.trim_start_matches('.').to_string(),
                    kind: FieldErrorKind::Invalid,
                    value: None,
                    detail: e.message,
                })
                .collect(),
        }
    }
}

/// The schemas of every Bloodraven CRD (all served versions).
pub fn bloodraven_schemas() -> Result<Vec<CrdSchema>, CrdSchemaError> {
    let mut out = Vec::new();
    for crd in crate::api::crds() {
        out.extend(CrdSchema::from_crd(&crd)?);
    }
    Ok(out)
}
