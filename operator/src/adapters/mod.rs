//! Adapters: the operator's writes to the outside world. `kube` holds every Kubernetes
//! write (server-side apply of children, status, pod labels, lease moves), `events`
//! publishes Events with the injected clock. The MySQL and Dragonfly adapters live
//! beside them.

pub mod events;
pub mod kube;
pub mod lease;

#[cfg(test)]
pub(crate) mod fake_api;
