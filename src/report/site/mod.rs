//! `cvm report --site OUT DIR...`: one site for many scenarios. Each results directory's raw
//! files (`run.json`, `samples.csv`) are copied to `OUT/<name>/` and its report rendered there
//! (so the site stands alone), and `OUT/index.html` links every report with a thumbnail of its
//! verdict panel (`summary.png`) above an overview table: a row per backend, a column per
//! headline question of each scenario (its median and its ratio to native, as the verdict panel
//! gives them).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::charts::{questions, Question, SUMMARY_IMAGE};
use super::format::format_value;
use super::html::INDEX_FILE;
use super::reference::{self, Published};
use super::{render_dir, ReportError};
use crate::results::{self, RunSummary};
use crate::text::escape_html as escape;

mod study;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("{dir} is not a cvm results directory (no {file})")]
    NotResults { dir: String, file: &'static str },
    #[error("cannot copy {from} to {to}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot render the report of {dir}")]
    Render {
        dir: PathBuf,
        #[source]
        source: ReportError,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SiteError {
    /// Whether the fault lies with a directory given rather than with writing the site.
    pub fn is_bad_input(&self) -> bool {
        match self {
            SiteError::NotResults { .. } => true,
            SiteError::Render { source, .. } => source.is_bad_input(),
            _ => false,
        }
    }
}

/// One scenario on the site: the folder its report is in and its summary.
pub struct Entry {
    pub name: String,
    pub summary: RunSummary,
}

/// A folder name from the directory's own: letters, digits, `.`, `-`, `_`; made unique.
fn folder_name(dir: &Path, taken: &[String]) -> String {
    let base: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let base = match base.trim_matches('.') {
        "" => "scenario".to_string(),
        b => b.to_string(),
    };
    let mut name = base.clone();
    let mut i = 2;
    while taken.contains(&name) {
        name = format!("{base}-{i}");
        i += 1;
    }
    name
}

/// Copies a results directory's raw files into `to` (unless it is that directory) and renders
/// its report there.
fn place(dir: &Path, to: &Path) -> Result<RunSummary, SiteError> {
    for file in [results::META_FILE, results::SAMPLES_FILE] {
        if !dir.join(file).is_file() {
            return Err(SiteError::NotResults {
                dir: dir.display().to_string(),
                file,
            });
        }
    }
    let same = match (dir.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        let copy_err = |from: PathBuf, source| SiteError::Copy {
            from,
            to: to.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(to).map_err(|e| copy_err(dir.to_path_buf(), e))?;
        for file in [results::META_FILE, results::SAMPLES_FILE] {
            std::fs::copy(dir.join(file), to.join(file))
                .map_err(|e| copy_err(dir.join(file), e))?;
        }
    }
    render_dir(to).map_err(|source| SiteError::Render {
        dir: dir.to_path_buf(),
        source,
    })
}

/// Builds the site in `out` from `dirs`, with `reference`'s figures beside the measured ones
/// where given; returns its scenarios in the order given.
pub fn build(
    out: &Path,
    dirs: &[PathBuf],
    reference: Option<&Published>,
) -> Result<Vec<Entry>, SiteError> {
    let mut entries: Vec<Entry> = Vec::new();
    for dir in dirs {
        let taken: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        let name = folder_name(dir, &taken);
        let summary = place(dir, &out.join(&name))?;
        entries.push(Entry { name, summary });
    }
    let path = out.join(INDEX_FILE);
    std::fs::write(&path, index(&entries, reference))
        .map_err(|source| SiteError::Write { path, source })?;
    Ok(entries)
}

const STYLE: &str = r#"
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", system-ui, sans-serif; color: #222; margin: 0;
       line-height: 1.45; overflow-wrap: anywhere; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 30px 0 10px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; margin: 0 0 6px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 360px), 1fr));
         gap: 16px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px; }
.card h3 { margin: 0 0 4px; font-size: 1.05em; }
.card img { display: block; width: 100%; height: auto; border: 1px solid #eee; }
.tablewrap { overflow-x: auto; max-width: 100%; }
.answer { font-size: 1.1em; margin: 6px 0; }
td.study { background: #f4f6fa; }
.agrees { color: #1a7f37; } .differs { color: #b35900; } .emulated { color: #777; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; overflow-wrap: normal; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #fafafa; }
td:first-child { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
@media (max-width: 700px) { main { padding: 12px 10px 40px; } }
"#;

/// The overview's columns: each scenario's verdict questions, in its panel's order.
fn columns(entries: &[Entry]) -> Vec<(usize, Question)> {
    entries
        .iter()
        .enumerate()
        .flat_map(|(i, e)| questions(&e.summary).into_iter().map(move |q| (i, q)))
        .collect()
}

/// Every backend of any scenario, in the order first seen.
fn backends(cols: &[(usize, Question)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, q) in cols {
        for r in &q.rows {
            if !out.contains(&r.backend) {
                out.push(r.backend.clone());
            }
        }
    }
    out
}

/// The overview table: a row per backend, a column per scenario's headline question.
pub fn overview(entries: &[Entry]) -> String {
    let cols = columns(entries);
    let mut o = String::from("<div class=\"tablewrap\"><table id=\"overview\">\n<tr><th></th>");
    for (i, e) in entries.iter().enumerate() {
        let span = cols.iter().filter(|(j, _)| *j == i).count();
        if span > 0 {
            let _ = write!(
                o,
                "<th colspan=\"{span}\"><a href=\"{0}/{INDEX_FILE}\">{0}</a></th>",
                escape(&e.name)
            );
        }
    }
    o.push_str("</tr>\n<tr><th>backend</th>");
    for (_, q) in &cols {
        let _ = write!(o, "<th>{}</th>", escape(&q.title));
    }
    o.push_str("</tr>\n");
    for b in backends(&cols) {
        let _ = write!(o, "<tr class=\"backend\"><td>{}</td>", escape(&b));
        for (_, q) in &cols {
            let cell = q.rows.iter().find(|r| r.backend == b).map_or_else(
                || "—".to_string(),
                |r| {
                    let value = format_value(r.ci.point, &q.unit);
                    match r.note.as_str() {
                        "" => value,
                        note => format!("{value} ({note})"),
                    }
                },
            );
            let _ = write!(o, "<td class=\"num\">{}</td>", escape(&cell));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table></div>\n");
    o
}

/// The site's `index.html`: the comparison with the publication first where there is one.
pub fn index(entries: &[Entry], reference: Option<&Published>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src 'self' file: data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>cvm: {n} scenarios</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>cvm: {n} scenarios</h1>\n",
        n = entries.len()
    );
    if let Some(p) = reference {
        let runs: Vec<(&str, &RunSummary)> = entries
            .iter()
            .map(|e| (e.name.as_str(), &e.summary))
            .collect();
        o.push_str(&study::section(&reference::compare(&runs, p), p));
    }
    o.push_str(
        "<p class=\"sub\">Each scenario's verdict panel links its full report; the overview \
         table gathers their headline figures (medians; in brackets the ratio to native with its \
         interval, whose level each report states).</p>\n<section id=\"scenarios\">\n\
         <div class=\"cards\">\n",
    );
    for e in entries {
        let s = &e.summary;
        let _ = writeln!(
            o,
            "<div class=\"card\" id=\"scenario-{name}\"><h3><a href=\"{name}/{INDEX_FILE}\">{}</a></h3>\
             <p class=\"sub\">{} · run <code>{}</code></p>\
             <a href=\"{name}/{INDEX_FILE}\"><img src=\"{name}/{SUMMARY_IMAGE}.png\" \
             alt=\"verdict panel of {}\"></a></div>",
            escape(&s.scenario),
            escape(&s.description),
            escape(&s.run_id),
            escape(&s.scenario),
            name = escape(&e.name),
        );
    }
    let _ = writeln!(
        o,
        "</div>\n</section>\n<section id=\"overview-section\">\n<h2>Overview</h2>\n{}</section>\n\
         </main>\n</body>\n</html>",
        overview(entries)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_are_safe_and_unique() {
        let taken = vec!["web".to_string()];
        assert_eq!(folder_name(Path::new("/r/web"), &taken), "web-2");
        assert_eq!(folder_name(Path::new("/r/a b<c>"), &[]), "a-b-c-");
        assert_eq!(folder_name(Path::new("/"), &[]), "scenario");
        assert_eq!(folder_name(Path::new("/r/.."), &[]), "scenario");
    }
}
