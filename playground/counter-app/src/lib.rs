//! The playground's counter app: one MySQL counter written through the group's primary
//! Service and one cache counter in Dragonfly, behind a small page and JSON API. The
//! same library runs as the `counter-app` binary on a cluster and as a pod program in
//! the simulation; only the connectors (the operator's own MySQL protocol client and
//! `redis` connection seams) and the listener differ.

pub mod args;
pub mod counter;
pub mod http;

pub use args::Args;
pub use counter::{CounterApp, CounterReading};
