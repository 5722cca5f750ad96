//! The image registry: which in-process program a container image runs, and how long
//! the simulated kubelet takes to start it. An image with no program fails visibly
//! (ErrImagePull / ImagePullBackOff), never silently.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::pod::PodProgram;

/// How long a container takes from "kubelet decides to start it" to "its program
/// runs": image pull, container creation and process start. Live, a MySQL pod restart
/// takes seconds; the simulation keeps that shape so that the operator sees windows
/// where a pod exists but is not serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartupProfile {
    pub delay: Duration,
    /// Up to this much more, drawn from the world's seeded generator per start.
    pub jitter: Duration,
}

impl Default for StartupProfile {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(500),
            jitter: Duration::from_millis(500),
        }
    }
}

#[derive(Clone)]
struct Entry {
    program: Arc<dyn PodProgram>,
    startup: StartupProfile,
}

/// Image repository name -> program. Tags and digests are ignored when matching
/// (`mysql:8.4` and `mysql@sha256:...` both run the `mysql` program); a program that
/// cares reads `PodContext::image`.
#[derive(Clone, Default)]
pub struct ImageRegistry {
    entries: BTreeMap<String, Entry>,
}

impl fmt::Debug for ImageRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.entries.keys()).finish()
    }
}

/// A resolved image.
#[derive(Clone)]
pub struct ImageProgram {
    pub program: Arc<dyn PodProgram>,
    pub startup: StartupProfile,
}

impl ImageRegistry {
    /// Registers `repository` (e.g. `mysql`, `docker.dragonflydb.io/dragonflydb/dragonfly`).
    pub fn register(
        &mut self,
        repository: &str,
        program: impl PodProgram,
        startup: StartupProfile,
    ) -> &mut Self {
        self.entries.insert(
            normalize_repository(repository),
            Entry {
                program: Arc::new(program),
                startup,
            },
        );
        self
    }

    /// The program for a full image reference, if one is registered.
    pub fn resolve(&self, image: &str) -> Option<ImageProgram> {
        self.entries
            .get(&normalize_repository(image))
            .map(|entry| ImageProgram {
                program: entry.program.clone(),
                startup: entry.startup,
            })
    }

    /// The registered repositories, sorted.
    pub fn repositories(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
}

/// `docker.io/library/mysql:8.4@sha256:..` -> `mysql`: strips the digest, the tag (a
/// `:` after the last `/`), and Docker Hub's implicit registry and `library/` prefix.
pub fn normalize_repository(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let without_tag = match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    let without_registry = without_tag
        .strip_prefix("docker.io/")
        .or_else(|| without_tag.strip_prefix("index.docker.io/"))
        .unwrap_or(without_tag);
    without_registry
        .strip_prefix("library/")
        .unwrap_or(without_registry)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::{PodContext, ProgramFuture};

    struct Nothing;
    impl PodProgram for Nothing {
        fn run(&self, _ctx: PodContext) -> ProgramFuture {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn image_references_normalize_to_repositories() {
        assert_eq!(normalize_repository("mysql:8.4"), "mysql");
        assert_eq!(normalize_repository("docker.io/library/mysql:8.4"), "mysql");
        assert_eq!(
            normalize_repository("docker.dragonflydb.io/dragonflydb/dragonfly:v1.38.0"),
            "docker.dragonflydb.io/dragonflydb/dragonfly"
        );
        assert_eq!(
            normalize_repository("docker.dragonflydb.io/dragonflydb/dragonfly@sha256:abc"),
            "docker.dragonflydb.io/dragonflydb/dragonfly"
        );
        assert_eq!(
            normalize_repository("localhost:5000/bloodraven:dev"),
            "localhost:5000/bloodraven"
        );
    }

    #[test]
    fn unknown_images_do_not_resolve() {
        let mut registry = ImageRegistry::default();
        registry.register("mysql", Nothing, StartupProfile::default());
        assert!(registry.resolve("mysql:8.0.36").is_some());
        assert!(registry.resolve("postgres:16").is_none());
        assert_eq!(registry.repositories(), vec!["mysql".to_string()]);
    }
}
