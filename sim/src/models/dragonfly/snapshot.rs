//! Dragonfly's S3 snapshots in the model: `--dir s3://bucket/prefix` with
//! `--dbfilename`, `--s3_endpoint` and `--s3_use_https`, credentials from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (`AWS_REGION`). Saving and loading go
//! through the production S3 client to the simulated S3 server, never into its store.
//! A configured S3 directory whose bucket or credentials are unavailable ends the
//! process at start-up, as Dragonfly v1.38 does.

use std::collections::BTreeMap;
use std::sync::Arc;

use bloodraven::storage::{ObjectStorage, S3Credentials, S3Target, TransferTuning};

use crate::models::s3::SimStorageDialer;
use crate::pod::SharedDialer;

/// The `s3://` scheme of `--dir`.
const S3_SCHEME: &str = "s3://";
/// The object name's extension: Dragonfly saves a single-file snapshot as `.rdb`.
const SNAPSHOT_EXTENSION: &str = ".rdb";

/// Where the snapshots of one process go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotLocation {
    pub bucket: String,
    pub prefix: Option<String>,
    /// `--dbfilename` (Dragonfly's default is `dump`).
    pub dbfilename: String,
    /// `http(s)://` + `--s3_endpoint`; none means AWS S3.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl SnapshotLocation {
    /// The S3 location of `--dir`, or `None` when the directory is not on S3.
    pub fn from_flags(
        dir: Option<&str>,
        dbfilename: Option<&str>,
        s3_endpoint: Option<&str>,
        s3_use_https: bool,
        region: Option<&str>,
    ) -> Option<Self> {
        let path = dir?.strip_prefix(S3_SCHEME)?;
        let (bucket, prefix) = match path.split_once('/') {
            Some((bucket, prefix)) => (bucket, Some(prefix.trim_matches('/'))),
            None => (path, None),
        };
        let scheme = if s3_use_https { "https" } else { "http" };
        Some(Self {
            bucket: bucket.to_string(),
            prefix: prefix.filter(|p| !p.is_empty()).map(str::to_string),
            dbfilename: dbfilename
                .filter(|n| !n.is_empty())
                .unwrap_or("dump")
                .to_string(),
            endpoint: s3_endpoint
                .filter(|e| !e.is_empty())
                .map(|e| format!("{scheme}://{e}")),
            region: region.filter(|r| !r.is_empty()).map(str::to_string),
        })
    }

    /// The object name (under the prefix) a save writes and a load reads.
    pub fn object_name(&self) -> String {
        format!("{}{SNAPSHOT_EXTENSION}", self.dbfilename)
    }
}

/// Why the S3 snapshot storage cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "snapshot dir s3://{bucket}: no S3 credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set)"
    )]
    NoCredentials { bucket: String },
    #[error("snapshot dir s3://{bucket}: {source}")]
    Storage {
        bucket: String,
        #[source]
        source: bloodraven::storage::StorageError,
    },
    #[error("snapshot s3://{bucket}/{name}: unreadable: {detail}")]
    Unreadable {
        bucket: String,
        name: String,
        detail: String,
    },
}

/// A connected snapshot store: the bucket answered with the given credentials.
pub struct SnapshotStore {
    location: SnapshotLocation,
    storage: ObjectStorage,
}

impl SnapshotStore {
    /// Opens the store and checks the bucket, as Dragonfly does before it serves: an
    /// error here ends the process.
    pub async fn open(
        location: SnapshotLocation,
        env: &BTreeMap<String, String>,
        dialer: SharedDialer,
    ) -> Result<Self, SnapshotError> {
        let bucket = location.bucket.clone();
        let key = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        let (Some(access_key_id), Some(secret_access_key)) =
            (key("AWS_ACCESS_KEY_ID"), key("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(SnapshotError::NoCredentials { bucket });
        };
        let target = S3Target {
            endpoint: location.endpoint.clone(),
            region: location.region.clone(),
            bucket: location.bucket.clone(),
            prefix: location.prefix.clone(),
            credentials: S3Credentials {
                access_key_id,
                secret_access_key,
            },
        };
        let storage = ObjectStorage::new(
            &target,
            Arc::new(SimStorageDialer::new(dialer)),
            TransferTuning::default(),
        )
        .map_err(|source| SnapshotError::Storage {
            bucket: bucket.clone(),
            source,
        })?;
        storage
            .check_access()
            .await
            .map_err(|source| SnapshotError::Storage { bucket, source })?;
        Ok(Self { location, storage })
    }

    /// The saved data, or `None` when no snapshot exists yet.
    pub async fn load(&self) -> Result<Option<BTreeMap<Vec<u8>, Vec<u8>>>, SnapshotError> {
        let name = self.location.object_name();
        let storage_error = |source| SnapshotError::Storage {
            bucket: self.location.bucket.clone(),
            source,
        };
        let present = self
            .storage
            .list(&name)
            .await
            .map_err(storage_error)?
            .iter()
            .any(|o| o.name == name);
        if !present {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        self.storage
            .download(&name, &mut bytes, None)
            .await
            .map_err(storage_error)?;
        decode(&bytes)
            .map(Some)
            .ok_or_else(|| SnapshotError::Unreadable {
                bucket: self.location.bucket.clone(),
                name,
                detail: "not a snapshot written by this model".to_string(),
            })
    }

    /// Writes `data` as the snapshot (replacing the previous one).
    pub async fn save(&self, data: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), SnapshotError> {
        let bytes = encode(data);
        self.storage
            .upload(&self.location.object_name(), bytes.as_slice())
            .await
            .map_err(|source| SnapshotError::Storage {
                bucket: self.location.bucket.clone(),
                source,
            })?;
        Ok(())
    }
}

/// The model's snapshot format: a magic line, then each key and value as a
/// length-prefixed byte string. (Real Dragonfly writes RDB/DFS files; only this model
/// reads these.)
const MAGIC: &[u8] = b"SIMDFLY1\n";

fn encode(data: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (key, value) in data {
        for part in [key, value] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

fn decode(bytes: &[u8]) -> Option<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let take = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let (len, tail) = rest.split_at_checked(8)?;
        let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
        let (part, tail) = tail.split_at_checked(len)?;
        *rest = tail;
        Some(part.to_vec())
    };
    let mut data = BTreeMap::new();
    while !rest.is_empty() {
        let key = take(&mut rest)?;
        let value = take(&mut rest)?;
        data.insert(key, value);
    }
    Some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_dir_splits_into_bucket_and_prefix() {
        let loc = SnapshotLocation::from_flags(
            Some("s3://cache-snapshots/playground/"),
            Some("playground-iad"),
            Some("rustfs.storage.svc:9000"),
            false,
            None,
        )
        .unwrap();
        assert_eq!(loc.bucket, "cache-snapshots");
        assert_eq!(loc.prefix.as_deref(), Some("playground"));
        assert_eq!(
            loc.endpoint.as_deref(),
            Some("http://rustfs.storage.svc:9000")
        );
        assert_eq!(loc.object_name(), "playground-iad.rdb");
        let bare = SnapshotLocation::from_flags(Some("s3://b"), None, None, true, None).unwrap();
        assert_eq!((bare.prefix, bare.dbfilename.as_str()), (None, "dump"));
        assert!(SnapshotLocation::from_flags(Some("/data"), None, None, true, None).is_none());
        assert!(SnapshotLocation::from_flags(None, None, None, true, None).is_none());
    }

    #[test]
    fn a_snapshot_round_trips_and_garbage_is_refused() {
        let data = BTreeMap::from([
            (b"counter".to_vec(), b"42".to_vec()),
            (b"".to_vec(), vec![0, 1, 2]),
        ]);
        assert_eq!(decode(&encode(&data)), Some(data));
        assert_eq!(decode(&encode(&BTreeMap::new())), Some(BTreeMap::new()));
        assert_eq!(decode(b"RDB"), None);
        let mut truncated = encode(&BTreeMap::from([(b"k".to_vec(), b"v".to_vec())]));
        truncated.pop();
        assert_eq!(decode(&truncated), None);
    }
}
