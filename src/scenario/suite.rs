//! Suites: several scenarios run one after another as one comparison, with one site of reports
//! at the end. A suite file has a `[suite]` table naming its scenarios (built-in names, or paths
//! relative to the suite file) and what every member runs with where the command line does not
//! say: the backends, the runs, the warm-ups, and the published figures (`reference`) its site
//! sets beside the measured ones.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::load::{line_col, load, looks_like_path, ScenarioError};
use super::model::BackendKind;

/// The built-in suites, embedded like the built-in scenarios.
const BUILTINS: &[(&str, &str)] = &[("study", include_str!("../../scenarios/study.toml"))];

/// The published figures a suite may name as its `reference`; the figures themselves are the
/// report's (a test there checks it has each of these).
pub const REFERENCES: &[&str] = &["felter-2014"];

/// A suite, parsed and checked: every member loads as a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    pub description: String,
    /// Each member as `cvm compare --scenario` takes it: a built-in name or a path.
    pub scenarios: Vec<String>,
    pub backends: Option<Vec<String>>,
    pub runs: Option<u32>,
    pub warmup: Option<u32>,
    /// The published figures the site compares with: one of [`REFERENCES`].
    pub reference: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read suite file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{col}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{origin}: member scenario `{member}` cannot be used")]
    Member {
        origin: String,
        member: String,
        #[source]
        source: ScenarioError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    name: String,
    #[serde(default)]
    description: String,
    suite: SuiteTable,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteTable {
    scenarios: toml::Spanned<Vec<String>>,
    #[serde(default)]
    backends: Option<toml::Spanned<Vec<String>>>,
    #[serde(default)]
    runs: Option<toml::Spanned<u32>>,
    #[serde(default)]
    warmup: Option<u32>,
    #[serde(default)]
    reference: Option<toml::Spanned<String>>,
}

/// The built-in suites' names and descriptions, for `cvm scenarios`.
pub fn builtin_suites() -> Vec<Result<Suite, SuiteError>> {
    BUILTINS
        .iter()
        .map(|(name, text)| parse_suite(text, &format!("<built-in {name}>"), None))
        .collect()
}

/// The suite `name_or_path` names, if it names one: a built-in suite, or a file with a
/// `[suite]` table. `Ok(None)` for anything else (a scenario, or nothing at all), which the
/// scenario loader then judges.
pub fn find_suite(name_or_path: &str) -> Result<Option<Suite>, SuiteError> {
    if !looks_like_path(name_or_path) {
        return BUILTINS
            .iter()
            .find(|(n, _)| *n == name_or_path)
            .map(|(name, text)| parse_suite(text, &format!("<built-in {name}>"), None))
            .transpose();
    }
    let path = Path::new(name_or_path);
    let Ok(text) = std::fs::read_to_string(path) else {
        // A missing or unreadable file is the scenario loader's to report.
        return Ok(None);
    };
    let is_suite = toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("suite"));
    if !is_suite {
        return Ok(None);
    }
    parse_suite(&text, &path.display().to_string(), path.parent()).map(Some)
}

/// Parses and checks a suite; members that are paths are taken relative to `dir`.
pub fn parse_suite(text: &str, origin: &str, dir: Option<&Path>) -> Result<Suite, SuiteError> {
    let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
        let (line, col) = line_col(text, span.map_or(0, |s| s.start));
        SuiteError::Invalid {
            origin: origin.to_string(),
            line,
            col,
            message,
        }
    };
    let file: SuiteFile =
        toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim().to_string()))?;
    let t = file.suite;
    if t.scenarios.get_ref().is_empty() {
        return Err(invalid(
            Some(t.scenarios.span()),
            "a suite names at least one scenario".into(),
        ));
    }
    if let Some(runs) = &t.runs {
        if *runs.get_ref() == 0 {
            return Err(invalid(Some(runs.span()), "runs must be at least 1".into()));
        }
    }
    if let Some(backends) = &t.backends {
        for b in backends.get_ref() {
            if let Err(e) = b.parse::<BackendKind>() {
                return Err(invalid(Some(backends.span()), e));
            }
        }
    }
    if let Some(r) = &t.reference {
        if !REFERENCES.contains(&r.get_ref().as_str()) {
            return Err(invalid(
                Some(r.span()),
                format!(
                    "unknown reference `{}`; known: {}",
                    r.get_ref(),
                    REFERENCES.join(", ")
                ),
            ));
        }
    }
    let scenarios = members(t.scenarios.get_ref(), dir, origin)?;
    Ok(Suite {
        name: file.name,
        description: file.description,
        scenarios,
        backends: t.backends.map(|b| b.into_inner()),
        runs: t.runs.map(|r| r.into_inner()),
        warmup: t.warmup,
        reference: t.reference.map(|r| r.into_inner()),
    })
}

/// Each member, resolved against the suite's folder and loaded once to prove it is usable.
fn members(names: &[String], dir: Option<&Path>, origin: &str) -> Result<Vec<String>, SuiteError> {
    names
        .iter()
        .map(|m| {
            let resolved = match dir {
                Some(d) if looks_like_path(m) && Path::new(m).is_relative() => {
                    d.join(m).to_string_lossy().into_owned()
                }
                _ => m.clone(),
            };
            load(&resolved).map_err(|source| SuiteError::Member {
                origin: origin.to_string(),
                member: m.clone(),
                source,
            })?;
            Ok(resolved)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let e = parse_suite(text, "s.toml", None).unwrap_err();
        let mut s = e.to_string();
        if let Some(source) = std::error::Error::source(&e) {
            s.push_str(&format!(": {source}"));
        }
        s
    }

    #[test]
    fn the_builtin_suites_parse_and_every_member_loads() {
        for s in builtin_suites() {
            let s = s.unwrap();
            assert!(!s.scenarios.is_empty());
            assert!(REFERENCES.contains(&s.reference.as_deref().unwrap()));
        }
        let study = find_suite("study").unwrap().unwrap();
        assert!(study.scenarios.contains(&"redis".to_string()));
        assert!(find_suite("web").unwrap().is_none());
    }

    #[test]
    fn bad_suites_are_refused_with_their_position() {
        let head = "name = \"s\"\n[suite]\n";
        let e = err(&format!("{head}scenarios = []\n"));
        assert!(
            e.starts_with("s.toml:3:") && e.contains("at least one"),
            "{e}"
        );
        let e = err(&format!("{head}scenarios = [\"web\", \"nope\"]\n"));
        assert!(
            e.contains("member scenario `nope`") && e.contains("built-in"),
            "{e}"
        );
        let e = err(&format!(
            "{head}scenarios = [\"web\"]\nbackends = [\"vmm\"]\n"
        ));
        assert!(e.starts_with("s.toml:4:") && e.contains("`vmm`"), "{e}");
        let e = err(&format!("{head}scenarios = [\"web\"]\nruns = 0\n"));
        assert!(e.contains("at least 1"), "{e}");
        let e = err(&format!("{head}scenarios = [\"web\"]\nreference = \"x\"\n"));
        assert!(e.contains("unknown reference `x`"), "{e}");
        let e = err(&format!("{head}scenarios = [\"web\"]\nrunz = 3\n"));
        assert!(e.starts_with("s.toml:4:") && e.contains("runz"), "{e}");
    }

    #[test]
    fn a_suite_file_is_found_by_path_and_its_members_by_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "name = \"mine\"\n[workload]\napplet = \"hello\"\n",
        )
        .unwrap();
        let suite = dir.path().join("suite.toml");
        std::fs::write(
            &suite,
            "name = \"two\"\n[suite]\nscenarios = [\"cpu\", \"mine.toml\"]\nruns = 2\n",
        )
        .unwrap();
        let s = find_suite(suite.to_str().unwrap()).unwrap().unwrap();
        assert_eq!(s.scenarios[0], "cpu");
        assert_eq!(Path::new(&s.scenarios[1]), dir.path().join("mine.toml"));
        assert_eq!(s.runs, Some(2));
        // A scenario file is not a suite.
        let plain = dir.path().join("mine.toml");
        assert!(find_suite(plain.to_str().unwrap()).unwrap().is_none());
    }
}
