//! `cvm compare`: the pipeline end to end — scenario → image → backends → runs → samples →
//! summary → report — for every requested backend.
//!
//! [`compare`] is six steps, one module each where it has more than a few lines: resolve what
//! was asked ([`setup`]), open the results directory ([`output`]), prepare every backend
//! ([`lanes`]), run them ([`order`], with one run in [`runner`] and density in [`density`]),
//! then close the record and render the report ([`finish`]).
//!
//! Samples are written and flushed as they are measured, `run.json` is rewritten at each state
//! change, and every instance is torn down before cvm exits (also on SIGINT/SIGTERM, which set a
//! flag the waits poll), so an interrupted run loses nothing it measured and leaves nothing
//! behind.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::docker::DockerOptions;
use crate::backend::vm::accel::AccelChoice;
use crate::backend::{self, LaunchContext};
use crate::image::{Image, ImageError};
use crate::report::ReportError;
use crate::results::{ResultsError, RunStatus, RunSummary, SampleWriter};
use crate::scenario::ScenarioError;

pub mod cgroup_state;
mod density;
mod idle_memory;
mod lanes;
mod load_phase;
mod order;
mod output;
mod record;
mod runner;
mod setup;
mod sweep;

use order::{run_interleaved, run_sequential, Plan, Shared};

/// What `cvm compare` is asked to do; every field but `scenario` defaults to the scenario's own.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// A built-in scenario name or a path to a scenario file.
    pub scenario: String,
    pub backends: Option<Vec<String>>,
    pub runs: Option<u32>,
    pub warmup: Option<u32>,
    /// Seconds one run may take to become ready (and to finish).
    pub timeout: Option<f64>,
    /// The results directory [default: `reports/<run-id>`, with `reports/latest` pointing to it].
    pub output: Option<PathBuf>,
    /// A results directory of the same scenario this run will be diffed against (checked before
    /// anything is measured).
    pub baseline: Option<PathBuf>,
    pub no_progress: bool,
    pub accel: AccelChoice,
    /// `minimal`, `distro` or a bzImage path [default: the scenario's `[vm] kernel`, else distro].
    pub kernel: Option<String>,
    pub docker: DockerOptions,
    pub order: RunOrder,
    pub seed: Option<u64>,
    /// The cgroup migration lock's state at every launch [default: cold for a cold-start
    /// scenario, else warm].
    pub cgroup_state: Option<cgroup_state::CgroupState>,
}

/// The order of the runs of several backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunOrder {
    Interleaved,
    Sequential,
}

impl RunOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOrder::Interleaved => "interleaved",
            RunOrder::Sequential => "sequential",
        }
    }
}

/// A comparison that could not be made or recorded; runs that failed are not errors (they are
/// recorded, and the [`Compared::status`] says so). One variant per failing step.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    Backends(String),
    #[error("--kernel {path} cannot be used as the guest kernel (pass a bzImage such as /boot/vmlinuz-*, `minimal`, or leave --kernel out to use the host's)")]
    Kernel {
        path: PathBuf,
        #[source]
        source: backend::vm::kernel::KernelError,
    },
    #[error("--baseline {path} is not a cvm results directory (give one `cvm compare` wrote)")]
    BaselineUnreadable {
        path: PathBuf,
        #[source]
        source: ResultsError,
    },
    #[error("--baseline {path} ran scenario {base:?}, this run is {scenario:?}: a baseline must be a run of the same scenario")]
    BaselineScenario {
        path: PathBuf,
        base: String,
        scenario: String,
    },
    #[error("cannot write to the results directory {path} (choose a writable --output)")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    IoStore(#[from] backend::io_dir::IoDirError),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("cannot build the image")]
    Image(#[source] ImageError),
    #[error("cannot record the run")]
    Record(#[from] ResultsError),
    #[error("cannot render the report")]
    Report(#[source] ReportError),
}

impl CompareError {
    /// Whether the fault lies with what was asked (a flag, a scenario, a path), found before
    /// anything was measured, rather than with the run.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CompareError::Scenario(_)
                | CompareError::Backends(_)
                | CompareError::Kernel { .. }
                | CompareError::BaselineUnreadable { .. }
                | CompareError::BaselineScenario { .. }
                | CompareError::Output { .. }
                | CompareError::IoStore(_)
        )
    }
}

/// A finished comparison: where its results are, how it ended, and its summary.
#[derive(Debug)]
pub struct Compared {
    pub out_dir: PathBuf,
    pub status: RunStatus,
    pub summary: RunSummary,
}

/// Runs the comparison `opts` asks for and renders its report into the results directory.
pub fn compare(opts: &CompareOptions) -> Result<Compared, CompareError> {
    let setup = setup::Setup::resolve(opts)?;
    let interrupted = interrupt_flag()?;
    let out = output::ResultsDir::open(opts.output.as_deref(), &setup.scenario.name)?;
    let image = Image::build(&setup.scenario).map_err(CompareError::Image)?;
    let mut record = record::Record::start(&setup, &out, opts)?;
    let mut writer = SampleWriter::create(&out.samples_path())?;
    let progress = progress_bar(record.planned_runs(&setup), opts.no_progress);
    let mut prepared = record.prepare(&setup, &image, &interrupted, &progress)?;
    let shared = Shared {
        scenario: &setup.scenario,
        timeout: setup.timeout,
        interrupted: &interrupted,
        ctx: LaunchContext {
            instance: 0,
            run_id: output::short_token(),
        },
        floor_program: image
            .rootfs()
            .join(crate::image::GUEST_PATH.trim_start_matches('/')),
        client_cpus: record.client_cpus.clone(),
        cgroup_state: setup.cgroup_state,
    };
    for lane in &mut prepared {
        lane.record_once_figures(&shared, &mut writer)?;
    }
    let plan = Plan {
        warmup: setup.warmup,
        runs: setup.runs,
        progress: &progress,
    };
    // From here to the end of the runs, cvm's thread and every thread it starts (readiness
    // probe, watchers, event readers, load client) stay off the instance's CPUs; an instance's
    // processes get the instance's CPUs from their cgroup's cpuset when they join it.
    let host_pin = record.host_pin();
    // Density keeps N instances of one backend running at once: backend by backend.
    if setup.order == RunOrder::Sequential || setup.scenario.density.is_some() {
        run_sequential(&mut prepared, &shared, &mut writer, &plan)?;
    } else {
        run_interleaved(&mut prepared, &shared, &mut writer, &plan, setup.seed)?;
    }
    drop(host_pin);
    progress.finish_and_clear();
    drop(writer);
    let status = record.close(&prepared, interrupted.load(Ordering::SeqCst))?;
    let summary = crate::report::render_dir(out.path()).map_err(CompareError::Report)?;
    Ok(Compared {
        out_dir: out.path().to_path_buf(),
        status,
        summary,
    })
}

/// The flag SIGINT and SIGTERM set; every wait of a run polls it.
fn interrupt_flag() -> Result<Arc<AtomicBool>, CompareError> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .map_err(CompareError::Signals)?;
    }
    Ok(interrupted)
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
