//! CustomResourceDefinitions: checking a definition, turning it into served resources
//! (one per served version, sharing storage), marking it Established, and validating
//! custom objects against the version's structural schema.

use std::sync::Arc;

use bloodraven::schema::CrdSchema;
use serde_json::{Value, json};

use super::ResourceKey;
use super::error::{ApiError, StatusCause};
use super::registry::{Conversion, PrinterColumn, ResourceInfo, StorageKey};

const GROUP: &str = "apiextensions.k8s.io";

/// The checks the real server makes on a definition that routing depends on.
pub(super) fn validate_definition(crd: &Value) -> Result<(), ApiError> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut causes = Vec::new();
    let text = |path: &str| {
        crd.pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let group = text("/spec/group");
    let plural = text("/spec/names/plural");
    let kind = text("/spec/names/kind");
    if group.is_empty() {
        causes.push(StatusCause::required("spec.group"));
    }
    if plural.is_empty() {
        causes.push(StatusCause::required("spec.names.plural"));
    }
    if kind.is_empty() {
        causes.push(StatusCause::required("spec.names.kind"));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(StatusCause::invalid(
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match text("/spec/scope").as_str() {
        "Namespaced" | "Cluster" => {}
        "" => causes.push(StatusCause::required("spec.scope")),
        other => causes.push(StatusCause::new(
            "FieldValueNotSupported",
            "spec.scope",
            format!(
                "Unsupported value: \"{other}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        )),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(StatusCause::required("spec.versions"));
    }
    let storage_versions = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage_versions != 1 {
        causes.push(StatusCause::invalid(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, version) in versions.iter().enumerate() {
        if version
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            causes.push(StatusCause::required(format!("spec.versions[{i}].name")));
        }
        if version.pointer("/schema/openAPIV3Schema").is_none() {
            causes.push(StatusCause::required(format!(
                "spec.versions[{i}].schema.openAPIV3Schema"
            )));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            GROUP,
            "CustomResourceDefinition",
            name,
            causes,
        ))
    }
}

/// Sets the conditions clients wait for (`kube::runtime::wait::conditions::is_crd_established`).
pub(super) fn mark_established(crd: &mut Value) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let since = crd
        .pointer("/metadata/creationTimestamp")
        .cloned()
        .or_else(|| {
            crd.pointer("/status/conditions/0/lastTransitionTime")
                .cloned()
        })
        .unwrap_or(Value::Null);
    let condition = |type_: &str, reason: &str, message: &str| json!({"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": since});
    crd["status"] = json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
    });
}

/// The served resources of a definition, one per served version.
pub(super) fn resources_for(crd: &Value) -> Vec<ResourceInfo> {
    let text = |path: &str| {
        crd.pointer(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let strings = |path: &str| -> Vec<String> {
        crd.pointer(path)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let group = text("/spec/group");
    let plural = text("/spec/names/plural");
    let kind = text("/spec/names/kind");
    let list_kind = Some(text("/spec/names/listKind"))
        .filter(|s| !s.is_empty())
        .unwrap_or(format!("{kind}List"));
    let singular = Some(text("/spec/names/singular"))
        .filter(|s| !s.is_empty())
        .unwrap_or(kind.to_lowercase());
    let namespaced = text("/spec/scope") != "Cluster";
    let storage = StorageKey {
        group: group.clone(),
        resource: plural.clone(),
    };
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .map(|v| {
            let version = v.get("name").and_then(Value::as_str).unwrap_or_default();
            ResourceInfo {
                key: ResourceKey::new(&group, version, &plural),
                kind: kind.clone(),
                list_kind: list_kind.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: strings("/spec/names/shortNames"),
                categories: strings("/spec/names/categories"),
                status_subresource: v.pointer("/subresources/status").is_some(),
                scale_subresource: v.pointer("/subresources/scale").is_some(),
                storage: storage.clone(),
                conversion: Conversion::None,
                schema: v
                    .pointer("/schema/openAPIV3Schema")
                    .map(|schema| Arc::new(CrdSchema::new(&group, version, &kind, schema.clone()))),
                printer_columns: printer_columns(v),
                custom: true,
            }
        })
        .collect()
}

fn printer_columns(version: &Value) -> Vec<PrinterColumn> {
    version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| {
                    let text = |k: &str| {
                        c.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    PrinterColumn {
                        name: text("name"),
                        type_: text("type"),
                        format: text("format"),
                        description: text("description"),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: text("jsonPath"),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Validates (and prunes and defaults) a custom object against its version's schema.
pub(super) fn validate_custom(
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(schema) = &info.schema else {
        return Ok(());
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let causes = super::schema_check::check(schema, obj, old);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &info.key.group,
            &info.kind,
            &name,
            causes,
        ))
    }
}
