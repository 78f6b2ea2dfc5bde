//! Reports, rendered from a results directory alone (`run.json` + `samples.csv`): the summary
//! (`summary.json`), the terminal table, the Markdown export, and `index.html` with its charts
//! and the measured stack diagram (PNG and SVG under `charts/`). Nothing here touches a backend,
//! so `cvm report DIR` re-renders any past run.

pub mod charts;
pub mod html;
pub mod markdown;
pub mod stack;
pub mod terminal;

use std::path::Path;

use crate::results::{self, read_samples, summarize, RunMeta, RunSummary};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{dir} is not a cvm results directory (no {file})")]
    NotResults { dir: String, file: &'static str },
    #[error(transparent)]
    Results(#[from] results::ResultsError),
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
    #[error(transparent)]
    Html(#[from] html::HtmlError),
}

/// Recomputes `summary.json` and the report files (`summary.md`, `index.html`, `charts/`) in
/// `dir` from its raw samples.
pub fn render_dir(dir: &Path) -> Result<RunSummary, ReportError> {
    for file in [results::META_FILE, results::SAMPLES_FILE] {
        if !dir.join(file).is_file() {
            return Err(ReportError::NotResults {
                dir: dir.display().to_string(),
                file,
            });
        }
    }
    let meta = RunMeta::read(&dir.join(results::META_FILE))?;
    let rows = read_samples(&dir.join(results::SAMPLES_FILE))?;
    let summary = summarize(&meta, &rows);
    summary.write(&dir.join(results::SUMMARY_FILE))?;
    std::fs::write(dir.join("summary.md"), markdown::summary(&summary)).map_err(|source| {
        results::ResultsError::Write {
            path: dir.join("summary.md"),
            source,
        }
    })?;
    let charts_dir = dir.join(html::CHARTS_DIR);
    let rendered = charts::render_all(&charts::plan(&summary, &rows), &charts_dir)?;
    let stack_svg = charts::render(
        &stack::StackDiagram::new(&summary),
        &charts_dir,
        html::STACK_CHART,
    )?;
    html::write(dir, &html::page(&meta, &summary, &stack_svg, &rendered))?;
    Ok(summary)
}

/// Human-readable value with an SI prefix suited to the unit.
pub fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "s" => {
            let a = value.abs();
            if a >= 1.0 {
                format!("{value:.3} s")
            } else if a >= 1e-3 {
                format!("{:.2} ms", value * 1e3)
            } else {
                format!("{:.1} µs", value * 1e6)
            }
        }
        "B" => {
            let a = value.abs();
            if a >= 1024.0 * 1024.0 * 1024.0 {
                format!("{:.2} GiB", value / (1024.0 * 1024.0 * 1024.0))
            } else if a >= 1024.0 * 1024.0 {
                format!("{:.1} MiB", value / (1024.0 * 1024.0))
            } else if a >= 1024.0 {
                format!("{:.1} KiB", value / 1024.0)
            } else {
                format!("{value:.0} B")
            }
        }
        "B/s" => format!("{}/s", format_value(value, "B")),
        "1/s" => {
            if value.abs() >= 1e6 {
                format!("{:.2} M/s", value / 1e6)
            } else if value.abs() >= 1e3 {
                format!("{:.1} k/s", value / 1e3)
            } else {
                format!("{value:.1} /s")
            }
        }
        "" | "count" => format!("{value}"),
        other => format!("{value:.4} {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::format_value;

    #[test]
    fn values_get_readable_units() {
        assert_eq!(format_value(0.0012, "s"), "1.20 ms");
        assert_eq!(format_value(2.5, "s"), "2.500 s");
        assert_eq!(format_value(0.000_050, "s"), "50.0 µs");
        assert_eq!(format_value(64.0 * 1024.0 * 1024.0, "B"), "64.0 MiB");
        assert_eq!(format_value(12_345.0, "1/s"), "12.3 k/s");
    }
}
