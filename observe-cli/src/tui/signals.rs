//! Signals that end the TUI the way `q` does, so the terminal is restored:
//! SIGTERM (`kill`, `timeout`), SIGHUP (the terminal went away) and SIGINT
//! (`kill -INT`; Ctrl-C itself arrives as a key in raw mode). Without
//! handlers their default action would leave the alternate screen up and the
//! cursor hidden.

use std::io;

use tokio::signal::unix::{SignalKind, signal};

/// A signal that ends the TUI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Hup,
    Int,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
        }
    }

    pub fn number(self) -> i32 {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Hup => libc::SIGHUP,
            Signal::Int => libc::SIGINT,
        }
    }
}

/// The TUI's error when a signal ended it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("stopped by {}", .0.name())]
pub struct Stopped(pub Signal);

impl Stopped {
    /// 128 + the signal's number, as a shell reports a process the signal
    /// killed (`timeout` and scripts check for it): 143, 129, 130.
    pub fn exit_status(&self) -> i32 {
        128 + self.0.number()
    }
}

/// Handlers for the three signals. Installed before the terminal changes, so
/// from then on none of them can end the process with the terminal raw.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next of the three signals to arrive.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Term,
            _ = self.hup.recv() => Signal::Hup,
            _ = self.int.recv() => Signal::Int,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    /// Sends `sig` (a name `kill` takes) to this test process.
    fn kill(sig: &str) {
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{sig} {}", std::process::id())])
            .status()
            .unwrap();
        assert!(status.success());
    }

    // Each signal is sent to the test process itself: the handlers must catch
    // it (else the test binary dies) and name it.
    #[tokio::test]
    async fn each_signal_becomes_a_quit_that_names_it() {
        let mut signals = Signals::install().unwrap();
        for (sig, want) in [
            ("HUP", Signal::Hup),
            ("TERM", Signal::Term),
            ("INT", Signal::Int),
        ] {
            kill(sig);
            let got = tokio::time::timeout(Duration::from_secs(30), signals.recv()).await;
            assert_eq!(got, Ok(want), "kill -{sig}");
        }
        assert_eq!(Stopped(Signal::Term).to_string(), "stopped by SIGTERM");
        assert_eq!(Stopped(Signal::Hup).to_string(), "stopped by SIGHUP");
    }
}
