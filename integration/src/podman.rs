//! A real Docker-compatible engine for the chaos runner's k3d backend: podman's API
//! service (`podman system service`), started by the test on its own socket, with a
//! network and containers the test creates and removes itself. The node image is built
//! without a registry (mmdebstrap, then `podman import`) once per machine.
//!
//! Machine setup (`.ci/run` does it): `apt-get install podman runc mmdebstrap`, and
//! `/etc/containers/containers.conf` with `runtime = "runc"` and
//! `default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]` (crun refuses this
//! kind of machine's hybrid cgroups; the host's ulimits are refused by runc).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The node image: Debian bookworm with `ip` and `iptables`, idling.
pub const NODE_IMAGE: &str = "localhost/bloodraven-node-test:bookworm";

const INSTALL: &str = "apt-get install podman runc mmdebstrap, and set runtime = \"runc\" and default_ulimits in /etc/containers/containers.conf (integration/src/podman.rs)";

#[derive(Debug, thiserror::Error)]
pub enum PodmanError {
    #[error("cannot run {program} ({source}); {INSTALL}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("podman's API service did not answer GET /_ping on {socket} within {after:?}")]
    NotReady { socket: PathBuf, after: Duration },
}

/// Runs `program args`, returning its stdout; a non-zero exit is an error with stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, PodmanError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| PodmanError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(PodmanError::Failed {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Builds [`NODE_IMAGE`] unless it exists: mmdebstrap from Debian's packages (no
/// registry), then `podman import`.
pub fn ensure_node_image() -> Result<(), PodmanError> {
    if run("podman", &["image", "exists", NODE_IMAGE]).is_ok() {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("bloodraven-node-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| PodmanError::Spawn {
        program: format!("mkdir {}", dir.display()),
        source,
    })?;
    let tar = dir.join("rootfs.tar");
    let tar_path = tar.to_string_lossy().into_owned();
    let built = run(
        "mmdebstrap",
        &[
            "--variant=essential",
            "--include=iproute2,iptables",
            "bookworm",
            &tar_path,
        ],
    )
    .and_then(|_| {
        run(
            "podman",
            &[
                "import",
                "--change",
                r#"CMD ["sleep","infinity"]"#,
                &tar_path,
                NODE_IMAGE,
            ],
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    built.map(|_| ())
}

/// Names unique to this process and call, so that parallel tests never share objects.
pub fn unique_name(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "bloodraven-it-{}-{what}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `podman system service` on a socket of its own; stopped when dropped.
#[derive(Debug)]
pub struct PodmanService {
    child: Child,
    socket: PathBuf,
}

impl PodmanService {
    /// Starts the service and waits until it answers `GET /_ping`.
    pub fn start() -> Result<Self, PodmanError> {
        let socket = std::env::temp_dir().join(format!("{}.sock", unique_name("podman")));
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("podman")
            .args([
                "system",
                "service",
                "--time=0",
                &format!("unix://{}", socket.display()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| PodmanError::Spawn {
                program: "podman".into(),
                source,
            })?;
        let service = Self { child, socket };
        let deadline = Duration::from_secs(30);
        let started = Instant::now();
        while started.elapsed() < deadline {
            if ping(&service.socket) {
                return Ok(service);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(PodmanError::NotReady {
            socket: service.socket.clone(),
            after: deadline,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// `GET /_ping` over the socket, answered `OK`.
fn ping(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.trim_end().ends_with("OK")
}

/// A network the test created (`podman network create --subnet`); removed on drop.
#[derive(Debug)]
pub struct TestNetwork {
    pub name: String,
}

impl TestNetwork {
    pub fn create(subnet: &str) -> Result<Self, PodmanError> {
        let name = unique_name("net");
        run("podman", &["network", "create", "--subnet", subnet, &name])?;
        Ok(Self { name })
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let _ = run("podman", &["network", "rm", "-f", &self.name]);
    }
}

/// A [`NODE_IMAGE`] container on a test network with a static IP and an alias, able
/// to change its own firewall (NET_ADMIN, as a k3d node can); removed on drop.
#[derive(Debug)]
pub struct TestContainer {
    pub name: String,
}

impl TestContainer {
    pub fn run(network: &TestNetwork, ip: &str, alias: &str) -> Result<Self, PodmanError> {
        let name = unique_name("node");
        run(
            "podman",
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                &network.name,
                "--ip",
                ip,
                "--network-alias",
                alias,
                "--cap-add",
                "NET_ADMIN",
                NODE_IMAGE,
            ],
        )?;
        Ok(Self { name })
    }

    /// `podman inspect`'s view of whether the container runs.
    pub fn running(&self) -> Result<bool, PodmanError> {
        let out = run(
            "podman",
            &["inspect", "--format", "{{.State.Running}}", &self.name],
        )?;
        Ok(out.trim() == "true")
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let _ = run("podman", &["rm", "-f", "-t", "0", &self.name]);
    }
}
