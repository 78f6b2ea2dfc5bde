//! The HTTP latency chart: request latency percentiles per backend.

use super::grouped::grouped;
use super::{Chart, ChartKind};
use crate::results::RunSummary;
use cvm_proto::metric::Metric;

pub const HTTP_LATENCY_METRICS: &[&str] = &[
    Metric::HttpLatencyP50.name(),
    Metric::HttpLatencyP90.name(),
    Metric::HttpLatencyP99.name(),
    Metric::HttpLatencyMax.name(),
];

pub fn http_latency_chart(s: &RunSummary) -> Option<Chart> {
    let mut data = grouped(s, HTTP_LATENCY_METRICS, |m| {
        m.trim_start_matches("http_latency_").to_string()
    });
    if data.groups.is_empty() {
        return None;
    }
    data.quantity = "request latency".into();
    Some(Chart {
        id: "http-latency",
        title: "HTTP latency percentiles (medians over runs)".into(),
        caption: format!(
            "p50, p90, p99 and maximum request latency of each run, summarised by their median \
             across runs; whiskers: the median's interval ({}).",
            crate::report::format::medians_levels(s, |m| HTTP_LATENCY_METRICS.contains(&m)).words()
        ),
        kind: ChartKind::Grouped(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::testdata::{backend, summary};
    use crate::report::charts::{http_rps_chart, memory_chart};
    use crate::results::Stack;

    #[test]
    fn grouped_charts_carry_only_recorded_metrics() {
        let s = summary(vec![
            backend(
                "native",
                Stack::Native,
                &[
                    ("http_latency_p50", "s", 0.0001),
                    ("http_latency_p99", "s", 0.01),
                ],
            ),
            backend("vm", Stack::Vm, &[("http_latency_p50", "s", 0.001)]),
        ]);
        let ChartKind::Grouped(d) = http_latency_chart(&s).unwrap().kind else {
            unreachable!()
        };
        assert_eq!(d.metrics, ["p50", "p99"]);
        assert_eq!(d.groups[1].bars[1], None);
        assert!(d.log);
        assert!(memory_chart(&s).is_none());
        assert!(http_rps_chart(&s).is_none());
    }
}
