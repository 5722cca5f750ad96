#!/usr/bin/env python3
"""Generates sim/src/apiserver/protobuf/schema.rs: the wire layout (field numbers, JSON
names, types) of the built-in kinds kubectl's typed clients send as protobuf, read from
k8s.io/api and k8s.io/apimachinery's generated.proto files and types.go (for the Go
facts the .proto files do not carry: embedded structs JSON inlines, pointer fields).

Usage: k8s_proto_schema.py API_CHECKOUT APIMACHINERY_CHECKOUT > schema.rs
(checkouts of github.com/kubernetes/api and github.com/kubernetes/apimachinery).
"""
import os
import re
import sys

ROOTS = [
    ("v1", "Namespace", "k8s.io.api.core.v1.Namespace"),
    ("v1", "Secret", "k8s.io.api.core.v1.Secret"),
    ("v1", "ConfigMap", "k8s.io.api.core.v1.ConfigMap"),
    ("v1", "ServiceAccount", "k8s.io.api.core.v1.ServiceAccount"),
    ("v1", "Service", "k8s.io.api.core.v1.Service"),
    ("v1", "Pod", "k8s.io.api.core.v1.Pod"),
    ("v1", "ResourceQuota", "k8s.io.api.core.v1.ResourceQuota"),
    ("apps/v1", "Deployment", "k8s.io.api.apps.v1.Deployment"),
    ("batch/v1", "Job", "k8s.io.api.batch.v1.Job"),
    ("batch/v1", "CronJob", "k8s.io.api.batch.v1.CronJob"),
    ("rbac.authorization.k8s.io/v1", "Role", "k8s.io.api.rbac.v1.Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "k8s.io.api.rbac.v1.RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "k8s.io.api.rbac.v1.ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "k8s.io.api.rbac.v1.ClusterRoleBinding"),
    ("policy/v1", "PodDisruptionBudget", "k8s.io.api.policy.v1.PodDisruptionBudget"),
    ("scheduling.k8s.io/v1", "PriorityClass", "k8s.io.api.scheduling.v1.PriorityClass"),
    ("networking.k8s.io/v1", "Ingress", "k8s.io.api.networking.v1.Ingress"),
]

# Messages whose JSON form is not an object of their fields.
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
}
SCALARS = {"string": "Str", "bytes": "Bytes", "bool": "Bool", "int32": "Int",
           "int64": "Int", "double": "Double", "float": "Float"}

FIELD = re.compile(r"^\s*(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;")
MAP = re.compile(r"^\s*map\s*<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")
GO_STRUCT = re.compile(r"^type (\w+) struct \{")
GO_FIELD = re.compile(r'^\s+(?:(\w+)\s+)?(\*?)([\w.\[\]*]+)\s+`json:"([^"]*)"\s+protobuf:"\w+,(\d+),\w+(?:,name=(\w+))?')


def parse_proto(path, messages):
    package = None
    current = None
    for line in open(path, encoding="utf-8"):
        if m := re.match(r"^package ([\w.]+);", line):
            package = m.group(1)
        elif m := re.match(r"^message (\w+) \{", line):
            current = f"{package}.{m.group(1)}"
            messages[current] = {"package": package, "fields": []}
        elif line.startswith("}"):
            current = None
        elif current and (m := MAP.match(line)):
            messages[current]["fields"].append(
                {"label": "map", "key": m.group(1), "type": m.group(2), "name": m.group(3), "number": int(m.group(4))})
        elif current and (m := FIELD.match(line)):
            messages[current]["fields"].append(
                {"label": m.group(1), "type": m.group(2), "name": m.group(3), "number": int(m.group(4))})


def parse_go(path, package, facts):
    """(message, field) -> {"inline": bool, "pointer": bool} from a types.go."""
    struct = None
    for line in open(path, encoding="utf-8"):
        if m := GO_STRUCT.match(line):
            struct = f"{package}.{m.group(1)}"
        elif line.startswith("}"):
            struct = None
        elif struct and (m := GO_FIELD.match(line)):
            name, pointer, _type, json_tag, _num, proto_name = m.groups()
            json_name = json_tag.split(",")[0]
            if proto_name is None:  # an embedded struct: go-to-protobuf names it after its type
                base = _type.split(".")[-1]
                proto_name = base[0].lower() + base[1:]
            inline = json_name == ""
            facts[(struct, proto_name)] = {"inline": inline, "pointer": pointer == "*",
                                           "json": json_name}


def resolve(type_name, package, messages):
    if type_name in SCALARS:
        return None
    name = type_name.lstrip(".")
    if name in messages:
        return name
    local = f"{package}.{name}"
    if local in messages:
        return local
    raise SystemExit(f"unresolved type {type_name} in {package}")


def main():
    api, machinery = sys.argv[1], sys.argv[2]
    messages = {}
    facts = {}
    for root, prefix in ((api, "k8s.io.api"), (machinery, "k8s.io.apimachinery")):
        for dirpath, _dirs, files in os.walk(root):
            if "generated.proto" in files:
                parse_proto(os.path.join(dirpath, "generated.proto"), messages)
                rel = os.path.relpath(dirpath, root).replace(os.sep, ".")
                package = f"{prefix}.{rel}"
                for go in ("types.go",):
                    if go in files:
                        parse_go(os.path.join(dirpath, go), package, facts)
    order = []
    index = {}

    def visit(name):
        if name in index or name in SPECIAL:
            return
        index[name] = len(order)
        order.append(name)
        msg = messages[name]
        for f in msg["fields"]:
            target = resolve(f["type"], msg["package"], messages)
            if target:
                visit(target)

    for _av, _kind, name in ROOTS:
        visit(name)

    def kind_of(type_name, package):
        if type_name in SCALARS:
            return f"K::{SCALARS[type_name]}"
        target = resolve(type_name, package, messages)
        if target in SPECIAL:
            return f"K::{SPECIAL[target]}"
        return f"K::Msg({index[target]})"

    out = []
    out.append("// @generated by sim/scripts/k8s_proto_schema.py from k8s.io/api and")
    out.append("// k8s.io/apimachinery (generated.proto, types.go). Do not edit by hand.")
    out.append("#![allow(clippy::all)]\n")
    out.append("use super::{Field as F, Kind as K, Label as L, Message};\n")
    out.append("pub(super) static MESSAGES: &[Message] = &[")
    for i, name in enumerate(order):
        msg = messages[name]
        out.append(f"    // {i}")
        out.append(f"    Message {{ name: \"{name}\", fields: &[")
        for f in msg["fields"]:
            fact = facts.get((name, f["name"]), {})
            json_name = fact.get("json") or f["name"]
            if f["label"] == "map":
                label = f"L::Map({kind_of(f['key'], msg['package'])})"
            elif f["label"] == "repeated":
                label = "L::Repeated"
            elif fact.get("inline"):
                label = "L::Inline"
            elif fact.get("pointer"):
                label = "L::Pointer"
            else:
                label = "L::Value"
            out.append(f"        F({f['number']}, \"{json_name}\", {kind_of(f['type'], msg['package'])}, {label}),")
        out.append("    ] },")
    out.append("];\n")
    out.append("/// (apiVersion, kind) -> index into [`MESSAGES`] of the kinds kubectl sends as protobuf.")
    out.append("pub(super) static KINDS: &[(&str, &str, usize)] = &[")
    for av, kind, name in ROOTS:
        out.append(f"    (\"{av}\", \"{kind}\", {index[name]}),")
    out.append("];")
    print("\n".join(out))


if __name__ == "__main__":
    main()
