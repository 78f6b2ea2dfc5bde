//! The answer first: a few sentences that open every report (HTML, terminal, Markdown), computed
//! from the summary alone, in hyperfine's "X ran N times faster than Y" style.
//!
//! - **Time to ready** (`startup`): for each container or sandbox backend, how many times sooner
//!   it was ready than each VM, with the two-sample interval of the ratio.
//! - **Layers** (`layers`): what each backend's isolation layers cost per instance in memory
//!   (over native, with its interval) and on disk, from the same figures the stack diagram draws.
//! - **Throughput kept** (`throughput`): the share of native's throughput each backend kept.
//!
//! Every sentence claims no more than was measured (`words`): an interval that holds no
//! difference reads "no measurable difference"; a figure from TCG carries the emulation caveat
//! in its own sentence; a sandbox is named with its platform and network; a throughput share
//! measured while the load client was the limit says so. Every interval in brackets has the
//! level its method has (an exact one with few runs is not 95 %); a closing sentence gives the
//! levels whenever they are not all 95 %.
//!
//! [`findings`] is the full list (the HTML page, the Markdown export, `--verbose`); [`headlines`]
//! answers each question in one line (the terminal's default summary).

mod layers;
mod startup;
mod throughput;
mod words;
pub(crate) use words::percent;

use crate::results::{BackendSummary, RunSummary};
use crate::text::format_value;
use cvm_proto::metric::Metric;

/// The findings, each a sentence of plain text (callers escape it for their format).
pub fn findings(s: &RunSummary) -> Vec<String> {
    let mut q = words::Quoted::default();
    let mut out = startup::sentences(s, &mut q);
    out.extend(startup::never_ready(s));
    out.extend(layers::sentences(s, &mut q));
    out.extend(throughput::sentences(s, &mut q, false));
    out.extend(q.sentence(s));
    out
}

/// One line per question the run answers (time to ready, memory per instance, disk, throughput
/// kept), then the levels of the intervals they quote when those are not 95 %.
pub fn headlines(s: &RunSummary) -> Vec<String> {
    let mut q = words::Quoted::default();
    let mut out: Vec<String> = startup::headline(s, &mut q).into_iter().collect();
    out.extend(startup::never_ready(s));
    out.extend(layers::memory_headline(s, &mut q));
    out.extend(layers::disk_headline(s));
    out.extend(throughput::sentences(s, &mut q, true));
    // A headline that cannot tell a figure from native prints no interval for it.
    if out.iter().any(|l| l.contains('[')) {
        out.extend(q.sentence(s));
    }
    out
}

/// What a backend that ran rootless changed, in one sentence ("podman ran rootless: limits none:
/// …; network slirp4netns …"), or `None` for a backend that ran as it does as root. The figures
/// beside it are not those of its rootful run, and every renderer says so next to them.
pub fn rootless_note(b: &BackendSummary) -> Option<String> {
    b.info.config.get("rootless")?;
    let said: Vec<String> = ["limits", "network"]
        .iter()
        .filter_map(|k| Some(format!("{k} {}", b.info.config.get(*k)?)))
        .collect();
    Some(format!(
        "{} ran rootless: {}",
        b.info.backend,
        if said.is_empty() {
            "in a user namespace".to_string()
        } else {
            said.join("; ")
        }
    ))
}

/// Whether the backend is a VM whose configuration says it ran under TCG emulation.
pub fn is_tcg(b: &BackendSummary) -> bool {
    words::is_tcg(b)
}

/// VM backends whose configuration says they ran under TCG emulation.
pub fn tcg_backends(s: &RunSummary) -> Vec<String> {
    s.backends
        .iter()
        .filter(|b| is_tcg(b))
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
    use crate::results::Stack;
    use crate::stats::Estimate;

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
            "container was ready in 4 ms: 500× [200, 1200] faster than vm (2 s); vm ran under \
             TCG emulation, far slower than under KVM."
        );
        assert_eq!(
            f[1],
            "container's isolation layers: 1 MiB of memory per instance over native; runtime \
             10 MiB on disk."
        );
        assert!(
            f[2].starts_with("vm's isolation layers: guest OS 64 MiB, hypervisor 32 MiB on disk"),
            "{}",
            f[2]
        );
        assert_eq!(
            f[3],
            "Of native's http_rps 20 k/s, each kept: container 90% [85, 95]."
        );
        // Every output opens with them, before its tables.
        let table = crate::report::terminal::table(&s, crate::report::Detail::Full);
        let md = crate::report::markdown::summary(&s);
        for out in [&table, &md] {
            let at = out.find(&f[0]).expect("findings missing");
            assert!(at < out.find("| backend").or(out.find("backend ")).unwrap());
        }
        assert_eq!(
            f[4],
            "Intervals in brackets have levels from 90 % to 95 %, not 95 %: with 1 measured runs \
             per backend those are the levels their exact, order-statistic methods have (from 10 \
             runs a side the bootstrap gives 95 %)."
        );
        // No ratio in the summary (a VM without the container's runs): no factor claimed.
        s.pair_ratios.clear();
        assert!(findings(&s).iter().all(|f| !f.contains("faster than")));
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

    /// The findings claim no more than was measured: a share of a client-bound native says so,
    /// a memory difference whose interval holds zero is no measurable difference, an emulated
    /// figure carries its caveat and gVisor's its platform and network, in the same sentence.
    #[test]
    fn what_was_not_measured_is_not_claimed() {
        let (meta, mut rows) = crate::results::testdata::web_run();
        let s = crate::results::summarize(&meta, &rows);
        let throughput = |f: &[String]| {
            f.iter()
                .find(|l| l.starts_with("Of native's http_rps"))
                .cloned()
                .unwrap()
        };
        for f in [findings(&s), headlines(&s)] {
            let line = throughput(&f);
            assert!(
                line.contains("(client-bound in 5 of 5 runs: the load client, not native, was"),
                "{line}"
            );
            // Each backend's own client-bound runs stand beside its share, and only there.
            let share = |b: &str| {
                let at = line.find(&format!(" {b}")).unwrap() + 1;
                line[at..].split(')').next().unwrap().to_string()
            };
            assert!(!share("runc").contains("client-bound"), "{line}");
            assert!(
                line.contains("docker 84.9% [80.8, 89.2] (client-bound in 5 of 5 runs)"),
                "{line}"
            );
            assert!(
                line.contains("gvisor (ptrace platform, runsc --network=host) 18."),
                "{line}"
            );
            assert!(
                line.ends_with("the VMs ran under TCG emulation, far slower than under KVM."),
                "{line}"
            );
        }
        // The headline names the shares it cannot tell from 100 % together, each with its own
        // client-bound runs, and the VMs as one range.
        let headline = throughput(&headlines(&s));
        assert!(
            headline.contains(
                "no measurable difference for container (client-bound in 5 of 5 runs), runc;"
            ),
            "{headline}"
        );
        assert!(headline.contains("the VMs 2.9%–5.59%"), "{headline}");
        let layers = findings(&s);
        let container = layers
            .iter()
            .find(|l| l.starts_with("container's isolation layers"))
            .unwrap();
        assert!(
            container.contains("no measurable difference in memory per instance from native"),
            "{container}"
        );
        let memory = headlines(&s);
        let memory = memory
            .iter()
            .find(|l| l.starts_with("Memory per instance"))
            .unwrap();
        assert!(
            memory.contains("no measurable difference for container")
                && !memory.contains("container 1"),
            "{memory}"
        );
        // The same run with a load client that kept up: no client-bound claim for native.
        for r in rows.iter_mut().filter(|r| r.metric == "load_client_cpu") {
            r.value = 0.5;
        }
        let calm = crate::results::summarize(&meta, &rows);
        assert!(!throughput(&findings(&calm)).contains("client-bound"));
    }
}
