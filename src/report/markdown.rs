//! `--export-markdown` and `summary.md`: the findings, then a summary table for READMEs and
//! pull requests.

use std::fmt::Write;

use super::format::{format_value, metric_order, ratio_cell};
use crate::results::{Availability, RunSummary};
use cvm_proto::metric::PHASE_PREFIX;

pub(super) fn summary(s: &RunSummary) -> String {
    let mut out = String::new();
    let env = &s.environment;
    let _ = writeln!(
        out,
        "## cvm: {} ({})\n",
        escape(&s.scenario),
        escape(&s.description)
    );
    let found = super::findings::findings(s);
    if !found.is_empty() {
        let _ = writeln!(
            out,
            "{}\n",
            found
                .iter()
                .map(|f| escape(f))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let _ = writeln!(
        out,
        "Host `{}`{}: {} × {}, {:.1} GiB, kernel {}, cgroup {}; cvm {} ({}). {} measured runs after {} warm-up.\n",
        escape(&env.host),
        if env.root { "" } else { " (rootless)" },
        env.ncpu,
        escape(&env.cpu_model),
        env.mem_total as f64 / (1u64 << 30) as f64,
        escape(&env.kernel),
        escape(&env.cgroup),
        escape(&env.cvm_version),
        escape(&env.git_sha),
        s.runs,
        s.warmup
    );
    for l in &s.limitations {
        let _ = writeln!(out, "> **Note:** {}\n", escape(l));
    }
    let levels = crate::report::format::medians_levels(s, |m| !m.starts_with(PHASE_PREFIX));
    let _ = writeln!(
        out,
        "| backend | metric | median | {} | min – max | vs native | n |",
        levels.heading()
    );
    let _ = writeln!(out, "|---|---|---:|---|---|---:|---:|");
    let mut unavailable = Vec::new();
    for b in &s.backends {
        if let Availability::Unavailable { reason, .. } = &b.info.availability {
            unavailable.push(format!(
                "- **{}**: unavailable — {}",
                b.info.backend,
                escape(reason)
            ));
            continue;
        }
        let mut metrics: Vec<_> = b
            .metrics
            .iter()
            .filter(|(m, _)| !m.starts_with(PHASE_PREFIX))
            .collect();
        metrics.sort_by_key(|(m, _)| metric_order(m));
        for (metric, m) in metrics {
            let st = &m.stats;
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} – {}{} | {} – {} | {} | {} |",
                b.info.backend,
                metric,
                format_value(st.median, &m.unit),
                format_value(st.median_ci.lower, &m.unit),
                format_value(st.median_ci.upper, &m.unit),
                levels.caveat(&st.median_ci),
                format_value(st.min, &m.unit),
                format_value(st.max, &m.unit),
                escape(&ratio_cell(m)),
                st.n
            );
        }
    }
    let client_bound: Vec<String> = s
        .backends
        .iter()
        .filter_map(|b| {
            super::findings::client_bound_note(b)
                .map(|n| format!("- **{}**: {}", b.info.backend, escape(&n)))
        })
        .collect();
    unavailable.extend(client_bound);
    if !unavailable.is_empty() {
        let _ = writeln!(out, "\n{}", unavailable.join("\n"));
    }
    out
}

/// Markdown table cells and text from scenarios or the host must not break the table or inject
/// markup.
fn escape(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}
