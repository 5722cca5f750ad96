//! The operator's own RBAC, generated from the code that needs it. Each module that
//! calls the Kubernetes API declares what it calls in an `API_ACCESS` table right next
//! to the calls; this module gathers the tables into PolicyRules and renders the Helm
//! chart's `templates/rbac.yaml` (`bloodraven rbac`, checked by `make generate-check`).
//! The sidecar's per-group Role is built in `children::rbac`, not here.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Where an access is needed, which decides the kind of role that grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Cluster-scoped objects (nodes): always a ClusterRole.
    Cluster,
    /// Objects in the namespaces the operator watches: a ClusterRole when it watches
    /// every namespace, a Role in the one namespace given by `--namespace` otherwise.
    Watched,
    /// Objects in the operator's own namespace (its leader Lease): a Role there.
    OperatorNamespace,
}

/// One kind of call: these verbs on this resource, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiAccess {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Plural resource, with `/subresource` where the call targets one.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    /// What the call is for (rendered as a comment above the rule).
    pub why: &'static str,
}

impl ApiAccess {
    /// Access in the watched namespaces.
    pub const fn watched(
        group: &'static str,
        resource: &'static str,
        verbs: &'static [&'static str],
        why: &'static str,
    ) -> Self {
        Self {
            group,
            resource,
            verbs,
            scope: Scope::Watched,
            why,
        }
    }
}

/// Every table, in the order the rules are rendered.
pub fn operator_access() -> Vec<ApiAccess> {
    [
        crate::controllers::indexes::API_ACCESS,
        crate::controllers::API_ACCESS,
        crate::controllers::act::API_ACCESS,
        crate::controllers::backup::API_ACCESS,
        crate::controllers::verification::API_ACCESS,
        crate::production::kube::API_ACCESS,
        crate::production::events::API_ACCESS,
        crate::leader::API_ACCESS,
        crate::state_feed::API_ACCESS,
    ]
    .concat()
}

/// The rules for one scope: one rule per (group, resource), verbs merged and sorted.
pub fn rules(scope: Scope) -> Vec<PolicyRule> {
    let mut merged: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for access in operator_access().iter().filter(|a| a.scope == scope) {
        merged
            .entry((access.group, access.resource))
            .or_default()
            .extend(access.verbs.iter().copied());
    }
    merged
        .into_iter()
        .map(|((group, resource), verbs)| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![resource.to_string()]),
            verbs: verbs.into_iter().map(String::from).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

/// Whether `rules` allow `verb` on `resource` of `group` for any object name (RBAC's
/// own matching, with `*` wildcards; rules limited to resourceNames do not count).
pub fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|x| x == want || x == "*"))
    };
    rules.iter().any(|rule| {
        has(&rule.api_groups, group)
            && has(&rule.resources, resource)
            && rule.verbs.iter().any(|v| v == verb || v == "*")
            && rule.resource_names.as_ref().is_none_or(Vec::is_empty)
    })
}

fn render_rules(out: &mut String, scope: Scope) {
    let why: BTreeMap<(&str, &str), Vec<&str>> = operator_access()
        .into_iter()
        .filter(|a| a.scope == scope)
        .fold(BTreeMap::new(), |mut map, a| {
            map.entry((a.group, a.resource))
                .or_insert_with(Vec::new)
                .push(a.why);
            map
        });
    out.push_str("rules:\n");
    for rule in rules(scope) {
        let group = rule
            .api_groups
            .as_ref()
            .and_then(|g| g.first())
            .cloned()
            .unwrap_or_default();
        let resource = rule
            .resources
            .as_ref()
            .and_then(|r| r.first())
            .cloned()
            .unwrap_or_default();
        for reason in why
            .get(&(group.as_str(), resource.as_str()))
            .into_iter()
            .flatten()
        {
            out.push_str(&format!("  # {reason}\n"));
        }
        out.push_str(&format!(
            "  - apiGroups: [\"{group}\"]\n    resources: [\"{resource}\"]\n    verbs: [{}]\n",
            rule.verbs
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}

fn binding(out: &mut String, kind: &str, name: &str, namespace: Option<&str>) {
    out.push_str(&format!(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}Binding\nmetadata:\n  \
         name: {name}\n"
    ));
    if let Some(namespace) = namespace {
        out.push_str(&format!("  namespace: {namespace}\n"));
    }
    out.push_str(&format!(
        "  labels:\n    app.kubernetes.io/name: {app}\n    app.kubernetes.io/instance: \
         {{{{ .Release.Name }}}}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: \
         {kind}\n  name: {name}\nsubjects:\n  - kind: ServiceAccount\n    name: {{{{ \
         .Release.Name }}}}\n    namespace: {{{{ .Release.Namespace }}}}\n",
        app = crate::deploy::OPERATOR_APP_NAME,
    ));
}

fn role(out: &mut String, kind: &str, name: &str, namespace: Option<&str>, scope: Scope) {
    out.push_str(&format!(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\n"
    ));
    if let Some(namespace) = namespace {
        out.push_str(&format!("  namespace: {namespace}\n"));
    }
    out.push_str(&format!(
        "  labels:\n    app.kubernetes.io/name: {}\n    app.kubernetes.io/instance: {{{{ \
         .Release.Name }}}}\n",
        crate::deploy::OPERATOR_APP_NAME
    ));
    render_rules(out, scope);
    binding(out, kind, name, namespace);
}

/// `charts/bloodraven/templates/rbac.yaml`: a Helm template (it uses only
/// `.Release.Name`, `.Release.Namespace` and `if`/`else` on `.Values.watchNamespace`).
pub fn chart_template() -> String {
    let mut out = String::from(
        "# GENERATED by `bloodraven rbac` (make generate) from the API_ACCESS tables next to\n\
         # the operator's Kubernetes calls. Do not edit: change the tables and regenerate.\n",
    );
    role(
        &mut out,
        "ClusterRole",
        "{{ .Release.Name }}-cluster",
        None,
        Scope::Cluster,
    );
    out.push_str("{{- if .Values.watchNamespace }}\n");
    role(
        &mut out,
        "Role",
        "{{ .Release.Name }}",
        Some("{{ .Values.watchNamespace }}"),
        Scope::Watched,
    );
    out.push_str("{{- else }}\n");
    role(
        &mut out,
        "ClusterRole",
        "{{ .Release.Name }}",
        None,
        Scope::Watched,
    );
    out.push_str("{{- end }}\n");
    role(
        &mut out,
        "Role",
        "{{ .Release.Name }}-leader",
        Some("{{ .Release.Namespace }}"),
        Scope::OperatorNamespace,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children;

    #[test]
    fn every_child_kind_the_operator_builds_can_be_applied() {
        let group = children::tests::playground();
        let built = children::build(&group, Some("iad"), &children::tests::ctx()).unwrap();
        let watched = rules(Scope::Watched);
        for object in built.objects().unwrap() {
            for verb in ["patch", "create", "list", "watch"] {
                assert!(
                    allows(
                        &watched,
                        &object.resource.group,
                        &object.resource.plural,
                        verb
                    ),
                    "{verb} on {} ({}) is in no API_ACCESS table",
                    object.resource.plural,
                    object.describe()
                );
            }
        }
    }

    #[test]
    fn the_operator_holds_what_the_sidecar_role_grants() {
        // RBAC refuses to let the operator create a Role granting more than it holds.
        let group = children::tests::playground();
        let owner = children::Owner::of(&group).unwrap();
        let watched = rules(Scope::Watched);
        for rule in children::sidecar_role(&owner).rules.unwrap() {
            for group in rule.api_groups.unwrap() {
                for resource in rule.resources.clone().unwrap() {
                    for verb in &rule.verbs {
                        assert!(
                            allows(&watched, &group, &resource, verb),
                            "{verb} {resource}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn allows_follows_rbac_matching() {
        let rule =
            |groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]| PolicyRule {
                api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
                resources: Some(resources.iter().map(|s| s.to_string()).collect()),
                verbs: verbs.iter().map(|s| s.to_string()).collect(),
                resource_names: Some(names.iter().map(|s| s.to_string()).collect()),
                ..PolicyRule::default()
            };
        let rules = vec![
            rule(&[""], &["pods"], &["get", "patch"], &[]),
            rule(&["apps"], &["*"], &["list"], &[]),
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["*"],
                &["only-this"],
            ),
        ];
        assert!(allows(&rules, "", "pods", "patch"));
        assert!(!allows(&rules, "", "pods", "delete"));
        assert!(!allows(&rules, "apps", "pods", "get"));
        assert!(allows(&rules, "apps", "statefulsets", "list"));
        assert!(!allows(&rules, "coordination.k8s.io", "leases", "get"));
    }

    #[test]
    fn the_template_grants_each_scope_its_rules_and_nothing_is_granted_twice() {
        let text = chart_template();
        assert!(text.contains("kind: ClusterRole\n"));
        assert!(text.contains("{{- if .Values.watchNamespace }}"));
        for scope in [Scope::Cluster, Scope::Watched, Scope::OperatorNamespace] {
            let rules = rules(scope);
            assert!(!rules.is_empty(), "{scope:?}");
            let mut seen = BTreeSet::new();
            for rule in &rules {
                assert!(seen.insert((rule.api_groups.clone(), rule.resources.clone())));
                assert!(rule.verbs.windows(2).all(|w| w[0] < w[1]), "{rule:?}");
            }
        }
        // Nodes are cluster-scoped: never in a namespaced Role.
        assert!(allows(&rules(Scope::Cluster), "", "nodes", "watch"));
        assert!(!allows(&rules(Scope::Watched), "", "nodes", "watch"));
    }
}
