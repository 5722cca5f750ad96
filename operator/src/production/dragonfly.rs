//! Production Dragonfly connector: the `redis` crate's own TCP connection, bounded by the
//! connect and response timeouts of `DragonflyTimeouts`.

use futures::future::BoxFuture;

use crate::seams::dragonfly::{
    DragonflyConnectError, DragonflyConnector, DragonflyTarget, DragonflyTimeouts,
};

#[derive(Debug, Clone)]
pub struct RedisDragonflyConnector {
    timeouts: DragonflyTimeouts,
}

impl RedisDragonflyConnector {
    pub fn new(timeouts: DragonflyTimeouts) -> Self {
        Self { timeouts }
    }
}

impl DragonflyConnector for RedisDragonflyConnector {
    fn connect<'a>(
        &'a self,
        target: &'a DragonflyTarget,
    ) -> BoxFuture<'a, Result<redis::aio::MultiplexedConnection, DragonflyConnectError>> {
        Box::pin(async move {
            let address = target.address();
            let handshake = |source| DragonflyConnectError::Handshake {
                address: address.clone(),
                source,
            };
            let info =
                redis::IntoConnectionInfo::into_connection_info((target.host.clone(), target.port))
                    .map_err(handshake)?
                    .set_redis_settings(target.redis_info());
            let client = redis::Client::open(info).map_err(handshake)?;
            let config = self.timeouts.redis_config();
            let connect = client.get_multiplexed_async_connection_with_config(&config);
            // The redis crate applies the connection timeout itself; this outer bound also
            // covers the AUTH handshake.
            match tokio::time::timeout(self.timeouts.connect * 2, connect).await {
                Err(_) => Err(DragonflyConnectError::Timeout {
                    address,
                    after: self.timeouts.connect,
                }),
                Ok(Err(source)) if source.is_timeout() => Err(DragonflyConnectError::Timeout {
                    address,
                    after: self.timeouts.connect,
                }),
                Ok(Err(source)) => Err(DragonflyConnectError::Handshake { address, source }),
                Ok(Ok(connection)) => Ok(connection),
            }
        })
    }
}
