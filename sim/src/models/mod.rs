//! Models of the servers the operator manages, run as pod programs on simulated hosts:
//! MySQL 8 ([`mysql`]), Dragonfly ([`dragonfly`]) and an S3 object store ([`s3`], the
//! playground's MinIO). Each follows its server's
//! documentation for the behaviour the operator depends on; docs/simulation.md lists what
//! each implements, what it leaves out, and the sources.

pub mod dragonfly;
pub mod mysql;
pub mod s3;

use crate::images::{ImageRegistry, StartupProfile};

/// Image repository of the MySQL model (any tag: `mysql:8.4`, `mysql:8.0.36`).
pub const MYSQL_IMAGE: &str = "mysql";
/// Image repository of the Dragonfly model.
pub const DRAGONFLY_IMAGE: &str = "docker.dragonflydb.io/dragonflydb/dragonfly";

/// Registers both models with their default configuration. Each reports ready once it
/// accepts connections, which is what the pods' probes (`mysqladmin ping`, `redis-cli
/// ping`) observe; MySQL also drops readiness while it restarts after a CLONE.
pub fn register(registry: &mut ImageRegistry) {
    registry.register(
        MYSQL_IMAGE,
        mysql::MysqlProgram::default(),
        StartupProfile::default(),
    );
    registry.register(
        DRAGONFLY_IMAGE,
        dragonfly::DragonflyProgram::default(),
        StartupProfile::default(),
    );
    for image in s3::MINIO_IMAGES {
        registry.register(image, s3::MinioProgram, StartupProfile::default());
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn models_are_registered_for_any_tag() {
        let registry = crate::programs::builtin_registry();
        assert!(registry.resolve("mysql:8.4").is_some());
        assert!(registry.resolve("docker.io/library/mysql:8.0.36").is_some());
        assert!(
            registry
                .resolve("docker.dragonflydb.io/dragonflydb/dragonfly:v1.38.0")
                .is_some()
        );
        assert!(
            registry
                .resolve("quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z")
                .is_some()
        );
        assert!(registry.resolve("minio/minio:latest").is_some());
    }
}
