//! `cvm fleet`: one scenario on every host of an Ansible inventory, then one merged report.
//!
//! cvm does not schedule hosts itself: Ansible does (no agent on the hosts, root through
//! `become`, `serial` for how many run at once, `async` for long runs, `fetch` under each
//! host's inventory name). The playbook and its role live in `deploy/ansible/` and are built into
//! this binary, with the package list they share with `scripts/setup.sh`, so a lone `cvm` binary
//! can drive a fleet. This module writes them to a temporary directory, runs `ansible-playbook`
//! with the variables the command line chose (Ansible's own output is the per-host progress),
//! and reads the summary the playbook's last play writes (`fleet.json`): which hosts succeeded,
//! which failed and at what step, and whether the merge worked.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Deserialize;

use crate::scenario::{self, ScenarioError};

/// The playbook tree, at the paths it has in the repository: the playbook finds the package
/// list at `../../scripts/packages/` both in a checkout and where this module writes it.
const PLAYBOOK_FILES: &[(&str, &str)] = &[
    (
        "deploy/ansible/fleet.yml",
        include_str!("../../deploy/ansible/fleet.yml"),
    ),
    (
        "deploy/ansible/roles/cvm/defaults/main.yml",
        include_str!("../../deploy/ansible/roles/cvm/defaults/main.yml"),
    ),
    (
        "deploy/ansible/roles/cvm/tasks/main.yml",
        include_str!("../../deploy/ansible/roles/cvm/tasks/main.yml"),
    ),
    (
        "deploy/ansible/roles/cvm/tasks/prereq.yml",
        include_str!("../../deploy/ansible/roles/cvm/tasks/prereq.yml"),
    ),
    (
        "deploy/ansible/roles/cvm/tasks/install.yml",
        include_str!("../../deploy/ansible/roles/cvm/tasks/install.yml"),
    ),
    (
        "deploy/ansible/roles/cvm/tasks/copy.yml",
        include_str!("../../deploy/ansible/roles/cvm/tasks/copy.yml"),
    ),
    (
        "deploy/ansible/roles/cvm/tasks/compare.yml",
        include_str!("../../deploy/ansible/roles/cvm/tasks/compare.yml"),
    ),
    (
        "deploy/ansible/roles/cvm/tasks/fetch.yml",
        include_str!("../../deploy/ansible/roles/cvm/tasks/fetch.yml"),
    ),
    (
        "scripts/packages/compare.txt",
        include_str!("../../scripts/packages/compare.txt"),
    ),
    (
        "scripts/packages/apps.txt",
        include_str!("../../scripts/packages/apps.txt"),
    ),
];
const PLAYBOOK: &str = "deploy/ansible/fleet.yml";

/// The binaries the playbook copies from beside `cvm` to every host.
pub const COMPANIONS: [&str; 2] = ["cvm-guest", "cvm-runtime"];

/// What the playbook's last play writes into the output directory.
pub const SUMMARY_FILE: &str = "fleet.json";

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("cannot install signal handlers")]
    Signals(#[source] io::Error),
    #[error(
        "ansible-playbook is not installed: `cvm fleet` runs its playbook with Ansible \
         (Debian/Ubuntu: apt-get install ansible-core; elsewhere: pip install ansible-core)"
    )]
    AnsibleMissing,
    #[error("cannot run ansible-playbook")]
    AnsibleSpawn(#[source] io::Error),
    #[error("cannot read the inventory {path}")]
    Inventory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the options after `--` are not `cvm compare` options: {0}")]
    CompareOptions(String),
    #[error("`{0}` cannot be passed to the hosts' `cvm compare`: the fleet chooses where results go (see --output)")]
    FleetOwnedOption(&'static str),
    #[error("cannot find {name} beside {exe} (the playbook copies it to every host; build the workspace: cargo build --workspace)")]
    CompanionMissing { name: &'static str, exe: PathBuf },
    #[error("cannot find the running cvm binary")]
    CurrentExe(#[source] io::Error),
    #[error("cannot create the output directory {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the playbook into {path}")]
    WritePlaybook {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the fleet summary {path} (ansible-playbook exited {status}; its output above says why)")]
    Summary {
        path: PathBuf,
        status: String,
        #[source]
        source: anyhow::Error,
    },
}

/// The playbook's account of a run (`fleet.json`).
#[derive(Debug, Deserialize)]
pub struct Summary {
    pub scenario: String,
    /// Hosts whose results were fetched, in inventory order.
    pub ok: Vec<String>,
    /// Hosts that failed, with the step and its error.
    pub failed: BTreeMap<String, String>,
    /// `ok`, `skipped`, or `failed: <error>`.
    pub merge: String,
    pub report: PathBuf,
}

impl FleetError {
    /// Whether the fault lies with what was asked (an inventory, a scenario, the options for
    /// the hosts, the output directory) rather than with the run.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            FleetError::Scenario(_)
                | FleetError::Inventory { .. }
                | FleetError::CompareOptions(_)
                | FleetError::FleetOwnedOption(_)
                | FleetError::Output { .. }
        )
    }
}

/// What `cvm fleet` is asked to do.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The Ansible inventory naming the hosts.
    pub inventory: PathBuf,
    /// A built-in scenario name, or a scenario file (copied to every host).
    pub scenario: String,
    /// How many hosts run at once [default: all].
    pub parallel: Option<u32>,
    /// Where results/<host>/, report/ and fleet.json go [default: reports/fleet-<run-id>].
    pub output: Option<PathBuf>,
    /// Seconds `cvm compare` may run on one host.
    pub time_limit: u32,
    /// Whether the hosts' results are merged into one report.
    pub merge: bool,
    /// Options for every host's `cvm compare`, already checked by the caller (they are the
    /// command line's to parse).
    pub compare: Vec<String>,
}

/// How a fleet run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetOutcome {
    /// Every host succeeded and the merge (if asked) worked.
    Done,
    /// Some host failed, or the merge did; the rest is in the output directory.
    SomeFailed,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
}

pub fn fleet(opts: &FleetOptions) -> Result<FleetOutcome, FleetError> {
    let plan = Plan::new(opts)?;
    // Ctrl-C reaches ansible-playbook too (same process group): it stops its hosts' tasks. cvm
    // waits for it rather than dying first, so the temporary playbook is removed.
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted)).map_err(FleetError::Signals)?;
    }
    let tree = PlaybookTree::write(&plan.run_id)?;
    let vars = tree.dir.join("vars.json");
    std::fs::write(&vars, plan.vars().to_string()).map_err(|source| FleetError::WritePlaybook {
        path: vars.clone(),
        source,
    })?;
    eprintln!(
        "cvm fleet: scenario {} on the hosts of {}, results in {}",
        opts.scenario,
        opts.inventory.display(),
        plan.out_dir.display()
    );
    let status = Command::new("ansible-playbook")
        .arg("-i")
        .arg(&opts.inventory)
        .arg(tree.dir.join(PLAYBOOK))
        .arg("-e")
        .arg(format!("@{}", vars.display()))
        .status()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                FleetError::AnsibleMissing
            } else {
                FleetError::AnsibleSpawn(e)
            }
        })?;
    drop(tree);
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("cvm fleet: interrupted");
        return Ok(FleetOutcome::Interrupted);
    }
    let path = plan.out_dir.join(SUMMARY_FILE);
    let summary = read_summary(&path).map_err(|source| FleetError::Summary {
        path: path.clone(),
        status: status.to_string(),
        source,
    })?;
    print!("{}", render(&summary, &plan.out_dir));
    Ok(
        if summary.failed.is_empty() && !summary.merge.starts_with("failed") {
            FleetOutcome::Done
        } else {
            FleetOutcome::SomeFailed
        },
    )
}

pub fn read_summary(path: &Path) -> anyhow::Result<Summary> {
    let text = std::fs::read_to_string(path)?;
    Ok(serde_json::from_str(&text)?)
}

/// The per-host table printed at the end: every host of the run, then the merged report.
pub fn render(summary: &Summary, out_dir: &Path) -> String {
    let total = summary.ok.len() + summary.failed.len();
    let width = summary
        .ok
        .iter()
        .chain(summary.failed.keys())
        .map(String::len)
        .max()
        .unwrap_or(0);
    let mut text = format!(
        "cvm fleet: {} of {total} hosts ran {}\n",
        summary.ok.len(),
        summary.scenario
    );
    for host in &summary.ok {
        let dir = out_dir.join("results").join(host);
        text += &format!("  {host:<width$}  ok      {}\n", dir.display());
    }
    for (host, why) in &summary.failed {
        let why = why.split_whitespace().collect::<Vec<_>>().join(" ");
        text += &format!("  {host:<width$}  FAILED  {why}\n");
    }
    text += &match summary.merge.as_str() {
        "ok" => format!(
            "cvm fleet: merged report of {} in {}\n",
            summary.ok.join(", "),
            summary.report.display()
        ),
        "skipped" => match summary.ok.as_slice() {
            [one] => format!(
                "cvm fleet: nothing to merge, only {one} succeeded: its report is in {}\n",
                out_dir.join("results").join(one).display()
            ),
            _ => "cvm fleet: no merged report (--no-merge, or no host succeeded)\n".into(),
        },
        failed => format!("cvm fleet: merging failed: {failed}\n"),
    };
    if !summary.failed.is_empty() {
        let names: Vec<&str> = summary.failed.keys().map(String::as_str).collect();
        text += &format!("cvm fleet: failed hosts: {}\n", names.join(", "));
    }
    text
}

/// What one `cvm fleet` asks of the playbook, checked before Ansible starts.
struct Plan {
    run_id: String,
    out_dir: PathBuf,
    cvm_bin: PathBuf,
    scenario: String,
    scenario_file: Option<PathBuf>,
    compare: Vec<String>,
    parallel: Option<u32>,
    time_limit: u32,
    merge: bool,
}

impl Plan {
    fn new(args: &FleetOptions) -> Result<Plan, FleetError> {
        std::fs::metadata(&args.inventory).map_err(|source| FleetError::Inventory {
            path: args.inventory.clone(),
            source,
        })?;
        let scenario = scenario::load(&args.scenario)?;
        let is_file = !scenario::builtin_names().contains(&args.scenario.as_str())
            || args.scenario.contains('/')
            || args.scenario.ends_with(".toml");
        let scenario_file = if is_file {
            Some(absolute(Path::new(&args.scenario)))
        } else {
            None
        };

        let cvm_bin = std::env::current_exe().map_err(FleetError::CurrentExe)?;
        for name in COMPANIONS {
            if !cvm_bin.with_file_name(name).is_file() {
                return Err(FleetError::CompanionMissing {
                    name,
                    exe: cvm_bin.clone(),
                });
            }
        }

        let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let run_id = format!(
            "{}-{}",
            started.replace([':', '-'], "").trim_end_matches('Z'),
            scenario.name
        );
        let out_dir = absolute(
            &args
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from("reports").join(format!("fleet-{run_id}"))),
        );
        std::fs::create_dir_all(&out_dir).map_err(|source| FleetError::Output {
            path: out_dir.clone(),
            source,
        })?;
        // A summary left by an earlier run in the same directory must not pass for this one's.
        let _ = std::fs::remove_file(out_dir.join(SUMMARY_FILE));
        Ok(Plan {
            run_id,
            out_dir,
            cvm_bin,
            scenario: args.scenario.clone(),
            scenario_file,
            compare: args.compare.clone(),
            parallel: args.parallel,
            time_limit: args.time_limit,
            merge: args.merge,
        })
    }

    /// The playbook's extra variables (see `deploy/ansible/roles/cvm/defaults/main.yml`).
    fn vars(&self) -> serde_json::Value {
        let mut vars = serde_json::json!({
            "cvm_scenario": self.scenario,
            "cvm_compare_args": self.compare,
            "cvm_local_bin": self.cvm_bin,
            "cvm_local_companions": COMPANIONS,
            "cvm_fleet_dir": self.out_dir,
            "cvm_time_limit": self.time_limit,
            "cvm_run_id": self.run_id,
            "cvm_merge": self.merge,
        });
        if let Some(file) = &self.scenario_file {
            vars["cvm_scenario_file"] = serde_json::json!(file);
        }
        if let Some(n) = self.parallel {
            vars["cvm_parallel"] = serde_json::json!(n);
        }
        vars
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The playbook written out for one run, removed on drop.
struct PlaybookTree {
    dir: PathBuf,
}

impl PlaybookTree {
    fn write(run_id: &str) -> Result<PlaybookTree, FleetError> {
        let dir = std::env::temp_dir().join(format!("cvm-fleet-{run_id}-{}", std::process::id()));
        let tree = PlaybookTree { dir };
        for (rel, text) in PLAYBOOK_FILES {
            let path = tree.dir.join(rel);
            path.parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, text))
                .map_err(|source| FleetError::WritePlaybook {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(tree)
    }
}

impl Drop for PlaybookTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_playbook_is_built_in() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk = Vec::new();
        let mut dirs = vec![repo.join("deploy/ansible")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yml") {
                    on_disk.push(path.strip_prefix(repo).unwrap().display().to_string());
                }
            }
        }
        for file in &on_disk {
            assert!(
                PLAYBOOK_FILES.iter().any(|(rel, _)| rel == file),
                "{file} is in deploy/ansible but not built into cvm (PLAYBOOK_FILES)"
            );
        }
        assert!(PLAYBOOK_FILES
            .iter()
            .any(|(rel, _)| *rel == "scripts/packages/compare.txt"));
    }

    #[test]
    fn the_summary_names_every_failed_host_and_the_merge() {
        let summary: Summary = serde_json::from_str(
            r#"{"scenario": "startup", "ok": ["a", "b"],
                "failed": {"c": "unreachable: Connection\n refused"},
                "merge": "ok", "report": "/out/report"}"#,
        )
        .unwrap();
        let text = render(&summary, Path::new("/out"));
        assert!(text.contains("2 of 3 hosts"), "{text}");
        assert!(text.contains("a  ok      /out/results/a"), "{text}");
        assert!(
            text.contains("c  FAILED  unreachable: Connection refused"),
            "{text}"
        );
        assert!(
            text.contains("merged report of a, b in /out/report"),
            "{text}"
        );
        assert!(text.contains("failed hosts: c"), "{text}");
    }

    #[test]
    fn one_successful_host_is_pointed_to_not_merged() {
        let summary: Summary = serde_json::from_str(
            r#"{"scenario": "startup", "ok": ["a"], "failed": {"b": "unreachable"},
                "merge": "skipped", "report": "/out/report"}"#,
        )
        .unwrap();
        let text = render(&summary, Path::new("/out"));
        assert!(
            text.contains("only a succeeded: its report is in /out/results/a"),
            "{text}"
        );
    }
}
