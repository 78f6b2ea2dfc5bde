//! Bring your own workload: a dynamically linked program from a Debian package (coreutils'
//! `seq`, which needs libc and the dynamic loader) copied into the image with its libraries,
//! run on native, in cvm's container and in a VM guest.

mod common;

use common::{cvm_cmd, host_has, is_root, stderr, which};

#[test]
fn a_dynamically_linked_host_binary_runs_on_native_container_and_vm() {
    if !host_has(
        is_root() && which("qemu-system-x86_64"),
        "needs root and QEMU",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("byo.toml");
    // `seq` must really run: its output is checked by the shell before the ready marker.
    std::fs::write(
        &scenario,
        r#"name = "byo"
runs = 1
warmup = 0
timeout_s = 120
[workload]
command = ["/bin/sh", "-c", "test \"$(/usr/bin/seq -s+ 1 4)\" = 1+2+3+4 && echo CVM:ready >&3"]
exits = true
[image]
host_binaries = ["/usr/bin/seq"]
"#,
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = cvm_cmd()
        .args([
            "compare",
            "--no-progress",
            "--backends",
            "native,container,vm",
            "--scenario",
        ])
        .arg(&scenario)
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = cvm::results::read_samples(&out_dir.join("samples.csv")).unwrap();
    for backend in ["native", "container", common::vm_label()] {
        assert!(
            rows.iter()
                .any(|r| r.backend == backend && r.metric == "ready_latency"),
            "{backend} did not run the bring-your-own workload:\n{}",
            stderr(&out)
        );
    }
    assert!(!rows.iter().any(|r| r.metric == "run_failed"));
    // The image's libraries layer holds libc and the loader: counted on every backend, the
    // VM's (packed in its initramfs) the same bytes as the others'.
    let libs: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.metric == "disk.libs")
        .map(|r| (r.backend.clone(), r.value))
        .collect();
    assert_eq!(libs.len(), 3, "{libs:?}");
    assert!(
        libs.iter().all(|(_, b)| *b > 3.0 * 1024.0 * 1024.0),
        "{libs:?}"
    );
    assert!(libs.iter().all(|(_, b)| *b == libs[0].1), "{libs:?}");
}
