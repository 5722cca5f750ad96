//! `counter-app`: serves the playground's counter page and API over TCP, with the
//! operator's production MySQL protocol client and a `redis` connection to Dragonfly.

use std::sync::Arc;

use bloodraven::production::dragonfly::RedisDragonflyConnector;
use bloodraven::production::mysql::MysqlProtocolConnector;
use bloodraven::seams::object_storage::TcpDialer;
use bloodraven_counter_app::{Args, CounterApp, http};
use clap::Parser;

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server stopped: {0}")]
    Serve(std::io::Error),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("counter-app: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let app = CounterApp::new(
        Arc::new(MysqlProtocolConnector::new(
            Arc::new(TcpDialer),
            args.mysql_timeouts(),
        )),
        args.mysql_target(),
        Arc::new(RedisDragonflyConnector::new(args.dragonfly_timeouts())),
        args.dragonfly_target(),
        args.counter_name.clone(),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: args.listen,
            source,
        })?;
    tracing::info!(listen = %args.listen, mysql = %args.mysql_target().address(), "serving");
    tokio::select! {
        result = axum::serve(listener, http::router(Arc::new(app))) => result.map_err(Error::Serve),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
