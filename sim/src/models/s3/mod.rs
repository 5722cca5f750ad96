//! A model of an S3-compatible object store — the playground's MinIO — built on the
//! `s3s` crate: s3s speaks the S3 REST protocol (path-style routing, XML, SigV4
//! authentication, S3's error codes), [`ObjectStoreModel`] keeps buckets and objects in
//! memory. It is served over simulated TCP, so the operator's production S3 client
//! (`bloodraven::storage`) runs against it unchanged, as the real redis crate runs
//! against the Dragonfly model. See docs/backups.md and docs/simulation.md.

mod connector;
mod store;

use std::io;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub use connector::SimStorageDialer;
pub use store::{Buckets, ObjectStoreModel, S3_MIN_PART_SIZE};

use crate::pod::{PodContext, PodProgram, ProgramFuture};

/// MinIO's S3 port.
pub const S3_PORT: u16 = 9000;
/// Image repositories that run this model.
pub const MINIO_IMAGES: [&str; 2] = ["minio/minio", "quay.io/minio/minio"];
/// MinIO's credentials when `MINIO_ROOT_USER`/`MINIO_ROOT_PASSWORD` are unset.
pub const MINIO_DEFAULT_CREDENTIAL: &str = "minioadmin";

/// The access key pair the server accepts.
#[derive(Clone)]
pub struct S3ServerCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Serves `model` on `listener` until the host stops, one task per connection.
pub async fn serve(
    listener: turmoil::net::TcpListener,
    model: ObjectStoreModel,
    credentials: S3ServerCredentials,
) -> io::Result<()> {
    let mut builder = S3ServiceBuilder::new(model);
    builder.set_auth(SimpleAuth::from_single(
        credentials.access_key_id,
        credentials.secret_access_key,
    ));
    let service = builder.build();
    loop {
        let (stream, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "S3 model: connection ended with an error");
            }
        });
    }
}

/// The MinIO image as a pod program.
///
/// Configuration as the images take it: `MINIO_ROOT_USER` / `MINIO_ROOT_PASSWORD`
/// (default `minioadmin`), `--address :PORT` (default 9000), and `MINIO_DEFAULT_BUCKETS`
/// (comma-separated buckets created at start, as the Bitnami MinIO image does; with
/// the upstream image the playground's setup runs `mc mb`). Objects live on the pod's
/// volume named `data` when it has one (surviving restarts, like MinIO's disk), and are
/// lost with the process otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct MinioProgram;

impl PodProgram for MinioProgram {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        Box::pin(async move {
            let credentials = S3ServerCredentials {
                access_key_id: ctx
                    .env
                    .get("MINIO_ROOT_USER")
                    .cloned()
                    .unwrap_or_else(|| MINIO_DEFAULT_CREDENTIAL.to_string()),
                secret_access_key: ctx
                    .env
                    .get("MINIO_ROOT_PASSWORD")
                    .cloned()
                    .unwrap_or_else(|| MINIO_DEFAULT_CREDENTIAL.to_string()),
            };
            let port = address_port(&ctx.args).unwrap_or(S3_PORT);
            let state = match ctx.volumes.get("data") {
                Some(volume) => volume.get_or_init(|| Mutex::new(Buckets::default())),
                None => Arc::new(Mutex::new(Buckets::default())),
            };
            let model = ObjectStoreModel::new(state, ctx.clock.clone());
            for bucket in ctx
                .env
                .get("MINIO_DEFAULT_BUCKETS")
                .map(String::as_str)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
            {
                model.ensure_bucket(bucket);
            }
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
            ctx.ready.set(true);
            serve(listener, model, credentials).await?;
            Ok(())
        })
    }
}

/// The port of MinIO's `--address [host]:port` flag.
fn address_port(args: &[String]) -> Option<u16> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = match arg.strip_prefix("--address") {
            Some("") => iter.next().map(String::as_str),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some(port) = value
            .and_then(|v| v.rsplit(':').next())
            .and_then(|p| p.parse().ok())
        {
            return Some(port);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_flag() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(address_port(&args(&["server", "/data"])), None);
        assert_eq!(
            address_port(&args(&["server", "/data", "--address", ":9100"])),
            Some(9100)
        );
        assert_eq!(
            address_port(&args(&["server", "--address=0.0.0.0:9200", "/data"])),
            Some(9200)
        );
    }
}
