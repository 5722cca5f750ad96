//! Discovery and OpenAPI: `/version`, the API group and resource lists kubectl and
//! client-go read before any request, and the (empty-schema) OpenAPI documents.

use axum::response::Response;
use serde_json::{Value, json};

use super::json_response;
use crate::apiserver::error::ApiError;
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::{ApiServer, ResourceKey};

pub(super) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-bloodraven-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(super) fn group_entry(group: &str, versions: &[String]) -> Value {
    let versions_json: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions_json.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions_json, "preferredVersion": preferred})
}

pub(super) fn group_list(server: &ApiServer) -> Value {
    let groups: Vec<Value> = server
        .lock()
        .registry
        .group_versions()
        .iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, versions)| group_entry(group, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(super) fn group_info(server: &ApiServer, group: &str) -> Result<Response, ApiError> {
    let groups = server.lock().registry.group_versions();
    let versions = groups
        .get(group)
        .filter(|_| !group.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource: group {group}"),
            )
        })?;
    let mut entry = group_entry(group, versions);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Ok(json_response(200, &entry))
}

pub(super) fn resource_list(
    server: &ApiServer,
    group: &str,
    version: &str,
) -> Result<Response, ApiError> {
    let infos = served_resources(server, group, version).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource: {group}/{version}"),
        )
    })?;
    let verbs = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut resources = Vec::new();
    for info in &infos {
        let mut entry = json!({
            "name": info.key.resource,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": verbs,
        });
        if !info.short_names.is_empty() {
            entry["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            entry["categories"] = json!(info.categories);
        }
        resources.push(entry);
        if info.status_subresource {
            resources.push(json!({"name": format!("{}/status", info.key.resource), "singularName": "", "namespaced": info.namespaced, "kind": info.kind, "verbs": ["get", "patch", "update"]}));
        }
        if info.scale_subresource {
            resources.push(json!({"name": format!("{}/scale", info.key.resource), "singularName": "", "namespaced": info.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let group_version = ResourceKey::new(group, version, "").api_version();
    Ok(json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    ))
}

/// The OpenAPI v3 index. kubectl reads it to learn that the server validates fields
/// itself (`fieldValidation`), and then leaves validation to the server.
pub(super) fn openapi_root(server: &ApiServer) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in server.lock().registry.group_versions() {
        for version in versions {
            let path = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document of one group/version: the PATCH operation of every
/// kind with the `fieldValidation` parameter and its group/version/kind. No schemas:
/// kubectl then falls back to its compiled-in types for strategic merge patch.
pub(super) fn openapi_group_version(
    server: &ApiServer,
    group: &str,
    version: &str,
) -> Result<Response, ApiError> {
    let infos = served_resources(server, group, version).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!("no OpenAPI document for {group}/{version}"),
        )
    })?;
    let mut paths = serde_json::Map::new();
    for info in &infos {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if info.namespaced {
            format!(
                "{prefix}/namespaces/{{namespace}}/{}/{{name}}",
                info.key.resource
            )
        } else {
            format!("{prefix}/{}/{{name}}", info.key.resource)
        };
        let gvk = json!({"group": group, "version": version, "kind": info.kind});
        paths.insert(path, json!({"patch": {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}},
        }}));
    }
    Ok(json_response(
        200,
        &json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": paths,
            "components": {"schemas": {}},
        }),
    ))
}

/// The resources served under one group/version; `None` when it serves none.
fn served_resources(server: &ApiServer, group: &str, version: &str) -> Option<Vec<ResourceInfo>> {
    let infos: Vec<ResourceInfo> = server
        .lock()
        .registry
        .all()
        .filter(|i| i.key.group == group && i.key.version == version)
        .map(|i| (**i).clone())
        .collect();
    (!infos.is_empty()).then_some(infos)
}
