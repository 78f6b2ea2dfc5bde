//! One backend's runs: launch, wait for readiness, measure (phases, load, memory, the workload's
//! own results), tear down, and write every figure as a sample the moment it exists.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cvm_proto::applet::Applet;
use cvm_proto::metric::{Metric, SweepFigure, PHASE_PREFIX};

use crate::backend::{self, Instance, LaunchContext, Prepared};
use crate::exit::Failure;
use crate::load::http::{self as http_load, HttpLoad};
use crate::measure::disk::Footprint;
use crate::measure::{memory, startup};
use crate::results::{Phase, SampleRow, SampleWriter};
use crate::scenario::{BackendKind, Readiness, Scenario, StartMode};

/// How far a guest-timed duration may be from the host's stamps of the same interval before
/// the guest's figures are flagged (and the report trusts the host's).
pub const CLOCK_TOLERANCE: f64 = 0.02;
/// The shortest interval the clocks are compared over: the host's stamps carry each marker's
/// transport delay (a pipe, or an emulated serial port), milliseconds on a loaded host, which
/// must be small against 2 % of the interval.
pub const CLOCK_CHECK_MIN: f64 = 0.5;

/// A workload's own duration (`cpu_time`, on its clock) against the host's stamps of the same
/// interval (`CVM:ready` to the first `CVM:result`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ClockCheck {
    guest: f64,
    host: f64,
}

impl ClockCheck {
    fn error(self) -> f64 {
        self.guest / self.host - 1.0
    }
    fn disagrees(self) -> bool {
        self.host >= CLOCK_CHECK_MIN && self.error().abs() > CLOCK_TOLERANCE
    }
    fn note(self) -> String {
        format!(
            "guest clock off by {:+.1}% against the host's stamps of the same interval \
             ({:.4} s guest, {:.4} s host): trust cpu_time_host",
            self.error() * 100.0,
            self.guest,
            self.host
        )
    }
}

fn clock_check(timeline: &startup::Timeline) -> Option<ClockCheck> {
    let guest = timeline
        .results
        .iter()
        .find(|(m, _, _)| m == Metric::CpuTime.name())
        .map(|(_, v, _)| *v)?;
    let host = timeline.host_timed_interval()?.as_secs_f64();
    (host > 0.0).then_some(ClockCheck { guest, host })
}

/// How often memory is sampled during a load phase (for `memory_pss_peak`).
const PEAK_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// How long to wait for the guest's own memory report after the host's sample.
const GUEST_MEMORY_WAIT: Duration = Duration::from_secs(2);

/// A run's own failure, already recorded as a `run_failed` sample; the run goes on.
/// How one measured launch ended (a failure to *record* is the outer `Result`, and fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every figure of the run was recorded.
    Measured,
    /// The run failed for this reason; it is recorded as a failed run and the backend goes on.
    Failed(String),
}

pub struct Runner<'a> {
    pub scenario: &'a Scenario,
    pub prepared: &'a dyn Prepared,
    pub kind: BackendKind,
    pub timeout: Duration,
    pub interrupted: &'a AtomicBool,
    pub writer: &'a mut SampleWriter,
    pub template: SampleRow,
    pub ctx: LaunchContext,
    /// `cvm-guest` in the image, for the launch floor.
    pub floor_program: PathBuf,
    /// Native's median idle PSS, once native has run: the base of `memory_overhead`.
    pub native_pss: Option<f64>,
    /// This backend's measured idle PSS values (native's become the next backends' base).
    pub idle_pss: Vec<f64>,
    /// A cold start could not drop the page cache (not root): its samples say so.
    pub cold_caches_kept: bool,
    /// The next launch is this backend's first of a freshly built image (`first_launch`).
    pub first_launch: bool,
    /// The CPUs the load client's threads are pinned to (disjoint from the instance's).
    pub client_cpus: Vec<usize>,
}

impl Runner<'_> {
    /// Whether the server's count must match the client's exactly (within the connections in
    /// flight): everywhere but behind QEMU's user-mode network (see [`count_mismatch`]).
    fn exact_server_count(&self) -> bool {
        self.prepared.config().get("network").map(String::as_str)
            != Some(crate::backend::vm::net::MODE)
    }

    /// Records one figure of a metric with a fixed name and unit.
    pub fn sample(
        &mut self,
        iteration: u32,
        phase: Phase,
        metric: Metric,
        value: f64,
    ) -> Result<(), Failure> {
        let unit = metric.unit().symbol();
        self.record(iteration, phase, metric.name(), value, unit, "")
    }

    /// Records one figure of a named family (`phase.kernel`, `disk.libs`) or one the workload
    /// reported under its own name.
    pub(super) fn record(
        &mut self,
        iteration: u32,
        phase: Phase,
        metric: &str,
        value: f64,
        unit: &str,
        note: &str,
    ) -> Result<(), Failure> {
        let mut row = self.template.clone();
        row.iteration = iteration;
        row.phase = phase;
        row.metric = metric.to_string();
        row.value = value;
        row.unit = unit.to_string();
        row.note = if self.cold_caches_kept && note.is_empty() {
            "cold start without dropping the page cache (not root)".to_string()
        } else {
            note.to_string()
        };
        self.writer
            .write(&row)
            .map_err(|e| Failure::run(anyhow::Error::new(e)))
    }

    /// Records a failed run (the outer `Result` is a failure to record, which is fatal).
    pub fn record_failure(
        &mut self,
        iteration: u32,
        phase: Phase,
        msg: &str,
    ) -> Result<(), Failure> {
        let unit = Metric::RunFailed.unit().symbol();
        self.record(iteration, phase, Metric::RunFailed.name(), 1.0, unit, msg)
    }

    /// Bytes on disk per layer of this backend's stack, once per backend (counted by the caller,
    /// which also records the shared files in the backend's configuration).
    pub fn record_disk(&mut self, footprint: &Footprint) -> Result<(), Failure> {
        if footprint.per_layer.is_empty() {
            return Ok(());
        }
        for (layer, bytes) in &footprint.per_layer {
            let unit = Metric::DiskFootprint.unit().symbol();
            self.record(0, Phase::Measure, &layer.metric(), *bytes as f64, unit, "")?;
        }
        self.sample(
            0,
            Phase::Measure,
            Metric::DiskFootprint,
            footprint.total as f64,
        )
    }

    /// The backend's host-wide figures (a private daemon's start), once per run.
    pub fn record_host_figures(&mut self, figures: &[(Metric, f64)]) -> Result<(), Failure> {
        for &(metric, value) in figures {
            self.sample(0, Phase::Measure, metric, value)?;
        }
        Ok(())
    }

    /// One launch, measured and torn down.
    pub fn run_once(&mut self, iteration: u32, phase: Phase) -> Result<RunEnd, Failure> {
        // Interleaved with the native runs, so drift on the host affects both alike, and before
        // the run on even iterations, after it on odd ones: whichever goes second follows a
        // teardown (the kernel still retiring a process and its cgroup), so neither always does.
        let floor = self.kind == BackendKind::Native && self.measures_floor();
        if floor && iteration % 2 == 0 {
            self.measure_floor(iteration, phase)?;
        }
        let outcome = self.measure_instance(iteration, phase)?;
        if floor && iteration % 2 == 1 {
            self.measure_floor(iteration, phase)?;
        }
        if let RunEnd::Failed(msg) = &outcome {
            self.record_failure(iteration, phase, msg)?;
        }
        Ok(outcome)
    }

    fn measure_floor(&mut self, iteration: u32, phase: Phase) -> Result<(), Failure> {
        if let Ok(d) = backend::native::fork_exec_floor(&self.floor_program, self.timeout) {
            self.sample(iteration, phase, Metric::LaunchFloor, d.as_secs_f64())?;
        }
        Ok(())
    }

    /// The launch floor is comparable only for `hello`, which announces readiness by marker.
    fn measures_floor(&self) -> bool {
        self.scenario.readiness == Readiness::Marker
            && self.scenario.workload.applet() == Some(Applet::Hello)
    }

    /// A cold start's preparation, before the launch (so outside every figure): the idle gap,
    /// then the page cache dropped (as root; otherwise the gap alone, noted in the sample).
    fn cold_start_gap(&self) -> bool {
        if self.scenario.start.mode != StartMode::Cold {
            return true;
        }
        let gap = Duration::from_secs_f64(*self.scenario.start.idle_gap_s.get_ref());
        let until = Instant::now() + gap;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if self.interrupted.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        crate::sys::drop_caches().is_ok()
    }

    fn measure_instance(&mut self, iteration: u32, phase: Phase) -> Result<RunEnd, Failure> {
        if !self.cold_start_gap() {
            self.cold_caches_kept = true;
        }
        // Only the very first attempt is a first launch, whether or not it gets ready.
        let first = std::mem::take(&mut self.first_launch);
        let mut instance: Box<dyn Instance> = match self.prepared.launch(&self.ctx) {
            Ok(i) => i,
            Err(e) => return Ok(RunEnd::Failed(format!("{:#}", anyhow::Error::new(e)))),
        };
        self.first_launch = first;
        let outcome = self.observe(instance.as_ref(), iteration, phase);
        self.first_launch = false;
        let t0 = Instant::now();
        let teardown = instance.teardown();
        let teardown_latency = t0.elapsed();
        drop(instance);
        let outcome = outcome?;
        if let Err(e) = teardown {
            return Ok(RunEnd::Failed(format!("{:#}", anyhow::Error::new(e))));
        }
        if outcome == RunEnd::Measured {
            self.sample(
                iteration,
                phase,
                Metric::TeardownLatency,
                teardown_latency.as_secs_f64(),
            )?;
        }
        Ok(outcome)
    }

    fn observe(
        &mut self,
        instance: &dyn Instance,
        iteration: u32,
        phase: Phase,
    ) -> Result<RunEnd, Failure> {
        let mut timeline = match startup::wait_ready(
            instance,
            &self.scenario.readiness,
            self.timeout,
            self.interrupted,
        ) {
            Ok(t) => t,
            Err(e) => return Ok(RunEnd::Failed(e.to_string())),
        };
        let ready = timeline.ready_latency().unwrap_or_default();
        self.sample(iteration, phase, Metric::ReadyLatency, ready.as_secs_f64())?;
        if std::mem::take(&mut self.first_launch) {
            self.sample(iteration, phase, Metric::FirstLaunch, ready.as_secs_f64())?;
        }
        if let Some(delay) = timeline.ready_probe_delay() {
            self.sample(iteration, phase, Metric::ReadyProbeDelay, delay)?;
            self.sample(
                iteration,
                phase,
                Metric::ReadyProbesUnanswered,
                timeline.probe_unanswered as f64,
            )?;
        }
        for (name, d) in timeline.phase_durations() {
            let unit = Metric::ReadyLatency.unit().symbol();
            let name = format!("{PHASE_PREFIX}{name}");
            self.record(iteration, phase, &name, d.as_secs_f64(), unit, "")?;
        }
        if self.scenario.workload.runs_to_completion() {
            match startup::wait_exit(instance, &mut timeline, self.timeout, self.interrupted) {
                Ok(exit) if exit.success() => {}
                Ok(exit) => return Ok(RunEnd::Failed(format!("the workload ended with {exit}"))),
                Err(e) => return Ok(RunEnd::Failed(e.to_string())),
            }
        } else {
            self.record_idle_memory(instance, &mut timeline, iteration, phase)?;
            if self.scenario.load.is_some() {
                if let RunEnd::Failed(msg) =
                    self.run_load(instance, &mut timeline, iteration, phase)?
                {
                    return Ok(RunEnd::Failed(msg));
                }
            }
            startup::drain(instance, &mut timeline);
            // A server that died under load is a failed run, not a fast one.
            if let Some((exit, _)) = timeline.exit {
                return Ok(RunEnd::Failed(format!(
                    "the workload ended with {exit} while being measured"
                )));
            }
        }
        let clock = clock_check(&timeline);
        for (metric, value, unit) in timeline.results.clone() {
            let note = match (Metric::from_name(&metric), &clock) {
                (Some(Metric::HttpPort), _) => continue,
                (Some(Metric::CpuTime | Metric::CpuScore), Some(c)) if c.disagrees() => c.note(),
                _ => String::new(),
            };
            self.record(iteration, phase, &metric, value, &unit, &note)?;
        }
        if let Some(c) = clock {
            self.sample(iteration, phase, Metric::CpuTimeHost, c.host)?;
            self.sample(iteration, phase, Metric::GuestClockError, c.error())?;
        }
        Ok(RunEnd::Measured)
    }

    fn record_idle_memory(
        &mut self,
        instance: &dyn Instance,
        timeline: &mut startup::Timeline,
        iteration: u32,
        phase: Phase,
    ) -> Result<(), Failure> {
        let pids = instance.host_pids();
        let sampled_at = Instant::now();
        let pss = match instance.guest_ram_mapping() {
            None => memory::pss_total(&pids),
            Some(mapping) => {
                let split = pids
                    .iter()
                    .filter_map(|&p| memory::pss_split(p, mapping))
                    .fold(memory::PssSplit::default(), |a, b| memory::PssSplit {
                        total: a.total + b.total,
                        in_mapping: a.in_mapping + b.in_mapping,
                    });
                if split.total > 0 {
                    let vmm = split.total - split.in_mapping;
                    self.sample(iteration, phase, Metric::MemoryVmm, vmm as f64)?;
                    let ram = split.in_mapping as f64;
                    self.sample(iteration, phase, Metric::MemoryGuestRam, ram)?;
                }
                split.total
            }
        };
        let daemons = instance.daemon_pids();
        if !daemons.is_empty() {
            let pss = memory::pss_total(&daemons);
            self.sample(iteration, phase, Metric::MemoryDaemon, pss as f64)?;
        }
        if instance.reports_guest_memory() {
            // The guest reports every quarter second; a few periods cover a slow console.
            if let Some(used) =
                startup::guest_memory_after(instance, timeline, sampled_at, GUEST_MEMORY_WAIT)
            {
                self.sample(iteration, phase, Metric::MemoryGuestUsed, used as f64)?;
            }
        }
        if pss > 0 {
            self.sample(iteration, phase, Metric::MemoryPss, pss as f64)?;
            if phase == Phase::Measure {
                self.idle_pss.push(pss as f64);
            }
            if let Some(base) = self.native_pss.filter(|_| self.kind != BackendKind::Native) {
                self.sample(iteration, phase, Metric::MemoryOverhead, pss as f64 - base)?;
            }
        }
        if let Some(bytes) = instance
            .memory_cgroup()
            .and_then(|d| crate::backend::cgroup::memory_charged(&d))
        {
            self.sample(iteration, phase, Metric::MemoryCgroup, bytes as f64)?;
        }
        Ok(())
    }

    /// The HTTP load phase, with peak memory sampled alongside and the server's own request
    /// count read before and after (the load generator's count is checked against it).
    fn run_load(
        &mut self,
        instance: &dyn Instance,
        timeline: &mut startup::Timeline,
        iteration: u32,
        phase: Phase,
    ) -> Result<RunEnd, Failure> {
        let Some(spec) = &self.scenario.load else {
            return Ok(RunEnd::Measured);
        };
        let port = match self.scenario.readiness {
            Readiness::Http { port, .. } | Readiness::Tcp { port } => port,
            Readiness::Marker => {
                return Ok(RunEnd::Failed("a load phase needs a readiness port".into()))
            }
        };
        let Some(addr) = instance.endpoint(port) else {
            return Ok(RunEnd::Failed(format!(
                "the instance has no host endpoint for port {port}"
            )));
        };
        let load = HttpLoad {
            threads: *spec.client_threads.get_ref(),
            rate: spec.rate.as_ref().map(|r| *r.get_ref()),
            cpus: self.client_cpus.clone(),
            ..HttpLoad::closed(
                addr,
                &spec.path,
                *spec.connections.get_ref(),
                Duration::from_secs_f64(*spec.duration_s.get_ref()),
            )
        };
        let is_cvm_http = self
            .scenario
            .workload
            .applet
            .as_ref()
            .is_some_and(|a| a.get_ref() == "http");
        let served_before = if is_cvm_http {
            http_load::server_count(addr)
        } else {
            None
        };
        let pids = instance.host_pids();
        let done = AtomicBool::new(false);
        let (result, peak) = std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                let mut peak = 0;
                while !done.load(Ordering::SeqCst) {
                    peak = peak.max(memory::pss_total(&pids));
                    std::thread::sleep(PEAK_SAMPLE_INTERVAL);
                }
                peak
            });
            let result = http_load::run(&load, self.interrupted);
            done.store(true, Ordering::SeqCst);
            (result, sampler.join().unwrap_or(0))
        });
        // A server that died under load makes the figures meaningless: fail before recording.
        startup::drain(instance, timeline);
        if let Some((exit, _)) = timeline.exit {
            return Ok(RunEnd::Failed(format!(
                "the workload ended with {exit} during the load phase"
            )));
        }
        let r = match result {
            Ok(r) => r,
            Err(e) => return Ok(RunEnd::Failed(format!("load phase: {e}"))),
        };
        // Counts that disagree make the figures untrustworthy: fail before recording them.
        let served = served_before
            .zip(http_load::server_count(addr))
            .map(|(before, after)| after.saturating_sub(before));
        if let Some(served) = served {
            if let Some(reason) = count_mismatch(
                served,
                r.requests,
                u64::from(load.connections) + timeline.probe_unanswered,
                self.exact_server_count(),
            ) {
                return Ok(RunEnd::Failed(reason));
            }
        }
        self.sample(iteration, phase, Metric::HttpRps, r.rps())?;
        self.sample(iteration, phase, Metric::HttpRequests, r.requests as f64)?;
        self.sample(iteration, phase, Metric::HttpErrors, r.errors as f64)?;
        for (metric, d) in [
            (Metric::HttpLatencyP50, r.latency_p50),
            (Metric::HttpLatencyP90, r.latency_p90),
            (Metric::HttpLatencyP99, r.latency_p99),
            (Metric::HttpLatencyMax, r.latency_max),
        ] {
            self.sample(iteration, phase, metric, d.as_secs_f64())?;
        }
        self.sample(
            iteration,
            phase,
            Metric::LoadClientCpu,
            r.client_cpu_share(),
        )?;
        if peak > 0 {
            self.sample(iteration, phase, Metric::MemoryPssPeak, peak as f64)?;
        }
        if let Some(served) = served {
            self.sample(iteration, phase, Metric::HttpServerRequests, served as f64)?;
        }
        match spec.rates.as_ref() {
            Some(rates) => {
                let rates = rates.get_ref().clone();
                self.run_sweep(
                    instance,
                    timeline,
                    &load,
                    &rates,
                    is_cvm_http,
                    iteration,
                    phase,
                )
            }
            None => Ok(RunEnd::Measured),
        }
    }

    /// The rate sweep: one open-loop phase per offered rate, each checked like the main phase
    /// (a dead server or a count mismatch fails the run), recorded as `rate.<N>.<figure>`.
    #[allow(clippy::too_many_arguments)]
    fn run_sweep(
        &mut self,
        instance: &dyn Instance,
        timeline: &mut startup::Timeline,
        base: &HttpLoad,
        rates: &[f64],
        is_cvm_http: bool,
        iteration: u32,
        phase: Phase,
    ) -> Result<RunEnd, Failure> {
        for &rate in rates {
            if self.interrupted.load(Ordering::SeqCst) {
                break;
            }
            let load = HttpLoad {
                rate: Some(rate),
                ..base.clone()
            };
            let before = is_cvm_http
                .then(|| http_load::server_count(load.addr))
                .flatten();
            let result = http_load::run(&load, self.interrupted);
            startup::drain(instance, timeline);
            if let Some((exit, _)) = timeline.exit {
                return Ok(RunEnd::Failed(format!(
                    "the workload ended with {exit} during the rate sweep at {rate}/s"
                )));
            }
            let r = match result {
                Ok(r) => r,
                Err(e) => return Ok(RunEnd::Failed(format!("rate sweep at {rate}/s: {e}"))),
            };
            if let (Some(before), Some(after)) = (before, http_load::server_count(load.addr)) {
                let served = after.saturating_sub(before);
                if let Some(reason) = count_mismatch(
                    served,
                    r.requests,
                    u64::from(load.connections) + timeline.probe_unanswered,
                    self.exact_server_count(),
                ) {
                    return Ok(RunEnd::Failed(format!("rate sweep at {rate}/s: {reason}")));
                }
            }
            for (figure, value) in [
                (SweepFigure::Rps, r.rps()),
                (SweepFigure::LatencyP50, r.latency_p50.as_secs_f64()),
                (SweepFigure::LatencyP99, r.latency_p99.as_secs_f64()),
            ] {
                let unit = figure.unit().symbol();
                self.record(iteration, phase, &figure.metric(rate), value, unit, "")?;
            }
        }
        Ok(RunEnd::Measured)
    }
}

/// Why the server's and the client's counts of one load phase disagree, if they do beyond what
/// the cut-off explains: each connection may have one request in flight when the client's clock
/// runs out, which the server answers (and counts) but the client does not. A client that counts
/// more than the server served is always wrong. A server that served more is wrong too where
/// nothing but the client can reach it during the phase (`exact`); behind QEMU's user network
/// it is not: a readiness probe that gave up while the guest's network was still coming up
/// leaves its request inside QEMU, which delivers it (counted) seconds later, during the load.
///
/// `allowed` is the connections (each may have one request in flight at the deadline) plus the
/// readiness probe requests that went out unanswered (a slow server serves them later).
fn count_mismatch(served: u64, counted: u64, allowed: u64, exact: bool) -> Option<String> {
    if served < counted {
        return Some(format!(
            "the client counted {counted} responses during the load phase but the server served \
             only {served}: the client counted responses that were never sent"
        ));
    }
    let gap = served - counted;
    (exact && gap > allowed).then(|| {
        format!(
            "the server served {served} requests during the load phase and the client counted \
             {counted}: they differ by {gap}, more than the {allowed} that connections still in \
             flight at the deadline and unanswered readiness probes explain"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_guest_clock_two_percent_off_is_flagged_and_one_percent_is_not() {
        let timeline = |guest: f64| startup::Timeline {
            ready_marker: Some(Duration::from_millis(100)),
            result_stamps: vec![Duration::from_millis(1100)],
            results: vec![
                ("cpu_score".into(), 1.0, "1/s".into()),
                ("cpu_time".into(), guest, "s".into()),
            ],
            ..Default::default()
        };
        let c = clock_check(&timeline(1.01)).unwrap();
        assert!((c.host - 1.0).abs() < 1e-9);
        assert!(!c.disagrees());
        let c = clock_check(&timeline(1.05)).unwrap();
        assert!(c.disagrees() && (c.error() - 0.05).abs() < 1e-9);
        // Over a short interval the markers' transport delay dominates: not judged.
        let short = ClockCheck {
            guest: 0.0105,
            host: 0.01,
        };
        assert!(!short.disagrees());
        assert!(c.note().contains("+5.0%"), "{}", c.note());
        assert!(clock_check(&startup::Timeline::default()).is_none());
    }

    #[test]
    fn counts_may_differ_by_the_requests_in_flight_and_no_more() {
        assert_eq!(count_mismatch(1004, 1000, 4, true), None);
        assert_eq!(count_mismatch(1000, 1000, 4, true), None);
        let too_many = count_mismatch(1005, 1000, 4, true).unwrap();
        assert!(
            too_many.contains("1005") && too_many.contains("differ by 5"),
            "{too_many}"
        );
        // A client that counts more than the server served is as wrong as one that counts less.
        assert!(count_mismatch(990, 1000, 4, true).is_some());
        // Behind a user-mode network, late probe requests may add to the server's count, but
        // a client that counted more than was served is still caught.
        assert_eq!(count_mismatch(1010, 1000, 4, false), None);
        assert!(count_mismatch(990, 1000, 4, false).is_some());
    }
}
