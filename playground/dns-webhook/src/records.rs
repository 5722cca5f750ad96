//! The provider's state: DNS records held in memory, and the pure rules for applying
//! external-dns's change sets to them (validation, domain filter, conflicts). No I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// external-dns's `endpoint.Endpoint` in its JSON form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub dns_name: String,
    #[serde(default)]
    pub targets: Vec<String>,
    pub record_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub set_identifier: String,
    #[serde(default, rename = "recordTTL", skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_specific: Vec<ProviderSpecific>,
}

/// One `providerSpecific` property.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSpecific {
    pub name: String,
    pub value: String,
}

/// external-dns's `plan.Changes`. Go decodes JSON keys case-insensitively and older
/// external-dns releases send `Create`/`UpdateOld`/..., newer ones `create`/...: both
/// are accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    #[serde(default, alias = "Create", deserialize_with = "null_as_empty")]
    pub create: Vec<Endpoint>,
    #[serde(default, alias = "UpdateOld", deserialize_with = "null_as_empty")]
    pub update_old: Vec<Endpoint>,
    #[serde(default, alias = "UpdateNew", deserialize_with = "null_as_empty")]
    pub update_new: Vec<Endpoint>,
    #[serde(default, alias = "Delete", deserialize_with = "null_as_empty")]
    pub delete: Vec<Endpoint>,
}

/// Go marshals a nil slice as `null`; it means no endpoints.
fn null_as_empty<'de, D>(deserializer: D) -> Result<Vec<Endpoint>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<Vec<Endpoint>>::deserialize(deserializer)?.unwrap_or_default())
}

/// external-dns's `endpoint.DomainFilter` as negotiation returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainFilter {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl DomainFilter {
    /// Whether `name` (a DNS name, trailing dot optional) is served: inside an included
    /// domain (or no includes at all) and outside every excluded one.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let within = |domain: &String| {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            name == domain || name.ends_with(&format!(".{domain}"))
        };
        (self.include.is_empty() || self.include.iter().any(within))
            && !self.exclude.iter().any(within)
    }
}

/// Why a change set was refused. Nothing of a refused change set is applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("{list}[{index}]: {problem}")]
    Invalid {
        list: &'static str,
        index: usize,
        problem: String,
    },
    #[error("{list}[{index}]: {name} {record_type} is outside the domain filter")]
    OutsideFilter {
        list: &'static str,
        index: usize,
        name: String,
        record_type: String,
    },
    #[error("create {name} {record_type}: the record already exists")]
    AlreadyExists { name: String, record_type: String },
}

/// A record's identity: name (lowercase, no trailing dot), type, set identifier.
type Key = (String, String, String);

fn key(endpoint: &Endpoint) -> Key {
    (
        endpoint.dns_name.trim_end_matches('.').to_ascii_lowercase(),
        endpoint.record_type.clone(),
        endpoint.set_identifier.clone(),
    )
}

/// The provider's records.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    filter: DomainFilter,
    records: BTreeMap<Key, Endpoint>,
}

impl Zone {
    pub fn new(filter: DomainFilter) -> Self {
        Self {
            filter,
            records: BTreeMap::new(),
        }
    }

    pub fn filter(&self) -> &DomainFilter {
        &self.filter
    }

    /// Every record, ordered by name, type and set identifier.
    pub fn records(&self) -> Vec<Endpoint> {
        self.records.values().cloned().collect()
    }

    /// Applies a change set atomically: deletions (`delete`, `updateOld`) first, then
    /// creations (`updateNew`, `create`), so an update that keeps its key works.
    pub fn apply(&mut self, changes: &Changes) -> Result<(), ChangeError> {
        let lists: [(&'static str, &Vec<Endpoint>); 4] = [
            ("create", &changes.create),
            ("updateOld", &changes.update_old),
            ("updateNew", &changes.update_new),
            ("delete", &changes.delete),
        ];
        for (list, endpoints) in lists {
            for (index, endpoint) in endpoints.iter().enumerate() {
                self.check(list, index, endpoint)?;
            }
        }
        let mut next = self.records.clone();
        for endpoint in changes.delete.iter().chain(&changes.update_old) {
            next.remove(&key(endpoint));
        }
        for endpoint in changes.update_new.iter() {
            next.insert(key(endpoint), endpoint.clone());
        }
        for endpoint in &changes.create {
            let key = key(endpoint);
            if next.contains_key(&key) {
                return Err(ChangeError::AlreadyExists {
                    name: endpoint.dns_name.clone(),
                    record_type: endpoint.record_type.clone(),
                });
            }
            next.insert(key, endpoint.clone());
        }
        self.records = next;
        Ok(())
    }

    /// external-dns's AdjustEndpoints: this provider stores what it is given, so it only
    /// drops a trailing dot from names (external-dns compares names without it), after
    /// refusing endpoints it could never store. The domain filter is not applied here:
    /// external-dns filters by the negotiated filter itself.
    pub fn adjust(&self, endpoints: Vec<Endpoint>) -> Result<Vec<Endpoint>, ChangeError> {
        for (index, endpoint) in endpoints.iter().enumerate() {
            well_formed("endpoints", index, endpoint)?;
        }
        Ok(endpoints
            .into_iter()
            .map(|mut e| {
                e.dns_name = e.dns_name.trim_end_matches('.').to_string();
                e
            })
            .collect())
    }

    fn check(&self, list: &'static str, index: usize, e: &Endpoint) -> Result<(), ChangeError> {
        well_formed(list, index, e)?;
        if !self.filter.matches(&e.dns_name) {
            return Err(ChangeError::OutsideFilter {
                list,
                index,
                name: e.dns_name.clone(),
                record_type: e.record_type.clone(),
            });
        }
        Ok(())
    }
}

/// A record this provider can hold: a name, a type, and no empty target.
fn well_formed(list: &'static str, index: usize, e: &Endpoint) -> Result<(), ChangeError> {
    let invalid = |problem: &str| ChangeError::Invalid {
        list,
        index,
        problem: problem.to_string(),
    };
    if e.dns_name.trim_end_matches('.').is_empty() {
        return Err(invalid("dnsName is empty"));
    }
    if e.record_type.is_empty() {
        return Err(invalid("recordType is empty"));
    }
    if e.targets.iter().any(String::is_empty) {
        return Err(invalid("a target is empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, target: &str) -> Endpoint {
        Endpoint {
            dns_name: name.into(),
            targets: vec![target.into()],
            record_type: "A".into(),
            ..Endpoint::default()
        }
    }

    fn zone() -> Zone {
        Zone::new(DomainFilter {
            include: vec!["bloodraven.internal".into()],
            exclude: vec!["private.bloodraven.internal".into()],
        })
    }

    #[test]
    fn domain_filter_includes_subdomains_and_honours_excludes() {
        let filter = zone().filter().clone();
        assert!(filter.matches("mysql.playground.bloodraven.internal."));
        assert!(filter.matches("BLOODRAVEN.internal"));
        assert!(!filter.matches("notbloodraven.internal"));
        assert!(!filter.matches("db.private.bloodraven.internal"));
        assert!(DomainFilter::default().matches("anything.example"));
    }

    #[test]
    fn create_update_delete() {
        let mut zone = zone();
        let name = "mysql.playground.bloodraven.internal";
        zone.apply(&Changes {
            create: vec![a(name, "10.0.0.1")],
            ..Changes::default()
        })
        .unwrap();
        assert_eq!(zone.records(), vec![a(name, "10.0.0.1")]);
        // An update that keeps the key replaces the record.
        zone.apply(&Changes {
            update_old: vec![a(name, "10.0.0.1")],
            update_new: vec![a(name, "10.0.0.2")],
            ..Changes::default()
        })
        .unwrap();
        assert_eq!(zone.records(), vec![a(name, "10.0.0.2")]);
        zone.apply(&Changes {
            delete: vec![a(&format!("{name}."), "10.0.0.2")],
            ..Changes::default()
        })
        .unwrap();
        assert!(zone.records().is_empty());
    }

    #[test]
    fn refused_change_sets_change_nothing() {
        let mut zone = zone();
        let name = "mysql.playground.bloodraven.internal";
        zone.apply(&Changes {
            create: vec![a(name, "10.0.0.1")],
            ..Changes::default()
        })
        .unwrap();
        let before = zone.records();
        let cases = [
            (
                Changes {
                    delete: vec![a(name, "10.0.0.1")],
                    create: vec![a("evil.example.com", "1.2.3.4")],
                    ..Changes::default()
                },
                ChangeError::OutsideFilter {
                    list: "create",
                    index: 0,
                    name: "evil.example.com".into(),
                    record_type: "A".into(),
                },
            ),
            (
                Changes {
                    create: vec![a(name, "10.0.0.9")],
                    ..Changes::default()
                },
                ChangeError::AlreadyExists {
                    name: name.into(),
                    record_type: "A".into(),
                },
            ),
            (
                Changes {
                    update_new: vec![Endpoint {
                        record_type: String::new(),
                        ..a(name, "10.0.0.3")
                    }],
                    ..Changes::default()
                },
                ChangeError::Invalid {
                    list: "updateNew",
                    index: 0,
                    problem: "recordType is empty".into(),
                },
            ),
        ];
        for (changes, expected) in cases {
            assert_eq!(zone.apply(&changes), Err(expected));
            assert_eq!(zone.records(), before);
        }
    }

    #[test]
    fn changes_accept_go_field_names() {
        let changes: Changes = serde_json::from_str(
            r#"{"Create":[{"dnsName":"a.bloodraven.internal","targets":["1.1.1.1"],"recordType":"A","recordTTL":30}],"UpdateOld":null}"#,
        )
        .unwrap();
        assert_eq!(changes.create.len(), 1);
        assert!(changes.update_old.is_empty());
        assert_eq!(changes.create[0].record_ttl, Some(30));
    }
}
