//! The summary printed at the end of `cvm compare` and by `cvm report`: by default a compact
//! one ([`compact`]: the findings, one line per question, and one small table per question, in
//! the way of hyperfine's summary); with `--verbose` / `--full` every metric ([`full`]: median
//! with its confidence interval, min–max, the ratio to native, per backend and metric, and every
//! note).

mod compact;
mod full;

use std::fmt::Write;

use super::Detail;
use crate::results::{Availability, RunSummary};

pub(super) fn table(s: &RunSummary, detail: Detail) -> String {
    match detail {
        Detail::Compact => compact::table(s),
        Detail::Full => full::table(s),
    }
}

/// The line every summary opens with; a run by a normal user says "rootless" there.
fn heading(s: &RunSummary) -> String {
    format!(
        "\nScenario {} ({} measured runs, {} warm-up) on {} — {} × {}{}",
        s.scenario,
        s.runs,
        s.warmup,
        s.environment.host,
        s.environment.ncpu,
        s.environment.cpu_model,
        if s.environment.root {
            ""
        } else {
            " — rootless (a normal user: see each backend's limits and network)"
        }
    )
}

/// Backends that could not run or lost runs, one line each: both summaries say it.
fn run_notes(s: &RunSummary) -> Vec<String> {
    let mut notes = Vec::new();
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
    }
    notes
}

/// Rows of cells as left-aligned columns two spaces apart, one line each.
fn grid(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{summarize, testdata};

    fn web() -> RunSummary {
        let (meta, rows) = testdata::web_run();
        summarize(&meta, &rows)
    }

    #[test]
    fn a_rootless_run_says_so_in_its_heading() {
        let mut s = web();
        s.environment.root = true;
        assert!(!heading(&s).contains("rootless"), "{}", heading(&s));
        s.environment.root = false;
        assert!(heading(&s).contains("— rootless"), "{}", heading(&s));
    }

    #[test]
    fn a_backend_that_ran_rootless_is_marked_beside_its_figures_with_what_changed() {
        let mut s = web();
        let compact = table(&s, Detail::Compact);
        assert!(!compact.contains('‡'), "{compact}");
        let b = &mut s.backends[1].info;
        let name = b.backend.clone();
        b.config.insert("rootless".into(), "yes".into());
        b.config.insert("network".into(), "slirp4netns".into());
        let compact = table(&s, Detail::Compact);
        assert!(
            compact.lines().any(|l| l.starts_with(&format!("{name}‡"))),
            "{compact}"
        );
        assert!(
            compact.contains(&format!("‡ {name} ran rootless: network slirp4netns.")),
            "{compact}"
        );
    }

    /// The default fits a screen for the widest built-in run (nine backends of `web`); the
    /// full one still has every metric of every backend.
    #[test]
    fn the_default_summary_of_a_web_run_fits_a_screen_and_full_has_every_metric() {
        let s = web();
        let compact = table(&s, Detail::Compact);
        let full = table(&s, Detail::Full);
        let lines = compact.trim_start_matches('\n').lines().count();
        assert!(lines <= 35, "{lines} lines:\n{compact}");
        assert!(full.lines().count() > 2 * lines, "{full}");
        assert!(full.contains("http_latency_p99") && !compact.contains("http_latency_p99"));
        for title in [
            "time to ready",
            "memory per instance",
            "disk footprint",
            "http throughput",
        ] {
            assert!(compact.contains(title), "{title} missing:\n{compact}");
        }
        // Every backend that ran has a row, the one that could not run its reason.
        for b in ["native", "container", "gvisor", "docker", "vm-classic"] {
            assert!(
                compact.lines().any(|l| l.starts_with(b)),
                "{b} missing:\n{compact}"
            );
        }
        assert!(compact.contains("crun: unavailable"), "{compact}");
        // The level is stated once, in the header, not per row.
        assert!(!compact.contains("(93.8 %)"), "{compact}");
        assert!(compact.contains("93.8 % CI"), "{compact}");
    }

    #[test]
    fn grid_aligns_columns() {
        let g = grid(&[
            vec!["a".into(), "bb".into(), "c".into()],
            vec!["aaa".into(), "b".into()],
        ]);
        assert_eq!(g, "a    bb  c\naaa  b\n");
    }
}
