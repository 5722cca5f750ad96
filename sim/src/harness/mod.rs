//! A driven World: the playground World plus the loop that steps it, so that a caller
//! (the chaos runner, a component test) gets a cluster it can act on from a client host
//! without depending on the chaos runner. The driver serves a fault mailbox between
//! ticks (the World is not reachable from inside a host) and samples each site's MySQL
//! writability after every tick. What the host may hold of the World is a
//! [`WorldHandle`]; the operator's /metrics scrape is in [`metrics`].

pub mod cache_master;
pub mod mailbox;
pub mod metrics;
pub mod writability;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::apiserver::ApiServer;
use crate::images::StartupProfile;
use crate::models::MYSQL_IMAGE;
use crate::models::mysql::{MysqlObserver, MysqlProgram};
use crate::playground::{self, InstallError};
use crate::seam_faults::SeamFaults;
use crate::{Fault, Placement, SimClock, World, WorldBuilder, WorldError};

pub use cache_master::{CacheMasterSampler, CacheMasterViolation};
pub use mailbox::{MailboxError, WorldMailbox};
pub use metrics::ScrapeError;
pub use writability::{Millis, WritabilitySample, WritabilitySampler};

/// The turmoil host the first client runs on (later ones get `-2`, `-3`, ...).
pub const CLIENT_HOST: &str = "chaos-runner";

/// How long mysqld takes from container start to accepting connections in a driven
/// playground: a server with an existing data directory (InnoDB recovery, GTID state,
/// the image's entrypoint) takes seconds, not the model's default half second; with that
/// default a killed primary came back inside the 3 s detection window and a site kill
/// could never cause a failover.
///
/// Basis for the figure: the MySQL 8.4 Reference Manual, "InnoDB Recovery" (17.18.2):
/// after a crash, redo log application runs during initialization *before* any
/// connection is accepted, then incomplete transactions roll back; and the reference
/// guide's own timing table puts a playground pod-kill failover at "about 30-45
/// seconds". A container restart of the official image (entrypoint, then mysqld with
/// InnoDB recovery on a small data directory) takes several seconds on a laptop-class
/// k3d node; 5-8 s is the low end of that, enough that the operator's detection window
/// closes and fails over first, as the guide describes. Serve mode uses the same value.
pub const REALISTIC_MYSQL_STARTUP: StartupProfile = StartupProfile {
    delay: Duration::from_secs(5),
    jitter: Duration::from_secs(3),
};

/// Why the driver could not build the World or finish a client.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("simulation: {0}")]
    World(#[from] WorldError),
    #[error("installing {what} into the simulated API server: {source}")]
    Install {
        what: &'static str,
        #[source]
        source: Box<InstallError>,
    },
    #[error("the simulated run did not finish within {0:?} of simulated time")]
    Stuck(Duration),
}

/// What a client host may hold of the driven World; `Send`, so it can cross into a host.
#[derive(Clone)]
pub struct WorldHandle {
    seed: u64,
    api: ApiServer,
    clock: SimClock,
    mailbox: WorldMailbox,
    observer: MysqlObserver,
    /// site -> node.
    sites: BTreeMap<String, String>,
    /// Writability changes recorded by the driver, not yet taken by a client.
    samples: Arc<Mutex<Vec<WritabilitySample>>>,
    /// `single-cache-master` violations recorded by the driver since the start.
    cache_masters: Arc<Mutex<Vec<CacheMasterViolation>>>,
}

impl WorldHandle {
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn api(&self) -> &ApiServer {
        &self.api
    }

    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// site -> node, by site name.
    pub fn sites(&self) -> &BTreeMap<String, String> {
        &self.sites
    }

    /// The node a site runs on.
    pub fn node_of(&self, site: &str) -> Option<&str> {
        self.sites.get(site).map(String::as_str)
    }

    /// Applies World faults in order between two ticks, and waits until they were.
    pub async fn apply(&self, faults: Vec<Fault>) -> Result<(), MailboxError> {
        self.mailbox.apply(faults).await
    }

    /// Runs `job` on a new client host inside `site`'s network (given that host's
    /// name, for a cluster dialer) and returns its result: how a person on the site's
    /// node reaches its mysqld while the site is partitioned. See
    /// [`WorldMailbox::run_in_site`].
    pub async fn run_in_site<T, F, Fut>(&self, site: &str, job: F) -> Result<T, MailboxError>
    where
        T: Send + 'static,
        F: FnOnce(String) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        self.mailbox.run_in_site(site, job).await
    }

    /// Each site's writability now: a site accepts writes when any MySQL model running
    /// on its node does.
    pub fn site_writability(&self) -> BTreeMap<String, bool> {
        self.sites
            .iter()
            .map(|(site, node)| (site.clone(), self.observer.accepts_writes_on(node)))
            .collect()
    }

    /// Every `single-cache-master` violation the driver saw since the World started
    /// (ticks where an app-facing Dragonfly Service selected two pods), oldest first.
    pub fn cache_master_violations(&self) -> Vec<CacheMasterViolation> {
        self.cache_masters
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// The writability changes the driver sampled since the last call, oldest first.
    pub fn take_writability_changes(&self) -> Option<Vec<WritabilitySample>> {
        self.samples
            .lock()
            .ok()
            .map(|mut s| std::mem::take(&mut *s))
    }
}

/// What a client of [`DrivenWorld::run_client`] gets inside its host.
pub struct ClientHost {
    /// The host's turmoil name (for a cluster dialer).
    pub name: String,
    /// A client of the simulated API server, built inside the host.
    pub client: kube::Client,
    pub world: WorldHandle,
}

impl ClientHost {
    /// The operator's /metrics body, scraped over the simulated network.
    pub async fn operator_metrics(&self) -> Result<String, ScrapeError> {
        metrics::scrape_operator(&self.client).await
    }
}

/// The playground World plus its driver: a MySQL observer registered with the image
/// registry, the CRDs installed, the fault mailbox, and the per-tick writability sampler.
pub struct DrivenWorld {
    world: World,
    handle: WorldHandle,
    sampler: WritabilitySampler,
    cache_master: CacheMasterSampler,
    clients: u32,
}

impl DrivenWorld {
    /// The playground topology (sites iad and pdx) for `seed`, with the Bloodraven CRDs
    /// and a mysqld that starts in [`REALISTIC_MYSQL_STARTUP`].
    pub fn playground(seed: u64) -> Result<Self, DriverError> {
        Self::playground_with_mysql_startup(seed, REALISTIC_MYSQL_STARTUP)
    }

    /// [`DrivenWorld::playground`] with another mysqld start-up time: component tests
    /// that restart a primary within the detection window need a mysqld that comes back
    /// in well under it.
    pub fn playground_with_mysql_startup(
        seed: u64,
        mysql_startup: StartupProfile,
    ) -> Result<Self, DriverError> {
        Self::playground_with(seed, mysql_startup, &SeamFaults::off())
    }

    /// [`DrivenWorld::playground`] whose transports inject `faults` into the product's
    /// traffic (see [`WorldBuilder::seam_faults`]): the sweep's seams, among them watch
    /// events delayed (code that acts on a cache older than its own writes).
    pub fn playground_with_seam_faults(
        seed: u64,
        faults: &SeamFaults,
    ) -> Result<Self, DriverError> {
        Self::playground_with(seed, REALISTIC_MYSQL_STARTUP, faults)
    }

    fn playground_with(
        seed: u64,
        mysql_startup: StartupProfile,
        faults: &SeamFaults,
    ) -> Result<Self, DriverError> {
        let observer = MysqlObserver::default();
        let mut builder = WorldBuilder::new(seed).seam_faults(faults.clone());
        builder.images_mut().register(
            MYSQL_IMAGE,
            MysqlProgram::default().with_observer(observer.clone()),
            mysql_startup,
        );
        let world = builder.build()?;
        playground::install_crds(&world).map_err(|source| DriverError::Install {
            what: "the Bloodraven CRDs",
            source: Box::new(source),
        })?;
        let sites = world
            .sites()
            .iter()
            .map(|s| (s.name.clone(), s.node.clone()))
            .collect();
        let handle = WorldHandle {
            seed,
            api: world.api().clone(),
            clock: world.clock().clone(),
            mailbox: WorldMailbox::default(),
            observer,
            sites,
            samples: Arc::default(),
            cache_masters: Arc::default(),
        };
        Ok(Self {
            world,
            handle,
            sampler: WritabilitySampler::default(),
            cache_master: CacheMasterSampler::default(),
            clients: 0,
        })
    }

    /// Installs the operator (its namespace and Deployment, running the real
    /// controller through the Bloodraven image), as [`playground::install_operator`] does.
    pub fn install_operator(&mut self) -> Result<(), DriverError> {
        playground::install_operator(&self.world).map_err(|source| DriverError::Install {
            what: "the operator",
            source: Box::new(source),
        })
    }

    pub fn world(&mut self) -> &mut World {
        &mut self.world
    }

    pub fn handle(&self) -> WorldHandle {
        self.handle.clone()
    }

    /// One tick: step the World, apply requested faults, sample writability and the
    /// app-facing Dragonfly Services.
    pub fn step(&mut self) -> Result<(), DriverError> {
        self.world.step()?;
        self.handle.mailbox.serve(&mut self.world);
        let changes = self.sampler.sample(
            &self.handle.clock,
            &self.handle.sites,
            &self.handle.observer,
        );
        if !changes.is_empty()
            && let Ok(mut samples) = self.handle.samples.lock()
        {
            samples.extend(changes);
        }
        let violations = self
            .cache_master
            .sample(&self.handle.clock, &self.handle.api);
        if !violations.is_empty()
            && let Ok(mut recorded) = self.handle.cache_masters.lock()
        {
            recorded.extend(violations);
        }
        Ok(())
    }

    /// Runs `client` on a new client host (on the control plane), stepping the World
    /// until the client returns or `limit` of simulated time passes. On `Stuck` the
    /// client's future is dropped (as a client process that died).
    pub fn run_client<T, F, Fut>(&mut self, limit: Duration, client: F) -> Result<T, DriverError>
    where
        T: 'static,
        F: FnOnce(ClientHost) -> Fut + 'static,
        Fut: Future<Output = T> + 'static,
    {
        self.clients += 1;
        let name = if self.clients == 1 {
            CLIENT_HOST.to_owned()
        } else {
            format!("{CLIENT_HOST}-{}", self.clients)
        };
        let slot: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
        let out = slot.clone();
        let world = self.handle.clone();
        let own_name = name.clone();
        // turmoil cannot crash a client host: a client that overruns is killed by
        // dropping its future (as a process dies, without running its `finally`).
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        self.world
            .add_client(&name, Placement::ControlPlane, async move {
                let host = ClientHost {
                    name: own_name,
                    client: crate::transport::api_server_client()?,
                    world,
                };
                tokio::select! {
                    value = client(host) => *out.borrow_mut() = Some(value),
                    _ = killed => {}
                }
                Ok(())
            });
        let until = self.world.elapsed() + limit;
        loop {
            if let Some(value) = slot.borrow_mut().take() {
                return Ok(value);
            }
            if self.world.elapsed() >= until {
                let _ = kill.send(());
                self.step()?;
                return Err(DriverError::Stuck(limit));
            }
            self.step()?;
        }
    }

    /// Steps the World for `duration` of simulated time (faults keep being served).
    pub fn run_for(&mut self, duration: Duration) -> Result<(), DriverError> {
        let until = self.world.elapsed() + duration;
        while self.world.elapsed() < until {
            self.step()?;
        }
        Ok(())
    }
}
