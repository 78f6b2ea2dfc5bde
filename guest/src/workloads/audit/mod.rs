//! `audit`: the instance's attack surface, read from inside, then it waits until stopped (so the
//! host can read its own side meanwhile: the seccomp filter of the process that carries the
//! instance's system calls).
//!
//! Each figure is a `CVM:result` preceded by a `CVM:note` with its evidence (names, labels,
//! errnos). What it reads:
//! - the kernel: release and boot id against the host's (a VM has its own kernel; gVisor's
//!   Sentry answers with its own release and boot id);
//! - each namespace against the host's (an inode of the same kernel; on a kernel of its own,
//!   every namespace is that kernel's, whatever the inode numbers);
//! - the user namespace mapping (is root inside root on the host kernel?);
//! - effective and bounding capabilities, seccomp mode, `no_new_privs`;
//! - how many of a fixed list of system calls reach a kernel ([`syscalls`]);
//! - the sensitive paths a runtime masks or makes read-only, device nodes in `/dev`, the
//!   security module's label;
//! - in a VM, the emulated devices its guest sees (the VMM's device models within reach).

mod syscalls;

use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use cvm_proto::caps;
use cvm_proto::isolation::{AuditArgs, MASKED_PATHS, NAMESPACES, READONLY_PATHS};
use cvm_proto::metric::Metric;
use cvm_proto::vmconf;
use cvm_proto::Marker;

use crate::markers::Markers;
use crate::{signals, AppletResult, Failure};

/// `cvm-guest audit --help`.
pub const USAGE: &str = "usage: cvm-guest audit [--host-boot-id ID] [--host-release R] \
     [--host-ns name:inode,...]\n\n\
     Reports the instance's attack surface as CVM:result audit_* lines, each after a CVM:note\n\
     with its evidence: kernel and namespaces against the host's (as given), capabilities,\n\
     seccomp, no_new_privs, system calls reaching a kernel, masked and read-only paths, device\n\
     nodes, the security label and, in a VM, its emulated devices. Then writes CVM:ready and\n\
     waits for SIGTERM.\n";

/// One figure and its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub metric: Metric,
    pub value: f64,
    pub note: String,
}

fn finding(metric: Metric, value: impl Into<f64>, note: impl Into<String>) -> Finding {
    Finding {
        metric,
        value: value.into(),
        note: note.into(),
    }
}

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    let args = AuditArgs::parse(argv)?;
    let stop = signals::block_termination().map_err(Failure::Runtime)?;
    for f in audit(&args) {
        println!("audit: {} = {} ({})", f.metric, f.value, f.note);
        markers.emit(&Marker::Note {
            metric: f.metric.name().to_string(),
            text: f.note.clone(),
        });
        markers.result(f.metric, f.value);
    }
    markers.ready();
    signals::wait(&stop).map_err(Failure::Runtime)?;
    Ok(0)
}

/// Every figure, in the order they are reported.
pub fn audit(args: &AuditArgs) -> Vec<Finding> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let (kernel_shared, kernel) = kernel(args);
    let mut out = vec![kernel];
    let (ns_shared, ns) = namespaces(args, kernel_shared);
    out.push(ns);
    out.push(root_mapping(kernel_shared, ns_shared.contains(&"user")));
    out.extend(capabilities(&status));
    out.extend(seccomp(&status));
    out.push(syscalls());
    out.extend(paths());
    out.push(devices());
    out.push(lsm());
    if !kernel_shared && Path::new(vmconf::PATH).exists() {
        out.push(vmm_devices());
    }
    out
}

/// The kernel is the host's when both its release and its boot id are.
fn kernel(args: &AuditArgs) -> (bool, Finding) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let same_boot = !boot_id.is_empty() && boot_id == args.host_boot_id;
    let shared = same_boot && release == args.host_release;
    let note = format!(
        "release {release} (host {}), boot id {} the host's",
        args.host_release,
        if same_boot { "is" } else { "is not" }
    );
    (
        shared,
        finding(Metric::AuditKernelShared, u8::from(shared), note),
    )
}

/// The inode of `/proc/self/ns/<name>` (`pid:[4026531836]`).
fn namespace_inode(name: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/ns/{name}")).ok()?;
    parse_ns_link(&link.to_string_lossy())
}

fn parse_ns_link(link: &str) -> Option<u64> {
    link.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

/// The namespaces that are the host's: same inode, same kernel. A kernel of its own numbers
/// its initial namespaces as the host's does, so only a shared kernel can share one.
fn namespaces(args: &AuditArgs, kernel_shared: bool) -> (Vec<&'static str>, Finding) {
    let mut shared = Vec::new();
    let mut own = Vec::new();
    for &name in NAMESPACES {
        let host = args.host_namespaces.iter().find(|(n, _)| n == name);
        match (namespace_inode(name), host) {
            (Some(inside), Some((_, outside))) if kernel_shared && inside == *outside => {
                shared.push(name)
            }
            (Some(_), _) => own.push(name),
            (None, _) => {}
        }
    }
    let note = if kernel_shared {
        format!(
            "the host's: [{}]; its own: [{}]",
            shared.join(" "),
            own.join(" ")
        )
    } else {
        format!(
            "a kernel of its own: every namespace is its kernel's ([{}])",
            own.join(" ")
        )
    };
    let count = shared.len() as f64;
    (shared, finding(Metric::AuditNamespacesShared, count, note))
}

/// Root inside is the host kernel's root when the kernel and the user namespace are the host's
/// (an identity map in `uid_map` then says nothing more).
fn root_mapping(kernel_shared: bool, user_ns_shared: bool) -> Finding {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let map = map.split_whitespace().collect::<Vec<_>>().join(" ");
    let is_host_root = kernel_shared && user_ns_shared;
    finding(
        Metric::AuditRootIsHostRoot,
        u8::from(is_host_root),
        format!(
            "uid_map \"{map}\"; user namespace {}",
            if user_ns_shared {
                "the host's"
            } else {
                "its own"
            }
        ),
    )
}

/// A hexadecimal mask field of `/proc/self/status` (`CapEff:\t00000000a80425fb`).
fn status_mask(status: &str, field: &str) -> Option<u64> {
    let value = status_field(status, field)?;
    u64::from_str_radix(value, 16).ok()
}

fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

fn capabilities(status: &str) -> Vec<Finding> {
    let eff = status_mask(status, "CapEff").unwrap_or(0);
    let bnd = status_mask(status, "CapBnd").unwrap_or(0);
    let eff_names = caps::names_in_mask(eff);
    let bnd_names = caps::names_in_mask(bnd);
    let sys_admin = eff_names.iter().any(|n| n == "CAP_SYS_ADMIN");
    vec![
        finding(
            Metric::AuditCapEffective,
            eff_names.len() as f64,
            format!("CapEff {eff:016x}: {}", eff_names.join(" ")),
        ),
        finding(
            Metric::AuditCapBounding,
            bnd_names.len() as f64,
            format!("CapBnd {bnd:016x}"),
        ),
        finding(
            Metric::AuditCapSysAdmin,
            u8::from(sys_admin),
            if sys_admin {
                "CAP_SYS_ADMIN effective"
            } else {
                "no CAP_SYS_ADMIN"
            },
        ),
    ]
}

fn seccomp(status: &str) -> Vec<Finding> {
    let mode: u8 = status_field(status, "Seccomp")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let filters = status_field(status, "Seccomp_filters").unwrap_or("unknown");
    let nnp: u8 = status_field(status, "NoNewPrivs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mode_name = match mode {
        0 => "none",
        1 => "strict",
        _ => "filter",
    };
    vec![
        finding(
            Metric::AuditSeccompMode,
            mode,
            format!("seccomp {mode_name}, {filters} filter(s)"),
        ),
        finding(Metric::AuditNoNewPrivs, nnp, format!("NoNewPrivs {nnp}")),
    ]
}

fn syscalls() -> Finding {
    let answers = syscalls::probe_all();
    let refused: Vec<String> = answers
        .iter()
        .filter(|(_, a)| !syscalls::reached(*a))
        .map(|(name, a)| match a {
            Err(e) => format!("{name}:{e:?}"),
            Ok(_) => format!("{name}:ok"),
        })
        .collect();
    let reached = answers.len() - refused.len();
    let note = format!(
        "{reached} of {} reached a kernel; refused before its checks (EPERM/ENOSYS): [{}]",
        answers.len(),
        refused.join(" ")
    );
    finding(Metric::AuditSyscallsReachingKernel, reached as f64, note)
}

/// `/dev/null` bound over a file, or an empty read-only tmpfs over a directory.
fn masked(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if meta.file_type().is_char_device() {
        return meta.rdev() == nix::sys::stat::makedev(1, 3);
    }
    let empty = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none());
    let tmpfs = nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    meta.is_dir() && empty && tmpfs
}

fn read_only(path: &Path) -> bool {
    nix::sys::statvfs::statvfs(path)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Of the paths present, how many are masked and how many read-only.
fn paths() -> Vec<Finding> {
    let present = |list: &[&'static str]| -> Vec<&'static str> {
        list.iter()
            .copied()
            .filter(|p| Path::new(p).exists())
            .collect()
    };
    let masked_list = present(MASKED_PATHS);
    let readonly_list = present(READONLY_PATHS);
    let masked_now: Vec<&str> = masked_list
        .iter()
        .copied()
        .filter(|p| masked(Path::new(p)))
        .collect();
    let ro_now: Vec<&str> = readonly_list
        .iter()
        .copied()
        .filter(|p| read_only(Path::new(p)))
        .collect();
    vec![
        finding(
            Metric::AuditMaskedPaths,
            masked_now.len() as f64,
            format!(
                "masked {} of the {} present: [{}]",
                masked_now.len(),
                masked_list.len(),
                masked_now.join(" ")
            ),
        ),
        finding(
            Metric::AuditReadonlyPaths,
            ro_now.len() as f64,
            format!(
                "read-only {} of the {} present: [{}]",
                ro_now.len(),
                readonly_list.len(),
                ro_now.join(" ")
            ),
        ),
    ]
}

/// Character and block devices directly in `/dev`.
fn devices() -> Finding {
    let mut names: Vec<String> = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_type()
                        .is_ok_and(|t| t.is_char_device() || t.is_block_device())
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    finding(
        Metric::AuditDeviceNodes,
        names.len() as f64,
        format!("[{}]", names.join(" ")),
    )
}

/// The security module's label of this process (AppArmor, SELinux); none or `unconfined` is
/// unconfined.
fn lsm() -> Finding {
    let label = [
        "/proc/self/attr/apparmor/current",
        "/proc/self/attr/current",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|l| l.trim_matches(['\0', '\n', ' ']).to_string())
    .filter(|l| !l.is_empty());
    let confined = label
        .as_deref()
        .is_some_and(|l| !l.starts_with("unconfined"));
    finding(
        Metric::AuditLsmConfined,
        u8::from(confined),
        label.unwrap_or_else(|| "no security module label".into()),
    )
}

/// The devices a VM's guest sees on its buses: PCI functions, virtio devices, legacy PnP ones.
fn vmm_devices() -> Finding {
    let mut found = Vec::new();
    for bus in ["pci", "virtio", "pnp"] {
        let dir = Path::new("/sys/bus").join(bus).join("devices");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let id = device_id(bus, &path);
            found.push(format!("{bus}:{id}"));
        }
    }
    found.sort();
    finding(
        Metric::AuditVmmDevices,
        found.len() as f64,
        format!("[{}]", found.join(" ")),
    )
}

/// A device's identity on its bus: PCI vendor:device, virtio device id, PnP ids.
fn device_id(bus: &str, dir: &Path) -> String {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    match bus {
        "pci" => format!("{}:{}", read("vendor"), read("device")).replace("0x", ""),
        "virtio" => format!("device{}", read("device")),
        _ => read("id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_and_namespace_links_parse() {
        let status = "Name:\tcvm-guest\nCapEff:\t00000000a80425fb\nCapBnd:\t000001ffffffffff\n\
                      NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert_eq!(status_mask(status, "CapEff"), Some(0xa80425fb));
        let caps = capabilities(status);
        assert_eq!(caps[0].value, 14.0);
        assert_eq!(caps[1].value, 41.0);
        assert_eq!(caps[2].value, 0.0);
        let sec = seccomp(status);
        assert_eq!((sec[0].value, sec[1].value), (2.0, 1.0));
        assert!(sec[0].note.contains("filter"), "{}", sec[0].note);
        assert_eq!(parse_ns_link("pid:[4026531836]"), Some(4026531836));
        assert_eq!(parse_ns_link("pid:4026531836"), None);
    }

    #[test]
    fn only_a_shared_kernel_shares_namespaces() {
        let mine = |n: &str| namespace_inode(n).map(|i| (n.to_string(), i));
        let args = AuditArgs {
            host_boot_id: String::new(),
            host_release: String::new(),
            host_namespaces: NAMESPACES.iter().filter_map(|n| mine(n)).collect(),
        };
        let (shared, f) = namespaces(&args, true);
        assert!(shared.contains(&"pid"), "{}", f.note);
        let (shared, f) = namespaces(&args, false);
        assert!(shared.is_empty() && f.value == 0.0, "{}", f.note);
        assert!(f.note.contains("of its own"));
    }

    #[test]
    fn this_process_shares_its_kernel_with_itself() {
        let uname = nix::sys::utsname::uname().unwrap();
        let args = AuditArgs {
            host_boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap()
                .trim()
                .into(),
            host_release: uname.release().to_string_lossy().into(),
            host_namespaces: Vec::new(),
        };
        assert!(kernel(&args).0);
        let other = AuditArgs {
            host_boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..args
        };
        let (shared, f) = kernel(&other);
        assert!(!shared && f.note.contains("is not"), "{}", f.note);
    }
}
