//! `cvm doctor`: a preflight of this host, one line per check, each problem with its fix, and a
//! [`Verdict`]: whether every backend the built-in scenarios run by default can run here.

use std::path::Path;

use crate::backend::vm::kernel::{self, find_host_kernel};
use crate::backend::{self, cgroup, Availability, HostOptions};
use crate::image;
use crate::scenario::BackendKind;
use crate::tools::tool_version;

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

/// Every check, in the order a user would fix them; `backends` is each backend's availability.
pub fn checks(opts: &HostOptions, backends: &[(BackendKind, Availability)]) -> Vec<Check> {
    let mut out = host_checks();
    out.extend(file_checks());
    out.push(guest_kernel_check(opts));
    out.push(io_dir_check());
    out.push(kvm_check(opts));
    out.extend(runtime_checks());
    out.push(docker_daemon_check(opts));
    out.extend(
        backends
            .iter()
            .map(|(kind, availability)| match availability {
                Availability::Available => {
                    check(Level::Ok, &format!("backend {kind}"), "available", None)
                }
                Availability::Unavailable { reason, hint } => check(
                    Level::Warn,
                    &format!("backend {kind}"),
                    format!("unavailable: {reason}"),
                    Some(hint.as_str()),
                ),
            }),
    );
    out
}

/// Root, the cgroup mount and how its joins behave.
fn host_checks() -> Vec<Check> {
    use Level::*;
    let root = nix::unistd::geteuid().is_root();
    let root = if root {
        check(Ok, "root", "running as root", None)
    } else {
        check(
            Warn,
            "root",
            "not root: rootless, no cgroup limits; containers on slirp4netns, VMs on the user \
             network",
            Some("run cvm as root (sudo)"),
        )
    };
    let cgroups = match cgroup::detect() {
        Some(v) => check(Ok, "cgroups", v.as_str(), None),
        None => check(
            Missing,
            "cgroups",
            "not mounted under /sys/fs/cgroup",
            Some("mount cgroup2 on /sys/fs/cgroup"),
        ),
    };
    let joins = match crate::measure::fingerprint::cgroup_favordynmods().as_str() {
        "on" => "favordynmods on: moving a task into a cgroup never waits for an RCU grace period",
        _ => {
            "favordynmods off: a join after an idle gap waits for an RCU grace period, \
             shown as the cgroup_join phase (cvm leaves the mount as it is)"
        }
    };
    vec![root, cgroups, check(Ok, "cgroup joins", joins, None)]
}

/// The programs every image and guest is built from.
fn file_checks() -> Vec<Check> {
    use Level::*;
    let guest = match image::find_guest() {
        Result::Ok(p) => check(Ok, "cvm-guest", p.display().to_string(), None),
        Err(e) => check(
            Missing,
            "cvm-guest",
            e.to_string(),
            Some("build it with `cargo build` (it is a workspace member)"),
        ),
    };
    let busybox = match image::find_busybox() {
        Result::Ok(p) => check(Ok, "busybox", p.display().to_string(), None),
        Err(_) => check(
            Missing,
            "busybox",
            "no static busybox",
            Some("apt-get install busybox-static (or scripts/setup.sh)"),
        ),
    };
    let qemu = match tool_version("qemu-system-x86_64", &["--version"]) {
        Some(v) => check(Ok, "QEMU", v, None),
        None => check(
            Missing,
            "QEMU",
            "qemu-system-x86_64 not found",
            Some("apt-get install qemu-system-x86 (or scripts/setup.sh)"),
        ),
    };
    vec![guest, busybox, qemu]
}

/// The kernel the VM backends boot: `--kernel`, else the host's own.
fn guest_kernel_check(opts: &HostOptions) -> Check {
    use Level::*;
    match opts.kernel.path() {
        Some(k) if std::fs::File::open(k).is_ok() => {
            check(Ok, "guest kernel", k.display().to_string(), None)
        }
        Some(k) => check(
            Missing,
            "guest kernel",
            format!("{} (--kernel) is not readable", k.display()),
            Some("pass --kernel PATH to a readable bzImage"),
        ),
        None => match find_host_kernel() {
            Some(k) => check(Ok, "guest kernel", k.display().to_string(), None),
            None => check(
                Missing,
                "guest kernel",
                "no readable /boot/vmlinuz-*",
                Some("apt-get install linux-image-amd64, or pass --kernel PATH"),
            ),
        },
    }
}

/// Where the io workloads write, and whether that is a disk.
fn io_dir_check() -> Check {
    use Level::*;
    match backend::io_dir::root_filesystem() {
        Result::Ok((dir, fs, false)) => check(
            Ok,
            "io directory",
            format!("{} on {fs}", dir.display()),
            None,
        ),
        Result::Ok((dir, fs, true)) => check(
            Warn,
            "io directory",
            format!(
                "{} on {fs}: io scenarios are refused unless they set io_storage = \"memory\"",
                dir.display()
            ),
            Some("point CVM_CACHE_DIR at a disk-backed filesystem"),
        ),
        Err(e) => check(
            Missing,
            "io directory",
            format!("{:#}", anyhow::Error::new(e)),
            Some("make cvm's cache directory writable, or set CVM_CACHE_DIR"),
        ),
    }
}

/// The OCI runtimes, each with the package that brings it.
fn runtime_checks() -> Vec<Check> {
    [("runc", "runc"), ("crun", "crun"), ("runsc", "runsc")]
        .into_iter()
        .map(|(tool, pkg)| match tool_version(tool, &["--version"]) {
            Some(v) => check(Level::Ok, tool, v, None),
            None => check(
                Level::Missing,
                tool,
                format!("{tool} not found"),
                Some(&format!("apt-get install {pkg} (or scripts/setup.sh)")),
            ),
        })
        .collect()
}

/// Whether VM figures will come from KVM: `/dev/kvm` existing is not enough (on a host that is
/// itself a guest of a paging-based nested hypervisor stock kernels hang under it), so this asks
/// the VM backends' probe, which boots a guest under KVM with a timeout (cached on disk), and
/// says what serves `/dev/kvm` (PVM, nested without VMX/SVM, permissions, a missing module),
/// the kernel's own report, and what would make KVM usable.
fn kvm_check(opts: &HostOptions) -> Check {
    use crate::backend::vm::{self, kvm_host::KvmHost};
    const LABELLED: &str = "VM figures are labelled accel=tcg";
    let host = KvmHost::read();
    let finding = host.finding();
    let kernel = kernel::find(opts.kernel.path())
        .ok()
        .filter(|k| std::fs::File::open(k).is_ok());
    if !Path::new("/dev/kvm").exists() || vm::find_qemu().is_none() || kernel.is_none() {
        return match finding {
            vm::kvm_host::Finding::Hardware { .. } => check(
                Level::Ok,
                "KVM",
                format!(
                    "{} (not probed: the probe needs QEMU and a readable guest kernel)",
                    finding.what()
                ),
                None,
            ),
            _ => check(
                Level::Warn,
                "KVM",
                format!("KVM unusable: {}", finding.what()),
                Some(&format!("KVM would need {}; {LABELLED}", finding.fix())),
            ),
        };
    }
    match vm::kvm_verdict(opts) {
        Ok(v) if v.usable() => check(Level::Ok, "KVM", v.describe(), None),
        Ok(v) => check(
            Level::Warn,
            "KVM",
            v.describe(),
            Some(&format!(
                "KVM would need {}; {LABELLED}",
                v.fix().unwrap_or_default()
            )),
        ),
        Err(e) => check(
            Level::Warn,
            "KVM",
            format!(
                "{}; the probe could not run: {:#}",
                finding.what(),
                anyhow::Error::new(e)
            ),
            None,
        ),
    }
}

/// Which Docker daemon the docker backend would use: an existing one (where), a private one cvm
/// starts (why), or none (why, and the fix).
fn docker_daemon_check(opts: &HostOptions) -> Check {
    use crate::backend::docker::{DaemonPlan, DockerBackend};
    let plan = DockerBackend::new(&opts.docker).plan();
    match &plan {
        DaemonPlan::Existing { .. } | DaemonPlan::Managed { .. } => {
            check(Level::Ok, "docker daemon", plan.describe(), None)
        }
        DaemonPlan::Unavailable { hint, .. } => {
            check(Level::Warn, "docker daemon", plan.describe(), Some(hint))
        }
    }
}

/// What `cvm doctor` concluded; `main` turns it into the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Backends the built-in scenarios run by default that cannot run on this host.
    pub unavailable_defaults: Vec<BackendKind>,
}

impl Verdict {
    /// Every default backend can run here.
    pub fn ready(&self) -> bool {
        self.unavailable_defaults.is_empty()
    }

    /// The last line of the report.
    pub fn summary(&self) -> String {
        if self.ready() {
            "every default backend can run here".into()
        } else {
            let names: Vec<&str> = self
                .unavailable_defaults
                .iter()
                .map(|k| k.as_str())
                .collect();
            format!(
                "default backends that cannot run here: {}",
                names.join(", ")
            )
        }
    }
}

/// The backends `cvm compare` runs when `--backends` is not given: the union of the built-in
/// scenarios' `backends` lists, in [`BackendKind::ALL`] order.
pub fn default_backends() -> Vec<BackendKind> {
    let named: Vec<BackendKind> = crate::scenario::builtins()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s.backends
                .get_ref()
                .iter()
                .filter_map(|n| n.get_ref().parse().ok())
                .collect::<Vec<BackendKind>>()
        })
        .collect();
    BackendKind::ALL
        .into_iter()
        .filter(|k| named.contains(k))
        .collect()
}

/// The verdict for `defaults` given each backend's availability.
pub fn verdict(
    defaults: &[BackendKind],
    availability: impl Fn(BackendKind) -> Availability,
) -> Verdict {
    Verdict {
        unavailable_defaults: defaults
            .iter()
            .copied()
            .filter(|&k| !matches!(availability(k), Availability::Available))
            .collect(),
    }
}

/// Prints every check and the verdict's summary last.
pub fn doctor(opts: &HostOptions) -> Verdict {
    let backends: Vec<(BackendKind, Availability)> = BackendKind::ALL
        .into_iter()
        .map(|k| (k, backend::create(k, opts).availability()))
        .collect();
    let checks = checks(opts, &backends);
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
    let verdict = verdict(&default_backends(), |k| {
        backends.iter().find(|(b, _)| *b == k).map_or_else(
            || backend::create(k, opts).availability(),
            |(_, a)| a.clone(),
        )
    });
    println!("{}", verdict.summary());
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_default_backend_fails_the_verdict_and_is_named() {
        let defaults = [BackendKind::Native, BackendKind::Docker, BackendKind::Vm];
        let v = verdict(&defaults, |k| match k {
            BackendKind::Docker | BackendKind::Vm => {
                Availability::unavailable("not here", "install it")
            }
            _ => Availability::Available,
        });
        assert!(!v.ready());
        assert_eq!(
            v.unavailable_defaults,
            [BackendKind::Docker, BackendKind::Vm]
        );
        assert_eq!(
            v.summary(),
            "default backends that cannot run here: docker, vm"
        );
        let v = verdict(&defaults, |_| Availability::Available);
        assert!(v.ready());
        assert_eq!(v.summary(), "every default backend can run here");
    }

    #[test]
    fn a_backend_outside_the_defaults_does_not_count() {
        let v = verdict(&[BackendKind::Native], |k| match k {
            BackendKind::Native => Availability::Available,
            _ => Availability::unavailable("no", "no"),
        });
        assert!(v.ready());
    }

    #[test]
    fn the_defaults_are_the_builtin_scenarios_backends() {
        let d = default_backends();
        assert!(
            d.contains(&BackendKind::Native) && d.contains(&BackendKind::Vm),
            "{d:?}"
        );
        assert!(d.contains(&BackendKind::VmClassic), "{d:?}");
    }
}
