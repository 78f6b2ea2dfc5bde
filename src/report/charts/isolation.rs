//! The noisy-neighbour chart: per backend, the victim's p99 beside each aggressor kind over its
//! p99 alone (1 = undisturbed). Part of the report's isolation section, which draws it itself.

use super::grouped::grouped;
use super::{Chart, ChartKind};
use crate::results::RunSummary;
use cvm_proto::isolation::Aggressor;
use cvm_proto::metric::Metric;

/// The chart's id: its file name under `charts/` and its anchor.
pub const ISOLATION_CHART: &str = "isolation-p99";

pub fn isolation_chart(s: &RunSummary) -> Option<Chart> {
    let metrics: Vec<&'static str> = Aggressor::ALL
        .iter()
        .map(|a| a.p99_ratio().name())
        .collect();
    let mut data = grouped(s, &metrics, |m| {
        let kind = Aggressor::ALL
            .iter()
            .find(|a| a.p99_ratio().name() == m)
            .map_or(m, |a| a.name());
        format!("beside {kind}")
    });
    if data.groups.is_empty() {
        return None;
    }
    data.quantity = "victim p99 / p99 alone".into();
    Some(Chart {
        id: ISOLATION_CHART,
        title: "Noisy neighbour: the victim's p99 beside each aggressor, relative to alone".into(),
        caption: format!(
            "The victim (the scenario's server) at a fixed open-loop rate, a share of what it \
             sustained alone, beside one aggressor instance of the same backend with the same \
             limits on the same CPUs; 1 means undisturbed. Alone, its p99 is `{}`.",
            Metric::NoisyAloneP99.name()
        ),
        kind: ChartKind::Grouped(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::testdata::{backend, summary};
    use crate::results::Stack;

    #[test]
    fn the_chart_has_a_bar_per_aggressor_a_backend_measured() {
        let s = summary(vec![
            backend(
                "native",
                Stack::Native,
                &[
                    ("noisy_cpu_p99_ratio", "1", 3.0),
                    ("noisy_io_p99_ratio", "1", 1.5),
                ],
            ),
            backend("vm", Stack::Vm, &[("noisy_cpu_p99_ratio", "1", 1.2)]),
        ]);
        let chart = isolation_chart(&s).unwrap();
        let ChartKind::Grouped(d) = chart.kind else {
            unreachable!()
        };
        assert_eq!(d.metrics, ["beside cpu", "beside io"]);
        assert_eq!(d.groups.len(), 2);
        assert_eq!(d.groups[1].bars[1], None);
        let none = summary(vec![backend(
            "native",
            Stack::Native,
            &[("ready_latency", "s", 0.1)],
        )]);
        assert!(isolation_chart(&none).is_none());
    }
}
