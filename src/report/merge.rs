//! `cvm report --merge DIR…`: one report from several hosts' results directories.
//!
//! Each directory is summarised on its own (so every ratio to native stays within its host),
//! then its backends are renamed `<backend>@<host>` and the summaries and samples concatenated:
//! every table and chart of the ordinary report then has the host as a dimension without a
//! second rendering path. The page adds the hosts' fingerprints side by side; `hosts.json`
//! keeps each host's whole environment. The merged directory is a results directory too
//! (`run.json`, `samples.csv` with the renamed backends), so its files load like any other.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::html::{CHARTS_DIR, STACK_CHART};
use super::{charts, html, markdown, stack, ReportError};
use crate::results::{
    self, read_samples, summarize, Environment, PairRatio, RunMeta, RunStatus, RunSummary,
    SampleRow, SampleWriter,
};
use crate::text::escape_html as escape;

/// Joins a backend and the host it ran on in a merged report.
pub const HOST_SEPARATOR: char = '@';
/// Every host's environment, in the order given.
pub const HOSTS_FILE: &str = "hosts.json";

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("--merge needs at least two results directories, got {0}")]
    TooFew(usize),
    #[error("{dir} is not a cvm results directory (no {file})")]
    NotResults { dir: PathBuf, file: &'static str },
    #[error("{dir}: cannot read the results")]
    Read {
        dir: PathBuf,
        #[source]
        source: results::ResultsError,
    },
    #[error(
        "the directories ran different scenarios ({0}): merge runs of one scenario from \
         several hosts"
    )]
    Scenarios(String),
    #[error("cannot create the merged report's directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the merged results")]
    Write(#[source] results::ResultsError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl MergeError {
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            MergeError::TooFew(_)
                | MergeError::NotResults { .. }
                | MergeError::Read { .. }
                | MergeError::Scenarios(_)
        )
    }
}

/// `--output`, or `merged` beside the first directory (a fleet's `results/<host>/` gives
/// `results/merged/`).
pub fn output_dir(dirs: &[PathBuf], output: Option<&Path>) -> PathBuf {
    match output {
        Some(o) => o.to_path_buf(),
        None => dirs
            .first()
            .and_then(|d| d.parent())
            .unwrap_or(Path::new("."))
            .join("merged"),
    }
}

/// One host's run, read and labelled.
struct HostRun {
    label: String,
    meta: RunMeta,
    rows: Vec<SampleRow>,
}

fn read_run(dir: &Path) -> Result<(RunMeta, Vec<SampleRow>), MergeError> {
    for file in [results::META_FILE, results::SAMPLES_FILE] {
        if !dir.join(file).is_file() {
            return Err(MergeError::NotResults {
                dir: dir.to_path_buf(),
                file,
            });
        }
    }
    let read_err = |source| MergeError::Read {
        dir: dir.to_path_buf(),
        source,
    };
    let meta = RunMeta::read(&dir.join(results::META_FILE)).map_err(read_err)?;
    let rows = read_samples(&dir.join(results::SAMPLES_FILE)).map_err(read_err)?;
    Ok((meta, rows))
}

/// The host's name, or the directory's when the run recorded none; a repeated one gets `#2`.
fn labels(runs: &[(PathBuf, RunMeta)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (dir, meta) in runs {
        let base = if meta.environment.host.is_empty() {
            dir.file_name()
                .map_or("host".into(), |n| n.to_string_lossy().into_owned())
        } else {
            meta.environment.host.clone()
        };
        let base = base.replace(HOST_SEPARATOR, "_");
        let mut label = base.clone();
        let mut k = 2;
        while out.contains(&label) {
            label = format!("{base}#{k}");
            k += 1;
        }
        out.push(label);
    }
    out
}

pub fn merged_name(backend: &str, host: &str) -> String {
    format!("{backend}{HOST_SEPARATOR}{host}")
}

/// Merges `dirs` into a report in `out`; returns the merged summary.
pub fn merge_dirs(dirs: &[PathBuf], out: &Path) -> Result<RunSummary, MergeError> {
    if dirs.len() < 2 {
        return Err(MergeError::TooFew(dirs.len()));
    }
    let mut read = Vec::new();
    for d in dirs {
        read.push((d.clone(), read_run(d)?));
    }
    let metas: Vec<(PathBuf, RunMeta)> = read
        .iter()
        .map(|(d, (m, _))| (d.clone(), m.clone()))
        .collect();
    let mut scenarios: Vec<&str> = metas
        .iter()
        .map(|(_, m)| m.scenario.name.as_str())
        .collect();
    scenarios.dedup();
    if scenarios.len() > 1 {
        return Err(MergeError::Scenarios(scenarios.join(", ")));
    }
    let runs: Vec<HostRun> = labels(&metas)
        .into_iter()
        .zip(read)
        .map(|(label, (_, (meta, rows)))| HostRun { label, meta, rows })
        .collect();
    let (meta, summary, rows) = merge(&runs);

    std::fs::create_dir_all(out).map_err(|source| MergeError::CreateDir {
        path: out.to_path_buf(),
        source,
    })?;
    meta.write(&out.join(results::META_FILE))
        .map_err(MergeError::Write)?;
    let mut w =
        SampleWriter::replace(&out.join(results::SAMPLES_FILE)).map_err(MergeError::Write)?;
    for r in &rows {
        w.write(r).map_err(MergeError::Write)?;
    }
    drop(w);
    results::write_ndjson(&out.join(results::NDJSON_FILE), &meta, &rows)
        .map_err(MergeError::Write)?;
    let hosts: Vec<(&str, &Environment)> = runs
        .iter()
        .map(|r| (r.label.as_str(), &r.meta.environment))
        .collect();
    write_json(&out.join(HOSTS_FILE), &hosts)?;
    summary
        .write(&out.join(results::SUMMARY_FILE))
        .map_err(MergeError::Write)?;
    let md_path = out.join("summary.md");
    std::fs::write(&md_path, markdown::summary(&summary)).map_err(|source| {
        ReportError::WriteMarkdown {
            path: md_path,
            source,
        }
    })?;
    let charts_dir = out.join(CHARTS_DIR);
    let rendered = charts::render_all(&charts::plan(&summary, &rows), &charts_dir)
        .map_err(ReportError::Charts)?;
    let stack_svg = charts::render(
        &stack::StackDiagram::new(&summary),
        &charts_dir,
        STACK_CHART,
    )
    .map_err(ReportError::StackDiagram)?;
    let verdict =
        charts::render_verdict(&summary, out, &charts_dir).map_err(ReportError::Charts)?;
    let page = html::page(&meta, &summary, &stack_svg, &rendered, &verdict);
    // The hosts go right after the verdict: everything below reads differently once a reader
    // knows them.
    let page = page.replacen(
        "<section id=\"findings\">",
        &format!("{}<section id=\"findings\">", hosts_section(&runs)),
        1,
    );
    html::write(out, &page).map_err(ReportError::Html)?;
    Ok(summary)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), MergeError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| {
        MergeError::Write(results::ResultsError::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })
    })?;
    std::fs::write(path, text).map_err(|source| {
        MergeError::Write(results::ResultsError::Write {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// The merged run: metadata, summary and samples with every backend named for its host,
/// ordered backend by backend so one backend's hosts sit side by side.
fn merge(runs: &[HostRun]) -> (RunMeta, RunSummary, Vec<SampleRow>) {
    let first = &runs[0].meta;
    let mut order: Vec<String> = Vec::new();
    for r in runs {
        for b in &r.meta.backends {
            if !order.contains(&b.backend) {
                order.push(b.backend.clone());
            }
        }
    }
    let summaries: Vec<RunSummary> = runs.iter().map(|r| summarize(&r.meta, &r.rows)).collect();
    let mut backends = Vec::new();
    let mut infos = Vec::new();
    for name in &order {
        for (r, s) in runs.iter().zip(&summaries) {
            if let Some(b) = s.backend(name) {
                let mut b = b.clone();
                b.info.backend = merged_name(name, &r.label);
                infos.push(b.info.clone());
                backends.push(b);
            }
        }
    }
    let hosts: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    let mut environment = first.environment.clone();
    environment.host = hosts.join(", ");
    let mut limitations: Vec<String> = Vec::new();
    for s in &summaries {
        for l in &s.limitations {
            if !limitations.contains(l) {
                limitations.push(l.clone());
            }
        }
    }
    let run_id = format!(
        "merged: {}",
        runs.iter()
            .map(|r| r.meta.run_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let status = if runs.iter().all(|r| r.meta.status == first.status) {
        first.status
    } else {
        RunStatus::Mixed
    };
    let meta = RunMeta {
        run_id: run_id.clone(),
        status,
        environment: environment.clone(),
        backends: infos,
        ..first.clone()
    };
    let summary = RunSummary {
        run_id,
        scenario: first.scenario.name.clone(),
        description: format!(
            "{} — merged from {} hosts: {}",
            first.scenario.description,
            runs.len(),
            hosts.join(", ")
        ),
        status,
        runs: first.runs,
        warmup: first.warmup,
        environment,
        backends,
        pair_ratios: runs
            .iter()
            .zip(&summaries)
            .flat_map(|(r, s)| {
                s.pair_ratios.iter().map(|p| PairRatio {
                    numerator: merged_name(&p.numerator, &r.label),
                    denominator: merged_name(&p.denominator, &r.label),
                    ..p.clone()
                })
            })
            .collect(),
        limitations,
    };
    let rows = runs
        .iter()
        .flat_map(|r| {
            r.rows.iter().map(|row| SampleRow {
                backend: merged_name(&row.backend, &r.label),
                ..row.clone()
            })
        })
        .collect();
    (meta, summary, rows)
}

/// The hosts' fingerprints side by side, one column per host.
fn hosts_section(runs: &[HostRun]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<section id=\"hosts\">\n<h2>Hosts</h2>\n<p class=\"sub\">{} hosts merged; every backend \
         is named <code>backend{HOST_SEPARATOR}host</code> in the tables and charts below. Ratios \
         to native are taken within each host. Rows that differ between hosts are marked.</p>\n\
         <table>\n<tr><th></th>{}</tr>",
        runs.len(),
        runs.iter()
            .map(|r| format!("<th>{}</th>", escape(&r.label)))
            .collect::<String>()
    );
    let env_rows: Vec<(&str, Vec<String>)> = {
        let mut v: Vec<(&str, Vec<String>)> = vec![
            ("run", runs.iter().map(|r| r.meta.run_id.clone()).collect()),
            (
                "kernel",
                runs.iter()
                    .map(|r| r.meta.environment.kernel.clone())
                    .collect(),
            ),
            (
                "OS",
                runs.iter().map(|r| r.meta.environment.os.clone()).collect(),
            ),
            (
                "memory",
                runs.iter()
                    .map(|r| super::format::format_value(r.meta.environment.mem_total as f64, "B"))
                    .collect(),
            ),
            (
                "cvm",
                runs.iter()
                    .map(|r| {
                        format!(
                            "{} ({})",
                            r.meta.environment.cvm_version, r.meta.environment.git_sha
                        )
                    })
                    .collect(),
            ),
            (
                "build",
                runs.iter()
                    .map(|r| r.meta.environment.build_profile.clone())
                    .collect(),
            ),
        ];
        let fields: Vec<Vec<(&str, String)>> = runs
            .iter()
            .map(|r| r.meta.environment.fingerprint.fields())
            .collect();
        for (i, (label, _)) in fields[0].iter().enumerate() {
            v.push((label, fields.iter().map(|f| f[i].1.clone()).collect()));
        }
        v
    };
    for (label, values) in env_rows {
        let differs = values.iter().any(|v| *v != values[0]);
        let _ = writeln!(
            o,
            "<tr{}><th>{}{}</th>{}</tr>",
            if differs { " class=\"differs\"" } else { "" },
            escape(label),
            if differs { " ≠" } else { "" },
            values
                .iter()
                .map(|v| format!(
                    "<td><code>{}</code></td>",
                    escape(if v.is_empty() { "—" } else { v })
                ))
                .collect::<String>()
        );
    }
    let _ = writeln!(o, "</table>\n</section>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::testdata::{meta, rows};

    fn write(dir: &Path, host: &str, scenario: &str, latency: f64) {
        let mut m = meta(scenario, host, &["native", "container"]);
        m.environment.fingerprint.thp = if host == "b" { "always" } else { "madvise" }.into();
        m.write(&dir.join(results::META_FILE)).unwrap();
        let mut w = SampleWriter::create(&dir.join(results::SAMPLES_FILE)).unwrap();
        for (b, f) in [("native", 1.0), ("container", 3.0)] {
            for r in rows(
                b,
                "ready_latency",
                "s",
                &[latency * f, latency * f * 1.1, latency * f * 0.9],
            ) {
                w.write(&r).unwrap();
            }
        }
    }

    #[test]
    fn three_hosts_merge_with_the_host_in_every_backend_and_ratios_per_host() {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let d = root.path().join(h);
                std::fs::create_dir_all(&d).unwrap();
                write(&d, h, "startup", 0.001 * (i + 1) as f64);
                d
            })
            .collect();
        let out = output_dir(&dirs, None);
        assert_eq!(out, root.path().join("merged"));
        let s = merge_dirs(&dirs, &out).unwrap();
        let names: Vec<&str> = s.backends.iter().map(|b| b.info.backend.as_str()).collect();
        assert_eq!(
            names,
            [
                "native@a",
                "native@b",
                "native@c",
                "container@a",
                "container@b",
                "container@c"
            ]
        );
        let ratio = s.backend("container@c").unwrap().metrics["ready_latency"]
            .ratio_to_native
            .unwrap();
        assert!((ratio.point - 3.0).abs() < 1e-9, "{ratio:?}");
        let page = std::fs::read_to_string(out.join(html::INDEX_FILE)).unwrap();
        assert!(page.contains("id=\"hosts\""));
        assert!(
            page.contains("<tr class=\"differs\"><th>THP ≠</th>"),
            "THP differs"
        );
        assert!(page.contains("container@b"));
        // The merged directory is itself a results directory.
        let rows = read_samples(&out.join(results::SAMPLES_FILE)).unwrap();
        assert_eq!(rows.len(), 18);
        assert!(out.join(HOSTS_FILE).is_file());
        assert!(out.join(results::NDJSON_FILE).is_file());
    }

    #[test]
    fn different_scenarios_or_a_single_directory_are_bad_input() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        for (d, s) in [(&a, "startup"), (&b, "web")] {
            std::fs::create_dir_all(d).unwrap();
            write(d, "h", s, 0.001);
        }
        let e = merge_dirs(&[a.clone(), b], root.path()).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("startup, web"),
            "{e}"
        );
        let e = merge_dirs(&[a], root.path()).unwrap_err();
        assert!(matches!(e, MergeError::TooFew(1)));
        // Same host twice: labels kept apart.
        let runs = vec![
            (PathBuf::from("x"), meta("s", "h", &[])),
            (PathBuf::from("y"), meta("s", "h", &[])),
        ];
        assert_eq!(labels(&runs), ["h", "h#2"]);
    }
}
