//! Soak: many mixed launches of the `container`, `runc` and `vm` backends through cvm's library,
//! with faults injected at random from a seeded RNG, auditing the host for leftovers after every
//! launch and watching this process's own memory, descriptors and threads.
//!
//! Faults, per launch (the kinds a backend can have):
//! - `crash`: the workload exits with code 3 before it is ready (`cvm-guest crash`);
//! - `never-ready`: the workload never announces readiness; the launch times out (1 s for
//!   containers, 5 s for VMs, which must boot first);
//! - `kill-workload` (containers, with a private network: a veth pair to remove): the workload
//!   is SIGKILLed once ready, as the OOM killer would;
//! - `kill-qemu` (vm): QEMU is SIGKILLed once the guest is ready.
//!
//! Each launch must end as its fault says (ready, an early exit, a timeout, an observed death)
//! and be torn down without error; then nothing carrying the soak's token may be left: process,
//! mount, cgroup, network namespace, link, temp dir, OCI container or QEMU (`cvm::audit`).
//! cvm's own resident memory, descriptors and threads are sampled once everything is prepared
//! and warm (after the first tenth of the launches) and at the end: growth beyond a small slack
//! means something per launch is kept.
//!
//! The first launches cover every (backend, fault) pair once, so even a short soak exercises
//! them all; the rest are drawn at random. `scripts/soak.sh` runs the long soak; the CI test
//! (tests/soak.rs) runs a short one through [`run`].
//!
//! ```text
//! cargo run --example soak -- [--launches 200] [--seed N] [--vm-share 0.25] [--fault-rate 0.5]
//!                             [--accel tcg|kvm|auto] [--backends container,runc,vm]
//! ```
//! Needs root, cgroups, runc, QEMU and a guest kernel (as `cvm compare` does); exits 0 when every
//! launch ended as expected, nothing leaked and memory did not grow, 1 otherwise, 2 on bad input.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cvm::audit;
use cvm::backend::vm::accel::AccelChoice;
use cvm::backend::{self, HostOptions, Instance, LaunchContext, Prepared};
use cvm::image::Image;
use cvm::measure::startup::{self, StartupError};
use cvm::scenario::{self, BackendKind, Readiness, Scenario};

/// What a soak does.
#[derive(Debug, Clone)]
pub struct Config {
    pub launches: u32,
    pub seed: u64,
    /// The share of launches that boot a VM (after the covering ones).
    pub vm_share: f64,
    /// The share of launches that get a fault (after the covering ones).
    pub fault_rate: f64,
    pub backends: Vec<BackendKind>,
    pub accel: AccelChoice,
    /// Resident-memory growth from the warm point to the end that still counts as noise.
    pub rss_slack_bytes: u64,
    /// Prints a line per launch.
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            launches: 200,
            seed: 1,
            vm_share: 0.25,
            fault_rate: 0.5,
            backends: vec![BackendKind::Container, BackendKind::Runc, BackendKind::Vm],
            accel: AccelChoice::Tcg,
            rss_slack_bytes: 4 << 20,
            verbose: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    None,
    Crash,
    NeverReady,
    KillWorkload,
    KillQemu,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Crash => "crash",
            Fault::NeverReady => "never-ready",
            Fault::KillWorkload => "kill-workload",
            Fault::KillQemu => "kill-qemu",
        }
    }

    /// The faults `kind` can be given, `None` first.
    fn for_backend(kind: BackendKind) -> &'static [Fault] {
        match kind {
            BackendKind::Vm | BackendKind::VmClassic => &[
                Fault::None,
                Fault::Crash,
                Fault::NeverReady,
                Fault::KillQemu,
            ],
            _ => &[
                Fault::None,
                Fault::Crash,
                Fault::NeverReady,
                Fault::KillWorkload,
            ],
        }
    }

    /// The workload that produces this fault (kills need a live, ready one).
    fn applet(self) -> &'static str {
        match self {
            Fault::None => "hello",
            Fault::Crash => "crash",
            Fault::NeverReady => "never-ready",
            Fault::KillWorkload | Fault::KillQemu => "idle",
        }
    }
}

/// This process's own footprint at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfUsage {
    pub rss_bytes: u64,
    pub fds: usize,
    pub threads: u64,
}

impl SelfUsage {
    pub fn now() -> SelfUsage {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        SelfUsage {
            rss_bytes: field("VmRSS:") * 1024,
            fds: std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count),
            threads: field("Threads:"),
        }
    }
}

impl fmt::Display for SelfUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB, {} fds, {} threads",
            self.rss_bytes as f64 / (1024.0 * 1024.0),
            self.fds,
            self.threads
        )
    }
}

/// The figures of a soak.
#[derive(Debug, Default)]
pub struct Report {
    pub token: String,
    pub launches: u32,
    pub per_backend: BTreeMap<String, u32>,
    pub faults: BTreeMap<&'static str, u32>,
    /// Launches that ended as their fault said, with a clean teardown.
    pub completed: u32,
    /// Launches without a fault that got ready.
    pub ready: u32,
    /// What went other than expected, one line each.
    pub unexpected: Vec<String>,
    /// Resources left behind (audited after every launch and at the end), deduplicated.
    pub leaked: Vec<String>,
    pub usage_start: SelfUsage,
    pub usage_warm: SelfUsage,
    pub usage_end: SelfUsage,
    pub rss_slack_bytes: u64,
    pub elapsed: Duration,
}

impl Report {
    /// Growth of resident memory from the warm point to the end, in bytes (negative: shrank).
    pub fn rss_growth(&self) -> i64 {
        self.usage_end.rss_bytes as i64 - self.usage_warm.rss_bytes as i64
    }

    /// Why the soak failed, if it did.
    pub fn problems(&self) -> Vec<String> {
        let mut p: Vec<String> = self.unexpected.clone();
        if !self.leaked.is_empty() {
            p.push(format!("{} resources leaked", self.leaked.len()));
        }
        if self.rss_growth() > self.rss_slack_bytes as i64 {
            p.push(format!(
                "cvm's RSS grew by {} KiB (more than the {} KiB slack)",
                self.rss_growth() / 1024,
                self.rss_slack_bytes / 1024
            ));
        }
        if self.usage_end.fds > self.usage_warm.fds {
            p.push(format!(
                "descriptors grew from {} to {}",
                self.usage_warm.fds, self.usage_end.fds
            ));
        }
        if self.usage_end.threads > self.usage_warm.threads + 2 {
            p.push(format!(
                "threads grew from {} to {}",
                self.usage_warm.threads, self.usage_end.threads
            ));
        }
        p
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "soak {}: {:.0} s",
            self.token,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "  launches:          {}", self.launches)?;
        for (b, n) in &self.per_backend {
            writeln!(f, "    {b:<16} {n}")?;
        }
        let injected: u32 = self
            .faults
            .iter()
            .filter(|(k, _)| **k != "none")
            .map(|(_, n)| n)
            .sum();
        writeln!(f, "  faults injected:   {injected}")?;
        for (k, n) in &self.faults {
            writeln!(f, "    {k:<16} {n}")?;
        }
        writeln!(
            f,
            "  runs completed:    {} of {} (ended as expected, torn down cleanly; {} fault-free runs got ready)",
            self.completed, self.launches, self.ready
        )?;
        writeln!(f, "  unexpected:        {}", self.unexpected.len())?;
        for u in &self.unexpected {
            writeln!(f, "    {u}")?;
        }
        writeln!(f, "  leaked resources:  {}", self.leaked.len())?;
        for l in &self.leaked {
            writeln!(f, "    {l}")?;
        }
        writeln!(f, "  cvm at start:      {}", self.usage_start)?;
        writeln!(f, "  cvm warm:          {}", self.usage_warm)?;
        writeln!(f, "  cvm at end:        {}", self.usage_end)?;
        write!(
            f,
            "  RSS growth:        {:+} KiB (warm → end; slack {} KiB)",
            self.rss_growth() / 1024,
            self.rss_slack_bytes / 1024
        )
    }
}

/// The scenario of one (backend, fault) pair. Container kills get a private network, so veth
/// pairs are torn down under fault too (a VM's user-mode network has no host objects).
fn scenario(kind: BackendKind, fault: Fault) -> Result<Scenario, String> {
    let applet = fault.applet();
    let timeout_s = timeout_for(kind, fault).as_secs_f64();
    let network = if fault == Fault::KillWorkload {
        "private"
    } else {
        "none"
    };
    let text = format!(
        "name = \"soak-{applet}\"\ndescription = \"soak\"\ntimeout_s = {timeout_s}\n\
         [workload]\napplet = \"{applet}\"\n[readiness]\nkind = \"marker\"\n\
         [resources]\nvcpus = 1\nmemory_mib = 128\nnetwork = \"{network}\"\n"
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("soak.toml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    scenario::load(path.to_str().unwrap_or_default()).map_err(|e| e.to_string())
}

fn timeout_for(kind: BackendKind, fault: Fault) -> Duration {
    let vm = matches!(kind, BackendKind::Vm | BackendKind::VmClassic);
    match (fault, vm) {
        (Fault::NeverReady, false) => Duration::from_secs(1),
        (Fault::NeverReady, true) => Duration::from_secs(5),
        (_, false) => Duration::from_secs(20),
        (_, true) => Duration::from_secs(60),
    }
}

/// The host PIDs to SIGKILL for a kill fault: QEMU, or the container's workload (a process of
/// the image's `cvm-guest` that is not PID 1 of its namespace).
fn kill_targets(instance: &dyn Instance, fault: Fault) -> Vec<u32> {
    let pids = instance.host_pids();
    if fault == Fault::KillQemu {
        return pids;
    }
    pids.into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            let ns_pid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|v| v.split_whitespace().last().map(str::to_string))
                });
            first.ends_with(b"cvm-guest") && ns_pid.as_deref().is_some_and(|p| p != "1")
        })
        .collect()
}

/// One launch with its fault; `Err` says what went other than expected.
fn launch_once(
    prepared: &dyn Prepared,
    kind: BackendKind,
    fault: Fault,
    ctx: &LaunchContext,
    interrupted: &AtomicBool,
) -> Result<bool, String> {
    let timeout = timeout_for(kind, fault);
    let mut instance = prepared
        .launch(ctx)
        .map_err(|e| format!("launch failed: {:#}", anyhow::Error::new(e)))?;
    let outcome = startup::wait_ready(instance.as_ref(), &Readiness::Marker, timeout, interrupted);
    let mut ready = false;
    let verdict = match (fault, outcome) {
        (_, Err(StartupError::Interrupted)) => Err("interrupted".to_string()),
        (Fault::None, Ok(_)) => {
            ready = true;
            Ok(())
        }
        (Fault::Crash, Err(StartupError::ExitedEarly { .. } | StartupError::Reported { .. })) => {
            Ok(())
        }
        (Fault::NeverReady, Err(StartupError::Timeout { .. })) => Ok(()),
        (Fault::KillWorkload | Fault::KillQemu, Ok(mut timeline)) => {
            let targets = kill_targets(instance.as_ref(), fault);
            if targets.len() != 1 {
                Err(format!("expected one process to kill, found {targets:?}"))
            } else {
                let pid = nix::unistd::Pid::from_raw(targets[0] as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                match startup::wait_exit(instance.as_ref(), &mut timeline, timeout, interrupted) {
                    Ok(exit) if !exit.success() => Ok(()),
                    Ok(exit) => Err(format!("killed, yet it ended with {exit}")),
                    Err(e) => Err(format!("the kill was not observed: {e}")),
                }
            }
        }
        (_, Ok(_)) => Err("got ready".to_string()),
        (_, Err(e)) => Err(format!("unexpected outcome: {e}")),
    };
    let teardown = instance.teardown();
    drop(instance);
    verdict?;
    teardown.map_err(|e| format!("teardown failed: {:#}", anyhow::Error::new(e)))?;
    Ok(ready)
}

/// Runs a soak. `Err` only for what keeps it from starting (a backend that cannot prepare).
pub fn run(config: &Config, interrupted: &AtomicBool) -> Result<Report, String> {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let token = format!("k{:04x}", rng.u16(..));
    let opts = HostOptions {
        accel: Some(config.accel),
        ..Default::default()
    };
    let usage_start = SelfUsage::now();

    // Everything prepared up front: images, bundles' templates, initramfs, the accelerator.
    let mut prepared: BTreeMap<(BackendKind, Fault), Box<dyn Prepared>> = BTreeMap::new();
    for &kind in &config.backends {
        let backend = backend::create(kind, &opts);
        if let backend::Availability::Unavailable { reason, hint } = backend.availability() {
            return Err(format!("backend {kind} is unavailable: {reason} ({hint})"));
        }
        for &fault in Fault::for_backend(kind) {
            let s = scenario(kind, fault)?;
            let image = Image::build(&s).map_err(|e| format!("cannot build the image: {e}"))?;
            let p = backend
                .prepare(&s, &image)
                .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
            prepared.insert((kind, fault), p);
        }
    }

    // The schedule: every pair once, then random draws.
    let pairs: Vec<(BackendKind, Fault)> = config
        .backends
        .iter()
        .flat_map(|&k| Fault::for_backend(k).iter().map(move |&f| (k, f)))
        .collect();
    let vms: Vec<BackendKind> = config
        .backends
        .iter()
        .copied()
        .filter(|k| matches!(k, BackendKind::Vm | BackendKind::VmClassic))
        .collect();
    let containers: Vec<BackendKind> = config
        .backends
        .iter()
        .copied()
        .filter(|k| !vms.contains(k))
        .collect();
    let schedule: Vec<(BackendKind, Fault)> = (0..config.launches as usize)
        .map(|i| {
            if let Some(&pair) = pairs.get(i) {
                return pair;
            }
            let pool = if !vms.is_empty() && (containers.is_empty() || rng.f64() < config.vm_share)
            {
                &vms
            } else {
                &containers
            };
            let kind = pool[rng.usize(..pool.len())];
            let faults = Fault::for_backend(kind);
            let fault = if rng.f64() < config.fault_rate {
                faults[1 + rng.usize(..faults.len() - 1)]
            } else {
                Fault::None
            };
            (kind, fault)
        })
        .collect();

    let before = audit::snapshot();
    // Resources of this soak: named with its token, or (OCI bundles, probes) with its PID.
    let pid_tag = format!("-{}-", std::process::id());
    let ours = |s: &audit::Snapshot| audit::Snapshot {
        resources: s
            .resources
            .iter()
            .filter(|r| r.name.contains(&token) || r.name.contains(&pid_tag))
            .cloned()
            .collect(),
    };
    let mut report = Report {
        token: token.clone(),
        usage_start,
        rss_slack_bytes: config.rss_slack_bytes,
        ..Report::default()
    };
    let mut seen_leaks = std::collections::BTreeSet::new();
    let warm_at = (config.launches / 10)
        .max(pairs.len() as u32)
        .min(config.launches);
    if warm_at == 0 {
        report.usage_warm = SelfUsage::now();
    }
    for (i, &(kind, fault)) in schedule.iter().enumerate() {
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            report.unexpected.push("interrupted".into());
            break;
        }
        let i = i as u32;
        report.launches += 1;
        *report.per_backend.entry(kind.to_string()).or_default() += 1;
        *report.faults.entry(fault.name()).or_default() += 1;
        let ctx = LaunchContext {
            instance: i,
            run_id: token.clone(),
        };
        let t0 = Instant::now();
        let result = launch_once(
            prepared[&(kind, fault)].as_ref(),
            kind,
            fault,
            &ctx,
            interrupted,
        );
        let leaked: Vec<audit::Resource> = ours(&audit::snapshot())
            .leaked_since(&before)
            .into_iter()
            .filter(|r| !seen_leaks.contains(r))
            .collect();
        let ok = result.is_ok() && leaked.is_empty();
        match result {
            Ok(ready) => {
                report.completed += 1;
                report.ready += u32::from(ready);
            }
            Err(e) => report
                .unexpected
                .push(format!("launch {i} ({kind}, {}): {e}", fault.name())),
        }
        for r in leaked {
            report
                .leaked
                .push(format!("after launch {i} ({kind}, {}): {r}", fault.name()));
            seen_leaks.insert(r);
        }
        if config.verbose {
            eprintln!(
                "soak: {:>4} {:<9} {:<13} {:>6.2} s {}  {}",
                i + 1,
                kind.to_string(),
                fault.name(),
                t0.elapsed().as_secs_f64(),
                if ok { "ok" } else { "PROBLEM" },
                SelfUsage::now()
            );
        }
        if i + 1 == warm_at {
            report.usage_warm = SelfUsage::now();
        }
    }
    for r in ours(&audit::snapshot()).leaked_since(&before) {
        if !seen_leaks.contains(&r) {
            report.leaked.push(format!("at the end: {r}"));
        }
    }
    drop(prepared);
    report.usage_end = SelfUsage::now();
    report.elapsed = started.elapsed();
    Ok(report)
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut c = Config::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let bad = |v: &str| format!("bad value for {flag}: {v}");
        match flag.as_str() {
            "--launches" => c.launches = value()?.parse().map_err(|_| bad(flag))?,
            "--seed" => c.seed = value()?.parse().map_err(|_| bad(flag))?,
            "--vm-share" => c.vm_share = value()?.parse().map_err(|_| bad(flag))?,
            "--fault-rate" => c.fault_rate = value()?.parse().map_err(|_| bad(flag))?,
            "--rss-slack-mib" => {
                c.rss_slack_bytes = value()?.parse::<u64>().map_err(|_| bad(flag))? << 20
            }
            "--accel" => {
                c.accel = match value()?.as_str() {
                    "tcg" => AccelChoice::Tcg,
                    "kvm" => AccelChoice::Kvm,
                    "auto" => AccelChoice::Auto,
                    v => return Err(bad(v)),
                }
            }
            "--backends" => {
                c.backends = value()?
                    .split(',')
                    .map(|b| b.trim().parse::<BackendKind>().map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--quiet" => c.verbose = false,
            "--verbose" => c.verbose = true,
            "-h" | "--help" => {
                return Err(
                    "usage: soak [--launches N] [--seed N] [--vm-share F] [--fault-rate F] \
                     [--accel tcg|kvm|auto] [--backends LIST] [--rss-slack-mib M] [--verbose]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(c)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let interrupted = std::sync::Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, std::sync::Arc::clone(&interrupted));
    }
    eprintln!(
        "soak: {} launches of {:?}, seed {}, vm share {}, fault rate {}",
        config.launches, config.backends, config.seed, config.vm_share, config.fault_rate
    );
    match run(&config, &interrupted) {
        Ok(report) => {
            println!("{report}");
            let problems = report.problems();
            if problems.is_empty() {
                println!("PASS");
                std::process::ExitCode::SUCCESS
            } else {
                println!("FAIL: {}", problems.join("; "));
                std::process::ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
