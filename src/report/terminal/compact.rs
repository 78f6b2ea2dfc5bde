//! The default summary, a screen at most: the findings (one line per question), then one small
//! table per question the run answers (time to ready, memory per instance, disk footprint,
//! throughput kept, a noisy neighbour's effect), two side by side, each with the backend, its
//! median, the median's interval (its level stated once, in the header) and the ratio to native.
//! Backends that could not run, emulated ones and client-bound ones get one line each below.

use std::fmt::Write;

use crate::report::findings;
use crate::report::format::{display_unit, format_number, format_value, Levels};
use crate::results::{Availability, BackendSummary, MetricSummary, RunSummary};
use cvm_proto::metric::Metric;

/// The questions, in the order they are shown, each with its table's title and the metric
/// that answers it; a run shows those it measured.
const QUESTIONS: [(&str, Metric); 14] = [
    ("time to ready", Metric::ReadyLatency),
    ("memory per instance", Metric::MemoryPss),
    ("disk footprint", Metric::DiskFootprint),
    ("http throughput", Metric::HttpRps),
    ("cpu score", Metric::CpuScore),
    ("memory bandwidth", Metric::MemBandwidthTriad),
    ("write bandwidth", Metric::IoWriteBandwidth),
    ("redis GET", Metric::RedisGetRps),
    ("pgbench", Metric::PgbenchTps),
    ("fio 4 KiB random read", Metric::FioRandreadIops),
    ("sysbench cpu", Metric::SysbenchCpuEvents),
    ("p99 × alone, cpu hog", Metric::NoisyCpuP99Ratio),
    ("p99 × alone, memory hog", Metric::NoisyMemoryP99Ratio),
    ("p99 × alone, io hog", Metric::NoisyIoP99Ratio),
];

/// At most this many tables, so that the summary stays a screen.
const MAX_TABLES: usize = 4;

/// Marks an emulated backend's name, and a throughput figure measured while the load client
/// was the limit.
const TCG_MARK: &str = "*";
const CLIENT_BOUND_MARK: &str = "†";
/// Marks a backend that ran rootless (its limits and network differ from its rootful run).
const ROOTLESS_MARK: &str = "‡";

pub(super) fn table(s: &RunSummary) -> String {
    let mut out = super::heading(s);
    out.push('\n');
    for f in findings::headlines(s) {
        let _ = writeln!(out, "  {f}");
    }
    let ran: Vec<&BackendSummary> = s
        .backends
        .iter()
        .filter(|b| matches!(b.info.availability, Availability::Available))
        .collect();
    let questions: Vec<(&str, Metric)> = QUESTIONS
        .into_iter()
        .filter(|(_, m)| ran.iter().any(|b| b.metrics.contains_key(m.name())))
        .take(MAX_TABLES)
        .collect();
    for pair in questions.chunks(2) {
        out.push('\n');
        out.push_str(&super::grid(&side_by_side(&ran, pair)));
    }
    let mut notes = s
        .limitations
        .iter()
        .map(|l| format!("this report: {}", first_clause(l)))
        .collect::<Vec<_>>();
    notes.extend(super::run_notes(s));
    notes.extend(marks(&ran));
    notes.push(
        "Every metric and note: `cvm compare --verbose`, `cvm report DIR --full`; charts: the \
         results directory's index.html."
            .to_string(),
    );
    for n in notes {
        let _ = writeln!(out, "  {n}");
    }
    out
}

/// A limitation's first clause (up to its first colon): the rest is in `--full`.
fn first_clause(l: &str) -> String {
    match l.split_once(": ") {
        Some((head, _)) => format!("{head} (what it lacks: --full)"),
        None => l.to_string(),
    }
}

/// The tables of these questions as one grid, their columns side by side after one backend
/// column: a header row, then a row per backend that measured any of them.
fn side_by_side(ran: &[&BackendSummary], questions: &[(&str, Metric)]) -> Vec<Vec<String>> {
    let mut header = vec!["backend".to_string()];
    let mut columns: Vec<Vec<Vec<String>>> = Vec::new();
    for (title, m) in questions {
        let (head, cells) = question_table(ran, title, *m);
        header.extend(head);
        columns.push(cells);
    }
    let mut rows = vec![header];
    for (i, b) in ran.iter().enumerate() {
        if columns.iter().all(|c| c[i].iter().all(String::is_empty)) {
            continue;
        }
        let mut name = b.info.backend.clone();
        if findings::is_tcg(b) {
            name.push_str(TCG_MARK);
        }
        if findings::rootless_note(b).is_some() {
            name.push_str(ROOTLESS_MARK);
        }
        let mut row = vec![name];
        for c in &columns {
            row.extend(c[i].iter().cloned());
        }
        rows.push(row);
    }
    rows
}

/// One question's header cells and, per backend, its cells (empty where it has no such
/// figure): median, interval (left out when no figure has one), ratio to native.
fn question_table(
    ran: &[&BackendSummary],
    title: &str,
    m: Metric,
) -> (Vec<String>, Vec<Vec<String>>) {
    let figures: Vec<Option<&MetricSummary>> =
        ran.iter().map(|b| b.metrics.get(m.name())).collect();
    let intervals: Vec<_> = figures
        .iter()
        .flatten()
        .map(|f| &f.stats.median_ci)
        .collect();
    let levels = Levels::of(intervals.iter().copied());
    let with_interval = intervals
        .iter()
        .any(|e| e.level > 0.0 && e.lower != e.upper);
    let mut head = vec![title.to_string()];
    if with_interval {
        head.push(levels.heading());
    }
    head.push("× native".to_string());
    let cells = ran
        .iter()
        .zip(&figures)
        .map(|(b, f)| match f {
            None => vec![String::new(); head.len()],
            Some(f) => {
                let mut median = format_value(f.stats.median, &f.unit);
                if m == Metric::HttpRps && b.client_bound_runs > 0 {
                    median.push_str(CLIENT_BOUND_MARK);
                }
                let mut row = vec![median];
                if with_interval {
                    row.push(interval(f) + &levels.caveat(&f.stats.median_ci));
                }
                row.push(f.ratio_to_native.as_ref().map_or_else(String::new, |r| {
                    format!("{}×", crate::text::format_ratio(r.point))
                }));
                row
            }
        })
        .collect();
    (head, cells)
}

/// "[11.2, 21.5]" in the median's own display unit, so the unit is said once per cell.
fn interval(f: &MetricSummary) -> String {
    let ci = &f.stats.median_ci;
    if ci.level <= 0.0 || ci.lower == ci.upper {
        return String::new();
    }
    let du = display_unit(&f.unit, f.stats.median.abs());
    format!(
        "[{}, {}]",
        format_number(ci.lower / du.factor),
        format_number(ci.upper / du.factor)
    )
}

/// The marks' meanings, each once.
fn marks(ran: &[&BackendSummary]) -> Vec<String> {
    let mut out = Vec::new();
    if ran.iter().any(|b| findings::is_tcg(b)) {
        out.push(format!(
            "{TCG_MARK} ran under TCG emulation (QEMU translating every guest instruction), far \
             slower than under KVM: compare these with each other."
        ));
    }
    out.extend(
        ran.iter()
            .filter_map(|b| findings::rootless_note(b))
            .map(|n| format!("{ROOTLESS_MARK} {n}.")),
    );
    let bound: Vec<String> = ran
        .iter()
        .filter(|b| b.client_bound_runs > 0)
        .map(|b| {
            let of = b
                .metrics
                .get(Metric::LoadClientCpu.name())
                .map_or(b.client_bound_runs, |c| c.stats.n);
            format!("{} {} of {of}", b.info.backend, b.client_bound_runs)
        })
        .collect();
    if !bound.is_empty() {
        out.push(format!(
            "{CLIENT_BOUND_MARK} client-bound (the load client, not the server, was the limit) \
             in runs of: {}.",
            bound.join(", ")
        ));
    }
    out
}
