//! `cvm doctor`: a preflight of this host, one line per check, each problem with its fix.

use std::path::Path;

use crate::backend::{self, cgroup, Availability, HostOptions};
use crate::exit;
use crate::image;
use crate::measure::host::tool_version;
use crate::scenario::BackendKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Missing,
}

pub struct Check {
    pub level: Level,
    pub what: String,
    pub detail: String,
    pub hint: Option<String>,
}

fn check(level: Level, what: &str, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check {
        level,
        what: what.into(),
        detail: detail.into(),
        hint: hint.map(String::from),
    }
}

/// Every check, in the order a user would fix them.
pub fn checks(opts: &HostOptions) -> Vec<Check> {
    use Level::*;
    let mut out = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    out.push(if root {
        check(Ok, "root", "running as root", None)
    } else {
        check(
            Warn,
            "root",
            "not root: no cgroup limits for native, no container or VM networking",
            Some("run cvm as root (sudo)"),
        )
    });
    out.push(match cgroup::detect() {
        Some(v) => check(Ok, "cgroups", v.as_str(), None),
        None => check(
            Missing,
            "cgroups",
            "not mounted under /sys/fs/cgroup",
            Some("mount cgroup2 on /sys/fs/cgroup"),
        ),
    });
    out.push(match image::find_guest() {
        Result::Ok(p) => check(Ok, "cvm-guest", p.display().to_string(), None),
        Err(e) => check(
            Missing,
            "cvm-guest",
            e.to_string(),
            Some("build it with `cargo build` (it is a workspace member)"),
        ),
    });
    out.push(match image::find_busybox() {
        Result::Ok(p) => check(Ok, "busybox", p.display().to_string(), None),
        Err(_) => check(
            Missing,
            "busybox",
            "no static busybox",
            Some("apt-get install busybox-static (or scripts/setup.sh)"),
        ),
    });
    out.push(match tool_version("qemu-system-x86_64", &["--version"]) {
        Some(v) => check(Ok, "QEMU", v, None),
        None => check(
            Missing,
            "QEMU",
            "qemu-system-x86_64 not found",
            Some("apt-get install qemu-system-x86 (or scripts/setup.sh)"),
        ),
    });
    out.push(match find_host_kernel() {
        Some(k) => check(Ok, "guest kernel", k, None),
        None => check(
            Missing,
            "guest kernel",
            "no readable /boot/vmlinuz-*",
            Some("apt-get install linux-image-amd64, or pass --kernel PATH"),
        ),
    });
    out.push(kvm_check(opts));
    for (tool, pkg) in [("runc", "runc"), ("crun", "crun")] {
        out.push(match tool_version(tool, &["--version"]) {
            Some(v) => check(Ok, tool, v, None),
            None => check(
                Missing,
                tool,
                format!("{tool} not found"),
                Some(&format!("apt-get install {pkg} (or scripts/setup.sh)")),
            ),
        });
    }
    for kind in BackendKind::ALL {
        let b = backend::create(kind, opts);
        out.push(match b.availability() {
            Availability::Available => check(Ok, &format!("backend {kind}"), "available", None),
            Availability::Unavailable { reason, hint } => check(
                Warn,
                &format!("backend {kind}"),
                format!("unavailable: {reason}"),
                Some(&hint),
            ),
        });
    }
    out
}

/// Whether VM figures will come from KVM: `/dev/kvm` existing is not enough (on a host that is
/// itself a guest of a paging-based nested hypervisor stock kernels hang under it), so this asks
/// the VM backends' probe, which boots a guest under KVM with a timeout (cached on disk).
fn kvm_check(opts: &HostOptions) -> Check {
    use crate::backend::vm::{self, accel::KvmProbe};
    if !Path::new("/dev/kvm").exists() {
        return check(
            Level::Warn,
            "KVM",
            "no /dev/kvm: VM figures will come from TCG emulation",
            Some("enable virtualisation (or nested virtualisation) for this host"),
        );
    }
    if vm::find_qemu().is_none() || find_host_kernel().is_none() && opts.kernel.is_none() {
        return check(
            Level::Ok,
            "KVM",
            "/dev/kvm present (not probed: the probe needs QEMU and a guest kernel)",
            None,
        );
    }
    match vm::kvm_verdict(opts) {
        Ok(v @ KvmProbe::Usable { .. }) => check(Level::Ok, "KVM", v.describe(), None),
        Ok(v) => check(
            Level::Warn,
            "KVM",
            v.describe(),
            Some("VM figures are labelled accel=tcg; KVM needs bare metal or nested virtualisation with hardware paging"),
        ),
        Err(e) => check(
            Level::Warn,
            "KVM",
            format!("/dev/kvm present but the probe could not run: {:#}", anyhow::Error::new(e)),
            None,
        ),
    }
}

/// The newest readable kernel image in /boot.
pub fn find_host_kernel() -> Option<String> {
    let mut kernels: Vec<_> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .filter(|p| std::fs::File::open(p).is_ok())
        .collect();
    kernels.sort();
    kernels.pop().map(|p| p.display().to_string())
}

pub fn doctor(opts: &HostOptions) -> u8 {
    let checks = checks(opts);
    for c in &checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Missing => "FAIL",
        };
        match &c.hint {
            Some(h) => println!("{tag}  {:<18} {} — fix: {h}", c.what, c.detail),
            None => println!("{tag}  {:<18} {}", c.what, c.detail),
        }
    }
    let missing = checks.iter().filter(|c| c.level == Level::Missing).count();
    if missing > 0 {
        println!("\n{missing} problem(s) found; `scripts/setup.sh` installs every Debian package cvm uses.");
    }
    exit::OK
}
