//! The attack-surface audit and the containment attempts, each in an instance of its own
//! beside the running victim, with what only the host can see added to what the instance
//! reported: the seccomp filters of the process that carries the instance's system calls (and a
//! VM's `-sandbox`), and during the attempts whether the host can still start a process, whether
//! the neighbour still answers, and whether the host's OOM killer fired outside the instance.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use cvm_proto::isolation::Probe;
use cvm_proto::metric::Metric;

use super::host;
use super::{launch_role, Restart, Step, StepError, Victim, ROLE_AUDIT, ROLE_CONTAIN};
use crate::backend::{Instance, Prepared};
use crate::compare::runner::Runner;
use crate::measure::seccomp;
use crate::measure::startup::{self, Timeline};
use crate::results::Phase;
use crate::scenario::{BackendKind, Readiness};

/// How often the host checks itself and the neighbour during the containment attempts.
const CHECK_PERIOD: Duration = Duration::from_millis(100);
/// How often the instance's OOM count is read (see [`watch_ooms`]).
const OOM_PERIOD: Duration = Duration::from_millis(2);
/// The share of the neighbour's checks that must be answered for it to count as serving.
const NEIGHBOUR_SERVING: f64 = 0.9;

/// Records a figure with its evidence.
fn record(
    runner: &mut Runner,
    at: (u32, Phase),
    metric: Metric,
    value: f64,
    note: &str,
) -> Step<()> {
    runner.record(
        at.0,
        at.1,
        metric.name(),
        value,
        metric.unit().symbol(),
        note,
    )?;
    Ok(())
}

/// The audit: its own report, then the host's side while it waits to be stopped.
pub(super) fn audit(runner: &mut Runner, prepared: &dyn Prepared, at: (u32, Phase)) -> Step<()> {
    let mut instance = launch_role(runner, prepared, ROLE_AUDIT)?;
    let ready = startup::wait_ready(
        instance.as_ref(),
        &Readiness::Marker,
        runner.timeout,
        runner.interrupted,
    )
    .map_err(|e| StepError::Run(format!("the audit: {e}")));
    let host_side = ready
        .as_ref()
        .ok()
        .map(|_| host_surface(runner.kind, instance.as_ref()));
    let torn = instance.teardown();
    let timeline = ready?;
    torn.map_err(|e| StepError::Run(format!("the audit's teardown: {:#}", anyhow::Error::new(e))))?;
    for (metric, value, _) in &timeline.results {
        let Some(m) = Metric::from_name(metric) else {
            continue;
        };
        record(runner, at, m, *value, &note_of(&timeline, metric))?;
    }
    for (metric, value, note) in host_side.into_iter().flatten() {
        record(runner, at, metric, value, &note)?;
    }
    Ok(())
}

fn note_of(timeline: &Timeline, metric: &str) -> String {
    timeline
        .notes
        .iter()
        .rev()
        .find(|(m, _)| m == metric)
        .map(|(_, t)| t.clone())
        .unwrap_or_default()
}

/// What carries the instance's system calls to the host kernel, by backend: QEMU for a VM,
/// the Sentry for gVisor, the workload itself otherwise.
fn carrier(kind: BackendKind, instance: &dyn Instance) -> Option<(u32, &'static str)> {
    let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    let argv0 = |p: u32| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .ok()
            .and_then(|c| {
                c.split(|b| *b == 0)
                    .next()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
            })
            .unwrap_or_default()
    };
    let pids = instance.host_pids();
    let find = |pred: &dyn Fn(u32) -> bool| pids.iter().copied().find(|&p| pred(p));
    match kind {
        BackendKind::Vm | BackendKind::VmMinimal | BackendKind::VmClassic | BackendKind::VmUser => {
            find(&|p| comm(p).starts_with("qemu-system")).map(|p| (p, "QEMU"))
        }
        BackendKind::Gvisor => {
            find(&|p| argv0(p).ends_with("runsc-sandbox")).map(|p| (p, "the Sentry"))
        }
        _ => find(&|p| comm(p).trim() == "cvm-guest").map(|p| (p, "the workload")),
    }
}

/// The host-side figures: the carrier's seccomp surface, and a VM's `-sandbox`.
fn host_surface(kind: BackendKind, instance: &dyn Instance) -> Vec<(Metric, f64, String)> {
    let mut out = Vec::new();
    let Some((pid, who)) = carrier(kind, instance) else {
        return out;
    };
    let table = seccomp::syscall_table().count();
    match crate::sys::seccomp::filters(pid as i32) {
        Ok(filters) => {
            let accepted = seccomp::accepted(&filters).len();
            let note = format!(
                "{who} (host pid {pid}): {} seccomp filter(s); {accepted} of the {table} x86-64 \
                 system calls may reach the host kernel",
                filters.len()
            );
            out.push((Metric::AuditHostSyscalls, accepted as f64, note));
        }
        Err(e) => {
            eprintln!("cvm: {kind}: cannot read the seccomp filters of {who} (pid {pid}): {e}")
        }
    }
    if matches!(
        kind,
        BackendKind::Vm | BackendKind::VmMinimal | BackendKind::VmClassic | BackendKind::VmUser
    ) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let sandbox = args
            .iter()
            .position(|a| a == "-sandbox")
            .and_then(|i| args.get(i + 1));
        let on = sandbox.is_some_and(|s| s.starts_with("on"));
        let note = sandbox.map_or("QEMU runs without -sandbox".to_string(), |s| {
            format!("-sandbox {s}")
        });
        out.push((Metric::AuditVmmSandbox, f64::from(u8::from(on)), note));
    }
    out
}

/// What the host saw during the attempts.
#[derive(Debug, Default, Clone, Copy)]
struct Watch {
    forks: u32,
    forks_ok: u32,
    neighbour: u32,
    neighbour_ok: u32,
    /// The most OOM kills the instance's memory cgroup showed (read while it exists: some
    /// runtimes remove it as soon as the instance ends).
    cgroup_ooms: Option<u64>,
}

impl Watch {
    fn host_ok(&self) -> bool {
        self.forks_ok == self.forks && self.forks > 0
    }
    fn serving(&self) -> bool {
        f64::from(self.neighbour_ok) >= NEIGHBOUR_SERVING * f64::from(self.neighbour.max(1))
    }
    fn evidence(&self) -> String {
        format!(
            "the host started {}/{} processes meanwhile and the neighbour answered {}/{} checks",
            self.forks_ok, self.forks, self.neighbour_ok, self.neighbour
        )
    }
}

/// One containment instance, from launch to teardown, and what the host saw meanwhile.
struct Attempts {
    timeline: Timeline,
    watch: Watch,
    /// OOM kills on the host during the instance, and in the instance's own cgroup.
    host_ooms: Option<u64>,
    cgroup_ooms: Option<u64>,
}

impl Attempts {
    fn reported(&self, probe: Probe) -> Option<(f64, String)> {
        let name = probe.metric().name();
        let value = self.timeline.results.iter().find(|(m, _, _)| m == name)?.1;
        Some((value, note_of(&self.timeline, name)))
    }

    /// OOM kills on the host that were not the instance's own.
    fn ooms_outside(&self) -> Option<u64> {
        self.host_ooms
            .map(|h| h.saturating_sub(self.cgroup_ooms.unwrap_or(0)))
    }

    fn oom_evidence(&self) -> String {
        match (self.host_ooms, self.ooms_outside()) {
            (Some(h), Some(0)) => format!(
                "host-wide OOM kills meanwhile: {h}, none outside the instance's own cgroup or kernel"
            ),
            (Some(h), Some(o)) => format!("host-wide OOM kills meanwhile: {h}, {o} outside the instance"),
            _ => "the host's OOM counter could not be read".to_string(),
        }
    }

    /// The final verdict and evidence of `probe`: the instance's own, with the host's checks
    /// where they are part of it; for the attempt during which the whole instance ended, the
    /// host's view alone.
    fn verdict(&self, probe: Probe) -> (f64, String) {
        let (value, note) = self.reported(probe).unwrap_or_else(|| {
            let exit = self
                .timeline
                .exit
                .map_or("unknown".to_string(), |(e, _)| e.to_string());
            (
                1.0,
                format!(
                    "the whole instance ended ({exit}) during this attempt, before it could report"
                ),
            )
        });
        let host_untouched = self.ooms_outside() == Some(0);
        match probe {
            Probe::ForkBomb => {
                let ok = self.watch.host_ok() && self.watch.serving();
                (
                    if ok { value } else { 0.0 },
                    format!("{note}; {}", self.watch.evidence()),
                )
            }
            Probe::Memory => (
                if host_untouched { value } else { 0.0 },
                format!("{note}; {}", self.oom_evidence()),
            ),
            _ => (value, note),
        }
    }
}

/// The containment attempts beside the victim, with the host's own checks meanwhile. An
/// attempt that ends the whole instance (a sandbox that falls over at its pids limit) is judged
/// by the host, and the attempts after it run in a fresh instance (`restart` prepares one).
pub(super) fn contain(
    runner: &mut Runner,
    first: &dyn Prepared,
    restart: Restart,
    victim: &mut Victim,
    path: &str,
    at: (u32, Phase),
) -> Step<()> {
    let mut from = Probe::ALL[0];
    loop {
        let fresh = if from == Probe::ALL[0] {
            None
        } else {
            Some(restart(from)?)
        };
        let prepared = fresh.as_deref().unwrap_or(first);
        let attempts = run_attempts(runner, prepared, victim.addr, path)?;
        victim.check_alive("beside the containment attempts")?;
        let planned = &Probe::ALL[Probe::ALL.iter().position(|p| *p == from).unwrap_or(0)..];
        let mut ended_during = None;
        for &probe in planned {
            let reported = attempts.reported(probe).is_some();
            if !reported && ended_during.is_some() {
                break;
            }
            let (value, note) = attempts.verdict(probe);
            record(runner, at, probe.metric(), value, &note)?;
            if !reported {
                ended_during = Some(probe);
            }
        }
        // Progress is certain: the attempt that ended an instance is never run again.
        match ended_during.and_then(|p| planned.iter().skip_while(|q| **q != p).nth(1)) {
            Some(&p) => from = p,
            None => return Ok(()),
        }
    }
}

/// Launches one containment instance and waits for it, the host watching meanwhile.
fn run_attempts(
    runner: &Runner,
    prepared: &dyn Prepared,
    neighbour: std::net::SocketAddr,
    path: &str,
) -> Step<Attempts> {
    let ooms_before = host::oom_kills();
    let mut instance = launch_role(runner, prepared, ROLE_CONTAIN)?;
    let done = AtomicBool::new(false);
    let cgroup = Mutex::new(None);
    let (ran, watch) = std::thread::scope(|s| {
        let watcher = s.spawn(|| watch(&done, neighbour, path));
        let oom_reader = s.spawn(|| watch_ooms(&done, &cgroup));
        let ran = attempts(runner, instance.as_ref(), &cgroup);
        done.store(true, Ordering::SeqCst);
        let mut watch = watcher.join().unwrap_or_default();
        watch.cgroup_ooms = oom_reader.join().unwrap_or_default();
        (ran, watch)
    });
    let last = instance
        .memory_cgroup()
        .map(|d| crate::backend::cgroup::oom_kills(&d));
    let cgroup_ooms = match (watch.cgroup_ooms, last) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let torn = instance.teardown();
    let host_ooms = host::oom_kills()
        .zip(ooms_before)
        .map(|(a, b)| a.saturating_sub(b));
    let timeline = ran?;
    torn.map_err(|e| {
        StepError::Run(format!(
            "the containment instance's teardown: {:#}",
            anyhow::Error::new(e)
        ))
    })?;
    Ok(Attempts {
        timeline,
        watch,
        host_ooms,
        cgroup_ooms,
    })
}

/// Waits for the attempts to finish (they run to completion); tells the watcher where the
/// instance's memory cgroup is once it runs.
fn attempts(
    runner: &Runner,
    instance: &dyn Instance,
    cgroup: &Mutex<Option<PathBuf>>,
) -> Step<Timeline> {
    let mut timeline = startup::wait_ready(
        instance,
        &Readiness::Marker,
        runner.timeout,
        runner.interrupted,
    )
    .map_err(|e| StepError::Run(format!("the containment attempts: {e}")))?;
    if let Ok(mut dir) = cgroup.lock() {
        *dir = instance.memory_cgroup();
    }
    // An instance killed whole (a sandbox whose cgroup ran out of memory) is an outcome, not a
    // failure: what it reported before is kept.
    let _ = startup::wait_exit(instance, &mut timeline, runner.timeout, runner.interrupted);
    Ok(timeline)
}

/// The host's checks every [`CHECK_PERIOD`] until `done`.
fn watch(done: &AtomicBool, neighbour: std::net::SocketAddr, path: &str) -> Watch {
    let mut w = Watch::default();
    while !done.load(Ordering::SeqCst) {
        w.forks += 1;
        w.forks_ok += u32::from(host::can_fork());
        w.neighbour += 1;
        w.neighbour_ok += u32::from(host::answers(neighbour, path));
        std::thread::sleep(CHECK_PERIOD);
    }
    w
}

/// The most OOM kills the instance's memory cgroup showed, read every [`OOM_PERIOD`] until
/// `done`, on a thread of its own so that a slow neighbour check never delays a read: a runtime
/// that removes the cgroup as soon as its container ends (Docker's `--rm`) leaves only
/// milliseconds between the memory attempt's kill (the last attempt) and the cgroup's removal.
/// Read every 100 ms, Docker's kill was missed in two of three runs and charged to the host.
fn watch_ooms(done: &AtomicBool, cgroup: &Mutex<Option<PathBuf>>) -> Option<u64> {
    let mut most = None::<u64>;
    while !done.load(Ordering::SeqCst) {
        let dir = cgroup.lock().ok().and_then(|d| d.clone());
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            let now = crate::backend::cgroup::oom_kills(&dir);
            most = Some(most.map_or(now, |m| m.max(now)));
        }
        std::thread::sleep(OOM_PERIOD);
    }
    most
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ExitInfo;

    fn attempts(results: &[(Probe, f64)], exit: Option<ExitInfo>) -> Attempts {
        Attempts {
            timeline: Timeline {
                results: results
                    .iter()
                    .map(|(p, v)| (p.metric().name().to_string(), *v, "1".to_string()))
                    .collect(),
                notes: vec![(
                    Probe::Memory.metric().name().into(),
                    "OOM-killed after 250 MiB".into(),
                )],
                exit: exit.map(|e| (e, Duration::ZERO)),
                ..Timeline::default()
            },
            watch: Watch {
                forks: 10,
                forks_ok: 10,
                neighbour: 10,
                neighbour_ok: 10,
                cgroup_ooms: None,
            },
            host_ooms: Some(1),
            cgroup_ooms: Some(1),
        }
    }

    #[test]
    fn memory_is_contained_only_when_the_host_killed_nothing_outside() {
        let a = attempts(&[(Probe::Memory, 1.0)], None);
        let (v, n) = a.verdict(Probe::Memory);
        assert_eq!(v, 1.0);
        assert!(
            n.contains("OOM-killed") && n.contains("none outside"),
            "{n}"
        );
        let outside = Attempts {
            host_ooms: Some(2),
            ..attempts(&[(Probe::Memory, 1.0)], None)
        };
        let (v, n) = outside.verdict(Probe::Memory);
        assert_eq!(v, 0.0);
        assert!(n.contains("1 outside"), "{n}");
    }

    #[test]
    fn a_fork_bomb_that_ends_the_instance_is_judged_by_the_host() {
        let killed = ExitInfo {
            code: Some(2),
            signal: None,
        };
        let a = attempts(&[(Probe::Ptrace, 1.0)], Some(killed));
        let (v, n) = a.verdict(Probe::ForkBomb);
        assert_eq!(v, 1.0);
        assert!(
            n.contains("whole instance ended (exit code 2)") && n.contains("10/10"),
            "{n}"
        );
        let starved = Attempts {
            watch: Watch {
                forks: 10,
                forks_ok: 3,
                ..a.watch
            },
            ..attempts(&[(Probe::ForkBomb, 1.0)], None)
        };
        assert_eq!(starved.verdict(Probe::ForkBomb).0, 0.0);
    }
}
