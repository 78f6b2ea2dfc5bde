//! `cvm compare --scenario SUITE`: every member scenario compared in turn, each into a folder of
//! its own under the suite's results directory, with the same options (the command line's,
//! else the suite's, else the member's own). Every member is resolved before the first is
//! measured, so a bad member or flag is refused at once; a member that fails to run does not
//! stop the others, and an interrupt stops the suite after the member under way (whose samples
//! are kept, like every finished member's).

use std::path::{Path, PathBuf};

use super::{compare, results_dir, setup::Setup, CompareError, CompareOptions, Compared};
use crate::results::RunStatus;
use crate::scenario::Suite;

/// One member: its folder and how its comparison ended.
pub struct Member {
    pub name: String,
    pub dir: PathBuf,
    pub outcome: Result<Compared, CompareError>,
}

/// A suite's run: where its members' folders are, and each member's outcome in order.
pub struct SuiteCompared {
    pub out_dir: PathBuf,
    pub members: Vec<Member>,
    /// Whether a signal stopped the suite (the members after the one it stopped are not run).
    pub interrupted: bool,
}

/// The options one member runs with: what the command line says, else the suite's.
fn member_options(
    opts: &CompareOptions,
    suite: &Suite,
    member: &str,
    dir: &Path,
) -> CompareOptions {
    CompareOptions {
        scenario: member.to_string(),
        backends: opts.backends.clone().or_else(|| suite.backends.clone()),
        runs: opts.runs.or(suite.runs),
        warmup: opts.warmup.or(suite.warmup),
        output: Some(dir.to_path_buf()),
        baseline: None,
        ..opts.clone()
    }
}

/// Each member's folder name (its scenario's name, made unique) and options, every member
/// resolved as `compare` would resolve it.
fn plan(
    opts: &CompareOptions,
    suite: &Suite,
    out: &Path,
) -> Result<Vec<(String, CompareOptions)>, CompareError> {
    let mut planned: Vec<(String, CompareOptions)> = Vec::new();
    for member in &suite.scenarios {
        let probe = member_options(opts, suite, member, out);
        let setup = Setup::resolve(&probe)?;
        let base = setup.scenario.name.clone();
        let mut name = base.clone();
        let mut n = 2;
        while planned.iter().any(|(taken, _)| *taken == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let member_opts = member_options(opts, suite, member, &out.join(&name));
        planned.push((name, member_opts));
    }
    Ok(planned)
}

/// Runs every member of `suite`; the caller renders the site from the members' folders.
pub fn compare_suite(opts: &CompareOptions, suite: &Suite) -> Result<SuiteCompared, CompareError> {
    if opts.baseline.is_some() {
        return Err(CompareError::SuiteBaseline {
            suite: suite.name.clone(),
        });
    }
    // Resolved against a folder that does not exist yet: only names and settings are checked.
    let planned = plan(opts, suite, Path::new("."))?;
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let run_id = format!(
        "{}-{}",
        started.replace([':', '-'], "").trim_end_matches('Z'),
        suite.name
    );
    let (_, out) = results_dir::folder(opts.output.as_deref(), Path::new("reports"), &run_id)?;
    let total = planned.len();
    let mut members = Vec::new();
    let mut interrupted = false;
    for (i, (name, member_opts)) in planned.into_iter().enumerate() {
        let dir = out.join(&name);
        eprintln!("cvm: {} {}/{total}: {name}", suite.name, i + 1);
        let member_opts = CompareOptions {
            output: Some(dir.clone()),
            ..member_opts
        };
        let outcome = compare(&member_opts);
        let stop = match &outcome {
            Ok(c) => c.status == RunStatus::Interrupted || c.forced.is_some(),
            Err(e) => {
                let mut said = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    said.push_str(&format!(": {s}"));
                    source = s.source();
                }
                eprintln!("cvm: {name} failed, the suite goes on: {said}");
                false
            }
        };
        members.push(Member { name, dir, outcome });
        if stop {
            interrupted = true;
            break;
        }
    }
    Ok(SuiteCompared {
        out_dir: out,
        members,
        interrupted,
    })
}
