//! The short soak in CI: 24 mixed launches of `container`, `runc` and `vm` with injected faults
//! (every backend × fault pair once, then random draws from a fixed seed), through the same
//! driver as the long soak of `scripts/soak.sh` (examples/soak.rs). Nothing may leak, every
//! launch must end as its fault says, and this process's memory must not grow.
//!
//! Needs root, cgroups, runc, QEMU and a guest kernel; skips without them, or fails under
//! `CVM_REQUIRE_HOST=1`.

mod common;

#[path = "../examples/soak.rs"]
#[allow(dead_code)]
mod soak;

use std::sync::atomic::AtomicBool;

use common::{host_has, is_root, which};

#[test]
fn a_short_soak_with_injected_faults_leaks_nothing() {
    let kernel = std::fs::read_dir("/boot").ok().is_some_and(|d| {
        d.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("vmlinuz-")
                && std::fs::File::open(e.path()).is_ok()
        })
    });
    if !host_has(is_root(), "the soak needs root")
        || !host_has(which("runc"), "runc is not installed")
        || !host_has(
            which("qemu-system-x86_64"),
            "qemu-system-x86_64 is not installed",
        )
        || !host_has(kernel, "a readable /boot/vmlinuz-*")
        || !host_has(
            cvm::image::find_guest().is_ok(),
            "cvm-guest is not built (run a plain `cargo build` first)",
        )
    {
        return;
    }
    std::env::set_var("CVM_CACHE_DIR", common::cache_dir());
    let config = soak::Config {
        launches: 24,
        seed: 20_240_808,
        verbose: true,
        ..soak::Config::default()
    };
    let report = soak::run(&config, &AtomicBool::new(false))
        .unwrap_or_else(|e| panic!("the soak could not start: {e}"));
    eprintln!("{report}");
    assert_eq!(report.launches, 24);
    // Every fault kind was injected (the first launches cover every backend × fault pair).
    for fault in ["crash", "never-ready", "kill-workload", "kill-qemu"] {
        assert!(
            report.faults.get(fault).is_some_and(|n| *n > 0),
            "{fault} never injected"
        );
    }
    let problems = report.problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(report.completed, 24);
}
