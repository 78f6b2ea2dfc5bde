//! Every metric (`--verbose`, `cvm report --full`): the findings first, then median with its
//! confidence interval, min–max, and the ratio to native, per backend and metric; then each
//! backend's notes (unavailable, failed runs, client-bound, launch floor, phases, clock, sweep).

use std::fmt::Write;

use crate::report::format::{format_value, metric_order, ratio_cell, Levels};
use crate::report::{charts, findings};
use crate::results::{Availability, BackendSummary, MetricSummary, RunSummary};
use cvm_proto::metric::{Metric, PHASE_PREFIX, RATE_PREFIX};

/// Metrics shown first, in this order; the rest follow alphabetically. Phases are summarised on
/// one line per backend instead of a row each.
const LEADING: &[&str] = &[
    Metric::ReadyLatency.name(),
    Metric::LaunchFloor.name(),
    Metric::TeardownLatency.name(),
    Metric::MemoryPss.name(),
    Metric::MemoryOverhead.name(),
];

fn shown(m: &str) -> bool {
    !m.starts_with(PHASE_PREFIX) && !m.starts_with(RATE_PREFIX)
}

pub(super) fn table(s: &RunSummary) -> String {
    let mut out = super::heading(s);
    out.push('\n');
    for f in findings::findings(s) {
        let _ = writeln!(out, "  {f}");
    }
    let levels = crate::report::format::medians_levels(s, shown);
    let median_head = format!("median [{}]", levels.heading());
    let mut rows: Vec<Vec<String>> = vec![[
        "backend",
        "metric",
        median_head.as_str(),
        "min – max",
        "vs native",
        "n",
    ]
    .map(String::from)
    .to_vec()];
    let mut notes: Vec<String> = s
        .limitations
        .iter()
        .map(|l| format!("this report: {l}"))
        .collect();
    notes.extend(super::run_notes(s));
    for b in &s.backends {
        if matches!(b.info.availability, Availability::Unavailable { .. }) {
            continue;
        }
        rows.extend(metric_rows(b, &levels));
        notes.extend(backend_notes(b));
    }
    out.push_str(&super::grid(&rows));
    for n in notes {
        let _ = writeln!(out, "  {n}");
    }
    out
}

/// One row per metric of the backend, the leading ones first.
fn metric_rows(b: &BackendSummary, levels: &Levels) -> Vec<Vec<String>> {
    let mut metrics: Vec<(&String, &MetricSummary)> =
        b.metrics.iter().filter(|(m, _)| shown(m)).collect();
    metrics.sort_by_key(|(m, _)| {
        (
            LEADING.iter().position(|l| l == m).unwrap_or(LEADING.len()),
            metric_order(m),
        )
    });
    metrics
        .into_iter()
        .map(|(metric, m)| {
            let st = &m.stats;
            let ci = &st.median_ci;
            vec![
                b.info.backend.clone(),
                metric.clone(),
                format!(
                    "{} [{}, {}]",
                    format_value(st.median, &m.unit),
                    format_value(ci.lower, &m.unit),
                    format_value(ci.upper, &m.unit)
                ) + &levels.caveat(ci),
                format!(
                    "{} – {}",
                    format_value(st.min, &m.unit),
                    format_value(st.max, &m.unit)
                ),
                ratio_cell(m),
                outlier_n(m),
            ]
        })
        .collect()
}

/// What the rows cannot say about a backend, each a line: client-bound runs, its launch floor,
/// its phases, its clock, its rate sweep.
fn backend_notes(b: &BackendSummary) -> Vec<String> {
    let name = &b.info.backend;
    let mut notes = Vec::new();
    if let Some(note) = findings::client_bound_note(b) {
        notes.push(format!("{name}: {note}"));
    }
    if let (Some(r), Some(f)) = (
        b.metrics.get(Metric::ReadyLatency.name()),
        b.metrics.get(Metric::LaunchFloor.name()),
    ) {
        notes.push(format!(
            "{name}: ready_latency is {:.2}x the launch floor, the same spawn without cvm's \
             bookkeeping ({} vs {})",
            r.stats.median / f.stats.median,
            format_value(r.stats.median, "s"),
            format_value(f.stats.median, "s")
        ));
    }
    let mut phases: Vec<(&str, &MetricSummary)> = b
        .metrics
        .iter()
        .filter_map(|(m, v)| m.strip_prefix(PHASE_PREFIX).map(|p| (p, v)))
        .collect();
    phases.sort_by_key(|(p, _)| crate::results::phase_rank(p));
    if !phases.is_empty() {
        let phases: Vec<String> = phases
            .iter()
            .map(|(p, v)| format!("{p} {}", format_value(v.stats.median, &v.unit)))
            .collect();
        notes.push(format!("{name} phases (medians): {}", phases.join(", ")));
    }
    if let Some(note) = findings::clock_note(b) {
        notes.push(format!("{name}: {note}"));
    }
    notes.extend(sweep_note(b));
    notes
}

/// A rate sweep's steps and its knee.
fn sweep_note(b: &BackendSummary) -> Option<String> {
    let sweep = charts::sweep_steps(&b.metrics);
    if sweep.is_empty() {
        return None;
    }
    let steps: Vec<String> = sweep
        .iter()
        .map(|s| {
            format!(
                "{} → {} (p99 {})",
                format_value(s.offered, "1/s"),
                format_value(s.achieved, "1/s"),
                format_value(s.p99, "s")
            )
        })
        .collect();
    let knee = charts::knee(&sweep).map_or_else(|| "none".to_string(), |k| format_value(k, "1/s"));
    Some(format!(
        "{} rate sweep (offered → achieved, medians): {}; knee {knee}",
        b.info.backend,
        steps.join(", ")
    ))
}

fn outlier_n(m: &MetricSummary) -> String {
    let o = m.stats.outliers;
    if o.low + o.high > 0 {
        format!("{} ({} outliers)", m.stats.n, o.low + o.high)
    } else {
        m.stats.n.to_string()
    }
}
