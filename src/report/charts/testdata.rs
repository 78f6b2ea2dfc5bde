//! Summaries for the charts' unit tests.

use std::collections::BTreeMap;

use crate::results::{
    Availability, BackendInfo, BackendSummary, Environment, MetricSummary, RunSummary, Stack,
};
use crate::stats::Summary;

pub(super) fn metric(unit: &str, values: &[f64]) -> MetricSummary {
    MetricSummary {
        unit: unit.into(),
        stats: Summary::of(values).unwrap(),
        ratio_to_native: None,
        ratio_unavailable: None,
    }
}

pub(super) fn backend(name: &str, stack: Stack, metrics: &[(&str, &str, f64)]) -> BackendSummary {
    BackendSummary {
        info: BackendInfo {
            backend: name.into(),
            stack,
            availability: Availability::Available,
            error: None,
            config: BTreeMap::new(),
        },
        failed_runs: 0,
        excluded_samples: 0,
        client_bound_runs: 0,
        metrics: metrics
            .iter()
            .map(|(m, u, v)| (m.to_string(), metric(u, &[*v, *v * 1.01, *v * 0.99])))
            .collect(),
    }
}

pub(super) fn summary(backends: Vec<BackendSummary>) -> RunSummary {
    RunSummary {
        run_id: "r".into(),
        scenario: "startup".into(),
        description: "d".into(),
        status: crate::results::RunStatus::Done,
        runs: 3,
        warmup: 0,
        environment: Environment::default(),
        backends,
        pair_ratios: Vec::new(),
        limitations: Vec::new(),
    }
}
