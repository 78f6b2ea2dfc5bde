//! Throughput kept: the share of native's throughput each backend kept (`ratio_to_native` of
//! `http_rps`, `cpu_score` and the bandwidths, with the bootstrap interval of the ratio), saying
//! where the load client rather than the server was the limit.

use super::words::{label, metric, percent, ran, spans, tcg_clause, Quoted};
use crate::report::format::format_value;
use crate::results::{BackendSummary, RunSummary, Stack};
use cvm_proto::metric::Metric;

/// Throughput metrics, higher is better, compared with native.
const THROUGHPUT: [Metric; 4] = [
    Metric::HttpRps,
    Metric::CpuScore,
    Metric::MemBandwidthTriad,
    Metric::IoWriteBandwidth,
];

/// In how many of its measured runs the load client was the limit, of how many: `None` for a
/// metric the HTTP load client does not drive, or when no run was client-bound.
fn client_bound(b: &BackendSummary, m: Metric) -> Option<(usize, usize)> {
    if m != Metric::HttpRps || b.client_bound_runs == 0 {
        return None;
    }
    let runs = metric(b, Metric::LoadClientCpu).map_or(b.client_bound_runs, |c| c.stats.n);
    Some((b.client_bound_runs, runs))
}

/// "docker 85% [72, 96] (client-bound in 3 of 5 runs)", "runc 99% [75, 116] (no measurable
/// difference)".
fn kept(b: &BackendSummary, m: Metric, q: &mut Quoted) -> Option<String> {
    let r = metric(b, m)?.ratio_to_native.as_ref()?;
    q.note(r);
    let mut notes = Vec::new();
    if spans(r, 1.0) {
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
    Some(format!("{} {}{notes}", label(b), percent(r)))
}

/// One sentence per throughput metric the run measured.
pub(super) fn sentences(s: &RunSummary, q: &mut Quoted) -> Vec<String> {
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
        let shares: Vec<String> = quoted.iter().filter_map(|b| kept(b, m, q)).collect();
        if shares.is_empty() {
            continue;
        }
        let limit = client_bound(native, m).map_or_else(String::new, |(bound, of)| {
            format!(
                " (client-bound in {bound} of {of} runs: the load client, not native, was the \
                 limit, so each share is of the client's limit, not of native's capacity)"
            )
        });
        out.push(format!(
            "Of native's {} {}{limit}, each kept: {}{}.",
            m.name(),
            format_value(n.stats.median, &n.unit),
            shares.join(", "),
            tcg_clause(quoted)
        ));
    }
    out
}
