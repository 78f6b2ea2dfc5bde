//! Events from an instance, stamped with the host's monotonic clock the moment they arrive.
//!
//! Every backend funnels what it can observe into one channel: the guest's marker lines (from a
//! pipe, a serial console or a debug port), backend-specific phase ends (`cgroup_join` stamped by
//! the spawned child, `vmm_start` at QMP `cont`, `firmware` at a VM kernel's first console
//! output), output lines kept to explain a failure, and the workload's exit.

use std::io::{BufReader, Read};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Instant;

use cvm_proto::metric::Phase;
use cvm_proto::Marker;

pub use super::output::OutputLine;
use super::output::{read_capped_line, with_cut, OutputBudget};

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
    /// The end of a phase only the backend can see (`cgroup_join`, `vmm_start`, `firmware`).
    Phase(Phase, Instant),
    /// A stretch of a phase that happened inside another one, from its start to its end: a
    /// runtime's own `cgroup.procs` write inside its `runtime` (see `backend::cgroup_trace`).
    /// The spans of a phase add up to it, carved out of the phase they fell in.
    Span(Phase, Instant, Instant),
    /// The kernel's OOM killer fired in the instance's cgroup (seen when its process exited).
    OutOfMemory { kills: u64, limit_bytes: u64 },
    /// The workload (or, for VMs, the guest) is gone.
    Exited(ExitInfo, Instant),
    /// A line of the workload's or the runtime's output (kept for error messages). Output is
    /// data: it is never parsed for markers, so a workload cannot fake or abort a phase. Bounded
    /// ([`super::output`]): long lines cut, unread lines capped.
    Output(OutputLine),
}

/// Reads marker lines from `source` (the instance's marker channel) on a thread until EOF,
/// sending each as an [`Event`]; lines that carry no marker are dropped.
pub fn spawn_marker_reader<R: Read + Send + 'static>(
    source: R,
    tx: Sender<Event>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cvm-markers".into())
        .spawn(move || {
            let mut reader = BufReader::new(source);
            let mut line = Vec::with_capacity(256);
            while let Ok(Some(_)) = read_capped_line(&mut reader, &mut line) {
                let at = Instant::now();
                let Some(marker) = Marker::parse(&String::from_utf8_lossy(&line)) else {
                    continue;
                };
                if tx.send(Event::Marker(marker, at)).is_err() {
                    return; // nobody listens any more; the instance was dropped
                }
            }
        })
}

/// Reads the lines of a process's output (stderr) on a thread until EOF, each as
/// [`Event::Output`], so a chatty process never blocks and a failed run can be explained.
pub fn spawn_output_reader<R: Read + Send + 'static>(
    source: R,
    tx: Sender<Event>,
) -> std::io::Result<JoinHandle<()>> {
    spawn_labelled_output_reader(source, tx, "")
}

/// [`spawn_output_reader`] with `label` before each line (`qemu: `).
pub fn spawn_labelled_output_reader<R: Read + Send + 'static>(
    source: R,
    tx: Sender<Event>,
    label: &'static str,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cvm-output".into())
        .spawn(move || {
            let mut reader = BufReader::new(source);
            let mut line = Vec::with_capacity(256);
            let mut budget = OutputBudget::default();
            while let Ok(Some(cut)) = read_capped_line(&mut reader, &mut line) {
                let text = String::from_utf8_lossy(&line);
                let text = with_cut(&format!("{label}{}", text.trim_end()), cut);
                if budget.send(&tx, text).is_err() {
                    return;
                }
            }
            let _ = budget.report_dropped(&tx);
        })
}

impl From<OutputLine> for Event {
    fn from(line: OutputLine) -> Event {
        Event::Output(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_data_and_markers_come_only_from_the_marker_channel() {
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = b"CVM:ready\nerror: not a failure\n".as_slice();
        spawn_output_reader(stderr, tx.clone())
            .unwrap()
            .join()
            .unwrap();
        let markers = b"noise\nCVM:ready\n".as_slice();
        spawn_marker_reader(markers, tx).unwrap().join().unwrap();
        let events: Vec<Event> = rx.try_iter().collect();
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(matches!(&events[0], Event::Output(l) if l.text() == "CVM:ready"));
        assert!(matches!(&events[1], Event::Output(l) if l.text() == "error: not a failure"));
        assert!(matches!(&events[2], Event::Marker(Marker::Ready, _)));
    }
}
