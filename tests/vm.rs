//! The VM backends on a real QEMU: one boot to ready with every phase, a guest that never gets
//! ready (the run fails at the timeout with a clear error and leaves nothing behind), and
//! SIGINT during a run. Each boot costs seconds under TCG, so there are only three.
//!
//! They need QEMU, a guest kernel under /boot and the built cvm-guest; without them they skip,
//! or fail under `CVM_REQUIRE_HOST=1`. `--accel tcg` skips the KVM probe (its cost is paid once
//! per host by `cvm doctor` or the first compare, not by tests).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn vm_host() -> bool {
    let kernel = std::fs::read_dir("/boot").ok().is_some_and(|d| {
        d.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("vmlinuz-")
                && std::fs::File::open(e.path()).is_ok()
        })
    });
    host_has(
        which("qemu-system-x86_64"),
        "qemu-system-x86_64 (apt-get install qemu-system-x86)",
    ) && host_has(
        kernel,
        "a readable /boot/vmlinuz-* (apt-get install linux-image-amd64)",
    ) && host_has(which("mkfs.ext4"), "mkfs.ext4 (e2fsprogs)")
}

/// A private temp dir as the cvm process's TMPDIR: whatever a VM instance leaves in it is a leak.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn tmp(&self) -> PathBuf {
        let p = self.dir.path().join("tmp");
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    fn scenario(&self, workload: &str, timeout_s: u32) -> PathBuf {
        let p = self.dir.path().join("scenario.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"vmtest\"\ndescription = \"vm test\"\nruns = 1\nwarmup = 0\n\
                 timeout_s = {timeout_s}\nbackends = [\"vm\"]\n\n[workload]\n{workload}\n\n\
                 [resources]\nvcpus = 1\nmemory_mib = 128\n"
            ),
        )
        .unwrap();
        p
    }
    fn compare(&self, scenario: &Path, extra: &[&str]) -> Command {
        let mut c = cvm_cmd();
        c.env("TMPDIR", self.tmp())
            .args(["compare", "--scenario"])
            .arg(scenario)
            .args([
                "--backends",
                "vm",
                "--accel",
                "tcg",
                "--no-progress",
                "--output",
            ])
            .arg(self.dir.path().join("out"))
            .args(extra);
        c
    }
    /// Nothing of the instance survives: no QEMU whose QMP socket is in this test's TMPDIR, nothing in the
    /// private TMPDIR (QMP socket, data disk, instance directory).
    fn assert_nothing_left(&self) {
        let qemus: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.starts_with("qemu-system") || c.contains("/qemu-system"))
            // Its QMP socket lives in this test's TMPDIR; tests running beside it have their own.
            .filter(|c| c.contains(&*self.tmp().to_string_lossy()))
            .collect();
        assert!(qemus.is_empty(), "QEMU left running: {qemus:?}");
        let left: Vec<_> = std::fs::read_dir(self.tmp())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }
}

#[test]
fn vm_boots_to_ready_with_every_phase_labelled_with_its_accelerator() {
    if !vm_host() {
        return;
    }
    let s = Scratch::new();
    let scenario = s.scenario("applet = \"hello\"", 120);
    let out = s.compare(&scenario, &[]).output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let csv = std::fs::read_to_string(s.dir.path().join("out/samples.csv")).unwrap();
    for metric in [
        "ready_latency",
        "phase.vmm_start",
        "phase.firmware",
        "phase.kernel",
        "phase.guest_init",
        "phase.workload_start",
    ] {
        assert!(
            csv.lines()
                .any(|l| l.contains(&format!(",{metric},")) && l.contains(",tcg,")),
            "no {metric} sample labelled tcg in:\n{csv}"
        );
    }
    assert!(
        csv.contains("machine=microvm"),
        "config recorded with samples"
    );
    // Which kernel, recorded with every sample: its profile and its configuration's hash.
    let profile = match std::env::var("CVM_KERNEL").as_deref() {
        Ok("minimal") => "minimal",
        Ok("distro") | Err(_) => "distro",
        Ok(_) => "path",
    };
    assert!(
        csv.lines()
            .filter(|l| l.contains(",ready_latency,"))
            .all(|l| l.contains(&format!("kernel_profile={profile}"))
                && l.contains("kernel_config_hash=")),
        "kernel profile {profile} not recorded with every sample:\n{csv}"
    );
    s.assert_nothing_left();
}

#[test]
fn a_guest_that_never_gets_ready_fails_at_the_timeout_and_leaves_nothing() {
    if !vm_host() {
        return;
    }
    let s = Scratch::new();
    // Long enough for a TCG boot to reach the workload (about 3 s here), short for a test.
    let scenario = s.scenario("applet = \"never-ready\"", 20);
    let start = Instant::now();
    let out = s.compare(&scenario, &[]).output().unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("did not become ready within 20.0 s")
            && err.contains("last phase reached: guest_init"),
        "unclear error: {err}"
    );
    assert!(
        took >= Duration::from_secs(20),
        "failed before the timeout: {took:?}"
    );
    s.assert_nothing_left();
}

#[test]
fn sigint_during_a_vm_run_tears_it_down() {
    if !vm_host() {
        return;
    }
    let s = Scratch::new();
    let scenario = s.scenario("applet = \"idle\"", 120);
    let mut child = s.compare(&scenario, &[]).spawn().unwrap();
    // Wait until the instance exists (its directory appears), then give QEMU a moment to run.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(s.tmp()).unwrap().next().is_none() {
        assert!(Instant::now() < deadline, "no VM instance appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix_pid(child.id());
    // SIGINT to cvm only (QEMU runs in its own process group), as a Ctrl-C would be delivered.
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted runs exit 130");
    s.assert_nothing_left();
}

fn nix_pid(pid: u32) -> String {
    pid.to_string()
}
