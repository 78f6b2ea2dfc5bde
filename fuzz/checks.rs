//! What each fuzz target checks, shared by the targets (`fuzz_targets/*.rs`) and by the plain
//! replay of the committed corpus in `cargo test` (`tests/fuzz_corpus.rs`). Each function takes
//! arbitrary bytes and panics only if cvm misbehaves on them.
#![allow(dead_code)] // Each fuzz target uses one of these.

use std::collections::BTreeMap;

use cvm::backend::{Availability, Stack};
use cvm::report::{self, charts, html, stack};
use cvm::results::{
    parse_samples, summarize, BackendInfo, Environment, RunMeta, SampleRow, ScenarioRecord,
};
use cvm::scenario::{parse, ScenarioError};

/// The scenario parser (`cvm compare --scenario FILE`): any text either parses into a valid
/// scenario or is an error that points inside the text.
pub fn scenario(data: &[u8]) {
    // Scenario files are read with `read_to_string`: non-UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, "fuzz.toml") {
        // What `compare` does with a parsed scenario first: record it in run.json.
        Ok(s) => drop(ScenarioRecord::from(&s)),
        Err(ScenarioError::Invalid { line, col, .. }) => {
            // 1-based, and no further than one past the end of the text.
            let lines = text.matches('\n').count() + 1;
            assert!(line >= 1 && line <= lines, "line {line} of {lines}");
            assert!(col >= 1 && col <= text.chars().count() + 1, "column {col}");
        }
        Err(e) => panic!("parse returned a non-parse error: {e}"),
    }
}

/// The samples.csv reader (`cvm report DIR`): any bytes either read into rows or are an error,
/// and rows it accepts survive a write/read round trip unchanged.
pub fn samples(data: &[u8]) {
    let Ok(rows) = parse_samples(data) else {
        return;
    };
    // Written the way `SampleWriter` writes them (a default csv::Writer), then read back.
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &rows {
        w.serialize(r).expect("an in-memory write cannot fail");
    }
    let bytes = w.into_inner().expect("flush to a Vec");
    let back = parse_samples(bytes.as_slice()).expect("cvm's own output must read back");
    assert_eq!(back.len(), rows.len(), "rows lost in the round trip");
    for (a, b) in rows.iter().zip(&back) {
        assert!(same_row(a, b), "round trip changed a row:\n{a:?}\n{b:?}");
    }
}

fn same_row(a: &SampleRow, b: &SampleRow) -> bool {
    // NaN is a legal value in the file (it reads back as NaN), but NaN != NaN.
    let same_value = a.value == b.value || (a.value.is_nan() && b.value.is_nan());
    let without_value = |r: &SampleRow| SampleRow {
        value: 0.0,
        ..r.clone()
    };
    same_value && without_value(a) == without_value(b)
}

/// `cvm report` after the samples are read: the summary statistics, the Markdown export, the
/// terminal table, the chart plan, the stack diagram's layout, the verdict's questions and the
/// HTML page (charts are not rendered: that writes files and rasterises fonts), over any rows the
/// reader accepts.
pub fn report(data: &[u8]) {
    let Ok(rows) = parse_samples(data) else {
        return;
    };
    let meta = meta_for(&rows);
    let summary = summarize(&meta, &rows);
    drop(report::markdown_summary(&summary));
    drop(report::terminal_table(&summary, report::Detail::Compact));
    drop(report::terminal_table(&summary, report::Detail::Full));
    drop(charts::plan(&summary, &rows));
    drop(stack::StackDiagram::new(&summary));
    let verdict = charts::plan_verdict(&summary);
    drop(html::page(&meta, &summary, "", &[], &verdict));
}

/// The smallest run.json that names every backend in the samples in order of appearance (as
/// `cvm compare` writes it), plus one unavailable backend so that branch is taken too.
fn meta_for(rows: &[SampleRow]) -> RunMeta {
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.backend.as_str()) {
            names.push(&r.backend);
        }
    }
    let info = |name: &str, availability| BackendInfo {
        backend: name.to_string(),
        stack: match name {
            "native" => Stack::Native,
            "vm" | "vm-classic" => Stack::Vm,
            _ => Stack::Container,
        },
        availability,
        error: None,
        config: BTreeMap::new(),
    };
    let mut backends: Vec<BackendInfo> = names
        .iter()
        .map(|name| info(name, Availability::Available))
        .collect();
    backends.push(info(
        "docker",
        Availability::unavailable("no docker daemon", "start dockerd"),
    ));
    let first = rows.first();
    RunMeta {
        schema_version: cvm::results::SCHEMA_VERSION,
        run_id: first.map_or_else(String::new, |r| r.run_id.clone()),
        started: "2026-01-01T00:00:00Z".into(),
        finished: None,
        status: cvm::results::RunStatus::Done,
        scenario: ScenarioRecord {
            name: first.map_or_else(String::new, |r| r.scenario.clone()),
            description: String::new(),
            definition: serde_json::Value::Null,
        },
        runs: 3,
        warmup: 1,
        timeout_s: 60.0,
        environment: Environment::default(),
        backends,
        load: None,
        order: None,
        seed: None,
        cgroup_state: None,
    }
}
