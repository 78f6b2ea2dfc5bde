//! Bounds files and `cvm check RESULTS --bounds FILE`: what a run's figures must stay within.
//!
//! A bound names a backend, a metric and limits on the metric's median — absolute (in the
//! metric's SI unit), or as a ratio to another backend's median in the same run — with a lower
//! and an upper side, either or both. Ratios travel between hosts far better than absolute
//! limits, which is why the project's own goals (`bounds/goals.toml`) are mostly ratios, and a
//! lower side catches a figure that became implausibly good (a measurement that broke).
//!
//! ```toml
//! [[bound]]
//! backend = "container"
//! metric = "ready_latency"
//! ratio_to = "runc"      # optional: the limits are on container / runc
//! max = 0.2              # optional, at least one of min and max
//! min = 0.01
//! required = false       # a bound whose backend or metric is not in the run is skipped
//! note = "why this bound"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::results::{self, RunSummary};
use crate::scenario::BackendKind;
use cvm_proto::metric::{Metric, DISK_PREFIX, PER_INSTANCES_SEPARATOR, PHASE_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum BoundsError {
    #[error("cannot read the bounds file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: bound {index} ({backend} {metric}): {message}")]
    Invalid {
        path: PathBuf,
        index: usize,
        backend: String,
        metric: String,
        message: String,
    },
    #[error("{dir} is not a cvm results directory (no {file})")]
    NotResults { dir: PathBuf, file: &'static str },
    #[error("cannot read the results")]
    ReadResults(#[source] results::ResultsError),
}

/// One entry of a bounds file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    pub backend: String,
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Whether a run without this backend or metric fails the bound (default: skipped).
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundsFile {
    #[serde(default)]
    bound: Vec<Bound>,
}

fn known_metric(name: &str) -> bool {
    let base = name
        .split_once(PER_INSTANCES_SEPARATOR)
        .map_or(name, |(m, _)| m);
    Metric::from_name(base).is_some()
        || base.starts_with(PHASE_PREFIX)
        || base.starts_with(DISK_PREFIX)
}

/// Parses and validates a bounds file's text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Bound>, BoundsError> {
    let file: BoundsFile = toml::from_str(text).map_err(|e| BoundsError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    if file.bound.is_empty() {
        return Err(BoundsError::Parse {
            path: path.to_path_buf(),
            message: "no [[bound]] entries".into(),
        });
    }
    for (i, b) in file.bound.iter().enumerate() {
        let invalid = |message: String| BoundsError::Invalid {
            path: path.to_path_buf(),
            index: i + 1,
            backend: b.backend.clone(),
            metric: b.metric.clone(),
            message,
        };
        for name in std::iter::once(&b.backend).chain(&b.ratio_to) {
            name.parse::<BackendKind>().map_err(invalid)?;
        }
        if !known_metric(&b.metric) {
            return Err(invalid(format!(
                "unknown metric `{}` (see docs/metrics.md)",
                b.metric
            )));
        }
        match (b.min, b.max) {
            (None, None) => return Err(invalid("give min, max or both".into())),
            (Some(lo), Some(hi)) if lo > hi => {
                return Err(invalid(format!("min {lo} is above max {hi}")))
            }
            _ => {}
        }
        if [b.min, b.max].iter().flatten().any(|v| !v.is_finite()) {
            return Err(invalid("limits must be finite numbers".into()));
        }
        if b.ratio_to.as_deref() == Some(b.backend.as_str()) {
            return Err(invalid("a ratio to itself is always 1".into()));
        }
    }
    Ok(file.bound)
}

pub fn load(path: &Path) -> Result<Vec<Bound>, BoundsError> {
    let text = std::fs::read_to_string(path).map_err(|source| BoundsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// How one bound fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Holds,
    Fails,
    /// The backend or metric is not in the run, and the bound is not required.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checked {
    pub bound: Bound,
    /// The median, or the ratio of medians, that was checked.
    pub value: Option<f64>,
    pub unit: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// Checks every bound against a run's summary.
pub fn check(bounds: &[Bound], s: &RunSummary) -> Vec<Checked> {
    bounds.iter().map(|b| check_one(b, s)).collect()
}

fn median(s: &RunSummary, backend: &str, metric: &str) -> Option<(f64, String)> {
    let m = s.backend(backend)?.metrics.get(metric)?;
    Some((m.stats.median, m.unit.clone()))
}

fn check_one(b: &Bound, s: &RunSummary) -> Checked {
    let missing = |what: String| Checked {
        bound: b.clone(),
        value: None,
        unit: String::new(),
        outcome: if b.required {
            Outcome::Fails
        } else {
            Outcome::Skipped
        },
        detail: what,
    };
    let Some((v, unit)) = median(s, &b.backend, &b.metric) else {
        return missing(format!("{} has no {} in this run", b.backend, b.metric));
    };
    let (value, unit) = match &b.ratio_to {
        None => (v, unit),
        Some(other) => {
            let Some((base, _)) = median(s, other, &b.metric) else {
                return missing(format!("{other} has no {} in this run", b.metric));
            };
            if base <= 0.0 {
                return missing(format!("{other}'s median {} is not above 0", b.metric));
            }
            (v / base, "×".to_string())
        }
    };
    let low = b.min.filter(|lo| value < *lo);
    let high = b.max.filter(|hi| value > *hi);
    let shown = |x: f64| {
        if b.ratio_to.is_some() {
            format!("{x:.3}×")
        } else {
            crate::text::format_value(x, &unit)
        }
    };
    let range = match (b.min, b.max) {
        (Some(lo), Some(hi)) => format!("within [{}, {}]", shown(lo), shown(hi)),
        (Some(lo), None) => format!("≥ {}", shown(lo)),
        (None, Some(hi)) => format!("≤ {}", shown(hi)),
        (None, None) => String::new(),
    };
    let (outcome, detail) = match (low, high) {
        (None, None) => (Outcome::Holds, format!("{} {range}", shown(value))),
        _ => (Outcome::Fails, format!("{} is not {range}", shown(value))),
    };
    Checked {
        bound: b.clone(),
        value: Some(value),
        unit,
        outcome,
        detail,
    }
}

/// The terminal report of a check, one line per bound and a count.
pub fn render(checked: &[Checked]) -> String {
    let mut o = String::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in checked {
        let word = match c.outcome {
            Outcome::Holds => "holds",
            Outcome::Fails => "FAILS",
            Outcome::Skipped => "skipped",
        };
        *counts.entry(word).or_default() += 1;
        let subject = match &c.bound.ratio_to {
            Some(o) => format!("{} / {o} {}", c.bound.backend, c.bound.metric),
            None => format!("{} {}", c.bound.backend, c.bound.metric),
        };
        o.push_str(&format!("{word:<8} {subject}: {}", c.detail));
        if !c.bound.note.is_empty() && c.outcome == Outcome::Fails {
            o.push_str(&format!(" — {}", c.bound.note));
        }
        o.push('\n');
    }
    o.push_str(&format!(
        "{} bound(s): {} hold, {} fail, {} skipped\n",
        checked.len(),
        counts.get("holds").unwrap_or(&0),
        counts.get("FAILS").unwrap_or(&0),
        counts.get("skipped").unwrap_or(&0)
    ));
    o
}

/// Reads a results directory's summary (recomputed from its samples, as `cvm report` does).
pub fn summary_of(dir: &Path) -> Result<RunSummary, BoundsError> {
    for file in [results::META_FILE, results::SAMPLES_FILE] {
        if !dir.join(file).is_file() {
            return Err(BoundsError::NotResults {
                dir: dir.to_path_buf(),
                file,
            });
        }
    }
    let meta =
        results::RunMeta::read(&dir.join(results::META_FILE)).map_err(BoundsError::ReadResults)?;
    let rows = results::read_samples(&dir.join(results::SAMPLES_FILE))
        .map_err(BoundsError::ReadResults)?;
    Ok(results::summarize(&meta, &rows))
}

#[cfg(test)]
mod tests;
