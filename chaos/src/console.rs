//! The chaos CLI's terminal output. Rust's `println!`/`eprintln!` panic when the reader
//! has gone (`bloodraven-chaos run ... | head -1`); every line the CLI prints goes
//! through here instead, and a closed pipe only stops the printing: the run carries on
//! and its exit status still says whether the scenarios passed.

use std::fmt;
use std::io::{self, Write};

/// Writes one formatted piece to `stream`. A reader that went away (broken pipe) is not
/// an error worth reporting; any other failure is said once on stderr, best effort.
pub(crate) fn write_to(mut stream: impl Write, args: fmt::Arguments<'_>) {
    if let Err(e) = stream.write_fmt(args).and_then(|()| stream.flush())
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        let _ = writeln!(io::stderr(), "bloodraven-chaos: cannot write output: {e}");
    }
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::console::write_to(::std::io::stdout().lock(), format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that survives a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::console::write_to(::std::io::stdout().lock(), format_args!($($arg)*))
    };
}

/// `eprintln!` that survives a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::write_to(::std::io::stderr().lock(), format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream whose reader has gone: every write fails as a closed pipe does.
    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn a_closed_pipe_is_not_a_panic() {
        write_to(ClosedPipe, format_args!("line {}\n", 1));
        write_to(ClosedPipe, format_args!("line {}\n", 2));
    }

    #[test]
    fn output_reaches_an_open_stream() {
        let mut buffer = Vec::new();
        write_to(&mut buffer, format_args!("seed {}\n", 17));
        assert_eq!(buffer, b"seed 17\n");
    }
}
