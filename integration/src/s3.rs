//! A real S3 server: moto's server (PyPI `moto[server]`), started by
//! `servers/moto_s3.py` with one bucket and an access key allowed `s3:*`, with or
//! without SigV4 authentication (moto's check refuses correctly signed requests whose
//! query holds an encoded character; see the script). moto is an independent
//! implementation of S3 (the simulation's model is built on s3s): agreeing with both is
//! the point of this tier.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bloodraven::seams::object_storage::TcpDialer;
use bloodraven::storage::{ObjectStorage, S3Credentials, S3Target, StorageError, TransferTuning};

use crate::process::{HarnessError, ServerProcess, crate_file};

/// How to get moto, for error messages (and what `.ci/run` installs).
pub const MOTO_INSTALL: &str = "install it with: pip install 'moto[server]'";
/// moto imports a good part of boto: on a busy 2-core machine that takes seconds.
const READY_WITHIN: Duration = Duration::from_secs(90);

#[derive(serde::Deserialize)]
struct Announcement {
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
    bucket: String,
}

/// Whether the server checks signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Every request must be signed by the created key with its secret.
    Enforced,
    /// Any credentials are accepted (moto's default).
    Off,
}

/// A running moto S3 server with one bucket.
#[derive(Debug)]
pub struct MotoS3 {
    pub endpoint: String,
    pub bucket: String,
    pub credentials: S3Credentials,
    process: ServerProcess,
}

impl MotoS3 {
    /// Starts moto on a free port of 127.0.0.1 with `bucket`.
    pub fn start(bucket: &str, auth: Auth) -> Result<Self, HarnessError> {
        let python = std::env::var("BLOODRAVEN_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut command = Command::new(&python);
        command
            .arg(crate_file("servers/moto_s3.py"))
            .arg("0")
            .arg(bucket)
            .arg(match auth {
                Auth::Enforced => "auth",
                Auth::Off => "noauth",
            });
        let (process, line) = ServerProcess::start_announcing(command, MOTO_INSTALL, READY_WITHIN)?;
        let announced: Announcement =
            serde_json::from_str(&line).map_err(|err| HarnessError::Announcement {
                program: process.program().to_string(),
                line: line.clone(),
                reason: err.to_string(),
            })?;
        Ok(Self {
            endpoint: announced.endpoint,
            bucket: announced.bucket,
            credentials: S3Credentials {
                access_key_id: announced.access_key_id,
                secret_access_key: announced.secret_access_key,
            },
            process,
        })
    }

    /// The target for `bucket` on this server with `credentials`.
    pub fn target(&self, bucket: &str, credentials: S3Credentials, prefix: &str) -> S3Target {
        S3Target {
            endpoint: Some(self.endpoint.clone()),
            region: None,
            bucket: bucket.to_string(),
            prefix: Some(prefix.to_string()),
            credentials,
        }
    }

    /// The production client for this server's bucket, over real TCP.
    pub fn storage(
        &self,
        prefix: &str,
        tuning: TransferTuning,
    ) -> Result<ObjectStorage, StorageError> {
        ObjectStorage::new(
            &self.target(&self.bucket, self.credentials.clone(), prefix),
            Arc::new(TcpDialer),
            tuning,
        )
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}
