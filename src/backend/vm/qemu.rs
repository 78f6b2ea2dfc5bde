//! QEMU command lines for the two VM profiles, built as data so they can be unit-tested.
//!
//! Facts measured on the reference host (2 vCPUs, TCG) that shape them:
//! - `-nographic -serial stdio -monitor none` with stdin at /dev/null: `-display none` alone left
//!   a microvm guest silent and hung. The serial console is the marker channel the host stamps.
//! - `-no-reboot`: a guest that panics or reboots makes QEMU exit instead of booting again, so a
//!   broken guest ends the run at once rather than at the timeout.
//! - The microvm keeps its ACPI tables (`acpi=off` leaves the guest unable to power off) and its
//!   legacy PIT/PIC (the guest cannot be told its TSC rate by a PIT it lacks; see `cmdline`).
//! - `-sandbox on` with every optional deny ([`SANDBOX`]) wherever the QEMU build has seccomp
//!   ([`sandbox_supported`]): a guest that escapes into QEMU cannot exec, fork, change its
//!   credentials or use obsolete system calls. Its cost is within the noise of a busy reference
//!   host: `vm` ready latency under TCG, 28 runs each, interleaved, median 2.62 s with it and
//!   2.52 s without (run-to-run spread about ±0.4 s). The backend config records it.
//! - Guest RAM is a named `memory-backend-memfd` object given to the machine (both microvm and
//!   pc accept `-machine memory-backend=`): QEMU maps it as one shared memfd mapping, which
//!   `/proc/PID/smaps` names [`GUEST_RAM_MAPPING`], so the host can split QEMU's PSS into the
//!   hypervisor's own memory and the memory backing the guest (see `usage::memory`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which machine a VM backend builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `vm`: microvm, PVH direct boot of the uncompressed vmlinux, virtio-mmio devices only,
    /// a tuned kernel command line.
    Micro,
    /// `vm-classic`: the i440FX PC with its default devices, SeaBIOS, the bzImage through the
    /// Linux boot protocol, PCI devices: what a conventional hypervisor VM looks like.
    Classic,
}

impl Profile {
    pub fn machine(self) -> &'static str {
        match self {
            Profile::Micro => "microvm",
            Profile::Classic => "pc",
        }
    }

    pub fn boot_path(self) -> &'static str {
        match self {
            Profile::Micro => "pvh-vmlinux (direct, no decompressor)",
            Profile::Classic => "seabios + bzImage (linux boot protocol)",
        }
    }

    /// The suffix of virtio device names on this machine's bus.
    fn virtio_bus(self) -> &'static str {
        match self {
            Profile::Micro => "device",
            Profile::Classic => "pci",
        }
    }
}

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// A forward of a host loopback port to a guest port through QEMU's user-mode network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    pub host: u16,
    pub guest: u16,
}

/// QEMU's seccomp filter with every optional restriction: no obsolete system calls, no
/// set*uid/gid, no fork or exec, no affinity or scheduler changes. None of them is needed by a
/// running QEMU with user-mode networking (both profiles boot and serve with it).
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The id of the memory backend object that holds guest RAM.
pub const GUEST_RAM_ID: &str = "guest-ram";
/// How `/proc/PID/smaps` names the mapping of that backend: QEMU names a memfd after the
/// object's type, not its id, and the kernel prefixes `/memfd:`.
pub const GUEST_RAM_MAPPING: &str = "/memfd:memory-backend-memfd";

/// Whether `qemu` accepts [`SANDBOX`]: a build without seccomp rejects `-sandbox` outright.
/// Options are parsed in order, so `-version` after it checks the option without starting a
/// machine.
pub fn sandbox_supported(qemu: &Path) -> bool {
    Command::new(qemu)
        .args(["-sandbox", SANDBOX, "-version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Everything one QEMU invocation needs.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    pub binary: PathBuf,
    pub profile: Profile,
    pub accel: Accel,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// The QMP control socket, when the instance is to be controlled; QEMU then starts paused
    /// (`-S`) and waits for QMP `cont`.
    pub qmp: Option<PathBuf>,
    /// A NIC on user-mode networking, with these forwards; `None`: no NIC at all.
    pub net: Option<Vec<PortForward>>,
    /// A raw disk image attached as a virtio-blk device (`/dev/vda` in the guest).
    pub disk: Option<PathBuf>,
    /// `-sandbox` [`SANDBOX`] (only where [`sandbox_supported`]).
    pub sandbox: bool,
    /// A NIC on this tap device, with this MAC address, instead of the user network (`net`
    /// then carries no forwards).
    pub tap: Option<(String, [u8; 6])>,
}

impl QemuSpec {
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        match self.profile {
            Profile::Micro => {
                push("-M");
                push("microvm");
                // Nothing the user's config files or QEMU's defaults would add (a NIC, a
                // monitor, a parallel port): the microvm is exactly what is listed here.
                push("-nodefaults");
                push("-no-user-config");
            }
            Profile::Classic => {
                push("-M");
                push("pc");
                // The default devices stay (VGA, IDE, floppy): they are what a conventional VM
                // boots with. Only the default NIC goes, replaced below if the scenario wants one.
                if self.net.is_none() && self.tap.is_none() {
                    push("-nic");
                    push("none");
                }
            }
        }
        push("-accel");
        push(self.accel.as_str());
        if self.accel == Accel::Kvm {
            push("-cpu");
            push("host");
        }
        push("-m");
        push(&format!("{}M", self.memory_mib));
        push("-object");
        push(&format!(
            "memory-backend-memfd,id={GUEST_RAM_ID},size={}M",
            self.memory_mib
        ));
        push("-machine");
        push(&format!("memory-backend={GUEST_RAM_ID}"));
        push("-smp");
        push(&self.vcpus.max(1).to_string());
        push("-nographic");
        push("-serial");
        push("stdio");
        push("-monitor");
        push("none");
        push("-no-reboot");
        if self.sandbox {
            push("-sandbox");
            push(SANDBOX);
        }
        a.push("-kernel".into());
        a.push(self.kernel.clone().into());
        a.push("-initrd".into());
        a.push(self.initrd.clone().into());
        a.push("-append".into());
        a.push(self.cmdline.clone().into());
        if let Some(sock) = &self.qmp {
            a.push("-qmp".into());
            let mut v = OsString::from("unix:");
            v.push(sock);
            v.push(",server=on,wait=off");
            a.push(v);
            // Paused until the instance sends `cont`: QEMU's own start is timed apart from the
            // guest's (the `vmm_start` phase).
            a.push("-S".into());
        }
        let bus = self.profile.virtio_bus();
        if let Some((tap, mac)) = &self.tap {
            a.push("-netdev".into());
            a.push(format!("tap,id=net0,ifname={tap},script=no,downscript=no").into());
            a.push("-device".into());
            let mac = mac.map(|b| format!("{b:02x}")).join(":");
            a.push(format!("virtio-net-{bus},netdev=net0,mac={mac}").into());
        } else if let Some(forwards) = &self.net {
            let mut netdev = String::from("user,id=net0");
            for f in forwards {
                // Loopback only: nothing outside this host can reach the guest.
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest));
            }
            a.push("-netdev".into());
            a.push(netdev.into());
            a.push("-device".into());
            a.push(format!("virtio-net-{bus},netdev=net0").into());
        }
        if let Some(disk) = &self.disk {
            let mut drive = OsString::from("file=");
            drive.push(disk);
            drive.push(",format=raw,if=none,id=disk0");
            a.push("-drive".into());
            a.push(drive);
            a.push("-device".into());
            a.push(format!("virtio-blk-{bus},drive=disk0").into());
        }
        a
    }
}

/// The kernel command line for a profile.
///
/// Common to both: the console on the first serial port at `loglevel=6`, which prints the
/// kernel's banner (kernel entry: the end of the `firmware` phase) and warnings but not the ~250 info lines a
/// default boot writes, each byte of which is an emulated port write; `panic=-1` with QEMU's
/// `-no-reboot` turns a guest panic into a QEMU exit.
///
/// The micro profile adds what measurably shortens a TCG boot (on the reference host, boot to
/// power-off went from 1.9-2.1 s to 1.6 s):
/// no timer and TSC checks, no mitigations, a trusted CPU RNG, a single UART, no i8042 probing,
/// a preset delay loop, and no crypto self-tests (the largest single item, about 1 s). `tsc_early_khz` (TCG only) is required, not just faster: the
/// microvm's PIT cannot calibrate the TSC, and without a rate the 6.1 guest hung in early boot
/// on this host. Under TCG the guest's TSC counts at the host's rate, so the host's is given,
/// as measured (`accel::host_tsc_khz`). `lpj` (loops per jiffy of the TSC delay loop: TSC Hz /
/// the guest's `CONFIG_HZ`) spares the guest its calibration; it is given only when the guest
/// kernel's HZ is known (from its config file), never assumed.
pub fn cmdline(
    profile: Profile,
    accel: Accel,
    host_tsc_khz: Option<u64>,
    guest_hz: Option<u64>,
) -> String {
    let mut parts: Vec<String> = ["console=ttyS0", "loglevel=6", "panic=-1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if profile == Profile::Micro {
        parts.extend(
            [
                "reboot=t",
                "tsc=reliable",
                "no_timer_check",
                "mitigations=off",
                "random.trust_cpu=on",
                "8250.nr_uarts=1",
                "i8042.noaux",
                "i8042.nomux",
                "i8042.dumbkbd",
                // The crypto API's boot-time self-tests: about 1 s of a 2.2 s TCG boot to init
                // on the reference host (guest uptime at /init 2.21 s → 1.20-1.44 s).
                "cryptomgr.notests",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if let (Accel::Tcg, Some(khz)) = (accel, host_tsc_khz) {
            parts.push(format!("tsc_early_khz={khz}"));
            if let Some(hz) = guest_hz.filter(|hz| *hz > 0) {
                parts.push(format!("lpj={}", khz * 1000 / hz));
            }
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(profile: Profile) -> QemuSpec {
        QemuSpec {
            binary: "qemu-system-x86_64".into(),
            profile,
            accel: Accel::Tcg,
            vcpus: 2,
            memory_mib: 256,
            kernel: "/k/vmlinux".into(),
            initrd: "/k/initrd.cpio".into(),
            cmdline: "console=ttyS0".into(),
            qmp: Some("/tmp/x/qmp.sock".into()),
            net: None,
            disk: None,
            sandbox: true,
            tap: None,
        }
    }

    fn joined(s: &QemuSpec) -> String {
        s.args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn micro_profile_is_a_bare_microvm_with_resources_and_a_serial_console() {
        let line = joined(&spec(Profile::Micro));
        assert!(
            line.starts_with("-M microvm -nodefaults -no-user-config -accel tcg"),
            "{line}"
        );
        assert!(
            line.contains(
                "-m 256M -object memory-backend-memfd,id=guest-ram,size=256M \
                 -machine memory-backend=guest-ram -smp 2"
            ),
            "{line}"
        );
        assert!(line.contains("-nographic -serial stdio -monitor none -no-reboot"));
        assert!(line.contains("-kernel /k/vmlinux -initrd /k/initrd.cpio -append console=ttyS0"));
        assert!(line.contains("-qmp unix:/tmp/x/qmp.sock,server=on,wait=off"));
        assert!(!line.contains("-cpu"), "TCG keeps QEMU's default CPU model");
        assert!(!line.contains("netdev"));
    }

    #[test]
    fn qemu_runs_sandboxed_when_the_build_supports_it() {
        let line = joined(&spec(Profile::Micro));
        assert!(
            line.contains(
                "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
            ),
            "{line}"
        );
        let mut s = spec(Profile::Classic);
        s.sandbox = false;
        assert!(!joined(&s).contains("-sandbox"));
        // A QEMU that does not exist supports nothing.
        assert!(!sandbox_supported(Path::new(
            "/nonexistent/qemu-system-x86_64"
        )));
    }

    #[test]
    fn classic_profile_keeps_default_devices_but_no_default_nic() {
        let line = joined(&spec(Profile::Classic));
        assert!(line.starts_with("-M pc -nic none -accel tcg"), "{line}");
        assert!(!line.contains("-nodefaults"));
    }

    #[test]
    fn a_tap_nic_replaces_the_user_network() {
        let mut s = spec(Profile::Micro);
        s.tap = Some(("cvm1234vm0".into(), [0x52, 0x54, 0, 1, 2, 3]));
        let line = s
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            line.contains(
                "-netdev tap,id=net0,ifname=cvm1234vm0,script=no,downscript=no -device virtio-net-device,netdev=net0,mac=52:54:00:01:02:03"
            ),
            "{line}"
        );
        assert!(!line.contains("hostfwd"), "{line}");
    }

    #[test]
    fn networking_forwards_loopback_ports_on_the_profiles_bus() {
        let mut s = spec(Profile::Micro);
        s.net = Some(vec![PortForward {
            host: 40123,
            guest: 8080,
        }]);
        s.accel = Accel::Kvm;
        let line = joined(&s);
        assert!(line.contains("-cpu host"));
        assert!(line.contains(
            "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:40123-:8080 -device virtio-net-device,netdev=net0"
        ), "{line}");
        s.profile = Profile::Classic;
        s.disk = Some("/tmp/x/disk.img".into());
        let line = joined(&s);
        assert!(
            line.contains("-device virtio-net-pci,netdev=net0"),
            "{line}"
        );
        assert!(!line.contains("-nic none"));
        assert!(line.contains("-drive file=/tmp/x/disk.img,format=raw,if=none,id=disk0"));
        assert!(line.contains("-device virtio-blk-pci,drive=disk0"));
    }

    #[test]
    fn tuned_cmdline_only_for_micro_and_tsc_rate_only_under_tcg() {
        let micro = cmdline(Profile::Micro, Accel::Tcg, Some(2_300_000), Some(250));
        assert!(micro.contains("tsc_early_khz=2300000"));
        assert!(micro.contains("lpj=9200000"));
        // HZ 1000: a jiffy is 1 ms, so a quarter of the loops.
        let hz1000 = cmdline(Profile::Micro, Accel::Tcg, Some(2_300_000), Some(1000));
        assert!(hz1000.contains("lpj=2300000"), "{hz1000}");
        // Unknown HZ: no lpj at all rather than a guess.
        let unknown = cmdline(Profile::Micro, Accel::Tcg, Some(2_300_000), None);
        assert!(unknown.contains("tsc_early_khz=2300000") && !unknown.contains("lpj="));
        assert!(micro.contains("mitigations=off"));
        assert!(micro.contains("cryptomgr.notests"));
        assert!(
            !micro.contains("acpi=off"),
            "acpi=off breaks poweroff on microvm"
        );
        assert!(
            !micro.contains("nokaslr"),
            "unknown parameters end up in init's argv"
        );
        let kvm = cmdline(Profile::Micro, Accel::Kvm, Some(2_300_000), Some(250));
        assert!(!kvm.contains("tsc_early_khz"));
        let classic = cmdline(Profile::Classic, Accel::Tcg, Some(2_300_000), Some(250));
        assert_eq!(classic, "console=ttyS0 loglevel=6 panic=-1");
    }
}
