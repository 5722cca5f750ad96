//! Object storage for backups: an S3 client ([`ObjectStorage`]) that streams objects up
//! and down in bounded memory and records their SHA-256. It knows buckets, keys and
//! bytes; what a backup is, and when to make one, lives with the backup controllers.
//!
//! Connections go through the [`StorageDialer`](crate::seams::object_storage::StorageDialer)
//! seam, so the simulation runs this same client against its S3 model (docs/backups.md).

mod client;
mod error;
mod http;

pub use client::{
    DEFAULT_REGION, Endpoint, MIN_PART_SIZE, ObjectStorage, ObjectSummary, S3Credentials, S3Target,
    StoredObject, TransferTuning, hex, object_path, resolve_endpoint,
};
pub use error::{Failure, StorageError, chain_text, classify, classify_parts};
pub use http::{HttpTimeouts, Outcome, RetryPolicy, StorageHttp, retry_after};
