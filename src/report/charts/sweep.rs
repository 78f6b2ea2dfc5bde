//! The rate sweep chart: per backend, the latency (p99, from each request's intended send time)
//! against the throughput achieved, one point per offered rate, with the backend's knee in its
//! legend: the highest offered rate it sustained.
//!
//! The sweep records `rate.<offered>.<figure>` once per run; the summary holds each one's median
//! over runs, which is what is drawn.

use std::collections::BTreeMap;

use super::scale::spread_is_large;
use super::{measured, Chart, ChartKind, Line, LineData};
use crate::report::format::format_value;
use crate::results::RunSummary;
use cvm_proto::metric::SweepFigure;

/// A step is sustained when the backend achieved at least this share of the offered rate...
pub const KEEPS_UP: f64 = 0.95;
/// ...and its p99 stayed within this multiple of its p99 at the lowest rate (queueing).
pub const LATENCY_GROWTH: f64 = 10.0;

/// One step of a backend's sweep: offered rate, achieved rate, p99 latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub offered: f64,
    pub achieved: f64,
    pub p99: f64,
}

/// The knee: the highest offered rate up to which every step was sustained.
pub fn knee(steps: &[Step]) -> Option<f64> {
    let base = steps.first()?.p99;
    steps
        .iter()
        .take_while(|s| s.achieved >= KEEPS_UP * s.offered && s.p99 <= LATENCY_GROWTH * base)
        .last()
        .map(|s| s.offered)
}

/// A backend's sweep steps by offered rate, from its summary medians.
pub fn steps(metrics: &BTreeMap<String, crate::results::MetricSummary>) -> Vec<Step> {
    let mut by_rate: BTreeMap<u64, (f64, Option<f64>, Option<f64>)> = BTreeMap::new();
    for (name, m) in metrics {
        let Some((rate, figure)) = SweepFigure::parse(name) else {
            continue;
        };
        // Rates are at least 1/s, so their bits order like the rates themselves.
        let e = by_rate.entry(rate.to_bits()).or_insert((rate, None, None));
        match figure {
            SweepFigure::Rps => e.1 = Some(m.stats.median),
            SweepFigure::LatencyP99 => e.2 = Some(m.stats.median),
            SweepFigure::LatencyP50 | SweepFigure::Unanswered => {}
        }
    }
    by_rate
        .into_values()
        .filter_map(|(offered, achieved, p99)| {
            Some(Step {
                offered,
                achieved: achieved?,
                p99: p99?,
            })
        })
        .collect()
}

pub fn sweep_chart(s: &RunSummary) -> Option<Chart> {
    let mut lines = Vec::new();
    for b in measured(s) {
        let steps = steps(&b.metrics);
        if steps.is_empty() {
            continue;
        }
        let knee = knee(&steps).map_or_else(
            || "no rate sustained".to_string(),
            |k| format!("knee {}", format_value(k, "1/s")),
        );
        lines.push(Line {
            label: format!("{} ({knee})", b.info.backend),
            backend: b.info.backend.clone(),
            points: steps.iter().map(|s| (s.achieved, s.p99)).collect(),
        });
    }
    if lines.is_empty() {
        return None;
    }
    Some(Chart {
        id: "sweep",
        title: "Rate sweep: p99 latency against throughput".into(),
        caption: format!(
            "One point per offered rate (open loop; latency from each request's intended send \
             time, so a server that falls behind shows it). The knee is the highest offered rate \
             a backend sustained: at least {:.0} % of it achieved, with p99 within {LATENCY_GROWTH}x \
             of its p99 at the lowest rate.",
            100.0 * KEEPS_UP
        ),
        kind: ChartKind::Lines(LineData {
            log: spread_is_large(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1))),
            unit: "s".into(),
            quantity: "p99 latency".into(),
            x_quantity: "throughput achieved (requests/s)".into(),
            lines,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::testdata::{backend, summary};
    use crate::results::Stack;

    fn step(offered: f64, achieved: f64, p99: f64) -> Step {
        Step {
            offered,
            achieved,
            p99,
        }
    }

    #[test]
    fn the_knee_is_the_last_rate_sustained_before_falling_behind_or_queueing() {
        let steps = [
            step(1000.0, 1000.0, 0.001),
            step(2000.0, 1990.0, 0.002),
            step(4000.0, 3000.0, 0.5),
            step(8000.0, 8000.0, 0.001),
        ];
        assert_eq!(knee(&steps), Some(2000.0));
        // Keeping up in throughput but queueing far beyond the base latency is past the knee.
        let queued = [step(1000.0, 1000.0, 0.001), step(2000.0, 2000.0, 0.05)];
        assert_eq!(knee(&queued), Some(1000.0));
        assert_eq!(knee(&[step(1000.0, 10.0, 1.0)]), None);
        assert_eq!(knee(&[]), None);
    }

    #[test]
    fn each_backend_gets_a_line_in_rate_order_with_its_knee() {
        let s = summary(vec![
            backend(
                "native",
                Stack::Native,
                &[
                    ("rate.2000.rps", "1/s", 1500.0),
                    ("rate.2000.latency_p99", "s", 0.3),
                    ("rate.1000.rps", "1/s", 1000.0),
                    ("rate.1000.latency_p99", "s", 0.001),
                    ("rate.1000.latency_p50", "s", 0.0005),
                ],
            ),
            backend("vm", Stack::Vm, &[("http_rps", "1/s", 900.0)]),
        ]);
        let chart = sweep_chart(&s).unwrap();
        let ChartKind::Lines(d) = chart.kind else {
            unreachable!()
        };
        assert_eq!(d.lines.len(), 1);
        assert_eq!(d.lines[0].label, "native (knee 1 k/s)");
        assert_eq!(d.lines[0].points, [(1000.0, 0.001), (1500.0, 0.3)]);
        assert!(sweep_chart(&summary(vec![])).is_none());
    }
}
