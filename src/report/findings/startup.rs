//! Time to ready: how many times sooner each container or sandbox was ready than each VM
//! (`ready_latency` medians, with the two-sample interval of the ratio the summary took from
//! both backends' samples, `RunSummary::pair_ratios`), and who was first.

use super::words::{factor, label, metric, ran, spans, tcg_clause, Emulated, Quoted};
use crate::report::format::format_value;
use crate::report::stack::Group;
use crate::results::{BackendSummary, RunSummary};
use crate::stats::Estimate;
use cvm_proto::metric::Metric;

/// The summary's ratio of `numerator`'s `ready_latency` median over `denominator`'s.
fn ratio<'a>(s: &'a RunSummary, numerator: &str, denominator: &str) -> Option<&'a Estimate> {
    s.pair_ratios
        .iter()
        .find(|p| {
            p.metric == Metric::ReadyLatency.name()
                && p.numerator == numerator
                && p.denominator == denominator
        })
        .map(|p| &p.ratio)
}

fn ready(b: &BackendSummary) -> Option<f64> {
    metric(b, Metric::ReadyLatency).map(|m| m.stats.median)
}

/// The backends of these groups that ran and have a startup figure.
fn of<'a>(s: &'a RunSummary, groups: &[Group]) -> Vec<&'a BackendSummary> {
    s.backends
        .iter()
        .filter(|b| ran(b) && groups.contains(&Group::of(&b.info)) && ready(b).is_some())
        .collect()
}

fn fastest<'a>(bs: &[&'a BackendSummary]) -> Option<&'a BackendSummary> {
    bs.iter().copied().min_by(|a, b| {
        ready(a)
            .partial_cmp(&ready(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

/// "206× [84.8, 284] faster than vm (3.43 s)", or "no measurable difference from vm (...)"
/// when the ratio's interval holds 1.
fn against(r: &Estimate, other: &BackendSummary, word: &str) -> String {
    let t = format_value(ready(other).unwrap_or(f64::NAN), "s");
    if spans(r, 1.0) {
        format!("no measurable difference from {} ({t})", other.info.backend)
    } else {
        format!("{} {word} than {} ({t})", factor(r), other.info.backend)
    }
}

/// One sentence per container or sandbox: its factor against every VM, the emulation caveat
/// in the same sentence.
pub(super) fn sentences(s: &RunSummary, q: &mut Quoted) -> Vec<String> {
    let vms = of(s, &[Group::Vms]);
    let mut out = Vec::new();
    for c in of(s, &[Group::Containers, Group::Sandbox]) {
        let mut used = Vec::new();
        let pairs: Vec<String> = vms
            .iter()
            .filter_map(|v| {
                let r = ratio(s, &v.info.backend, &c.info.backend)?;
                q.note(r);
                used.push(*v);
                Some(against(r, v, "faster"))
            })
            .collect();
        if !pairs.is_empty() {
            out.push(format!(
                "{} was ready in {}: {}{}.",
                label(c),
                format_value(ready(c).unwrap_or(f64::NAN), "s"),
                pairs.join(", "),
                tcg_clause(used, Emulated::Speed)
            ));
        }
    }
    out
}

/// A backend that ran but was never ready has no startup figure: say so, not nothing.
pub(super) fn never_ready(s: &RunSummary) -> Option<String> {
    let never: Vec<String> = s
        .backends
        .iter()
        .filter(|b| ran(b) && b.failed_runs > 0 && ready(b).is_none())
        .map(|b| format!("{} ({} failed)", b.info.backend, b.failed_runs))
        .collect();
    (!never.is_empty()).then(|| {
        format!(
            "No startup figure for {}: every measured run failed, so no startup comparison is \
             made with {}.",
            never.join(", "),
            if never.len() == 1 { "it" } else { "them" }
        )
    })
}

/// The question in one line: the fastest isolated backend, and by how much it beat the
/// fastest VM (or, when the run has no VM or no container, how it compares with native).
pub(super) fn headline(s: &RunSummary, q: &mut Quoted) -> Option<String> {
    let first = fastest(&of(s, &[Group::Containers, Group::Sandbox]));
    let vm = fastest(&of(s, &[Group::Vms]));
    let (subject, other, comparison) = match (first, vm) {
        (Some(c), Some(v)) => {
            let r = ratio(s, &v.info.backend, &c.info.backend)?;
            q.note(r);
            let text = against(r, v, "sooner").replacen(
                &v.info.backend,
                &format!("the fastest VM, {}", v.info.backend),
                1,
            );
            (c, v, text)
        }
        (Some(b), None) | (None, Some(b)) => {
            let n = *of(s, &[Group::Native]).first()?;
            let r = metric(b, Metric::ReadyLatency)?.ratio_to_native.as_ref()?;
            q.note(r);
            let tn = format_value(ready(n).unwrap_or(f64::NAN), "s");
            let text = if spans(r, 1.0) {
                format!("no measurable difference from native's {tn}")
            } else {
                format!("{} as long as native's {tn}", factor(r))
            };
            (b, n, text)
        }
        (None, None) => return None,
    };
    Some(format!(
        "Time to ready: the fastest isolated backend, {}, was ready in {}, {comparison}{}.",
        label(subject),
        format_value(ready(subject).unwrap_or(f64::NAN), "s"),
        tcg_clause([subject, other], Emulated::Speed)
    ))
}
