//! What backs `/dev/kvm` on this host, in words: the facts the accelerator probe's verdict is
//! explained with, and what would make KVM usable.
//!
//! A probe guest that does not boot says only that KVM cannot run a stock guest here; the
//! reason is in the host's own records. `/proc/cpuinfo` says whether the CPU exposes VMX or SVM
//! (hardware virtualisation) and whether this host is itself a guest (the `hypervisor` flag);
//! `/sys/module` says which KVM module serves `/dev/kvm` (`kvm_intel`, `kvm_amd`, or
//! `kvm_pvm`: PVM, a page-table-based virtualisation that needs neither and runs only guest
//! kernels built as PVM guests); the kernel log says what KVM reported when the probe guest
//! stopped (on the reference host `kvm-pvm: INTERNAL_ERROR in batch emul`).

use std::io::Read;
use std::path::Path;

/// The KVM modules whose presence names what serves `/dev/kvm`.
const MODULES: [&str; 3] = ["kvm_pvm", "kvm_intel", "kvm_amd"];

/// `/dev/kvm` as this process finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevKvm {
    Absent,
    /// Present, but opening it for reading and writing failed (the error).
    NoAccess(String),
    Usable,
}

/// The host's virtualisation facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmHost {
    pub dev_kvm: DevKvm,
    /// The KVM module loaded (or built in), by [`MODULES`] order.
    pub module: Option<&'static str>,
    /// `vmx` or `svm` from `/proc/cpuinfo`'s flags.
    pub cpu_virt: Option<&'static str>,
    /// The CPU's `hypervisor` flag: this host is a virtual machine itself.
    pub is_guest: bool,
    /// The last KVM error the kernel logged, if any (and if the log can be read).
    pub kernel_log: Option<String>,
}

/// What the facts add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// `/dev/kvm` is PVM's (`kvm_pvm`), on a CPU without VMX/SVM.
    Pvm,
    /// A virtual machine whose CPU does not expose VMX/SVM, and nothing else serving KVM.
    NestedWithoutVirt,
    /// A host (not a guest) whose CPU shows no VMX/SVM.
    NoCpuSupport,
    /// The CPU has VMX/SVM but no KVM module serves `/dev/kvm`.
    ModuleMissing { flag: &'static str },
    /// `/dev/kvm` exists but cannot be opened.
    Permissions { error: String },
    /// Hardware KVM: its module on a CPU with VMX/SVM.
    Hardware { module: &'static str },
}

impl KvmHost {
    /// This host's facts.
    pub fn read() -> KvmHost {
        let dev_kvm = if !Path::new("/dev/kvm").exists() {
            DevKvm::Absent
        } else {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
            {
                Ok(_) => DevKvm::Usable,
                Err(e) => DevKvm::NoAccess(e.to_string()),
            }
        };
        let mut host = KvmHost::from_records(Path::new("/"), dev_kvm);
        host.kernel_log = last_kvm_error(&read_kernel_log());
        host
    }

    /// The facts under `root` (a fake tree in tests), with `/dev/kvm` as found; no kernel log.
    fn from_records(root: &Path, dev_kvm: DevKvm) -> KvmHost {
        let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("flags").and_then(|r| r.split_once(':')))
            .map(|(_, f)| f.split_whitespace().collect())
            .unwrap_or_default();
        KvmHost {
            dev_kvm,
            module: MODULES
                .into_iter()
                .find(|m| root.join("sys/module").join(m).is_dir()),
            cpu_virt: ["vmx", "svm"].into_iter().find(|f| flags.contains(f)),
            is_guest: flags.contains(&"hypervisor"),
            kernel_log: None,
        }
    }

    pub fn finding(&self) -> Finding {
        match (&self.dev_kvm, self.cpu_virt) {
            (DevKvm::Absent, Some(flag)) => Finding::ModuleMissing { flag },
            (DevKvm::Absent, None) if self.is_guest => Finding::NestedWithoutVirt,
            (DevKvm::Absent, None) => Finding::NoCpuSupport,
            (DevKvm::NoAccess(error), _) => Finding::Permissions {
                error: error.clone(),
            },
            (DevKvm::Usable, None) if self.module == Some("kvm_pvm") => Finding::Pvm,
            (DevKvm::Usable, None) => Finding::NestedWithoutVirt,
            (DevKvm::Usable, Some(_)) => Finding::Hardware {
                module: self.module.unwrap_or("kvm"),
            },
        }
    }
}

impl Finding {
    /// What was found, in words.
    pub fn what(&self) -> String {
        match self {
            Finding::Pvm => "PVM: /dev/kvm is served by kvm_pvm (page-table-based virtualisation; \
                 no vmx/svm in /proc/cpuinfo), which runs only guest kernels built as PVM guests"
                .into(),
            Finding::NestedWithoutVirt => "nested without VMX/SVM: this host is itself a virtual \
                 machine (hypervisor flag) and its CPU exposes no vmx/svm in /proc/cpuinfo"
                .into(),
            Finding::NoCpuSupport => "no hardware virtualisation: no vmx/svm in /proc/cpuinfo \
                 (not supported, or disabled in the firmware)"
                .into(),
            Finding::ModuleMissing { flag } => format!(
                "missing module: the CPU has {flag} but no KVM module is loaded (no /dev/kvm)"
            ),
            Finding::Permissions { error } => {
                format!("permissions: /dev/kvm cannot be opened ({error})")
            }
            Finding::Hardware { module } => format!("/dev/kvm is served by {module}"),
        }
    }

    /// What would make KVM usable here.
    pub fn fix(&self) -> String {
        match self {
            Finding::Pvm => "a guest kernel built as a PVM guest (CONFIG_PVM_GUEST), or a host \
                 whose CPU exposes VMX/SVM (bare metal, or nested virtualisation with VMX/SVM \
                 passed through)"
                .into(),
            Finding::NestedWithoutVirt => "nested virtualisation enabled in the outer hypervisor, \
                 so that this machine's CPU shows vmx or svm"
                .into(),
            Finding::NoCpuSupport => {
                "VT-x or AMD-V enabled in the firmware (or a CPU that has it)".into()
            }
            Finding::ModuleMissing { flag } => format!(
                "modprobe {} (and check the kernel log if it refuses)",
                if *flag == "svm" {
                    "kvm_amd"
                } else {
                    "kvm_intel"
                }
            ),
            Finding::Permissions { .. } => {
                "run cvm as root, or add the user to the kvm group".into()
            }
            Finding::Hardware { .. } => {
                "read QEMU's message and the kernel log above: KVM itself is in place".into()
            }
        }
    }
}

/// The kernel log as far as this process may read it (`/dev/kmsg`, root), one message a line.
fn read_kernel_log() -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut kmsg) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return String::new();
    };
    let mut log = String::new();
    // One record per read; EAGAIN at the end of the buffer, EPIPE for a record overwritten
    // meanwhile (skipped: the next read goes on).
    let mut record = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&record[..n]);
                // "PRIORITY,SEQUENCE,TIME,FLAGS;MESSAGE\n"
                if let Some((_, message)) = text.split_once(';') {
                    log.push_str(message.lines().next().unwrap_or(""));
                    log.push('\n');
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    log
}

/// The last message a KVM module logged about a failure (not its boot-time notes, such as
/// PVM's "mmio caching disabled").
fn last_kvm_error(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| {
            let lower = l.to_ascii_lowercase();
            l.starts_with("kvm")
                && ["error", "fail", "disabled by"]
                    .iter()
                    .any(|w| lower.contains(w))
        })
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(cpu_flags: &str, modules: &[&str], dev_kvm: DevKvm) -> KvmHost {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(
            root.join("proc/cpuinfo"),
            format!("processor\t: 0\nflags\t\t: fpu {cpu_flags} sse2\n"),
        )
        .unwrap();
        for m in modules {
            std::fs::create_dir_all(root.join("sys/module").join(m).join("parameters")).unwrap();
        }
        KvmHost::from_records(root, dev_kvm)
    }

    #[test]
    fn each_host_kind_is_named_with_its_fix() {
        // The reference host: a guest, kvm_pvm built in, no vmx/svm.
        let pvm = host("hypervisor", &["kvm", "kvm_pvm"], DevKvm::Usable);
        assert_eq!(
            (pvm.module, pvm.cpu_virt, pvm.is_guest),
            (Some("kvm_pvm"), None, true)
        );
        assert_eq!(pvm.finding(), Finding::Pvm);
        assert!(pvm
            .finding()
            .what()
            .starts_with("PVM: /dev/kvm is served by kvm_pvm"));
        assert!(pvm.finding().fix().contains("PVM guest"));
        let nested = host("hypervisor", &[], DevKvm::Absent);
        assert_eq!(nested.finding(), Finding::NestedWithoutVirt);
        assert!(nested
            .finding()
            .what()
            .starts_with("nested without VMX/SVM"));
        let bare = host("", &[], DevKvm::Absent);
        assert_eq!(bare.finding(), Finding::NoCpuSupport);
        let unloaded = host("vmx", &[], DevKvm::Absent);
        assert_eq!(unloaded.finding(), Finding::ModuleMissing { flag: "vmx" });
        assert!(unloaded.finding().fix().contains("modprobe kvm_intel"));
        let amd = host("svm", &[], DevKvm::Absent);
        assert!(amd.finding().fix().contains("modprobe kvm_amd"));
        let denied = host(
            "vmx",
            &["kvm_intel"],
            DevKvm::NoAccess("Permission denied".into()),
        );
        assert!(denied
            .finding()
            .what()
            .starts_with("permissions: /dev/kvm cannot be opened"));
        assert!(denied.finding().fix().contains("kvm group"));
        let hw = host("vmx", &["kvm_intel"], DevKvm::Usable);
        assert_eq!(
            hw.finding(),
            Finding::Hardware {
                module: "kvm_intel"
            }
        );
    }

    #[test]
    fn the_last_kvm_failure_is_taken_from_the_kernel_log() {
        let log = "kvm-pvm: mmio caching disabled (nested host)\nkvm-pvm: loaded (native=1)\n\
                   kvm-pvm: INTERNAL_ERROR in batch emul\nkvm: something fine\n";
        assert_eq!(
            last_kvm_error(log).as_deref(),
            Some("kvm-pvm: INTERNAL_ERROR in batch emul")
        );
        assert_eq!(
            last_kvm_error("kvm-pvm: mmio caching disabled (nested host)\nkvm-pvm: loaded\n"),
            None
        );
        assert_eq!(
            last_kvm_error("kvm: disabled by bios\n").as_deref(),
            Some("kvm: disabled by bios")
        );
    }
}
