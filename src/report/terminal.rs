//! The summary printed at the end of `cvm compare`: the findings first, then median with its confidence interval,
//! min–max, and the ratio to native, per backend and metric; unavailable backends with the reason.

use std::fmt::Write;

use super::format::{format_value, metric_order, ratio_cell};
use crate::results::{Availability, MetricSummary, RunSummary};
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

pub(super) fn table(s: &RunSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nScenario {} ({} measured runs, {} warm-up) on {} — {} × {}",
        s.scenario,
        s.runs,
        s.warmup,
        s.environment.host,
        s.environment.ncpu,
        s.environment.cpu_model
    );
    for f in super::findings::findings(s) {
        let _ = writeln!(out, "  {f}");
    }
    let shown = |m: &str| !m.starts_with(PHASE_PREFIX) && !m.starts_with(RATE_PREFIX);
    let levels = crate::report::format::medians_levels(s, shown);
    let median_head = format!("median [{}]", levels.heading());
    let header = [
        "backend",
        "metric",
        median_head.as_str(),
        "min – max",
        "vs native",
        "n",
    ];
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut notes: Vec<String> = s
        .limitations
        .iter()
        .map(|l| format!("this report: {l}"))
        .collect();
    for b in &s.backends {
        let name = &b.info.backend;
        if let Availability::Unavailable { reason, hint } = &b.info.availability {
            notes.push(format!("{name}: unavailable — {reason} ({hint})"));
            continue;
        }
        if let Some(err) = &b.info.error {
            notes.push(format!("{name}: failed — {err}"));
        }
        if b.failed_runs > 0 {
            notes.push(format!(
                "{name}: {} measured run(s) failed (see `note` in samples.csv); their {} other \
                 sample(s) are left out of the statistics",
                b.failed_runs, b.excluded_samples
            ));
        }
        if let Some(note) = super::findings::client_bound_note(b) {
            notes.push(format!("{name}: {note}"));
        }
        let mut metrics: Vec<(&String, &MetricSummary)> =
            b.metrics.iter().filter(|(m, _)| shown(m)).collect();
        metrics.sort_by_key(|(m, _)| {
            (
                LEADING.iter().position(|l| l == m).unwrap_or(LEADING.len()),
                metric_order(m),
            )
        });
        for (metric, m) in metrics {
            let st = &m.stats;
            let ci = &st.median_ci;
            let ratio = ratio_cell(m);
            rows.push([
                name.clone(),
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
                ratio,
                outlier_n(m),
            ]);
        }
        let mut phases: Vec<(&str, &MetricSummary)> = b
            .metrics
            .iter()
            .filter_map(|(m, v)| m.strip_prefix(PHASE_PREFIX).map(|p| (p, v)))
            .collect();
        phases.sort_by_key(|(p, _)| crate::results::phase_rank(p));
        let phases: Vec<String> = phases
            .iter()
            .map(|(p, v)| format!("{p} {}", format_value(v.stats.median, &v.unit)))
            .collect();
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
        if !phases.is_empty() {
            notes.push(format!("{name} phases (medians): {}", phases.join(", ")));
        }
        if let Some(note) = super::findings::clock_note(b) {
            notes.push(format!("{name}: {note}"));
        }
        let sweep = super::charts::sweep_steps(&b.metrics);
        if !sweep.is_empty() {
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
            let knee = super::charts::knee(&sweep)
                .map_or_else(|| "none".to_string(), |k| format_value(k, "1/s"));
            notes.push(format!(
                "{name} rate sweep (offered → achieved, medians): {}; knee {knee}",
                steps.join(", ")
            ));
        }
    }
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    for n in notes {
        let _ = writeln!(out, "  {n}");
    }
    out
}

fn outlier_n(m: &MetricSummary) -> String {
    let o = m.stats.outliers;
    if o.low + o.high > 0 {
        format!("{} ({} outliers)", m.stats.n, o.low + o.high)
    } else {
        m.stats.n.to_string()
    }
}
