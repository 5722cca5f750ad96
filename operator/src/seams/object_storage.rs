//! The data-plane seam to object storage: "open a byte stream to host:port".
//!
//! The S3 client (`crate::storage`) speaks HTTP, or HTTPS for `https://` endpoints, over
//! whatever stream this returns: a TCP socket in production ([`TcpDialer`]), a simulated
//! TCP stream in the simulation. Name resolution belongs to the dialer, so the simulation's
//! cluster DNS resolves `minio.<ns>.svc.cluster.local` exactly where a pod's resolver would.

use std::io;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A connected, bidirectional byte stream.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

pub type BoxedByteStream = Box<dyn ByteStream>;

/// Opens connections to an object store. Implementations need not bound the connect
/// time: the storage client applies its own connect timeout around every dial.
pub trait StorageDialer: Send + Sync + 'static {
    fn dial(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxedByteStream>>;
}

pub type SharedStorageDialer = Arc<dyn StorageDialer>;

/// Production: plain TCP through the system resolver.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpDialer;

impl StorageDialer for TcpDialer {
    fn dial(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<BoxedByteStream>> {
        let host = host.to_string();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            // Requests are written as header + body frames; Nagle would delay the last one.
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedByteStream)
        })
    }
}
