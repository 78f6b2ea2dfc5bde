//! The site's first section when a suite names a publication: the answer in sentences (where
//! this host agrees with the study and where not, with the emulation caveat in the sentence it
//! qualifies), then a row per workload with the study's Docker and KVM ratios beside every
//! backend's ratio here.

use std::fmt::Write;

use crate::report::findings::percent;
use crate::report::reference::{Agreement, Counterpart, Measured, Published, Row};
use crate::text::escape_html as escape;

/// "99": a ratio as a share of native's, in percent.
fn hundredths(v: f64) -> String {
    crate::text::format_ratio(v * 100.0)
}

/// "99%": a ratio as a share of native's.
fn share(v: f64) -> String {
    format!("{}%", hundredths(v))
}

/// One measured cell: the share, and under it its interval and how it stands to the study's.
fn cell(m: &Measured) -> String {
    let (class, word) = match m.counterpart.map(|(_, _, a)| a) {
        Some(Agreement::Agrees) => ("agrees", " agrees"),
        Some(Agreement::Lower) => ("differs", " lower"),
        Some(Agreement::Higher) => ("differs", " higher"),
        Some(Agreement::Emulated) => ("emulated", " TCG"),
        None => ("", ""),
    };
    format!(
        "<span class=\"{class}\">{}<br><small>[{}, {}]{word}</small></span>",
        share(m.ratio.point),
        hundredths(m.ratio.lower),
        hundredths(m.ratio.upper)
    )
}

/// Every backend measured in any row: those with a counterpart in the study first (so they
/// stand beside its columns), then the rest, each in the order first seen.
fn backends(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in rows.iter().flat_map(|r| &r.measured) {
        if !out.contains(&m.backend) {
            out.push(m.backend.clone());
        }
    }
    out.sort_by_key(|b| match Counterpart::of(b) {
        Some(Counterpart::Docker) => 0,
        Some(Counterpart::Kvm) => 1,
        None => 2,
    });
    out
}

/// The levels of the intervals shown, as words: "75%", or "50% to 75%".
fn levels(rows: &[Row]) -> String {
    let mut all: Vec<f64> = rows
        .iter()
        .flat_map(|r| &r.measured)
        .map(|m| m.ratio.level)
        .collect();
    all.sort_by(f64::total_cmp);
    match (all.first(), all.last()) {
        (Some(a), Some(b)) if a == b => share(*a),
        (Some(a), Some(b)) => format!("{} to {}", share(*a), share(*b)),
        _ => "—".into(),
    }
}

/// What one backend's comparisons with its counterpart in the study come to, in one sentence.
fn verdict(backend: &str, rows: &[Row]) -> Option<String> {
    let cells: Vec<(&Row, &Measured)> = rows
        .iter()
        .filter_map(|r| Some((r, r.measured.iter().find(|m| m.backend == backend)?)))
        .filter(|(_, m)| m.counterpart.is_some())
        .collect();
    let (counterpart, _, _) = cells.first()?.1.counterpart?;
    let study = counterpart.label();
    let agreement = |(_, m): &(&Row, &Measured)| m.counterpart.map(|(_, _, a)| a);
    if cells
        .iter()
        .any(|c| agreement(c) == Some(Agreement::Emulated))
    {
        return Some(format!(
            "{backend} ran under TCG emulation on this host (no usable KVM), so its shares of \
             native measure emulation, not the hardware virtualisation behind the study's {study} \
             figures: they are not comparable."
        ));
    }
    let agree = cells
        .iter()
        .filter(|c| agreement(c) == Some(Agreement::Agrees))
        .count();
    let differ: Vec<String> = cells
        .iter()
        .filter(|c| agreement(c) != Some(Agreement::Agrees))
        .map(|(r, m)| {
            let published = m.counterpart.map_or(0.0, |(_, v, _)| v);
            format!(
                "{} ({} here, {} in the study)",
                r.figure.map_or("?", |f| f.benchmark),
                percent(&m.ratio),
                share(published)
            )
        })
        .collect();
    let mut s = format!(
        "{backend} agrees with the study's {study} on {agree} of {} workloads (the study's \
         share of native within this host's interval)",
        cells.len()
    );
    if !differ.is_empty() {
        let _ = write!(s, "; it differs on {}", differ.join(", "));
    }
    s.push('.');
    Some(s)
}

/// The section: sentences, then the table, then the sources.
pub(super) fn section(rows: &[Row], p: &Published) -> String {
    let cols = backends(rows);
    let mut o = String::from("<section id=\"study\">\n<h2>Against the study</h2>\n");
    let sentences: Vec<String> = cols.iter().filter_map(|b| verdict(b, rows)).collect();
    let others: Vec<&str> = cols
        .iter()
        .filter(|b| Counterpart::of(b).is_none())
        .map(String::as_str)
        .collect();
    for s in &sentences {
        let _ = writeln!(o, "<p class=\"answer\">{}</p>", escape(s));
    }
    if !others.is_empty() {
        let (have, their) = if others.len() == 1 {
            ("has", "its share")
        } else {
            ("have", "their shares")
        };
        let _ = writeln!(
            o,
            "<p>{} {have} no counterpart in the study, which measured Docker and KVM only; \
             {their} of native in the table.</p>",
            escape(&others.join(", "))
        );
    }
    o.push_str(
        "<div class=\"tablewrap\"><table id=\"study-table\">\n<tr><th>scenario here</th>\
         <th>the study's benchmark</th>",
    );
    for b in &cols {
        if let Some(c) = Counterpart::of(b) {
            let _ = write!(o, "<th>study: {}</th>", c.label());
        }
        let _ = write!(o, "<th>{} here</th>", escape(b));
    }
    o.push_str("</tr>\n");
    for r in rows {
        let _ = write!(
            o,
            "<tr><td><a href=\"{0}/index.html\">{0}</a><br><small>{1}</small></td><td>{2}</td>",
            escape(&r.scenario),
            escape(r.metric.name()),
            escape(r.figure.map_or("— (none in the study)", |f| f.benchmark)),
        );
        for b in &cols {
            if let Some(c) = Counterpart::of(b) {
                let published = r
                    .figure
                    .map_or_else(|| "—".to_string(), |f| share(c.value(f)));
                let _ = write!(o, "<td class=\"num study\">{published}</td>");
            }
            let c = r
                .measured
                .iter()
                .find(|m| &m.backend == b)
                .map_or_else(|| "—".to_string(), cell);
            let _ = write!(o, "<td class=\"num\">{c}</td>");
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table></div>\n");
    let _ = writeln!(
        o,
        "<p class=\"sub\">Each cell is a share of native's throughput on the same host (100% = as \
         fast as native; higher is better): here the median, under it its interval ({} level, as \
         each report states); \"agrees\" when the study's share lies within it. The study's: {}; \
         computed from {}.</p>\n<ul class=\"sub\">",
        levels(rows),
        escape(p.citation),
        escape(p.data)
    );
    // Each source once, for the figures the table shows.
    let mut listed: Vec<&str> = Vec::new();
    for f in rows.iter().filter_map(|r| r.figure) {
        if !listed.contains(&f.source) {
            listed.push(f.source);
            let _ = writeln!(o, "<li>{}: {}</li>", escape(f.benchmark), escape(f.source));
        }
    }
    o.push_str("</ul>\n</section>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::reference::{compare, FELTER_2014};
    use crate::results::{summarize, testdata, RunSummary};

    /// The made-up web run with its HTTP figures relabelled as the cpu scenario's score; docker's
    /// scaled by `docker` of native's.
    fn cpu_run(docker: f64) -> RunSummary {
        let (meta, mut rows) = testdata::web_run();
        let native: Vec<f64> = rows
            .iter()
            .filter(|r| r.backend == "native" && r.metric == "http_rps")
            .map(|r| r.value)
            .collect();
        let mut n = 0;
        for r in rows.iter_mut().filter(|r| r.metric == "http_rps") {
            r.metric = "cpu_score".into();
            if r.backend == "docker" {
                r.value = native[n % native.len()] * docker;
                n += 1;
            }
        }
        summarize(&meta, &rows)
    }

    #[test]
    fn each_backend_is_set_against_its_counterpart_and_emulation_is_not_compared() {
        let s = cpu_run(0.85);
        let rows = compare(&[("cpu", &s)], &FELTER_2014);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.figure.map(|f| f.benchmark), Some("Linpack"));
        let of = |b: &str| row.measured.iter().find(|m| m.backend == b).unwrap();
        assert_eq!(
            of("docker").counterpart.map(|(c, _, a)| (c, a)),
            Some((Counterpart::Docker, Agreement::Lower))
        );
        assert_eq!(
            of("vm").counterpart.map(|(c, _, a)| (c, a)),
            Some((Counterpart::Kvm, Agreement::Emulated))
        );
        assert!(of("container").counterpart.is_none());
        let html = section(&rows, &FELTER_2014);
        assert!(
            html.contains("docker agrees with the study&#39;s Docker on 0 of 1 workloads")
                && html.contains("it differs on Linpack (85%"),
            "{html}"
        );
        assert!(html.contains("vm ran under TCG emulation"), "{html}");
        // The backends with a counterpart stand first, each beside the study's column.
        let at = |text: &str| html.find(text).unwrap_or_else(|| panic!("{text}: {html}"));
        assert!(at("study: Docker") < at("docker here"));
        assert!(at("docker here") < at("study: KVM"));
        assert!(at("vm here") < at("container here"));
        assert!(
            html.contains("container, runc, gvisor have no counterpart"),
            "{html}"
        );
        // One source line for the one figure shown.
        assert_eq!(html.matches("<li>").count(), 1, "{html}");
    }

    #[test]
    fn a_docker_as_fast_as_native_agrees_with_the_study() {
        let s = cpu_run(1.0);
        let rows = compare(&[("cpu", &s)], &FELTER_2014);
        let docker = rows[0].measured.iter().find(|m| m.backend == "docker");
        assert_eq!(
            docker.and_then(|m| m.counterpart).map(|(_, _, a)| a),
            Some(Agreement::Agrees)
        );
        let html = section(&rows, &FELTER_2014);
        assert!(
            html.contains("docker agrees with the study&#39;s Docker on 1 of 1 workloads")
                && !html.contains("it differs"),
            "{html}"
        );
    }

    #[test]
    fn a_workload_the_study_did_not_measure_says_so() {
        let (meta, rows) = testdata::web_run();
        let s = summarize(&meta, &rows);
        let rows = compare(&[("web", &s)], &FELTER_2014);
        assert!(rows[0].figure.is_none());
        let html = section(&rows, &FELTER_2014);
        assert!(html.contains("none in the study"), "{html}");
        assert!(!html.contains("agrees with"), "{html}");
    }
}
