//! Production: the operator's connections to the outside world. `kube` holds every
//! Kubernetes write (server-side apply of children, status, pod labels), `lease` the
//! guarded Lease writes, `events` publishes Events with the injected clock; `mysql` and
//! `dragonfly` are the production implementations of the data-plane seams.

pub mod dragonfly;
pub(crate) mod events;
pub mod kube;
pub mod lease;
pub mod mysql;

#[cfg(test)]
pub(crate) mod fake_api;
