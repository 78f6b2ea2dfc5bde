//! Writing marker lines to the channel the host stamps.
//!
//! The host learns where a guest is in its start-up only from the lines written here (see
//! `cvm-proto`), and it timestamps each line on arrival, so every line goes out in one `write`
//! call with no buffering: a buffered marker would be stamped late. The channel is an inherited
//! file descriptor named by `CVM_MARKER_FD` (3 when unset). It is optional: a workload started by
//! hand, with nothing at that descriptor, must still run, so a missing or read-only descriptor
//! just turns markers off.
//!
//! std and nix can write only to descriptors the program owns or borrows, and an inherited
//! descriptor known only by its number has to be borrowed by hand (`sys::inherited_writable`):
//! resolving it once, first thing in `main`, keeps that sound (see [`Markers::from_env`]).

use std::os::fd::{AsFd, BorrowedFd, RawFd};

use cvm_proto::metric::Metric;
use cvm_proto::{Marker, DEFAULT_MARKER_FD, MARKER_FD_ENV};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// The marker channel of this process, or nothing when the host gave none.
#[derive(Debug, Clone, Copy)]
pub struct Markers {
    fd: Option<BorrowedFd<'static>>,
}

impl Markers {
    /// A channel that drops every marker (for tests and for runs without a host).
    pub fn disabled() -> Markers {
        Markers { fd: None }
    }

    /// Resolves the descriptor named by `CVM_MARKER_FD`.
    ///
    /// Must be called before this process opens any file: a descriptor that was not inherited
    /// could otherwise be mistaken for the channel once a file happens to take its number.
    pub fn from_env() -> Markers {
        let fd = match std::env::var_os(MARKER_FD_ENV) {
            None => DEFAULT_MARKER_FD,
            Some(value) => match parse_fd(value.to_str().unwrap_or("")) {
                Some(fd) => fd,
                None => return Markers::disabled(),
            },
        };
        // Nothing in this program closes or replaces the marker descriptor (it is only written
        // to and passed on across exec), as the borrow requires.
        Markers {
            fd: crate::sys::inherited_writable(fd),
        }
    }

    /// Writes one marker line. Failures (the host closed its end, say) are ignored: markers are
    /// advisory and must never stop the workload.
    pub fn emit(&self, marker: &Marker) {
        let Some(fd) = self.fd else { return };
        let mut line = marker.to_string();
        line.push('\n');
        write_all(fd, line.as_bytes());
    }

    /// `CVM:ready`.
    pub fn ready(&self) {
        // The hot path of `hello`: a constant line, no formatting.
        if let Some(fd) = self.fd {
            write_all(fd, READY_LINE);
        }
    }

    /// `CVM:result <metric> <value> <unit>`.
    pub fn result(&self, metric: Metric, value: f64) {
        self.emit(&Marker::Result {
            metric: metric.name().to_string(),
            value,
            unit: metric.unit().symbol().to_string(),
        });
    }

    /// `CVM:error <message>`, flattened to one line.
    pub fn error(&self, message: &str) {
        self.emit(&Marker::Error(one_line(message)));
    }

    /// Makes sure the channel survives `exec` so the workload can write to it too.
    pub fn keep_across_exec(&self) {
        if let Some(fd) = self.fd {
            // Best effort: without it the workload's own markers are lost, not the run.
            let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()));
        }
    }
}

/// Exactly what `Marker::Ready` displays as, plus the newline; checked by a test.
const READY_LINE: &[u8] = b"CVM:ready\n";

fn parse_fd(value: &str) -> Option<RawFd> {
    value.trim().parse::<RawFd>().ok().filter(|fd| *fd >= 0)
}

/// Marker lines are short (well under `PIPE_BUF`), so the first write normally takes all of it
/// atomically; the loop only covers signals and odd channels.
fn write_all(fd: impl AsFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match nix::unistd::write(fd.as_fd(), bytes) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// A marker is one line: a message with newlines would be torn into pieces the parser drops.
fn one_line(message: &str) -> String {
    message.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_matches_the_protocol() {
        assert_eq!(READY_LINE, format!("{}\n", Marker::Ready).as_bytes());
    }

    #[test]
    fn parses_descriptor_numbers() {
        assert_eq!(parse_fd("3"), Some(3));
        assert_eq!(parse_fd(" 7 "), Some(7));
        assert_eq!(parse_fd("-1"), None);
        assert_eq!(parse_fd("three"), None);
        assert_eq!(parse_fd(""), None);
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(
            one_line("bind failed:\naddress in use\r\n"),
            "bind failed: address in use  "
        );
    }
}
