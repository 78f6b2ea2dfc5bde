//! Made-up runs for the unit tests of every module that reads results (diff, bounds, merge,
//! the exports): a run's metadata and a backend's samples of one metric.

use super::{Availability, BackendInfo, Environment, Phase, RunMeta, SampleRow, Stack};

/// A run's metadata, from JSON so fields other branches add with serde defaults need no change
/// here.
pub(crate) fn meta(scenario: &str, host: &str, backends: &[&str]) -> RunMeta {
    let mut m: RunMeta = serde_json::from_value(serde_json::json!({
        "schema_version": super::SCHEMA_VERSION,
        "run_id": format!("{host}-run"),
        "started": "",
        "status": "done",
        "scenario": { "name": scenario, "description": "", "definition": null },
        "runs": 5,
        "warmup": 0,
        "timeout_s": 1.0,
        "environment": serde_json::to_value(Environment::default()).unwrap(),
        "backends": [],
    }))
    .unwrap();
    m.environment.host = host.into();
    m.backends = backends
        .iter()
        .map(|b| BackendInfo {
            backend: b.to_string(),
            stack: Stack::Container,
            availability: Availability::Available,
            error: None,
            config: Default::default(),
        })
        .collect();
    m
}

pub(crate) fn rows(backend: &str, metric: &str, unit: &str, values: &[f64]) -> Vec<SampleRow> {
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| SampleRow {
            run_id: "r".into(),
            scenario: "startup".into(),
            backend: backend.into(),
            iteration: i as u32,
            phase: Phase::Measure,
            metric: metric.into(),
            value,
            unit: unit.into(),
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
        })
        .collect()
}
