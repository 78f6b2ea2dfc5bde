//! The report's own cell spellings (the ratio column, an interval's caveat, the order of
//! metrics), on top of the one number formatter every layer shares ([`crate::text`]).

use crate::results::RunSummary;
pub use crate::stats::levels::{level_text, Levels};
pub use crate::text::{display_unit, format_number, format_ratio, format_value, DisplayUnit};

/// A metric name as a sort key that puts density figures in the order of N (`@n=2` before
/// `@n=10`), not in the order of their text.
pub fn metric_order(m: &str) -> (&str, u32) {
    use cvm_proto::metric::PER_INSTANCES_SEPARATOR;
    match m.split_once(PER_INSTANCES_SEPARATOR) {
        Some((base, n)) => (base, n.parse().unwrap_or(u32::MAX)),
        None => (m, 0),
    }
}

/// The "vs native" cell: the ratio of medians (at most three significant figures), or "n/a"
/// with the reason none is taken, or nothing when native has no such figure. One spelling for
/// every output.
pub fn ratio_cell(m: &crate::results::MetricSummary) -> String {
    match (&m.ratio_to_native, &m.ratio_unavailable) {
        (Some(r), _) => format!("{}x", format_ratio(r.point)),
        (None, Some(why)) => format!("n/a ({why})"),
        (None, None) => String::new(),
    }
}

/// The levels of the medians' intervals of the metrics `shown` of every backend that ran.
pub fn medians_levels(s: &RunSummary, shown: impl Fn(&str) -> bool) -> Levels {
    Levels::of(
        s.backends
            .iter()
            .flat_map(|b| b.metrics.iter())
            .filter(|(m, _)| shown(m))
            .map(|(_, v)| &v.stats.median_ci),
    )
}

/// The levels of the ratios to native of every backend.
pub fn ratio_levels(s: &RunSummary) -> Levels {
    Levels::of(
        s.backends
            .iter()
            .flat_map(|b| b.metrics.values())
            .filter_map(|v| v.ratio_to_native.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::Scale;
    use crate::report::{markdown, terminal};
    use crate::results::{
        Availability, BackendInfo, BackendSummary, Environment, MetricSummary, RunSummary, Stack,
    };
    use crate::stats::Summary;

    #[test]
    fn density_figures_sort_by_n() {
        let mut names = vec!["x@n=10", "x@n=2", "x", "w@n=1"];
        names.sort_by_key(|m| metric_order(m));
        assert_eq!(names, ["w@n=1", "x", "x@n=2", "x@n=10"]);
    }

    /// The same medians read the same in the terminal table, the Markdown export and on a
    /// chart's log axis.
    #[test]
    fn every_output_writes_a_value_the_same_way() {
        let cases = [
            ("http_rps", "1/s", 12_345.0, "12.3 k/s"),
            ("ready_latency", "s", 0.0021, "2.1 ms"),
            ("disk_footprint", "B", 3.5e9, "3.26 GiB"),
        ];
        let s = RunSummary {
            run_id: "r".into(),
            scenario: "s".into(),
            description: String::new(),
            status: crate::results::RunStatus::Done,
            runs: 1,
            warmup: 0,
            environment: Environment::default(),
            backends: vec![BackendSummary {
                info: BackendInfo {
                    backend: "native".into(),
                    stack: Stack::Native,
                    availability: Availability::Available,
                    error: None,
                    config: Default::default(),
                },
                failed_runs: 0,
                excluded_samples: 0,
                client_bound_runs: 0,
                metrics: cases
                    .iter()
                    .map(|(m, u, v, _)| {
                        let summary = MetricSummary {
                            unit: u.to_string(),
                            stats: Summary::of(&[*v]).unwrap(),
                            ratio_to_native: None,
                            ratio_unavailable: None,
                        };
                        (m.to_string(), summary)
                    })
                    .collect(),
            }],
            pair_ratios: Vec::new(),
            limitations: Vec::new(),
        };
        let table = terminal::table(&s, crate::report::Detail::Full);
        let md = markdown::summary(&s);
        for (_, unit, value, text) in cases {
            assert_eq!(format_value(value, unit), text);
            assert!(table.contains(text), "terminal lacks {text}:\n{table}");
            assert!(md.contains(text), "markdown lacks {text}:\n{md}");
            let axis = Scale::log(value, value, unit);
            assert_eq!(axis.tick_label(value / axis.unit.factor), text);
        }
    }
}
