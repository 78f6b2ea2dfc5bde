//! The report's isolation section: what each backend protects, beside what it costs. A
//! self-contained piece of HTML (its own heading, table, chart and notes) that the page places
//! after the stack diagram, drawn only for runs that measured isolation (`noisy_*`, `audit_*`,
//! `contain_*` figures).
//!
//! One table, a column per backend and a row per property: the kernel and namespaces it shares
//! with the host, root's standing, capabilities, seccomp, the system calls that reach a kernel
//! from inside and those its host-side process may make to the host's, a VM's device models and
//! sandbox, masked and read-only paths, device nodes, the security label; each containment
//! attempt; the victim's p99 beside each aggressor. Every cell's evidence (the sample's note) is
//! its tooltip and is listed in full below. Where a backend's figures are its own kernel's (a
//! VM's guest, gVisor's Sentry) the cell says so, since they do not describe the host's; where
//! it enforces limits differently (a cgroup, a vCPU, a guest's thread cap) the table says how.

use std::fmt::Write;
use std::path::Path;

use cvm_proto::isolation::{Aggressor, Probe};
use cvm_proto::metric::Metric;

use super::charts::{self, ChartError};
use super::format::format_value;
use crate::results::{Availability, BackendSummary, Phase, RunSummary, SampleRow, Stack};
use crate::text::escape_html as escape;

/// The section's anchor.
pub const SECTION_ID: &str = "isolation";

/// Whether the run measured isolation at all.
pub fn measured(s: &RunSummary) -> bool {
    s.backends.iter().any(|b| {
        b.metrics.keys().any(|m| {
            m.starts_with("noisy_") || m.starts_with("audit_") || m.starts_with("contain_")
        })
    })
}

/// One cell: what it shows, and its evidence.
struct Cell {
    text: String,
    evidence: String,
}

fn median(b: &BackendSummary, m: Metric) -> Option<f64> {
    b.metrics.get(m.name()).map(|s| s.stats.median)
}

/// The note of the last measured sample of `metric` on `backend`: its evidence.
fn note(rows: &[SampleRow], backend: &str, metric: Metric) -> String {
    rows.iter()
        .rev()
        .find(|r| r.backend == backend && r.metric == metric.name() && r.phase == Phase::Measure)
        .map(|r| r.note.clone())
        .unwrap_or_default()
}

/// Figures the backend read from a kernel of its own are labelled with it.
fn own_kernel(b: &BackendSummary) -> Option<&'static str> {
    match median(b, Metric::AuditKernelShared) {
        Some(v) if v < 0.5 => Some(if b.info.stack == Stack::Vm {
            "guest kernel"
        } else {
            "its own kernel"
        }),
        _ => None,
    }
}

/// The table's rows: a label and how to fill each backend's cell.
type Row = (
    &'static str,
    fn(&BackendSummary, &[SampleRow]) -> Option<Cell>,
);

fn yes_no(v: f64) -> &'static str {
    if v >= 0.5 {
        "yes"
    } else {
        "no"
    }
}

/// An audit figure read from inside, labelled when the kernel it describes is not the host's.
fn inside(
    b: &BackendSummary,
    rows: &[SampleRow],
    m: Metric,
    show: fn(f64) -> String,
) -> Option<Cell> {
    let v = median(b, m)?;
    let mut text = show(v);
    if let Some(k) = own_kernel(b) {
        text.push_str(&format!(" ({k})"));
    }
    Some(Cell {
        text,
        evidence: note(rows, &b.info.backend, m),
    })
}

fn plain(
    b: &BackendSummary,
    rows: &[SampleRow],
    m: Metric,
    show: fn(f64) -> String,
) -> Option<Cell> {
    Some(Cell {
        text: show(median(b, m)?),
        evidence: note(rows, &b.info.backend, m),
    })
}

const AUDIT_ROWS: &[Row] = &[
    ("Kernel shared with the host", |b, r| {
        plain(b, r, Metric::AuditKernelShared, |v| yes_no(v).into())
    }),
    ("Host namespaces shared (of 8)", |b, r| {
        plain(b, r, Metric::AuditNamespacesShared, |v| format!("{v:.0}"))
    }),
    ("Root inside is the host's root", |b, r| {
        plain(b, r, Metric::AuditRootIsHostRoot, |v| yes_no(v).into())
    }),
    (
        "System calls the host kernel accepts from its process (of 381)",
        |b, r| {
            let m = Metric::AuditHostSyscalls;
            let who = match b.info.backend.as_str() {
                "gvisor" => " (the Sentry's filter)",
                _ if b.info.stack == Stack::Vm => " (QEMU's filter)",
                _ => " (the workload's)",
            };
            let v = median(b, m)?;
            Some(Cell {
                text: format!("{v:.0}{who}"),
                evidence: note(r, &b.info.backend, m),
            })
        },
    ),
    ("VMM sandbox (-sandbox on)", |b, r| {
        plain(b, r, Metric::AuditVmmSandbox, |v| yes_no(v).into())
    }),
    ("VMM device models the guest sees", |b, r| {
        plain(b, r, Metric::AuditVmmDevices, |v| format!("{v:.0}"))
    }),
    ("Probed system calls reaching a kernel (of 32)", |b, r| {
        inside(b, r, Metric::AuditSyscallsReachingKernel, |v| {
            format!("{v:.0}")
        })
    }),
    ("Effective capabilities", |b, r| {
        inside(b, r, Metric::AuditCapEffective, |v| format!("{v:.0}"))
    }),
    ("CAP_SYS_ADMIN", |b, r| {
        inside(b, r, Metric::AuditCapSysAdmin, |v| yes_no(v).into())
    }),
    ("Seccomp", |b, r| {
        inside(b, r, Metric::AuditSeccompMode, |v| {
            match v.round() as i64 {
                0 => "none",
                1 => "strict",
                _ => "filter",
            }
            .into()
        })
    }),
    ("no_new_privs", |b, r| {
        inside(b, r, Metric::AuditNoNewPrivs, |v| yes_no(v).into())
    }),
    ("Masked paths", |b, r| {
        inside(b, r, Metric::AuditMaskedPaths, |v| format!("{v:.0}"))
    }),
    ("Read-only paths", |b, r| {
        inside(b, r, Metric::AuditReadonlyPaths, |v| format!("{v:.0}"))
    }),
    ("Device nodes in /dev", |b, r| {
        inside(b, r, Metric::AuditDeviceNodes, |v| format!("{v:.0}"))
    }),
    ("Security module label", |b, r| {
        inside(b, r, Metric::AuditLsmConfined, |v| {
            if v >= 0.5 { "confined" } else { "none" }.into()
        })
    }),
];

/// A containment attempt's cell: contained or not, and the first words of its evidence; on a
/// backend that skipped them, why.
fn containment(b: &BackendSummary, rows: &[SampleRow], p: Probe) -> Option<Cell> {
    let m = p.metric();
    let Some(v) = median(b, m) else {
        let skipped = b.info.config.get("isolation_containment")?;
        return skipped.starts_with("skipped").then(|| Cell {
            text: "skipped".into(),
            evidence: skipped.clone(),
        });
    };
    let evidence = note(rows, &b.info.backend, m);
    let why = evidence
        .split(['(', ';'])
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let verdict = if v >= 0.5 {
        "contained"
    } else {
        "NOT contained"
    };
    Some(Cell {
        text: if why.is_empty() {
            verdict.into()
        } else {
            format!("{verdict}: {why}")
        },
        evidence,
    })
}

fn noisy(b: &BackendSummary, rows: &[SampleRow], a: Aggressor) -> Option<Cell> {
    let ratio = median(b, a.p99_ratio())?;
    let rate = median(b, a.rate_ratio());
    let work = median(b, a.work());
    let mut evidence = note(rows, &b.info.backend, a.p99_ratio());
    if let Some(w) = work {
        evidence.push_str(&format!(
            "; the aggressor's own work {}",
            format_value(w, a.work().unit().symbol())
        ));
    }
    Some(Cell {
        text: match rate {
            Some(r) if r < 0.95 => format!("{ratio:.2}× (served {:.0} % of the rate)", r * 100.0),
            _ => format!("{ratio:.2}×"),
        },
        evidence,
    })
}

/// The backends that have a column: every backend of the run, in its order.
fn columns(s: &RunSummary) -> Vec<&BackendSummary> {
    s.backends.iter().collect()
}

fn status(b: &BackendSummary) -> Option<String> {
    match (&b.info.availability, &b.info.error) {
        (Availability::Unavailable { reason, .. }, _) => Some(format!("unavailable: {reason}")),
        (_, Some(e)) => Some(format!("failed: {e}")),
        _ if b.metrics.is_empty() => Some("no data".into()),
        _ => None,
    }
}

fn table_row(
    o: &mut String,
    label: &str,
    cols: &[&BackendSummary],
    cell: impl Fn(&BackendSummary) -> Option<Cell>,
) {
    let cells: Vec<Option<Cell>> = cols.iter().map(|b| cell(b)).collect();
    if cells.iter().all(Option::is_none) {
        return;
    }
    let _ = write!(o, "<tr><th>{}</th>", escape(label));
    for c in cells {
        match c {
            Some(c) => {
                let _ = write!(
                    o,
                    "<td title=\"{}\">{}</td>",
                    escape(&c.evidence),
                    escape(&c.text)
                );
            }
            None => o.push_str("<td>–</td>"),
        }
    }
    o.push_str("</tr>\n");
}

/// The section's HTML, with its chart drawn into `charts_dir`; `None` for a run that measured
/// no isolation.
pub fn section(
    s: &RunSummary,
    rows: &[SampleRow],
    charts_dir: &Path,
) -> Result<Option<String>, ChartError> {
    if !measured(s) {
        return Ok(None);
    }
    let cols = columns(s);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<section id=\"{SECTION_ID}\">\n<h2>Isolation: what each backend protects</h2>\n\
         <p class=\"sub\">Read from inside each instance (the <code>audit</code> applet), on the \
         host (the seccomp filters of the process that carries the instance's system calls: \
         the workload, gVisor's Sentry, QEMU), by containment attempts (the <code>contain</code> \
         applet, never run on the bare host) and by a victim server's p99 beside a noisy \
         neighbour of the same backend. Hover a cell for its evidence; all of it is listed \
         below. Figures marked \"guest kernel\" or \"its own kernel\" describe a kernel that is \
         not the host's.</p>"
    );
    let _ = write!(o, "<table id=\"isolation-table\">\n<tr><th>property</th>");
    for b in &cols {
        let _ = write!(o, "<th>{}</th>", escape(&b.info.backend));
    }
    o.push_str("</tr>\n");
    table_row(&mut o, "Status", &cols, |b| {
        status(b).map(|text| Cell {
            evidence: text.clone(),
            text,
        })
    });
    table_row(&mut o, "Limits enforced by", &cols, |b| {
        b.info.config.get("isolation_limits").map(|l| Cell {
            text: l.clone(),
            evidence: l.clone(),
        })
    });
    for (label, fill) in AUDIT_ROWS {
        table_row(&mut o, label, &cols, |b| fill(b, rows));
    }
    for &p in Probe::ALL {
        let label = format!("Contained: {}", p.attempt());
        table_row(&mut o, &label, &cols, |b| containment(b, rows, p));
    }
    table_row(
        &mut o,
        "Victim alone: p99 at the offered rate",
        &cols,
        |b| {
            let p99 = median(b, Metric::NoisyAloneP99)?;
            let offered = median(b, Metric::NoisyOfferedRate)?;
            Some(Cell {
                text: format!(
                    "{} at {}",
                    format_value(p99, "s"),
                    format_value(offered, "1/s")
                ),
                evidence: note(rows, &b.info.backend, Metric::NoisyOfferedRate),
            })
        },
    );
    for &a in Aggressor::ALL {
        let label = format!("Victim p99 beside the {a} aggressor (× alone)");
        table_row(&mut o, &label, &cols, |b| noisy(b, rows, a));
    }
    o.push_str("</table>\n");
    if let Some(chart) = charts::isolation_chart(s) {
        let rendered = charts::render_all(&[chart], charts_dir)?;
        for c in &rendered {
            super::html::figure(&mut o, c);
        }
    }
    evidence(&mut o, &cols, rows);
    o.push_str("</section>\n");
    Ok(Some(o))
}

/// Every isolation figure's evidence, per backend, collapsed.
fn evidence(o: &mut String, cols: &[&BackendSummary], rows: &[SampleRow]) {
    let _ = writeln!(
        o,
        "<details id=\"isolation-evidence\">\n<summary>The evidence behind every cell</summary>\n<table>"
    );
    for b in cols {
        for m in Metric::ALL {
            let name = m.name();
            if !(name.starts_with("audit_")
                || name.starts_with("contain_")
                || name.starts_with("noisy_"))
            {
                continue;
            }
            let n = note(rows, &b.info.backend, *m);
            if n.is_empty() {
                continue;
            }
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&b.info.backend),
                escape(name),
                escape(&n)
            );
        }
    }
    o.push_str("</table>\n</details>\n");
}
