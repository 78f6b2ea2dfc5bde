//! cvm: containers vs VMs, measured.
//!
//! The pipeline, one module per stage:
//! [`scenario`] (what to run) → [`image`] (the one rootfs) → [`backend`] (native, containers,
//! VMs) → [`measure`] (startup timeline, memory, environment) → [`results`] (samples and
//! metadata on disk) → [`stats`] (medians, intervals, outliers) → [`report`] (what people read).
//! [`compare`] drives the pipeline; [`fleet`] runs it on many hosts through Ansible; [`sys`] is
//! the only place with `unsafe`.

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

/// For unit tests that need something from the host: the same rule as every other test's.
#[cfg(test)]
#[path = "../tests/common/host.rs"]
mod host;
#[cfg(test)]
pub(crate) use host::host_has;

use cli::{Cli, Command};
use exit::Failure;

/// Runs one command; the `Ok` value is the process exit code.
pub fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Compare(args) => compare::compare(args),
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
        Command::Diff(args) => diff::command(&args),
        Command::Check(args) => {
            let bounds = bounds::load(&args.bounds).map_err(Failure::usage)?;
            let summary = bounds::summary_of(&args.results).map_err(Failure::usage)?;
            let checked = bounds::check(&bounds, &summary);
            print!("{}", bounds::render(&checked));
            Ok(
                if checked.iter().any(|c| c.outcome == bounds::Outcome::Fails) {
                    exit::RUN_FAILED
                } else {
                    exit::OK
                },
            )
        }
        Command::Report(args) if args.merge => {
            let out = report::merge::output_dir(&args.dirs, args.output.as_deref());
            let summary = report::merge::merge_dirs(&args.dirs, &out).map_err(|e| {
                if e.is_bad_input() {
                    Failure::usage(e)
                } else {
                    Failure::run(e)
                }
            })?;
            show_summary(&summary, args.export_markdown.as_deref())?;
            eprintln!("cvm: merged report in {}", out.display());
            Ok(exit::OK)
        }
        Command::Fleet(args) => fleet::fleet(args),
        Command::Report(args) => {
            let [dir] = args.dirs.as_slice() else {
                return Err(Failure::usage(anyhow::anyhow!(
                    "{} results directories given: `cvm report` re-renders one; give --merge to \
                     merge several hosts' directories into one report",
                    args.dirs.len()
                )));
            };
            let summary = report::render_dir(dir).map_err(|e| {
                if e.is_bad_input() {
                    Failure::usage(e)
                } else {
                    Failure::run(e)
                }
            })?;
            show_summary(&summary, args.export_markdown.as_deref())?;
            Ok(exit::OK)
        }
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

/// Prints a rendered run's table and writes its Markdown where `--export-markdown` says.
fn show_summary(
    summary: &results::RunSummary,
    markdown: Option<&std::path::Path>,
) -> Result<(), Failure> {
    println!("{}", report::terminal::table(summary));
    if let Some(f) = markdown {
        std::fs::write(f, report::markdown::summary(summary))
            .map_err(|e| Failure::run(anyhow::anyhow!("cannot write {}: {e}", f.display())))?;
    }
    Ok(())
}
