//! Small built-in pod programs, for tests and for serve mode demos: an echo server
//! with readiness and a run-to-completion job. The real software (MySQL, Dragonfly,
//! the operator) is registered by its own modules.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::images::{ImageRegistry, StartupProfile};
use crate::pod::{PodContext, PodProgram, ProgramFuture};

/// Image of [`EchoServer`].
pub const ECHO_IMAGE: &str = "bloodraven.sim/echo";
/// Image of [`RunToCompletion`].
pub const JOB_IMAGE: &str = "bloodraven.sim/job";

/// Listens on `$PORT` (default 8080), becomes ready once bound, and echoes every byte
/// back. With `$READY_AFTER_MS` it reports ready only after that much simulated time.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoServer;

impl PodProgram for EchoServer {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        Box::pin(async move {
            let port: u16 = ctx
                .env
                .get("PORT")
                .and_then(|p| p.parse().ok())
                .unwrap_or(8080);
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
            if let Some(delay) = ctx.env.get("READY_AFTER_MS").and_then(|d| d.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            ctx.ready.set(true);
            loop {
                let (mut stream, _) = listener.accept().await?;
                tokio::task::spawn_local(async move {
                    let mut buf = [0_u8; 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        })
    }
}

/// Sleeps `args[0]` seconds (default 1), then exits: successfully, or with an error
/// when `args[1]` is a non-zero exit code.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunToCompletion;

impl PodProgram for RunToCompletion {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        Box::pin(async move {
            let seconds: u64 = ctx.args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
            let code: i32 = ctx.args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            if code == 0 {
                Ok(())
            } else {
                Err(format!("exited with code {code}").into())
            }
        })
    }
}

/// Registers the built-in programs under their images, and the MySQL and Dragonfly
/// models (`mysql:*`, `docker.dragonflydb.io/dragonflydb/dragonfly:*`).
pub fn register_builtins(registry: &mut ImageRegistry) {
    registry.register(ECHO_IMAGE, EchoServer, StartupProfile::default());
    registry.register(JOB_IMAGE, RunToCompletion, StartupProfile::default());
    crate::models::register(registry);
    crate::bloodraven_image::register(registry);
    crate::external_dns::register(registry);
    crate::playground_apps::register(registry);
}

/// A registry holding only the built-in programs.
pub fn builtin_registry() -> ImageRegistry {
    let mut registry = ImageRegistry::default();
    register_builtins(&mut registry);
    registry
}
