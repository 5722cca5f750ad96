#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Serve mode's `--expose`: the playground's dashboard and counter app, running as
//! simulated pods, answered on real local ports as a browser would reach them.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange over real TCP: status and body.
fn http(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what} did not happen within {timeout:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

#[test]
fn exposed_dashboard_and_counter_app_answer_on_local_ports() {
    let dir = std::env::temp_dir().join(format!("bloodraven-sim-apps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let (dashboard, counter) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_bloodraven-sim"))
        .args([
            "serve",
            "--port",
            "0",
            "--seed",
            "1",
            "--duration-seconds",
            "300",
            "--bloodraven",
            // Where the guide runs it and where the dashboard's feed URL points.
            "--operator-namespace",
            "bloodraven-playground",
        ])
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--apply")
        .arg(examples.join("playground.yaml"))
        .arg("--apply")
        .arg(examples.join("playground-apps.yaml"))
        .arg("--expose")
        .arg(format!("bloodraven-playground/dashboard:8091={dashboard}"))
        .arg("--expose")
        .arg(format!("bloodraven-playground/counter-app:8090={counter}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);

    let page = eventually(
        "the dashboard page",
        Duration::from_secs(60),
        || match http(dashboard, "GET", "/")? {
            (200, body) => Ok(body),
            (status, body) => Err(format!("{status}: {body}")),
        },
    );
    assert!(page.contains("Bloodraven"), "{page}");
    let state: Value = eventually("a Healthy banner", Duration::from_secs(120), || {
        let (status, body) = http(dashboard, "GET", "/api/state")?;
        let state: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}"))?;
        if state["banner"]["text"] == "Healthy" {
            Ok(state)
        } else {
            Err(format!("{status}: {state}"))
        }
    });
    assert_eq!(state["group"]["status"]["activeSite"], "iad", "{state:#}");
    let incremented: Value = eventually("an increment", Duration::from_secs(60), || {
        match http(counter, "POST", "/api/increment")? {
            (200, body) => serde_json::from_str(&body).map_err(|e| e.to_string()),
            (status, body) => Err(format!("{status}: {body}")),
        }
    });
    assert_eq!(incremented["mysql"]["value"], 1, "{incremented:#}");
}
