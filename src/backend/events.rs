//! Events from an instance, stamped with the host's monotonic clock the moment they arrive.
//!
//! Every backend funnels what it can observe into one channel: the guest's marker lines (from a
//! pipe, a serial console or a debug port), backend-specific phase points (`spawn` when the
//! clone or exec returned, `kernel` at a VM's first console byte) and the workload's exit.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Instant;

use cvm_proto::Marker;

/// How an instance's workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(9)) => write!(f, "SIGKILL (killed; out of memory?)"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => write!(f, "unknown status"),
        }
    }
}

/// Something the host observed about an instance, and when.
#[derive(Debug, Clone)]
pub enum Event {
    /// A marker line from the guest.
    Marker(Marker, Instant),
    /// A phase point only the backend can see (`spawn`, `kernel`).
    Phase(&'static str, Instant),
    /// The workload (or, for VMs, the guest) is gone.
    Exited(ExitInfo, Instant),
    /// A line of console output that was not a marker (kept for error messages).
    Output(String),
}

/// Reads marker lines from `source` on a thread until EOF, sending each as an [`Event`]. Lines
/// that carry no marker are forwarded as [`Event::Output`] when `keep_output` is set (consoles),
/// so a failed boot can be explained.
pub fn spawn_marker_reader<R: Read + Send + 'static>(
    source: R,
    tx: Sender<Event>,
    keep_output: bool,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cvm-markers".into())
        .spawn(move || {
            let mut reader = BufReader::new(source);
            let mut line = Vec::with_capacity(256);
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let at = Instant::now();
                let text = String::from_utf8_lossy(&line);
                let event = match Marker::parse(&text) {
                    Some(m) => Event::Marker(m, at),
                    None if keep_output => Event::Output(text.trim_end().to_string()),
                    None => continue,
                };
                if tx.send(event).is_err() {
                    return; // nobody listens any more; the instance was dropped
                }
            }
        })
}
