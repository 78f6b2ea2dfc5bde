//! The answer first: a few sentences that open every report (HTML, terminal, Markdown), computed
//! from the summary alone, in hyperfine's "X ran N times faster than Y" style.
//!
//! - **Startup**: for each container or sandbox backend, how many times sooner it was ready than
//!   each VM (`ready_latency` medians), with the two-sample interval of the ratio the summary
//!   took from both backends' samples (`RunSummary::pair_ratios`).
//! - **Layers**: what each backend's isolation layers cost per instance in memory (over native,
//!   with its interval) and on disk, from the same figures the stack diagram draws.
//! - **Throughput**: the share of native's throughput each backend kept (`ratio_to_native` of
//!   `http_rps`, `cpu_score`, and the bandwidths), with the bootstrap interval of the ratio.
//! - **Emulation**: which backends' figures come from TCG.
//!
//! Every interval in brackets has the level its method has (an exact one with few runs is not
//! 95 %); a closing sentence gives the levels whenever they are not all 95 %.

use super::format::{format_value, level_text};
use super::stack::{columns, Group, Layer, LayerBox};
use crate::results::{BackendSummary, MetricSummary, RunSummary, Stack};
use crate::stats::{Estimate, CONFIDENCE};
use cvm_proto::metric::Metric;

/// Throughput metrics, higher is better, compared with native.
const THROUGHPUT: [Metric; 4] = [
    Metric::HttpRps,
    Metric::CpuScore,
    Metric::MemBandwidthTriad,
    Metric::IoWriteBandwidth,
];

fn metric(b: &BackendSummary, m: Metric) -> Option<&MetricSummary> {
    b.metrics.get(m.name())
}

/// The summary's ratio of `numerator`'s `ready_latency` median over `denominator`'s.
fn startup_ratio<'a>(
    s: &'a RunSummary,
    numerator: &str,
    denominator: &str,
) -> Option<&'a Estimate> {
    s.pair_ratios
        .iter()
        .find(|p| {
            p.metric == Metric::ReadyLatency.name()
                && p.numerator == numerator
                && p.denominator == denominator
        })
        .map(|p| &p.ratio)
}

/// The closing sentence on the levels of the intervals in brackets, when they are not all
/// [`CONFIDENCE`].
fn levels_sentence(levels: &[f64], runs: u32) -> Option<String> {
    let lowest = levels.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = levels.iter().copied().fold(0.0, f64::max);
    let all_confidence = levels.iter().all(|l| (l - CONFIDENCE).abs() < 1e-9);
    if levels.is_empty() || all_confidence {
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
        "Intervals in brackets {which}, not 95 %: with {runs} measured runs per backend those \
         are the levels their exact, order-statistic methods have (from 10 runs a side the \
         bootstrap gives 95 %)."
    ))
}

fn factor(e: &Estimate) -> String {
    let n = |v: f64| {
        if v.is_finite() {
            format!("{v:.1}")
        } else {
            "∞".to_string()
        }
    };
    if e.lower == e.point && e.upper == e.point {
        format!("{}×", n(e.point))
    } else {
        format!("{}× [{}, {}]", n(e.point), n(e.lower), n(e.upper))
    }
}

fn percent(e: &Estimate) -> String {
    if e.lower == e.point && e.upper == e.point {
        format!("{:.0}%", e.point * 100.0)
    } else {
        format!(
            "{:.0}% [{:.0}, {:.0}]",
            e.point * 100.0,
            e.lower * 100.0,
            e.upper * 100.0
        )
    }
}

fn ran(b: &BackendSummary) -> bool {
    matches!(b.info.availability, crate::results::Availability::Available)
}

/// A VM's isolation layers' memory as the stack diagram draws it (its boxes add up to the
/// column's PSS), with the parts that explain it; `None` where the run has no such split (a
/// container, an older VM run: then `memory_overhead` is the figure).
fn vm_memory_drawn(isolating: &[&LayerBox]) -> Option<String> {
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
    Some(format!(
        "{} of memory per instance over native ({})",
        format_value(total, "B"),
        parts.join("; ")
    ))
}

/// The findings, each a sentence of plain text (callers escape it for their format).
pub fn findings(s: &RunSummary) -> Vec<String> {
    let mut out = Vec::new();
    let mut levels: Vec<f64> = Vec::new();
    let mut note_level = |e: &Estimate| {
        if e.level > 0.0 {
            levels.push(e.level);
        }
    };
    let group = |b: &BackendSummary| Group::of(&b.info);
    let vms: Vec<&BackendSummary> = s
        .backends
        .iter()
        .filter(|b| ran(b) && group(b) == Group::Vms)
        .filter(|b| metric(b, Metric::ReadyLatency).is_some())
        .collect();

    // Startup: containers and sandboxes against each VM.
    for c in s
        .backends
        .iter()
        .filter(|b| ran(b) && matches!(group(b), Group::Containers | Group::Sandbox))
    {
        let Some(cr) = metric(c, Metric::ReadyLatency) else {
            continue;
        };
        let pairs: Vec<String> = vms
            .iter()
            .filter_map(|v| {
                let vr = metric(v, Metric::ReadyLatency)?;
                let r = startup_ratio(s, &v.info.backend, &c.info.backend)?;
                note_level(r);
                Some(format!(
                    "{} faster than {} ({})",
                    factor(r),
                    v.info.backend,
                    format_value(vr.stats.median, "s")
                ))
            })
            .collect();
        if !pairs.is_empty() {
            out.push(format!(
                "{} was ready in {}: {}.",
                c.info.backend,
                format_value(cr.stats.median, "s"),
                pairs.join(", ")
            ));
        }
    }

    // A backend that ran but was never ready has no startup figure: say so, not nothing.
    let never_ready: Vec<String> = s
        .backends
        .iter()
        .filter(|b| ran(b) && b.failed_runs > 0 && metric(b, Metric::ReadyLatency).is_none())
        .map(|b| format!("{} ({} failed)", b.info.backend, b.failed_runs))
        .collect();
    if !never_ready.is_empty() {
        out.push(format!(
            "No startup figure for {}: every measured run failed, so no startup comparison is \
             made with {}.",
            never_ready.join(", "),
            if never_ready.len() == 1 { "it" } else { "them" }
        ));
    }

    // What each backend's isolation layers cost, from the stack diagram's own figures.
    for col in columns(s).iter().filter(|c| c.group != Group::Native) {
        let Some(b) = s.backend(&col.backend) else {
            continue;
        };
        let isolating: Vec<_> = col
            .boxes
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
            .collect();
        let mut parts = Vec::new();
        if let Some(vm) = vm_memory_drawn(&isolating) {
            parts.push(vm);
        } else if let Some(o) = metric(b, Metric::MemoryOverhead) {
            note_level(&o.stats.median_ci);
            let ci = &o.stats.median_ci;
            let interval = if ci.lower == ci.upper {
                String::new()
            } else {
                format!(
                    " [{}, {}]",
                    format_value(ci.lower, "B"),
                    format_value(ci.upper, "B")
                )
            };
            parts.push(format!(
                "{}{interval} of memory per instance over native",
                format_value(o.stats.median, "B")
            ));
        }
        if let Some(d) = metric(b, Metric::MemoryDaemon) {
            parts.push(format!(
                "{} in daemons shared by every instance on the host",
                format_value(d.stats.median, "B")
            ));
        }
        let disk: Vec<String> = isolating
            .iter()
            .filter_map(|x| {
                let name = match x.layer {
                    Layer::Runtime => "runtime",
                    Layer::Sentry => "Sentry",
                    Layer::GuestOs => "guest OS",
                    _ => "hypervisor",
                };
                x.disk.map(|d| format!("{name} {}", format_value(d, "B")))
            })
            .collect();
        if !disk.is_empty() {
            parts.push(format!("{} on disk", disk.join(", ")));
        }
        if !parts.is_empty() {
            out.push(format!(
                "{}'s isolation layers cost {}.",
                col.backend,
                parts.join("; ")
            ));
        }
    }

    // Throughput kept relative to native.
    for m in THROUGHPUT {
        let kept: Vec<String> = s
            .backends
            .iter()
            .filter(|b| ran(b) && b.info.stack != Stack::Native)
            .filter_map(|b| {
                let r = metric(b, m)?.ratio_to_native.as_ref()?;
                note_level(r);
                Some(format!("{} {}", b.info.backend, percent(r)))
            })
            .collect();
        let native = s
            .backends
            .iter()
            .find(|b| b.info.stack == Stack::Native)
            .and_then(|b| metric(b, m));
        if let (false, Some(n)) = (kept.is_empty(), native) {
            out.push(format!(
                "Of native's {} {}, each kept: {}.",
                m.name(),
                format_value(n.stats.median, &n.unit),
                kept.join(", ")
            ));
        }
    }

    let tcg = tcg_backends(s);
    if !tcg.is_empty() {
        out.push(format!(
            "Emulated: {} ran under TCG (QEMU translating every guest instruction), so {} \
             startup and throughput are far slower than under KVM{}.",
            tcg.join(", "),
            if tcg.len() == 1 { "its" } else { "their" },
            if tcg.len() == 1 {
                ""
            } else {
                "; compare them with each other"
            }
        ));
    }
    out.extend(levels_sentence(&levels, s.runs));
    out
}

/// VM backends whose configuration says they ran under TCG emulation, with their accelerator.
pub fn tcg_backends(s: &RunSummary) -> Vec<String> {
    s.backends
        .iter()
        .filter(|b| b.info.stack == Stack::Vm)
        .filter(|b| {
            b.info
                .accelerator()
                .is_some_and(|a| a.trim().to_ascii_lowercase().starts_with("tcg"))
        })
        .map(|b| b.info.backend.clone())
        .collect()
}

/// Where the guest's clock disagrees with the host's stamps of the same interval by more than
/// 2 % (median `guest_clock_error`, over at least 0.5 s), the host-stamped duration is the one
/// to read, and why.
pub fn clock_note(b: &BackendSummary) -> Option<String> {
    let error = b.metrics.get(Metric::GuestClockError.name())?.stats.median;
    let host = b.metrics.get(Metric::CpuTimeHost.name())?.stats.median;
    // Over less than half a second the markers' own transport delay is not small against 2 %.
    (error.abs() > 0.02 && host >= 0.5).then(|| {
        format!(
            "its own clock is {:+.1}% off the host's over the timed work: read cpu_time_host \
             ({}), not cpu_time or cpu_score (a guest clock runs at the rate it was given, \
             and an emulated one drifts)",
            error * 100.0,
            format_value(host, "s")
        )
    })
}

/// The label of a backend whose load client was the bottleneck in some measured runs, so its
/// HTTP figures are not presented as the server's capacity. `None` when no run was client-bound.
pub fn client_bound_note(b: &BackendSummary) -> Option<String> {
    use cvm_proto::metric::{Metric, CLIENT_BOUND_SHARE};
    if b.client_bound_runs == 0 {
        return None;
    }
    let m = b.metrics.get(Metric::LoadClientCpu.name())?;
    Some(format!(
        "client-bound in {} of {} measured runs (the load client used more than {:.0} % of its \
         CPUs; median {:.0} %): its HTTP figures may be the load client's limit, not the server's",
        b.client_bound_runs,
        m.stats.n,
        100.0 * CLIENT_BOUND_SHARE,
        100.0 * m.stats.median
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stack::tests_support::{backend, summary};

    fn pair(numerator: &str, denominator: &str, ratio: Estimate) -> crate::results::PairRatio {
        crate::results::PairRatio {
            metric: "ready_latency".into(),
            numerator: numerator.into(),
            denominator: denominator.into(),
            ratio,
        }
    }

    #[test]
    fn sentences_carry_the_summarys_numbers() {
        let native = backend(
            "native",
            Stack::Native,
            &[("ready_latency", "s", 0.002), ("http_rps", "1/s", 20_000.0)],
        );
        let mut container = backend(
            "container",
            Stack::Container,
            &[
                ("ready_latency", "s", 0.004),
                ("memory_overhead", "B", 1_048_576.0),
                ("disk.runtime", "B", 10.0 * 1_048_576.0),
                ("http_rps", "1/s", 18_000.0),
            ],
        );
        container
            .metrics
            .get_mut("http_rps")
            .unwrap()
            .ratio_to_native = Some(Estimate {
            point: 0.9,
            lower: 0.85,
            upper: 0.95,
            level: 0.95,
        });
        let vm = backend(
            "vm",
            Stack::Vm,
            &[
                ("ready_latency", "s", 2.0),
                ("disk.guest_os", "B", 64.0 * 1_048_576.0),
                ("disk.hypervisor", "B", 32.0 * 1_048_576.0),
            ],
        );
        let mut s = summary(vec![native, container, vm]);
        // The summary's two-sample ratio, as 3 runs a side give it: 90 %.
        s.pair_ratios.push(pair(
            "vm",
            "container",
            Estimate {
                point: 500.0,
                lower: 200.0,
                upper: 1200.0,
                level: 0.9,
            },
        ));
        let f = findings(&s);
        assert_eq!(
            f[0],
            "container was ready in 4 ms: 500.0× [200.0, 1200.0] faster than vm (2 s)."
        );
        assert_eq!(
            f[1],
            "container's isolation layers cost 1 MiB of memory per instance over native; \
             runtime 10 MiB on disk."
        );
        assert_eq!(
            f[2],
            "vm's isolation layers cost guest OS 64 MiB, hypervisor 32 MiB on disk."
        );
        assert_eq!(
            f[3],
            "Of native's http_rps 20 k/s, each kept: container 90% [85, 95]."
        );
        assert!(f[4].starts_with("Emulated: vm ran under TCG"), "{}", f[4]);
        // Every output opens with them, before its tables.
        let table = crate::report::terminal::table(&s);
        let md = crate::report::markdown::summary(&s);
        for out in [&table, &md] {
            let at = out.find(&f[0]).expect("findings missing");
            assert!(at < out.find("| backend").or(out.find("backend ")).unwrap());
        }
        assert_eq!(
            f[5],
            "Intervals in brackets have levels from 90 % to 95 %, not 95 %: with 1 measured runs \
             per backend those are the levels their exact, order-statistic methods have (from 10 \
             runs a side the bootstrap gives 95 %)."
        );
        // No ratio in the summary (a VM without the container's runs): no factor claimed.
        s.pair_ratios.clear();
        assert!(findings(&s).iter().all(|f| !f.contains("faster than")));
        // All at 95 %: nothing to say about levels.
        assert_eq!(levels_sentence(&[0.95, 0.95], 20), None);
        assert!(levels_sentence(&[0.9375], 5)
            .unwrap()
            .contains("are 93.8 % intervals"));
    }

    #[test]
    fn a_backend_whose_runs_all_failed_is_named() {
        let mut vm = backend("vm", Stack::Vm, &[("disk.guest_os", "B", 1e6)]);
        vm.failed_runs = 2;
        let f = findings(&summary(vec![
            backend("runc", Stack::Container, &[("ready_latency", "s", 0.02)]),
            vm,
        ]));
        assert!(
            f[0].starts_with("No startup figure for vm (2 failed): every measured run failed"),
            "{f:?}"
        );
    }

    #[test]
    fn a_container_with_no_vm_to_compare_gets_no_startup_sentence() {
        let s = summary(vec![backend(
            "runc",
            Stack::Container,
            &[("ready_latency", "s", 0.02)],
        )]);
        assert!(findings(&s).iter().all(|f| !f.contains("faster than")));
    }
    /// A VM is charged what its diagram draws for its isolation layers: its boxes less the
    /// app, so the sentence and the column heading (its PSS) agree.
    #[test]
    fn a_vm_is_charged_what_its_diagram_draws() {
        let native = backend("native", Stack::Native, &[("memory_pss", "B", 2e6)]);
        let vm = backend(
            "vm",
            Stack::Vm,
            &[
                ("memory_pss", "B", 250.0 * 1_048_576.0),
                ("memory_overhead", "B", 248.0 * 1_048_576.0),
                ("memory_vmm", "B", 150.0 * 1_048_576.0),
                ("memory_vmm_base", "B", 40.0 * 1_048_576.0),
                ("memory_vmm_tcg", "B", 45.0 * 1_048_576.0),
                ("memory_vmm_boot", "B", 65.0 * 1_048_576.0),
                ("memory_guest_ram", "B", 100.0 * 1_048_576.0),
                ("memory_guest_used", "B", 34.0 * 1_048_576.0),
            ],
        );
        let s = summary(vec![native, vm]);
        let f = findings(&s);
        let line = f.iter().find(|l| l.starts_with("vm's")).unwrap();
        // 250 MiB of PSS less the 2 MiB app: the QEMU, guest OS and free-RAM boxes.
        assert!(
            line.contains("248 MiB of memory per instance over native"),
            "{line}"
        );
        assert!(line.contains("QEMU 150 MiB, of it 45 MiB TCG's"), "{line}");
        assert!(line.contains("the guest's own use 32 MiB"), "{line}");
        assert!(
            line.contains("guest RAM it touched and holds free 66 MiB"),
            "{line}"
        );
    }
}
