//! The simulation's [`DragonflyConnector`]: a real `redis` multiplexed connection over a
//! simulated TCP stream, so the operator's Redis-protocol adapter runs unchanged.

use bloodraven::seams::dragonfly::{
    DragonflyConnectError, DragonflyConnector, DragonflyTarget, DragonflyTimeouts,
};
use futures::future::BoxFuture;

use crate::pod::SharedDialer;

#[derive(Clone)]
pub struct SimDragonflyConnector {
    dialer: SharedDialer,
    timeouts: DragonflyTimeouts,
}

impl SimDragonflyConnector {
    pub fn new(dialer: SharedDialer, timeouts: DragonflyTimeouts) -> Self {
        Self { dialer, timeouts }
    }
}

impl DragonflyConnector for SimDragonflyConnector {
    fn connect<'a>(
        &'a self,
        target: &'a DragonflyTarget,
    ) -> BoxFuture<'a, Result<redis::aio::MultiplexedConnection, DragonflyConnectError>> {
        Box::pin(async move {
            let address = target.address();
            let timeout = self.timeouts.connect;
            let handshake = async {
                let stream =
                    self.dialer
                        .dial(&target.host, target.port)
                        .await
                        .map_err(|source| DragonflyConnectError::Io {
                            address: address.clone(),
                            source,
                        })?;
                let (connection, driver) = redis::aio::MultiplexedConnection::new_with_config(
                    &target.redis_info(),
                    stream,
                    self.timeouts.redis_config(),
                )
                .await
                .map_err(|source| DragonflyConnectError::Handshake {
                    address: address.clone(),
                    source,
                })?;
                // The driver owns the socket; it ends when every clone of the connection is
                // dropped or the host crashes.
                tokio::spawn(driver);
                Ok(connection)
            };
            match tokio::time::timeout(timeout, handshake).await {
                Ok(result) => result,
                Err(_) => Err(DragonflyConnectError::Timeout {
                    address,
                    after: timeout,
                }),
            }
        })
    }
}
