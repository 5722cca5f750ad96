//! The playground's apps in the simulation: `ghcr.io/shipstream/bloodraven-counter-app`
//! and `ghcr.io/shipstream/bloodraven-dashboard` run the SAME libraries as the real
//! binaries (their CLIs parse the container's args), with the operator's production
//! MySQL client, a real `redis` connection and the dashboard's WebSocket and HTTP
//! clients dialled through the pod's cluster DNS, served on a simulated TCP listener.

use std::sync::Arc;

use bloodraven_counter_app::args::{DRAGONFLY_PASSWORD_ENV, MYSQL_PASSWORD_ENV};
use bloodraven_counter_app::{Args as CounterArgs, CounterApp};
use clap::Parser;

use crate::apiserver::TurmoilListener;
use crate::images::{ImageRegistry, StartupProfile};
use crate::models::dragonfly::SimDragonflyConnector;
use crate::models::mysql::mysql_connector;
use crate::models::s3::SimStorageDialer;
use crate::pod::{PodContext, PodProgram, ProgramFuture};

/// The counter app's image repository.
pub const COUNTER_APP_IMAGE: &str = "ghcr.io/shipstream/bloodraven-counter-app";

/// The dashboard's image repository.
pub const DASHBOARD_IMAGE: &str = "ghcr.io/shipstream/bloodraven-dashboard";

/// The counter app's options that the binary reads from its environment (clap `env`);
/// a simulated pod has no process environment, so they become flags.
const COUNTER_APP_ENV_FLAGS: [(&str, &str); 8] = [
    ("COUNTER_APP_LISTEN", "--listen"),
    ("MYSQL_HOST", "--mysql-host"),
    ("MYSQL_PORT", "--mysql-port"),
    ("MYSQL_USER", "--mysql-user"),
    (MYSQL_PASSWORD_ENV, "--mysql-password"),
    ("DRAGONFLY_HOST", "--dragonfly-host"),
    (DRAGONFLY_PASSWORD_ENV, "--dragonfly-password"),
    ("COUNTER_NAME", "--counter-name"),
];

/// The container's argv as the binary `name` would see it, with env-backed options
/// turned into flags (flags given in args come later and win, as clap's do over env).
fn argv(ctx: &PodContext, name: &str, env_flags: &[(&str, &str)]) -> Vec<String> {
    let mut argv = vec![name.to_string()];
    for (env, flag) in env_flags {
        if let Some(value) = ctx.env.get(*env) {
            argv.push(format!("{flag}={value}"));
        }
    }
    argv.extend(ctx.command.iter().skip_while(|c| c.contains(name)).cloned());
    argv.extend(ctx.args.iter().cloned());
    argv
}

/// Runs `counter-app <args>` as the real binary would.
#[derive(Clone, Copy, Debug, Default)]
pub struct CounterAppProgram;

impl PodProgram for CounterAppProgram {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        Box::pin(async move {
            let args =
                CounterArgs::try_parse_from(argv(&ctx, "counter-app", &COUNTER_APP_ENV_FLAGS))?;
            let app = CounterApp::new(
                Arc::new(mysql_connector(ctx.dialer.clone(), args.mysql_timeouts())),
                args.mysql_target(),
                Arc::new(SimDragonflyConnector::new(
                    ctx.dialer.clone(),
                    args.dragonfly_timeouts(),
                )),
                args.dragonfly_target(),
                args.counter_name.clone(),
            );
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", args.listen.port())).await?;
            tracing::info!(listen = %args.listen, mysql = %args.mysql_target().address(), "serving");
            ctx.ready.set(true);
            axum::serve(
                TurmoilListener(listener),
                bloodraven_counter_app::http::router(Arc::new(app)),
            )
            .await?;
            Ok(())
        })
    }
}

/// The dashboard's env-backed options, as flags.
const DASHBOARD_ENV_FLAGS: [(&str, &str); 5] = [
    ("DASHBOARD_LISTEN", "--listen"),
    ("OPERATOR_FEED_URL", "--operator-feed"),
    ("DNS_WEBHOOK_URL", "--dns-webhook"),
    ("PLAYGROUND_NAMESPACE", "--namespace"),
    ("PLAYGROUND_GROUP", "--group"),
];

/// Runs `dashboard <args>` as the real binary would.
#[derive(Clone, Copy, Debug, Default)]
pub struct DashboardProgram;

impl PodProgram for DashboardProgram {
    fn run(&self, ctx: PodContext) -> ProgramFuture {
        Box::pin(async move {
            let args = bloodraven_dashboard::Args::try_parse_from(argv(
                &ctx,
                "dashboard",
                &DASHBOARD_ENV_FLAGS,
            ))?;
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", args.listen.port())).await?;
            let app = bloodraven_dashboard::start(
                &args,
                Arc::new(SimStorageDialer::new(ctx.dialer.clone())),
            );
            tracing::info!(listen = %args.listen, feed = %args.operator_feed, "serving");
            ctx.ready.set(true);
            axum::serve(TurmoilListener(listener), app).await?;
            Ok(())
        })
    }
}

/// Registers the playground apps' images.
pub fn register(registry: &mut ImageRegistry) {
    registry.register(
        COUNTER_APP_IMAGE,
        CounterAppProgram,
        StartupProfile::default(),
    );
    registry.register(DASHBOARD_IMAGE, DashboardProgram, StartupProfile::default());
}
