//! The simulated world: turmoil hosts and network, the in-memory API server on its own
//! host, the playground's nodes (a control-plane node and one node per site), and the
//! control plane that runs between steps. One seed decides everything: turmoil's
//! network and per-host tokio RNGs, the API server's names and uids, scheduling
//! tie-breaks, start-up jitter and generated pod names.
//!
//! Callers step the world and apply faults between steps; a fault takes effect before
//! the next step runs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::apiserver::{ApiServer, ServerConfig, TurmoilListener};
use crate::clock::{DEFAULT_EPOCH_SECONDS, SimClock};
use crate::cluster::{
    ClusterTimings, ControlPlane, ControllerApi, NodeInfo, key_events, key_nodes, key_pods,
};
use crate::images::ImageRegistry;
use crate::network::{Network, NetworkFault, Placement};
use crate::object::{name, str_at};
use crate::rng::{SimRng, Stream};
use crate::seam_faults::SeamFaults;
use crate::transport::{API_SERVER_HOST, API_SERVER_PORT};

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("simulated host software failed: {0}")]
    Host(String),
    #[error("unknown node {node:?} (nodes: {known})")]
    UnknownNode { node: String, known: String },
    #[error("unknown site {site:?} (sites: {known})")]
    UnknownSite { site: String, known: String },
    #[error("API server rejected {what}: {message}")]
    Api { what: String, message: String },
    #[error("cannot freeze or thaw a container: {0}")]
    Freeze(#[from] crate::cluster::FreezeError),
}

/// A site of the topology: a zone with one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// `iad`, `pdx`.
    pub name: String,
    /// The node's name (also its turmoil host).
    pub node: String,
}

/// Builds a [`World`]. Defaults give the playground topology: sites `iad` and `pdx`.
#[derive(Clone, Debug)]
pub struct WorldBuilder {
    seed: u64,
    tick: Duration,
    epoch: Duration,
    cluster: String,
    sites: Vec<String>,
    min_latency: Duration,
    max_latency: Duration,
    timings: ClusterTimings,
    images: ImageRegistry,
    watch_delay_max: Duration,
    tcp_capacity: Option<usize>,
    seam_faults: SeamFaults,
}

impl WorldBuilder {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            // 2 ms: half the steps of turmoil's 1 ms default for the same simulated time
            // (10 idle minutes: ~1.1 s instead of ~2.5 s wall in the dev profile; see
            // docs/simulation.md, "World performance"), still finer than any timeout here.
            tick: Duration::from_millis(2),
            epoch: Duration::from_secs(DEFAULT_EPOCH_SECONDS),
            cluster: "bloodraven".to_string(),
            sites: vec!["iad".to_string(), "pdx".to_string()],
            min_latency: Duration::ZERO,
            max_latency: Duration::from_millis(2),
            timings: ClusterTimings::default(),
            images: crate::programs::builtin_registry(),
            watch_delay_max: Duration::ZERO,
            tcp_capacity: None,
            seam_faults: SeamFaults::off(),
        }
    }

    /// turmoil's per-host TCP capacity (default 64): the pending connections a
    /// listener holds before it accepts them, and each stream's segments in flight.
    /// turmoil panics ("server socket buffer full") when more clients than that
    /// connect to one listener within a step, as the sidecars of 100 groups do to the
    /// API server; a real kernel would queue or refuse them.
    pub fn tcp_capacity(mut self, capacity: usize) -> Self {
        self.tcp_capacity = Some(capacity);
        self
    }

    /// Simulated time per step (default 2 ms). Coarser ticks run faster and quantise
    /// network latency and timers to the tick.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// The simulated wall-clock start, as seconds since the Unix epoch.
    pub fn epoch_seconds(mut self, seconds: u64) -> Self {
        self.epoch = Duration::from_secs(seconds);
        self
    }

    /// Site names; each gets a node `<cluster>-<site>` labelled `zone-<site>`.
    pub fn sites(mut self, sites: &[&str]) -> Self {
        self.sites = sites.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Delays every watch event by up to `max`, drawn from the seed (see
    /// `ServerConfig::watch_delay_max`): finds clients that act on a cache that has not
    /// caught up with their own writes.
    pub fn watch_delay(mut self, max: Duration) -> Self {
        self.watch_delay_max = max;
        self
    }

    /// Seam faults the API server injects into the product's requests and watch streams
    /// (off by default; see `crate::seam_faults`). A non-zero `watchDelayMaxMs` delays
    /// watch events as [`WorldBuilder::watch_delay`] does (the larger bound wins).
    pub fn seam_faults(mut self, faults: SeamFaults) -> Self {
        self.seam_faults = faults;
        self
    }

    /// Message latency range on every link (turmoil draws from it with the seed).
    pub fn latency(mut self, min: Duration, max: Duration) -> Self {
        self.min_latency = min;
        self.max_latency = max.max(min);
        self
    }

    pub fn timings(mut self, timings: ClusterTimings) -> Self {
        self.timings = timings;
        self
    }

    /// The image registry (the built-in test programs are registered by default).
    pub fn images(mut self, images: ImageRegistry) -> Self {
        self.images = images;
        self
    }

    pub fn images_mut(&mut self) -> &mut ImageRegistry {
        &mut self.images
    }

    pub fn build(self) -> Result<World, WorldError> {
        let mut turmoil_builder = turmoil::Builder::new();
        turmoil_builder
            // turmoil keys its own SmallRng from this: latency draws and the per-host
            // tokio seeds (docs/simulation.md, "Random numbers", on what that leaves).
            .rng_seed(SimRng::new(self.seed, Stream::Turmoil).next_u64())
            .epoch(UNIX_EPOCH + self.epoch)
            .tick_duration(self.tick)
            // Hosts never "finish"; the duration only bounds client-driven `Sim::run`.
            .simulation_duration(Duration::from_secs(100 * 365 * 24 * 3600))
            .min_message_latency(self.min_latency)
            .max_message_latency(self.max_latency);
        if let Some(capacity) = self.tcp_capacity {
            turmoil_builder.tcp_capacity(capacity);
        }
        let sim = turmoil_builder.build();
        let clock = SimClock::new(self.epoch);
        let api = ApiServer::with_config(
            Arc::new(clock.clone()),
            ServerConfig {
                seed: self.seed,
                watch_delay_max: self.watch_delay_max.max(self.seam_faults.watch_delay_max()),
                seam_faults: self.seam_faults,
                ..ServerConfig::default()
            },
        );
        let mut net = Network::new(sim);

        let served = api.clone();
        net.add_host(API_SERVER_HOST, Placement::ControlPlane, move || {
            let api = served.clone();
            async move {
                let listener = TurmoilListener(
                    turmoil::net::TcpListener::bind(("0.0.0.0", API_SERVER_PORT)).await?,
                );
                api.serve(listener).await?;
                Ok(())
            }
        });

        let control_plane_node = format!("{}-control-plane", self.cluster);
        let mut nodes = vec![NodeInfo {
            name: control_plane_node.clone(),
            host: control_plane_node,
            site: None,
            crashed: false,
        }];
        let mut sites = Vec::new();
        for site in &self.sites {
            let node = format!("{}-{site}", self.cluster);
            sites.push(Site {
                name: site.clone(),
                node: node.clone(),
            });
            nodes.push(NodeInfo {
                name: node.clone(),
                host: node,
                site: Some(site.clone()),
                crashed: false,
            });
        }
        let controller_api = ControllerApi::new(api.clone());
        for node in &nodes {
            let placement = node
                .site
                .clone()
                .map_or(Placement::ControlPlane, Placement::Site);
            // A node host only holds the node's address: its kubelet is modelled by the
            // control plane, and each pod runs on a host of its own.
            net.add_host(&node.host, placement, || async { Ok(()) });
            let ip = net
                .ip(&node.host)
                .map(|ip| ip.to_string())
                .unwrap_or_default();
            register_node(&controller_api, node, &ip)?;
        }

        let rng = SimRng::new(self.seed, Stream::ControlPlane);
        let control = ControlPlane::new(
            api.clone(),
            clock.clone(),
            self.timings.clone(),
            rng,
            self.images,
        );
        let next_pass = Duration::ZERO;
        Ok(World {
            net,
            api,
            clock,
            control,
            nodes,
            sites,
            seed: self.seed,
            tick: self.tick,
            next_pass,
            api_down: false,
        })
    }
}

fn register_node(api: &ControllerApi, node: &NodeInfo, ip: &str) -> Result<(), WorldError> {
    let mut labels = json!({
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    });
    match &node.site {
        Some(site) => {
            labels["topology.kubernetes.io/zone"] = json!(format!("zone-{site}"));
            labels["shipstream.io/site"] = json!(site);
        }
        None => {
            labels["node-role.kubernetes.io/control-plane"] = json!("true");
        }
    }
    let object = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": labels}, "spec": {}});
    api.api
        .create(
            &key_nodes(),
            None,
            object,
            &crate::apiserver::Caller {
                user_agent: "kubelet",
            },
        )
        .map_err(|err| WorldError::Api {
            what: format!("node {}", node.name),
            message: err.to_string(),
        })?;
    let resources =
        json!({"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": node.name}],
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure"},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available"},
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"},
        ],
        "nodeInfo": {
            "kubeletVersion": "v1.33.0-sim",
            "kubeProxyVersion": "v1.33.0-sim",
            "containerRuntimeVersion": "bloodraven-sim://0.1",
            "osImage": "Bloodraven simulated node",
            "kernelVersion": "turmoil",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "machineID": node.name,
            "systemUUID": node.name,
            "bootID": node.name,
        },
    }});
    api.merge_patch_status("kubelet", &key_nodes(), None, &node.name, status)
        .map(|_| ())
        .ok_or_else(|| WorldError::Api {
            what: format!("status of node {}", node.name),
            message: "patch failed".to_string(),
        })
}

/// A fault applied between steps. Network faults name sites; node faults name nodes
/// (see [`World::site_node`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Cut a site off from everything outside it (including the API server).
    IsolateSite(String),
    /// Cut the two sites off from each other.
    PartitionSites(String, String),
    HealSite(String),
    HealSites(String, String),
    /// Remove every network fault.
    HealNetwork,
    /// Power off a node: its pods' hosts crash; the node goes NotReady after the grace period.
    CrashNode(String),
    /// Power the node back on: the kubelet restarts its pods.
    RecoverNode(String),
    /// `kubectl cordon`.
    Cordon(String),
    /// `kubectl uncordon`.
    Uncordon(String),
    /// `kubectl drain`: cordon, then delete every pod on the node.
    Drain(String),
    /// Freeze one container of a running pod (the cgroup freezer: `docker pause`,
    /// SIGSTOP): its program stops where it is, its pod and the other containers run on.
    FreezeContainer {
        namespace: String,
        pod: String,
        container: String,
    },
    /// Let a frozen container run again.
    ThawContainer {
        namespace: String,
        pod: String,
        container: String,
    },
    /// Crash the API server's host (and with it the control plane).
    CrashApiServer,
    RecoverApiServer,
}

/// The simulated world. Not `Send`: turmoil runs every host on this thread.
pub struct World {
    net: Network,
    api: ApiServer,
    clock: SimClock,
    control: ControlPlane,
    nodes: Vec<NodeInfo>,
    sites: Vec<Site>,
    seed: u64,
    tick: Duration,
    next_pass: Duration,
    api_down: bool,
}

impl World {
    /// The playground topology with the given seed and default settings.
    pub fn playground(seed: u64) -> Result<Self, WorldError> {
        WorldBuilder::new(seed).build()
    }

    pub fn api(&self) -> &ApiServer {
        &self.api
    }

    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Simulated time since the world was built.
    pub fn elapsed(&self) -> Duration {
        self.net.sim.elapsed()
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// The node of a site.
    pub fn site_node(&self, site: &str) -> Result<&str, WorldError> {
        self.sites
            .iter()
            .find(|s| s.name == site)
            .map(|s| s.node.as_str())
            .ok_or_else(|| WorldError::UnknownSite {
                site: site.to_string(),
                known: self.site_names(),
            })
    }

    /// Every node name, the control-plane node first.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    fn site_names(&self) -> String {
        self.sites
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn network(&mut self) -> &mut Network {
        &mut self.net
    }

    /// Adds host software (restarted from `software` when bounced), placed in a site or
    /// on the control plane for partitions.
    pub fn add_host<F, Fut>(&mut self, name: &str, placement: Placement, software: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        self.net.add_host(name, placement, software);
    }

    /// Adds a client: a future that runs once (a test driver, the chaos runner).
    pub fn add_client<Fut>(&mut self, name: &str, placement: Placement, client: Fut)
    where
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        self.net.add_client(name, placement, client);
    }

    /// Advances simulated time by one tick, then runs the control plane if its
    /// interval has elapsed.
    pub fn step(&mut self) -> Result<(), WorldError> {
        self.net
            .sim
            .step()
            .map_err(|err| WorldError::Host(err.to_string()))?;
        self.clock.publish(self.net.sim.elapsed());
        if self.net.sim.elapsed() >= self.next_pass {
            self.next_pass = self.net.sim.elapsed() + self.control.timings.controller_interval;
            self.run_pass();
        }
        Ok(())
    }

    fn run_pass(&mut self) {
        let api_reachable = !self.api_down;
        self.control
            .pass(&mut self.net, &self.nodes, API_SERVER_HOST, api_reachable);
    }

    /// Steps for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), WorldError> {
        let until = self.elapsed() + duration;
        while self.elapsed() < until {
            self.step()?;
        }
        Ok(())
    }

    /// Steps until `done` holds (checked once per control-plane interval) or `timeout`
    /// of simulated time passes; returns whether it held.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&World) -> bool,
    ) -> Result<bool, WorldError> {
        let until = self.elapsed() + timeout;
        let check_every = self.control.timings.controller_interval;
        let mut next_check = self.elapsed();
        while self.elapsed() < until {
            if self.elapsed() >= next_check {
                if done(self) {
                    return Ok(true);
                }
                next_check = self.elapsed() + check_every;
            }
            self.step()?;
        }
        Ok(done(self))
    }

    /// Applies a fault now (before the next step).
    pub fn apply(&mut self, fault: Fault) -> Result<(), WorldError> {
        tracing::info!(?fault, elapsed = ?self.elapsed(), "applying fault");
        match fault {
            Fault::IsolateSite(site) => {
                self.site_node(&site)?;
                self.net.add_fault(NetworkFault::IsolateSite(site));
            }
            Fault::PartitionSites(a, b) => {
                self.site_node(&a)?;
                self.site_node(&b)?;
                self.net.add_fault(NetworkFault::PartitionSites(a, b));
            }
            Fault::HealSite(site) => self.net.remove_fault(&NetworkFault::IsolateSite(site)),
            Fault::HealSites(a, b) => self.net.remove_fault(&NetworkFault::PartitionSites(a, b)),
            Fault::HealNetwork => self.net.heal_all(),
            Fault::CrashNode(node) => {
                self.node_mut(&node)?.crashed = true;
                self.run_pass();
            }
            Fault::RecoverNode(node) => {
                self.node_mut(&node)?.crashed = false;
                self.run_pass();
            }
            Fault::Cordon(node) => self.set_unschedulable(&node, true)?,
            Fault::Uncordon(node) => self.set_unschedulable(&node, false)?,
            Fault::Drain(node) => {
                self.set_unschedulable(&node, true)?;
                let who = crate::apiserver::Caller {
                    user_agent: "kubectl-drain",
                };
                let pods = self
                    .api
                    .list(&key_pods(), None, &Default::default())
                    .map(|l| l.items)
                    .unwrap_or_default();
                for pod in pods
                    .iter()
                    .filter(|p| str_at(p, &["spec", "nodeName"]) == Some(node.as_str()))
                {
                    let ns = crate::object::namespace(pod);
                    if let Err(err) = self.api.delete(&key_pods(), Some(ns), name(pod), &who) {
                        tracing::debug!(%err, pod = name(pod), "drain: delete failed");
                    }
                }
            }
            Fault::FreezeContainer {
                namespace,
                pod,
                container,
            } => self
                .control
                .kubelet
                .set_frozen(&namespace, &pod, &container, true)?,
            Fault::ThawContainer {
                namespace,
                pod,
                container,
            } => self
                .control
                .kubelet
                .set_frozen(&namespace, &pod, &container, false)?,
            Fault::CrashApiServer => {
                self.net.crash(API_SERVER_HOST);
                self.api_down = true;
            }
            Fault::RecoverApiServer => {
                self.net.bounce(API_SERVER_HOST);
                self.api_down = false;
            }
        }
        Ok(())
    }

    fn node_mut(&mut self, node: &str) -> Result<&mut NodeInfo, WorldError> {
        let known = self
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        self.nodes
            .iter_mut()
            .find(|n| n.name == node)
            .ok_or_else(|| WorldError::UnknownNode {
                node: node.to_string(),
                known,
            })
    }

    fn set_unschedulable(&mut self, node: &str, unschedulable: bool) -> Result<(), WorldError> {
        self.node_mut(node)?;
        let patch = json!({"spec": {"unschedulable": if unschedulable { json!(true) } else { Value::Null }}});
        self.api
            .patch(
                &key_nodes(),
                None,
                node,
                crate::apiserver::Patch::Merge(patch),
                crate::apiserver::Subresource::Main,
                &crate::apiserver::Caller {
                    user_agent: "kubectl-cordon",
                },
            )
            .map(|_| ())
            .map_err(|err| WorldError::Api {
                what: format!("cordon of node {node}"),
                message: err.to_string(),
            })
    }

    /// Every Kubernetes Event so far, one line each in creation order:
    /// `time type reason kind/namespace/name: message (xN)`. Two runs with one seed
    /// produce byte-identical traces.
    pub fn event_trace(&self) -> String {
        let mut events = self
            .api
            .list(&key_events(), None, &Default::default())
            .map(|l| l.items)
            .unwrap_or_default();
        let created_order = |e: &Value| {
            let suffix = name(e)
                .rsplit('.')
                .next()
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .unwrap_or(u64::MAX);
            (
                str_at(e, &["firstTimestamp"])
                    .unwrap_or_default()
                    .to_string(),
                suffix,
                name(e).to_string(),
            )
        };
        events.sort_by_key(created_order);
        let mut trace = String::new();
        for event in &events {
            let involved = event.get("involvedObject").cloned().unwrap_or(Value::Null);
            trace.push_str(&format!(
                "{} {} {} {}/{}/{}: {} (x{})\n",
                str_at(event, &["firstTimestamp"]).unwrap_or_default(),
                str_at(event, &["type"]).unwrap_or_default(),
                str_at(event, &["reason"]).unwrap_or_default(),
                str_at(&involved, &["kind"]).unwrap_or_default(),
                str_at(&involved, &["namespace"]).unwrap_or_default(),
                str_at(&involved, &["name"]).unwrap_or_default(),
                str_at(event, &["message"]).unwrap_or_default(),
                event.get("count").and_then(Value::as_u64).unwrap_or(1),
            ));
        }
        trace
    }
}
