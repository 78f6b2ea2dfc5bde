//! The one place a number and its unit become text, and text becomes HTML, for every output:
//! the report (terminal, Markdown, `index.html`, the stack diagram and the charts), `cvm diff`'s
//! pages and `cvm check`'s table, so a figure reads the same wherever it appears. It depends on
//! no other module of cvm, so every layer may use it.
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

/// A value with its unit, by the rule in the module docs.
pub fn format_value(value: f64, unit: &str) -> String {
    let du = display_unit(unit, round_significant(value));
    if du.name.is_empty() {
        format_number(value)
    } else {
        format!("{} {}", format_number(value / du.factor), du.name)
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

/// A ratio or a factor: at most three significant figures at any size ("1610", not "1609":
/// a ratio's interval is never tighter than that), unlike a count, which stays exact.
pub fn format_ratio(v: f64) -> String {
    if v.is_finite() {
        format_number(round_significant(v))
    } else {
        "∞".into()
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

/// Escapes text for HTML element content and quoted attribute values alike.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn html_special_characters_are_escaped() {
        assert_eq!(
            escape_html("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
    }
}
