//! `cvm diff BASE NEW`: did anything change between two results directories, beyond noise?
//!
//! Per backend and metric both runs measured: the two medians, the relative change of the
//! median, an interval of the difference of medians (with its level: order statistics below 10
//! runs a side, [`crate::stats::twosample`]), and a permutation-test p-value (difference of
//! means, [`crate::stats::ab`]). The rows are one family of tests: their p-values are adjusted
//! by Benjamini–Hochberg ([`CORRECTION`]) so that hundreds of rows do not turn noise into
//! changes. A change counts only when the adjusted q < α *and* the relative change exceeds the
//! metric's noise threshold — Firecracker's A/B rule — and it is a regression or an improvement
//! by the metric's direction ([`cvm_proto::metric::Better`]).
//!
//! A diff says what it cannot tell. With few runs the exact test cannot reach α at all (4 runs
//! a side: p ≥ 0.029), so such a row is `untested (needs ≥ N runs a side)`, not `no change`,
//! and the diff counts those rows and says what a lone change among the family would need.
//!
//! A run measures the host as well as the backends: `launch_floor`, a plain fork and exec of a
//! trivial program with no isolation, interleaved with the native runs. It is the diff's
//! control. When it changed too (q < α, beyond its threshold), the host itself got slower or
//! faster between the runs (another load, a frequency or a kernel state), and a time or rate
//! change in the same direction and of a comparable size (at most [`HOST_FACTOR`] times the
//! floor's relative change) cannot be told apart from it: such rows are `host changed`, not
//! regressions or improvements, and the diff says why. A larger change is still the backend's. Two runs of the same commit taken minutes
//! apart on a shared 2-CPU host showed exactly this (every container time +90–570 % together
//! with the floor's +129 %, p = 0.008 each).
//!
//! Bad input is two runs that cannot be compared: different scenarios or backend sets (the
//! error names what differs). Runs from different hosts, or hosts with different fingerprints,
//! compare with a warning that the page and the table show.

pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::results::{self, measured_series, read_samples, RunMeta, RUN_FAILED};
use crate::stats::{self, ab, Estimate};
use cvm_proto::metric::{better_by_name, Better, Metric, Unit};

/// Significance level a change must reach.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// Relative change of the median a change must exceed, as a fraction.
pub const DEFAULT_THRESHOLD: f64 = 0.05;
/// The multiple-comparison correction over a diff's rows, as the output names it.
pub const CORRECTION: &str = "Benjamini–Hochberg";

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{dir} is not a cvm results directory (no {file})")]
    NotResults { dir: PathBuf, file: &'static str },
    #[error("cannot read the run's metadata")]
    ReadMeta(#[source] results::ResultsError),
    #[error("cannot read the samples")]
    ReadSamples(#[source] results::ResultsError),
    #[error(
        "the runs are of different scenarios ({base:?} in the base, {new:?} in the new run): \
         diff two runs of the same scenario"
    )]
    ScenarioDiffers { base: String, new: String },
    #[error(
        "the runs are of different backend sets (only in the base: {only_base}; only in the new \
         run: {only_new}): run both with the same --backends"
    )]
    BackendsDiffer { only_base: String, only_new: String },
}

/// What makes a change count.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffOptions {
    pub alpha: f64,
    /// Default noise threshold (fraction of the base median).
    pub threshold: f64,
    /// Per-metric thresholds (fractions) that replace the default.
    pub metric_thresholds: BTreeMap<String, f64>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            alpha: DEFAULT_ALPHA,
            threshold: DEFAULT_THRESHOLD,
            metric_thresholds: BTreeMap::new(),
        }
    }
}

impl DiffOptions {
    pub fn threshold_for(&self, metric: &str) -> f64 {
        self.metric_thresholds
            .get(metric)
            .copied()
            .unwrap_or(self.threshold)
    }
}

/// What one backend × metric comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Significant, beyond the threshold, and worse by the metric's direction.
    Regression,
    /// Significant, beyond the threshold, and better.
    Improvement,
    /// Significant and beyond the threshold, for a metric with no better direction.
    Changed,
    /// Not significant, or within the noise threshold.
    Unchanged,
    /// No test: too few runs for the test to reach α (see [`MetricDiff::needs_runs`]), or a
    /// figure measured once per backend (disk).
    Untested,
    /// A significant time or rate change in the same direction as the host's own (its
    /// `launch_floor` changed too): not attributed to the backend.
    HostChanged,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improvement",
            Verdict::Changed => "changed",
            Verdict::Unchanged => "no change",
            Verdict::Untested => "untested",
            Verdict::HostChanged => "host changed",
        }
    }

    /// Whether the change counts (for `--fail-on change`): a change the host made is still a
    /// change.
    pub fn counts(self) -> bool {
        matches!(
            self,
            Verdict::Regression | Verdict::Improvement | Verdict::Changed | Verdict::HostChanged
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDiff {
    pub backend: String,
    pub metric: String,
    pub unit: String,
    pub base_n: usize,
    pub new_n: usize,
    pub base_median: f64,
    pub new_median: f64,
    /// `(new - base) / |base|` of the medians; infinite when the base median is 0.
    pub change: f64,
    /// `new - base` of the medians with its interval (and that interval's level).
    pub difference: Option<Estimate>,
    pub p_value: f64,
    /// `p_value` adjusted over the diff's tested rows by [`CORRECTION`]; the verdict reads it.
    pub q_value: f64,
    pub threshold: f64,
    pub verdict: Verdict,
    /// For a row untested because its runs cannot reach α: the runs a side that could.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_runs: Option<usize>,
}

impl MetricDiff {
    /// The verdict as the table prints it, an untested row with why.
    pub fn verdict_text(&self) -> String {
        match (self.verdict, self.needs_runs) {
            (Verdict::Untested, Some(n)) => format!("untested (needs ≥ {n} runs a side)"),
            (Verdict::Untested, None) => "untested (measured once)".to_string(),
            (v, _) => v.word().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub base: String,
    pub new: String,
    pub scenario: String,
    pub base_run: String,
    pub new_run: String,
    pub alpha: f64,
    /// The multiple-comparison correction applied over the tested rows ([`CORRECTION`]).
    pub correction: String,
    /// Why the comparison may mislead (different hosts or fingerprints, failed runs, metrics
    /// only one run has).
    pub warnings: Vec<String>,
    pub rows: Vec<MetricDiff>,
}

impl Diff {
    pub fn count(&self, v: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == v).count()
    }

    /// Rows with a test: the family the correction runs over.
    pub fn tested(&self) -> usize {
        self.rows.len() - self.count(Verdict::Untested)
    }

    /// What the diff cannot tell, in sentences: rows whose runs cannot reach α, and the p a
    /// lone change among the tested rows would need when no row's runs can give it.
    pub fn power_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let short = self.rows.iter().filter(|r| r.needs_runs.is_some());
        if let Some(r) = short.clone().min_by_key(|r| r.base_n.min(r.new_n)) {
            notes.push(format!(
                "{} of {} rows untested for too few runs: with {} runs in the base and {} in the \
                 new run the smallest p-value the exact permutation test can give is {:.3}, not \
                 below α = {}, so those rows say nothing about a change either way; rerun both \
                 with ≥ {} runs a side to test them",
                short.count(),
                self.rows.len(),
                r.base_n,
                r.new_n,
                ab::min_p(r.base_n, r.new_n),
                self.alpha,
                r.needs_runs.unwrap_or(0)
            ));
        }
        let k = self.tested();
        let floor = self
            .rows
            .iter()
            .filter(|r| r.verdict != Verdict::Untested)
            .map(|r| ab::min_p(r.base_n, r.new_n))
            .fold(f64::INFINITY, f64::min);
        if k >= 2 && floor >= self.alpha / k as f64 {
            notes.push(format!(
                "{} over {k} tested rows lets a lone change count only at p < α/{k} = {:.2e}; the \
                 smallest p these runs allow is {floor:.2e}, so a change shows only where several \
                 rows change together (more runs a side lower that floor)",
                self.correction,
                self.alpha / k as f64
            ));
        }
        notes
    }
}

/// One results directory, read.
struct Run {
    meta: RunMeta,
    rows: Vec<results::SampleRow>,
}

fn load(dir: &Path) -> Result<Run, DiffError> {
    for file in [results::META_FILE, results::SAMPLES_FILE] {
        if !dir.join(file).is_file() {
            return Err(DiffError::NotResults {
                dir: dir.to_path_buf(),
                file,
            });
        }
    }
    Ok(Run {
        meta: RunMeta::read(&dir.join(results::META_FILE)).map_err(DiffError::ReadMeta)?,
        rows: read_samples(&dir.join(results::SAMPLES_FILE)).map_err(DiffError::ReadSamples)?,
    })
}

/// Compares the results directories `base` and `new`.
pub fn diff_dirs(base: &Path, new: &Path, opts: &DiffOptions) -> Result<Diff, DiffError> {
    let b = load(base)?;
    let n = load(new)?;
    let mut d = diff_runs(&b.meta, &b.rows, &n.meta, &n.rows, opts)?;
    d.base = base.display().to_string();
    d.new = new.display().to_string();
    Ok(d)
}

fn backend_names(meta: &RunMeta) -> BTreeSet<&str> {
    meta.backends.iter().map(|b| b.backend.as_str()).collect()
}

/// The conditions a backend records that change what its figures mean: run as root or not, and
/// the limits and network a rootless backend falls back to.
const CONDITIONS: [&str; 3] = ["rootless", "limits", "network"];

/// A rootful run against a rootless one (or any change of a backend's [`CONDITIONS`]), named per
/// backend with both sides' words: a change there is the condition's, not the backend's.
fn condition_warnings(base: &RunMeta, new: &RunMeta) -> Vec<String> {
    let mut w = Vec::new();
    let who = |root: bool| {
        if root {
            "root"
        } else {
            "a normal user (rootless)"
        }
    };
    if base.environment.root != new.environment.root {
        w.push(format!(
            "the base ran as {} and the new run as {}: backends that need root are absent from \
             one side, and those that run without it may have no limits or another network",
            who(base.environment.root),
            who(new.environment.root)
        ));
    }
    for b in &base.backends {
        let Some(n) = new.backends.iter().find(|n| n.backend == b.backend) else {
            continue;
        };
        let none = String::from("(not recorded)");
        let changed: Vec<String> = CONDITIONS
            .iter()
            .filter(|k| b.config.get(**k) != n.config.get(**k))
            .map(|k| {
                format!(
                    "{k} {} → {}",
                    b.config.get(*k).unwrap_or(&none),
                    n.config.get(*k).unwrap_or(&none)
                )
            })
            .collect();
        if !changed.is_empty() {
            w.push(format!(
                "{} ran under other conditions: {}",
                b.backend,
                changed.join("; ")
            ));
        }
    }
    w
}

/// Why two runs' figures may not be comparable even though they can be diffed.
fn host_warnings(base: &RunMeta, new: &RunMeta) -> Vec<String> {
    let (be, ne) = (&base.environment, &new.environment);
    let mut w = Vec::new();
    if be.host != ne.host {
        w.push(format!(
            "different hosts ({} in the base, {} in the new run): a change may be the host's",
            be.host, ne.host
        ));
    }
    // A run recorded before the fingerprint existed has an empty one: nothing to compare.
    let recorded = |f: &crate::results::HostFingerprint| *f != Default::default();
    let fields = if recorded(&be.fingerprint) && recorded(&ne.fingerprint) {
        be.fingerprint.differences(&ne.fingerprint)
    } else {
        Vec::new()
    };
    if !fields.is_empty() {
        w.push(format!(
            "the host fingerprints differ in: {} (see run.json's environment.fingerprint)",
            fields.join(", ")
        ));
    }
    if let (Some(bl), Some(nl)) = (be.load, ne.load) {
        let cpus = f64::from(be.ncpu.max(ne.ncpu).max(1));
        let busy = bl.peak().max(nl.peak()) > cpus;
        let apart = (bl.peak() - nl.peak()).abs() > cpus / 2.0;
        if busy || apart {
            w.push(format!(
                "the host was busy: 1-minute load average {:.1}–{:.1} in the base, {:.1}–{:.1} \
                 in the new run, on {cpus} CPUs; other processes share the CPUs with the \
                 backends, so a change may be the load's",
                bl.start, bl.end, nl.start, nl.end
            ));
        }
    }
    if be.kernel != ne.kernel {
        w.push(format!(
            "different kernels ({} vs {})",
            be.kernel, ne.kernel
        ));
    }
    if be.build_profile != ne.build_profile {
        w.push(format!(
            "cvm built differently ({} vs {}): its own code is on some launch paths",
            be.build_profile, ne.build_profile
        ));
    }
    for bb in &base.backends {
        if let Some(nb) = new.backends.iter().find(|n| n.backend == bb.backend) {
            if bb.accelerator() != nb.accelerator() {
                w.push(format!(
                    "{} ran under different accelerators ({} vs {})",
                    bb.backend,
                    bb.accelerator().unwrap_or("none"),
                    nb.accelerator().unwrap_or("none")
                ));
            }
        }
    }
    w
}

/// Compares two runs already read.
pub fn diff_runs(
    base_meta: &RunMeta,
    base_rows: &[results::SampleRow],
    new_meta: &RunMeta,
    new_rows: &[results::SampleRow],
    opts: &DiffOptions,
) -> Result<Diff, DiffError> {
    if base_meta.scenario.name != new_meta.scenario.name {
        return Err(DiffError::ScenarioDiffers {
            base: base_meta.scenario.name.clone(),
            new: new_meta.scenario.name.clone(),
        });
    }
    let (bb, nb) = (backend_names(base_meta), backend_names(new_meta));
    if bb != nb {
        let list = |s: Vec<&&str>| {
            if s.is_empty() {
                "none".to_string()
            } else {
                s.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        return Err(DiffError::BackendsDiffer {
            only_base: list(bb.difference(&nb).collect()),
            only_new: list(nb.difference(&bb).collect()),
        });
    }
    let mut warnings = host_warnings(base_meta, new_meta);
    warnings.extend(condition_warnings(base_meta, new_meta));
    let (base_series, _) = measured_series(base_rows);
    let (new_series, _) = measured_series(new_rows);
    let mut rows = Vec::new();
    // In the run's backend order, metrics alphabetically.
    for info in &base_meta.backends {
        let name = info.backend.as_str();
        let metrics = |s: &results::Series<'_>| -> BTreeSet<String> {
            s.keys()
                .filter(|(b, _)| *b == name)
                .map(|(_, m)| m.to_string())
                .collect()
        };
        let (bm, nm) = (metrics(&base_series), metrics(&new_series));
        for m in bm.symmetric_difference(&nm) {
            if m == RUN_FAILED {
                continue;
            }
            let side = if bm.contains(m) { "base" } else { "new run" };
            warnings.push(format!("{name} {m}: only the {side} has it, not compared"));
        }
        for failed in [(&base_series, "base"), (&new_series, "new run")] {
            if let Some((_, v)) = failed.0.get(&(name, RUN_FAILED.into())) {
                warnings.push(format!(
                    "{name}: {} failed run(s) in the {}, left out",
                    v.len(),
                    failed.1
                ));
            }
        }
        for m in bm.intersection(&nm).filter(|m| m.as_str() != RUN_FAILED) {
            let key = (name, std::borrow::Cow::Owned(m.clone()));
            let (unit, base) = &base_series[&key];
            let (_, new) = &new_series[&key];
            rows.push(compare_metric(name, m, unit, base, new, opts));
        }
    }
    correct_for_family(&mut rows, opts.alpha);
    if let Some(w) = attribute_host_change(&mut rows) {
        warnings.push(w);
    }
    Ok(Diff {
        base: String::new(),
        new: String::new(),
        scenario: base_meta.scenario.name.clone(),
        base_run: base_meta.run_id.clone(),
        new_run: new_meta.run_id.clone(),
        alpha: opts.alpha,
        correction: CORRECTION.to_string(),
        warnings,
        rows,
    })
}

/// Adjusts the tested rows' p-values over the family ([`CORRECTION`]) and judges each again by
/// its q-value.
fn correct_for_family(rows: &mut [MetricDiff], alpha: f64) {
    let tested: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].verdict != Verdict::Untested)
        .collect();
    let p: Vec<f64> = tested.iter().map(|&i| rows[i].p_value).collect();
    for (&i, q) in tested.iter().zip(ab::benjamini_hochberg(&p)) {
        let r = &mut rows[i];
        r.q_value = q;
        r.verdict = judge(&r.metric, q, r.change, r.threshold, alpha);
    }
}

/// A tested row's verdict from its (adjusted) p-value and its relative change.
fn judge(metric: &str, q: f64, change: f64, threshold: f64, alpha: f64) -> Verdict {
    if q < alpha && change.abs() > threshold {
        match (better_by_name(metric), change > 0.0) {
            (Better::Lower, true) | (Better::Higher, false) => Verdict::Regression,
            (Better::Lower, false) | (Better::Higher, true) => Verdict::Improvement,
            (Better::Neither, _) => Verdict::Changed,
        }
    } else {
        Verdict::Unchanged
    }
}

/// The metric that measures the host rather than a backend (see the module documentation).
const HOST_CONTROL: &str = Metric::LaunchFloor.name();

/// How many times the control's relative change a time or rate change may be and still be
/// put down to the host. A slower host slows the several process starts, page faults and
/// scheduler waits of a launch alike, but not all by the floor's share: in the A/A pair above
/// the container's phases moved by 0.7–4.4 times the floor's change. An added 20 ms in a 2 ms
/// start moves it by 1000 %, beyond any host change the floor has shown here.
pub const HOST_FACTOR: f64 = 5.0;

/// Whether a metric in `unit` moves with the host's speed: times and rates do, sizes and counts
/// do not.
fn host_speed_bound(unit: &str) -> bool {
    [Unit::Seconds, Unit::PerSecond, Unit::BytesPerSecond]
        .iter()
        .any(|u| u.symbol() == unit)
}

/// When the control changed, marks every time or rate change in its direction `host changed`
/// (the control's own row too) and returns the warning that says so.
fn attribute_host_change(rows: &mut [MetricDiff]) -> Option<String> {
    let control = rows
        .iter()
        .find(|r| r.metric == HOST_CONTROL && r.verdict.counts())?
        .clone();
    // Slower host: times up, rates down; both read as Regression by the metric's direction.
    let host_verdict = control.verdict;
    let mut attributed: usize = 0;
    for r in rows.iter_mut() {
        if r.verdict == host_verdict
            && host_speed_bound(&r.unit)
            && r.change.abs() <= HOST_FACTOR * control.change.abs()
        {
            r.verdict = Verdict::HostChanged;
            attributed += 1;
        }
    }
    Some(format!(
        "the host itself changed between the runs: {HOST_CONTROL} (a plain fork and exec, no \
         isolation) went {} → {} ({:+.1} %, q = {:.3}); {} time or rate change(s) in the same \
         direction and within {HOST_FACTOR}× of it are marked `host changed`, not {}: rerun \
         both on a quiet host to tell them apart",
        crate::text::format_value(control.base_median, &control.unit),
        crate::text::format_value(control.new_median, &control.unit),
        control.change * 100.0,
        control.q_value,
        attributed.saturating_sub(1),
        if host_verdict == Verdict::Regression {
            "regressions"
        } else {
            "improvements"
        }
    ))
}

/// What `cvm scenarios` says of a scenario whose default `runs` cannot support a diff at the
/// default α; `None` when they can.
pub fn scenario_runs_note(runs: u32) -> Option<String> {
    let needs = ab::runs_needed(DEFAULT_ALPHA)?;
    (usize::try_from(runs).unwrap_or(usize::MAX) < needs).then(|| {
        format!(
            "its default {runs} run(s) cannot support `cvm diff` (p < {DEFAULT_ALPHA} needs ≥ \
             {needs} runs a side): give --runs {needs} or more to compare runs of it"
        )
    })
}

/// What a diff fails on (`--fail-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// A change that counts, in the worse direction
    Regression,
    /// Any change that counts, better or worse
    Change,
    /// Nothing: report only
    None,
}

impl Diff {
    /// Whether something `fail_on` names counted.
    pub fn fails(&self, fail_on: FailOn) -> bool {
        match fail_on {
            FailOn::Regression => self.count(Verdict::Regression) > 0,
            FailOn::Change => self.rows.iter().any(|r| r.verdict.counts()),
            FailOn::None => false,
        }
    }
}

/// Where `cvm diff` writes the comparison besides the terminal.
#[derive(Debug, Clone, Default)]
pub struct DiffOutputs {
    pub markdown: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub json: Option<PathBuf>,
}

/// Writes the comparison in each form `outputs` asks for.
pub fn write_outputs(d: &Diff, outputs: &DiffOutputs) -> anyhow::Result<()> {
    if let Some(f) = &outputs.markdown {
        std::fs::write(f, render::markdown(d))
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    if let Some(f) = &outputs.html {
        std::fs::write(f, render::html(d))
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    if let Some(f) = &outputs.json {
        let text = serde_json::to_string_pretty(d).context("cannot encode the diff")?;
        std::fs::write(f, text).with_context(|| format!("cannot write {}", f.display()))?;
    }
    Ok(())
}

/// One backend × metric: medians, change, interval, p-value and verdict, as a family of one
/// (`diff_runs` then corrects the verdicts over all rows).
pub fn compare_metric(
    backend: &str,
    metric: &str,
    unit: &str,
    base: &[f64],
    new: &[f64],
    opts: &DiffOptions,
) -> MetricDiff {
    let (bm, nm) = (stats::median(base), stats::median(new));
    let change = if bm == 0.0 {
        if nm == 0.0 {
            0.0
        } else {
            f64::INFINITY.copysign(nm)
        }
    } else {
        (nm - bm) / bm.abs()
    };
    let threshold = opts.threshold_for(metric);
    // A test needs two values a side, and runs enough that its smallest p is below α.
    let testable =
        base.len() >= 2 && new.len() >= 2 && ab::min_p(base.len(), new.len()) < opts.alpha;
    let p_value = if testable {
        ab::permutation_p(base, new)
    } else {
        1.0
    };
    let verdict = if testable {
        judge(metric, p_value, change, threshold, opts.alpha)
    } else {
        Verdict::Untested
    };
    // More runs cannot test a figure measured once per backend.
    let needs_runs = if testable || results::measured_once(metric) {
        None
    } else {
        ab::runs_needed(opts.alpha)
    };
    MetricDiff {
        backend: backend.to_string(),
        metric: metric.to_string(),
        unit: unit.to_string(),
        base_n: base.len(),
        new_n: new.len(),
        base_median: bm,
        new_median: nm,
        change,
        difference: ab::median_difference(base, new),
        p_value,
        q_value: p_value,
        threshold,
        verdict,
        needs_runs,
    }
}

#[cfg(test)]
mod tests;
