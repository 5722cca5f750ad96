//! What can go wrong talking to object storage, named for the person who has to fix it
//! (credentials, bucket, endpoint, network), and the pure classification of
//! object_store's errors into those names.

use std::error::Error as StdError;
use std::io;

use object_store::client::{HttpError, HttpErrorKind};

/// A failed object-storage operation. Every variant names the endpoint, bucket or key.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object storage endpoint {endpoint:?} is invalid: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("Secret {secret} has no (or an empty) {key:?}: the S3 credentials need it")]
    MissingCredential { secret: String, key: &'static str },
    #[error("object key {key:?} is invalid: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("cannot set up the S3 client for bucket {bucket} at {endpoint}: {detail}")]
    Setup {
        endpoint: String,
        bucket: String,
        detail: String,
    },
    #[error(
        "{endpoint} refused the credentials for bucket {bucket} ({operation}): check the \
         access key id and secret access key in the profile's credentials Secret ({detail})"
    )]
    AccessDenied {
        endpoint: String,
        bucket: String,
        operation: &'static str,
        detail: String,
    },
    #[error(
        "bucket {bucket} does not exist at {endpoint} ({operation}): create it, or correct \
         the profile's storage.s3.bucket"
    )]
    BucketNotFound {
        endpoint: String,
        bucket: String,
        operation: &'static str,
    },
    #[error("object {key} does not exist in bucket {bucket} at {endpoint}")]
    ObjectNotFound {
        endpoint: String,
        bucket: String,
        key: String,
    },
    #[error("cannot reach object storage at {endpoint} ({operation} in bucket {bucket}): {detail}")]
    Unreachable {
        endpoint: String,
        bucket: String,
        operation: &'static str,
        detail: String,
    },
    #[error("{operation} of {key} in bucket {bucket} at {endpoint} failed: {detail}")]
    Request {
        endpoint: String,
        bucket: String,
        key: String,
        operation: &'static str,
        detail: String,
    },
    #[error(
        "reading the data for {key} failed after {bytes} bytes; the upload was abandoned and \
         no object was created: {source}"
    )]
    Source {
        key: String,
        bytes: u64,
        #[source]
        source: io::Error,
    },
    #[error("writing {key} to its destination failed after {bytes} bytes: {source}")]
    Sink {
        key: String,
        bytes: u64,
        #[source]
        source: io::Error,
    },
    #[error("{key}: received {actual} bytes, but the object store announced {expected}")]
    Truncated {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("{key}: SHA-256 of the downloaded data is {actual}, but {expected} was recorded")]
    ChecksumMismatch {
        key: String,
        expected: String,
        actual: String,
    },
}

/// What an object_store error means, before endpoint, bucket and key are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    AccessDenied,
    BucketNotFound,
    ObjectNotFound,
    /// No connection, or no answer in time.
    Unreachable,
    Other,
}

/// Classifies an error from the S3 client. S3 error codes (`NoSuchBucket`,
/// `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `AccessDenied`) are part of the S3 API
/// and appear in the response body object_store includes in its message; the transport's
/// own failures are found by type in the error's source chain.
pub fn classify(err: &object_store::Error) -> Failure {
    let text = chain_text(err);
    let transport = http_error_kind(err);
    let by_variant = match err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Some(Failure::AccessDenied),
        object_store::Error::NotFound { .. } => Some(Failure::ObjectNotFound),
        _ => None,
    };
    classify_parts(by_variant, transport, &text)
}

/// The pure part of [`classify`], for the table test.
pub fn classify_parts(
    by_variant: Option<Failure>,
    transport: Option<HttpErrorKind>,
    text: &str,
) -> Failure {
    if text.contains("NoSuchBucket") {
        return Failure::BucketNotFound;
    }
    if [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
    ]
    .iter()
    .any(|code| text.contains(code))
    {
        return Failure::AccessDenied;
    }
    if let Some(failure) = by_variant {
        return failure;
    }
    match transport {
        Some(HttpErrorKind::Connect | HttpErrorKind::Timeout | HttpErrorKind::Request) => {
            Failure::Unreachable
        }
        _ => Failure::Other,
    }
}

/// The error and all its sources, joined: object_store puts the S3 response body in a
/// source, not in the top-level message.
pub fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

fn http_error_kind(err: &(dyn StdError + 'static)) -> Option<HttpErrorKind> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(current) = next {
        if let Some(http) = current.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        next = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let cases: &[(Option<Failure>, Option<HttpErrorKind>, &str, Failure)] = &[
            (
                None,
                None,
                "Server returned non-2xx status code: 404 Not Found: <Error><Code>NoSuchBucket</Code></Error>",
                Failure::BucketNotFound,
            ),
            // A GET of a key in a missing bucket is a 404 too: the code decides.
            (
                Some(Failure::ObjectNotFound),
                None,
                "<Code>NoSuchBucket</Code>",
                Failure::BucketNotFound,
            ),
            (
                Some(Failure::ObjectNotFound),
                None,
                "<Code>NoSuchKey</Code>",
                Failure::ObjectNotFound,
            ),
            (
                None,
                None,
                "403 Forbidden: <Code>InvalidAccessKeyId</Code>",
                Failure::AccessDenied,
            ),
            (
                None,
                None,
                "<Code>SignatureDoesNotMatch</Code>",
                Failure::AccessDenied,
            ),
            // HEAD answers have no body: the status (variant) decides.
            (Some(Failure::AccessDenied), None, "", Failure::AccessDenied),
            (
                None,
                Some(HttpErrorKind::Connect),
                "HTTP error: connection refused",
                Failure::Unreachable,
            ),
            (
                None,
                Some(HttpErrorKind::Timeout),
                "no response",
                Failure::Unreachable,
            ),
            (None, None, "500 Internal Server Error", Failure::Other),
        ];
        for (variant, transport, text, expected) in cases {
            assert_eq!(
                classify_parts(variant.clone(), *transport, text),
                *expected,
                "{text}"
            );
        }
    }

    #[test]
    fn object_store_variants_are_classified() {
        let denied = object_store::Error::PermissionDenied {
            path: "b/k".to_string(),
            source: "forbidden".into(),
        };
        assert_eq!(classify(&denied), Failure::AccessDenied);
        let missing = object_store::Error::NotFound {
            path: "b/k".to_string(),
            source: "Server returned non-2xx status code: 404: <Code>NoSuchKey</Code>".into(),
        };
        assert_eq!(classify(&missing), Failure::ObjectNotFound);
        let transport = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                HttpErrorKind::Connect,
                io::Error::new(io::ErrorKind::ConnectionRefused, "refused"),
            )),
        };
        assert_eq!(classify(&transport), Failure::Unreachable);
    }
}
