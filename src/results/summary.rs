//! `summary.json`: per backend and metric, the statistics of the measured samples, and the ratio
//! to `native` where native ran. A pure function of `run.json` and `samples.csv`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::meta::{write_json, BackendInfo, Environment, RunMeta};
use super::samples::{Phase, SampleRow};
use super::ResultsError;
use crate::stats::{self, Estimate, Summary};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub unit: String,
    #[serde(flatten)]
    pub stats: Summary,
    /// This backend's median over native's, with a bootstrap interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_native: Option<Estimate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSummary {
    #[serde(flatten)]
    pub info: BackendInfo,
    /// Runs that failed (a `run_failed` sample each), measured phase only.
    pub failed_runs: usize,
    pub metrics: BTreeMap<String, MetricSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub scenario: String,
    pub description: String,
    pub status: String,
    pub runs: u32,
    pub warmup: u32,
    pub environment: Environment,
    pub backends: Vec<BackendSummary>,
}

impl RunSummary {
    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        write_json(path, self)
    }

    pub fn backend(&self, name: &str) -> Option<&BackendSummary> {
        self.backends.iter().find(|b| b.info.backend == name)
    }
}

/// The metric recorded once per failed run.
pub const RUN_FAILED: &str = cvm_proto::metric::Metric::RunFailed.name();

/// Summarises the measured samples of a run, backend by backend in the run's order.
pub fn summarize(meta: &RunMeta, rows: &[SampleRow]) -> RunSummary {
    // (backend, metric) -> (unit, values) in file order.
    let mut series: BTreeMap<(&str, &str), (&str, Vec<f64>)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.phase == Phase::Measure) {
        series
            .entry((&r.backend, &r.metric))
            .or_insert((&r.unit, Vec::new()))
            .1
            .push(r.value);
    }
    let backends = meta
        .backends
        .iter()
        .map(|info| {
            let name = info.backend.as_str();
            let mut metrics = BTreeMap::new();
            let mut failed_runs = 0;
            for ((_, metric), (unit, values)) in series
                .range((name, "")..)
                .take_while(|((b, _), _)| *b == name)
            {
                if *metric == RUN_FAILED {
                    failed_runs = values.len();
                    continue;
                }
                let Some(stats) = Summary::of(values) else {
                    continue;
                };
                let ratio_to_native = if name == "native" {
                    None
                } else {
                    series.get(&("native", metric)).and_then(|(_, base)| {
                        stats::ratio_of_medians(values, base, 1000, stats::BOOTSTRAP_SEED)
                    })
                };
                metrics.insert(
                    metric.to_string(),
                    MetricSummary {
                        unit: unit.to_string(),
                        stats,
                        ratio_to_native,
                    },
                );
            }
            BackendSummary {
                info: info.clone(),
                failed_runs,
                metrics,
            }
        })
        .collect();
    RunSummary {
        run_id: meta.run_id.clone(),
        scenario: meta.scenario.name.clone(),
        description: meta.scenario.description.clone(),
        status: meta.status.clone(),
        runs: meta.runs,
        warmup: meta.warmup,
        environment: meta.environment.clone(),
        backends,
    }
}
