//! How a modelled Dragonfly is configured: its defaults and the command-line flags
//! (`--requirepass`, `--masterauth`, `--break_replication_on_master_restart`, ...) that
//! the container's args override them with (`--dir`, `--dbfilename` and the `--s3_*`
//! flags of S3 snapshots among them).

use std::time::Duration;

use super::DRAGONFLY_PORT;

/// How a modelled Dragonfly behaves; container args (`--flag=value`) override.
#[derive(Debug, Clone)]
pub struct DragonflyConfig {
    pub port: u16,
    /// `--requirepass`.
    pub requirepass: Option<String>,
    /// `--masterauth`: the password a replica sends to its master.
    pub masterauth: Option<String>,
    /// `--break_replication_on_master_restart` (Dragonfly default false: a replica whose
    /// master restarted empty full-syncs from it and loses its data).
    pub break_replication_on_master_restart: bool,
    /// `--info_replication_valkey_compatible` (default true: `role:slave`, state `online`).
    pub valkey_compatible: bool,
    /// Time from start to accepting connections.
    pub startup_time: Duration,
    /// How long a full sync takes (snapshot transfer) before stable sync.
    pub full_sync_time: Duration,
    /// `--master_reconnect_timeout_ms` (default 1 s).
    pub reconnect_interval: Duration,
    /// `--replication_timeout` (default 30 s): a link silent this long is dropped.
    pub replication_timeout: Duration,
    /// Interval of the master's pings on the replication link.
    pub ping_interval: Duration,
    /// `--dir`: snapshots go to S3 when it is `s3://bucket[/prefix]`.
    pub dir: Option<String>,
    /// `--dbfilename` (Dragonfly's default `dump`).
    pub dbfilename: Option<String>,
    /// `--s3_endpoint` (`host[:port]`; none: AWS S3).
    pub s3_endpoint: Option<String>,
    /// `--s3_use_https` (default true).
    pub s3_use_https: bool,
}

impl Default for DragonflyConfig {
    fn default() -> Self {
        Self {
            port: DRAGONFLY_PORT,
            requirepass: None,
            masterauth: None,
            break_replication_on_master_restart: false,
            valkey_compatible: true,
            startup_time: Duration::from_millis(200),
            full_sync_time: Duration::from_millis(200),
            reconnect_interval: Duration::from_secs(1),
            replication_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(1),
            dir: None,
            dbfilename: None,
            s3_endpoint: None,
            s3_use_https: true,
        }
    }
}

impl DragonflyConfig {
    /// Applies Dragonfly's command-line flags (`--name=value` or `--name value`).
    pub fn apply_args(&mut self, args: &[String]) {
        let mut iter = args.iter().peekable();
        while let Some(arg) = iter.next() {
            let Some(option) = arg.strip_prefix("--") else {
                continue;
            };
            let (name, inline) = match option.split_once('=') {
                Some((name, value)) => (name.replace('-', "_"), Some(value.to_string())),
                None => (option.replace('-', "_"), None),
            };
            let takes_value = matches!(
                name.as_str(),
                "requirepass" | "masterauth" | "port" | "dir" | "dbfilename" | "s3_endpoint"
            );
            let value = match inline {
                Some(value) => Some(value),
                None if takes_value => iter.next().cloned(),
                None => None,
            };
            let flag = || !matches!(value.as_deref(), Some("false") | Some("0"));
            match name.as_str() {
                "requirepass" => self.requirepass = value.clone().filter(|v| !v.is_empty()),
                "masterauth" => self.masterauth = value.clone().filter(|v| !v.is_empty()),
                "port" => {
                    if let Some(port) = value.as_deref().and_then(|v| v.parse().ok()) {
                        self.port = port;
                    }
                }
                "break_replication_on_master_restart" => {
                    self.break_replication_on_master_restart = flag()
                }
                "info_replication_valkey_compatible" => self.valkey_compatible = flag(),
                "dir" => self.dir = value.clone().filter(|v| !v.is_empty()),
                "dbfilename" => self.dbfilename = value.clone().filter(|v| !v.is_empty()),
                "s3_endpoint" => self.s3_endpoint = value.clone().filter(|v| !v.is_empty()),
                "s3_use_https" => self.s3_use_https = flag(),
                _ => {}
            }
        }
    }
}
