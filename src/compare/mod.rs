//! `cvm compare`: the pipeline end to end — scenario → image → backends → runs → samples →
//! summary → report — for every requested backend.
//!
//! A suite (`suite`) is its member scenarios compared one after another.
//!
//! [`compare`] is six steps, one module each: resolve what was asked (`setup`), open the
//! results directory (`results_dir`), start the record (`record`: `run.json`), prepare every backend
//! (`lanes`), run them (`order` interleaves them, `sequential` runs one after another; one run
//! is `runner`, density `density`), then close the record. Rendering the report from the
//! results directory is the caller's next step (`report::render_dir`): nothing here depends on
//! how results are shown.
//!
//! Samples are written and flushed as they are measured, `run.json` is rewritten at each state
//! change, and every instance is torn down before cvm exits (also on SIGINT/SIGTERM, which set a
//! flag the waits poll), so an interrupted run loses nothing it measured and leaves nothing
//! behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::docker::DockerOptions;
use crate::backend::vm::accel::AccelChoice;
use crate::backend::{self, LaunchContext};
use crate::image::{Image, ImageError};
use crate::results::{ResultsError, RunStatus};
use crate::scenario::ScenarioError;

mod app_phase;
pub mod cgroup_state;
mod density;
mod idle_memory;
mod interrupt;
mod isolation;
mod lanes;
mod load_phase;
mod order;
mod record;
mod results_dir;
mod runner;
mod sequential;
mod setup;
mod suite;
mod sweep;

use order::{run_interleaved, Plan, Shared};
use sequential::run_sequential;
pub use suite::{compare_suite, Member, SuiteCompared};

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
    #[error(transparent)]
    ResultsDir(#[from] results_dir::ResultsDirError),
    #[error(transparent)]
    IoStore(#[from] backend::io_dir::IoDirError),
    #[error("--baseline compares one run with another of the same scenario; {suite} is a suite: diff its members' folders one by one with `cvm diff`")]
    SuiteBaseline { suite: String },
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("cannot build the image")]
    Image(#[source] ImageError),
    #[error("cannot record the run")]
    Record(#[from] ResultsError),
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
                | CompareError::ResultsDir(_)
                | CompareError::IoStore(_)
                | CompareError::SuiteBaseline { .. }
        )
    }
}

/// A finished comparison: where its results are and how it ended.
#[derive(Debug)]
pub struct Compared {
    pub out_dir: PathBuf,
    pub status: RunStatus,
    /// Set when a second signal forced the teardown: what was torn down and what was left.
    /// The caller then renders nothing (`cvm report DIR` renders what was kept).
    pub forced: Option<String>,
}

/// Runs the comparison `opts` asks for, writing its results directory as it goes.
pub fn compare(opts: &CompareOptions) -> Result<Compared, CompareError> {
    let setup = setup::Setup::resolve(opts)?;
    let interrupted = interrupt::install().map_err(CompareError::Signals)?;
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let out = results_dir::create(
        opts.output.as_deref(),
        Path::new("reports"),
        &run_id_at(&started, &setup.scenario.name),
    )?;
    let mut writer = out.samples;
    let image = Image::build(&setup.scenario).map_err(CompareError::Image)?;
    let mut record = record::Record::start(&setup, &out.run_id, &started, &out.path, opts)?;
    let progress = progress_bar(record.planned_runs(&setup), opts.no_progress);
    let mut prepared = record.prepare(&setup, &image, interrupted, &progress)?;
    let shared = Shared {
        scenario: &setup.scenario,
        timeout: setup.timeout,
        interrupted,
        ctx: LaunchContext {
            instance: 0,
            run_id: short_token(),
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
    // Density keeps N instances of one backend running at once, isolation a victim and its
    // neighbours: backend by backend.
    let one_at_a_time = setup.scenario.density.is_some() || setup.scenario.isolation.is_some();
    if setup.order == RunOrder::Sequential || one_at_a_time {
        let backends = (record.backends.as_slice(), &image);
        run_sequential(&mut prepared, &shared, &mut writer, &plan, backends)?;
    } else {
        run_interleaved(&mut prepared, &shared, &mut writer, &plan, setup.seed)?;
    }
    drop(host_pin);
    progress.finish_and_clear();
    drop(writer);
    let status = record.close(&prepared, interrupted.load(Ordering::SeqCst))?;
    // What the backends set up for the run (a private daemon) goes before anything else.
    drop(prepared);
    Ok(Compared {
        out_dir: out.path,
        status,
        forced: interrupt::forced().then(interrupt::forced_summary),
    })
}

/// A run's id: when it started (RFC 3339, seconds, punctuation dropped) and what it runs.
fn run_id_at(started: &str, name: &str) -> String {
    format!(
        "{}-{name}",
        started.replace([':', '-'], "").trim_end_matches('Z')
    )
}

/// A run id for a run starting now.
fn run_id(name: &str) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    run_id_at(&now, name)
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
