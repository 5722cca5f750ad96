//! The production S3 client (`bloodraven::storage`) against the S3 model, over the
//! simulated network: the same code path a backup Job takes in the simulation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bloodraven::storage::{
    ObjectStorage, RetryPolicy, S3Credentials, S3Target, StorageError, TransferTuning,
};
use bloodraven_sim::models::s3::{
    Buckets, ObjectStoreModel, S3ServerCredentials, SimStorageDialer, serve,
};
use support::{Faults, clock, dialer, run, sim};
use tokio::io::{AsyncRead, ReadBuf};

const BUCKET: &str = "bloodraven-backups";
const ACCESS: &str = "playground";
const SECRET: &str = "playground-secret";
const MIB: usize = 1024 * 1024;

/// Starts the S3 model on host `minio` with one bucket; returns a handle to its state.
fn minio(sim: &mut turmoil::Sim<'_>) -> ObjectStoreModel {
    let state = Arc::new(Mutex::new(Buckets::default()));
    let handle = ObjectStoreModel::new(state.clone(), clock());
    sim.host("minio", move || {
        let model = ObjectStoreModel::new(state.clone(), clock());
        async move {
            model.ensure_bucket(BUCKET);
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", 9000)).await?;
            serve(
                listener,
                model,
                S3ServerCredentials {
                    access_key_id: ACCESS.into(),
                    secret_access_key: SECRET.into(),
                },
            )
            .await?;
            Ok(())
        }
    });
    handle
}

fn storage(bucket: &str, secret: &str) -> ObjectStorage {
    let target = S3Target {
        endpoint: Some("http://minio:9000".into()),
        region: None,
        bucket: bucket.into(),
        prefix: Some("playground".into()),
        credentials: S3Credentials {
            access_key_id: ACCESS.into(),
            secret_access_key: secret.into(),
        },
    };
    let tuning = TransferTuning {
        part_size: 5 * MIB,
        parts_in_flight: 2,
        retry: RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        ..TransferTuning::default()
    };
    ObjectStorage::new(&target, Arc::new(SimStorageDialer::new(dialer())), tuning).unwrap()
}

/// Deterministic test data: a counter pattern no two parts share.
fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    bloodraven::storage::hex(&sha2::Sha256::digest(bytes))
}

#[test]
fn put_get_list_delete_single_and_multipart() {
    let mut sim = sim(1);
    let model = minio(&mut sim);
    let inspect = model.clone();
    sim.client("backup-job", async move {
        let storage = storage(BUCKET, SECRET);
        storage.check_access().await.unwrap();

        // Smaller than one part: a single PUT.
        let small = data(100_000);
        let stored = storage.upload("small.sql", &small[..]).await.unwrap();
        assert_eq!(stored.key, "playground/small.sql");
        assert_eq!(stored.size, small.len() as u64);
        assert_eq!(stored.sha256, sha256_hex(&small));

        // 12 MiB in 5 MiB parts: three parts, the last one short.
        let large = data(12 * MIB + 123);
        let stored = storage.upload("dumps/large.sql", &large[..]).await.unwrap();
        assert_eq!(stored.size, large.len() as u64);
        assert_eq!(stored.sha256, sha256_hex(&large));
        assert!(
            stored.e_tag.as_deref().unwrap_or_default().contains("-3"),
            "multipart ETag names 3 parts: {:?}",
            stored.e_tag
        );
        assert_eq!(
            inspect.object(BUCKET, "playground/dumps/large.sql").unwrap(),
            large.as_slice()
        );
        assert_eq!(inspect.incomplete_uploads(), 0);

        let mut back = Vec::new();
        let read = storage
            .download("dumps/large.sql", &mut back, Some(&sha256_hex(&large)))
            .await
            .unwrap();
        assert_eq!(read.size, large.len() as u64);
        assert!(back == large, "downloaded bytes differ");

        let listed: Vec<(String, u64)> = storage
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.name, o.size))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("dumps/large.sql".to_string(), large.len() as u64),
                ("small.sql".to_string(), small.len() as u64)
            ]
        );
        assert_eq!(storage.list("dumps/").await.unwrap().len(), 1);

        storage.delete("small.sql").await.unwrap();
        // Deleting what is gone succeeds, as in S3.
        storage.delete("small.sql").await.unwrap();
        assert_eq!(
            inspect.keys(BUCKET).unwrap(),
            vec!["playground/dumps/large.sql".to_string()]
        );
        let err = storage
            .download("small.sql", &mut Vec::new(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StorageError::ObjectNotFound { key, .. } if key == "playground/small.sql"),
            "{err}"
        );
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn wrong_credentials_are_a_clear_access_error() {
    let mut sim = sim(2);
    let model = minio(&mut sim);
    sim.client("backup-job", async move {
        let storage = storage(BUCKET, "not-the-secret");
        let err = storage.check_access().await.unwrap_err();
        assert!(matches!(err, StorageError::AccessDenied { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("refused the credentials")
                && message.contains(BUCKET)
                && message.contains("SignatureDoesNotMatch"),
            "{message}"
        );
        let err = storage
            .upload("denied.sql", &data(1000)[..])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::AccessDenied { .. }), "{err}");
        assert_eq!(model.keys(BUCKET).unwrap(), Vec::<String>::new());
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn missing_bucket_is_a_clear_error() {
    let mut sim = sim(3);
    minio(&mut sim);
    sim.client("backup-job", async move {
        let storage = storage("no-such-bucket", SECRET);
        for err in [
            storage.check_access().await.unwrap_err(),
            storage.upload("a.sql", &data(10)[..]).await.unwrap_err(),
            storage.upload("b.sql", &data(6 * MIB)[..]).await.unwrap_err(),
            storage
                .download("a.sql", &mut Vec::new(), None)
                .await
                .unwrap_err(),
        ] {
            assert!(
                matches!(&err, StorageError::BucketNotFound { bucket, .. } if bucket == "no-such-bucket"),
                "{err}"
            );
            assert!(err.to_string().contains("does not exist"), "{err}");
        }
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// A source that fails after `fail_after` bytes, as a dump process dying mid-way.
struct FailingSource {
    data: Vec<u8>,
    at: usize,
    fail_after: usize,
}

impl AsyncRead for FailingSource {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at >= self.fail_after {
            return Poll::Ready(Err(io::Error::other("mysqldump exited with status 2")));
        }
        let end = (self.at + buf.remaining()).min(self.fail_after);
        let at = self.at;
        buf.put_slice(&self.data[at..end]);
        self.at = end;
        Poll::Ready(Ok(()))
    }
}

#[test]
fn interrupted_upload_leaves_no_object_and_no_upload() {
    let mut sim = sim(4);
    let model = minio(&mut sim);
    sim.client("backup-job", async move {
        let storage = storage(BUCKET, SECRET);
        let source = FailingSource {
            data: data(20 * MIB),
            at: 0,
            fail_after: 11 * MIB,
        };
        let err = storage.upload("broken.sql", source).await.unwrap_err();
        match &err {
            StorageError::Source { key, bytes, .. } => {
                assert_eq!(key, "playground/broken.sql");
                assert_eq!(*bytes, 11 * MIB as u64);
            }
            other => panic!("expected a source error, got {other}"),
        }
        assert!(err.to_string().contains("no object was created"), "{err}");
        assert_eq!(model.keys(BUCKET).unwrap(), Vec::<String>::new());
        assert_eq!(model.incomplete_uploads(), 0, "the upload was aborted");
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn checksum_mismatch_on_download_is_an_error() {
    let mut sim = sim(5);
    minio(&mut sim);
    sim.client("verify-job", async move {
        let storage = storage(BUCKET, SECRET);
        let stored = storage.upload("x.sql", &data(4096)[..]).await.unwrap();
        let wrong = "0".repeat(64);
        let err = storage
            .download("x.sql", &mut Vec::new(), Some(&wrong))
            .await
            .unwrap_err();
        match err {
            StorageError::ChecksumMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, stored.sha256);
            }
            other => panic!("expected a checksum mismatch, got {other}"),
        }
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

#[test]
fn unreachable_store_is_reported_as_such() {
    let mut sim = sim(6);
    // A host that runs no S3 server: connections to port 9000 are refused.
    sim.host("minio", || async {
        std::future::pending::<()>().await;
        Ok(())
    });
    sim.client("backup-job", async move {
        let err = storage(BUCKET, SECRET).check_access().await.unwrap_err();
        assert!(matches!(err, StorageError::Unreachable { .. }), "{err}");
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// The playground's `minio` profile, end to end in the simulated cluster: the MinIO
/// Deployment of examples/playground-minio.yaml runs the model, its Service answers at
/// the profile's endpoint through cluster DNS, and the credentials come from the Secret
/// the profile names.
#[test]
fn the_playground_minio_profile_reaches_the_model_through_cluster_dns() {
    let run = minio_profile_backup(11);
    assert_eq!(run.size, 9 * MIB as u64);
    assert_eq!(run.key, "playground/backups/first.sql");
}

/// One seed, one run: the same seed gives the same finish time and Event trace.
#[test]
fn a_minio_profile_backup_replays_from_its_seed() {
    let first = minio_profile_backup(12);
    let again = minio_profile_backup(12);
    assert_eq!(first.finished_at, again.finished_at);
    assert_eq!(first.trace, again.trace);
}

struct ProfileRun {
    size: u64,
    key: String,
    /// Simulated time when the client reported.
    finished_at: std::time::Duration,
    trace: String,
}

/// Applies examples/playground-minio.yaml to a fresh World, reads the `minio` profile
/// and its Secret as the operator would, and uploads and downloads a 9 MiB dump from a
/// client host through cluster DNS.
fn minio_profile_backup(seed: u64) -> ProfileRun {
    use bloodraven::api::MysqlFailoverGroupSpec;
    use bloodraven_sim::Placement;
    use bloodraven_sim::apiserver::ResourceKey;
    use bloodraven_sim::dialer::ClusterDialer;
    use bloodraven_sim::playground::{PLAYGROUND_NAMESPACE, apply_file, apply_text};
    use bloodraven_sim::world::World;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    let repo = |p: &str| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(p);
    let mut world = World::playground(seed).unwrap();
    apply_text(
        &world,
        Path::new("namespace"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bloodraven-playground}\n",
    )
    .unwrap();
    apply_file(&world, &repo("examples/playground-minio.yaml")).unwrap();

    let text = std::fs::read_to_string(repo("examples/playground.yaml")).unwrap();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let group = documents
        .into_iter()
        .find(|d| d["kind"] == "MysqlFailoverGroup")
        .unwrap();
    let spec: MysqlFailoverGroupSpec = serde_json::from_value(group["spec"].clone()).unwrap();
    let profile = spec
        .backup
        .unwrap()
        .profiles
        .into_iter()
        .find(|p| p.name == "minio")
        .unwrap();
    let s3 = profile.storage.s3.unwrap();

    let secret = world
        .api()
        .get(
            &ResourceKey::core("v1", "secrets"),
            Some(PLAYGROUND_NAMESPACE),
            &s3.credentials_secret,
        )
        .unwrap();
    let secret_data: BTreeMap<String, String> = secret["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let bytes: k8s_openapi::ByteString = serde_json::from_value(v.clone()).unwrap();
            (k.clone(), String::from_utf8(bytes.0).unwrap())
        })
        .collect();
    let credentials =
        S3Credentials::from_secret_data(&s3.credentials_secret, &secret_data).unwrap();
    let target = S3Target::from_spec(&s3, credentials);

    /// What the backup client reports: the stored size and key, or the error text.
    type Outcome = Option<Result<(u64, String), String>>;
    let outcome: Arc<Mutex<Outcome>> = Arc::default();
    let reported = outcome.clone();
    let api = world.api().clone();
    world.add_client("backup-job", Placement::ControlPlane, async move {
        let dialer = ClusterDialer::new(
            api,
            PLAYGROUND_NAMESPACE,
            "backup-job",
            Duration::from_secs(1),
        )
        .shared();
        let storage = ObjectStorage::new(
            &target,
            Arc::new(SimStorageDialer::new(dialer)),
            TransferTuning::default(),
        )
        .unwrap();
        // The pod takes a moment to be scheduled, started and listed as an endpoint.
        let mut last = String::new();
        for _ in 0..60 {
            match storage.check_access().await {
                Ok(()) => break,
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let dump = data(9 * MIB);
        let result = async {
            let stored = storage.upload("backups/first.sql", &dump[..]).await?;
            let mut back = Vec::new();
            storage
                .download("backups/first.sql", &mut back, Some(&stored.sha256))
                .await?;
            Ok::<_, StorageError>((stored.size, stored.key))
        }
        .await
        .map_err(|err| format!("{err} (last access check: {last})"));
        *reported.lock().unwrap() = Some(result);
        Ok(())
    });
    let finished = world
        .run_until(Duration::from_secs(90), |_| {
            outcome.lock().unwrap().is_some()
        })
        .unwrap();
    assert!(
        finished,
        "the backup client did not finish in 90 simulated seconds"
    );
    let (size, key) = outcome.lock().unwrap().take().unwrap().unwrap();
    ProfileRun {
        size,
        key,
        finished_at: world.elapsed(),
        trace: world.event_trace(),
    }
}

/// Starts the S3 model on host `flaky-minio` behind a layer that answers the first
/// `refusals` requests with 503 SlowDown, as a busy S3 does, and counts every request.
fn flaky_minio(
    sim: &mut turmoil::Sim<'_>,
    refusals: usize,
) -> (ObjectStoreModel, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let state = Arc::new(Mutex::new(Buckets::default()));
    let handle = ObjectStoreModel::new(state.clone(), clock());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    sim.host("flaky-minio", move || {
        let model = ObjectStoreModel::new(state.clone(), clock());
        let counter = counter.clone();
        async move {
            model.ensure_bucket(BUCKET);
            let mut builder = s3s::service::S3ServiceBuilder::new(model);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS, SECRET));
            let service = builder.build();
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", 9000)).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let service = service.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let handler = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let service = service.clone();
                            let n = counter.fetch_add(1, Ordering::SeqCst);
                            async move {
                                if n < refusals {
                                    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                                        <Error><Code>SlowDown</Code><Message>Please reduce \
                                        your request rate.</Message></Error>";
                                    let response = http::Response::builder()
                                        .status(503)
                                        .body(s3s::Body::from(body.to_string()))
                                        .unwrap();
                                    return Ok::<_, s3s::HttpError>(response);
                                }
                                service.call(request.map(s3s::Body::from)).await
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
                        .await;
                });
            }
        }
    });
    (handle, seen)
}

fn flaky_storage(attempts: u32) -> ObjectStorage {
    let target = S3Target {
        endpoint: Some("http://flaky-minio:9000".into()),
        region: None,
        bucket: BUCKET.into(),
        prefix: None,
        credentials: S3Credentials {
            access_key_id: ACCESS.into(),
            secret_access_key: SECRET.into(),
        },
    };
    let tuning = TransferTuning {
        part_size: 5 * MIB,
        retry: RetryPolicy {
            attempts,
            first_backoff: std::time::Duration::from_millis(250),
            max_backoff: std::time::Duration::from_secs(8),
        },
        ..TransferTuning::default()
    };
    ObjectStorage::new(&target, Arc::new(SimStorageDialer::new(dialer())), tuning).unwrap()
}

/// The transport's retry (storage::retry_after) on the wire: two 503s are absorbed by a
/// client allowed three tries, after its two backoffs (250 ms, then 500 ms).
#[test]
fn slow_down_answers_are_retried_by_the_transport() {
    let mut sim = sim(7);
    let (model, seen) = flaky_minio(&mut sim, 2);
    sim.client("backup-job", async move {
        let started = tokio::time::Instant::now();
        let dump = data(2048);
        let stored = flaky_storage(3)
            .upload("retried.sql", &dump[..])
            .await
            .unwrap();
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(750),
            "two backoffs of 250 and 500 ms: {:?}",
            started.elapsed()
        );
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(
            model.object(BUCKET, "retried.sql").unwrap(),
            dump.as_slice()
        );
        assert_eq!(stored.sha256, sha256_hex(&dump));
        Ok(())
    });
    run(&mut sim, &Faults::default());
}

/// Without retries the same answer is the caller's error, and it says what S3 said.
#[test]
fn slow_down_without_retries_is_a_clear_error() {
    let mut sim = sim(8);
    let (model, seen) = flaky_minio(&mut sim, 1);
    sim.client("backup-job", async move {
        let err = flaky_storage(1)
            .upload("refused.sql", &data(2048)[..])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Request { .. }), "{err}");
        assert!(err.to_string().contains("SlowDown"), "{err}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(model.keys(BUCKET).unwrap(), Vec::<String>::new());
        Ok(())
    });
    run(&mut sim, &Faults::default());
}
