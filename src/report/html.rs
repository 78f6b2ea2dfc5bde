//! `index.html`: the report people open. Self-contained — inline CSS, the stack diagram and the
//! charts as inline SVG, relative links to the raw files — so it opens from a laptop with no
//! network, and a Content-Security-Policy forbids any fetch or script should anything slip in.
//!
//! Every string that comes from a scenario, the environment, a backend's configuration or the
//! samples goes through [`escape`]; the SVG comes from plotters, which escapes its text itself.
//! Section ids (`verdict`, `findings`, `environment`, `summary`, `stack`, `charts`, `files`) are
//! stable: tests and readers link to them.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::charts::{Rendered, Verdict, SUMMARY_IMAGE};
use super::format::{format_ratio, format_value, Levels};
use crate::results::{Availability, MetricSummary, RunMeta, RunSummary, Stack};
use crate::text::escape_html as escape;
use cvm_proto::metric::{Metric, DISK_PREFIX, PHASE_PREFIX, RATE_PREFIX};

pub const INDEX_FILE: &str = "index.html";
/// Where chart files go, relative to the results directory.
pub const CHARTS_DIR: &str = "charts";
pub const STACK_CHART: &str = "stack";

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Metrics shown first in the summary table, in this order; the rest alphabetically, phases
/// last.
const LEADING: &[&str] = &[
    Metric::ReadyLatency.name(),
    Metric::LaunchFloor.name(),
    Metric::TeardownLatency.name(),
    Metric::MemoryPss.name(),
    Metric::MemoryPssPeak.name(),
    Metric::MemoryOverhead.name(),
    Metric::MemoryHostDelta.name(),
    Metric::DiskFootprint.name(),
    Metric::HttpRps.name(),
    Metric::HttpLatencyP50.name(),
    Metric::HttpLatencyP90.name(),
    Metric::HttpLatencyP99.name(),
    Metric::HttpLatencyMax.name(),
];

fn metric_rank(m: &str) -> (usize, (&str, u32)) {
    let rank = LEADING
        .iter()
        .position(|l| *l == m)
        .unwrap_or(if m.starts_with(PHASE_PREFIX) {
            LEADING.len() + 1
        } else {
            LEADING.len()
        });
    (rank, super::format::metric_order(m))
}

const STYLE: &str = r#"
:root { --ink:#222; --muted:#666; --line:#ddd; --bg:#fafafa; --warn:#fff4e5; --warnline:#e8a13a; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", system-ui, sans-serif; color: var(--ink); margin: 0;
       line-height: 1.45; background: #fff; overflow-wrap: anywhere; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 36px 0 10px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 22px 0 6px; }
.sub { color: var(--muted); margin: 0 0 6px; }
nav a { margin-right: 14px; white-space: nowrap; display: inline-block; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; overflow-wrap: normal; }
.tablewrap { overflow-x: auto; max-width: 100%; }
.verdict { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 372px), 1fr));
           gap: 8px 12px; margin: 14px 0 4px; }
figure.multiple { margin: 0; }
figure.multiple svg { display: block; width: 100%; max-width: 372px; height: auto; }
ul.findings { font-size: 1.02em; max-width: 70em; padding-left: 1.2em; }
ul.findings li { margin: 3px 0; }
p.caption { font-size: 0.88em; margin: 4px 0 0; }
@media (max-width: 700px) {
  main { padding: 12px 10px 40px; }
  dl.kv { grid-template-columns: max-content minmax(0, 1fr); }
}
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--bg); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dl.kv { display: grid; grid-template-columns: max-content minmax(0, 1fr) max-content minmax(0, 1fr);
         gap: 3px 14px; font-size: 0.9em; margin: 8px 0; }
dl.kv dt { font-weight: bold; background: var(--bg); padding: 2px 8px; }
dl.kv dd { margin: 0; padding: 2px 0; overflow-wrap: anywhere; }
details { margin: 10px 0; }
summary { cursor: pointer; color: #1a4f8a; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 0.92em; }
.warning { background: var(--warn); border: 2px solid var(--warnline); border-radius: 6px;
           padding: 12px 16px; margin: 12px 0; font-weight: bold; }
.warning p { font-weight: normal; margin: 6px 0 0; }
.unavailable { color: #8a3b12; }
figure { margin: 14px 0 30px; }
figure svg, .stack svg { max-width: 100%; height: auto; display: block; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.9em; margin-top: 6px; }
footer { color: var(--muted); font-size: 0.85em; margin-top: 40px; }
"#;

/// The whole page.
pub fn page(
    meta: &RunMeta,
    s: &RunSummary,
    stack_svg: &str,
    charts: &[Rendered],
    verdict: &Verdict,
) -> String {
    page_with(meta, s, stack_svg, charts, &[], verdict)
}

/// The whole page with self-contained sections (each with its own `<section id>`, such as the
/// isolation section) placed after the stack diagram. The order answers first: the verdict
/// panel, the findings, the stack diagram, then the details (charts, the tables by question),
/// the environment and the configuration last.
pub fn page_with(
    meta: &RunMeta,
    s: &RunSummary,
    stack_svg: &str,
    charts: &[Rendered],
    sections: &[String],
    verdict: &Verdict,
) -> String {
    let mut o = String::new();
    let title = format!("cvm report: {}", s.scenario);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src 'self' data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&title)
    );
    let _ = writeln!(
        o,
        "<header id=\"top\">\n<h1>{}</h1>\n<p class=\"sub\">{} · run <code>{}</code> · status {} · \
         {} measured runs after {} warm-up per backend</p>\n\
         <nav><a href=\"#findings\">Findings</a><a href=\"#stack\">Stack</a>\
         <a href=\"#charts\">Charts</a><a href=\"#summary\">Tables</a>\
         <a href=\"#environment\">Environment</a><a href=\"#files\">Files</a></nav>\n</header>",
        escape(&title),
        escape(&s.description),
        escape(&s.run_id),
        s.status,
        s.runs,
        s.warmup
    );
    verdict_section(&mut o, s, verdict);
    findings(&mut o, s);
    stack_section(&mut o, stack_svg);
    for section in sections {
        o.push_str(section);
    }
    charts_section(&mut o, charts);
    summary_table(&mut o, s);
    environment(&mut o, meta, s);
    files(&mut o, charts);
    let _ = writeln!(
        o,
        "<footer>Generated by cvm {} ({}) from <code>run.json</code> and <code>samples.csv</code>; \
         <code>cvm report DIR</code> re-renders it.</footer>\n</main>\n</body>\n</html>",
        escape(&s.environment.cvm_version),
        escape(&s.environment.git_sha)
    );
    o
}

/// The verdict panel: a small multiple per question, then what its marks mean, once.
fn verdict_section(o: &mut String, s: &RunSummary, v: &Verdict) {
    let _ = writeln!(o, "<section id=\"verdict\">\n<div class=\"verdict\">");
    for (q, svg) in &v.cells {
        let _ = writeln!(
            o,
            "<figure class=\"multiple\" id=\"verdict-{}\">{svg}</figure>",
            escape(q.id)
        );
    }
    if v.cells.is_empty() {
        let _ = writeln!(
            o,
            "<p>No backend recorded a figure that can be compared.</p>"
        );
    }
    let tcg = super::findings::tcg_backends(s);
    let tcg = if tcg.is_empty() {
        String::new()
    } else {
        format!(
            " <strong>{} ran under TCG emulation</strong> (<a href=\"#tcg-warning\">why</a>): \
             compare them with each other, not with containers.",
            escape(&tcg.join(", "))
        )
    };
    let rootless: String = s
        .backends
        .iter()
        .filter_map(super::findings::rootless_note)
        .map(|n| format!(" <strong>{}</strong>.", escape(&n)))
        .collect();
    let _ = writeln!(
        o,
        "</div>\n<p class=\"sub caption\">{}{tcg}{rootless} As one image: \
         <a href=\"{SUMMARY_IMAGE}.png\">{SUMMARY_IMAGE}.png</a>.</p>\n</section>",
        escape(&v.footnote)
    );
}

fn stack_section(o: &mut String, stack_svg: &str) {
    let _ = writeln!(
        o,
        "<section id=\"stack\">\n<h2>Every backend's stack, measured</h2>\n\
         <div class=\"stack\">\n{stack_svg}\n</div>\n<p class=\"sub\">One column per backend \
         that ran, grouped native | containers | sandbox | virtual machines, each with its own \
         layers (Docker's Engine, cvm's own runtime, runc or crun; gVisor's Sentry; a VM's guest \
         OS and hypervisor). Disk: bytes per layer, hard links counted \
         once, a file two layers need in the lower one (listed as <code>disk_shared</code> in the \
         backend table); a VM's app and libraries are inside its initramfs, counted in the guest \
         OS. Memory: per instance (PSS); the isolation overhead over native is charged to the \
         runtime, Sentry or hypervisor, the rest to the app; daemons shared by every instance on \
         the host (dockerd, containerd) are shown apart. Startup: the medians of the phases a layer performs \
         (<code>phase.cgroup_join</code> → host OS on every backend, a runtime's own join traced, or \
         into every runtime box where a runtime's join was not measured, as the diagram's last \
         line says; <code>phase.runtime</code> → runtime or Sentry; \
         <code>phase.vmm_start</code> → hypervisor; <code>phase.firmware</code>, \
         <code>phase.kernel</code>, <code>phase.guest_init</code> → guest OS; \
         <code>phase.workload_start</code>, <code>phase.probe</code> → app). Also as <a href=\"{CHARTS_DIR}/{STACK_CHART}.png\">PNG</a> \
         and <a href=\"{CHARTS_DIR}/{STACK_CHART}.svg\">SVG</a>.</p>\n</section>"
    );
}

fn charts_section(o: &mut String, charts: &[Rendered]) {
    let _ = writeln!(o, "<section id=\"charts\">\n<h2>Charts</h2>");
    if charts.is_empty() {
        let _ = writeln!(
            o,
            "<p>No backend recorded a metric that can be charted.</p>"
        );
    }
    for c in charts {
        figure(o, c);
    }
    let _ = writeln!(o, "</section>");
}

/// One chart as a figure: its SVG inline, its caption, links to its PNG and SVG files.
pub(super) fn figure(o: &mut String, c: &Rendered) {
    let _ = writeln!(
        o,
        "<figure id=\"chart-{id}\">\n<h3>{title}</h3>\n{svg}\n<figcaption>{caption} \
         <a href=\"{CHARTS_DIR}/{id}.png\">PNG</a> · <a href=\"{CHARTS_DIR}/{id}.svg\">SVG</a>\
         </figcaption>\n</figure>",
        id = escape(c.id),
        title = escape(&c.title),
        svg = c.svg,
        caption = escape(&c.caption),
    );
}

/// The answer first: the findings, before the environment they were measured in.
fn findings(o: &mut String, s: &RunSummary) {
    let _ = writeln!(o, "<section id=\"findings\">\n<h2>Findings</h2>");
    let found = super::findings::findings(s);
    if found.is_empty() {
        let _ = writeln!(
            o,
            "<p>No two backends recorded figures that can be compared.</p>"
        );
    } else {
        let _ = writeln!(
            o,
            "<ul class=\"findings\">\n{}\n</ul>",
            found
                .iter()
                .map(|f| format!("<li>{}</li>", escape(f)))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let _ = writeln!(o, "</section>");
}

fn kv(o: &mut String, k: &str, v: &str) {
    let _ = writeln!(o, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
}

/// Why each TCG backend ran emulated, in the words the accelerator probe recorded (what
/// serves `/dev/kvm`, what the probe guest did, the kernel's report), and what would make KVM
/// usable; backends with the same reason share one paragraph.
fn tcg_reasons(s: &RunSummary, tcg: &[String]) -> String {
    let mut groups: Vec<(Vec<&str>, &str, Option<&str>)> = Vec::new();
    for b in s.backends.iter().filter(|b| tcg.contains(&b.info.backend)) {
        let Some(reason) = b.info.config.get("accel_reason") else {
            continue;
        };
        let fix = b.info.config.get("accel_fix").map(String::as_str);
        match groups
            .iter_mut()
            .find(|(_, r, f)| *r == reason && *f == fix)
        {
            Some((names, _, _)) => names.push(&b.info.backend),
            None => groups.push((vec![&b.info.backend], reason, fix)),
        }
    }
    groups
        .into_iter()
        .map(|(names, reason, fix)| {
            let fix = fix.map_or_else(String::new, |f| {
                format!(" KVM would be usable with {}.", escape(f))
            });
            format!(
                "<p class=\"accel-reason\">{}: {}.{fix}</p>",
                escape(&names.join(", ")),
                escape(reason)
            )
        })
        .collect()
}

fn environment(o: &mut String, meta: &RunMeta, s: &RunSummary) {
    let env = &s.environment;
    let _ = writeln!(o, "<section id=\"environment\">\n<h2>Environment</h2>");
    for l in &s.limitations {
        let _ = writeln!(
            o,
            "<div class=\"warning\" id=\"schema-warning\">{}</div>",
            escape(l)
        );
    }
    let tcg = super::findings::tcg_backends(s);
    if !tcg.is_empty() {
        let _ = writeln!(
            o,
            "<div class=\"warning\" id=\"tcg-warning\">VM figures come from TCG emulation, not \
             hardware virtualisation.<p>Backends {} ran with <code>accel=tcg</code>: QEMU \
             translated every guest instruction in software, so their startup and throughput are \
             far slower than the same guest under KVM. Compare them with each other, not with \
             containers on equal terms.</p>{}</div>",
            escape(&tcg.join(", ")),
            tcg_reasons(s, &tcg)
        );
    }
    let _ = writeln!(o, "<dl class=\"kv\">");
    kv(o, "Host", &env.host);
    kv(o, "OS", &env.os);
    kv(o, "Kernel", &env.kernel);
    kv(o, "CPU", &env.cpu_model);
    kv(o, "Cores", &env.ncpu.to_string());
    kv(o, "Memory", &format_value(env.mem_total as f64, "B"));
    kv(o, "cgroup", &env.cgroup);
    kv(
        o,
        "Root",
        if env.root {
            "yes"
        } else {
            "no: rootless (each backend's limits and network are in its configuration)"
        },
    );
    let accels: Vec<String> = s
        .backends
        .iter()
        .filter(|b| b.info.stack == Stack::Vm)
        .map(|b| {
            let a = b.info.accelerator().unwrap_or("unknown");
            format!("{}: {a}", b.info.backend)
        })
        .collect();
    kv(
        o,
        "Accelerator",
        &if accels.is_empty() {
            "no VM backend in this run".to_string()
        } else {
            accels.join(", ")
        },
    );
    for (tool, version) in &env.tools {
        kv(o, &format!("{tool} version"), version);
    }
    kv(o, "cvm version", &env.cvm_version);
    kv(o, "git sha", &env.git_sha);
    kv(o, "cvm build profile", &env.build_profile);
    kv(o, "Started", &meta.started);
    kv(
        o,
        "Finished",
        meta.finished.as_deref().unwrap_or("(not finished)"),
    );
    kv(o, "Timeout per run", &format!("{} s", meta.timeout_s));
    if let Some(load) = &meta.load {
        let settings: Vec<String> = load.iter().map(|(k, v)| format!("{k}={v}")).collect();
        kv(o, "HTTP load", &settings.join(", "));
    }
    let _ = writeln!(
        o,
        "</dl>\n<h3>Backends as configured</h3>\n<div class=\"tablewrap\"><table>"
    );
    let _ = writeln!(
        o,
        "<tr><th>backend</th><th>stack</th><th>status</th><th>configuration</th></tr>"
    );
    for b in &s.backends {
        let status = match (&b.info.availability, &b.info.error) {
            (Availability::Unavailable { reason, .. }, _) => format!("unavailable: {reason}"),
            (_, Some(e)) => format!("failed: {e}"),
            _ if b.failed_runs > 0 => format!("ran ({} runs failed)", b.failed_runs),
            _ => "ran".to_string(),
        };
        let config: Vec<String> = b
            .info
            .config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&b.info.backend),
            stack_name(b.info.stack),
            escape(&status),
            escape(&config.join("; "))
        );
    }
    let _ = writeln!(o, "</table></div>\n</section>");
}

fn stack_name(s: Stack) -> &'static str {
    match s {
        Stack::Native => "native",
        Stack::Container => "container",
        Stack::Vm => "vm",
    }
}

fn ratio(m: &MetricSummary, levels: &Levels) -> String {
    match (&m.ratio_to_native, &m.ratio_unavailable) {
        (Some(r), _) if r.level <= 0.0 => format!("{}×", format_ratio(r.point)),
        (Some(r), _) => format!(
            "{}× [{}, {}]{}",
            format_ratio(r.point),
            format_ratio(r.lower),
            format_ratio(r.upper),
            levels.caveat(r)
        ),
        (None, Some(why)) => format!("n/a ({why})"),
        (None, None) => String::new(),
    }
}

/// The questions the tables are grouped by, each with the metrics it holds (first match wins);
/// the last holds the rest.
const QUESTIONS: &[(&str, &str, &[&str])] = &[
    (
        "ready",
        "Time to ready, startup phases and teardown",
        &["ready_latency", "launch_floor", "teardown", PHASE_PREFIX],
    ),
    ("density", "Density: many instances at once", &["density_"]),
    ("memory", "Memory per instance", &["memory_"]),
    ("disk", "Disk footprint and its layers", &[DISK_PREFIX]),
    (
        "isolation",
        "Isolation: neighbours, audit, containment",
        &["noisy_", "audit_", "contain_"],
    ),
    (
        "throughput",
        "Throughput and latency",
        &["http_", RATE_PREFIX, "cpu_", "mem_", "io_"],
    ),
    ("other", "Other figures", &[""]),
];

/// Tables longer than this are collapsed until opened.
const OPEN_ROWS: usize = 12;

fn question_of(metric: &str) -> usize {
    if metric.contains(cvm_proto::metric::PER_INSTANCES_SEPARATOR) {
        return 1;
    }
    QUESTIONS
        .iter()
        .position(|(_, _, prefixes)| prefixes.iter().any(|p| metric.starts_with(p)))
        .unwrap_or(QUESTIONS.len() - 1)
}

/// The table's head, each interval column headed with its level when all share one.
fn table_head(medians: &Levels, ratios: &Levels) -> String {
    format!(
        "<table>\n<tr><th>backend</th><th>metric</th><th>median</th><th>{}</th>\
         <th>min – max</th><th>vs native [{}]</th><th>n</th></tr>",
        escape(&medians.heading()),
        escape(&ratios.heading())
    )
}

/// What the run could not show per backend: unavailable, failed, failed runs, clock and
/// client-bound notes; said once, above the tables.
fn backend_notes(s: &RunSummary) -> Vec<String> {
    let mut notes = Vec::new();
    for b in &s.backends {
        let name = escape(&b.info.backend);
        match (&b.info.availability, &b.info.error) {
            (Availability::Unavailable { reason, hint }, _) => notes.push(format!(
                "<li class=\"unavailable\"><strong>{name}</strong>: unavailable — {}. \
                 Fix: {}</li>",
                escape(reason),
                escape(hint)
            )),
            (_, Some(err)) => notes.push(format!(
                "<li class=\"unavailable\"><strong>{name}</strong>: failed — {}</li>",
                escape(err)
            )),
            _ => {}
        }
        if b.failed_runs > 0 {
            notes.push(format!(
                "<li><strong>{name}</strong>: {} measured run(s) failed (see <code>note</code> \
                 in samples.csv); their {} other sample(s) are left out of the statistics</li>",
                b.failed_runs, b.excluded_samples
            ));
        }
        if let Some(note) = super::findings::clock_note(b) {
            notes.push(format!(
                "<li><strong>{name}</strong>: {}</li>",
                escape(&note)
            ));
        }
        if let Some(note) = super::findings::client_bound_note(b) {
            notes.push(format!(
                "<li class=\"client-bound\"><strong>{name}</strong>: {}</li>",
                escape(&note)
            ));
        }
    }
    notes
}

/// One row of a table; the interval's level only where the table's heading cannot state it.
fn table_row(
    o: &mut String,
    backend: &str,
    metric: &str,
    m: &MetricSummary,
    levels: (&Levels, &Levels),
) {
    let st = &m.stats;
    let outliers = st.outliers.low + st.outliers.high;
    let n = if outliers > 0 {
        format!("{} ({outliers} outliers)", st.n)
    } else {
        st.n.to_string()
    };
    let _ = writeln!(
        o,
        "<tr><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td>\
         <td class=\"num\">{} – {}{}</td><td class=\"num\">{} – {}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        escape(backend),
        escape(metric),
        escape(&format_value(st.median, &m.unit)),
        escape(&format_value(st.median_ci.lower, &m.unit)),
        escape(&format_value(st.median_ci.upper, &m.unit)),
        escape(&levels.0.caveat(&st.median_ci)),
        escape(&format_value(st.min, &m.unit)),
        escape(&format_value(st.max, &m.unit)),
        escape(&ratio(m, levels.1)),
        escape(&n)
    );
}

/// Every figure, one table per question: its intervals' levels said once in its heading, long
/// tables collapsed.
fn summary_table(o: &mut String, s: &RunSummary) {
    let _ = writeln!(
        o,
        "<section id=\"summary\">\n<h2>Every figure, by question</h2>\n<p class=\"sub\">Medians \
         of the measured runs with their confidence interval: the pair of order statistics that \
         covers the median with at least 95 % (exactly, whatever the distribution), or min–max \
         where even that covers less (5 runs or fewer); each table's heading gives the level its \
         intervals have. \"vs native\" is the ratio of medians with its interval (bootstrap from \
         10 runs a side; with fewer, order statistics of the pairwise ratios). Outliers (MAD \
         rule) are counted, never dropped.</p>"
    );
    let notes = backend_notes(s);
    if !notes.is_empty() {
        let _ = writeln!(o, "<ul id=\"backend-notes\">\n{}\n</ul>", notes.join("\n"));
    }
    let mut rows: Vec<Vec<(&str, &String, &MetricSummary)>> = vec![Vec::new(); QUESTIONS.len()];
    for b in s
        .backends
        .iter()
        .filter(|b| !matches!(b.info.availability, Availability::Unavailable { .. }))
    {
        let mut metrics: Vec<(&String, &MetricSummary)> = b.metrics.iter().collect();
        metrics.sort_by_key(|(m, _)| metric_rank(m));
        for (metric, m) in metrics {
            rows[question_of(metric)].push((&b.info.backend, metric, m));
        }
    }
    if rows.iter().all(Vec::is_empty) {
        let _ = writeln!(o, "<p>No backend recorded a measurement.</p>");
    }
    for ((id, title, _), rows) in QUESTIONS.iter().zip(&rows).filter(|(_, r)| !r.is_empty()) {
        let medians = Levels::of(rows.iter().map(|(_, _, m)| &m.stats.median_ci));
        let ratios = Levels::of(
            rows.iter()
                .filter_map(|(_, _, m)| m.ratio_to_native.as_ref()),
        );
        let open = if rows.len() <= OPEN_ROWS { " open" } else { "" };
        let _ = writeln!(
            o,
            "<details id=\"table-{id}\"{open}>\n<summary>{} ({} rows)</summary>\n\
             <div class=\"tablewrap\">{}",
            escape(title),
            rows.len(),
            table_head(&medians, &ratios)
        );
        for (backend, metric, m) in rows {
            table_row(o, backend, metric, m, (&medians, &ratios));
        }
        let _ = writeln!(o, "</table></div>\n</details>");
    }
    let _ = writeln!(o, "</section>");
}

fn files(o: &mut String, charts: &[Rendered]) {
    let _ = writeln!(
        o,
        "<section id=\"files\">\n<h2>Files</h2>\n<ul>\n\
         <li><a href=\"samples.csv\">samples.csv</a>: every sample, one tidy row each (SI units)</li>\n\
         <li><a href=\"summary.json\">summary.json</a>: statistics per backend and metric</li>\n\
         <li><a href=\"run.json\">run.json</a>: environment, scenario and backend configuration</li>\n\
         <li><a href=\"summary.md\">summary.md</a>: the summary table in Markdown</li>\n\
         <li>Charts: <a href=\"{CHARTS_DIR}/{STACK_CHART}.png\">{STACK_CHART}.png</a>{}</li>\n</ul>\n</section>",
        charts
            .iter()
            .map(|c| format!(
                ", <a href=\"{CHARTS_DIR}/{id}.png\">{id}.png</a>",
                id = escape(c.id)
            ))
            .collect::<String>()
    );
}

/// Writes `index.html` into `dir`.
pub fn write(dir: &Path, html: &str) -> Result<(), HtmlError> {
    let path = dir.join(INDEX_FILE);
    std::fs::write(&path, html).map_err(|source| HtmlError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_in_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("plain µs"), "plain µs");
    }

    #[test]
    fn phases_sort_after_headline_metrics() {
        let mut m = vec!["phase.runtime", "zeta", "memory_pss", "ready_latency"];
        m.sort_by_key(|m| metric_rank(m));
        assert_eq!(m, ["ready_latency", "memory_pss", "zeta", "phase.runtime"]);
    }
}
