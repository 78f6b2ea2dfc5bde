//! `cvm compare`: the pipeline end to end — scenario → image → backends → runs → samples →
//! summary → report — for every requested backend in turn.
//!
//! Samples are written and flushed as they are measured, `run.json` is rewritten at each state
//! change, and every instance is torn down before cvm exits (also on SIGINT/SIGTERM, which set a
//! flag the waits poll), so an interrupted run loses nothing it measured and leaves nothing
//! behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::{self, Availability, Backend, HostOptions, Instance, LaunchContext, Prepared};
use crate::cli::CompareArgs;
use crate::exit::{self, Failure};
use crate::image::Image;
use crate::measure::{memory, startup};
use crate::report;
use crate::results::{self, BackendInfo, Environment, Phase, RunMeta, SampleRow, SampleWriter};
use crate::scenario::{self, BackendKind, Readiness, Scenario};

/// A backend is given up after this many consecutive failed runs: the cause is almost never
/// transient, and a workload that never gets ready would otherwise cost runs × timeout.
const MAX_CONSECUTIVE_FAILURES: u32 = 3;

pub fn compare(args: CompareArgs) -> Result<u8, Failure> {
    let scenario = scenario::load(&args.scenario).map_err(Failure::usage)?;
    let kinds = resolve_backends(&args, &scenario).map_err(Failure::usage)?;
    let runs = args.runs.unwrap_or(*scenario.runs.get_ref());
    let warmup = args.warmup.unwrap_or(scenario.warmup);
    let timeout = Duration::from_secs_f64(args.timeout.unwrap_or(*scenario.timeout_s.get_ref()));

    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .context("cannot install signal handlers")?;
    }

    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let run_id = format!(
        "{}-{}",
        started.replace([':', '-'], "").trim_end_matches('Z'),
        scenario.name
    );
    let out_dir = match &args.output {
        Some(dir) => dir.clone(),
        None => PathBuf::from("reports").join(&run_id),
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create the results directory {}", out_dir.display()))
        .map_err(Failure::run)?;
    if args.output.is_none() {
        point_latest_at(&out_dir);
    }

    eprintln!("cvm: scenario {} — {}", scenario.name, scenario.description);
    let environment = Environment::collect();
    let image = Image::build(&scenario).context("cannot build the image")?;

    let opts = HostOptions {
        accel: Some(args.accel),
        kernel: args.kernel.clone(),
    };
    let backends: Vec<Box<dyn Backend>> =
        kinds.iter().map(|&k| backend::create(k, &opts)).collect();
    let mut infos: Vec<BackendInfo> = backends
        .iter()
        .map(|b| {
            let availability = b.availability();
            if let Availability::Unavailable { reason, hint } = &availability {
                eprintln!(
                    "cvm: backend {} is unavailable: {reason} ({hint})",
                    b.kind()
                );
            }
            BackendInfo {
                backend: b.kind().to_string(),
                stack: b.stack(),
                availability,
                error: None,
                config: Default::default(),
            }
        })
        .collect();

    let mut meta = RunMeta {
        run_id: run_id.clone(),
        started,
        finished: None,
        status: "running".into(),
        scenario: (&scenario).into(),
        runs,
        warmup,
        timeout_s: timeout.as_secs_f64(),
        environment: environment.clone(),
        backends: infos.clone(),
        load: None,
    };
    let meta_path = out_dir.join(results::META_FILE);
    meta.write(&meta_path)?;
    let mut writer = SampleWriter::create(&out_dir.join(results::SAMPLES_FILE))?;

    let available = infos
        .iter()
        .filter(|i| i.availability == Availability::Available)
        .count() as u64;
    let progress = progress_bar(available * u64::from(runs + warmup), args.no_progress);
    let ctx_base = short_token();
    let mut any_failed = false;

    for (b, info) in backends.iter().zip(infos.iter_mut()) {
        if info.availability != Availability::Available || interrupted.load(Ordering::SeqCst) {
            continue;
        }
        progress.set_message(format!("{}: preparing", b.kind()));
        let prepared = match b.prepare(&scenario, &image) {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("{:#}", anyhow::Error::new(e));
                progress
                    .suspend(|| eprintln!("cvm: backend {} failed to prepare: {msg}", b.kind()));
                info.error = Some(msg);
                any_failed = true;
                progress.inc(u64::from(runs + warmup));
                continue;
            }
        };
        info.config = prepared.config();
        meta.backends = infos_snapshot(&meta.backends, info);
        meta.write(&meta_path)?;
        let template = row_template(&run_id, &scenario, b.kind(), &environment, info);
        let mut runner = Runner {
            scenario: &scenario,
            prepared: prepared.as_ref(),
            kind: b.kind(),
            timeout,
            interrupted: &interrupted,
            writer: &mut writer,
            template,
            ctx: LaunchContext {
                instance: 0,
                run_id: ctx_base.clone(),
            },
            floor_program: image
                .rootfs()
                .join(crate::image::GUEST_PATH.trim_start_matches('/')),
        };
        let mut consecutive = 0;
        for i in 0..warmup + runs {
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            let phase = if i < warmup {
                Phase::Warmup
            } else {
                Phase::Measure
            };
            let iteration = if i < warmup { i } else { i - warmup };
            progress.set_message(format!(
                "{}: {} {}/{}",
                b.kind(),
                phase_word(phase),
                iteration + 1,
                if i < warmup { warmup } else { runs }
            ));
            match runner.run_once(iteration, phase)? {
                Ok(()) => consecutive = 0,
                Err(msg) => {
                    any_failed = true;
                    consecutive += 1;
                    progress.suspend(|| eprintln!("cvm: {} run {} failed: {msg}", b.kind(), i + 1));
                    if consecutive >= MAX_CONSECUTIVE_FAILURES {
                        let note = format!(
                            "gave up after {consecutive} consecutive failed runs; last: {msg}"
                        );
                        progress.suspend(|| eprintln!("cvm: backend {}: {note}", b.kind()));
                        info.error = Some(note);
                        progress.inc(u64::from(warmup + runs - i - 1));
                        break;
                    }
                }
            }
            progress.inc(1);
        }
        meta.backends = infos_snapshot(&meta.backends, info);
        meta.write(&meta_path)?;
    }
    progress.finish_and_clear();

    let was_interrupted = interrupted.load(Ordering::SeqCst);
    meta.backends = infos;
    meta.status = if was_interrupted {
        "interrupted"
    } else if any_failed {
        "failed"
    } else {
        "done"
    }
    .into();
    meta.finished =
        Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
    meta.write(&meta_path)?;
    drop(writer);

    let summary = report::render_dir(&out_dir)?;
    println!("{}", report::terminal::table(&summary));
    if let Some(f) = &args.export_json {
        summary.write(f)?;
    }
    if let Some(f) = &args.export_csv {
        std::fs::copy(out_dir.join(results::SAMPLES_FILE), f)
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    if let Some(f) = &args.export_markdown {
        std::fs::write(f, report::markdown::summary(&summary))
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    eprintln!("cvm: results in {}", out_dir.display());
    Ok(if was_interrupted {
        eprintln!("cvm: interrupted; the samples measured so far are kept");
        exit::INTERRUPTED
    } else if any_failed {
        exit::RUN_FAILED
    } else {
        exit::OK
    })
}

fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Warmup => "warm-up",
        Phase::Measure => "run",
    }
}

fn infos_snapshot(old: &[BackendInfo], updated: &BackendInfo) -> Vec<BackendInfo> {
    old.iter()
        .map(|i| {
            if i.backend == updated.backend {
                updated.clone()
            } else {
                i.clone()
            }
        })
        .collect()
}

fn resolve_backends(
    args: &CompareArgs,
    scenario: &Scenario,
) -> Result<Vec<BackendKind>, anyhow::Error> {
    let names: Vec<String> = match &args.backends {
        Some(list) => list.clone(),
        None => scenario
            .backends
            .get_ref()
            .iter()
            .map(|s| s.get_ref().clone())
            .collect(),
    };
    let mut kinds = Vec::new();
    for name in names.iter().filter(|n| !n.trim().is_empty()) {
        let kind: BackendKind = name.parse().map_err(anyhow::Error::msg)?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        anyhow::bail!(
            "no backends given; valid backends: {}",
            BackendKind::valid_names()
        );
    }
    Ok(kinds)
}

/// `reports/latest` → the newest run directory (a relative symlink, replaced atomically).
fn point_latest_at(dir: &Path) {
    let Some(parent) = dir.parent() else { return };
    let Some(name) = dir.file_name() else { return };
    let tmp = parent.join(".latest.tmp");
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(name, &tmp).is_ok() {
        let _ = std::fs::rename(&tmp, parent.join("latest"));
    }
}

/// Distinguishes this cvm process's resource names (cgroups, netns, links) from any other's.
/// Short, because Linux interface names have 15 characters.
fn short_token() -> String {
    format!(
        "{:04x}{:02x}",
        std::process::id() & 0xffff,
        fastrand::u8(..)
    )
}

fn progress_bar(total: u64, hidden: bool) -> ProgressBar {
    // indicatif hides itself when stderr is not a terminal.
    let target = if hidden {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn row_template(
    run_id: &str,
    s: &Scenario,
    kind: BackendKind,
    env: &Environment,
    info: &BackendInfo,
) -> SampleRow {
    SampleRow {
        run_id: run_id.to_string(),
        scenario: s.name.clone(),
        backend: kind.to_string(),
        iteration: 0,
        phase: Phase::Measure,
        metric: String::new(),
        value: 0.0,
        unit: String::new(),
        host: env.host.clone(),
        kernel: env.kernel.clone(),
        cpu_model: env.cpu_model.clone(),
        ncpu: env.ncpu,
        mem_total: env.mem_total,
        accel: info.config.get("accel").cloned().unwrap_or_default(),
        qemu_version: env
            .tools
            .get("qemu")
            .map(|v| crate::measure::host::version_number(v))
            .unwrap_or_default(),
        cvm_version: env.cvm_version.clone(),
        git_sha: env.git_sha.clone(),
        config: info
            .config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";"),
        note: String::new(),
    }
}

/// Runs one backend's iterations and writes their samples.
struct Runner<'a> {
    scenario: &'a Scenario,
    prepared: &'a dyn Prepared,
    kind: BackendKind,
    timeout: Duration,
    interrupted: &'a AtomicBool,
    writer: &'a mut SampleWriter,
    template: SampleRow,
    ctx: LaunchContext,
    floor_program: PathBuf,
}

impl Runner<'_> {
    fn sample(
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
        row.note = note.to_string();
        self.writer
            .write(&row)
            .map_err(|e| Failure::run(anyhow::Error::new(e)))
    }

    /// One launch, measured and torn down. The outer `Result` is a failure to record (fatal);
    /// the inner one is this run's own failure, already recorded as a `run_failed` sample.
    fn run_once(&mut self, iteration: u32, phase: Phase) -> Result<Result<(), String>, Failure> {
        if self.kind == BackendKind::Native && self.measures_floor() {
            // Interleaved with the native runs, so drift on the host affects both alike.
            if let Ok(d) = backend::native::fork_exec_floor(&self.floor_program, self.timeout) {
                self.sample(iteration, phase, "launch_floor", d.as_secs_f64(), "s", "")?;
            }
        }
        let outcome = self.measure_instance(iteration, phase)?;
        if let Err(msg) = &outcome {
            self.sample(iteration, phase, results::RUN_FAILED, 1.0, "count", msg)?;
        }
        Ok(outcome)
    }

    /// The launch floor is comparable only for an applet that announces readiness by marker.
    fn measures_floor(&self) -> bool {
        self.scenario.readiness == Readiness::Marker
            && self
                .scenario
                .workload
                .applet
                .as_ref()
                .is_some_and(|a| a.get_ref() == "hello")
    }

    fn measure_instance(
        &mut self,
        iteration: u32,
        phase: Phase,
    ) -> Result<Result<(), String>, Failure> {
        let mut instance: Box<dyn Instance> = match self.prepared.launch(&self.ctx) {
            Ok(i) => i,
            Err(e) => return Ok(Err(format!("{:#}", anyhow::Error::new(e)))),
        };
        let outcome = self.observe(instance.as_ref(), iteration, phase);
        let t0 = Instant::now();
        let teardown = instance.teardown();
        let teardown_latency = t0.elapsed();
        drop(instance);
        let outcome = outcome?;
        if let Err(e) = teardown {
            return Ok(Err(format!("{:#}", anyhow::Error::new(e))));
        }
        if outcome.is_ok() {
            self.sample(
                iteration,
                phase,
                "teardown_latency",
                teardown_latency.as_secs_f64(),
                "s",
                "",
            )?;
        }
        Ok(outcome)
    }

    fn observe(
        &mut self,
        instance: &dyn Instance,
        iteration: u32,
        phase: Phase,
    ) -> Result<Result<(), String>, Failure> {
        let mut timeline = match startup::wait_ready(
            instance,
            &self.scenario.readiness,
            self.timeout,
            self.interrupted,
        ) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let ready = timeline.ready_latency().unwrap_or_default();
        self.sample(
            iteration,
            phase,
            "ready_latency",
            ready.as_secs_f64(),
            "s",
            "",
        )?;
        for (name, d) in timeline.phase_durations() {
            self.sample(
                iteration,
                phase,
                &format!("phase.{name}"),
                d.as_secs_f64(),
                "s",
                "",
            )?;
        }
        if self.scenario.workload.runs_to_completion() {
            match startup::wait_exit(instance, &mut timeline, self.timeout, self.interrupted) {
                Ok(exit) if exit.success() => {}
                Ok(exit) => return Ok(Err(format!("the workload ended with {exit}"))),
                Err(e) => return Ok(Err(e.to_string())),
            }
        } else {
            let pids = instance.host_pids();
            let pss = memory::pss_total(&pids);
            if pss > 0 {
                self.sample(iteration, phase, "memory_pss", pss as f64, "B", "")?;
            }
            if let Some(dir) = instance.memory_cgroup() {
                if let Some(bytes) = read_cgroup_memory(&dir) {
                    self.sample(iteration, phase, "memory_cgroup", bytes as f64, "B", "")?;
                }
            }
            startup::drain(instance, &mut timeline);
        }
        for (metric, value, unit) in timeline.results.clone() {
            if metric != "http_port" {
                self.sample(iteration, phase, &metric, value, &unit, "")?;
            }
        }
        Ok(Ok(()))
    }
}

fn read_cgroup_memory(dir: &Path) -> Option<u64> {
    ["memory.current", "memory.usage_in_bytes"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .and_then(|t| t.trim().parse().ok())
}
