//! Throughput kept: the share of native's throughput each backend kept (`ratio_to_native` of
//! `http_rps`, `cpu_score`, the bandwidths and an app's own client's figure, with the bootstrap interval of the ratio), saying
//! where the load client rather than the server was the limit.

use super::words::{
    label, metric, num, percent, ran, spans, tcg_clause, vms_as_range, Emulated, Quoted,
};
use crate::report::format::format_value;
use crate::results::{BackendSummary, RunSummary, Stack};
use cvm_proto::metric::Metric;

/// Throughput metrics, higher is better, compared with native.
const THROUGHPUT: [Metric; 8] = cvm_proto::metric::THROUGHPUT_KEPT;

/// In how many of its measured runs the load client was the limit, of how many: `None` for a
/// metric the HTTP load client does not drive, or when no run was client-bound.
fn client_bound(b: &BackendSummary, m: Metric) -> Option<(usize, usize)> {
    if m != Metric::HttpRps || b.client_bound_runs == 0 {
        return None;
    }
    let runs = metric(b, Metric::LoadClientCpu).map_or(b.client_bound_runs, |c| c.stats.n);
    Some((b.client_bound_runs, runs))
}

/// A backend's share: its text ("docker 85% [72, 96] (client-bound in 3 of 5 runs)", "runc
/// 99% [75, 116] (no measurable difference)"), its point, and whether its interval holds 100 %.
fn kept(b: &BackendSummary, m: Metric, q: &mut Quoted) -> Option<(String, f64, bool)> {
    let r = metric(b, m)?.ratio_to_native.as_ref()?;
    q.note(r);
    let same = spans(r, 1.0);
    let mut notes = Vec::new();
    if same {
        notes.push("no measurable difference".to_string());
    }
    if let Some((bound, of)) = client_bound(b, m) {
        notes.push(format!("client-bound in {bound} of {of} runs"));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    Some((format!("{} {}{notes}", label(b), percent(r)), r.point, same))
}

/// The shares as a list: every one in full, or (`compact`) several VMs as one range and those
/// the run cannot tell from native named together at the end.
fn shares(quoted: &[&BackendSummary], m: Metric, q: &mut Quoted, compact: bool) -> String {
    let all: Vec<(&BackendSummary, (String, f64, bool))> = quoted
        .iter()
        .filter_map(|b| Some((*b, kept(b, m, q)?)))
        .collect();
    if !compact {
        let texts: Vec<String> = all.into_iter().map(|(_, (t, _, _))| t).collect();
        return texts.join(", ");
    }
    let mut none = Vec::new();
    let mut items = Vec::new();
    for (b, (text, point, same)) in all {
        if same {
            let bound = client_bound(b, m).map_or_else(String::new, |(n, of)| {
                format!(" (client-bound in {n} of {of} runs)")
            });
            none.push(format!("{}{bound}", label(b)));
        } else {
            items.push((b, text, point));
        }
    }
    let mut list = vms_as_range(items, |v| format!("{}%", num(v * 100.0))).join(", ");
    if !none.is_empty() {
        if !list.is_empty() {
            list.push_str("; ");
        }
        list.push_str(&format!("no measurable difference for {}", none.join(", ")));
    }
    list
}

/// One sentence per throughput metric the run measured; `compact` for the headlines.
pub(super) fn sentences(s: &RunSummary, q: &mut Quoted, compact: bool) -> Vec<String> {
    let Some(native) = s.backends.iter().find(|b| b.info.stack == Stack::Native) else {
        return Vec::new();
    };
    let others: Vec<&BackendSummary> = s
        .backends
        .iter()
        .filter(|b| ran(b) && b.info.stack != Stack::Native)
        .collect();
    let mut out = Vec::new();
    for m in THROUGHPUT {
        let Some(n) = metric(native, m) else {
            continue;
        };
        let quoted: Vec<&BackendSummary> = others
            .iter()
            .copied()
            .filter(|b| metric(b, m).is_some_and(|x| x.ratio_to_native.is_some()))
            .collect();
        let list = shares(&quoted, m, q, compact);
        if list.is_empty() {
            continue;
        }
        let limit = client_bound(native, m).map_or_else(String::new, |(bound, of)| {
            format!(
                " (client-bound in {bound} of {of} runs: the load client, not native, was the \
                 limit, so each share is of the client's limit, not of native's capacity)"
            )
        });
        out.push(format!(
            "Of native's {} {}{limit}, each kept: {list}{}.",
            m.name(),
            format_value(n.stats.median, &n.unit),
            tcg_clause(quoted, Emulated::Speed)
        ));
    }
    out
}
