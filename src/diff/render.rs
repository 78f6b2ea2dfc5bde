//! A [`Diff`] as people read it: a terminal table, Markdown, and a self-contained HTML page
//! whose chart shows each relative change with its interval against the noise band.

use std::fmt::Write;

use super::{Diff, MetricDiff, Verdict};
use crate::stats::levels::Levels;
use crate::text::{escape_html as escape, format_value};

/// The relative change as a signed percentage ("+21.3 %", "−0.4 %").
pub fn percent(change: f64) -> String {
    if change.is_infinite() {
        return if change > 0.0 { "+∞" } else { "−∞" }.to_string();
    }
    format!("{:+.1} %", change * 100.0)
}

/// The p-value with the precision that matters next to α.
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn interval(r: &MetricDiff, levels: &Levels) -> String {
    match &r.difference {
        Some(d) if d.level > 0.0 => format!(
            "{} [{}, {}]{}",
            signed(d.point, &r.unit),
            signed(d.lower, &r.unit),
            signed(d.upper, &r.unit),
            levels.caveat(d)
        ),
        Some(d) => signed(d.point, &r.unit),
        None => String::new(),
    }
}

/// The levels of the rows' difference intervals (one heading when they agree).
fn levels(d: &Diff) -> Levels {
    Levels::of(d.rows.iter().filter_map(|r| r.difference.as_ref()))
}

fn signed(v: f64, unit: &str) -> String {
    let t = format_value(v.abs(), unit);
    if v < 0.0 {
        format!("-{t}")
    } else {
        format!("+{t}")
    }
}

/// One line per count, for the end of the table and the page's heading.
pub fn verdict_line(d: &Diff) -> String {
    format!(
        "{} regression(s), {} improvement(s), {} other change(s), {} host change(s), {} \
         unchanged, {} untested (a change counts when its p-value, adjusted by {} over the {} \
         tested rows (q), is below {} and it exceeds the metric's noise threshold)",
        d.count(Verdict::Regression),
        d.count(Verdict::Improvement),
        d.count(Verdict::Changed),
        d.count(Verdict::HostChanged),
        d.count(Verdict::Unchanged),
        d.count(Verdict::Untested),
        d.correction,
        d.tested(),
        d.alpha
    )
}

/// The column headings, the difference's with its level when every row's agrees.
fn head(d: &Diff) -> [String; 9] {
    [
        "backend",
        "metric",
        "base median",
        "new median",
        "change",
        &format!("difference [{}]", levels(d).heading()),
        "p",
        "q",
        "verdict",
    ]
    .map(str::to_string)
}

fn cells(r: &MetricDiff, levels: &Levels) -> [String; 9] {
    let tested = r.verdict != Verdict::Untested;
    [
        r.backend.clone(),
        r.metric.clone(),
        format_value(r.base_median, &r.unit),
        format_value(r.new_median, &r.unit),
        format!("{} (±{:.0} %)", percent(r.change), r.threshold * 100.0),
        interval(r, levels),
        if tested {
            p_text(r.p_value)
        } else {
            format!("n={}/{}", r.base_n, r.new_n)
        },
        if tested {
            p_text(r.q_value)
        } else {
            String::new()
        },
        r.verdict_text(),
    ]
}

/// The terminal table, warnings first.
pub fn terminal(d: &Diff) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "cvm diff: {} — base {} ({}), new {} ({})",
        d.scenario, d.base, d.base_run, d.new, d.new_run
    );
    for w in &d.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    let (head, levels) = (head(d), levels(d));
    let rows: Vec<[String; 9]> = d.rows.iter().map(|r| cells(r, &levels)).collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .chain([&head])
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cols: &[String]| -> String {
        cols.iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(o, "{}", line(&head));
    for r in &rows {
        let _ = writeln!(o, "{}", line(r));
    }
    let _ = writeln!(o, "{}", verdict_line(d));
    for n in d.power_notes() {
        let _ = writeln!(o, "note: {n}");
    }
    o
}

/// The Markdown table.
pub fn markdown(d: &Diff) -> String {
    let md = |s: &str| s.replace('|', "\\|").replace('<', "&lt;");
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# cvm diff: {}\n\nBase `{}` ({}), new `{}` ({}).\n",
        md(&d.scenario),
        md(&d.base),
        md(&d.base_run),
        md(&d.new),
        md(&d.new_run)
    );
    for w in &d.warnings {
        let _ = writeln!(o, "> **Warning:** {}\n", md(w));
    }
    let (head, levels) = (head(d), levels(d));
    let _ = writeln!(o, "| {} |", head.join(" | "));
    let _ = writeln!(o, "|{}", "---|".repeat(head.len()));
    for r in &d.rows {
        let c = cells(r, &levels);
        let _ = writeln!(
            o,
            "| {} |",
            c.iter().map(|s| md(s)).collect::<Vec<_>>().join(" | ")
        );
    }
    let _ = writeln!(o, "\n{}", verdict_line(d));
    for n in d.power_notes() {
        let _ = writeln!(o, "\n> **Note:** {}", md(&n));
    }
    o
}

fn colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Regression => "#c0392b",
        Verdict::Improvement => "#1e8449",
        Verdict::Changed => "#2e6fb0",
        Verdict::HostChanged => "#b9770e",
        Verdict::Unchanged | Verdict::Untested => "#9a9a9a",
    }
}

/// Relative change per tested row, a bar from 0 with the difference's interval as a whisker
/// and the row's noise threshold as a shaded band; the axis is clipped to ±100 %.
pub fn chart(d: &Diff) -> String {
    let rows: Vec<&MetricDiff> = d
        .rows
        .iter()
        .filter(|r| r.verdict != Verdict::Untested && r.base_median != 0.0)
        .collect();
    let (label_w, plot_w, row_h, top) = (330.0, 560.0, 22.0, 30.0);
    let height = top + row_h * rows.len().max(1) as f64 + 30.0;
    let rel = |r: &MetricDiff, v: f64| v / r.base_median.abs();
    let extent = rows
        .iter()
        .flat_map(|r| {
            let mut v = vec![r.change.abs(), r.threshold * 2.0];
            if let Some(e) = &r.difference {
                v.extend([rel(r, e.lower).abs(), rel(r, e.upper).abs()]);
            }
            v
        })
        .filter(|v| v.is_finite())
        .fold(0.05_f64, f64::max)
        .min(1.0);
    let x = |v: f64| label_w + plot_w / 2.0 + (v.clamp(-extent, extent) / extent) * plot_w / 2.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         viewBox=\"0 0 {w} {height}\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>",
        w = label_w + plot_w + 20.0
    );
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"18\" text-anchor=\"middle\">relative change of the median \
         (axis ±{:.0} %)</text>",
        label_w + plot_w / 2.0,
        extent * 100.0
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let mid = y + row_h / 2.0;
        let band = (x(-r.threshold), x(r.threshold));
        let (a, b) = (x(0.0).min(x(r.change)), x(0.0).max(x(r.change)));
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} {}</text>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#eee\"/>\
             <rect x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
            label_w - 8.0,
            mid + 4.0,
            escape(&r.backend),
            escape(&r.metric),
            band.0,
            y + 1.0,
            band.1 - band.0,
            row_h - 2.0,
            y + 5.0,
            (b - a).max(1.0),
            row_h - 10.0,
            colour(r.verdict)
        );
        if let Some(e) = &r.difference {
            let (l, u) = (x(rel(r, e.lower)), x(rel(r, e.upper)));
            let _ = writeln!(
                o,
                "<line x1=\"{l:.1}\" y1=\"{mid:.1}\" x2=\"{u:.1}\" y2=\"{mid:.1}\" stroke=\"#222\"/>\
                 <line x1=\"{l:.1}\" y1=\"{:.1}\" x2=\"{l:.1}\" y2=\"{:.1}\" stroke=\"#222\"/>\
                 <line x1=\"{u:.1}\" y1=\"{:.1}\" x2=\"{u:.1}\" y2=\"{:.1}\" stroke=\"#222\"/>",
                mid - 4.0,
                mid + 4.0,
                mid - 4.0,
                mid + 4.0
            );
        }
    }
    let zero = x(0.0);
    let _ = writeln!(
        o,
        "<line x1=\"{zero:.1}\" y1=\"{top}\" x2=\"{zero:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>\n</svg>",
        height - 30.0
    );
    o
}

/// The HTML page: warnings, counts, the chart, the table.
pub fn html(d: &Diff) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src 'self' data:\">\n\
         <title>cvm diff: {}</title>\n<style>\
         body {{ font-family: \"DejaVu Sans\", system-ui, sans-serif; margin: 24px; color: #222; }}\
         table {{ border-collapse: collapse; font-size: 0.9em; }}\
         th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}\
         td.num {{ text-align: right; white-space: nowrap; }}\
         .warning {{ background: #fff4e5; border: 2px solid #e8a13a; padding: 10px 14px; margin: 10px 0; }}\
         .regression {{ color: #c0392b; font-weight: bold; }} .improvement {{ color: #1e8449; }}\
         svg {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}\
         </style>\n</head>\n<body>\n<h1>cvm diff: {}</h1>\n<p>Base <code>{}</code> (run {}), new \
         <code>{}</code> (run {}).</p>\n",
        escape(&d.scenario),
        escape(&d.scenario),
        escape(&d.base),
        escape(&d.base_run),
        escape(&d.new),
        escape(&d.new_run)
    );
    for w in &d.warnings {
        let _ = writeln!(
            o,
            "<div class=\"warning\" id=\"host-warning\">{}</div>",
            escape(w)
        );
    }
    let (head, levels) = (head(d), levels(d));
    let _ = writeln!(
        o,
        "<p id=\"verdict\">{}</p>\n{}<section id=\"chart\">\n{}</section>\n\
         <section id=\"table\">\n<table>\n<tr>{}</tr>",
        escape(&verdict_line(d)),
        d.power_notes()
            .iter()
            .map(|n| format!("<p class=\"note\">{}</p>\n", escape(n)))
            .collect::<String>(),
        chart(d),
        head.iter()
            .map(|h| format!("<th>{}</th>", escape(h)))
            .collect::<String>()
    );
    for r in &d.rows {
        let c = cells(r, &levels);
        let class = match r.verdict {
            Verdict::Regression => " class=\"regression\"",
            Verdict::Improvement => " class=\"improvement\"",
            _ => "",
        };
        let _ = writeln!(
            o,
            "<tr{class}><td>{}</td><td><code>{}</code></td>{}</tr>",
            escape(&c[0]),
            escape(&c[1]),
            c[2..]
                .iter()
                .map(|s| format!("<td class=\"num\">{}</td>", escape(s)))
                .collect::<String>()
        );
    }
    let _ = writeln!(
        o,
        "</table>\n</section>\n<p>Medians of the measured runs; the difference's interval is a \
         percentile bootstrap of the difference of medians from {} runs a side, and with fewer \
         the order-statistic interval of the pairwise differences, at the level it has (in the \
         heading, or in the cell when levels differ); p is a permutation test of the difference \
         of means (exact up to {} relabellings), q the p-value adjusted by {} over the tested \
         rows. A change counts only when q &lt; α and the relative change exceeds the metric's \
         threshold (in brackets), and it is a regression or an improvement by the metric's \
         direction. A row whose runs cannot give p &lt; α is untested, with the runs a side it \
         needs.</p>\n</body>\n</html>",
        crate::stats::MIN_N_BOOTSTRAP,
        crate::stats::ab::EXACT_LIMIT,
        escape(&d.correction)
    );
    o
}
