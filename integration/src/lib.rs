//! The integration tier's harness: real servers (an S3 server and MariaDB today; Redis
//! next), started by the tests themselves on 127.0.0.1, each stopped when its handle
//! drops. A server that cannot be started is an error naming what to install, never a
//! skipped test: `make test-integration` fails when the tier cannot run.
//!
//! The tests live in `tests/` and are `#[ignore]`d in the normal suite; `make
//! test-integration` runs exactly them (docs/testing.md, docs/backups.md).

pub mod mariadb;
pub mod process;
pub mod s3;

pub use process::{HarnessError, ServerProcess};
