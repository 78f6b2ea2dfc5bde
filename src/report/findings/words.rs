//! How a finding writes a figure: ratios and shares with at most three significant figures, an
//! interval that cannot tell a difference from none said in words, a backend named with what
//! its figures depend on (gVisor's platform and network, a VM's emulation), and the levels of
//! the intervals a set of sentences quotes.

use super::super::format::level_text;
use crate::results::{
    Availability, BackendSummary, MetricSummary, RunSummary, Stack, NETWORK_STACK_KEY, PLATFORM_KEY,
};
use crate::stats::{Estimate, CONFIDENCE};
use crate::text::format_number;
use cvm_proto::metric::Metric;

pub(super) fn metric(b: &BackendSummary, m: Metric) -> Option<&MetricSummary> {
    b.metrics.get(m.name())
}

pub(super) fn ran(b: &BackendSummary) -> bool {
    matches!(b.info.availability, Availability::Available)
}

/// A bare ratio or share, at most three significant figures ("206", "84.3", "0.0472").
pub(super) fn num(v: f64) -> String {
    if v.is_finite() {
        format_number(v)
    } else {
        "∞".to_string()
    }
}

fn is_point(e: &Estimate) -> bool {
    e.lower == e.point && e.upper == e.point
}

/// Whether the interval holds `at` (0 for a difference, 1 for a ratio) with room either side:
/// the run cannot tell the figure from no difference at all.
pub(super) fn spans(e: &Estimate, at: f64) -> bool {
    !is_point(e) && e.lower <= at && at <= e.upper
}

/// "206× [85, 284]", or "206×" for a single value.
pub(super) fn factor(e: &Estimate) -> String {
    let r = crate::text::format_ratio;
    if is_point(e) {
        format!("{}×", r(e.point))
    } else {
        format!("{}× [{}, {}]", r(e.point), r(e.lower), r(e.upper))
    }
}

/// "98% [86, 114]", or "98%" for a single value.
pub(crate) fn percent(e: &Estimate) -> String {
    let p = |v: f64| num(v * 100.0);
    if is_point(e) {
        format!("{}%", p(e.point))
    } else {
        format!("{}% [{}, {}]", p(e.point), p(e.lower), p(e.upper))
    }
}

/// Whether the backend's figures come from TCG emulation.
pub(super) fn is_tcg(b: &BackendSummary) -> bool {
    b.info.stack == Stack::Vm
        && b.info
            .accelerator()
            .is_some_and(|a| a.trim().to_ascii_lowercase().starts_with("tcg"))
}

/// The backend's name, with what its figures depend on where that is not obvious: a sandbox's
/// platform and network stack ("gvisor (ptrace platform, runsc --network=host)").
pub(super) fn label(b: &BackendSummary) -> String {
    let name = b.info.backend.clone();
    if b.info.stack == Stack::Vm {
        return name;
    }
    let Some(platform) = b.info.config.get(PLATFORM_KEY) else {
        return name;
    };
    let mut parts = vec![format!("{platform} platform")];
    if let Some(net) = b.info.config.get(NETWORK_STACK_KEY) {
        // "host sockets in ... (runsc --network=host)": the flag alone says it shortest.
        let short = net
            .rsplit_once('(')
            .and_then(|(_, f)| f.strip_suffix(')'))
            .unwrap_or(net);
        parts.push(short.to_string());
    }
    format!("{name} ({})", parts.join(", "))
}

/// What the emulation changes about the figures a sentence quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Emulated {
    /// Times and throughput: far slower than under KVM.
    Speed,
    /// Memory: QEMU holds TCG's translation cache, which KVM does not need.
    Memory,
}

/// The emulation caveat for a sentence that quotes figures of these backends, or nothing when
/// none of them was emulated: it stands in the same sentence as the figure it qualifies. "The
/// VMs" when every VM the sentence quotes was emulated and there are several.
pub(super) fn tcg_clause<'a>(
    backends: impl IntoIterator<Item = &'a BackendSummary>,
    what: Emulated,
) -> String {
    let quoted: Vec<&BackendSummary> = backends.into_iter().collect();
    let tcg: Vec<&str> = quoted
        .iter()
        .filter(|b| is_tcg(b))
        .map(|b| b.info.backend.as_str())
        .collect();
    let vms = quoted.iter().filter(|b| b.info.stack == Stack::Vm).count();
    let who = match tcg.as_slice() {
        [] => return String::new(),
        [one] => one.to_string(),
        many if many.len() == vms => "the VMs".to_string(),
        many => many.join(", "),
    };
    let whose = if tcg.len() == 1 { "its" } else { "their" };
    match what {
        Emulated::Speed => format!("; {who} ran under TCG emulation, far slower than under KVM"),
        Emulated::Memory => format!(
            "; {who} ran under TCG emulation, and {whose} QEMU holds a translation cache KVM \
             does not need"
        ),
    }
}

/// Several VMs' figures as one range ("the VMs 127 MiB–253 MiB"), the rest as they are: a
/// headline names each container but not each of four VMs.
pub(super) fn vms_as_range(
    items: Vec<(&BackendSummary, String, f64)>,
    show: impl Fn(f64) -> String,
) -> Vec<String> {
    let vms: Vec<f64> = items
        .iter()
        .filter(|(b, _, _)| b.info.stack == Stack::Vm)
        .map(|(_, _, v)| *v)
        .collect();
    if vms.len() < 2 {
        return items.into_iter().map(|(_, text, _)| text).collect();
    }
    let lowest = vms.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = vms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut out: Vec<String> = items
        .into_iter()
        .filter(|(b, _, _)| b.info.stack != Stack::Vm)
        .map(|(_, text, _)| text)
        .collect();
    out.push(format!("the VMs {}–{}", show(lowest), show(highest)));
    out
}

/// The levels of the intervals the sentences quote, for one closing sentence.
#[derive(Debug, Default)]
pub(super) struct Quoted(Vec<f64>);

impl Quoted {
    pub(super) fn note(&mut self, e: &Estimate) {
        if e.level > 0.0 && !is_point(e) {
            self.0.push(e.level);
        }
    }

    /// "Intervals in brackets are 96.8 % intervals, not 95 %: ..." when they are not all
    /// [`CONFIDENCE`].
    pub(super) fn sentence(&self, s: &RunSummary) -> Option<String> {
        let levels = &self.0;
        let lowest = levels.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = levels.iter().copied().fold(0.0, f64::max);
        if levels.is_empty() || levels.iter().all(|l| (l - CONFIDENCE).abs() < 1e-9) {
            return None;
        }
        let which = if (highest - lowest).abs() < 1e-9 {
            format!("are {} intervals", level_text(lowest))
        } else {
            format!(
                "have levels from {} to {}",
                level_text(lowest),
                level_text(highest)
            )
        };
        Some(format!(
            "Intervals in brackets {which}, not 95 %: with {} measured runs per backend those \
             are the levels their exact, order-statistic methods have (from 10 runs a side the \
             bootstrap gives 95 %).",
            s.runs
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stack::tests_support::backend;

    fn e(point: f64, lower: f64, upper: f64) -> Estimate {
        Estimate {
            point,
            lower,
            upper,
            level: 0.968,
        }
    }

    #[test]
    fn ratios_carry_at_most_three_significant_figures() {
        assert_eq!(factor(&e(205.8, 84.8, 284.2)), "206× [84.8, 284]");
        assert_eq!(factor(&e(6.61, 6.61, 6.61)), "6.61×");
        assert_eq!(factor(&e(1609.4, 1206.0, 1735.2)), "1610× [1210, 1740]");
        assert_eq!(percent(&e(0.0472, 0.04, 0.05)), "4.72% [4, 5]");
        assert_eq!(num(f64::INFINITY), "∞");
    }

    #[test]
    fn an_interval_holding_no_difference_spans_it() {
        assert!(spans(&e(48.0, -4.0, 156.0), 0.0));
        assert!(!spans(&e(12.0, 11.9, 12.1), 0.0));
        assert!(spans(&e(0.98, 0.86, 1.14), 1.0));
        // A single value claims no interval, so it cannot span anything.
        assert!(!spans(&e(0.0, 0.0, 0.0), 0.0));
    }

    #[test]
    fn a_sandbox_is_named_with_its_platform_and_network() {
        let mut g = backend("gvisor", Stack::Container, &[]);
        g.info.config.insert(PLATFORM_KEY.into(), "ptrace".into());
        g.info.config.insert(
            NETWORK_STACK_KEY.into(),
            "host sockets in the instance's own network namespace (runsc --network=host)".into(),
        );
        assert_eq!(label(&g), "gvisor (ptrace platform, runsc --network=host)");
        assert_eq!(label(&backend("runc", Stack::Container, &[])), "runc");
        let vm = backend("vm", Stack::Vm, &[]);
        assert!(tcg_clause([&vm], Emulated::Speed).contains("; vm ran under TCG emulation"));
        let other = backend("vm-user", Stack::Vm, &[]);
        assert!(tcg_clause([&vm, &other, &g], Emulated::Memory)
            .starts_with("; the VMs ran under TCG emulation, and their QEMU holds"));
        assert_eq!(tcg_clause([&g], Emulated::Speed), "");
        let items = vec![
            (&g, "gvisor 28.9 MiB".to_string(), 28.9),
            (&vm, "vm 251".to_string(), 251.0),
            (&other, "vm-user 127".to_string(), 127.0),
        ];
        assert_eq!(
            vms_as_range(items, |v| format!("{v} MiB")),
            ["gvisor 28.9 MiB", "the VMs 127 MiB–251 MiB"]
        );
    }
}
