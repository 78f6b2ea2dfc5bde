//! Reports, rendered from a results directory alone (`run.json` + `samples.csv`): the summary
//! (`summary.json`), the samples as NDJSON (`samples.ndjson`), the terminal table, the Markdown export, and `index.html` with its charts
//! and the measured stack diagram (PNG and SVG under `charts/`). Nothing here touches a backend,
//! so `cvm report DIR` re-renders any past run.

pub mod charts;
pub mod findings;
pub mod format;
pub mod html;
pub mod isolation;
mod markdown;
pub mod merge;
pub mod reference;
pub mod site;
pub mod stack;
mod terminal;

use std::path::{Path, PathBuf};

use crate::results::{self, read_samples, summarize, RunMeta, RunSummary};

/// One variant per step of [`render_dir`]; the first three mean the directory given is not a
/// readable cvm results directory, the rest that the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{dir} is not a cvm results directory (no {file})")]
    NotResults { dir: String, file: &'static str },
    #[error("cannot read the run's metadata")]
    ReadMeta(#[source] results::ResultsError),
    #[error("cannot read the samples")]
    ReadSamples(#[source] results::ResultsError),
    #[error("cannot write the summary")]
    WriteSummary(#[source] results::ResultsError),
    #[error("cannot write the NDJSON samples")]
    WriteNdjson(#[source] results::ResultsError),
    #[error("cannot write {path}")]
    WriteMarkdown {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw the charts")]
    Charts(#[source] charts::ChartError),
    #[error("cannot draw the stack diagram")]
    StackDiagram(#[source] charts::ChartError),
    #[error(transparent)]
    Html(#[from] html::HtmlError),
}

impl ReportError {
    /// Whether the fault lies with the directory given rather than with writing the report.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ReportError::NotResults { .. } | ReportError::ReadMeta(_) | ReportError::ReadSamples(_)
        )
    }
}

/// How much of the summary the terminal shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// A screen: the findings, one line per question, and one small table per question.
    Compact,
    /// Every metric of every backend, with every note (`--verbose`, `--full`).
    Full,
}

/// The summary as the terminal shows it: the findings, then the tables.
pub fn terminal_table(summary: &RunSummary, detail: Detail) -> String {
    terminal::table(summary, detail)
}

/// The summary as a Markdown document (`summary.md`, `--export-markdown`).
pub fn markdown_summary(summary: &RunSummary) -> String {
    markdown::summary(summary)
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
    let meta = RunMeta::read(&dir.join(results::META_FILE)).map_err(ReportError::ReadMeta)?;
    let rows = read_samples(&dir.join(results::SAMPLES_FILE)).map_err(ReportError::ReadSamples)?;
    let summary = summarize(&meta, &rows);
    summary
        .write(&dir.join(results::SUMMARY_FILE))
        .map_err(ReportError::WriteSummary)?;
    results::write_ndjson(&dir.join(results::NDJSON_FILE), &meta, &rows)
        .map_err(ReportError::WriteNdjson)?;
    let md_path = dir.join("summary.md");
    std::fs::write(&md_path, markdown::summary(&summary)).map_err(|source| {
        ReportError::WriteMarkdown {
            path: md_path,
            source,
        }
    })?;
    let charts_dir = dir.join(html::CHARTS_DIR);
    let rendered = charts::render_all(&charts::plan(&summary, &rows), &charts_dir)
        .map_err(ReportError::Charts)?;
    let stack_svg = charts::render(
        &stack::StackDiagram::new(&summary),
        &charts_dir,
        html::STACK_CHART,
    )
    .map_err(ReportError::StackDiagram)?;
    let sections: Vec<String> = isolation::section(&summary, &rows, &charts_dir)
        .map_err(ReportError::Charts)?
        .into_iter()
        .collect();
    let verdict =
        charts::render_verdict(&summary, dir, &charts_dir).map_err(ReportError::Charts)?;
    let page = html::page_with(&meta, &summary, &stack_svg, &rendered, &sections, &verdict);
    html::write(dir, &page)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use crate::results::summarize;
    use crate::results::summary::tests::{client_meta as meta, client_row as row};

    #[test]
    fn a_client_bound_backend_is_labelled_with_its_count_and_the_others_are_not() {
        let s = summarize(&meta(), &[row(0, 0.95), row(1, 0.5), row(2, 0.97)]);
        let note = super::findings::client_bound_note(s.backend("runc").unwrap()).unwrap();
        assert!(note.contains("2 of 3") && note.contains("95 %"), "{note}");
        assert!(super::terminal::table(&s, super::Detail::Full).contains("client-bound in 2 of 3"));
        assert!(super::markdown::summary(&s).contains("client-bound in 2 of 3"));
        let calm = summarize(&meta(), &[row(0, 0.5)]);
        assert!(super::findings::client_bound_note(calm.backend("runc").unwrap()).is_none());
    }
}
