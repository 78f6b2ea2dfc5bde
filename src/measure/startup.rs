//! The startup timeline: from the instant a launch began to the workload's readiness, with every
//! phase point the backend and the guest report, all stamped on the host's monotonic clock.
//!
//! Each [`Phase`] ends at one observed point: `cgroup_join` (the child's `cgroup.procs` write),
//! `vmm_start` (QMP `cont` sent to a paused QEMU), `firmware` (the guest kernel's first console
//! output), `kernel` (`CVM:init`, in a VM), `runtime` or `guest_init` (`CVM:configured`: init has
//! finished the instance; `runtime` in a container, `guest_init` in a VM), `workload_start`
//! (ready as seen from inside the instance) and `probe` (ready as seen from the host too). The
//! metric `phase.<name>` is the time from the previous observed point to that one, so the phases
//! of a run add up to its `ready_latency` and stack in a chart.
//!
//! Readiness is seen from both sides. Inside: the workload's `CVM:ready`, or for servers init's
//! `CVM:listening` (a socket in LISTEN on the port, read from the instance's own socket tables).
//! Outside: for servers, the host's probe (a TCP connect, or the first HTTP response), run
//! concurrently as short, overlapping attempts so that one slow attempt never delays the next.
//! A server is ready at the first moment both hold. `ready_probe_delay` is how long readiness
//! then waited on the probe after the inside observation (zero when the probe succeeded first),
//! and `ready_probe_skew` the signed difference of the two observations: negative when the
//! host's answer came before the inside observation reached the host (init polls for LISTEN,
//! and a VM's marker crosses an emulated serial port).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cvm_proto::metric::Phase;
use cvm_proto::Marker;

use super::probe::Prober;
use crate::backend::{Event, ExitInfo, Instance};
use crate::scenario::Readiness;

/// How many non-marker output lines to keep for an error message.
const KEEP_OUTPUT_LINES: usize = 12;
/// How many of the last output lines to keep for an app's inside client, whose output is parsed.
pub const TRANSCRIPT_LINES: usize = 512;
/// How long to wait for markers still in flight once the workload has exited.
const EXIT_GRACE: Duration = Duration::from_millis(200);
/// How often the wait for a server looks at the probe's result.
const SERVER_POLL: Duration = Duration::from_millis(1);

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
    #[error("cannot start the readiness probe's thread")]
    ProbeThread(#[source] std::io::Error),
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

/// What was observed up to readiness (and, with [`wait_exit`], up to exit).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Readiness probe requests that went out unanswered: the server may count them later.
    pub probe_unanswered: u64,
    /// (phase, time since launch began when it ended), in arrival order.
    pub points: Vec<(Phase, Duration)>,
    /// (phase, start, end) of stretches seen inside another phase (a runtime's own cgroup
    /// writes inside its `runtime`), times since launch began.
    pub spans: Vec<(Phase, Duration, Duration)>,
    /// Ready: the first moment the inside observation and (for servers) the host probe held.
    pub ready: Option<Duration>,
    /// The workload's own `CVM:ready`.
    pub ready_marker: Option<Duration>,
    /// init's `CVM:listening`: a socket in LISTEN on the port inside the instance.
    pub listening: Option<Duration>,
    /// The host probe's first success.
    pub probe_ok: Option<Duration>,
    /// The instance has a guest kernel (a VM): `CVM:init` ends its `kernel` phase, and
    /// `CVM:configured` ends `guest_init` rather than `runtime`.
    pub guest_kernel: bool,
    /// Figures the workload reported with `CVM:result`, with the arrival of each.
    pub results: Vec<(String, f64, String)>,
    /// When each result arrived (same order as `results`).
    pub result_stamps: Vec<Duration>,
    /// The evidence the workload gave for its results (`CVM:note`): (metric, text).
    pub notes: Vec<(String, String)>,
    /// When init announced the workload (`CVM:workload`).
    pub workload_started: Option<Duration>,
    pub exit: Option<(ExitInfo, Duration)>,
    /// init's `CVM:exit` arrived: it comes after the workload's results on the same channel,
    /// so nothing more from the workload can follow it.
    pub exit_marker_seen: bool,
    pub output: VecDeque<String>,
    /// The last [`TRANSCRIPT_LINES`] output lines: an inside client's output, parsed at exit.
    pub transcript: VecDeque<String>,
    /// The guest's latest report of its memory in use (bytes) and when it arrived.
    pub guest_memory: Option<(u64, Duration)>,
    /// Failures the instance reported on its own channels (a `CVM:error` marker, an OOM kill):
    /// never taken from output lines, which are the workload's data.
    pub errors: Vec<String>,
}

impl Timeline {
    pub fn ready_latency(&self) -> Option<Duration> {
        self.ready
    }

    /// The interval a workload timed itself, as the host stamped it: its `CVM:ready` (sent
    /// right before the timed work) to its first `CVM:result` (sent right after).
    pub fn host_timed_interval(&self) -> Option<Duration> {
        let start = self.ready_marker?;
        let end = *self.result_stamps.first()?;
        end.checked_sub(start)
    }

    /// The host probe's success minus the inside observation, in seconds, signed (negative
    /// when the probe succeeded first); `None` unless both were seen.
    pub fn ready_probe_skew(&self) -> Option<f64> {
        Some(self.probe_ok?.as_secs_f64() - self.listening?.as_secs_f64())
    }

    /// How long readiness waited on the host's probe once the inside saw LISTEN, in seconds:
    /// the skew where the probe came second, zero where it came first. Never negative.
    pub fn ready_probe_delay(&self) -> Option<f64> {
        self.ready_probe_skew().map(|skew| skew.max(0.0))
    }

    /// `phase.<name>` durations up to readiness: each point minus the previous one (the first
    /// minus zero), in time order, so they add up to `ready_latency`. A phase seen only as
    /// spans inside others (a runtime's cgroup join) comes first, its spans carved out of the
    /// phases they ended in, so the sum is still `ready_latency`.
    pub fn phase_durations(&self) -> Vec<(Phase, Duration)> {
        let end = self.ready.unwrap_or(Duration::MAX);
        let mut points: Vec<(Phase, Duration)> = self
            .points
            .iter()
            .copied()
            .filter(|(_, at)| *at <= end)
            .collect();
        points.sort_by_key(|(p, at)| (*at, *p));
        let mut prev = Duration::ZERO;
        let mut phases: Vec<(Phase, Duration)> = points
            .iter()
            .map(|&(phase, at)| {
                let d = at.saturating_sub(prev);
                prev = at;
                (phase, d)
            })
            .collect();
        let mut inner: Vec<(Phase, Duration)> = Vec::new();
        for &(phase, from, to) in &self.spans {
            if to > end || points.iter().any(|(p, _)| *p == phase) {
                continue;
            }
            // The phase the span ended in gives up the span's length (at most all it has).
            let Some(i) = points.iter().position(|(_, at)| *at >= to) else {
                continue;
            };
            let carved = to.saturating_sub(from).min(phases[i].1);
            phases[i].1 -= carved;
            match inner.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, d)) => *d += carved,
                None => inner.push((phase, carved)),
            }
        }
        inner.extend(phases);
        inner
    }

    fn point(&mut self, phase: Phase, at: Duration) {
        if !self.points.iter().any(|(p, _)| *p == phase) {
            self.points.push((phase, at));
        }
    }

    fn record(&mut self, event: Event, zero: Instant) {
        let since = |at: Instant| at.saturating_duration_since(zero);
        match event {
            Event::Phase(phase, at) => self.point(phase, since(at)),
            Event::Span(phase, from, to) => self.spans.push((phase, since(from), since(to))),
            Event::Marker(Marker::Init, at) => {
                // In a container, init's start is inside the runtime's phase: not a boundary.
                if self.guest_kernel {
                    self.point(Phase::Kernel, since(at));
                }
            }
            Event::Marker(Marker::Configured, at) => {
                let phase = if self.guest_kernel {
                    Phase::GuestInit
                } else {
                    Phase::Runtime
                };
                self.point(phase, since(at));
            }
            Event::Marker(Marker::Workload(_), at) => {
                self.workload_started.get_or_insert(since(at));
            }
            Event::Marker(Marker::Ready, at) => {
                self.ready_marker.get_or_insert(since(at));
            }
            Event::Marker(Marker::Listening(_), at) => {
                self.listening.get_or_insert(since(at));
            }
            Event::Marker(
                Marker::Result {
                    metric,
                    value,
                    unit,
                },
                at,
            ) => {
                self.results.push((metric, value, unit));
                self.result_stamps.push(since(at));
            }
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
            Event::Marker(Marker::Note { metric, text }, _) => self.notes.push((metric, text)),
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
            Event::Output(line) => self.keep_output(line.into_text()),
        }
    }

    fn keep_output(&mut self, line: String) {
        if self.transcript.len() == TRANSCRIPT_LINES {
            self.transcript.pop_front();
        }
        self.transcript.push_back(line.clone());
        if self.output.len() == KEEP_OUTPUT_LINES {
            self.output.pop_front();
        }
        self.output.push_back(line);
    }

    fn last_phase(&self) -> String {
        let mut points = self.points.clone();
        points.sort_by_key(|(p, at)| (*at, *p));
        let mut last = points
            .last()
            .map_or_else(|| "none".to_string(), |(p, _)| p.name().to_string());
        if self.listening.is_some() {
            last.push_str(" (listening seen inside; the host's probe has not succeeded)");
        } else if self.probe_ok.is_some() {
            last.push_str(" (the host's probe succeeded; no socket in LISTEN seen inside)");
        }
        last
    }

    fn reported_error(&self) -> Option<String> {
        self.errors.last().cloned()
    }

    /// Ready when the inside observation and (for servers) the host probe both hold.
    fn try_ready(&mut self, readiness: &Readiness) -> bool {
        let (inside, outside) = match readiness {
            Readiness::Marker => (self.ready_marker, self.ready_marker),
            Readiness::Tcp { .. } | Readiness::Http { .. } => (self.listening, self.probe_ok),
        };
        let (Some(inside), Some(outside)) = (inside, outside) else {
            return false;
        };
        let ready = inside.max(outside);
        self.point(Phase::WorkloadStart, inside);
        if readiness != &Readiness::Marker {
            self.point(Phase::Probe, ready);
        }
        self.ready = Some(ready);
        true
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
    let mut timeline = Timeline {
        guest_kernel: instance.has_guest_kernel(),
        ..Timeline::default()
    };
    let mut prober = match readiness {
        Readiness::Marker => None,
        Readiness::Tcp { port } | Readiness::Http { port, .. } => {
            let addr = instance
                .endpoint(*port)
                .ok_or(StartupError::NoEndpoint { port: *port })?;
            let path = match readiness {
                Readiness::Http { path, .. } => Some(path.clone()),
                _ => None,
            };
            Some(Prober::start(addr, path).map_err(StartupError::ProbeThread)?)
        }
    };
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
        let wait = if prober.is_some() {
            SERVER_POLL
        } else {
            Duration::from_millis(50)
        };
        match instance.events().recv_timeout(wait.min(deadline - now)) {
            Ok(event) => timeline.record(event, zero),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait.min(deadline - now)),
        }
        // Everything queued now is part of the picture at this moment: nothing is left behind
        // when readiness is decided.
        while let Ok(more) = instance.events().try_recv() {
            timeline.record(more, zero);
        }
        if let Some(message) = timeline.reported_error() {
            return Err(StartupError::Reported { message });
        }
        if let Some(at) = prober.as_ref().and_then(|p| p.found.try_recv().ok()) {
            timeline
                .probe_ok
                .get_or_insert(at.saturating_duration_since(zero));
        }
        if timeline.try_ready(readiness) {
            if let Some(prober) = prober.take() {
                let unanswered = Arc::clone(&prober.unanswered);
                // Dropped first: it waits for the attempts still in flight.
                drop(prober);
                timeline.probe_unanswered = unanswered.load(Ordering::SeqCst) as u64;
            }
            return Ok(timeline);
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
                    if timeline.ready_marker.is_some() {
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
    }
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

/// Takes what the instance reports within `grace`, or until every sender is gone: an exited
/// workload's last output lines travel on a pipe and reader thread of their own, and may arrive
/// after init's exit marker.
pub fn settle(instance: &dyn Instance, timeline: &mut Timeline, grace: Duration) {
    let zero = instance.started_at();
    let deadline = Instant::now() + grace;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match instance.events().recv_timeout(left) {
            Ok(event) => timeline.record(event, zero),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn a_join_seen_inside_the_runtime_is_carved_out_of_it() {
        let ms = Duration::from_millis;
        let mut t = Timeline {
            points: vec![(Phase::Runtime, ms(40)), (Phase::WorkloadStart, ms(45))],
            // Two writes (two hierarchies) during runc's start, and one after readiness.
            spans: vec![
                (Phase::CgroupJoin, ms(20), ms(31)),
                (Phase::CgroupJoin, ms(31), ms(32)),
                (Phase::CgroupJoin, ms(50), ms(51)),
            ],
            ready: Some(ms(45)),
            ..Default::default()
        };
        let phases = t.phase_durations();
        assert_eq!(
            phases,
            vec![
                (Phase::CgroupJoin, ms(12)),
                (Phase::Runtime, ms(28)),
                (Phase::WorkloadStart, ms(5))
            ]
        );
        assert_eq!(phases.iter().map(|(_, d)| *d).sum::<Duration>(), ms(45));
        // A phase with a point of its own keeps it; spans of it are not counted twice.
        t.points.push((Phase::CgroupJoin, ms(1)));
        assert_eq!(t.phase_durations()[0], (Phase::CgroupJoin, ms(1)));
        assert_eq!(t.phase_durations()[1], (Phase::Runtime, ms(39)));
        // Events carry host instants; the timeline keeps them as times since the launch.
        let zero = Instant::now();
        let mut seen = Timeline::default();
        seen.record(
            Event::Span(Phase::CgroupJoin, zero + ms(3), zero + ms(7)),
            zero,
        );
        assert_eq!(seen.spans, vec![(Phase::CgroupJoin, ms(3), ms(7))]);
    }

    #[test]
    fn phases_are_segments_that_add_up_to_ready() {
        let ms = Duration::from_millis;
        let t = Timeline {
            // Arrival order is not time order: a host stamp can be queued after a marker.
            points: vec![
                (Phase::Runtime, ms(5)),
                (Phase::CgroupJoin, ms(2)),
                (Phase::WorkloadStart, ms(9)),
                // After readiness: not a startup phase.
                (Phase::Probe, ms(30)),
            ],
            ready: Some(ms(9)),
            ..Default::default()
        };
        let phases = t.phase_durations();
        assert_eq!(
            phases,
            vec![
                (Phase::CgroupJoin, ms(2)),
                (Phase::Runtime, ms(3)),
                (Phase::WorkloadStart, ms(4))
            ]
        );
        assert_eq!(
            phases.iter().map(|(_, d)| *d).sum::<Duration>(),
            t.ready_latency().unwrap()
        );
    }

    #[test]
    fn markers_are_charged_by_whether_the_instance_has_a_guest_kernel() {
        let zero = Instant::now();
        let at = |ms| zero + Duration::from_millis(ms);
        for (guest_kernel, expected) in [
            (false, vec![Phase::Runtime]),
            (true, vec![Phase::Kernel, Phase::GuestInit]),
        ] {
            let mut t = Timeline {
                guest_kernel,
                ..Default::default()
            };
            t.record(Event::Marker(Marker::Init, at(1)), zero);
            t.record(Event::Marker(Marker::Configured, at(2)), zero);
            let phases: Vec<Phase> = t.points.iter().map(|(p, _)| *p).collect();
            assert_eq!(phases, expected);
        }
    }

    /// An instance whose events a test scripts.
    struct Scripted {
        zero: Instant,
        events: std::sync::mpsc::Receiver<Event>,
        endpoint: Option<SocketAddr>,
    }

    /// A server readiness run against a real listener: `listening_after` is when the scripted
    /// init reports `CVM:listening`, `listen_after` when the host side starts to accept.
    fn server_ready(listening_after: Duration, listen_after: Duration) -> Timeline {
        let (tx, rx) = std::sync::mpsc::channel();
        // Bound now (so the port is known), accepting only once the listen delay has passed:
        // before that, connects queue in the backlog and a TCP probe would succeed, so the
        // host side is a port that refuses until then.
        let probe_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr: SocketAddr = ([127, 0, 0, 1], probe_port).into();
        let zero = Instant::now();
        let instance = Scripted {
            zero,
            events: rx,
            endpoint: Some(addr),
        };
        let server = std::thread::spawn(move || {
            std::thread::sleep(listen_after);
            let l = std::net::TcpListener::bind(addr).unwrap();
            // Keep accepting until the test is done with the port.
            let _ = l.accept();
            std::thread::sleep(Duration::from_millis(200));
        });
        let markers = std::thread::spawn(move || {
            tx.send(Event::Phase(Phase::CgroupJoin, zero)).unwrap();
            std::thread::sleep(listening_after);
            tx.send(Event::Marker(Marker::Listening(1), Instant::now()))
                .unwrap();
            // Queued right after: must not be lost whatever the moment of readiness.
            tx.send(Event::Marker(Marker::Ready, Instant::now()))
                .unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        let t = wait_ready(
            &instance,
            &Readiness::Tcp { port: 1 },
            Duration::from_secs(5),
            &AtomicBool::new(false),
        )
        .unwrap();
        server.join().unwrap();
        drop(markers);
        t
    }

    #[test]
    fn a_server_is_ready_only_when_both_sides_hold() {
        let ms = Duration::from_millis;
        // The host can connect long before init sees the socket (a proxy that accepts early).
        let t = server_ready(ms(300), ms(0));
        let ready = t.ready_latency().unwrap();
        assert!(
            ready >= ms(300),
            "ready at {ready:?} before the inside saw LISTEN"
        );
        assert!(t.ready_probe_skew().unwrap() < 0.0, "{t:?}");
        // A delay is never negative: the probe that succeeded first kept readiness waiting 0 s.
        assert_eq!(t.ready_probe_delay(), Some(0.0));
        // init sees LISTEN first; the host's side only accepts later.
        let t = server_ready(ms(0), ms(300));
        let ready = t.ready_latency().unwrap();
        assert!(
            ready >= ms(300),
            "ready at {ready:?} before the host could connect"
        );
        assert!(t.ready_probe_delay().unwrap() > 0.0, "{t:?}");
        assert_eq!(t.ready_probe_delay(), t.ready_probe_skew());
        let phases = t.phase_durations();
        assert_eq!(
            phases.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            [Phase::CgroupJoin, Phase::WorkloadStart, Phase::Probe]
        );
        assert_eq!(phases.iter().map(|(_, d)| *d).sum::<Duration>(), ready);
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
            self.endpoint
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
            endpoint: None,
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
        let instance = Scripted {
            zero,
            events: rx,
            endpoint: None,
        };
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
            t.record(
                Event::Output(crate::backend::events::OutputLine::new(format!("line {i}"))),
                Instant::now(),
            );
        }
        assert_eq!(t.output.len(), KEEP_OUTPUT_LINES);
        assert_eq!(t.output.back().unwrap(), "line 99");
    }
}
