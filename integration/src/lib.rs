//! The integration tier's harness: real servers (an S3 server, MariaDB, Redis, podman's
//! Docker-compatible engine for the chaos runner's k3d backend), started by the tests
//! themselves, each stopped when its handle drops. A server that cannot be started is
//! an error naming what to install, never a skipped test: `make test-integration`
//! fails when the tier cannot run.
//!
//! The tests live in `tests/` and are `#[ignore]`d in the normal suite; `make
//! test-integration` runs exactly them (docs/testing.md, docs/backups.md).

pub mod mariadb;
pub mod podman;
pub mod process;
pub mod redis;
pub mod s3;

pub use process::{HarnessError, ServerProcess};
