//! The single-writer observer: records each site's writability for the run, either as
//! the backend hands over every change (sim) or by polling each site on its own (k3d).
//! Only records into the history; the invariants judge it afterwards.

use std::time::Duration;

use crate::backend::{SharedBackend, SiteWritability};
use crate::workload::{self, SharedHistory};

/// Runs until `stop` flips. A backend that sees every change hands them over each
/// tick; otherwise each site gets its own poller, so that a site whose read hangs (a
/// cut-off node) neither delays the other's polls nor lends them its timestamp.
pub(super) async fn observe_writability(
    backend: SharedBackend,
    history: SharedHistory,
    poll: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    namespace: String,
) {
    loop {
        if let Some(changes) = backend.writability_changes() {
            // The backend saw every change at its instant: take them as they are.
            if let Ok(mut h) = history.lock() {
                h.writability.extend(changes);
            }
        } else if let Ok(Some(sites)) = backend.writability_sites(&namespace).await {
            let pollers = sites.into_iter().map(|site| {
                poll_site(
                    backend.clone(),
                    history.clone(),
                    poll,
                    stop.clone(),
                    namespace.clone(),
                    site,
                )
            });
            futures::future::join_all(pollers).await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Polls one site until `stop` flips, stamping each answer when it arrives.
async fn poll_site(
    backend: SharedBackend,
    history: SharedHistory,
    poll: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    namespace: String,
    site: String,
) {
    loop {
        let state = tokio::select! {
            state = backend.site_writability(&namespace, &site) => state,
            _ = stop.changed() => return,
        };
        let at = workload::now_ms(&backend.clock());
        let reason = match &state {
            SiteWritability::Unknown(why) => why.as_str(),
            _ => "",
        };
        if let Ok(mut h) = history.lock() {
            h.record_poll(at, &site, state.observed(), reason);
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}
