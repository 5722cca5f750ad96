//! `meta.k8s.io/v1` Table responses, which kubectl asks for on `get`: columns from a
//! CRD's additionalPrinterColumns, and for built-ins the columns kubectl users know
//! (from k8s.io/kubernetes/pkg/printers/internalversion/printers.go, abridged).

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

fn name(obj: &Value) -> &str {
    text(obj, "/metadata/name").unwrap_or("")
}

fn text<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn scalar_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".into(),
    }
}

fn count_keys(obj: &Value, field: &str) -> usize {
    obj.get(field)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn age(obj: &Value, now: i64) -> String {
    match text(obj, "/metadata/creationTimestamp") {
        Some(ts) => age_since(ts, now),
        None => "<unknown>".into(),
    }
}

fn age_since(timestamp: &str, now: i64) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(ts) => human_duration(now - ts.as_second()),
        Err(_) => "<invalid>".into(),
    }
}

/// k8s.io/apimachinery/pkg/util/duration.HumanDuration.
pub(super) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    if s < 60 * 2 {
        return format!("{s}s");
    }
    let minutes = s / 60;
    if minutes < 10 {
        return if s % 60 == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{}s", s % 60)
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return if minutes % 60 == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{}m", minutes % 60)
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return if hours % 24 == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, hours % 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return format!("{}y{}d", hours / 24 / 365, (hours / 24) % 365);
    }
    format!("{}y", hours / 24 / 365)
}

fn pod_ready(pod: &Value) -> String {
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |cs| {
            cs.iter()
                .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                .count()
        });
    format!("{ready}/{total}")
}

fn pod_status(pod: &Value) -> String {
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return "Terminating".into();
    }
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for status in &statuses {
        if let Some(reason) = text(status, "/state/waiting/reason") {
            return reason.to_string();
        }
        if let Some(reason) = text(status, "/state/terminated/reason") {
            return reason.to_string();
        }
    }
    text(pod, "/status/reason")
        .or_else(|| text(pod, "/status/phase"))
        .unwrap_or("Unknown")
        .to_string()
}

fn pod_restarts(pod: &Value) -> String {
    let restarts: i64 = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |cs| {
            cs.iter()
                .map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0))
                .sum()
        });
    restarts.to_string()
}

fn node_status(node: &Value) -> String {
    let conditions = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
    let mut status = match ready.and_then(|c| c.get("status")).and_then(Value::as_str) {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_string)
                        .or_else(|| {
                            (k == "kubernetes.io/role")
                                .then(|| v.as_str().unwrap_or_default().to_string())
                        })
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn node_address(node: &Value, kind: &str) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some(kind))
        })
        .and_then(|x| x.get("address"))
        .and_then(Value::as_str)
        .unwrap_or("<none>")
        .to_string()
}

fn service_ports(svc: &Value) -> String {
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() {
        return "<none>".into();
    }
    ports
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) => format!("{port}:{node_port}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn selector_text(selector: Option<&Value>) -> String {
    match selector.and_then(Value::as_object) {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

fn endpoints(ep: &Value) -> String {
    let mut out = Vec::new();
    for subset in ep
        .get("subsets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let ports: Vec<i64> = subset
            .get("ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.get("port").and_then(Value::as_i64))
                    .collect()
            })
            .unwrap_or_default();
        for address in subset
            .get("addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let ip = address
                .get("ip")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if ports.is_empty() {
                out.push(ip.to_string());
            }
            for port in &ports {
                out.push(format!("{ip}:{port}"));
            }
        }
    }
    if out.is_empty() {
        return "<none>".into();
    }
    if out.len() > 3 {
        let more = out.len() - 3;
        out.truncate(3);
        return format!("{} + {more} more...", out.join(","));
    }
    out.join(",")
}

fn access_modes(pvc: &Value) -> String {
    let modes: Vec<&str> = pvc
        .pointer("/status/accessModes")
        .or_else(|| pvc.pointer("/spec/accessModes"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    modes
        .iter()
        .map(|m| match *m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn template_containers(obj: &Value, field: &str) -> String {
    obj.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn job_status(job: &Value) -> String {
    let conditions = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (type_, shown) in [
        ("Complete", "Complete"),
        ("Failed", "Failed"),
        ("Suspended", "Suspended"),
    ] {
        if conditions.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some(type_)
                && c.get("status").and_then(Value::as_str) == Some("True")
        }) {
            return shown.into();
        }
    }
    "Running".into()
}

fn event_last_seen(event: &Value, now: i64) -> String {
    let ts = text(event, "/series/lastObservedTime")
        .or_else(|| text(event, "/lastTimestamp"))
        .or_else(|| text(event, "/eventTime"))
        .or_else(|| text(event, "/metadata/creationTimestamp"));
    ts.map(|t| age_since(t, now))
        .unwrap_or_else(|| "<unknown>".into())
}

fn event_object(event: &Value) -> String {
    let object = event
        .get("involvedObject")
        .or_else(|| event.get("regarding"));
    let kind = object
        .and_then(|o| o.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = object
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{}/{name}", kind.to_lowercase())
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
