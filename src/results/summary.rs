//! `summary.json`: per backend and metric, the statistics of the measured samples, and the ratio
//! to `native` where native ran. A pure function of `run.json` and `samples.csv`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::meta::{write_json, Environment, RunMeta};
use super::samples::{Phase, SampleRow};
use super::BackendInfo;
use super::ResultsError;
use super::Stack;
use crate::stats::{self, Estimate, Summary};
use cvm_proto::metric::{per_instances, Metric, DISK_PREFIX};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub unit: String,
    #[serde(flatten)]
    pub stats: Summary,
    /// This backend's median over native's, with a bootstrap interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_native: Option<Estimate>,
    /// Why there is no ratio although native has this metric (its median is at or below zero,
    /// or within its noise of zero), shown as "n/a" with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_unavailable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSummary {
    #[serde(flatten)]
    pub info: BackendInfo,
    /// Runs that failed (a `run_failed` sample each), measured phase only. Their other samples
    /// stay in `samples.csv` but are left out of every statistic here.
    pub failed_runs: usize,
    /// Measured samples left out of the statistics because their run failed.
    #[serde(default)]
    pub excluded_samples: usize,
    /// Measured runs whose load client used more than `CLIENT_BOUND_SHARE` of its CPUs: their
    /// HTTP figures may be the client's limit, not the server's.
    #[serde(default)]
    pub client_bound_runs: usize,
    pub metrics: BTreeMap<String, MetricSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub scenario: String,
    pub description: String,
    pub status: super::RunStatus,
    pub runs: u32,
    pub warmup: u32,
    pub environment: Environment,
    pub backends: Vec<BackendSummary>,
    /// Each VM's `ready_latency` median over each container's and sandbox's, with the
    /// two-sample interval of the ratio (the findings' "N× faster than vm").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pair_ratios: Vec<PairRatio>,
    /// What this report cannot show because of the results schema the run was written with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limitations: Vec<String>,
}

/// One backend's median of a metric over another's, with the interval of the ratio taken from
/// both backends' samples ([`stats::ratio_of_medians`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRatio {
    pub metric: String,
    pub numerator: String,
    pub denominator: String,
    pub ratio: Estimate,
}

impl RunSummary {
    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        write_json(path, self)
    }

    pub fn backend(&self, name: &str) -> Option<&BackendSummary> {
        self.backends.iter().find(|b| b.info.backend == name)
    }
}

/// (backend, metric) -> (unit, values) in file order.
pub type Series<'a> = BTreeMap<(&'a str, Cow<'a, str>), (&'a str, Vec<f64>)>;

/// The metric recorded once per failed run.
pub const RUN_FAILED: &str = Metric::RunFailed.name();

/// Density metrics recorded at each N (their `iteration` is N), summarised per N.
const PER_N_METRICS: [&str; 3] = [
    Metric::ReadyLatency.name(),
    Metric::DensityPssPerInstance.name(),
    Metric::MemoryDaemon.name(),
];

/// The measured values per (backend, metric) that statistics are taken over, in file order: a
/// failed run's samples left out (counted per backend in the second map), density figures
/// named per N, and `memory_overhead` derived from `memory_pss` ([`derive_memory_overhead`]).
/// `summarize` and `cvm diff` read the same series.
pub fn measured_series(rows: &[SampleRow]) -> (Series<'_>, BTreeMap<&str, usize>) {
    let failed = failed_run_rows(rows);
    let density: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.metric == Metric::DensityPssPerInstance.name())
        .map(|r| r.backend.as_str())
        .collect();
    let mut series: Series = BTreeMap::new();
    let mut excluded: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.phase != Phase::Measure {
            continue;
        }
        if failed.contains(&i) {
            *excluded.entry(r.backend.as_str()).or_default() += 1;
            continue;
        }
        let per_n =
            density.contains(r.backend.as_str()) && PER_N_METRICS.contains(&r.metric.as_str());
        let metric = if per_n {
            Cow::Owned(per_instances(&r.metric, r.iteration))
        } else {
            Cow::Borrowed(r.metric.as_str())
        };
        series
            .entry((&r.backend, metric))
            .or_insert((&r.unit, Vec::new()))
            .1
            .push(r.value);
    }
    derive_memory_overhead(&mut series);
    (series, excluded)
}

/// The backend every ratio and overhead is taken against.
const NATIVE: &str = "native";
const MEMORY_PSS: &str = Metric::MemoryPss.name();
const MEMORY_OVERHEAD: &str = Metric::MemoryOverhead.name();

/// `memory_overhead` of every backend but native, derived from the raw samples: each measured
/// `memory_pss` less the median of native's measured `memory_pss` over the whole run. Results
/// of schema 2 and older stored it as a sample taken against native's median so far (its first
/// round against one value); those samples are replaced wherever `memory_pss` allows, so old
/// directories render with the same rule as new ones.
fn derive_memory_overhead(series: &mut Series<'_>) {
    let Some(native) = series
        .get(&(NATIVE, Cow::Borrowed(MEMORY_PSS)))
        .map(|(_, v)| stats::median(v))
    else {
        return;
    };
    let derived: Vec<(&str, Vec<f64>)> = series
        .iter()
        .filter(|((b, m), _)| *b != NATIVE && m == MEMORY_PSS)
        .map(|((b, _), (_, v))| (*b, v.iter().map(|x| x - native).collect()))
        .collect();
    for (backend, values) in derived {
        series.insert(
            (backend, Cow::Borrowed(MEMORY_OVERHEAD)),
            (Metric::MemoryOverhead.unit().symbol(), values),
        );
    }
}

/// The interval of `memory_overhead` from both sides' noise: the difference of the backend's
/// and native's `memory_pss` medians with its two-sample interval (not the backend's spread
/// alone, as the derived series' own median interval would be).
fn overhead_interval(series: &Series<'_>, backend: &str) -> Option<Estimate> {
    let native = &series.get(&(NATIVE, Cow::Borrowed(MEMORY_PSS)))?.1;
    let own = &series.get(&(backend, Cow::Borrowed(MEMORY_PSS)))?.1;
    stats::ab::median_difference(native, own)
}

/// The rows (indices into `rows`) of measured runs that failed, other than the `run_failed`
/// rows themselves and the per-backend disk figures (measured once, outside any run).
///
/// A launch's rows share its `iteration`, so a failed launch is its backend's rows with the
/// iteration of a `run_failed` row. A density run's rows carry N instead, one per instance
/// started, so there a run is delimited by file order (rows are written as measured, and one
/// backend's runs never overlap): a failed density run is every row of its backend since the
/// end of its previous run (`density_launch_all`, `memory_host_delta` or `run_failed`).
fn failed_run_rows(rows: &[SampleRow]) -> HashSet<usize> {
    let is_density = |b: &str| {
        rows.iter()
            .any(|r| r.backend == b && r.metric == Metric::DensityPssPerInstance.name())
    };
    let outside_runs = |r: &SampleRow| r.metric == RUN_FAILED || measured_once(&r.metric);
    let mut failed = HashSet::new();
    let backends: BTreeSet<&str> = rows.iter().map(|r| r.backend.as_str()).collect();
    for backend in backends {
        let mine = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.backend == backend && r.phase == Phase::Measure);
        if is_density(backend) {
            let mut run: Vec<usize> = Vec::new();
            for (i, r) in mine {
                if r.metric == RUN_FAILED {
                    failed.extend(run.drain(..));
                } else if r.metric == Metric::DensityLaunchAll.name()
                    || r.metric == Metric::MemoryHostDelta.name()
                {
                    run.clear();
                } else if !outside_runs(r) {
                    run.push(i);
                }
            }
        } else {
            let failed_iterations: HashSet<u32> = mine
                .clone()
                .filter(|(_, r)| r.metric == RUN_FAILED)
                .map(|(_, r)| r.iteration)
                .collect();
            failed.extend(
                mine.filter(|(_, r)| failed_iterations.contains(&r.iteration) && !outside_runs(r))
                    .map(|(i, _)| i),
            );
        }
    }
    failed
}

/// Whether `metric` is measured once per backend, outside any run (the disk figures): more runs
/// add no samples of it.
pub fn measured_once(metric: &str) -> bool {
    metric.starts_with(DISK_PREFIX)
        || metric == Metric::DiskFootprint.name()
        || metric == Metric::DiskCache.name()
}

const LOAD_CLIENT_CPU: &str = cvm_proto::metric::Metric::LoadClientCpu.name();
use cvm_proto::metric::CLIENT_BOUND_SHARE;

/// Summarises the measured samples of a run, backend by backend in the run's order.
///
/// A failed run's samples are left out (they stay in `samples.csv`; the run is counted in
/// `failed_runs`). Density samples, whose `iteration` is the number of instances running, are
/// summarised at each N (`<metric>@n=<N>`), never pooled over N.
pub fn summarize(meta: &RunMeta, rows: &[SampleRow]) -> RunSummary {
    let (series, excluded) = measured_series(rows);
    let backends = meta
        .backends
        .iter()
        .map(|info| {
            let name = info.backend.as_str();
            let mut metrics = BTreeMap::new();
            let mut failed_runs = 0;
            let mut client_bound_runs = 0;
            for ((_, metric), (unit, values)) in series
                .range((name, Cow::Borrowed(""))..)
                .take_while(|((b, _), _)| *b == name)
            {
                if metric == RUN_FAILED {
                    failed_runs = values.len();
                    continue;
                }
                if *metric == LOAD_CLIENT_CPU {
                    client_bound_runs = values.iter().filter(|&&v| v > CLIENT_BOUND_SHARE).count();
                }
                let Some(mut stats) = Summary::of(values) else {
                    continue;
                };
                if *metric == MEMORY_OVERHEAD {
                    if let Some(ci) = overhead_interval(&series, name) {
                        stats.median_ci = ci;
                    }
                }
                let base = if name == NATIVE {
                    None
                } else {
                    series.get(&(NATIVE, metric.clone())).map(|(_, base)| base)
                };
                let ratio_unavailable = base.and_then(|b| stats::ratio_baseline_problem(b));
                let ratio_to_native = base
                    .filter(|_| ratio_unavailable.is_none())
                    .and_then(|b| stats::ratio_of_medians(values, b, 1000, stats::BOOTSTRAP_SEED));
                metrics.insert(
                    metric.to_string(),
                    MetricSummary {
                        unit: unit.to_string(),
                        stats,
                        ratio_to_native,
                        ratio_unavailable: ratio_unavailable.map(str::to_string),
                    },
                );
            }
            BackendSummary {
                info: info.clone(),
                failed_runs,
                excluded_samples: excluded.get(name).copied().unwrap_or(0),
                client_bound_runs,
                metrics,
            }
        })
        .collect();
    RunSummary {
        run_id: meta.run_id.clone(),
        scenario: meta.scenario.name.clone(),
        description: meta.scenario.description.clone(),
        status: meta.status,
        runs: meta.runs,
        warmup: meta.warmup,
        environment: meta.environment.clone(),
        backends,
        pair_ratios: startup_ratios(meta, &series),
        limitations: super::meta::schema_limitations(meta.schema_version),
    }
}

/// [`RunSummary::pair_ratios`]: every VM's `ready_latency` over every container-stack
/// backend's.
fn startup_ratios(meta: &RunMeta, series: &Series<'_>) -> Vec<PairRatio> {
    let metric = Metric::ReadyLatency.name();
    fn values<'s>(
        series: &'s Series<'s>,
        b: &'s BackendInfo,
        metric: &'s str,
    ) -> Option<&'s [f64]> {
        series
            .get(&(b.backend.as_str(), Cow::Borrowed(metric)))
            .map(|(_, v)| v.as_slice())
    }
    let of_stack = |stack: Stack| meta.backends.iter().filter(move |b| b.stack == stack);
    let mut out = Vec::new();
    for vm in of_stack(Stack::Vm) {
        let Some(slow) = values(series, vm, metric) else {
            continue;
        };
        for c in of_stack(Stack::Container) {
            let Some(fast) = values(series, c, metric) else {
                continue;
            };
            if let Some(ratio) = stats::ratio_of_medians(slow, fast, 1000, stats::BOOTSTRAP_SEED) {
                out.push(PairRatio {
                    metric: metric.to_string(),
                    numerator: vm.backend.clone(),
                    denominator: c.backend.clone(),
                    ratio,
                });
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::results::{Availability, ScenarioRecord, Stack};

    fn meta(backends: &[&str]) -> RunMeta {
        RunMeta {
            schema_version: super::super::meta::SCHEMA_VERSION,
            run_id: "r".into(),
            started: String::new(),
            finished: None,
            status: crate::results::RunStatus::Done,
            scenario: ScenarioRecord {
                name: "s".into(),
                description: String::new(),
                definition: serde_json::Value::Null,
            },
            runs: 3,
            warmup: 0,
            timeout_s: 1.0,
            environment: Environment::default(),
            backends: backends
                .iter()
                .map(|b| BackendInfo {
                    backend: b.to_string(),
                    stack: Stack::Container,
                    availability: Availability::Available,
                    error: None,
                    config: Default::default(),
                })
                .collect(),
            load: None,
            order: None,
            seed: None,
            cgroup_state: None,
        }
    }

    fn row(backend: &str, iteration: u32, metric: &str, value: f64) -> SampleRow {
        SampleRow {
            run_id: "r".into(),
            scenario: "s".into(),
            backend: backend.into(),
            iteration,
            phase: Phase::Measure,
            metric: metric.into(),
            value,
            unit: "B".into(),
            host: String::new(),
            kernel: String::new(),
            cpu_model: String::new(),
            ncpu: 1,
            mem_total: 0,
            accel: String::new(),
            qemu_version: String::new(),
            cvm_version: String::new(),
            git_sha: String::new(),
            config: String::new(),
            note: String::new(),
        }
    }

    #[test]
    fn a_failed_runs_samples_are_kept_out_of_the_statistics() {
        let rows = vec![
            row("runc", 0, "disk_footprint", 7.0),
            row("runc", 0, "memory_pss", 10.0),
            row("runc", 0, RUN_FAILED, 1.0),
            row("runc", 1, "memory_pss", 20.0),
            row("runc", 2, "memory_pss", 22.0),
        ];
        let s = summarize(&meta(&["runc"]), &rows);
        let b = s.backend("runc").unwrap();
        assert_eq!(b.failed_runs, 1);
        assert_eq!(b.excluded_samples, 1);
        assert_eq!(b.metrics["memory_pss"].stats.n, 2);
        assert_eq!(b.metrics["memory_pss"].stats.median, 21.0);
        // Disk is measured once per backend, outside any run: it stays.
        assert_eq!(b.metrics["disk_footprint"].stats.n, 1);
    }

    #[test]
    fn density_is_summarised_per_n_and_a_failed_density_run_is_left_out() {
        let pss = Metric::DensityPssPerInstance.name();
        let rows = vec![
            // Run 1: N = 1, 2, then done.
            row("vm", 1, pss, 100.0),
            row("vm", 2, pss, 80.0),
            row("vm", 2, "density_launch_all", 1.0),
            // Run 2 failed at its second instance.
            row("vm", 1, pss, 999.0),
            row("vm", 2, RUN_FAILED, 1.0),
            // Run 3.
            row("vm", 1, pss, 110.0),
            row("vm", 2, pss, 90.0),
            row("vm", 2, "density_launch_all", 1.0),
        ];
        let s = summarize(&meta(&["vm"]), &rows);
        let b = s.backend("vm").unwrap();
        assert!(!b.metrics.contains_key(pss), "never pooled over N");
        assert_eq!(b.metrics[&per_instances(pss, 1)].stats.median, 105.0);
        assert_eq!(b.metrics[&per_instances(pss, 2)].stats.median, 85.0);
        assert_eq!(b.failed_runs, 1);
        assert_eq!(b.excluded_samples, 1);
    }

    #[test]
    fn no_ratio_to_a_negative_baseline_and_the_reason_is_kept() {
        let m = Metric::MemoryHostDelta.name();
        let rows = vec![
            row("native", 1, m, -26e3),
            row("native", 2, m, -25e3),
            row("vm", 1, m, 160e6),
            row("vm", 2, m, 161e6),
        ];
        let s = summarize(&meta(&["native", "vm"]), &rows);
        let vm = &s.backend("vm").unwrap().metrics[m];
        assert_eq!(vm.ratio_to_native, None);
        assert_eq!(
            vm.ratio_unavailable.as_deref(),
            Some("baseline median is negative")
        );
    }

    #[test]
    fn memory_overhead_is_derived_against_natives_whole_run_with_both_sides_noise() {
        let pss = Metric::MemoryPss.name();
        let mut rows = vec![
            row("native", 0, pss, 10.0),
            row("native", 1, pss, 14.0),
            row("native", 2, pss, 12.0),
            row("runc", 0, pss, 20.0),
            row("runc", 1, pss, 23.0),
            row("runc", 2, pss, 21.0),
        ];
        // A schema-2 run stored samples against native's running median: replaced.
        rows.push(row("runc", 0, MEMORY_OVERHEAD, 10.0));
        rows.push(row("runc", 1, MEMORY_OVERHEAD, 11.0));
        let s = summarize(&meta(&["native", "runc"]), &rows);
        assert!(!s
            .backend("native")
            .unwrap()
            .metrics
            .contains_key(MEMORY_OVERHEAD));
        let o = &s.backend("runc").unwrap().metrics[MEMORY_OVERHEAD];
        // 20, 23, 21 less native's median 12.
        assert_eq!(o.stats.n, 3);
        assert_eq!((o.stats.min, o.stats.median, o.stats.max), (8.0, 9.0, 11.0));
        assert_eq!(o.unit, "B");
        // The interval is the two-sample one: pairwise differences 6..13 at 90 %, wider than
        // the runc side's own min–max (8..11) would be.
        let ci = o.stats.median_ci;
        assert_eq!((ci.lower, ci.point, ci.upper), (6.0, 9.0, 13.0));
        assert!((ci.level - 0.9).abs() < 1e-12, "{ci:?}");
        // Without native's memory_pss, stored samples are all there is: kept.
        let old = vec![
            row("runc", 0, MEMORY_OVERHEAD, 10.0),
            row("runc", 1, MEMORY_OVERHEAD, 11.0),
        ];
        let s = summarize(&meta(&["runc"]), &old);
        assert_eq!(
            s.backend("runc").unwrap().metrics[MEMORY_OVERHEAD].stats.n,
            2
        );
    }

    pub(crate) fn client_meta() -> RunMeta {
        RunMeta {
            run_id: "r1".into(),
            started: String::new(),
            finished: None,
            status: crate::results::RunStatus::Done,
            scenario: super::super::meta::ScenarioRecord {
                name: "web".into(),
                description: String::new(),
                definition: serde_json::Value::Null,
            },
            runs: 3,
            warmup: 0,
            timeout_s: 1.0,
            environment: Environment::default(),
            backends: vec![BackendInfo {
                backend: "runc".into(),
                stack: Stack::Container,
                availability: Availability::Available,
                error: None,
                config: BTreeMap::new(),
            }],
            load: None,
            order: None,
            seed: None,
            cgroup_state: None,
            schema_version: super::super::meta::SCHEMA_VERSION,
        }
    }

    pub(crate) fn client_row(iteration: u32, value: f64) -> SampleRow {
        let mut r = crate::results::samples::tests::row("runc", iteration, LOAD_CLIENT_CPU, value);
        r.unit = "1".into();
        r
    }

    #[test]
    fn runs_whose_client_was_nearly_saturated_are_counted_client_bound() {
        let rows = [client_row(0, 0.95), client_row(1, 0.5), client_row(2, 0.91)];
        let s = summarize(&client_meta(), &rows);
        let b = s.backend("runc").unwrap();
        assert_eq!(b.client_bound_runs, 2);
        let calm = summarize(&client_meta(), &[client_row(0, 0.5), client_row(1, 0.9)]);
        assert_eq!(calm.backend("runc").unwrap().client_bound_runs, 0);
    }
}
