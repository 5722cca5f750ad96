//! The S3 client backups use: object_store's S3 implementation with path-style addressing
//! (MinIO, RustFS, any S3-compatible store; AWS too), our HTTP transport, streaming
//! multipart upload and streaming download in bounded memory, and the SHA-256 of every
//! object computed while it streams. It moves bytes; what a backup is lives elsewhere.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{Failure, StorageError, chain_text, classify};
use super::http::{HttpTimeouts, RetryPolicy, StorageHttp};
use crate::api::S3Storage;
use crate::seams::object_storage::SharedStorageDialer;

/// MinIO's and AWS's default region; S3-compatible stores accept it when unconfigured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// S3's minimum size of every part but the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Access keys, from the profile's credentials Secret. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Credentials {
    /// The Secret keys holding the credentials (see `S3Storage::credentials_secret`).
    pub const ACCESS_KEY_ID: &'static str = "access-key-id";
    pub const SECRET_ACCESS_KEY: &'static str = "secret-access-key";

    /// Reads the credentials from a Secret's decoded data, naming the missing key.
    pub fn from_secret_data(
        secret: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<Self, StorageError> {
        let field = |key: &'static str| {
            data.get(key)
                .filter(|value| !value.is_empty())
                .cloned()
                .ok_or_else(|| StorageError::MissingCredential {
                    secret: secret.to_string(),
                    key,
                })
        };
        Ok(Self {
            access_key_id: field(Self::ACCESS_KEY_ID)?,
            secret_access_key: field(Self::SECRET_ACCESS_KEY)?,
        })
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Where objects go: a bucket (and key prefix) at an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Target {
    /// `http(s)://host[:port]`; none means AWS S3 in `region`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: String,
    /// Prepended to every key, e.g. `playground`.
    pub prefix: Option<String>,
    pub credentials: S3Credentials,
}

impl S3Target {
    /// The target of a backup profile's `storage.s3`, with its Secret's credentials.
    pub fn from_spec(spec: &S3Storage, credentials: S3Credentials) -> Self {
        Self {
            endpoint: spec.endpoint.clone(),
            region: spec.region.clone(),
            bucket: spec.bucket.clone(),
            prefix: spec.prefix.clone(),
            credentials,
        }
    }
}

/// Part size, concurrency and transport bounds. Memory held by an upload is at most
/// `(parts_in_flight + 1) * part_size` plus one `read_chunk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferTuning {
    /// Bytes per multipart part (at least [`MIN_PART_SIZE`]). 10,000 parts is S3's
    /// limit: 8 MiB parts allow objects up to ~78 GiB.
    pub part_size: usize,
    /// Parts uploaded concurrently.
    pub parts_in_flight: usize,
    /// Bytes read from the source per read.
    pub read_chunk: usize,
    pub timeouts: HttpTimeouts,
    pub retry: RetryPolicy,
}

impl Default for TransferTuning {
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            parts_in_flight: 2,
            read_chunk: 256 * 1024,
            timeouts: HttpTimeouts::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// A resolved endpoint: the URL object_store addresses and whether it needs TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://authority`, no trailing slash.
    pub url: String,
    pub tls: bool,
}

/// Validates the configured endpoint (or derives AWS's for the region).
pub fn resolve_endpoint(endpoint: Option<&str>, region: &str) -> Result<Endpoint, StorageError> {
    let Some(raw) = endpoint else {
        return Ok(Endpoint {
            url: format!("https://s3.{region}.amazonaws.com"),
            tls: true,
        });
    };
    let invalid = |reason: &str| StorageError::InvalidEndpoint {
        endpoint: raw.to_string(),
        reason: reason.to_string(),
    };
    let uri: http::Uri = raw
        .parse()
        .map_err(|err: http::uri::InvalidUri| invalid(&err.to_string()))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(other) => return Err(invalid(&format!("scheme {other:?} is not http or https"))),
        None => return Err(invalid("no scheme: write http://host:port or https://host")),
    };
    let Some(authority) = uri.authority() else {
        return Err(invalid("no host"));
    };
    if authority.host().is_empty() {
        return Err(invalid("no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid(
            "has a path or query: the bucket and prefix are separate fields",
        ));
    }
    let scheme = if tls { "https" } else { "http" };
    Ok(Endpoint {
        url: format!("{scheme}://{authority}"),
        tls,
    })
}

/// The full object key for `name` under `prefix`.
pub fn object_path(prefix: Option<&str>, name: &str) -> Result<Path, StorageError> {
    let name = name.trim_matches('/');
    if name.is_empty() {
        return Err(StorageError::InvalidKey {
            key: name.to_string(),
            reason: "empty".to_string(),
        });
    }
    let full = match prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(prefix) => format!("{prefix}/{name}"),
        None => name.to_string(),
    };
    Path::parse(&full).map_err(|err| StorageError::InvalidKey {
        key: full.clone(),
        reason: err.to_string(),
    })
}

/// An object as written or read: where, how big, and its SHA-256 (lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// The full key in the bucket.
    pub key: String,
    pub size: u64,
    pub sha256: String,
    /// The store's entity tag, when it returned one.
    pub e_tag: Option<String>,
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSummary {
    /// The key relative to the target's prefix (what `upload` was given).
    pub name: String,
    /// The full key in the bucket.
    pub key: String,
    pub size: u64,
    pub last_modified: jiff::Timestamp,
}

/// A bucket (and prefix) of an S3-compatible store.
#[derive(Clone)]
pub struct ObjectStorage {
    store: Arc<AmazonS3>,
    endpoint: String,
    bucket: String,
    prefix: Option<String>,
    tuning: TransferTuning,
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ObjectStorage {
    /// A client for `target` whose connections are opened by `dialer`. Makes no request.
    pub fn new(
        target: &S3Target,
        dialer: SharedStorageDialer,
        tuning: TransferTuning,
    ) -> Result<Self, StorageError> {
        let region = target.region.as_deref().unwrap_or(DEFAULT_REGION);
        let endpoint = resolve_endpoint(target.endpoint.as_deref(), region)?;
        let setup = |detail: String| StorageError::Setup {
            endpoint: endpoint.url.clone(),
            bucket: target.bucket.clone(),
            detail,
        };
        if tuning.part_size < MIN_PART_SIZE {
            return Err(setup(format!(
                "part size {} is below S3's minimum of {MIN_PART_SIZE} bytes",
                tuning.part_size
            )));
        }
        let http = StorageHttp::new(dialer, endpoint.tls, tuning.timeouts, tuning.retry)
            .map_err(|err| setup(format!("TLS: {err}")))?;
        let store = AmazonS3Builder::new()
            .with_bucket_name(&target.bucket)
            .with_region(region)
            .with_endpoint(&endpoint.url)
            .with_allow_http(!endpoint.tls)
            // Path-style (`endpoint/bucket/key`): MinIO and RustFS serve it without
            // wildcard DNS for bucket subdomains.
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(&target.credentials.access_key_id)
            .with_secret_access_key(&target.credentials.secret_access_key)
            // Retries happen in the transport, on a reproducible schedule (see http.rs).
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .with_http_connector(http)
            .build()
            .map_err(|err| setup(chain_text(&err)))?;
        Ok(Self {
            store: Arc::new(store),
            endpoint: endpoint.url,
            bucket: target.bucket.clone(),
            prefix: target.prefix.clone(),
            tuning,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One cheap request (a one-key listing under the prefix) that fails exactly when
    /// the credentials are refused, the bucket is missing or the store is unreachable.
    pub async fn check_access(&self) -> Result<(), StorageError> {
        let prefix = self.prefix_path();
        let mut listing = self.store.list(prefix.as_ref());
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(err)) => Err(self.failure("access check", "", err)),
        }
    }

    /// Streams `source` to the object `name` until EOF and returns its size and SHA-256.
    ///
    /// A source that fits in one part goes up in a single PUT; anything larger as a
    /// multipart upload with at most `parts_in_flight` parts on the wire. Either way the
    /// object appears only once complete: a failed read or request aborts the multipart
    /// upload, and a process killed mid-way leaves only invisible parts (which a bucket
    /// lifecycle rule `AbortIncompleteMultipartUpload` reclaims).
    pub async fn upload<R>(&self, name: &str, mut source: R) -> Result<StoredObject, StorageError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let location = object_path(self.prefix.as_deref(), name)?;
        let key = location.to_string();
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;

        // Read up to one part before deciding between a single PUT and multipart.
        let mut first: Vec<Bytes> = Vec::new();
        let mut first_len = 0usize;
        let mut exhausted = false;
        while first_len < self.tuning.part_size {
            let chunk = self.read_chunk(&mut source, &key, size).await?;
            if chunk.is_empty() {
                exhausted = true;
                break;
            }
            hasher.update(&chunk);
            size += chunk.len() as u64;
            first_len += chunk.len();
            first.push(chunk);
        }

        if exhausted {
            let payload: PutPayload = first.into_iter().collect();
            let result = self
                .store
                .put(&location, payload)
                .await
                .map_err(|err| self.failure("upload", &key, err))?;
            return Ok(StoredObject {
                key,
                size,
                sha256: hex(&hasher.finalize()),
                e_tag: result.e_tag,
            });
        }

        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|err| self.failure("upload", &key, err))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.tuning.part_size);
        for chunk in first {
            writer.put(chunk);
        }
        loop {
            if let Err(err) = writer.wait_for_capacity(self.tuning.parts_in_flight).await {
                abandon(writer, &key).await;
                return Err(self.failure("upload", &key, err));
            }
            let chunk = match self.read_chunk(&mut source, &key, size).await {
                Ok(chunk) => chunk,
                Err(err) => {
                    abandon(writer, &key).await;
                    return Err(err);
                }
            };
            if chunk.is_empty() {
                break;
            }
            hasher.update(&chunk);
            size += chunk.len() as u64;
            writer.put(chunk);
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        let result = writer
            .finish()
            .await
            .map_err(|err| self.failure("upload", &key, err))?;
        Ok(StoredObject {
            key,
            size,
            sha256: hex(&hasher.finalize()),
            e_tag: result.e_tag,
        })
    }

    /// Streams the object `name` into `sink`, computing its SHA-256 on the way. With
    /// `expected_sha256`, a mismatch is an error (after the bytes were written: the
    /// caller discards what it wrote).
    pub async fn download<W>(
        &self,
        name: &str,
        sink: &mut W,
        expected_sha256: Option<&str>,
    ) -> Result<StoredObject, StorageError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let location = object_path(self.prefix.as_deref(), name)?;
        let key = location.to_string();
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|err| self.failure("download", &key, err))?;
        let announced = result.meta.size;
        let e_tag = result.meta.e_tag.clone();
        let mut stream = result.into_stream();
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| self.failure("download", &key, err))?;
            hasher.update(&chunk);
            sink.write_all(&chunk)
                .await
                .map_err(|source| StorageError::Sink {
                    key: key.clone(),
                    bytes: size,
                    source,
                })?;
            size += chunk.len() as u64;
        }
        sink.flush().await.map_err(|source| StorageError::Sink {
            key: key.clone(),
            bytes: size,
            source,
        })?;
        if size != announced {
            return Err(StorageError::Truncated {
                key,
                expected: announced,
                actual: size,
            });
        }
        let sha256 = hex(&hasher.finalize());
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(StorageError::ChecksumMismatch {
                key,
                expected: expected.to_string(),
                actual: sha256,
            });
        }
        Ok(StoredObject {
            key,
            size,
            sha256,
            e_tag,
        })
    }

    /// Every object whose name starts with `name_prefix` (relative to the target's
    /// prefix; empty lists all), ordered by key.
    pub async fn list(&self, name_prefix: &str) -> Result<Vec<ObjectSummary>, StorageError> {
        let base = self
            .prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty());
        let mut listing = self.store.list(self.prefix_path().as_ref());
        let mut objects = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|err| self.failure("list", name_prefix, err))?;
            let key = meta.location.to_string();
            let name = match base {
                Some(base) => key
                    .strip_prefix(base)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .unwrap_or(&key)
                    .to_string(),
                None => key.clone(),
            };
            if !name.starts_with(name_prefix) {
                continue;
            }
            let last_modified = jiff::Timestamp::new(
                meta.last_modified.timestamp(),
                i32::try_from(meta.last_modified.timestamp_subsec_nanos()).unwrap_or(0),
            )
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            objects.push(ObjectSummary {
                name,
                key,
                size: meta.size,
                last_modified,
            });
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Deletes the object `name`. Deleting a missing object succeeds, as in S3.
    pub async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let location = object_path(self.prefix.as_deref(), name)?;
        let key = location.to_string();
        self.store
            .delete(&location)
            .await
            .map_err(|err| self.failure("delete", &key, err))
    }

    fn prefix_path(&self) -> Option<Path> {
        self.prefix
            .as_deref()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .map(Path::from)
    }

    async fn read_chunk<R>(
        &self,
        source: &mut R,
        key: &str,
        bytes: u64,
    ) -> Result<Bytes, StorageError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let limit = self.tuning.read_chunk.max(1);
        let mut buf = BytesMut::with_capacity(limit);
        while buf.len() < limit {
            // Reads into the spare capacity only: never past `limit`.
            let read = source
                .read_buf(&mut buf)
                .await
                .map_err(|source| StorageError::Source {
                    key: key.to_string(),
                    bytes: bytes + buf.len() as u64,
                    source,
                })?;
            if read == 0 {
                break;
            }
        }
        Ok(buf.freeze())
    }

    fn failure(
        &self,
        operation: &'static str,
        key: &str,
        err: object_store::Error,
    ) -> StorageError {
        let endpoint = self.endpoint.clone();
        let bucket = self.bucket.clone();
        match classify(&err) {
            Failure::AccessDenied => StorageError::AccessDenied {
                endpoint,
                bucket,
                operation,
                detail: chain_text(&err),
            },
            Failure::BucketNotFound => StorageError::BucketNotFound {
                endpoint,
                bucket,
                operation,
            },
            Failure::ObjectNotFound => StorageError::ObjectNotFound {
                endpoint,
                bucket,
                key: key.to_string(),
            },
            Failure::Unreachable => StorageError::Unreachable {
                endpoint,
                bucket,
                operation,
                detail: chain_text(&err),
            },
            Failure::Other => StorageError::Request {
                endpoint,
                bucket,
                key: key.to_string(),
                operation,
                detail: chain_text(&err),
            },
        }
    }
}

/// Aborts a multipart upload after a failure; the original error is what the caller
/// reports, so an abort failure is only logged (the parts stay invisible either way).
async fn abandon(writer: WriteMultipart, key: &str) {
    if let Err(err) = writer.abort().await {
        tracing::warn!(key, error = %chain_text(&err), "aborting the multipart upload failed");
    }
}

/// Lowercase hex, as `sha256sum` prints it.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let ok = |raw: &str, url: &str, tls: bool| {
            assert_eq!(
                resolve_endpoint(Some(raw), DEFAULT_REGION).unwrap(),
                Endpoint {
                    url: url.to_string(),
                    tls
                },
                "{raw}"
            );
        };
        ok(
            "http://minio.bloodraven-playground.svc.cluster.local:9000",
            "http://minio.bloodraven-playground.svc.cluster.local:9000",
            false,
        );
        ok("https://s3.example.com/", "https://s3.example.com", true);
        ok("http://127.0.0.1:9000", "http://127.0.0.1:9000", false);
        assert_eq!(
            resolve_endpoint(None, "eu-west-1").unwrap(),
            Endpoint {
                url: "https://s3.eu-west-1.amazonaws.com".to_string(),
                tls: true
            }
        );
        for bad in [
            "minio:9000",
            "ftp://minio:21",
            "http://minio:9000/bucket",
            "http://minio:9000/?x=1",
            "not a url",
        ] {
            let err = resolve_endpoint(Some(bad), DEFAULT_REGION).unwrap_err();
            assert!(
                matches!(&err, StorageError::InvalidEndpoint { endpoint, .. } if endpoint == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn object_paths() {
        assert_eq!(
            object_path(Some("playground"), "backups/a.sql.gz")
                .unwrap()
                .to_string(),
            "playground/backups/a.sql.gz"
        );
        assert_eq!(
            object_path(Some("/playground/"), "/a").unwrap().to_string(),
            "playground/a"
        );
        assert_eq!(object_path(None, "a/b").unwrap().to_string(), "a/b");
        assert_eq!(object_path(Some(""), "a").unwrap().to_string(), "a");
        assert!(object_path(Some("p"), "").is_err());
        assert!(object_path(Some("p"), "a//b").is_err());
        assert!(object_path(Some("p"), "a/../b").is_err());
    }

    #[test]
    fn hex_matches_sha256sum() {
        // `printf abc | sha256sum`
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn credentials_from_secret() {
        let mut data = BTreeMap::new();
        data.insert("access-key-id".to_string(), "minio".to_string());
        let err = S3Credentials::from_secret_data("playground-minio", &data).unwrap_err();
        assert!(
            err.to_string().contains("playground-minio")
                && err.to_string().contains("secret-access-key"),
            "{err}"
        );
        data.insert("secret-access-key".to_string(), "s3cr3t-value".to_string());
        let creds = S3Credentials::from_secret_data("playground-minio", &data).unwrap();
        assert_eq!(creds.access_key_id, "minio");
        assert!(!format!("{creds:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn tiny_parts_are_refused() {
        let target = S3Target {
            endpoint: Some("http://minio:9000".to_string()),
            region: None,
            bucket: "b".to_string(),
            prefix: None,
            credentials: S3Credentials {
                access_key_id: "a".to_string(),
                secret_access_key: "s".to_string(),
            },
        };
        let tuning = TransferTuning {
            part_size: 1024,
            ..TransferTuning::default()
        };
        let err = ObjectStorage::new(
            &target,
            Arc::new(crate::seams::object_storage::TcpDialer),
            tuning,
        )
        .unwrap_err();
        assert!(err.to_string().contains("below S3's minimum"), "{err}");
    }
}
