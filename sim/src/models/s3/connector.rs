//! The simulation's [`StorageDialer`]: the production S3 client's connections opened on
//! the simulated network through a pod's cluster DNS, so `http://minio.<ns>.svc...:9000`
//! reaches the S3 model's pod exactly as it would live.

use std::io;

use bloodraven::seams::object_storage::{BoxedByteStream, StorageDialer};
use futures::future::BoxFuture;

use crate::pod::SharedDialer;

#[derive(Clone)]
pub struct SimStorageDialer {
    dialer: SharedDialer,
}

impl SimStorageDialer {
    pub fn new(dialer: SharedDialer) -> Self {
        Self { dialer }
    }
}

impl StorageDialer for SimStorageDialer {
    fn dial(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxedByteStream>> {
        let dial = self.dialer.dial(host, port);
        Box::pin(async move { Ok(Box::new(dial.await?) as BoxedByteStream) })
    }
}
