//! The command line (clap derive). Parsing only: each subcommand's work lives in its own module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::backend::vm::accel::AccelChoice;

#[derive(Debug, Parser)]
#[command(
    name = "cvm",
    version,
    about = "Containers vs VMs, measured: the same workload, from the same image, on every isolation backend",
    long_about = "cvm launches the same workload from the same image natively, in containers (its own \
runtime, runc, crun, Docker) and in QEMU guests, and measures startup phases, memory, disk and \
throughput with warm-up runs, medians and bootstrap confidence intervals.\n\n\
Exit codes: 0 done, 1 a run failed, 2 bad input or usage, 130 interrupted.",
    after_help = "Examples:\n  cvm compare --scenario web\n  cvm compare --scenario startup --backends native,container --runs 30\n  cvm doctor\n  cvm report reports/latest"
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
    /// Re-render summary and report from a results directory's samples.csv
    Report(ReportArgs),
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
    /// A built-in scenario name (see `cvm scenarios`) or a path to a scenario TOML file
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

    /// Hide the progress bar even on a terminal
    #[arg(long)]
    pub no_progress: bool,

    /// Which QEMU accelerator VM backends use (auto probes KVM by booting a guest)
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,

    /// The `vm` backend's guest kernel: `distro` (found under /boot), `minimal` (cvm's own,
    /// from `cvm kernel build`; `vm` then runs as `vm-minimal`) or a bzImage PATH, which
    /// `vm-classic` boots too [default: the scenario's `[vm] kernel`, else distro]
    #[arg(long, value_name = "minimal|distro|PATH", env = "CVM_KERNEL")]
    pub kernel: Option<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Guest kernel (bzImage) to check the VM backends with [default: found under /boot]
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A results directory written by `cvm compare` (holds samples.csv)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Also write a Markdown summary table to this file
    #[arg(long, value_name = "FILE")]
    pub export_markdown: Option<PathBuf>,
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
    }
}
