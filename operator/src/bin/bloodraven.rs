//! The `bloodraven` binary: all logic lives in the library (`bloodraven::cli`).

use std::io::Write;

use clap::Parser;

fn main() {
    let cli = bloodraven::cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let code = match bloodraven::cli::run(cli, &mut stdout) {
        Ok(code) => code,
        // The reader went away (`bloodraven crd | head -1`): stop quietly with the status
        // a shell shows for a program ended by SIGPIPE, as classic Unix tools do.
        Err(err) if err.is_broken_pipe() => bloodraven::cli::BROKEN_PIPE_EXIT,
        Err(err) => {
            // eprintln! would panic if stderr is closed too; nothing is left to tell then.
            let _ = writeln!(std::io::stderr(), "error: {err}");
            2
        }
    };
    std::process::exit(code);
}
