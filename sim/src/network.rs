//! The simulated network: turmoil's `Sim`, which host belongs to which site, and the
//! network faults in force. Partitions are derived from the fault set and re-applied
//! whenever a host is added, so a pod started inside an isolated site is isolated too.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;

/// Where a host lives: a site (a zone with its node and pods) or the control plane.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Placement {
    ControlPlane,
    Site(String),
}

/// A network fault. Faults compose: healing one never repairs a link another fault
/// still cuts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NetworkFault {
    /// The site's hosts reach nothing outside the site (and nothing reaches them).
    IsolateSite(String),
    /// The two sites cannot reach each other; both still reach the control plane.
    PartitionSites(String, String),
}

#[derive(Clone, Debug)]
struct HostEntry {
    ip: IpAddr,
    placement: Placement,
}

pub struct Network {
    pub(crate) sim: turmoil::Sim<'static>,
    hosts: BTreeMap<String, HostEntry>,
    faults: BTreeSet<NetworkFault>,
    /// Host pairs (ordered by name) currently cut in turmoil.
    cut: BTreeSet<(String, String)>,
}

impl Network {
    pub(crate) fn new(sim: turmoil::Sim<'static>) -> Self {
        Self {
            sim,
            hosts: BTreeMap::new(),
            faults: BTreeSet::new(),
            cut: BTreeSet::new(),
        }
    }

    /// Registers host software (restarted from `software` on every bounce).
    pub fn add_host<F, Fut>(&mut self, name: &str, placement: Placement, software: F)
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        self.sim.host(name, software);
        let ip = self.sim.lookup(name);
        self.hosts
            .insert(name.to_string(), HostEntry { ip, placement });
        self.apply_partitions();
    }

    /// Registers a client: a future that runs once (tests, the chaos runner).
    pub fn add_client<Fut>(&mut self, name: &str, placement: Placement, client: Fut)
    where
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        self.sim.client(name, client);
        let ip = self.sim.lookup(name);
        self.hosts
            .insert(name.to_string(), HostEntry { ip, placement });
        self.apply_partitions();
    }

    pub fn has_host(&self, name: &str) -> bool {
        self.hosts.contains_key(name)
    }

    pub fn ip(&self, name: &str) -> Option<IpAddr> {
        self.hosts.get(name).map(|h| h.ip)
    }

    pub fn placement(&self, name: &str) -> Option<&Placement> {
        self.hosts.get(name).map(|h| &h.placement)
    }

    pub fn crash(&mut self, name: &str) {
        if let Some(host) = self.hosts.get(name) {
            self.sim.crash(host.ip);
        }
    }

    pub fn bounce(&mut self, name: &str) {
        if let Some(host) = self.hosts.get(name) {
            self.sim.bounce(host.ip);
        }
    }

    pub fn is_running(&mut self, name: &str) -> bool {
        match self.hosts.get(name) {
            Some(host) => self.sim.is_host_running(host.ip),
            None => false,
        }
    }

    pub fn faults(&self) -> &BTreeSet<NetworkFault> {
        &self.faults
    }

    pub fn add_fault(&mut self, fault: NetworkFault) {
        self.faults.insert(normalize(fault));
        self.apply_partitions();
    }

    pub fn remove_fault(&mut self, fault: &NetworkFault) {
        self.faults.remove(&normalize(fault.clone()));
        self.apply_partitions();
    }

    pub fn heal_all(&mut self) {
        self.faults.clear();
        self.apply_partitions();
    }

    /// Can `a` and `b` exchange packets under the current faults?
    pub fn connected(&self, a: &str, b: &str) -> bool {
        match (self.hosts.get(a), self.hosts.get(b)) {
            (Some(ha), Some(hb)) => !self.is_cut(&ha.placement, &hb.placement),
            _ => false,
        }
    }

    fn is_cut(&self, a: &Placement, b: &Placement) -> bool {
        if a == b {
            return false;
        }
        self.faults.iter().any(|fault| match fault {
            NetworkFault::IsolateSite(site) => {
                matches!(a, Placement::Site(s) if s == site)
                    || matches!(b, Placement::Site(s) if s == site)
            }
            NetworkFault::PartitionSites(x, y) => match (a, b) {
                (Placement::Site(sa), Placement::Site(sb)) => {
                    (sa == x && sb == y) || (sa == y && sb == x)
                }
                _ => false,
            },
        })
    }

    /// Brings turmoil's links in line with the fault set (O(hosts²); hosts are tens).
    fn apply_partitions(&mut self) {
        let names: Vec<&String> = self.hosts.keys().collect();
        let mut wanted = BTreeSet::new();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                if let (Some(ha), Some(hb)) = (self.hosts.get(*a), self.hosts.get(*b))
                    && self.is_cut(&ha.placement, &hb.placement)
                {
                    wanted.insert(((*a).clone(), (*b).clone()));
                }
            }
        }
        for pair in wanted.difference(&self.cut) {
            if let (Some(a), Some(b)) = (self.hosts.get(&pair.0), self.hosts.get(&pair.1)) {
                self.sim.partition(a.ip, b.ip);
            }
        }
        for pair in self.cut.difference(&wanted) {
            if let (Some(a), Some(b)) = (self.hosts.get(&pair.0), self.hosts.get(&pair.1)) {
                self.sim.repair(a.ip, b.ip);
            }
        }
        self.cut = wanted;
    }
}

/// `PartitionSites` is symmetric: store it with the sites in order.
fn normalize(fault: NetworkFault) -> NetworkFault {
    match fault {
        NetworkFault::PartitionSites(a, b) if b < a => NetworkFault::PartitionSites(b, a),
        other => other,
    }
}
