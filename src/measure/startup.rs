//! The startup timeline: from the instant a launch began to the workload's readiness, with every
//! phase point the backend and the guest report, all stamped on the host's monotonic clock.
//!
//! Phase points, in order where present: `spawn` (the runtime or QEMU process exists), `kernel`
//! (a VM's first console output), `init` (cvm-guest init runs), `workload` (init execs the
//! workload), `ready`. The metric `phase.<name>` is the time from the previous observed point to
//! that one, so the phases of a run add up to its `ready_latency` and stack in a chart.
//!
//! Readiness is the workload's own, as seen from the host: its marker, or for servers the first
//! successful TCP connect or HTTP response (gVisor's "first request served").

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use cvm_proto::metric::Phase;
use cvm_proto::Marker;

use crate::backend::{Event, ExitInfo, Instance};
use crate::scenario::Readiness;

/// Where the workload's own ready marker arrived, while the host's probe decides readiness: it
/// becomes `ready` when the marker is the readiness rule.
const READY_MARKER: &str = "ready_marker";
/// How many non-marker output lines to keep for an error message.
const KEEP_OUTPUT_LINES: usize = 12;
/// How long to wait for markers still in flight once the workload has exited.
const EXIT_GRACE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("the workload did not become ready within {timeout:.1} s (last phase reached: {last_phase}){}", output_tail(.output))]
    Timeout {
        timeout: f64,
        last_phase: String,
        output: Vec<String>,
    },
    #[error("the workload ended with {exit} before it became ready{}", output_tail(.output))]
    ExitedEarly { exit: ExitInfo, output: Vec<String> },
    #[error("the workload reported an error: {message}")]
    Reported { message: String },
    #[error("the instance has no host endpoint for port {port}")]
    NoEndpoint { port: u16 },
    #[error("interrupted")]
    Interrupted,
}

fn output_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last output:\n    {}", lines.join("\n    "))
    }
}

/// What was observed up to readiness (and, with [`finish`], up to exit).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// (phase point, time since launch began), in arrival order, `ready` last.
    pub points: Vec<(String, Duration)>,
    /// Figures the workload reported with `CVM:result`.
    pub results: Vec<(String, f64, String)>,
    pub exit: Option<(ExitInfo, Duration)>,
    /// init's `CVM:exit` arrived: it comes after the workload's results on the same channel,
    /// so nothing more from the workload can follow it.
    pub exit_marker_seen: bool,
    pub output: VecDeque<String>,
    /// The guest's latest report of its memory in use (bytes) and when it arrived.
    pub guest_memory: Option<(u64, Duration)>,
    /// Failures the instance reported on its own channels (a `CVM:error` marker, an OOM kill):
    /// never taken from output lines, which are the workload's data.
    pub errors: Vec<String>,
}

impl Timeline {
    pub fn ready_latency(&self) -> Option<Duration> {
        self.points
            .iter()
            .find(|(p, _)| p == Phase::Ready.name())
            .map(|(_, d)| *d)
    }

    /// `phase.<name>` durations: each point minus the previous one (the first minus zero).
    pub fn phase_durations(&self) -> Vec<(String, Duration)> {
        let mut prev = Duration::ZERO;
        self.points
            .iter()
            .map(|(name, at)| {
                let d = at.saturating_sub(prev);
                prev = *at;
                (name.clone(), d)
            })
            .collect()
    }

    fn point(&mut self, name: &str, at: Duration) {
        if !self.points.iter().any(|(p, _)| p == name) {
            self.points.push((name.to_string(), at));
        }
    }

    fn record(&mut self, event: Event, zero: Instant) {
        let since = |at: Instant| at.saturating_duration_since(zero);
        match event {
            Event::Phase(point, at) => self.point(point.name(), since(at)),
            Event::Marker(Marker::Init, at) => self.point(Phase::Init.name(), since(at)),
            Event::Marker(Marker::Workload(_), at) => self.point(Phase::Workload.name(), since(at)),
            Event::Marker(Marker::Ready, at) => self.point(READY_MARKER, since(at)),
            Event::Marker(
                Marker::Result {
                    metric,
                    value,
                    unit,
                },
                _,
            ) => self.results.push((metric, value, unit)),
            Event::Marker(Marker::Exit(code), at) => {
                self.exit_marker_seen = true;
                // init's report is the workload's own code: it replaces an exit whose status
                // the host could not read (a detached container's init is not cvm's child).
                let unknown = self
                    .exit
                    .is_some_and(|(e, _)| e.code.is_none() && e.signal.is_none());
                if self.exit.is_none() || unknown {
                    self.exit = Some((
                        ExitInfo {
                            code: Some(code),
                            signal: None,
                        },
                        since(at),
                    ));
                }
            }
            Event::Marker(Marker::Memory(used), at) => self.guest_memory = Some((used, since(at))),
            Event::Marker(Marker::Error(msg), _) => self.errors.push(msg),
            Event::OutOfMemory { kills, limit_bytes } => self.errors.push(format!(
                "out of memory: the kernel's OOM killer fired {kills} time(s) in the instance's \
                 cgroup (memory limit {} MiB)",
                limit_bytes / (1024 * 1024)
            )),
            Event::Exited(info, at) => {
                // A VM's init reports the workload's own code before QEMU exits; keep that one.
                if self.exit.is_none() {
                    self.exit = Some((info, since(at)));
                }
            }
            Event::Output(line) => self.keep_output(line),
        }
    }

    fn keep_output(&mut self, line: String) {
        if self.output.len() == KEEP_OUTPUT_LINES {
            self.output.pop_front();
        }
        self.output.push_back(line);
    }

    fn last_phase(&self) -> String {
        self.points
            .last()
            .map_or_else(|| "none".to_string(), |(p, _)| p.clone())
    }

    fn reported_error(&self) -> Option<String> {
        self.errors.last().cloned()
    }
}

/// Waits until the instance is ready by `readiness`, or fails after `timeout`.
pub fn wait_ready(
    instance: &dyn Instance,
    readiness: &Readiness,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<Timeline, StartupError> {
    let zero = instance.started_at();
    let deadline = zero + timeout;
    let mut timeline = Timeline::default();
    let probe_addr = match readiness {
        Readiness::Marker => None,
        Readiness::Tcp { port } | Readiness::Http { port, .. } => Some(
            instance
                .endpoint(*port)
                .ok_or(StartupError::NoEndpoint { port: *port })?,
        ),
    };
    // Probe quickly at first (containers are ready in milliseconds), then back off (VMs take
    // seconds under emulation and every probe costs the guest CPU time).
    let mut probe_interval = Duration::from_micros(200);
    let mut exit_grace_done = false;
    loop {
        if interrupted.load(Ordering::SeqCst) {
            return Err(StartupError::Interrupted);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(StartupError::Timeout {
                timeout: timeout.as_secs_f64(),
                last_phase: timeline.last_phase(),
                output: timeline.output.into(),
            });
        }
        let wait = if probe_addr.is_some() {
            probe_interval
        } else {
            Duration::from_millis(50)
        };
        match instance.events().recv_timeout(wait.min(deadline - now)) {
            Ok(event) => {
                timeline.record(event, zero);
                while let Ok(more) = instance.events().try_recv() {
                    timeline.record(more, zero);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait.min(deadline - now)),
        }
        if let Some(message) = timeline.reported_error() {
            return Err(StartupError::Reported { message });
        }
        match (readiness, probe_addr) {
            (Readiness::Marker, _) => {
                if let Some(pos) = timeline.points.iter().position(|(p, _)| p == READY_MARKER) {
                    timeline.points[pos].0 = Phase::Ready.name().to_string();
                    return Ok(timeline);
                }
            }
            (Readiness::Tcp { .. }, Some(addr))
                if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() =>
            {
                return Ok(mark_ready(timeline, zero));
            }
            (Readiness::Http { path, .. }, Some(addr)) if http_probe(addr, path) => {
                return Ok(mark_ready(timeline, zero));
            }
            _ => {}
        }
        if let Some((exit, _)) = timeline.exit {
            // The exit and the marker pipe are watched by different threads: a ready marker
            // written just before exit may still be in flight. Give it a moment.
            if readiness == &Readiness::Marker && !exit_grace_done {
                exit_grace_done = true;
                let grace = Instant::now() + EXIT_GRACE;
                while let Some(left) = grace.checked_duration_since(Instant::now()) {
                    match instance.events().recv_timeout(left) {
                        Ok(event) => timeline.record(event, zero),
                        Err(_) => break,
                    }
                    if timeline.points.iter().any(|(p, _)| p == READY_MARKER) {
                        break;
                    }
                }
                continue;
            }
            return Err(StartupError::ExitedEarly {
                exit,
                output: timeline.output.into(),
            });
        }
        probe_interval = (probe_interval * 2).min(Duration::from_millis(5));
    }
}

fn mark_ready(mut timeline: Timeline, zero: Instant) -> Timeline {
    timeline.points.retain(|(p, _)| p != READY_MARKER);
    timeline.point(Phase::Ready.name(), zero.elapsed());
    timeline
}

/// One HTTP/1.1 GET; true on any complete status line. A forwarding proxy (QEMU's user-mode
/// network) may accept the connection before the guest listens, so a connect alone is not ready.
fn http_probe(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.set_nodelay(true);
    let req = format!("GET {path} HTTP/1.1\r\nHost: cvm\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    buf.starts_with(b"HTTP/1.")
}

/// After readiness: collects results until the workload exits, or `timeout` passes (then
/// `Err` with what was collected so far).
pub fn wait_exit(
    instance: &dyn Instance,
    timeline: &mut Timeline,
    timeout: Duration,
    interrupted: &AtomicBool,
) -> Result<ExitInfo, StartupError> {
    let zero = instance.started_at();
    let deadline = Instant::now() + timeout;
    loop {
        if timeline.exit.is_some() {
            // The exit and the marker channel are watched by different threads: results written
            // just before the exit may still be in the pipe. Read until the channel is closed
            // (every writer gone) or init's exit marker has arrived, within a grace period.
            let grace = Instant::now() + EXIT_GRACE;
            while !timeline.exit_marker_seen {
                let Some(left) = grace.checked_duration_since(Instant::now()) else {
                    break;
                };
                match instance.events().recv_timeout(left) {
                    Ok(event) => timeline.record(event, zero),
                    Err(_) => break,
                }
            }
            while let Ok(more) = instance.events().try_recv() {
                timeline.record(more, zero);
            }
            return Ok(timeline.exit.map(|(e, _)| e).unwrap_or(ExitInfo {
                code: None,
                signal: None,
            }));
        }
        if interrupted.load(Ordering::SeqCst) {
            return Err(StartupError::Interrupted);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(StartupError::Timeout {
                timeout: timeout.as_secs_f64(),
                last_phase: "ready (waiting for the workload to finish)".into(),
                output: timeline.output.iter().cloned().collect(),
            });
        }
        match instance
            .events()
            .recv_timeout((deadline - now).min(Duration::from_millis(50)))
        {
            Ok(event) => timeline.record(event, zero),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The guest's own memory report (`CVM:memory`) that arrives first after the host instant
/// `after`, waiting up to `timeout` for it; `None` if none comes (a guest that does not report).
/// Events that arrive meanwhile are recorded as usual.
pub fn guest_memory_after(
    instance: &dyn Instance,
    timeline: &mut Timeline,
    after: Instant,
    timeout: Duration,
) -> Option<u64> {
    let zero = instance.started_at();
    let since = after.saturating_duration_since(zero);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((used, at)) = timeline.guest_memory {
            if at >= since {
                return Some(used);
            }
        }
        if timeline.exit.is_some() {
            return None;
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match instance.events().recv_timeout(left) {
            Ok(event) => timeline.record(event, zero),
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// Drains whatever is queued without waiting (results a long-running workload sent meanwhile).
pub fn drain(instance: &dyn Instance, timeline: &mut Timeline) {
    let zero = instance.started_at();
    while let Ok(event) = instance.events().try_recv() {
        timeline.record(event, zero);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_segments_that_add_up_to_ready() {
        let ms = Duration::from_millis;
        let t = Timeline {
            points: vec![
                ("spawn".into(), ms(2)),
                ("init".into(), ms(5)),
                ("ready".into(), ms(9)),
            ],
            ..Default::default()
        };
        let phases = t.phase_durations();
        assert_eq!(
            phases,
            vec![
                ("spawn".into(), ms(2)),
                ("init".into(), ms(3)),
                ("ready".into(), ms(4))
            ]
        );
        assert_eq!(
            phases.iter().map(|(_, d)| *d).sum::<Duration>(),
            t.ready_latency().unwrap()
        );
    }

    /// An instance whose events a test scripts.
    struct Scripted {
        zero: Instant,
        events: std::sync::mpsc::Receiver<Event>,
    }

    impl Instance for Scripted {
        fn started_at(&self) -> Instant {
            self.zero
        }
        fn events(&self) -> &std::sync::mpsc::Receiver<Event> {
            &self.events
        }
        fn host_pids(&self) -> Vec<u32> {
            Vec::new()
        }
        fn endpoint(&self, _: u16) -> Option<SocketAddr> {
            None
        }
        fn teardown(&mut self) -> Result<(), crate::backend::BackendError> {
            Ok(())
        }
    }

    #[test]
    fn results_that_arrive_after_the_exit_event_are_kept() {
        let (tx, rx) = std::sync::mpsc::channel();
        let instance = Scripted {
            zero: Instant::now(),
            events: rx,
        };
        let marker_thread = tx.clone();
        // The exit watcher wins the race; the marker reader delivers the result a moment later.
        tx.send(Event::Exited(
            ExitInfo {
                code: Some(0),
                signal: None,
            },
            Instant::now(),
        ))
        .unwrap();
        drop(tx);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let result = Marker::Result {
                metric: "cpu_score".into(),
                value: 5.0,
                unit: "1/s".into(),
            };
            marker_thread
                .send(Event::Marker(result, Instant::now()))
                .unwrap();
        });
        let mut timeline = Timeline::default();
        let exit = wait_exit(
            &instance,
            &mut timeline,
            Duration::from_secs(5),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert!(exit.success());
        assert_eq!(
            timeline.results,
            vec![("cpu_score".to_string(), 5.0, "1/s".to_string())]
        );
    }

    #[test]
    fn the_guest_memory_report_is_the_first_after_the_host_sample() {
        let (tx, rx) = std::sync::mpsc::channel();
        let zero = Instant::now();
        let instance = Scripted { zero, events: rx };
        tx.send(Event::Marker(Marker::Memory(1), Instant::now()))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let sampled = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        tx.send(Event::Marker(Marker::Memory(2), Instant::now()))
            .unwrap();
        let mut timeline = Timeline::default();
        let used = guest_memory_after(&instance, &mut timeline, sampled, Duration::from_secs(5));
        assert_eq!(used, Some(2), "the report from before the sample is stale");
        // No later report: nothing, after the timeout.
        let later = Instant::now();
        assert_eq!(
            guest_memory_after(&instance, &mut timeline, later, Duration::from_millis(20)),
            None
        );
    }

    #[test]
    fn output_is_bounded() {
        let mut t = Timeline::default();
        for i in 0..100 {
            t.record(Event::Output(format!("line {i}")), Instant::now());
        }
        assert_eq!(t.output.len(), KEEP_OUTPUT_LINES);
        assert_eq!(t.output.back().unwrap(), "line 99");
    }
}
