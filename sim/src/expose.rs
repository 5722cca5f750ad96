//! Serve mode's doors into the simulated network: `--expose NS/SERVICE:PORT[=LOCAL]`
//! listens on a real local port and carries each accepted connection, byte for byte, to
//! the Service's port inside the simulation, through a client host that dials with the
//! cluster DNS as a pod in NS would. It stands in for `kubectl port-forward`, whose
//! subresource (SPDY or WebSocket streams) the simulated API server does not serve.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::dialer::ClusterDialer;
use crate::network::Placement;
use crate::pod::Dialer;
use crate::world::World;

/// One exposed Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    pub namespace: String,
    pub service: String,
    pub port: u16,
    /// The real local port (the Service port unless `=LOCAL` names another).
    pub local_port: u16,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "--expose {value:?}: {reason} (expected NAMESPACE/SERVICE:PORT or NAMESPACE/SERVICE:PORT=LOCAL_PORT)"
)]
pub struct ExposureParseError {
    value: String,
    reason: &'static str,
}

impl FromStr for Exposure {
    type Err = ExposureParseError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ExposureParseError {
            value: value.to_string(),
            reason,
        };
        let (target, local) = match value.split_once('=') {
            Some((target, local)) => (target, Some(local)),
            None => (value, None),
        };
        let (namespace, rest) = target.split_once('/').ok_or_else(|| fail("no namespace"))?;
        let (service, port) = rest.split_once(':').ok_or_else(|| fail("no port"))?;
        if namespace.is_empty() || service.is_empty() {
            return Err(fail("empty namespace or service"));
        }
        let port: u16 = port.parse().map_err(|_| fail("the port is not a number"))?;
        let local_port = match local {
            Some(local) => local
                .parse()
                .map_err(|_| fail("the local port is not a number"))?,
            None => port,
        };
        Ok(Self {
            namespace: namespace.to_string(),
            service: service.to_string(),
            port,
            local_port,
        })
    }
}

/// One accepted connection's two directions.
struct Bridged {
    to_sim: UnboundedReceiver<Vec<u8>>,
    from_sim: UnboundedSender<Vec<u8>>,
}

/// Listens on `address:local_port` for each exposure (on `runtime`) and adds the client
/// host that carries the connections into `world`. Returns the bound addresses.
pub fn install(
    world: &mut World,
    exposures: &[Exposure],
    address: IpAddr,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<SocketAddr>, std::io::Error> {
    let mut bound = Vec::new();
    for (index, exposure) in exposures.iter().enumerate() {
        let listener = std::net::TcpListener::bind((address, exposure.local_port))?;
        listener.set_nonblocking(true)?;
        bound.push(listener.local_addr()?);
        let (connections, mut accepted) = unbounded_channel::<Bridged>();
        runtime.spawn(accept_loop(listener, connections));
        let host = format!("expose-{index}");
        let api = world.api().clone();
        let exposure = exposure.clone();
        world.add_client(&host.clone(), Placement::ControlPlane, async move {
            let dialer =
                ClusterDialer::new(api, &exposure.namespace, &host, Duration::from_secs(1));
            while let Some(connection) = accepted.recv().await {
                let dial = dialer.dial(&exposure.service, exposure.port);
                let target = format!(
                    "{}/{}:{}",
                    exposure.namespace, exposure.service, exposure.port
                );
                tokio::task::spawn_local(async move {
                    match dial.await {
                        Ok(stream) => pump_sim_side(stream, connection).await,
                        // Dropping the connection closes the local socket, as a
                        // port-forward to a Service with no ready pod does.
                        Err(err) => tracing::warn!(%target, %err, "exposed Service unreachable"),
                    }
                });
            }
            Ok(())
        });
    }
    Ok(bound)
}

async fn accept_loop(listener: std::net::TcpListener, connections: UnboundedSender<Bridged>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(%err, "cannot adopt an exposed port's listener");
            return;
        }
    };
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let (to_sim_tx, to_sim) = unbounded_channel();
        let (from_sim, mut from_sim_rx) = unbounded_channel::<Vec<u8>>();
        if connections.send(Bridged { to_sim, from_sim }).is_err() {
            return;
        }
        tokio::spawn(async move {
            let (mut read, mut write) = socket.into_split();
            let up = async move {
                let mut buf = vec![0_u8; 16 * 1024];
                loop {
                    match read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if to_sim_tx.send(buf[..n].to_vec()).is_err() {
                                break;
                            }
                        }
                    }
                }
            };
            let down = async move {
                while let Some(bytes) = from_sim_rx.recv().await {
                    if write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                let _ = write.shutdown().await;
            };
            tokio::join!(up, down);
        });
    }
}

async fn pump_sim_side<S>(stream: S, connection: Bridged)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Bridged {
        mut to_sim,
        from_sim,
    } = connection;
    let (mut read, mut write) = tokio::io::split(stream);
    let up = async move {
        while let Some(bytes) = to_sim.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0_u8; 16 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if from_sim.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(up, down);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposures_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(
            "bloodraven-playground/dashboard:8091"
                .parse::<Exposure>()
                .unwrap(),
            Exposure {
                namespace: "bloodraven-playground".into(),
                service: "dashboard".into(),
                port: 8091,
                local_port: 8091,
            }
        );
        assert_eq!(
            "ns/svc:80=18080".parse::<Exposure>().unwrap().local_port,
            18080
        );
        for (bad, reason) in [
            ("dashboard:8091", "no namespace"),
            ("ns/dashboard", "no port"),
            ("ns/dashboard:http", "not a number"),
            ("/dashboard:1", "empty"),
            ("ns/svc:1=x", "local port"),
        ] {
            let err = bad.parse::<Exposure>().unwrap_err().to_string();
            assert!(err.contains(reason) && err.contains(bad), "{bad}: {err}");
        }
    }
}
