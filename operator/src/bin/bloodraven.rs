//! The `bloodraven` binary: all logic lives in the library (`bloodraven::cli`).

use clap::Parser;

fn main() {
    let cli = bloodraven::cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let code = match bloodraven::cli::run(cli, &mut stdout) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            2
        }
    };
    std::process::exit(code);
}
