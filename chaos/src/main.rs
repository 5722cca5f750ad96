//! The `bloodraven-chaos` binary: all logic lives in the library (`cli`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bloodraven_chaos::cli::main().await
}
