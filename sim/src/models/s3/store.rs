//! The object store's state and its S3 operations, as the `s3s` crate's [`S3`] trait:
//! buckets, objects, multipart uploads. s3s does the protocol (routing, XML, SigV4
//! authentication, S3 error responses); this file decides what each operation does.
//!
//! Follows the S3 API reference for the behaviour clients depend on: an object appears
//! only when its PUT or CompleteMultipartUpload finishes, every part but the last is at
//! least 5 MiB (`EntityTooSmall`), completing names parts in ascending order with their
//! ETags (`InvalidPart`, `InvalidPartOrder`), a missing bucket is `NoSuchBucket`, a
//! missing key `NoSuchKey`, and a DELETE (single or bulk) of a missing key succeeds.
//! ETags are a SHA-256 prefix rather than MD5 (clients treat them as opaque);
//! docs/backups.md lists the rest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, Bucket as BucketDto, CommonPrefix,
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CreateBucketInput,
    CreateBucketOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketInput,
    DeleteBucketOutput, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput,
    DeleteObjectsOutput, DeletedObject, ETag, GetObjectInput, GetObjectOutput, HeadBucketInput,
    HeadBucketOutput, HeadObjectInput, HeadObjectOutput, ListBucketsInput, ListBucketsOutput,
    ListObjectsV2Input, ListObjectsV2Output, Object, PutObjectInput, PutObjectOutput,
    StreamingBlob, Timestamp, UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use sha2::{Digest, Sha256};

use bloodraven::seams::SharedClock;

/// S3's minimum size of every part of a multipart upload but the last.
pub const S3_MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Keys per ListObjectsV2 page when the client asks for no limit (S3's default).
const DEFAULT_MAX_KEYS: usize = 1000;

#[derive(Clone, Debug)]
struct StoredObject {
    data: Bytes,
    etag: String,
    last_modified: jiff::Timestamp,
}

#[derive(Debug)]
struct Bucket {
    created: jiff::Timestamp,
    objects: BTreeMap<String, StoredObject>,
}

#[derive(Debug)]
struct Upload {
    bucket: String,
    key: String,
    parts: BTreeMap<i32, (Bytes, String)>,
}

/// Everything the store holds. Lives on the pod's data volume when it has one, so it
/// survives a restart as MinIO's disk does.
#[derive(Debug, Default)]
pub struct Buckets {
    buckets: BTreeMap<String, Bucket>,
    uploads: BTreeMap<String, Upload>,
    /// Upload ids are a counter: deterministic, unique for the store's life.
    next_upload: u64,
}

/// The S3 model: shared state plus the clock that stamps `LastModified`.
#[derive(Clone)]
pub struct ObjectStoreModel {
    state: Arc<Mutex<Buckets>>,
    clock: SharedClock,
    min_part_size: usize,
}

impl ObjectStoreModel {
    pub fn new(state: Arc<Mutex<Buckets>>, clock: SharedClock) -> Self {
        Self {
            state,
            clock,
            min_part_size: S3_MIN_PART_SIZE,
        }
    }

    /// Overrides the minimum part size (tests that exercise many small parts).
    pub fn with_min_part_size(mut self, bytes: usize) -> Self {
        self.min_part_size = bytes;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Buckets> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates `bucket` unless it exists (as `mc mb --ignore-existing` does).
    pub fn ensure_bucket(&self, bucket: &str) {
        let now = self.clock.now();
        self.lock()
            .buckets
            .entry(bucket.to_string())
            .or_insert_with(|| Bucket {
                created: now,
                objects: BTreeMap::new(),
            });
    }

    /// The keys in `bucket`, sorted; `None` if there is no such bucket.
    pub fn keys(&self, bucket: &str) -> Option<Vec<String>> {
        self.lock()
            .buckets
            .get(bucket)
            .map(|b| b.objects.keys().cloned().collect())
    }

    /// The bytes of an object, for tests that look behind the protocol.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.lock()
            .buckets
            .get(bucket)
            .and_then(|b| b.objects.get(key))
            .map(|o| o.data.clone())
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn incomplete_uploads(&self) -> usize {
        self.lock().uploads.len()
    }
}

fn etag_of(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    bloodraven::storage::hex(&digest[..16])
}

fn timestamp(at: jiff::Timestamp) -> Timestamp {
    Timestamp::from(std::time::SystemTime::from(at))
}

/// Reads a request body to the end.
async fn collect(body: Option<StreamingBlob>) -> S3Result<Bytes> {
    let Some(mut body) = body else {
        return Err(s3_error!(IncompleteBody));
    };
    let mut data = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| s3_error!(IncompleteBody, "reading the body: {err}"))?;
        data.extend_from_slice(&chunk);
    }
    Ok(data.freeze())
}

fn one_chunk(data: Bytes) -> StreamingBlob {
    StreamingBlob::wrap(futures::stream::once(async move {
        Ok::<Bytes, std::io::Error>(data)
    }))
}

#[async_trait::async_trait]
impl S3 for ObjectStoreModel {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let now = self.clock.now();
        let mut state = self.lock();
        if state.buckets.contains_key(&req.input.bucket) {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        state.buckets.insert(
            req.input.bucket.clone(),
            Bucket {
                created: now,
                objects: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", req.input.bucket)),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let mut state = self.lock();
        match state.buckets.get(&req.input.bucket) {
            None => Err(s3_error!(NoSuchBucket)),
            Some(bucket) if !bucket.objects.is_empty() => Err(s3_error!(BucketNotEmpty)),
            Some(_) => {
                state.buckets.remove(&req.input.bucket);
                Ok(S3Response::new(DeleteBucketOutput {}))
            }
        }
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        if self.lock().buckets.contains_key(&req.input.bucket) {
            Ok(S3Response::new(HeadBucketOutput::default()))
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .lock()
            .buckets
            .iter()
            .map(|(name, bucket)| BucketDto {
                name: Some(name.clone()),
                creation_date: Some(timestamp(bucket.created)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let PutObjectInput {
            body, bucket, key, ..
        } = req.input;
        if !self.lock().buckets.contains_key(&bucket) {
            return Err(s3_error!(NoSuchBucket));
        }
        let data = collect(body).await?;
        let etag = etag_of(&data);
        let size = i64::try_from(data.len()).unwrap_or(i64::MAX);
        let now = self.clock.now();
        let mut state = self.lock();
        // The bucket may have been deleted while the body streamed in.
        let Some(target) = state.buckets.get_mut(&bucket) else {
            return Err(s3_error!(NoSuchBucket));
        };
        target.objects.insert(
            key,
            StoredObject {
                data,
                etag: etag.clone(),
                last_modified: now,
            },
        );
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            size: Some(size),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let object = {
            let state = self.lock();
            let bucket = state
                .buckets
                .get(&input.bucket)
                .ok_or_else(|| s3_error!(NoSuchBucket))?;
            bucket
                .objects
                .get(&input.key)
                .cloned()
                .ok_or_else(|| s3_error!(NoSuchKey))?
        };
        let full = object.data.len() as u64;
        let (data, content_range) = match input.range {
            None => (object.data.clone(), None),
            Some(range) => {
                let span = range.check(full).map_err(|_| {
                    s3_error!(InvalidRange, "range not satisfiable for {full} bytes")
                })?;
                let start = usize::try_from(span.start).unwrap_or(usize::MAX);
                let end = usize::try_from(span.end).unwrap_or(usize::MAX);
                (
                    object.data.slice(start..end),
                    Some(format!(
                        "bytes {}-{}/{full}",
                        span.start,
                        span.end.saturating_sub(1)
                    )),
                )
            }
        };
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(i64::try_from(data.len()).unwrap_or(i64::MAX)),
            content_range,
            body: Some(one_chunk(data)),
            e_tag: Some(ETag::Strong(object.etag.clone())),
            last_modified: Some(timestamp(object.last_modified)),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let state = self.lock();
        let bucket = state
            .buckets
            .get(&req.input.bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        let object = bucket
            .objects
            .get(&req.input.key)
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(i64::try_from(object.data.len()).unwrap_or(i64::MAX)),
            e_tag: Some(ETag::Strong(object.etag.clone())),
            last_modified: Some(timestamp(object.last_modified)),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let mut state = self.lock();
        let bucket = state
            .buckets
            .get_mut(&req.input.bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        bucket.objects.remove(&req.input.key);
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    /// The bulk delete (`POST ?delete`) object_store uses even for one key. Missing keys
    /// are reported deleted, as S3 does.
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "more than 1000 keys in one DeleteObjects"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut state = self.lock();
        let bucket = state
            .buckets
            .get_mut(&input.bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        let mut deleted = Vec::new();
        for object in input.delete.objects {
            bucket.objects.remove(&object.key);
            if !quiet {
                deleted.push(DeletedObject {
                    key: Some(object.key),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let state = self.lock();
        let bucket = state
            .buckets
            .get(&input.bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max_keys = input
            .max_keys
            .and_then(|m| usize::try_from(m).ok())
            .unwrap_or(DEFAULT_MAX_KEYS)
            .min(DEFAULT_MAX_KEYS);
        // The continuation token is the last key returned: opaque to clients, stable here.
        let after = input
            .continuation_token
            .clone()
            .or_else(|| input.start_after.clone())
            .unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let mut contents = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut last_key = None;
        let mut truncated = false;
        for (key, object) in bucket.objects.range(after.clone()..) {
            if key.as_str() <= after.as_str() && !after.is_empty() {
                continue;
            }
            if !key.starts_with(&prefix) {
                continue;
            }
            if contents.len() + prefixes.len() >= max_keys {
                truncated = true;
                break;
            }
            if let Some(delimiter) = &delimiter
                && let Some(at) = key[prefix.len()..].find(delimiter.as_str())
            {
                let common = key[..prefix.len() + at + delimiter.len()].to_string();
                if prefixes.last() != Some(&common) {
                    prefixes.push(common);
                }
                last_key = Some(key.clone());
                continue;
            }
            contents.push(Object {
                key: Some(key.clone()),
                size: Some(i64::try_from(object.data.len()).unwrap_or(i64::MAX)),
                e_tag: Some(ETag::Strong(object.etag.clone())),
                last_modified: Some(timestamp(object.last_modified)),
                ..Default::default()
            });
            last_key = Some(key.clone());
        }
        let key_count = i32::try_from(contents.len() + prefixes.len()).unwrap_or(i32::MAX);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(i32::try_from(max_keys).unwrap_or(i32::MAX)),
            key_count: Some(key_count),
            is_truncated: Some(truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: if truncated { last_key } else { None },
            contents: Some(contents),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            start_after: input.start_after,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let mut state = self.lock();
        if !state.buckets.contains_key(&input.bucket) {
            return Err(s3_error!(NoSuchBucket));
        }
        state.next_upload += 1;
        let upload_id = format!("upload-{:08}", state.next_upload);
        state.uploads.insert(
            upload_id.clone(),
            Upload {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let UploadPartInput {
            body,
            bucket,
            key,
            part_number,
            upload_id,
            ..
        } = req.input;
        if !(1..=10_000).contains(&part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part number {part_number} is outside 1..=10000"
            ));
        }
        {
            let state = self.lock();
            match state.uploads.get(&upload_id) {
                Some(upload) if upload.bucket == bucket && upload.key == key => {}
                _ => return Err(s3_error!(NoSuchUpload)),
            }
        }
        let data = collect(body).await?;
        let etag = etag_of(&data);
        let mut state = self.lock();
        // Aborted while the body streamed in: the part goes nowhere.
        let Some(upload) = state.uploads.get_mut(&upload_id) else {
            return Err(s3_error!(NoSuchUpload));
        };
        upload.parts.insert(part_number, (data, etag.clone()));
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "CompleteMultipartUpload names no parts"
            ));
        }
        let now = self.clock.now();
        let mut state = self.lock();
        let Some(upload) = state.uploads.get(&input.upload_id) else {
            return Err(s3_error!(NoSuchUpload));
        };
        if upload.bucket != input.bucket || upload.key != input.key {
            return Err(s3_error!(NoSuchUpload));
        }
        let mut data = BytesMut::new();
        let mut hasher = Sha256::new();
        let mut previous = 0;
        for (index, part) in requested.iter().enumerate() {
            let number = part.part_number.unwrap_or(0);
            if number <= previous {
                return Err(s3_error!(InvalidPartOrder));
            }
            previous = number;
            let Some((bytes, etag)) = upload.parts.get(&number) else {
                return Err(s3_error!(InvalidPart, "part {number} was not uploaded"));
            };
            if part.e_tag.as_ref().map(|e| e.value()) != Some(etag.as_str()) {
                return Err(s3_error!(InvalidPart, "part {number}: ETag does not match"));
            }
            let last = index + 1 == requested.len();
            if !last && bytes.len() < self.min_part_size {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {number} is {} bytes; every part but the last must be at least {}",
                    bytes.len(),
                    self.min_part_size
                ));
            }
            hasher.update(etag.as_bytes());
            data.extend_from_slice(bytes);
        }
        let etag = format!(
            "{}-{}",
            bloodraven::storage::hex(&hasher.finalize()[..16]),
            requested.len()
        );
        let bucket_name = upload.bucket.clone();
        let key = upload.key.clone();
        state.uploads.remove(&input.upload_id);
        let Some(bucket) = state.buckets.get_mut(&bucket_name) else {
            return Err(s3_error!(NoSuchBucket));
        };
        bucket.objects.insert(
            key.clone(),
            StoredObject {
                data: data.freeze(),
                etag: etag.clone(),
                last_modified: now,
            },
        );
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(bucket_name),
            key: Some(key),
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let mut state = self.lock();
        match state.uploads.get(&req.input.upload_id) {
            Some(upload) if upload.bucket == req.input.bucket && upload.key == req.input.key => {
                state.uploads.remove(&req.input.upload_id);
                Ok(S3Response::new(AbortMultipartUploadOutput::default()))
            }
            _ => Err(s3_error!(NoSuchUpload)),
        }
    }
}
