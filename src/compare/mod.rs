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
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::vm::KernelChoice;
use crate::backend::{self, Availability, Backend, HostOptions, LaunchContext};
use crate::cli::{CompareArgs, RunOrder};
use crate::exit::{self, Failure};
use crate::image::Image;
use crate::measure::disk::DISK_SHARED_KEY;
use crate::report;
use crate::results::{self, BackendInfo, Environment, Phase, RunMeta, SampleRow, SampleWriter};
use crate::scenario::{self, BackendKind, Scenario};

mod density;
mod isolation;
mod order;
mod runner;

use order::{run_interleaved, run_iterations, BackendEnd, Lane, Plan, Shared};

pub fn compare(args: CompareArgs) -> Result<u8, Failure> {
    let scenario = scenario::load(&args.scenario).map_err(Failure::usage)?;
    let docker = args.docker.options().map_err(Failure::usage)?;
    let kernel = kernel_choice(&args, &scenario);
    let kinds = resolve_backends(&args, &scenario, &kernel).map_err(Failure::usage)?;
    check_kernel(&kernel, &kinds).map_err(Failure::usage)?;
    // A baseline that cannot be compared is found before anything is measured.
    if let Some(base) = &args.baseline {
        check_baseline(base, &scenario.name).map_err(Failure::usage)?;
    }
    let runs = args.runs.unwrap_or(*scenario.runs.get_ref());
    let warmup = args.warmup.unwrap_or(scenario.warmup);
    let timeout = Duration::from_secs_f64(args.timeout.unwrap_or(*scenario.timeout_s.get_ref()));

    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
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
    // Checked before anything is measured: a run whose results cannot be written is bad input.
    std::fs::create_dir_all(&out_dir)
        .and_then(|()| tempfile_probe(&out_dir))
        .with_context(|| {
            format!(
                "cannot write to the results directory {} (choose a writable --output)",
                out_dir.display()
            )
        })
        .map_err(Failure::usage)?;
    if args.output.is_none() {
        point_latest_at(&out_dir);
    }

    // Refused before anything is built: an io run measuring memory instead of a disk (or the
    // reverse) would be mislabelled.
    let io_config = backend::io_dir::IoStore::for_scenario(&scenario)
        .map_err(|e| Failure::usage(anyhow::Error::new(e)))?
        .map(|store| store.config())
        .unwrap_or_default();

    eprintln!("cvm: scenario {} — {}", scenario.name, scenario.description);
    let environment = Environment::collect();
    // Where the instance and the load client run (disjoint CPUs), recorded with the load.
    let placement = backend::placement::for_scenario(&scenario);
    let (client_cpus, placement_note) = match &placement {
        Ok(p) => {
            let note = format!(
                "instance on CPU(s) {} (its cgroup's cpuset: every process, QEMU's threads \
                 included), load client on CPU(s) {} (with cvm's own work: launch, readiness \
                 probe, teardown)",
                backend::placement::cpu_list(&p.instance),
                backend::placement::cpu_list(&p.client)
            );
            (p.client.clone(), note)
        }
        Err(why) => (crate::load::http::default_client_cpus(), why.to_string()),
    };
    let image = Image::build(&scenario).context("cannot build the image")?;

    let opts = HostOptions {
        accel: Some(args.accel),
        kernel,
        docker,
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
        schema_version: results::SCHEMA_VERSION,
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
        load: scenario
            .load
            .as_ref()
            .map(|l| crate::load::http::describe(l, &client_cpus, &placement_note)),
        order: Some(args.order.as_str().to_string()),
        seed: (args.order == RunOrder::Interleaved).then_some(seed),
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

    // Every backend is prepared first (the slow, cacheable work), so that the measured runs of
    // all backends can be interleaved.
    let mut lanes: Vec<Lane> = Vec::new();
    for (index, (b, info)) in backends.iter().zip(infos.iter_mut()).enumerate() {
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
        let footprint = crate::measure::disk::footprint(&prepared.disk_layers());
        info.config = prepared.config();
        if !footprint.per_layer.is_empty() {
            info.config
                .insert(DISK_SHARED_KEY.into(), footprint.shared_summary());
        }
        info.config.extend(io_config.clone());
        info.config
            .extend(isolation::config_facts(b.kind(), &scenario));
        meta.backends = infos_snapshot(&meta.backends, info);
        meta.write(&meta_path)?;
        lanes.push(Lane {
            index,
            kind: b.kind(),
            template: row_template(&run_id, &scenario, b.kind(), &environment, info),
            prepared,
            idle_pss: Vec::new(),
            consecutive: 0,
            first_launch: image.fresh(),
            footprint,
            end: BackendEnd::AllMeasured,
        });
    }
    let shared = Shared {
        scenario: &scenario,
        timeout,
        interrupted: &interrupted,
        ctx: LaunchContext {
            instance: 0,
            run_id: ctx_base.clone(),
        },
        floor_program: image
            .rootfs()
            .join(crate::image::GUEST_PATH.trim_start_matches('/')),
        client_cpus: client_cpus.clone(),
    };
    for lane in &mut lanes {
        let footprint = lane.footprint.clone();
        let host_figures = lane.prepared.host_figures();
        let mut runner = lane.runner(&shared, &mut writer, None);
        runner.record_disk(&footprint)?;
        runner.record_host_figures(&host_figures)?;
    }
    let plan = Plan {
        warmup,
        runs,
        progress: &progress,
    };
    // From here to the end of the runs, cvm's thread and every thread it starts (readiness
    // probe, watchers, event readers, load client) stay off the instance's CPUs; an instance's
    // processes get the instance's CPUs from their cgroup's cpuset when they join it.
    let host_pin = placement
        .as_ref()
        .ok()
        .and_then(|p| backend::placement::HostPin::to(&p.client));
    // Density keeps N instances of one backend running at once, isolation a victim and its
    // neighbours: backend by backend.
    if args.order == RunOrder::Sequential
        || scenario.density.is_some()
        || scenario.isolation.is_some()
    {
        let mut native_pss = None;
        for lane in &mut lanes {
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            let backend = backends[lane.index].as_ref();
            let mut runner = lane.runner(&shared, &mut writer, native_pss);
            let end = if scenario.density.is_some() {
                density::run(&mut runner, &plan)?
            } else if scenario.isolation.is_some() {
                isolation::run(&mut runner, &plan, backend, &image)?
            } else {
                run_iterations(&mut runner, &plan)?
            };
            let measured = std::mem::take(&mut runner.idle_pss);
            lane.end = end;
            lane.idle_pss = measured;
            if lane.kind == BackendKind::Native && !lane.idle_pss.is_empty() {
                native_pss = Some(crate::stats::median(&lane.idle_pss));
            }
        }
    } else {
        run_interleaved(&mut lanes, &shared, &mut writer, &plan, seed)?;
    }
    drop(host_pin);
    for lane in &lanes {
        let info = &mut infos[lane.index];
        match &lane.end {
            BackendEnd::AllMeasured => {}
            BackendEnd::SomeFailed => any_failed = true,
            BackendEnd::GaveUp(note) => {
                any_failed = true;
                info.error = Some(note.clone());
            }
        }
        meta.backends = infos_snapshot(&meta.backends, info);
    }
    meta.write(&meta_path)?;
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
    record_accelerators(&mut meta);
    if let (Some(load), Some(now)) = (
        meta.environment.load.as_mut(),
        crate::measure::fingerprint::load_average(),
    ) {
        load.end = now;
    }
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
    let diff_code = match &args.baseline {
        Some(base) if !was_interrupted => diff_with_baseline(&args, base, &out_dir)?,
        _ => exit::OK,
    };
    Ok(if was_interrupted {
        eprintln!("cvm: interrupted; the samples measured so far are kept");
        exit::INTERRUPTED
    } else if any_failed {
        exit::RUN_FAILED
    } else {
        diff_code
    })
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

/// The baseline is a results directory of the same scenario.
fn check_baseline(base: &Path, scenario: &str) -> anyhow::Result<()> {
    let meta = RunMeta::read(&base.join(results::META_FILE)).with_context(|| {
        format!(
            "--baseline {} is not a cvm results directory (give one `cvm compare` wrote)",
            base.display()
        )
    })?;
    if meta.scenario.name != scenario {
        anyhow::bail!(
            "--baseline {} ran scenario {:?}, this run is {scenario:?}: a baseline must be a run              of the same scenario",
            base.display(),
            meta.scenario.name
        );
    }
    Ok(())
}

/// Diffs the run just written against `base`: the table on stdout, `diff.html` and `diff.md`
/// in the results directory; the exit code `--fail-on` asks for.
fn diff_with_baseline(args: &CompareArgs, base: &Path, out_dir: &Path) -> Result<u8, Failure> {
    let d = crate::diff::diff_dirs(base, out_dir, &args.thresholds.options())
        .map_err(Failure::usage)?;
    print!("{}", crate::diff::render::terminal(&d));
    crate::diff::write_pages(&d, &out_dir.join("diff.html"), &out_dir.join("diff.md"))?;
    Ok(crate::diff::exit_code(&d, args.fail_on))
}

/// Adds the accelerator each VM backend ran under to the host fingerprint.
fn record_accelerators(meta: &mut RunMeta) {
    let used: Vec<String> = meta
        .backends
        .iter()
        .filter_map(|b| b.accelerator().map(|a| format!("{}: {a}", b.backend)))
        .collect();
    if !used.is_empty() {
        let f = &mut meta.environment.fingerprint;
        f.accelerator = format!("{}; {}", f.accelerator, used.join(", "));
    }
}

/// `--kernel` (or `$CVM_KERNEL`), else the scenario's `[vm] kernel`, else the distro kernel.
fn kernel_choice(args: &CompareArgs, scenario: &Scenario) -> KernelChoice {
    args.kernel
        .as_deref()
        .or(scenario.vm.kernel.as_deref())
        .map(KernelChoice::parse)
        .unwrap_or_default()
}

/// The backends to run, each once, native first. With the minimal kernel chosen, `vm` runs
/// as `vm-minimal`: the label says which kernel its figures are for.
fn resolve_backends(
    args: &CompareArgs,
    scenario: &Scenario,
    kernel: &KernelChoice,
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
        let mut kind: BackendKind = name.parse().map_err(anyhow::Error::msg)?;
        if kind == BackendKind::Vm && *kernel == KernelChoice::Minimal {
            kind = BackendKind::VmMinimal;
        }
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    // Native runs first: its idle memory is the base of every other backend's overhead.
    kinds.sort_by_key(|k| *k != BackendKind::Native);
    if kinds.is_empty() {
        anyhow::bail!(
            "no backends given; valid backends: {}",
            BackendKind::valid_names()
        );
    }
    Ok(kinds)
}

/// A `--kernel` that is missing or not a bzImage is bad input, found before anything is built or
/// measured: the VM backends could only fail later with the same cause, once per backend.
fn check_kernel(kernel: &KernelChoice, kinds: &[BackendKind]) -> Result<(), anyhow::Error> {
    let Some(path) = kernel.path() else {
        return Ok(());
    };
    if !kinds.iter().any(|k| {
        matches!(
            k,
            BackendKind::Vm | BackendKind::VmClassic | BackendKind::VmUser
        )
    }) {
        return Ok(());
    }
    backend::vm::kernel::Kernel::load(path)
        .map(drop)
        .with_context(|| {
            format!(
                "--kernel {} cannot be used as the guest kernel (pass a bzImage such as \
                 /boot/vmlinuz-*, `minimal`, or leave --kernel out to use the host's)",
                path.display()
            )
        })
}

fn tempfile_probe(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(".cvm-write-probe");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
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
        accel: info.accelerator().unwrap_or_default().to_string(),
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
