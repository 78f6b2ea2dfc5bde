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

const LOAD_CLIENT_CPU: &str = cvm_proto::metric::Metric::LoadClientCpu.name();
use cvm_proto::metric::CLIENT_BOUND_SHARE;

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
            let mut client_bound_runs = 0;
            for ((_, metric), (unit, values)) in series
                .range((name, "")..)
                .take_while(|((b, _), _)| *b == name)
            {
                if *metric == RUN_FAILED {
                    failed_runs = values.len();
                    continue;
                }
                if *metric == LOAD_CLIENT_CPU {
                    client_bound_runs = values.iter().filter(|&&v| v > CLIENT_BOUND_SHARE).count();
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
                client_bound_runs,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::results::{Availability, Stack};

    pub(crate) fn meta() -> RunMeta {
        RunMeta {
            run_id: "r1".into(),
            started: String::new(),
            finished: None,
            status: "done".into(),
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
        }
    }

    pub(crate) fn row(iteration: u32, value: f64) -> SampleRow {
        let mut r = crate::results::samples::tests::row("runc", iteration, LOAD_CLIENT_CPU, value);
        r.unit = "1".into();
        r
    }

    #[test]
    fn runs_whose_client_was_nearly_saturated_are_counted_client_bound() {
        let rows = [row(0, 0.95), row(1, 0.5), row(2, 0.91)];
        let s = summarize(&meta(), &rows);
        let b = s.backend("runc").unwrap();
        assert_eq!(b.client_bound_runs, 2);
        let calm = summarize(&meta(), &[row(0, 0.5), row(1, 0.9)]);
        assert_eq!(calm.backend("runc").unwrap().client_bound_runs, 0);
    }
}
