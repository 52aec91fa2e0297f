//! Standard output and error that never panic: `observe flows | head -1`
//! ends quietly with exit 0 once `head` has what it wants, also when stderr
//! goes to the same closed pipe (`2>&1 | head -1`). `println!` would panic
//! on the closed pipe, and the panic message would fail in turn.
//!
//! Every command prints through [`print`] (or [`outln!`](crate::outln)),
//! which returns the write error; `main` ends with exit 0 when an error is
//! [`is_closed`], and reports others through [`eprint`].

use std::io::{self, Write};

/// Writes `text` to stdout and flushes it; a reader that went away is an
/// `io::ErrorKind::BrokenPipe` error.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes `text` to stderr, its control characters shown as text (errors
/// and warnings quote servers, files and flows, which must not drive the
/// terminal); a failure is dropped (there is nowhere left to report it).
pub fn eprint(text: &str) {
    let text = crate::flows::output::escape_controls(text);
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// Whether `e` comes from a write to a reader that went away: the end of
/// the output, not a failure.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `println!` through [`print`]: evaluates to `io::Result<()>`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::pipe::print(&format!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_anywhere_in_the_chain_is_the_end_of_output() {
        let closed = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_closed(&closed));
        assert!(is_closed(&closed.context("writing the table")));
        let other = anyhow::Error::from(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!is_closed(&other));
        assert!(!is_closed(&anyhow::anyhow!("server: unavailable")));
    }
}
