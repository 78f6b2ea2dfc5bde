//! The command line (clap derive). Parsing only: each subcommand's work lives in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::docker::{DaemonChoice, DockerOptions};
use crate::backend::vm::accel::AccelChoice;
use crate::compare::cgroup_state::CgroupState;
use crate::compare::{CompareOptions, RunOrder};
use crate::diff::{DiffOptions, FailOn};
use crate::fleet::{FleetError, FleetOptions};

#[derive(Debug, Parser)]
#[command(
    name = "cvm",
    version,
    about = "Containers vs VMs, measured: the same workload, from the same image, on every isolation backend",
    long_about = "cvm launches the same workload from the same image natively, in containers (its own \
runtime, runc, crun, Docker) and in QEMU guests, and measures startup phases, memory, disk and \
throughput with warm-up runs, medians and confidence intervals labelled with the level they \
really have.\n\n\
Exit codes: 0 done, 1 a run failed, 2 bad input or usage, 130 interrupted (docs/results.md).",
    after_help = "Examples:\n  cvm compare --scenario web\n  cvm compare --scenario startup --backends native,container --runs 30\n  cvm doctor\n  cvm report reports/latest --full\n\n\
Reference, one page per topic, in cvm's repository: docs/scenarios.md (the scenario format), \
docs/metrics.md, docs/backends.md, docs/phases.md, docs/statistics.md, docs/comparing.md, \
docs/reading-results.md; README.md links every page."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario on several backends and write samples, summary and report
    Compare(CompareArgs),
    /// List the built-in scenarios
    Scenarios,
    /// List the backends and whether each can run on this host
    Backends,
    /// Check this host: root, cgroups, QEMU, guest kernel, KVM, runc, crun (with fix-it hints);
    /// exits 1 when a backend the built-in scenarios run by default cannot run here
    Doctor(DoctorArgs),
    /// Re-render summary and report from a results directory's samples.csv, or merge several
    /// hosts' results directories into one report (--merge)
    Report(ReportArgs),
    /// Compare two results directories: medians, change, interval, permutation p-value; exits 1
    /// when something regressed, 2 when the runs cannot be compared
    Diff(DiffArgs),
    /// Check a results directory against a bounds file; exits 1 when a bound fails
    Check(CheckArgs),
    /// Run a scenario on every host of an Ansible inventory, fetch each host's results and merge
    /// them into one report; exits 1 when any host failed (the others are still merged)
    Fleet(FleetArgs),
    /// cvm's minimal guest kernel (the `vm-minimal` backend, `--kernel minimal`)
    #[command(subcommand)]
    Kernel(KernelCommand),
}

#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Build the minimal guest kernel from Debian's linux-source into the cache (keyed by the
    /// hash of assets/kernel/minimal.config and the source version; an existing build is reused)
    Build(KernelBuildArgs),
}

#[derive(Debug, Args)]
pub struct KernelBuildArgs {
    /// Parallel compile jobs [default: the number of CPUs]
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,

    /// Rebuild even if a build for this configuration and source exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A built-in scenario or suite name (see `cvm scenarios`) or a path to a scenario or suite
    /// TOML file; a suite runs each of its scenarios and writes one site of their reports
    #[arg(short, long, value_name = "NAME|PATH")]
    pub scenario: String,

    /// Comma-separated backends to run [default: the scenario's list]
    #[arg(short, long, value_name = "LIST", value_delimiter = ',')]
    pub backends: Option<Vec<String>>,

    /// Measured runs per backend [default: the scenario's]
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub runs: Option<u32>,

    /// Warm-up runs per backend, recorded with phase=warmup and left out of the summary
    #[arg(short, long, value_name = "N")]
    pub warmup: Option<u32>,

    /// Seconds one run may take to become ready (and to finish) before it is failed
    #[arg(short, long, value_name = "SECS", value_parser = parse_positive_secs)]
    pub timeout: Option<f64>,

    /// Results directory [default: reports/<run-id>, with reports/latest pointing to it]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Also write the summary as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub export_json: Option<PathBuf>,

    /// Also write the samples as CSV to this file
    #[arg(long, value_name = "FILE")]
    pub export_csv: Option<PathBuf>,

    /// Also write a Markdown summary table to this file
    #[arg(long, value_name = "FILE")]
    pub export_markdown: Option<PathBuf>,

    /// After the run, diff it against this earlier results directory (writes diff.html and
    /// diff.md into the new results directory)
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,

    /// With --baseline: what makes the exit code 1
    #[arg(long, value_enum, default_value_t = FailOn::Regression, requires = "baseline")]
    pub fail_on: FailOn,

    #[command(flatten)]
    pub thresholds: ThresholdArgs,

    /// Hide the progress bar even on a terminal
    #[arg(long)]
    pub no_progress: bool,

    /// Print every metric of every backend, with every note, instead of the one-screen summary
    /// (the findings and one small table per question)
    #[arg(short, long)]
    pub verbose: bool,

    /// Which QEMU accelerator VM backends use (auto probes KVM by booting a guest)
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,

    /// The `vm` backend's guest kernel: `distro` (found under /boot), `minimal` (cvm's own,
    /// from `cvm kernel build`; `vm` then runs as `vm-minimal`) or a bzImage PATH, which
    /// `vm-classic` boots too [default: the scenario's `[vm] kernel`, else distro]
    #[arg(long, value_name = "minimal|distro|PATH", env = "CVM_KERNEL")]
    pub kernel: Option<String>,

    #[command(flatten)]
    pub docker: DockerArgs,

    /// interleaved: every iteration runs each backend once, in a seeded random order (native
    /// first), so host drift spreads over all backends; sequential: all runs of one backend,
    /// then the next
    #[arg(long, value_enum, default_value_t = RunOrder::Interleaved)]
    pub order: RunOrder,

    /// Seed of the interleaved order (recorded in run.json) [default: random]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// The cgroup migration lock's state at every launch of every backend, so a launch's
    /// cgroup join does not depend on what ran before it. warm: cvm writes a throwaway
    /// cgroup.procs just before each launch; cold: an idle gap of 2 s before each launch
    /// [default: cold for a cold-start scenario such as startup-cold, else warm]
    #[arg(long, value_enum, value_name = "STATE")]
    pub cgroup_state: Option<CgroupState>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Guest kernel (bzImage) to check the VM backends with [default: found under /boot]
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,

    #[command(flatten)]
    pub docker: DockerArgs,
}

/// Which Docker daemon the docker backend uses.
#[derive(Debug, Clone, Args)]
pub struct DockerArgs {
    /// The docker backend's daemon. auto: an existing one if one answers (--docker-host,
    /// DOCKER_HOST, else the default socket), otherwise a private dockerd that cvm starts for
    /// the run (own data root in cvm's cache, own bridge from CVM_CONTAINER_SUBNET, no firewall
    /// change) and stops at its end; managed: always such a private one; existing: never start
    /// one
    #[arg(long, value_enum, value_name = "WHICH", default_value_t = DaemonChoice::Auto)]
    pub docker_daemon: DaemonChoice,

    /// The address of an existing Docker daemon for the docker backend (unix:///PATH, tcp://...)
    /// [default: DOCKER_HOST, else the client's default socket]
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,
}

impl CompareArgs {
    /// The library's options; `Err` for flags that contradict each other.
    pub fn options(&self) -> anyhow::Result<CompareOptions> {
        Ok(CompareOptions {
            scenario: self.scenario.clone(),
            backends: self.backends.clone(),
            runs: self.runs,
            warmup: self.warmup,
            timeout: self.timeout,
            output: self.output.clone(),
            baseline: self.baseline.clone(),
            no_progress: self.no_progress,
            accel: self.accel,
            kernel: self.kernel.clone(),
            docker: self.docker.options()?,
            order: self.order,
            seed: self.seed,
            cgroup_state: self.cgroup_state,
        })
    }
}

impl DockerArgs {
    /// The backend's options; a daemon address with `--docker-daemon managed` is bad input.
    pub fn options(&self) -> anyhow::Result<DockerOptions> {
        if self.docker_daemon == DaemonChoice::Managed && self.docker_host.is_some() {
            anyhow::bail!(
                "--docker-host names an existing daemon, --docker-daemon managed asks for a \
                 private one: give one or the other"
            );
        }
        Ok(DockerOptions {
            daemon: self.docker_daemon,
            host: self.docker_host.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A results directory written by `cvm compare` (holds samples.csv); with --merge, several
    #[arg(value_name = "DIR", required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,

    /// Merge the results directories of several hosts into one report, the host a dimension of
    /// every chart and table
    #[arg(long)]
    pub merge: bool,

    /// With --merge: where the merged report goes [default: `merged` beside the first DIR]
    #[arg(short, long, value_name = "DIR", requires = "merge")]
    pub output: Option<PathBuf>,

    /// Also write a Markdown summary table to this file
    #[arg(long, value_name = "FILE")]
    pub export_markdown: Option<PathBuf>,

    /// Build one site of several scenarios' results in OUT: each report in a folder of its own
    /// and an index with every verdict panel and an overview table (a row per backend)
    #[arg(long, value_name = "OUT", conflicts_with = "merge")]
    pub site: Option<PathBuf>,

    /// With --site: published figures to set beside the measured ones, as a suite's
    /// `reference` does (felter-2014: the IBM study's Docker and KVM ratios)
    #[arg(long, value_name = "ID", requires = "site")]
    pub reference: Option<String>,

    /// Print every metric of every backend, with every note, instead of the one-screen summary
    /// (the findings and one small table per question)
    #[arg(long)]
    pub full: bool,
}

/// When a change counts (`cvm diff`, `cvm compare --baseline`).
#[derive(Debug, Clone, Args)]
pub struct ThresholdArgs {
    /// Significance level: a change counts only when the permutation test's p, adjusted over
    /// the diff's rows by Benjamini–Hochberg (q), is below it
    #[arg(long, value_name = "P", default_value_t = crate::diff::DEFAULT_ALPHA, value_parser = parse_alpha)]
    pub alpha: f64,

    /// Noise threshold in percent: a change counts only when the median moved by more
    #[arg(long, value_name = "PCT", default_value_t = crate::diff::DEFAULT_THRESHOLD * 100.0, value_parser = parse_percent)]
    pub threshold: f64,

    /// A metric's own noise threshold in percent (repeatable): `--metric-threshold memory_pss=2`
    #[arg(long, value_name = "METRIC=PCT", value_parser = parse_metric_threshold)]
    pub metric_threshold: Vec<(String, f64)>,
}

impl ThresholdArgs {
    pub fn options(&self) -> DiffOptions {
        DiffOptions {
            alpha: self.alpha,
            threshold: self.threshold / 100.0,
            metric_thresholds: self
                .metric_threshold
                .iter()
                .map(|(m, pct)| (m.clone(), pct / 100.0))
                .collect(),
        }
    }
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline results directory
    #[arg(value_name = "BASE")]
    pub base: PathBuf,

    /// The results directory to compare with it
    #[arg(value_name = "NEW")]
    pub new: PathBuf,

    #[command(flatten)]
    pub thresholds: ThresholdArgs,

    /// What makes the exit code 1
    #[arg(long, value_enum, default_value_t = FailOn::Regression)]
    pub fail_on: FailOn,

    /// Also write the comparison as Markdown to this file
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Also write the comparison as an HTML page with a chart to this file
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Also write the comparison as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub export_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A results directory written by `cvm compare`
    #[arg(value_name = "RESULTS")]
    pub results: PathBuf,

    /// The bounds file (TOML: [[bound]] entries of backend, metric and a limit or a ratio)
    #[arg(long, value_name = "FILE")]
    pub bounds: PathBuf,
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!(
            "`{s}`: the significance level must be between 0 and 1"
        )),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a percentage (0 or more)")),
    }
}

fn parse_metric_threshold(s: &str) -> Result<(String, f64), String> {
    let (metric, pct) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected METRIC=PCT, e.g. memory_pss=2"))?;
    if metric.trim().is_empty() {
        return Err(format!("`{s}`: no metric name before `=`"));
    }
    Ok((metric.trim().to_string(), parse_percent(pct)?))
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cvm fleet --inventory hosts.ini --scenario startup -- --backends native,container --runs 10\n  cvm fleet -i hosts.ini -s web --parallel 1 --output reports/fleet-web"
)]
pub struct FleetArgs {
    /// Ansible inventory naming the hosts (each host's results land under its inventory name)
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,

    /// A built-in scenario name, or a scenario TOML file (copied to every host)
    #[arg(short, long, value_name = "NAME|PATH")]
    pub scenario: String,

    /// How many hosts run at once [default: all]; 1 for hosts that share hardware
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallel: Option<u32>,

    /// Output directory: results/<host>/, report/ (merged) and fleet.json
    /// [default: reports/fleet-<run-id>]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Seconds `cvm compare` may run on one host; then it is stopped and the host counts as failed
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..))]
    pub time_limit: u32,

    /// Fetch every host's results but do not merge them
    #[arg(long)]
    pub no_merge: bool,

    /// Options for every host's `cvm compare`, after `--` (e.g. -- --backends native,container --runs 10)
    #[arg(last = true, value_name = "COMPARE OPTIONS")]
    pub compare: Vec<String>,
}

impl FleetArgs {
    /// The library's options, with the options for the hosts' `cvm compare` checked here, with
    /// the same parser, rather than on every host; options naming files for the fleet to write
    /// are refused.
    pub fn options(&self) -> Result<FleetOptions, FleetError> {
        check_compare_options(&self.scenario, &self.compare)?;
        Ok(FleetOptions {
            inventory: self.inventory.clone(),
            scenario: self.scenario.clone(),
            parallel: self.parallel,
            output: self.output.clone(),
            time_limit: self.time_limit,
            merge: !self.no_merge,
            compare: self.compare.clone(),
        })
    }
}

fn check_compare_options(scenario: &str, options: &[String]) -> Result<(), FleetError> {
    let argv = ["cvm", "compare", "--scenario", scenario]
        .into_iter()
        .map(String::from)
        .chain(options.iter().cloned());
    let compare = match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Compare(c),
        }) => c,
        Ok(_) => return Err(FleetError::CompareOptions(options.join(" "))),
        Err(e) => {
            let text = e.render().to_string();
            return Err(FleetError::CompareOptions(
                text.lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .into(),
            ));
        }
    };
    let owned = [
        ("--output", compare.output.is_some()),
        ("--export-json", compare.export_json.is_some()),
        ("--export-csv", compare.export_csv.is_some()),
        ("--export-markdown", compare.export_markdown.is_some()),
    ];
    match owned.into_iter().find(|(_, set)| *set) {
        Some((option, _)) => Err(FleetError::FleetOwnedOption(option)),
        None => Ok(()),
    }
}

fn parse_positive_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err(format!(
            "`{s}`: the timeout must be between 0 and 86400 seconds"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn backends_split_on_commas_and_bad_numbers_are_rejected() {
        let cli = Cli::try_parse_from(["cvm", "compare", "-s", "web", "--backends", "native,vm"])
            .unwrap();
        let Command::Compare(args) = cli.command else {
            panic!("not compare")
        };
        assert_eq!(args.backends.unwrap(), ["native", "vm"]);
        assert!(Cli::try_parse_from(["cvm", "compare", "-s", "web", "--runs", "0"]).is_err());
        assert!(Cli::try_parse_from(["cvm", "compare", "-s", "web", "--timeout", "-3"]).is_err());
        assert!(Cli::try_parse_from(["cvm", "compare", "-s", "web", "--order", "random"]).is_err());
        let cli = Cli::try_parse_from(["cvm", "compare", "-s", "web", "--seed", "7"]).unwrap();
        let Command::Compare(args) = cli.command else {
            panic!("not compare")
        };
        assert_eq!((args.order, args.seed), (RunOrder::Interleaved, Some(7)));
        assert_eq!(args.options().unwrap().cgroup_state, None);
        let cli =
            Cli::try_parse_from(["cvm", "compare", "-s", "web", "--cgroup-state", "cold"]).unwrap();
        let Command::Compare(args) = cli.command else {
            panic!("not compare")
        };
        assert_eq!(
            args.options().unwrap().cgroup_state,
            Some(CgroupState::Cold)
        );
        let lukewarm = ["cvm", "compare", "-s", "web", "--cgroup-state", "lukewarm"];
        assert!(Cli::try_parse_from(lukewarm).is_err());
    }

    #[test]
    fn diff_thresholds_parse_and_bad_ones_are_rejected() {
        let cli = Cli::try_parse_from([
            "cvm",
            "diff",
            "a",
            "b",
            "--metric-threshold",
            "memory_pss=2",
            "--threshold",
            "10%",
        ])
        .unwrap();
        let Command::Diff(args) = cli.command else {
            panic!("not diff")
        };
        let o = args.thresholds.options();
        assert_eq!(o.threshold_for("memory_pss"), 0.02);
        assert_eq!(o.threshold_for("ready_latency"), 0.1);
        assert_eq!(o.alpha, crate::diff::DEFAULT_ALPHA);
        for bad in [
            &["--alpha", "1.5"][..],
            &["--threshold", "-1"],
            &["--metric-threshold", "memory_pss"],
        ] {
            let mut argv = vec!["cvm", "diff", "a", "b"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
        // --fail-on without --baseline makes no sense on compare.
        assert!(
            Cli::try_parse_from(["cvm", "compare", "-s", "web", "--fail-on", "change"]).is_err()
        );
        // --output is for --merge only.
        assert!(Cli::try_parse_from(["cvm", "report", "a", "-o", "x"]).is_err());
    }

    #[test]
    fn compare_options_are_checked_and_fleet_owned_ones_refused() {
        let ok: Vec<String> = ["--backends", "native,container", "--runs", "2"]
            .map(String::from)
            .into();
        assert!(check_compare_options("startup", &ok).is_ok());
        let bad = vec!["--runz".to_string(), "2".to_string()];
        let err = check_compare_options("startup", &bad).unwrap_err();
        assert!(err.to_string().contains("--runz"), "{err}");
        for owned in [&["-o", "d"][..], &["--export-csv=/tmp/x"]] {
            let owned: Vec<String> = owned.iter().map(|s| s.to_string()).collect();
            let err = check_compare_options("startup", &owned).unwrap_err();
            assert!(matches!(err, FleetError::FleetOwnedOption(_)), "{err}");
        }
    }
}
