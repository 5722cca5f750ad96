//! `bloodraven validate`: checks manifests offline against the CRD schemas the operator
//! ships, and names the file, line, field and value of every problem — the first
//! question a user has is "is my manifest right?".

use std::fmt;

use serde_json::Value;

use crate::children::{
    MAX_REPLICATION_PASSWORD_CHARS, REPLICATION_PASSWORD_KEY, replication_password_too_long,
};
use crate::schema::yaml::{self, Location};
use crate::schema::{CrdSchema, FieldError, FieldErrorKind, UnknownFields};

/// The outcome for one document of a manifest file.
#[derive(Debug, Clone)]
pub struct DocumentReport {
    /// `Kind/name`, or as much of it as the document says.
    pub object: String,
    pub location: Location,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Valid,
    /// Not a kind this operator defines (Namespace, Secret...): nothing to check here.
    Skipped(String),
    Invalid(Vec<Problem>),
}

/// One problem, located in the file.
#[derive(Debug, Clone)]
pub struct Problem {
    pub location: Location,
    pub error: FieldError,
}

/// Every document of one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub file: String,
    pub documents: Vec<DocumentReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{source}")]
    Yaml {
        file: String,
        source: yaml::YamlError,
    },
    /// `kubectl apply` refuses such a file too ("no objects passed to apply").
    #[error("{file}: no objects in the file (empty, or only comments and `---`)")]
    NoObjects { file: String },
}

/// The file name that means "read standard input", as for kubectl.
pub const STDIN: &str = "-";

impl FileReport {
    pub fn problem_count(&self) -> usize {
        self.documents
            .iter()
            .map(|d| match &d.outcome {
                Outcome::Invalid(problems) => problems.len(),
                _ => 0,
            })
            .sum()
    }
}

impl fmt::Display for FileReport {
    /// One line per problem (`file:line:col: Kind/name: path: message`), then a summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut valid, mut invalid, mut skipped) = (0, 0, Vec::new());
        for doc in &self.documents {
            match &doc.outcome {
                Outcome::Valid => valid += 1,
                Outcome::Skipped(kind) => skipped.push(kind.as_str()),
                Outcome::Invalid(problems) => {
                    invalid += 1;
                    for p in problems {
                        writeln!(
                            f,
                            "{}:{}:{}: {}: {}",
                            self.file, p.location.line, p.location.column, doc.object, p.error
                        )?;
                    }
                }
            }
        }
        write!(
            f,
            "{}: {} document(s): {valid} valid, {invalid} invalid",
            self.file,
            self.documents.len()
        )?;
        if !skipped.is_empty() {
            write!(
                f,
                ", {} not Bloodraven kinds and not checked ({})",
                skipped.len(),
                skipped.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Validates a manifest file on disk, or standard input when `path` is [`STDIN`].
pub fn validate_file(path: &str, schemas: &[CrdSchema]) -> Result<FileReport, ValidateError> {
    let read = if path == STDIN {
        std::io::read_to_string(std::io::stdin().lock())
    } else {
        std::fs::read_to_string(path)
    };
    let text = read.map_err(|source| ValidateError::Read {
        file: path.to_string(),
        source,
    })?;
    validate_text(path, &text, schemas)
}

/// Validates manifest text; `file` is used only in messages.
pub fn validate_text(
    file: &str,
    text: &str,
    schemas: &[CrdSchema],
) -> Result<FileReport, ValidateError> {
    let docs = yaml::load_documents(text).map_err(|source| ValidateError::Yaml {
        file: file.to_string(),
        source,
    })?;
    if docs.is_empty() {
        return Err(ValidateError::NoObjects {
            file: file.to_string(),
        });
    }
    let documents = docs
        .iter()
        .map(|doc| validate_document(doc, schemas))
        .collect();
    Ok(FileReport {
        file: file.to_string(),
        documents,
    })
}

fn validate_document(doc: &yaml::Document, schemas: &[CrdSchema]) -> DocumentReport {
    let value = &doc.value;
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .or_else(|| {
            value
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
        })
        .unwrap_or("<unnamed>");
    let object = format!(
        "{}/{name}",
        if kind.is_empty() { "<no kind>" } else { kind }
    );
    let location = doc.locate("");
    let problem =
        |path: &str, kind: FieldErrorKind, value: Option<Value>, detail: String| Problem {
            location: doc.locate(path),
            error: FieldError {
                path: path.to_string(),
                kind,
                value,
                detail,
            },
        };

    if api_version.is_empty() || kind.is_empty() {
        let missing = if api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        return DocumentReport {
            object,
            location,
            outcome: Outcome::Invalid(vec![problem(
                missing,
                FieldErrorKind::Required,
                None,
                "every manifest needs apiVersion and kind".into(),
            )]),
        };
    }
    let same_kind: Vec<&CrdSchema> = schemas
        .iter()
        .filter(|s| s.kind == kind && api_version.starts_with(&format!("{}/", s.group)))
        .collect();
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    if same_kind.is_empty() && group == crate::api::GROUP {
        // Our own group: an unknown kind is a typo the API server would refuse, not
        // someone else's object to skip.
        let kinds = schemas
            .iter()
            .filter(|s| s.group == group)
            .map(|s| s.kind.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return DocumentReport {
            object,
            location,
            outcome: Outcome::Invalid(vec![problem(
                "kind",
                FieldErrorKind::NotSupported,
                Some(Value::from(kind)),
                format!("{group} defines {kinds}"),
            )]),
        };
    }
    if same_kind.is_empty() {
        let problems = if api_version == "v1" && kind == "Secret" {
            secret_problems(value)
                .into_iter()
                .map(|(path, detail)| problem(&path, FieldErrorKind::TooLong, None, detail))
                .collect()
        } else {
            Vec::new()
        };
        let outcome = if problems.is_empty() {
            Outcome::Skipped(kind.to_string())
        } else {
            Outcome::Invalid(problems)
        };
        return DocumentReport {
            object,
            location,
            outcome,
        };
    }
    let Some(schema) = same_kind.iter().find(|s| s.api_version() == api_version) else {
        let served = same_kind
            .iter()
            .map(|s| s.api_version())
            .collect::<Vec<_>>()
            .join(", ");
        return DocumentReport {
            object,
            location,
            outcome: Outcome::Invalid(vec![problem(
                "apiVersion",
                FieldErrorKind::NotSupported,
                Some(Value::from(api_version)),
                format!("{kind} is served as {served}"),
            )]),
        };
    };

    let mut problems = Vec::new();
    if value.pointer("/metadata/name").is_none()
        && value.pointer("/metadata/generateName").is_none()
    {
        problems.push(problem(
            "metadata.name",
            FieldErrorKind::Required,
            None,
            "name or generateName is required".into(),
        ));
    }
    if kind == "MysqlFailoverGroup" {
        problems.extend(
            schedule_problems(value)
                .into_iter()
                .map(|(path, schedule, detail)| {
                    problem(
                        &path,
                        FieldErrorKind::Invalid,
                        Some(Value::from(schedule)),
                        detail,
                    )
                }),
        );
    }
    problems.extend(
        schema
            .validate(value, UnknownFields::Reject)
            .into_iter()
            .map(|error| {
                let location = match error.kind {
                    FieldErrorKind::Unknown => doc.locate_key(&error.path),
                    _ => doc.locate(&error.path),
                };
                Problem { location, error }
            }),
    );
    let outcome = if problems.is_empty() {
        Outcome::Valid
    } else {
        Outcome::Invalid(problems)
    };
    DocumentReport {
        object,
        location,
        outcome,
    }
}

/// Backup and verification schedules the CronJob controller would refuse. The schema
/// can only say "a string"; without this the mistake shows up as a CronJob the API
/// server rejects long after `kubectl apply` succeeded. (path, schedule, why)
fn schedule_problems(group: &Value) -> Vec<(String, String, String)> {
    let profiles = group
        .pointer("/spec/backup/profiles")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (i, profile) in profiles.iter().enumerate() {
        for (field, pointer) in [
            ("schedule", "/schedule"),
            ("verification.schedule", "/verification/schedule"),
        ] {
            if let Some(schedule) = profile.pointer(pointer).and_then(Value::as_str)
                && let Err(err) = crate::cron::CronSchedule::parse(schedule)
            {
                problems.push((
                    format!("spec.backup.profiles[{i}].{field}"),
                    schedule.to_string(),
                    err.to_string(),
                ));
            }
        }
    }
    problems
}

/// What a credentials Secret can get wrong that the operator would only find out at
/// bootstrap: a replication password MySQL refuses for a channel (more than
/// [`MAX_REPLICATION_PASSWORD_CHARS`] characters; error 3056 on `CHANGE REPLICATION
/// SOURCE`, after `CREATE USER` accepted it). Any Secret carrying the key is checked;
/// the value itself is never printed.
fn secret_problems(secret: &Value) -> Vec<(String, String)> {
    let key = REPLICATION_PASSWORD_KEY;
    let mut found = Vec::new();
    if let Some(text) = secret
        .pointer(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
    {
        found.push((format!("stringData.{key}"), text.to_string()));
    }
    // `data` values are base64; an undecodable one is the API server's to refuse.
    if let Some(bytes) = secret
        .pointer(&format!("/data/{key}"))
        .cloned()
        .and_then(|v| serde_json::from_value::<k8s_openapi::ByteString>(v).ok())
    {
        found.push((
            format!("data.{key}"),
            String::from_utf8_lossy(&bytes.0).into_owned(),
        ));
    }
    found
        .into_iter()
        .filter_map(|(path, password)| {
            replication_password_too_long(&password).map(|length| {
                (
                    path,
                    format!(
                        "the replication password has {length} characters; MySQL accepts at most \
                         {MAX_REPLICATION_PASSWORD_CHARS} for a replication channel \
                         (CHANGE REPLICATION SOURCE fails with error 3056)"
                    ),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::bloodraven_schemas;

    const GROUP: &str = "\
apiVersion: bloodraven.shipstream.io/v1alpha1
kind: MysqlFailoverGroup
metadata:
  name: orders
spec:
  sites:
    - name: iad
      nodeSelector: {topology.kubernetes.io/zone: zone-iad}
    - name: pdx
      nodeSelector: {topology.kubernetes.io/zone: zone-pdx}
  mysql:
    credentialsSecret: orders-mysql
";

    fn report(text: &str) -> FileReport {
        validate_text("m.yaml", text, &bloodraven_schemas().unwrap()).unwrap()
    }

    #[test]
    fn a_replication_password_mysql_would_refuse_is_an_error_without_printing_it() {
        let long = "x".repeat(33);
        let secret = |body: &str| {
            format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: orders-mysql}}\n{body}")
        };
        let r = report(&secret(&format!(
            "stringData:\n  root-password: r\n  replication-password: {long}\n"
        )));
        let text = r.to_string();
        assert_eq!(r.problem_count(), 1, "{text}");
        assert!(
            text.contains("m.yaml:6:25: Secret/orders-mysql: stringData.replication-password: "),
            "{text}"
        );
        assert!(
            text.contains("33 characters") && text.contains("at most 32"),
            "{text}"
        );
        assert!(!text.contains(&long), "the password is printed: {text}");
        // base64 in `data`: 40 bytes of 'y'.
        let r = report(&secret(
            "data:\n  replication-password: eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eQ==\n",
        ));
        assert_eq!(r.problem_count(), 1, "{r}");
        assert!(r.to_string().contains("data.replication-password"), "{r}");
        // 32 characters is fine, and a Secret without the key is simply skipped.
        let r = report(&secret(&format!(
            "stringData:\n  replication-password: {}\n",
            "x".repeat(32)
        )));
        assert!(matches!(r.documents[0].outcome, Outcome::Skipped(ref k) if k == "Secret"));
    }

    #[test]
    fn a_minimal_group_is_valid_and_other_kinds_are_skipped() {
        let text =
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: orders}}\n---\n{GROUP}");
        let r = report(&text);
        assert_eq!(r.problem_count(), 0, "{r}");
        assert!(matches!(r.documents[0].outcome, Outcome::Skipped(ref k) if k == "Namespace"));
        assert!(matches!(r.documents[1].outcome, Outcome::Valid));
        assert!(
            r.to_string()
                .contains("1 valid, 0 invalid, 1 not Bloodraven kinds"),
            "{r}"
        );
    }

    #[test]
    fn errors_name_file_line_field_and_value() {
        let cases = [
            (
                GROUP.replace("name: pdx", "name: iad"),
                "m.yaml:9:7: MysqlFailoverGroup/orders: spec.sites[1]: Duplicate value: \"iad\"",
            ),
            (
                GROUP.replace("name: pdx", "name: PDX"),
                "m.yaml:9:13: MysqlFailoverGroup/orders: spec.sites[1].name: Invalid value: \"PDX\"",
            ),
            (
                format!("{GROUP}    durability: sync\n"),
                "m.yaml:13:17: MysqlFailoverGroup/orders: spec.mysql.durability: Unsupported value: \"sync\"",
            ),
            (
                format!("{GROUP}  failover:\n    leaseDuration: 0s\n"),
                "m.yaml:14:20: MysqlFailoverGroup/orders: spec.failover.leaseDuration: Invalid value: \"0s\"",
            ),
            (
                format!("{GROUP}  failover:\n    detectionWindow: 18446744073709551615h\n"),
                "m.yaml:14:22: MysqlFailoverGroup/orders: spec.failover.detectionWindow: Invalid value: \"18446744073709551615h\"",
            ),
            (
                format!("{GROUP}  failover:\n    detectionWindow: 87601h\n"),
                "m.yaml:14:22: MysqlFailoverGroup/orders: spec.failover.detectionWindow: Invalid value: must be at most 87600h (ten years)",
            ),
            (
                format!("{GROUP}  failover:\n    detectionWindw: 3s\n"),
                "m.yaml:14:5: MysqlFailoverGroup/orders: spec.failover.detectionWindw: unknown field",
            ),
            (
                GROUP.replace(
                    "    credentialsSecret: orders-mysql\n",
                    "    image: mysql:8.4\n",
                ),
                "m.yaml:12:5: MysqlFailoverGroup/orders: spec.mysql.credentialsSecret: Required value",
            ),
            (
                GROUP.replace("v1alpha1", "v1"),
                "m.yaml:1:13: MysqlFailoverGroup/orders: apiVersion: Unsupported value: \"bloodraven.shipstream.io/v1\"",
            ),
        ];
        for (text, expected) in cases {
            let r = report(&text).to_string();
            assert!(r.contains(expected), "expected {expected:?} in:\n{r}");
        }
    }

    #[test]
    fn a_backup_schedule_cron_would_refuse_names_its_profile_and_field() {
        let text = format!(
            "{GROUP}  backup:\n    profiles:\n      - name: minio\n        schedule: \"*/30 * * *\"\n        storage: {{s3: {{bucket: b, endpoint: http://s3:9000, credentialsSecret: s3}}}}\n        verification: {{schedule: \"0 25 * * *\"}}\n"
        );
        let rendered = report(&text).to_string();
        assert!(
            rendered.contains("spec.backup.profiles[0].schedule")
                && rendered.contains("expected 5 fields"),
            "{rendered}"
        );
        assert!(
            rendered.contains("spec.backup.profiles[0].verification.schedule")
                && rendered.contains("25 is outside 0-23"),
            "{rendered}"
        );
    }

    #[test]
    fn an_empty_node_selector_is_refused() {
        let text = GROUP.replace("{topology.kubernetes.io/zone: zone-pdx}", "{}");
        let r = report(&text).to_string();
        assert!(
            r.contains(
                "spec.sites[1].nodeSelector: Invalid value: 0: must have at least 1 properties"
            ),
            "{r}"
        );
    }

    #[test]
    fn an_unknown_kind_in_our_group_is_an_error_and_other_groups_are_skipped() {
        let r = report(&GROUP.replace("kind: MysqlFailoverGroup", "kind: MysqlFailoverGrup"));
        assert_eq!(r.problem_count(), 1, "{r}");
        let text = r.to_string();
        assert!(
            text.contains("kind: Unsupported value: \"MysqlFailoverGrup\": bloodraven.shipstream.io defines MysqlFailoverGroup"),
            "{text}"
        );
        let other =
            report("apiVersion: example.com/v1\nkind: MysqlFailoverGrup\nmetadata: {name: x}\n");
        assert!(
            matches!(other.documents[0].outcome, Outcome::Skipped(_)),
            "{other}"
        );
    }

    #[test]
    fn empty_files_and_duplicate_keys_are_errors() {
        let schemas = bloodraven_schemas().unwrap();
        for text in ["", "# only a comment\n", "---\n---\n"] {
            let err = validate_text("m.yaml", text, &schemas).unwrap_err();
            assert!(
                matches!(err, ValidateError::NoObjects { .. }),
                "{text:?}: {err}"
            );
        }
        let dup = GROUP.replace("  name: orders\n", "  name: orders\n  name: payments\n");
        let err = validate_text("m.yaml", &dup, &schemas)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("m.yaml:5:3: duplicate key \"name\""),
            "{err}"
        );
    }

    #[test]
    fn exactly_two_sites_are_required() {
        let one_site = GROUP.replace(
            "    - name: pdx\n      nodeSelector: {topology.kubernetes.io/zone: zone-pdx}\n",
            "",
        );
        let r = report(&one_site).to_string();
        assert!(
            r.contains("spec.sites: Invalid value: 1: must have at least 2 items"),
            "{r}"
        );
    }

    #[test]
    fn cel_rules_on_lease_timing_are_enforced() {
        let text =
            format!("{GROUP}  failover:\n    leaseDuration: 2s\n    leaseSafetyMargin: 3s\n");
        let r = report(&text).to_string();
        assert!(
            r.contains("leaseSafetyMargin must be shorter than leaseDuration"),
            "{r}"
        );
    }

    #[test]
    fn dns_targets_must_cover_every_site() {
        let text = format!(
            "{GROUP}  dns:\n    hostname: mysql.example.internal\n    targets:\n      iad: [iad.example.internal]\n"
        );
        let r = report(&text).to_string();
        assert!(
            r.contains("dns.targets needs an entry for every site"),
            "{r}"
        );
    }
}
