//! The simulated backend: the runner runs as a client host of a seeded
//! [`DrivenWorld`] (bloodraven-sim's playground plus its driver), so its polling,
//! `within`, `hold` and `wait` run on simulated time; it talks to the API server with a
//! `kube::Client` over simulated TCP. This module is the [`Backend`] impl; the fault
//! plans and their operations are in [`ops`], the counter workload's client in
//! [`counter`], and pod lookups both share in [`pods`].

mod counter;
mod ops;
mod panics;
mod pods;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bloodraven::seams::SharedClock;
use bloodraven_sim::dialer::ClusterDialer;
use bloodraven_sim::harness::{ClientHost, DrivenWorld, DriverError, WorldHandle};
use bloodraven_sim::pod::SharedDialer;
use futures::future::BoxFuture;

use super::{Backend, BackendError, SiteWritability};
use crate::cluster::{KubeCluster, SharedCluster};
use crate::runner::{self, RunConfig, ScenarioOutcome};
use crate::scenario::{BackendKind, ObjectsCheck, Scenario};
use crate::workload::{CounterTarget, WritabilitySample};

pub use ops::SimOp;

/// The seed a sim run uses when `--seed` is not given (printed with every run).
pub const DEFAULT_SEED: u64 = 1;
/// Simulated time the driver grants a run beyond the scenario's own timeout and the
/// fixture's wait, before it declares the simulation stuck.
const DRIVER_SLACK: Duration = Duration::from_secs(600);

pub(crate) fn call_error(
    operation: impl Into<String>,
    message: impl std::fmt::Display,
) -> BackendError {
    BackendError::Call {
        backend: BackendKind::Sim,
        operation: operation.into(),
        message: message.to_string(),
    }
}

/// Runs one scenario on a fresh playground World seeded with `config.seed` (default
/// [`DEFAULT_SEED`]). Blocking: the World lives on the calling thread, which must be a
/// plain thread, not a tokio runtime's (turmoil would spawn onto that runtime when a
/// crashed host's stream is dropped). Any panic during the run fails it.
pub fn run_scenario(scenario: &Scenario, config: &RunConfig) -> ScenarioOutcome {
    let seed = seed_of(scenario, config);
    let watched = panics::watch(|| run_world(scenario, config));
    let mut outcome = watched.result.unwrap_or_else(|| {
        ScenarioOutcome::not_run(
            &scenario.id,
            BackendKind::Sim,
            describe(seed),
            Some(seed),
            config.ledger_path.clone(),
        )
    });
    for message in watched.panics {
        outcome.failures.push(runner::Failure::new(
            "panic",
            format!("the run panicked: {message}"),
        ));
    }
    outcome
}

fn run_world(scenario: &Scenario, config: &RunConfig) -> ScenarioOutcome {
    let seed = seed_of(scenario, config);
    let mut config = config.clone();
    config.seed = Some(seed);
    let wall = std::time::Instant::now();
    let setup_failure = |message: String| {
        let mut outcome = ScenarioOutcome::not_run(
            &scenario.id,
            BackendKind::Sim,
            describe(seed),
            Some(seed),
            config.ledger_path.clone(),
        )
        .setup_failed(message);
        outcome.wall_ms = u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX);
        outcome
    };
    let faults = &scenario.simulation.seam_faults;
    let mut sim = match DrivenWorld::playground_with_seam_faults(seed, faults) {
        Ok(sim) => sim,
        Err(e) => return setup_failure(e.to_string()),
    };
    // A fixture with a failover group needs the operator to make it Healthy.
    match runner::fixture_needs_operator(scenario) {
        Ok(false) => {}
        Ok(true) => {
            if let Err(e) = sim.install_operator() {
                return setup_failure(e.to_string());
            }
        }
        Err(e) => return setup_failure(e.to_string()),
    }
    let limit = scenario.timeout.as_duration() + runner::FIXTURE_HEALTHY_WITHIN + DRIVER_SLACK;
    let owned = scenario.clone();
    let run_config = config.clone();
    match run_backend(&mut sim, limit, move |backend| async move {
        runner::run_scenario(&owned, backend, &run_config).await
    }) {
        Ok(outcome) => outcome,
        Err(e) => setup_failure(e.to_string()),
    }
}

/// Runs `client` on a new client host of `world` with a [`SimBackend`] built inside it
/// (see [`DrivenWorld::run_client`]).
pub fn run_backend<T, F, Fut>(
    world: &mut DrivenWorld,
    limit: Duration,
    client: F,
) -> Result<T, DriverError>
where
    T: 'static,
    F: FnOnce(Arc<SimBackend>) -> Fut + 'static,
    Fut: Future<Output = T> + 'static,
{
    world.run_client(limit, move |host| client(Arc::new(SimBackend::new(host))))
}

/// The seed of a sim run: `--seed`, else the scenario's `simulation.seed`, else
/// [`DEFAULT_SEED`].
pub fn seed_of(scenario: &Scenario, config: &RunConfig) -> u64 {
    config
        .seed
        .or(scenario.simulation.seed)
        .unwrap_or(DEFAULT_SEED)
}

fn describe(seed: u64) -> String {
    format!("simulated playground (bloodraven-sim, seed {seed})")
}

/// The backend the runner sees inside the simulation.
pub struct SimBackend {
    world: WorldHandle,
    client: kube::Client,
    cluster: SharedCluster,
    clock: SharedClock,
    /// The runner's own host, for the cluster dialer.
    host: String,
}

impl SimBackend {
    /// Must be built inside a turmoil host (the kube client spawns on its runtime).
    pub fn new(host: ClientHost) -> Self {
        Self {
            clock: Arc::new(host.world.clock().clone()),
            cluster: Arc::new(KubeCluster::new(host.client.clone())),
            world: host.world,
            client: host.client,
            host: host.name,
        }
    }

    fn node_of(&self, site: &str) -> Result<&str, BackendError> {
        self.world
            .node_of(site)
            .ok_or_else(|| BackendError::NoNodeForSite {
                backend: BackendKind::Sim,
                site: site.to_owned(),
                selector: format!(
                    "the simulated playground's sites ({})",
                    self.world
                        .sites()
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// A dialer that resolves cluster DNS names the way `host`'s pods would.
fn dialer(world: &WorldHandle, namespace: &str, host: &str) -> SharedDialer {
    ClusterDialer::new(world.api().clone(), namespace, host, Duration::from_secs(1)).shared()
}

impl Backend for SimBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sim
    }

    fn describe(&self) -> String {
        describe(self.world.seed())
    }

    fn cluster(&self) -> SharedCluster {
        self.cluster.clone()
    }

    fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    fn scrape_metrics(&self) -> BoxFuture<'_, Result<String, BackendError>> {
        Box::pin(async move {
            bloodraven_sim::harness::metrics::scrape_operator(&self.client)
                .await
                .map_err(|e| call_error("GET /metrics", e))
        })
    }

    fn counter(&self, _namespace: &str) -> Option<Arc<dyn CounterTarget>> {
        Some(Arc::new(counter::SimCounter::new(
            self.client.clone(),
            self.world.clone(),
            &self.host,
        )))
    }

    fn writability_sites<'a>(
        &'a self,
        _namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, BackendError>> {
        Box::pin(async move { Ok(Some(self.world.site_writability().into_keys().collect())) })
    }

    fn site_writability<'a>(
        &'a self,
        _namespace: &'a str,
        site: &'a str,
    ) -> BoxFuture<'a, SiteWritability> {
        Box::pin(async move {
            match self.world.site_writability().get(site) {
                Some(true) => SiteWritability::Writable,
                Some(false) => SiteWritability::ReadOnly,
                None => SiteWritability::Unknown(format!("the simulated world has no site {site}")),
            }
        })
    }

    fn writability_changes(&self) -> Option<Vec<WritabilitySample>> {
        self.world.take_writability_changes()
    }

    fn object_keys<'a>(
        &'a self,
        namespace: &'a str,
        check: &'a ObjectsCheck,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, BackendError>> {
        Box::pin(async move {
            use bloodraven::storage::{ObjectStorage, S3Credentials, S3Target, TransferTuning};
            use k8s_openapi::api::core::v1::Secret;
            let secrets: kube::Api<Secret> = kube::Api::namespaced(self.client.clone(), namespace);
            let operation = format!("read Secret {namespace}/{}", check.credentials_secret);
            let secret = secrets
                .get(&check.credentials_secret)
                .await
                .map_err(|e| call_error(&operation, e))?;
            let key = |name: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(name))
                    .and_then(|v| String::from_utf8(v.0.clone()).ok())
                    .ok_or_else(|| call_error(&operation, format!("no key {name}")))
            };
            let target = S3Target {
                endpoint: Some(check.endpoint.clone()),
                region: None,
                bucket: check.bucket.clone(),
                prefix: check.prefix.clone(),
                credentials: S3Credentials {
                    access_key_id: key("access-key-id")?,
                    secret_access_key: key("secret-access-key")?,
                },
            };
            let list = format!(
                "list s3://{}/{}",
                check.bucket,
                check.prefix.as_deref().unwrap_or("")
            );
            let storage = ObjectStorage::new(
                &target,
                Arc::new(bloodraven_sim::models::s3::SimStorageDialer::new(dialer(
                    &self.world,
                    namespace,
                    &self.host,
                ))),
                TransferTuning::default(),
            )
            .map_err(|e| call_error(&list, e))?;
            let objects = storage.list("").await.map_err(|e| call_error(&list, e))?;
            Ok(Some(objects.into_iter().map(|o| o.key).collect()))
        })
    }

    fn cache_master_violations(&self) -> Option<Vec<String>> {
        Some(
            self.world
                .cache_master_violations()
                .iter()
                .map(ToString::to_string)
                .collect(),
        )
    }
}
