//! Adapters: the operator's writes to the outside world and the production
//! implementations of the transport seams. `kube` holds every Kubernetes write
//! (server-side apply of children, status, pod labels, lease moves), `events`
//! publishes Events with the injected clock; `mysql` (mysql_async) and `dragonfly`
//! (redis) are the production MySQL and Dragonfly connectors.

pub mod dragonfly;
pub mod events;
pub mod kube;
pub mod lease;
pub mod mysql;

#[cfg(test)]
pub(crate) mod fake_api;
