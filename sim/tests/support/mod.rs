//! Shared harness for model tests: a turmoil clock, pod contexts for hosts, and a stepper
//! that applies crash/bounce requests from the test script between simulation steps.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bloodraven::seams::{Clock, SharedClock};
use bloodraven_sim::pod::{HostDialer, PodContext, Readiness, SharedDialer, Volume};

/// Wall time = a pinned epoch + simulated elapsed time.
pub struct TurmoilClock;

impl Clock for TurmoilClock {
    fn now(&self) -> jiff::Timestamp {
        let epoch = jiff::Timestamp::from_second(1_767_225_600).unwrap(); // 2026-01-01
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        epoch
            .checked_add(jiff::SignedDuration::try_from(elapsed).unwrap())
            .unwrap()
    }
}

pub fn clock() -> SharedClock {
    Arc::new(TurmoilClock)
}

pub fn dialer() -> SharedDialer {
    Arc::new(HostDialer::default())
}

pub fn context(host: &str, volume: &Volume, env: &[(&str, &str)], args: &[&str]) -> PodContext {
    PodContext {
        namespace: "test".into(),
        pod: host.into(),
        node: format!("node-{host}"),
        host: host.into(),
        container: "main".into(),
        image: "test".into(),
        command: Vec::new(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        labels: BTreeMap::new(),
        volumes: BTreeMap::from([("data".to_string(), volume.clone())]),
        ready: Readiness::default(),
        clock: clock(),
        dialer: dialer(),
        termination: Default::default(),
        freezer: Default::default(),
    }
}

pub fn sim<'a>(seed: u64) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(3600))
        .tick_duration(Duration::from_millis(1))
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .rng_seed(seed)
        .build()
}

/// Faults the test script asks for; applied by [`run`] between steps.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<Vec<Fault>>>);

pub enum Fault {
    Crash(String),
    Bounce(String),
}

impl Faults {
    pub fn crash(&self, host: &str) {
        self.0.lock().unwrap().push(Fault::Crash(host.into()));
    }
    pub fn bounce(&self, host: &str) {
        self.0.lock().unwrap().push(Fault::Bounce(host.into()));
    }
}

/// Steps the simulation until every client finished, applying requested faults.
pub fn run(sim: &mut turmoil::Sim<'_>, faults: &Faults) {
    loop {
        let done = sim.step().unwrap();
        for fault in faults.0.lock().unwrap().drain(..) {
            match fault {
                Fault::Crash(host) => sim.crash(host),
                Fault::Bounce(host) => sim.bounce(host),
            }
        }
        if done {
            return;
        }
    }
}

/// The kubectl the kubectl tests drive: `$BLOODRAVEN_KUBECTL`, else the first `kubectl`
/// on PATH (a current kubectl from the Kubernetes repository, or Debian's
/// `kubernetes-client` 1.20, which `.ci/run` installs on a machine without one; both
/// pass). Panics, naming the fix, when there is none.
pub fn kubectl() -> std::path::PathBuf {
    let found = std::env::var_os("BLOODRAVEN_KUBECTL")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .map(|dir| dir.join("kubectl"))
                .find(|candidate| candidate.is_file())
        });
    match found {
        Some(path) if path.exists() => path,
        other => panic!(
            "kubectl is required for this test ({}): install Debian's kubernetes-client \
             (`apt-get install kubernetes-client`) or kubectl from the Kubernetes apt \
             repository, or point BLOODRAVEN_KUBECTL at one",
            other.map_or_else(
                || "none on PATH".to_string(),
                |p| format!("{} does not exist", p.display())
            )
        ),
    }
}
