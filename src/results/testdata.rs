//! Made-up runs for the unit tests of every module that reads results (diff, bounds, merge,
//! the exports): a run's metadata and a backend's samples of one metric.

use super::{Availability, BackendInfo, Environment, Phase, RunMeta, SampleRow, Stack};

/// A run's metadata, from JSON so fields other branches add with serde defaults need no change
/// here.
pub(crate) fn meta(scenario: &str, host: &str, backends: &[&str]) -> RunMeta {
    let mut m: RunMeta = serde_json::from_value(serde_json::json!({
        "schema_version": super::SCHEMA_VERSION,
        "run_id": format!("{host}-run"),
        "started": "",
        "status": "done",
        "scenario": { "name": scenario, "description": "", "definition": null },
        "runs": 5,
        "warmup": 0,
        "timeout_s": 1.0,
        "environment": serde_json::to_value(Environment::default()).unwrap(),
        "backends": [],
    }))
    .unwrap();
    m.environment.host = host.into();
    m.backends = backends
        .iter()
        .map(|b| BackendInfo {
            backend: b.to_string(),
            stack: Stack::Container,
            availability: Availability::Available,
            error: None,
            config: Default::default(),
        })
        .collect();
    m
}

pub(crate) fn rows(backend: &str, metric: &str, unit: &str, values: &[f64]) -> Vec<SampleRow> {
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| SampleRow {
            run_id: "r".into(),
            scenario: "startup".into(),
            backend: backend.into(),
            iteration: i as u32,
            phase: Phase::Measure,
            metric: metric.into(),
            value,
            unit: unit.into(),
            host: String::new(),
            kernel: String::new(),
            cpu_model: String::new(),
            ncpu: 1,
            mem_total: 0,
            accel: String::new(),
            qemu_version: String::new(),
            cvm_version: String::new(),
            git_sha: String::new(),
            config: String::new(),
            note: String::new(),
        })
        .collect()
}

/// A `web` run shaped like the published sample: native, three containers, gVisor (ptrace,
/// host network), Docker with its daemons, four TCG VMs and an unavailable crun, five measured
/// runs each of every metric `web` records. Native's and the container's load client was the
/// limit in every run, and the container's memory over native cannot be told from zero.
pub(crate) fn web_run() -> (RunMeta, Vec<SampleRow>) {
    const MIB: f64 = 1_048_576.0;
    let names = [
        "native",
        "container",
        "runc",
        "crun",
        "gvisor",
        "docker",
        "vm",
        "vm-user",
        "vm-minimal",
        "vm-classic",
    ];
    let mut m = meta("web", "vm", &names);
    for b in &mut m.backends {
        match b.backend.as_str() {
            "native" => b.stack = Stack::Native,
            "crun" => {
                b.availability = Availability::Unavailable {
                    reason: "crun refused to run a container".into(),
                    hint: "see `crun --version`".into(),
                }
            }
            "gvisor" => {
                b.config.insert(super::PLATFORM_KEY.into(), "ptrace".into());
                b.config.insert(
                    super::NETWORK_STACK_KEY.into(),
                    "host sockets in the instance's own network namespace \
                     (runsc --network=host)"
                        .into(),
                );
            }
            name if name.starts_with("vm") => {
                b.stack = Stack::Vm;
                b.config.insert(super::ACCEL_KEY.into(), "tcg".into());
            }
            _ => {}
        }
    }
    // (backend, ready s, pss MiB, isolation disk, http_rps, load client's CPU share)
    let figures: [(&str, f64, f64, f64, f64, f64); 9] = [
        ("native", 0.0138, 1.61, 0.0, 58_900.0, 0.97),
        ("container", 0.0167, 1.61, 16.4, 58_000.0, 0.96),
        ("runc", 0.0505, 1.65, 10.5, 58_100.0, 0.6),
        ("gvisor", 0.212, 30.5, 22.9, 10_800.0, 0.26),
        ("docker", 0.380, 13.6, 186.0, 50_000.0, 0.93),
        ("vm", 3.43, 255.0, 72.3, 2_780.0, 0.1),
        ("vm-user", 3.63, 255.0, 72.3, 1_710.0, 0.08),
        ("vm-minimal", 1.41, 129.0, 27.2, 3_290.0, 0.12),
        ("vm-classic", 9.85, 243.0, 17.4, 2_550.0, 0.1),
    ];
    let jitter = [1.0, 0.97, 1.04, 0.99, 1.02];
    let mut out = Vec::new();
    for (b, ready, pss, disk, rps, client) in figures {
        let five = |v: f64| jitter.map(|j| v * j);
        let mut add =
            |metric: &str, unit: &str, values: &[f64]| out.extend(rows(b, metric, unit, values));
        add("ready_latency", "s", &five(ready));
        add("teardown_latency", "s", &five(ready / 10.0));
        // The container's PSS interleaves native's: no difference the run can tell.
        let pss_values = if b == "container" {
            [1.60, 1.63, 1.59, 1.62, 1.61].map(|v| v * MIB)
        } else {
            five(pss * MIB)
        };
        add("memory_pss", "B", &pss_values);
        add("memory_pss_peak", "B", &five(pss * 1.05 * MIB));
        add("memory_cgroup", "B", &five(pss * 0.6 * MIB));
        add("disk.app", "B", &[7.26 * MIB]);
        add("disk_footprint", "B", &[(9.15 + disk) * MIB]);
        let layer = match b {
            "native" => None,
            "gvisor" => Some("disk.user_space_kernel"),
            v if v.starts_with("vm") => Some("disk.guest_os"),
            _ => Some("disk.runtime"),
        };
        if let Some(layer) = layer {
            add(layer, "B", &[disk * MIB]);
        }
        add("http_rps", "1/s", &five(rps));
        add("http_requests", "1", &five(rps * 3.0));
        add("http_errors", "1", &[0.0; 5]);
        for (p, at) in [("p50", 1.0), ("p90", 1.5), ("p99", 2.5), ("max", 80.0)] {
            add(&format!("http_latency_{p}"), "s", &five(at * 60e-6));
        }
        add("load_client_cpu", "1", &five(client).map(|v| v.min(0.99)));
        add("ready_probe_delay", "s", &five(ready / 30.0));
        add("phase.workload_start", "s", &five(ready / 5.0));
        if b == "docker" {
            add("memory_daemon", "B", &five(114.0 * MIB));
        }
        if b.starts_with("vm") {
            add("memory_vmm", "B", &five(pss * 0.6 * MIB));
            add("memory_guest_ram", "B", &five(100.0 * MIB));
            add("memory_guest_used", "B", &five(34.0 * MIB));
        }
    }
    for r in &mut out {
        r.scenario = "web".into();
    }
    (m, out)
}
