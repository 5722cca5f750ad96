//! Measures the uploader's memory: streams generated data through the production S3
//! client (`bloodraven::storage`, default tuning) to a real S3 server (moto, started
//! here) and prints this process's peak RSS. The target (issue 15): under 64 MiB for a
//! 1 GiB dump.
//!
//!     cargo run -p bloodraven-integration --example upload_memory -- [MiB, default 1024]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bloodraven::storage::TransferTuning;
use bloodraven_integration::s3::{Auth, MotoS3};
use tokio::io::{AsyncRead, ReadBuf};

/// `len` bytes of xorshift output, generated as they are read: the source holds nothing.
struct Generated {
    left: u64,
    state: u64,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let room = (buf.remaining() as u64).min(self.left) as usize;
        let mut written = 0;
        while written < room {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            let n = bytes.len().min(room - written);
            buf.put_slice(&bytes[..n]);
            written += n;
        }
        self.left -= room as u64;
        Poll::Ready(Ok(()))
    }
}

/// A field of /proc/self/status in KiB (`VmHWM` is the peak RSS).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 1024,
    };
    let server = MotoS3::start("bloodraven-memory", Auth::Off)?;
    let tuning = TransferTuning::default();
    let storage = server.storage("bench", tuning)?;
    storage.check_access().await?;
    let before = status_kib("VmRSS").unwrap_or(0);
    let started = Instant::now();
    let stored = storage
        .upload(
            "dump.sql",
            Generated {
                left: mib * 1024 * 1024,
                state: 0x9e37_79b9_7f4a_7c15,
            },
        )
        .await?;
    let elapsed = started.elapsed();
    let peak = status_kib("VmHWM").unwrap_or(0);
    let listed = storage.list("dump.sql").await?;
    storage.delete("dump.sql").await?;
    println!(
        "uploaded {} MiB as {} in {:.1} s ({:.1} MiB/s), sha256 {}",
        stored.size / (1024 * 1024),
        stored.key,
        elapsed.as_secs_f64(),
        stored.size as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(0.001),
        stored.sha256
    );
    println!(
        "part size {} MiB, {} parts in flight; the server listed {} bytes",
        tuning.part_size / (1024 * 1024),
        tuning.parts_in_flight,
        listed.first().map_or(0, |o| o.size)
    );
    println!(
        "uploader RSS: {:.1} MiB before the upload, peak {:.1} MiB (target: under 64 MiB for 1 GiB)",
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!("command: cargo run -p bloodraven-integration --example upload_memory -- {mib}");
    Ok(())
}
