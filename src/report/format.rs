//! The one place a number and its unit become text, for the terminal table, the Markdown
//! export, `index.html`, the stack diagram and the charts alike, so a figure reads the same
//! wherever it appears.
//!
//! The rule: the value is scaled into the largest display unit it reaches (`s`: s, ms, µs;
//! `B`: GiB, MiB, KiB, B, binary; `B/s` likewise per second; `1/s`: M/s from 10⁶, k/s from 10³,
//! /s), then written with three significant digits and no trailing zeros ("1.2 ms", "12.3 k/s",
//! "3.26 GiB", "1 s"). The unit is chosen after rounding, so 0.9996 s reads "1 s", not
//! "1000 ms". Values of `count`, `1` or no unit are bare numbers; any other unit is kept as written.

/// The unit a value or an axis is shown in, and what a base-unit value is divided by for it.
#[derive(Debug, Clone, PartialEq)]
pub struct DisplayUnit {
    pub factor: f64,
    /// Empty for bare numbers.
    pub name: String,
}

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The display unit for values of `unit` around `magnitude` (in `unit`).
pub fn display_unit(unit: &str, magnitude: f64) -> DisplayUnit {
    let m = magnitude.abs();
    let u = |factor: f64, name: &str| DisplayUnit {
        factor,
        name: name.to_string(),
    };
    match unit {
        "s" if m >= 1.0 => u(1.0, "s"),
        "s" if m >= 1e-3 => u(1e-3, "ms"),
        "s" => u(1e-6, "µs"),
        "B" | "B/s" => {
            let (factor, prefix) = if m >= GIB {
                (GIB, "GiB")
            } else if m >= MIB {
                (MIB, "MiB")
            } else if m >= KIB {
                (KIB, "KiB")
            } else {
                (1.0, "B")
            };
            let suffix = if unit == "B/s" { "/s" } else { "" };
            u(factor, &format!("{prefix}{suffix}"))
        }
        "1/s" if m >= 1e6 => u(1e6, "M/s"),
        "1/s" if m >= 1e3 => u(1e3, "k/s"),
        "1/s" => u(1.0, "/s"),
        "" | "count" | "1" => u(1.0, ""),
        other => u(1.0, other),
    }
}

/// A metric name as a sort key that puts density figures in the order of N (`@n=2` before
/// `@n=10`), not in the order of their text.
pub fn metric_order(m: &str) -> (&str, u32) {
    use cvm_proto::metric::PER_INSTANCES_SEPARATOR;
    match m.split_once(PER_INSTANCES_SEPARATOR) {
        Some((base, n)) => (base, n.parse().unwrap_or(u32::MAX)),
        None => (m, 0),
    }
}

/// The "vs native" cell: the ratio of medians, or "n/a" with the reason none is taken, or
/// nothing when native has no such figure. One spelling for every output.
pub fn ratio_cell(m: &crate::results::MetricSummary) -> String {
    match (&m.ratio_to_native, &m.ratio_unavailable) {
        (Some(r), _) => format!("{:.2}x", r.point),
        (None, Some(why)) => format!("n/a ({why})"),
        (None, None) => String::new(),
    }
}

/// A value with its unit, by the rule in the module docs.
pub fn format_value(value: f64, unit: &str) -> String {
    let du = display_unit(unit, round_significant(value));
    if du.name.is_empty() {
        format_number(value)
    } else {
        format!("{} {}", format_number(value / du.factor), du.name)
    }
}

/// The level of an interval as every label prints it: "95 %", "93.8 %", "97.9 %".
pub fn level_text(level: f64) -> String {
    let pct = level * 100.0;
    if (pct - pct.round()).abs() < 0.05 {
        format!("{pct:.0} %")
    } else {
        format!("{pct:.1} %")
    }
}

/// The levels of the intervals a table or chart shows: one level for all of them goes in the
/// heading ("median [93.8 % CI]"); when they differ (a backend with failed runs, a metric
/// measured fewer times), the heading says "CI" and each interval carries its own level. A
/// single value's "interval" (level 0) is the value itself and claims nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// The one level every interval has, if they agree.
    common: Option<f64>,
}

impl Levels {
    pub fn of<'a>(intervals: impl IntoIterator<Item = &'a crate::stats::Estimate>) -> Levels {
        let mut common = None;
        let mut agree = true;
        for e in intervals.into_iter().filter(|e| e.level > 0.0) {
            match common {
                None => common = Some(e.level),
                Some(l) if (l - e.level).abs() > 1e-9 => agree = false,
                Some(_) => {}
            }
        }
        Levels {
            common: common.filter(|_| agree),
        }
    }

    /// The levels of the medians' intervals of the metrics `shown` of every backend that ran.
    pub fn of_medians(s: &crate::results::RunSummary, shown: impl Fn(&str) -> bool) -> Levels {
        Levels::of(
            s.backends
                .iter()
                .flat_map(|b| b.metrics.iter())
                .filter(|(m, _)| shown(m))
                .map(|(_, v)| &v.stats.median_ci),
        )
    }

    /// The levels of the ratios to native of every backend.
    pub fn of_ratios(s: &crate::results::RunSummary) -> Levels {
        Levels::of(
            s.backends
                .iter()
                .flat_map(|b| b.metrics.values())
                .filter_map(|v| v.ratio_to_native.as_ref()),
        )
    }

    /// "93.8 % CI", or "CI" when the levels differ (each cell then says its own).
    pub fn heading(&self) -> String {
        match self.common {
            Some(l) => format!("{} CI", level_text(l)),
            None => "CI".to_string(),
        }
    }

    /// What to put after an interval: nothing when the heading states its level, else " (90 %)".
    pub fn caveat(&self, e: &crate::stats::Estimate) -> String {
        if e.level <= 0.0 || self.common.is_some() {
            String::new()
        } else {
            format!(" ({})", level_text(e.level))
        }
    }

    /// The levels in words for a caption, in brackets after "interval": "95 %", or where each
    /// is given when they differ.
    pub fn words(&self) -> String {
        match self.common {
            Some(l) => level_text(l),
            None => "levels differ: each is in the summary table".to_string(),
        }
    }
}

/// A bare number: at most three significant digits (all integer digits from 100 up), no
/// trailing zeros.
pub fn format_number(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (-a.log10().floor()) as usize + 2;
        format!("{v:.digits$}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `v` rounded to three significant digits, as [`format_number`] shows it.
fn round_significant(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(2 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
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
    fn values_get_readable_units() {
        assert_eq!(format_value(0.0012, "s"), "1.2 ms");
        assert_eq!(format_value(2.5, "s"), "2.5 s");
        assert_eq!(format_value(0.9996, "s"), "1 s");
        assert_eq!(format_value(0.000_050, "s"), "50 µs");
        assert_eq!(format_value(64.0 * MIB, "B"), "64 MiB");
        assert_eq!(format_value(-3.0 * KIB, "B"), "-3 KiB");
        assert_eq!(format_value(200.0 * MIB, "B/s"), "200 MiB/s");
        assert_eq!(format_value(999.0, "1/s"), "999 /s");
        assert_eq!(format_value(2.5e6, "1/s"), "2.5 M/s");
        assert_eq!(format_value(17.0, "count"), "17");
        assert_eq!(format_value(0.5, "ratio"), "0.5 ratio");
        assert_eq!(format_number(0.05), "0.05");
        assert_eq!(format_number(1000.0), "1000");
    }

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
            status: "done".into(),
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
        let table = terminal::table(&s);
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
