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
    /// The comparison, or why it could not be made (its error chain, as said on stderr).
    pub outcome: Result<Compared, String>,
}

/// A suite's run: where its members' folders are, and each member's outcome in order.
pub struct SuiteCompared {
    pub out_dir: PathBuf,
    pub members: Vec<Member>,
    /// Whether a signal stopped the suite (the members after the one it stopped are not run).
    pub interrupted: bool,
}

/// The options one member runs with: what the command line says, else the suite's; its
/// folder is set once the suite's own is made.
fn member_options(opts: &CompareOptions, suite: &Suite, member: &str) -> CompareOptions {
    CompareOptions {
        scenario: member.to_string(),
        backends: opts.backends.clone().or_else(|| suite.backends.clone()),
        runs: opts.runs.or(suite.runs),
        warmup: opts.warmup.or(suite.warmup),
        output: None,
        baseline: None,
        ..opts.clone()
    }
}

/// Each member's folder name (its scenario's name, made unique) and options, every member
/// resolved as `compare` would resolve it (names and settings only: nothing is made).
fn plan(
    opts: &CompareOptions,
    suite: &Suite,
) -> Result<Vec<(String, CompareOptions)>, CompareError> {
    let mut planned: Vec<(String, CompareOptions)> = Vec::new();
    for member in &suite.scenarios {
        let member_opts = member_options(opts, suite, member);
        let base = Setup::resolve(&member_opts)?.scenario.name;
        let mut name = base.clone();
        let mut n = 2;
        while planned.iter().any(|(taken, _)| *taken == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
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
    let planned = plan(opts, suite)?;
    let (_, out) = results_dir::folder(
        opts.output.as_deref(),
        Path::new("reports"),
        &super::run_id(&suite.name),
    )?;
    let total = planned.len();
    let mut members = Vec::new();
    let mut interrupted = false;
    for (i, (name, member_opts)) in planned.into_iter().enumerate() {
        let dir = out.join(&name);
        eprintln!("cvm: {} {}/{total}: {name}", suite.name, i + 1);
        let outcome = compare(&CompareOptions {
            output: Some(dir.clone()),
            ..member_opts
        })
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)));
        let stop = match &outcome {
            Ok(c) => c.status == RunStatus::Interrupted || c.forced.is_some(),
            Err(said) => {
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
