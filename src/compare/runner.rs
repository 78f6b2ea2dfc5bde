//! One backend's runs: launch, wait for readiness, measure (phases, load, memory, the workload's
//! own results), tear down, and write every figure as a sample the moment it exists.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cvm_proto::applet::Applet;
use cvm_proto::metric::{Metric, PHASE_PREFIX};

use super::cgroup_state::CgroupState;
use crate::backend::{self, Instance, LaunchContext, Prepared};
use crate::measure::startup;
use crate::results::{Phase, ResultsError, SampleRow, SampleWriter};
use crate::scenario::{BackendKind, Readiness, Scenario, StartMode};
use crate::usage::disk::Footprint;

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
    /// A cold start could not drop the page cache (not root): its samples say so.
    pub cold_caches_kept: bool,
    /// The next launch is this backend's first of a freshly built image (`first_launch`).
    pub first_launch: bool,
    /// The CPUs the load client's threads are pinned to (disjoint from the instance's).
    pub client_cpus: Vec<usize>,
    /// The cgroup migration lock's state at every launch.
    pub cgroup_state: CgroupState,
}

impl Runner<'_> {
    /// Whether the server's count must match the client's exactly (within the connections in
    /// flight): everywhere but behind QEMU's user-mode network (see [`count_mismatch`]).
    pub(super) fn exact_server_count(&self) -> bool {
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
    ) -> Result<(), ResultsError> {
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
    ) -> Result<(), ResultsError> {
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
        self.writer.write(&row)
    }

    /// Records a failed run (the outer `Result` is a failure to record, which is fatal).
    pub fn record_failure(
        &mut self,
        iteration: u32,
        phase: Phase,
        msg: &str,
    ) -> Result<(), ResultsError> {
        let unit = Metric::RunFailed.unit().symbol();
        self.record(iteration, phase, Metric::RunFailed.name(), 1.0, unit, msg)
    }

    /// Bytes on disk per layer of this backend's stack, once per backend (counted by the caller,
    /// which also records the shared files in the backend's configuration).
    pub fn record_disk(&mut self, footprint: &Footprint) -> Result<(), ResultsError> {
        if footprint.per_layer.is_empty() {
            return Ok(());
        }
        for (layer, bytes) in &footprint.per_layer {
            let unit = Metric::DiskFootprint.unit().symbol();
            self.record(0, Phase::Measure, &layer.metric(), *bytes as f64, unit, "")?;
        }
        if footprint.cache > 0 {
            self.sample(0, Phase::Measure, Metric::DiskCache, footprint.cache as f64)?;
        }
        self.sample(
            0,
            Phase::Measure,
            Metric::DiskFootprint,
            footprint.total as f64,
        )
    }

    /// The backend's host-wide figures (a private daemon's start), once per run.
    pub fn record_host_figures(&mut self, figures: &[(Metric, f64)]) -> Result<(), ResultsError> {
        for &(metric, value) in figures {
            self.sample(0, Phase::Measure, metric, value)?;
        }
        Ok(())
    }

    /// One launch, measured and torn down.
    pub fn run_once(&mut self, iteration: u32, phase: Phase) -> Result<RunEnd, ResultsError> {
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

    fn measure_floor(&mut self, iteration: u32, phase: Phase) -> Result<(), ResultsError> {
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

    fn measure_instance(&mut self, iteration: u32, phase: Phase) -> Result<RunEnd, ResultsError> {
        let idle_since = Instant::now();
        if !self.cold_start_gap() {
            self.cold_caches_kept = true;
        }
        // The last thing before the launch: its cgroup join must not depend on what ran before.
        self.cgroup_state.settle(idle_since, self.interrupted);
        // Only the very first attempt is a first launch, whether or not it gets ready.
        let first = std::mem::take(&mut self.first_launch);
        let mut instance: Box<dyn Instance> = match self.prepared.launch(&self.ctx) {
            Ok(i) => i,
            Err(e) => return Ok(RunEnd::Failed(format!("{:#}", anyhow::Error::new(e)))),
        };
        let tracked = super::interrupt::track(format!(
            "the {} instance ({} {})",
            self.kind,
            phase_word(phase),
            iteration + 1
        ));
        self.first_launch = first;
        let outcome = self.observe(instance.as_ref(), iteration, phase);
        self.first_launch = false;
        let t0 = Instant::now();
        let teardown = instance.teardown();
        let teardown_latency = t0.elapsed();
        drop(instance);
        drop(tracked);
        let outcome = outcome?;
        if let Err(e) = teardown {
            return Ok(RunEnd::Failed(format!("{:#}", anyhow::Error::new(e))));
        }
        // A forced teardown (a second signal) skipped the grace period: not a teardown time.
        if outcome == RunEnd::Measured && !backend::process::hurried() {
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
    ) -> Result<RunEnd, ResultsError> {
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
        if let (Some(delay), Some(skew)) =
            (timeline.ready_probe_delay(), timeline.ready_probe_skew())
        {
            self.sample(iteration, phase, Metric::ReadyProbeDelay, delay)?;
            self.sample(iteration, phase, Metric::ReadyProbeSkew, skew)?;
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
                Ok(exit) if exit.success() => {
                    if let RunEnd::Failed(msg) =
                        self.record_inside_client(instance, &mut timeline, iteration, phase)?
                    {
                        return Ok(RunEnd::Failed(msg));
                    }
                }
                Ok(exit) => {
                    let said = self.inside_client_said(&timeline);
                    return Ok(RunEnd::Failed(format!(
                        "the workload ended with {exit}{said}"
                    )));
                }
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
            if let RunEnd::Failed(msg) =
                self.run_app_client(instance, &mut timeline, iteration, phase)?
            {
                return Ok(RunEnd::Failed(msg));
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
}

/// How progress and the teardown ledger name a phase's runs.
pub(super) fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Warmup => "warm-up",
        Phase::Measure => "run",
    }
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
}
