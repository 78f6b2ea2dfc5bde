//! The closing table: each namespace's cost and the rootfs setup's, from criterion's medians of
//! this run.

use std::path::{Path, PathBuf};

use crate::namespaces::NAMESPACES;

/// criterion's output directory (where it keeps `<group>/<case>/new/estimates.json`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(Path::new(&target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .map(|a| a.join("criterion"))
        .find(|d| d.is_dir())
}

/// The median of the latest run of `group/case`, in seconds.
fn median(dir: &Path, group: &str, case: &str) -> Option<f64> {
    let path = dir.join(group).join(case).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64().map(|ns| ns / 1e9)
}

/// Prints each namespace's cost, as the time it adds to the same clone without namespaces
/// (`vfork`), and that as a multiple of a plain fork; and the rootfs setup's cost.
pub fn print(rootfs_pairs: Option<[f64; 3]>) {
    let Some(dir) = criterion_dir() else {
        return;
    };
    let ns = |case: &str| median(&dir, "namespaces", case);
    let (Some(fork), Some(vfork)) = (ns("fork"), ns("vfork")) else {
        return;
    };
    println!();
    println!("namespaces (medians; `added` is over the same clone without namespaces, `vfork`):");
    println!(
        "{:<8} {:>10} {:>11} {:>13}",
        "case", "median", "added", "added / fork"
    );
    println!(
        "{:<8} {:>7.1} us {:>11} {:>13}",
        "fork",
        fork * 1e6,
        "-",
        "1 fork"
    );
    println!(
        "{:<8} {:>7.1} us {:>11} {:>13}",
        "vfork",
        vfork * 1e6,
        "-",
        "-"
    );
    let all = NAMESPACES.iter().map(|(n, _)| *n).chain(["all"]);
    for case in all {
        if let Some(m) = ns(case) {
            let added = m - vfork;
            println!(
                "{case:<8} {:>7.1} us {:>8.1} us {:>12.2}x",
                m * 1e6,
                added * 1e6,
                added / fork
            );
        }
    }
    if let (Some(only), Some(full)) = (
        median(&dir, "rootfs", "unshare_only"),
        median(&dir, "rootfs", "mounts_pivot_detach"),
    ) {
        println!(
            "rootfs (criterion medians): unshare only {:.1} us, with mounts + pivot_root + \
             detach {:.1} us: difference {:.1} us",
            only * 1e6,
            full * 1e6,
            (full - only) * 1e6
        );
    }
    if let Some([only, full, delta]) = rootfs_pairs {
        println!(
            "rootfs (200 alternating pairs, medians): unshare only {:.1} us, full {:.1} us; \
             mounts + pivot_root + detach add {:.1} us ({:.2}x a fork)",
            only * 1e6,
            full * 1e6,
            delta * 1e6,
            delta / fork
        );
    }
}
