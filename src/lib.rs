//! cvm: containers vs VMs, measured.
//!
//! The pipeline, one module per stage:
//! [`scenario`] (what to run) → [`image`] (the one rootfs) → [`backend`] (native, containers,
//! VMs) → [`measure`] (startup timeline, memory, environment) → [`results`] (samples and
//! metadata on disk) → [`stats`] (medians, intervals, outliers) → [`report`] (what people read).
//! [`compare`] drives the pipeline; [`fleet`] runs it on many hosts through Ansible; [`sys`] is
//! the only place with `unsafe`.

pub mod apps;
pub mod audit;
pub mod backend;
pub mod bounds;
pub mod cli;
pub mod compare;
pub mod diff;
pub mod doctor;
pub mod exit;
pub mod fleet;
pub mod image;
pub mod load;
pub mod measure;
pub mod report;
pub mod results;
pub mod scenario;
pub mod stats;
pub mod sys;
pub mod text;
pub mod tools;
pub mod usage;

/// For unit tests that need something from the host: the same rule as every other test's.
#[cfg(test)]
#[path = "../tests/common/host.rs"]
mod host;
#[cfg(test)]
pub(crate) use host::host_has;

use std::path::Path;

use anyhow::Context;

use cli::{Cli, Command};
use exit::Failure;

/// Runs one command; the `Ok` value is the process exit code. Every exit code is chosen here,
/// from the typed outcome or error each command returns.
pub fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Compare(args) => compare_command(&args),
        Command::Scenarios => {
            for s in scenario::builtins() {
                match s {
                    Ok(s) => {
                        println!("{:<10} {}", s.name, s.description);
                        if let Some(note) = diff::scenario_runs_note(*s.runs.get_ref()) {
                            println!("{:<10} note: {note}", "");
                        }
                    }
                    Err(e) => println!("(broken built-in: {e})"),
                }
            }
            for s in scenario::builtin_suites() {
                match s {
                    Ok(s) => {
                        println!("{:<10} {}", s.name, s.description);
                        println!("{:<10} suite of: {}", "", s.scenarios.join(", "));
                    }
                    Err(e) => println!("(broken built-in suite: {e})"),
                }
            }
            Ok(exit::OK)
        }
        Command::Backends => {
            let opts = backend::HostOptions::default();
            for kind in scenario::BackendKind::ALL {
                match backend::create(kind, &opts).availability() {
                    backend::Availability::Available => println!("{kind:<11} available"),
                    backend::Availability::Unavailable { reason, hint } => {
                        println!("{kind:<11} unavailable: {reason} — {hint}")
                    }
                }
            }
            Ok(exit::OK)
        }
        Command::Doctor(args) => {
            let docker = args.docker.options().map_err(Failure::usage)?;
            let verdict = doctor::doctor(&backend::HostOptions {
                accel: None,
                kernel: args
                    .kernel
                    .map(backend::vm::KernelChoice::Path)
                    .unwrap_or_default(),
                docker,
            });
            Ok(if verdict.ready() {
                exit::OK
            } else {
                exit::RUN_FAILED
            })
        }
        Command::Kernel(cli::KernelCommand::Build(args)) => kernel_build(&args),
        Command::Diff(args) => {
            // Every DiffError is about the directories given: bad input.
            let d = diff::diff_dirs(&args.base, &args.new, &args.thresholds.options())
                .map_err(Failure::usage)?;
            print!("{}", diff::render::terminal(&d));
            diff::write_outputs(
                &d,
                &diff::DiffOutputs {
                    markdown: args.markdown.clone(),
                    html: args.html.clone(),
                    json: args.export_json.clone(),
                },
            )?;
            Ok(fails_code(d.fails(args.fail_on)))
        }
        Command::Check(args) => {
            let bounds = bounds::load(&args.bounds).map_err(Failure::usage)?;
            let summary = bounds::summary_of(&args.results).map_err(Failure::usage)?;
            let checked = bounds::check(&bounds, &summary);
            print!("{}", bounds::render(&checked));
            Ok(fails_code(
                checked.iter().any(|c| c.outcome == bounds::Outcome::Fails),
            ))
        }
        Command::Report(args) if args.site.is_some() => site_command(&args),
        Command::Report(args) if args.merge => {
            let out = report::merge::output_dir(&args.dirs, args.output.as_deref());
            let summary = report::merge::merge_dirs(&args.dirs, &out).map_err(|e| {
                if e.is_bad_input() {
                    Failure::usage(e)
                } else {
                    Failure::run(e)
                }
            })?;
            show_summary(&summary, detail(args.full), args.export_markdown.as_deref())?;
            eprintln!("cvm: merged report in {}", out.display());
            Ok(exit::OK)
        }
        Command::Fleet(args) => {
            let opts = args.options().map_err(fleet_failure)?;
            Ok(match fleet::fleet(&opts).map_err(fleet_failure)? {
                fleet::FleetOutcome::Done => exit::OK,
                fleet::FleetOutcome::SomeFailed => exit::RUN_FAILED,
                fleet::FleetOutcome::Interrupted => exit::INTERRUPTED,
            })
        }
        Command::Report(args) => {
            let [dir] = args.dirs.as_slice() else {
                return Err(Failure::usage(anyhow::anyhow!(
                    "{} results directories given: `cvm report` re-renders one; give --merge to \
                     merge several hosts' directories into one report",
                    args.dirs.len()
                )));
            };
            let summary = report::render_dir(dir).map_err(report_failure)?;
            show_summary(&summary, detail(args.full), args.export_markdown.as_deref())?;
            Ok(exit::OK)
        }
    }
}

/// `cvm report --site OUT DIR...`: every scenario's report under OUT, and their index.
fn site_command(args: &cli::ReportArgs) -> Result<u8, Failure> {
    let out = args.site.as_deref().unwrap_or(Path::new("."));
    let reference = match args.reference.as_deref() {
        Some(id) => Some(report::reference::published(id).ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "--reference {id}: no such published figures; known: {}",
                scenario::REFERENCES.join(", ")
            ))
        })?),
        None => None,
    };
    let entries = report::site::build(out, &args.dirs, reference).map_err(|e| {
        if e.is_bad_input() {
            Failure::usage(e)
        } else {
            Failure::run(e)
        }
    })?;
    eprintln!(
        "cvm: site of {} scenario(s) in {}",
        entries.len(),
        out.join(report::html::INDEX_FILE).display()
    );
    Ok(exit::OK)
}

/// `cvm compare`: measure, then print, export and (with `--baseline`) diff what was measured.
fn compare_command(args: &cli::CompareArgs) -> Result<u8, Failure> {
    let opts = args.options().map_err(Failure::usage)?;
    if let Some(suite) = scenario::find_suite(&opts.scenario).map_err(Failure::usage)? {
        return suite_command(args, &opts, &suite);
    }
    let compared = compare::compare(&opts).map_err(compare_failure)?;
    let dir = &compared.out_dir;
    if let Some(forced) = &compared.forced {
        // Out at once, as asked: `cvm report DIR` renders what was kept.
        eprintln!("cvm: {forced}");
        eprintln!("cvm: samples kept in {}", dir.display());
        return Ok(exit::INTERRUPTED);
    }
    let summary = report::render_dir(dir)?;
    show_summary(
        &summary,
        detail(args.verbose),
        args.export_markdown.as_deref(),
    )?;
    if let Some(f) = &args.export_json {
        summary.write(f)?;
    }
    if let Some(f) = &args.export_csv {
        std::fs::copy(dir.join(results::SAMPLES_FILE), f)
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    eprintln!("cvm: results in {}", dir.display());
    if compared.status == results::RunStatus::Interrupted {
        eprintln!("cvm: interrupted; the samples measured so far are kept");
        return Ok(exit::INTERRUPTED);
    }
    let regressed = match &args.baseline {
        Some(base) => diff_with_baseline(args, base, dir)?,
        None => false,
    };
    Ok(if compared.status == results::RunStatus::Failed {
        exit::RUN_FAILED
    } else {
        fails_code(regressed)
    })
}

/// `cvm compare` of a suite: every member measured, then one site of their reports (with the
/// suite's published figures beside them), and each member's one-screen summary.
fn suite_command(
    args: &cli::CompareArgs,
    opts: &compare::CompareOptions,
    suite: &scenario::Suite,
) -> Result<u8, Failure> {
    if args.export_json.is_some() || args.export_csv.is_some() || args.export_markdown.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--export-json, --export-csv and --export-markdown write one run's figures; {} is a \
             suite, whose members' folders each hold summary.json, samples.csv and their report",
            suite.name
        )));
    }
    let run = compare::compare_suite(opts, suite).map_err(compare_failure)?;
    if let Some(forced) = run
        .members
        .iter()
        .find_map(|m| m.outcome.as_ref().ok()?.forced.clone())
    {
        eprintln!("cvm: {forced}");
        eprintln!("cvm: samples kept in {}", run.out_dir.display());
        return Ok(exit::INTERRUPTED);
    }
    let measured: Vec<std::path::PathBuf> = run
        .members
        .iter()
        .filter(|m| m.outcome.is_ok())
        .map(|m| m.dir.clone())
        .collect();
    let reference = suite
        .reference
        .as_deref()
        .and_then(report::reference::published);
    let entries = report::site::build(&run.out_dir, &measured, reference).map_err(Failure::run)?;
    for e in &entries {
        println!("\n== {} ==", e.name);
        show_summary(&e.summary, detail(args.verbose), None)?;
    }
    eprintln!(
        "cvm: {} of {} scenario(s) measured; site in {}",
        entries.len(),
        run.members.len(),
        run.out_dir.join(report::html::INDEX_FILE).display()
    );
    if run.interrupted {
        eprintln!("cvm: interrupted; the samples measured so far are kept");
        return Ok(exit::INTERRUPTED);
    }
    let failed = run.members.iter().any(|m| match &m.outcome {
        Ok(c) => c.status == results::RunStatus::Failed,
        Err(_) => true,
    });
    Ok(fails_code(failed))
}

/// Diffs the run just written against `base`: the table on stdout, `diff.html` and `diff.md`
/// in the results directory; whether something `--fail-on` names counted.
fn diff_with_baseline(args: &cli::CompareArgs, base: &Path, dir: &Path) -> Result<bool, Failure> {
    let d = diff::diff_dirs(base, dir, &args.thresholds.options()).map_err(Failure::usage)?;
    print!("{}", diff::render::terminal(&d));
    diff::write_outputs(
        &d,
        &diff::DiffOutputs {
            markdown: Some(dir.join("diff.md")),
            html: Some(dir.join("diff.html")),
            json: None,
        },
    )?;
    Ok(d.fails(args.fail_on))
}

fn fails_code(failed: bool) -> u8 {
    if failed {
        exit::RUN_FAILED
    } else {
        exit::OK
    }
}

fn compare_failure(e: compare::CompareError) -> Failure {
    if e.is_bad_input() {
        Failure::usage(e)
    } else {
        Failure::run(e)
    }
}

fn report_failure(e: report::ReportError) -> Failure {
    if e.is_bad_input() {
        Failure::usage(e)
    } else {
        Failure::run(e)
    }
}

fn fleet_failure(e: fleet::FleetError) -> Failure {
    if e.is_bad_input() {
        Failure::usage(e)
    } else {
        Failure::run(e)
    }
}
/// `cvm kernel build`: progress on stderr, the summary on stdout.
fn kernel_build(args: &cli::KernelBuildArgs) -> Result<u8, Failure> {
    use backend::vm::minimal::{self, MinimalKernelError};
    let jobs = args.jobs.map(|j| j as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let opts = minimal::BuildOptions {
        jobs,
        force: args.force,
    };
    let built = minimal::build(&image::cache_dir(), &opts, &mut std::io::stderr()).map_err(
        |e| match e {
            MinimalKernelError::MissingPackages(_) | MinimalKernelError::NoSource(_) => {
                Failure::usage(e)
            }
            e => Failure::run(anyhow::Error::new(e).context("cannot build the minimal kernel")),
        },
    )?;
    println!(
        "minimal guest kernel {} (linux-source {}, config {}): image {:.1} MiB (the vmlinux \
         file, {:.1} MiB, pads its segments to 2 MiB) at {}, built in {}",
        built.release,
        built.source_version,
        built.config_hash,
        built.image_bytes as f64 / (1024.0 * 1024.0),
        built.vmlinux_bytes as f64 / (1024.0 * 1024.0),
        built.vmlinux.display(),
        humantime::format_duration(std::time::Duration::from_secs(
            built.build_seconds.round() as u64
        )),
    );
    Ok(exit::OK)
}

/// The terminal's summary: one screen, or every metric (`--verbose`, `--full`).
fn detail(every_metric: bool) -> report::Detail {
    if every_metric {
        report::Detail::Full
    } else {
        report::Detail::Compact
    }
}

/// Prints a rendered run's table and writes its Markdown where `--export-markdown` says.
fn show_summary(
    summary: &results::RunSummary,
    detail: report::Detail,
    markdown: Option<&std::path::Path>,
) -> Result<(), Failure> {
    print!("{}", report::terminal_table(summary, detail));
    if let Some(f) = markdown {
        std::fs::write(f, report::markdown_summary(summary))
            .map_err(|e| Failure::run(anyhow::anyhow!("cannot write {}: {e}", f.display())))?;
    }
    Ok(())
}
