//! The fault mailbox between a client host and the driver: a host cannot reach the
//! World, so it posts faults here and the driver applies them between two ticks, in
//! order, and answers each request. It also starts site-local client hosts: work that
//! must run inside a site's network (the simulation's `docker exec` into a node).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::network::Placement;
use crate::{Fault, World, WorldError};

/// Why requested faults were not applied.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("world mailbox poisoned")]
    Poisoned,
    #[error("the simulation driver stopped before applying the fault")]
    DriverStopped,
    #[error("{fault}: {source}")]
    Fault {
        fault: String,
        #[source]
        source: WorldError,
    },
    #[error("cannot run a client inside site {site:?}: {source}")]
    SiteClient {
        site: String,
        #[source]
        source: WorldError,
    },
    #[error("the client host inside site {site:?} stopped before it finished")]
    SiteClientStopped { site: String },
}

type Reply = tokio::sync::oneshot::Sender<Result<(), MailboxError>>;

/// Work for a site-local client host, given that host's name; built inside the host.
type SiteJob = Box<dyn FnOnce(String) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// What a client host asks of the driver.
enum WorldRequest {
    /// Faults to apply in order, and where to say how it went.
    Faults(Vec<Fault>, Reply),
    /// Start a client host placed inside `site` that runs `job`; the reply says
    /// whether it was started (the job reports its own result).
    SiteClient {
        site: String,
        job: SiteJob,
        reply: Reply,
    },
}

#[derive(Default)]
struct Queue {
    requests: Vec<WorldRequest>,
    /// Site-local client hosts started so far (each gets a new turmoil name).
    site_clients: u64,
}

/// World faults requested by client hosts, applied by the driver between ticks.
#[derive(Clone, Default)]
pub struct WorldMailbox(Arc<Mutex<Queue>>);

impl WorldMailbox {
    fn post(&self, request: WorldRequest) -> Result<(), MailboxError> {
        self.0
            .lock()
            .map_err(|_| MailboxError::Poisoned)?
            .requests
            .push(request);
        Ok(())
    }

    /// Posts `faults` and waits for the driver to apply them (stops at the first error).
    pub async fn apply(&self, faults: Vec<Fault>) -> Result<(), MailboxError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.post(WorldRequest::Faults(faults, tx))?;
        rx.await.map_err(|_| MailboxError::DriverStopped)?
    }

    /// Runs `job` on a new client host placed inside `site`, and returns its result.
    /// The host shares the site's side of every partition, as a shell on the site's
    /// node does: it reaches the site's pods while the site is cut off from the
    /// control plane, and nothing outside the site when it is isolated.
    pub async fn run_in_site<T, F, Fut>(&self, site: &str, job: F) -> Result<T, MailboxError>
    where
        T: Send + 'static,
        F: FnOnce(String) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let (result_tx, result_rx) = tokio::sync::oneshot::channel();
        let job: SiteJob = Box::new(move |host| {
            Box::pin(async move {
                let _ = result_tx.send(job(host).await);
            })
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.post(WorldRequest::SiteClient {
            site: site.to_owned(),
            job,
            reply: tx,
        })?;
        rx.await.map_err(|_| MailboxError::DriverStopped)??;
        result_rx
            .await
            .map_err(|_| MailboxError::SiteClientStopped {
                site: site.to_owned(),
            })
    }

    /// Applies every pending request in order and answers it.
    pub fn serve(&self, world: &mut World) {
        let (pending, mut started) = match self.0.lock() {
            Ok(mut queue) => (std::mem::take(&mut queue.requests), queue.site_clients),
            Err(_) => return,
        };
        for request in pending {
            match request {
                WorldRequest::Faults(faults, reply) => {
                    let mut result = Ok(());
                    for fault in faults {
                        if let Err(source) = world.apply(fault.clone()) {
                            result = Err(MailboxError::Fault {
                                fault: format!("{fault:?}"),
                                source,
                            });
                            break;
                        }
                    }
                    let _ = reply.send(result);
                }
                WorldRequest::SiteClient { site, job, reply } => {
                    if let Err(source) = world.site_node(&site) {
                        let _ = reply.send(Err(MailboxError::SiteClient { site, source }));
                        continue;
                    }
                    started += 1;
                    let name = format!("site-client-{site}-{started}");
                    let host = name.clone();
                    world.add_client(&name, Placement::Site(site), async move {
                        job(host).await;
                        Ok(())
                    });
                    let _ = reply.send(Ok(()));
                }
            }
        }
        if let Ok(mut queue) = self.0.lock() {
            queue.site_clients = started;
        }
    }
}
