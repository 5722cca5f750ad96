//! RBAC after the fact: the simulated API server authorises every request but logs
//! each one by verb, resource and user agent; these helpers check that log against
//! PolicyRules, so a test fails when a component made a call its role does not grant.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// `(group, resource)` of a request-count resource name as the simulated API server
/// writes it: `pods`, `leases.coordination.k8s.io`,
/// `mysqlfailovergroups.bloodraven.shipstream.io/status`.
pub fn split(qualified: &str) -> (String, String) {
    let (name, sub) = match qualified.split_once('/') {
        Some((name, sub)) => (name, Some(sub)),
        None => (qualified, None),
    };
    let (plural, group) = name.split_once('.').unwrap_or((name, ""));
    let resource = match sub {
        Some(sub) => format!("{plural}/{sub}"),
        None => plural.to_string(),
    };
    (group.to_string(), resource)
}

/// The `(verb, resource)` calls that none of `rule_sets` allows.
pub fn calls_outside<'a>(
    calls: impl IntoIterator<Item = (&'a str, &'a str)>,
    rule_sets: &[Vec<PolicyRule>],
) -> Vec<String> {
    calls
        .into_iter()
        .filter(|(verb, qualified)| {
            let (group, resource) = split(qualified);
            !rule_sets
                .iter()
                .any(|rules| bloodraven::rbac::allows(rules, &group, &resource, verb))
        })
        .map(|(verb, qualified)| format!("{verb} {qualified}"))
        .collect()
}

/// The operator's own rules from its API_ACCESS tables, every scope.
pub fn operator_rule_sets() -> Vec<Vec<PolicyRule>> {
    use bloodraven::rbac::{Scope, rules};
    [Scope::Cluster, Scope::Watched, Scope::OperatorNamespace]
        .into_iter()
        .map(rules)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_simulated_servers_names() {
        assert_eq!(split("pods"), ("".into(), "pods".into()));
        assert_eq!(
            split("leases.coordination.k8s.io"),
            ("coordination.k8s.io".into(), "leases".into())
        );
        assert_eq!(
            split("mysqlfailovergroups.bloodraven.shipstream.io/status"),
            (
                "bloodraven.shipstream.io".into(),
                "mysqlfailovergroups/status".into()
            )
        );
    }

    #[test]
    fn reports_calls_no_rule_allows() {
        let outside = calls_outside(
            [
                ("watch", "pods"),
                ("delete", "persistentvolumeclaims"),
                (
                    "patch",
                    "mysqlfailovergroups.bloodraven.shipstream.io/status",
                ),
            ],
            &operator_rule_sets(),
        );
        assert_eq!(outside, vec!["delete persistentvolumeclaims".to_string()]);
    }
}
