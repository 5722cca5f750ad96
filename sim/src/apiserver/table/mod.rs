//! `meta.k8s.io/v1` Table responses, which kubectl asks for on `get`: columns from a
//! CRD's additionalPrinterColumns, and for built-ins the columns kubectl users know
//! (from k8s.io/kubernetes/pkg/printers/internalversion/printers.go, abridged).

mod cells;

use cells::{
    access_modes, age, age_since, count_keys, endpoints, event_last_seen, event_object, int,
    job_status, name, node_address, node_roles, node_status, pod_ready, pod_restarts, pod_status,
    scalar_text, selector_text, service_ports, template_containers, text,
};

use serde_json::{Value, json};

use super::registry::{PrinterColumn, ResourceInfo};

/// How much of each object a row carries (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IncludeObject {
    None,
    Metadata,
    Object,
}

struct Column {
    name: &'static str,
    type_: &'static str,
    priority: i64,
    cell: fn(&Value, i64) -> Value,
}

fn col(
    name: &'static str,
    type_: &'static str,
    priority: i64,
    cell: fn(&Value, i64) -> Value,
) -> Column {
    Column {
        name,
        type_,
        priority,
        cell,
    }
}

/// Builds the Table for `objects` at wall time `now` (seconds since the epoch).
pub(super) fn table(
    info: &ResourceInfo,
    objects: &[Value],
    resource_version: u64,
    now: i64,
    include: IncludeObject,
) -> Value {
    let (definitions, rows): (Vec<Value>, Vec<Value>) = if info.custom {
        custom_table(&info.printer_columns, objects, now)
    } else {
        let columns = builtin_columns(info);
        let definitions = columns
            .iter()
            .map(|c| {
                let format = if c.name == "Name" { "name" } else { "" };
                json!({"name": c.name, "type": c.type_, "format": format, "description": "", "priority": c.priority})
            })
            .collect();
        let rows = objects
            .iter()
            .map(|obj| Value::Array(columns.iter().map(|c| (c.cell)(obj, now)).collect()))
            .collect();
        (definitions, rows)
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .zip(objects)
        .map(|(cells, obj)| {
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Object => row["object"] = obj.clone(),
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

fn custom_table(
    columns: &[PrinterColumn],
    objects: &[Value],
    now: i64,
) -> (Vec<Value>, Vec<Value>) {
    let mut definitions = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    let has_age = columns
        .iter()
        .any(|c| c.json_path == ".metadata.creationTimestamp");
    for c in columns {
        definitions.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
    }
    if !has_age {
        definitions.push(
            json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}),
        );
    }
    let rows = objects
        .iter()
        .map(|obj| {
            let mut cells = vec![json!(name(obj))];
            for c in columns {
                let value = json_path(obj, &c.json_path);
                let cell = match (c.type_.as_str(), value) {
                    (_, None) => Value::Null,
                    ("date", Some(Value::String(ts))) => json!(age_since(&ts, now)),
                    (_, Some(v)) => v,
                };
                cells.push(cell);
            }
            if !has_age {
                cells.push(json!(age(obj, now)));
            }
            Value::Array(cells)
        })
        .collect();
    (definitions, rows)
}

fn builtin_columns(info: &ResourceInfo) -> Vec<Column> {
    let name_col = col("Name", "string", 0, |o, _| json!(name(o)));
    let age_col = col("Age", "string", 0, |o, now| json!(age(o, now)));
    let mut columns = vec![name_col];
    match (info.key.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            columns.push(col("Ready", "string", 0, |o, _| json!(pod_ready(o))));
            columns.push(col("Status", "string", 0, |o, _| json!(pod_status(o))));
            columns.push(col("Restarts", "string", 0, |o, _| json!(pod_restarts(o))));
            columns.push(age_col);
            columns.push(col("IP", "string", 1, |o, _| {
                json!(text(o, "/status/podIP").unwrap_or("<none>"))
            }));
            columns.push(col("Node", "string", 1, |o, _| {
                json!(text(o, "/spec/nodeName").unwrap_or("<none>"))
            }));
            columns.push(col("Nominated Node", "string", 1, |o, _| {
                json!(text(o, "/status/nominatedNodeName").unwrap_or("<none>"))
            }));
            columns.push(col("Readiness Gates", "string", 1, |_, _| json!("<none>")));
        }
        ("", "Node") => {
            columns.push(col("Status", "string", 0, |o, _| json!(node_status(o))));
            columns.push(col("Roles", "string", 0, |o, _| json!(node_roles(o))));
            columns.push(age_col);
            columns.push(col("Version", "string", 0, |o, _| {
                json!(text(o, "/status/nodeInfo/kubeletVersion").unwrap_or(""))
            }));
            columns.push(col("Internal-IP", "string", 1, |o, _| {
                json!(node_address(o, "InternalIP"))
            }));
            columns.push(col("External-IP", "string", 1, |o, _| {
                json!(node_address(o, "ExternalIP"))
            }));
            columns.push(col("OS-Image", "string", 1, |o, _| {
                json!(text(o, "/status/nodeInfo/osImage").unwrap_or("<unknown>"))
            }));
            columns.push(col("Kernel-Version", "string", 1, |o, _| {
                json!(text(o, "/status/nodeInfo/kernelVersion").unwrap_or("<unknown>"))
            }));
            columns.push(col("Container-Runtime", "string", 1, |o, _| {
                json!(text(o, "/status/nodeInfo/containerRuntimeVersion").unwrap_or("<unknown>"))
            }));
        }
        ("", "Namespace") => {
            columns.push(col("Status", "string", 0, |o, _| {
                json!(text(o, "/status/phase").unwrap_or(""))
            }));
            columns.push(age_col);
        }
        ("", "Service") => {
            columns.push(col("Type", "string", 0, |o, _| {
                json!(text(o, "/spec/type").unwrap_or("ClusterIP"))
            }));
            columns.push(col("Cluster-IP", "string", 0, |o, _| {
                json!(text(o, "/spec/clusterIP").unwrap_or("<none>"))
            }));
            columns.push(col("External-IP", "string", 0, |_, _| json!("<none>")));
            columns.push(col("Port(s)", "string", 0, |o, _| json!(service_ports(o))));
            columns.push(age_col);
            columns.push(col("Selector", "string", 1, |o, _| {
                json!(selector_text(o.pointer("/spec/selector")))
            }));
        }
        ("", "Endpoints") => {
            columns.push(col("Endpoints", "string", 0, |o, _| json!(endpoints(o))));
            columns.push(age_col);
        }
        ("", "ConfigMap") => {
            columns.push(col("Data", "integer", 0, |o, _| {
                json!(count_keys(o, "data") + count_keys(o, "binaryData"))
            }));
            columns.push(age_col);
        }
        ("", "Secret") => {
            columns.push(col("Type", "string", 0, |o, _| {
                json!(text(o, "/type").unwrap_or("Opaque"))
            }));
            columns.push(col("Data", "integer", 0, |o, _| {
                json!(count_keys(o, "data"))
            }));
            columns.push(age_col);
        }
        ("", "PersistentVolumeClaim") => {
            columns.push(col("Status", "string", 0, |o, _| {
                json!(text(o, "/status/phase").unwrap_or(""))
            }));
            columns.push(col("Volume", "string", 0, |o, _| {
                json!(text(o, "/spec/volumeName").unwrap_or(""))
            }));
            columns.push(col("Capacity", "string", 0, |o, _| {
                json!(text(o, "/status/capacity/storage").unwrap_or(""))
            }));
            columns.push(col("Access Modes", "string", 0, |o, _| {
                json!(access_modes(o))
            }));
            columns.push(col("StorageClass", "string", 0, |o, _| {
                json!(text(o, "/spec/storageClassName").unwrap_or("<unset>"))
            }));
            columns.push(age_col);
        }
        (_, "Event") => {
            columns.clear();
            columns.push(col("Last Seen", "string", 0, |o, now| {
                json!(event_last_seen(o, now))
            }));
            columns.push(col("Type", "string", 0, |o, _| {
                json!(text(o, "/type").unwrap_or(""))
            }));
            columns.push(col("Reason", "string", 0, |o, _| {
                json!(text(o, "/reason").unwrap_or(""))
            }));
            columns.push(col("Object", "string", 0, |o, _| json!(event_object(o))));
            columns.push(col("Message", "string", 0, |o, _| {
                json!(
                    text(o, "/message")
                        .or_else(|| text(o, "/note"))
                        .unwrap_or("")
                        .trim()
                )
            }));
        }
        ("coordination.k8s.io", "Lease") => {
            columns.push(col("Holder", "string", 0, |o, _| {
                json!(text(o, "/spec/holderIdentity").unwrap_or(""))
            }));
            columns.push(age_col);
        }
        ("apps", "StatefulSet") => {
            columns.push(col("Ready", "string", 0, |o, _| {
                json!(format!(
                    "{}/{}",
                    int(o, "/status/readyReplicas"),
                    int(o, "/spec/replicas")
                ))
            }));
            columns.push(age_col);
            columns.push(col("Containers", "string", 1, |o, _| {
                json!(template_containers(o, "name"))
            }));
            columns.push(col("Images", "string", 1, |o, _| {
                json!(template_containers(o, "image"))
            }));
        }
        ("apps", "Deployment") => {
            columns.push(col("Ready", "string", 0, |o, _| {
                json!(format!(
                    "{}/{}",
                    int(o, "/status/readyReplicas"),
                    int(o, "/spec/replicas")
                ))
            }));
            columns.push(col("Up-to-date", "integer", 0, |o, _| {
                json!(int(o, "/status/updatedReplicas"))
            }));
            columns.push(col("Available", "integer", 0, |o, _| {
                json!(int(o, "/status/availableReplicas"))
            }));
            columns.push(age_col);
            columns.push(col("Containers", "string", 1, |o, _| {
                json!(template_containers(o, "name"))
            }));
            columns.push(col("Images", "string", 1, |o, _| {
                json!(template_containers(o, "image"))
            }));
        }
        ("policy", "PodDisruptionBudget") => {
            columns.push(col("Min Available", "string", 0, |o, _| {
                json!(scalar_text(o.pointer("/spec/minAvailable")))
            }));
            columns.push(col("Max Unavailable", "string", 0, |o, _| {
                json!(scalar_text(o.pointer("/spec/maxUnavailable")))
            }));
            columns.push(col("Allowed Disruptions", "integer", 0, |o, _| {
                json!(int(o, "/status/disruptionsAllowed"))
            }));
            columns.push(age_col);
        }
        ("batch", "Job") => {
            columns.push(col("Status", "string", 0, |o, _| json!(job_status(o))));
            columns.push(col("Completions", "string", 0, |o, _| {
                json!(format!(
                    "{}/{}",
                    int(o, "/status/succeeded"),
                    o.pointer("/spec/completions")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ))
            }));
            columns.push(age_col);
        }
        ("batch", "CronJob") => {
            columns.push(col("Schedule", "string", 0, |o, _| {
                json!(text(o, "/spec/schedule").unwrap_or(""))
            }));
            columns.push(col("Timezone", "string", 0, |o, _| {
                json!(text(o, "/spec/timeZone").unwrap_or("<none>"))
            }));
            columns.push(col("Suspend", "boolean", 0, |o, _| {
                json!(
                    o.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                )
            }));
            columns.push(col("Active", "integer", 0, |o, _| {
                json!(
                    o.pointer("/status/active")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                )
            }));
            columns.push(col("Last Schedule", "string", 0, |o, now| {
                json!(
                    text(o, "/status/lastScheduleTime")
                        .map(|t| age_since(t, now))
                        .unwrap_or_else(|| "<none>".into())
                )
            }));
            columns.push(age_col);
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            columns.push(col("Created At", "date", 0, |o, _| {
                json!(text(o, "/metadata/creationTimestamp").unwrap_or(""))
            }));
        }
        _ => columns.push(age_col),
    }
    columns
}

/// The subset of kubectl's JSONPath that printer columns use: `.a.b`, `.a[0]`,
/// `.a[*]`, and `.a[?(@.k=="v")].b`.
pub(super) fn json_path(obj: &Value, path: &str) -> Option<Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    let mut current: Vec<Value> = vec![obj.clone()];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            rest = &after[end..];
            if field.is_empty() {
                continue;
            }
            current = current
                .iter()
                .filter_map(|v| v.get(field).cloned())
                .collect();
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = &after[..end];
            rest = &after[end + 1..];
            current = if inner == "*" {
                current
                    .iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .cloned()
                    .collect()
            } else if let Some(filter) =
                inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
            {
                let (field, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches('"').trim_matches('\'');
                current
                    .iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter(|item| item.get(field.trim()).and_then(Value::as_str) == Some(want))
                    .cloned()
                    .collect()
            } else {
                let index: usize = inner.parse().ok()?;
                current
                    .iter()
                    .filter_map(|v| v.get(index).cloned())
                    .collect()
            };
        } else {
            return None;
        }
    }
    match current.len() {
        0 => None,
        1 => current.pop(),
        _ => Some(Value::String(
            current
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::cells::human_duration;
    use super::*;

    #[test]
    fn human_duration_matches_kubernetes() {
        for (secs, want) in [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 7, "3h7m"),
            (47 * 3600, "47h"),
            (50 * 3600, "2d2h"),
            (30 * 86400, "30d"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn json_path_subset() {
        let obj = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}], "sites": [{"name": "iad"}, {"name": "pdx"}]}});
        assert_eq!(
            json_path(&obj, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(json_path(&obj, ".status.sites[1].name"), Some(json!("pdx")));
        assert_eq!(
            json_path(&obj, ".status.sites[*].name"),
            Some(json!("iad,pdx"))
        );
        assert_eq!(json_path(&obj, ".status.missing"), None);
    }
}
