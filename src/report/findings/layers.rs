//! What each backend's isolation layers cost per instance, in memory over native (with its
//! interval) and on disk, from the same figures the stack diagram draws.

use super::words::{label, metric, spans, tcg_clause, vms_as_range, Emulated, Quoted};
use crate::report::format::format_value;
use crate::report::stack::{columns, Column, Group, Layer, LayerBox};
use crate::results::{BackendSummary, RunSummary};
use cvm_proto::metric::Metric;

/// The boxes of a column that belong to its isolation, not to the workload or the host.
fn isolating(col: &Column) -> Vec<&LayerBox> {
    col.boxes
        .iter()
        .filter(|x| {
            matches!(
                x.layer,
                Layer::Runtime
                    | Layer::Sentry
                    | Layer::GuestOs
                    | Layer::GuestFree
                    | Layer::Hypervisor
            )
        })
        .collect()
}

/// A VM's isolation layers' memory as the stack diagram draws it (its boxes add up to the
/// column's PSS), with the parts that explain it; `None` where the run has no such split (a
/// container, an older VM run: then `memory_overhead` is the figure).
fn vm_memory_drawn(isolating: &[&LayerBox]) -> Option<(f64, String)> {
    if !isolating.iter().any(|x| x.layer == Layer::GuestFree) {
        return None;
    }
    let total: f64 = isolating.iter().filter_map(|x| x.memory).sum();
    let mut parts = Vec::new();
    for x in isolating {
        let Some(m) = x.memory else {
            continue;
        };
        let name = match x.layer {
            Layer::Hypervisor => "QEMU",
            Layer::GuestOs => "the guest's own use",
            _ => "guest RAM it touched and holds free",
        };
        let mut part = format!("{name} {}", format_value(m, "B"));
        let tcg = x.memory_parts.iter().find(|(p, _)| p.starts_with("TCG"));
        if let Some((_, t)) = tcg {
            part.push_str(&format!(
                ", of it {} TCG's translation cache, emulation only",
                format_value(*t, "B")
            ));
        }
        parts.push(part);
    }
    Some((total, parts.join("; ")))
}

/// Memory per instance over native: what the diagram draws for a VM, else `memory_overhead`.
enum Over {
    Drawn(f64, String),
    Measured {
        median: f64,
        lower: f64,
        upper: f64,
    },
    /// The interval holds zero: no difference the run can tell.
    Nothing {
        lower: f64,
        upper: f64,
    },
}

fn over_native(col: &Column, b: &BackendSummary, q: &mut Quoted) -> Option<Over> {
    if let Some((total, parts)) = vm_memory_drawn(&isolating(col)) {
        return Some(Over::Drawn(total, parts));
    }
    let o = metric(b, Metric::MemoryOverhead)?;
    let ci = &o.stats.median_ci;
    q.note(ci);
    Some(if spans(ci, 0.0) {
        Over::Nothing {
            lower: ci.lower,
            upper: ci.upper,
        }
    } else {
        Over::Measured {
            median: o.stats.median,
            lower: ci.lower,
            upper: ci.upper,
        }
    })
}

fn interval(lower: f64, upper: f64) -> String {
    format!(
        "[{}, {}]",
        format_value(lower, "B"),
        format_value(upper, "B")
    )
}

fn over_text(o: &Over) -> String {
    match o {
        Over::Drawn(total, parts) => format!(
            "{} of memory per instance over native ({parts})",
            format_value(*total, "B")
        ),
        Over::Measured {
            median,
            lower,
            upper,
        } => {
            let ci = if lower == upper {
                String::new()
            } else {
                format!(" {}", interval(*lower, *upper))
            };
            format!(
                "{}{ci} of memory per instance over native",
                format_value(*median, "B")
            )
        }
        Over::Nothing { lower, upper } => format!(
            "no measurable difference in memory per instance from native (its interval {} \
             holds zero)",
            interval(*lower, *upper)
        ),
    }
}

fn daemons(b: &BackendSummary) -> Option<f64> {
    metric(b, Metric::MemoryDaemon).map(|d| d.stats.median)
}

/// The isolating layers' disk bytes, each named.
fn disk_parts(col: &Column) -> Vec<(&'static str, f64)> {
    isolating(col)
        .iter()
        .filter_map(|x| {
            let name = match x.layer {
                Layer::Runtime => "runtime",
                Layer::Sentry => "Sentry",
                Layer::GuestOs => "guest OS",
                _ => "hypervisor",
            };
            x.disk.map(|d| (name, d))
        })
        .collect()
}

/// The columns of the backends that isolate, with their summaries.
fn isolated(s: &RunSummary) -> Vec<(Column, &BackendSummary)> {
    columns(s)
        .into_iter()
        .filter(|c| c.group != Group::Native)
        .filter_map(|c| {
            let b = s.backend(&c.backend)?;
            Some((c, b))
        })
        .collect()
}

/// One sentence per backend: its layers' memory over native, its shared daemons, its disk.
pub(super) fn sentences(s: &RunSummary, q: &mut Quoted) -> Vec<String> {
    let mut out = Vec::new();
    for (col, b) in isolated(s) {
        let mut parts: Vec<String> = over_native(&col, b, q).iter().map(over_text).collect();
        if let Some(d) = daemons(b) {
            parts.push(format!(
                "{} in daemons shared by every instance on the host",
                format_value(d, "B")
            ));
        }
        let disk: Vec<String> = disk_parts(&col)
            .iter()
            .map(|(name, d)| format!("{name} {}", format_value(*d, "B")))
            .collect();
        if !disk.is_empty() {
            parts.push(format!("{} on disk", disk.join(", ")));
        }
        if !parts.is_empty() {
            out.push(format!(
                "{}'s isolation layers: {}{}.",
                label(b),
                parts.join("; "),
                tcg_clause([b], Emulated::Memory)
            ));
        }
    }
    out
}

/// Memory per instance in one line: each backend's figure over native (several VMs as one
/// range), those the run cannot tell from native named together.
pub(super) fn memory_headline(s: &RunSummary, q: &mut Quoted) -> Option<String> {
    let mut figures = Vec::new();
    let mut none = Vec::new();
    for (col, b) in isolated(s) {
        let figure = match over_native(&col, b, q) {
            Some(Over::Nothing { .. }) => {
                none.push(b.info.backend.clone());
                continue;
            }
            Some(Over::Drawn(v, _)) | Some(Over::Measured { median: v, .. }) => v,
            None => continue,
        };
        let shared = daemons(b).map_or_else(String::new, |d| {
            format!(
                " (and {} in daemons every instance shares)",
                format_value(d, "B")
            )
        });
        let text = format!("{} {}{shared}", label(b), format_value(figure, "B"));
        figures.push((b, text, figure));
    }
    if figures.is_empty() && none.is_empty() {
        return None;
    }
    let quoted: Vec<&BackendSummary> = figures.iter().map(|(b, _, _)| *b).collect();
    let mut parts = vms_as_range(figures, |v| format_value(v, "B")).join(", ");
    if !none.is_empty() {
        if !parts.is_empty() {
            parts.push_str("; ");
        }
        parts.push_str(&format!("no measurable difference for {}", none.join(", ")));
    }
    Some(format!(
        "Memory per instance over native: {parts}{}.",
        tcg_clause(quoted, Emulated::Memory)
    ))
}

/// Disk in one line: what each backend's isolation layers add to the workload's files.
pub(super) fn disk_headline(s: &RunSummary) -> Option<String> {
    let columns = isolated(s);
    let figures: Vec<(&BackendSummary, String, f64)> = columns
        .iter()
        .filter_map(|(col, b)| {
            let parts = disk_parts(col);
            (!parts.is_empty()).then(|| {
                let total: f64 = parts.iter().map(|(_, d)| d).sum();
                (
                    *b,
                    format!("{} {}", b.info.backend, format_value(total, "B")),
                    total,
                )
            })
        })
        .collect();
    (!figures.is_empty()).then(|| {
        format!(
            "On disk, the isolation layers add to the workload's own files: {}.",
            vms_as_range(figures, |v| format_value(v, "B")).join(", ")
        )
    })
}
