//! Errors of the simulated API server, shaped like Kubernetes' `metav1.Status` so that
//! `kube::Client` and kubectl see exactly what a real API server would send.

use serde_json::{Value, json};

/// One field-level cause of an error (`details.causes[]` of a `Status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldManagerConflict`, ...
    pub reason: String,
    pub message: String,
    /// JSON path of the field, e.g. `spec.sites[0].name`.
    pub field: String,
}

/// An API error: an HTTP status code with a Kubernetes `reason` and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, `Gone`, ...
    pub reason: String,
    pub message: String,
    /// `details.causes`, e.g. the fields that failed validation.
    pub causes: Vec<StatusCause>,
    /// `details.group/kind/name`: the object the error is about.
    pub subject: Option<Box<ErrorSubject>>,
}

/// The object an error is about (`details` of a `Status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorSubject {
    pub group: String,
    /// The plural resource for most errors, the kind for validation errors (as
    /// Kubernetes does).
    pub kind: String,
    pub name: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            causes: Vec::new(),
            subject: None,
        }
    }

    pub fn with_subject(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.subject = Some(Box::new(ErrorSubject {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
        }));
        self
    }

    /// `resource` is the plural (optionally `plural.group`), as in Kubernetes messages.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .with_subject(group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .with_subject(group, resource, name)
    }

    /// 409 on a stale resourceVersion (optimistic concurrency).
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(group, resource)
            ),
        )
        .with_subject(group, resource, name)
    }

    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        ApiError::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with field causes.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<StatusCause>) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let message = format!(
            "{} \"{name}\" is invalid: {}",
            qualified(group, kind),
            join_causes(&summary)
        );
        let mut error = ApiError::new(422, "Invalid", message).with_subject(group, kind, name);
        error.causes = causes;
        error
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_supported(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// 410: the requested resourceVersion is older than the watch history window.
    pub fn gone(requested: u64, oldest: u64) -> Self {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message)
    }

    /// The error as a Kubernetes `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.subject.is_some() || !self.causes.is_empty() {
            let mut details = serde_json::Map::new();
            if let Some(subject) = &self.subject {
                details.insert("name".into(), json!(subject.name));
                if !subject.group.is_empty() {
                    details.insert("group".into(), json!(subject.group));
                }
                details.insert("kind".into(), json!(subject.kind));
            }
            if !self.causes.is_empty() {
                let causes: Vec<Value> = self
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn join_causes(summary: &[String]) -> String {
    match summary {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

impl StatusCause {
    pub fn new(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        StatusCause {
            reason: reason.to_string(),
            message: message.into(),
            field: field.into(),
        }
    }
    pub fn required(field: impl Into<String>) -> Self {
        StatusCause::new("FieldValueRequired", field, "Required value")
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StatusCause::new("FieldValueInvalid", field, message)
    }
}
