//! `init` as PID 1 of a cvm virtual machine.
//!
//! The kernel unpacks the initramfs (the image's rootfs plus what the VM backend adds) and runs
//! `/init`, a link to this binary, with no arguments and stdio on `/dev/console` (the first
//! serial port, which QEMU hands to the host). What to do comes from [`vmconf::PATH`], a file only
//! the VM backend puts in the image, which is also how init knows it is in a VM: a container's
//! rootfs never has it. A file rather than the kernel command line because the workload's argv
//! would need quoting there, and unknown words on the command line become init's own arguments.
//!
//! The configuration's format and codec are [`cvm_proto::vmconf`].
//!
//! Steps, in order, each needed by the next: the marker channel (a copy of the console at
//! descriptor 3, so the workload's own markers reach the host like in a container) and
//! `CVM:init` first, before any setup, so setup is timed as init's own work (`CVM:configured`
//! ends it: the host's `guest_init` phase); mounts (proc, sys, devtmpfs
//! for /dev/vda and friends, tmpfs on /tmp); modules (the NIC and disk drivers are modules in
//! distribution kernels); network; disk; then the workload, supervised by the shared init code
//! (`CVM:workload`, signal forwarding, reaping, `CVM:exit N`). Last, the machine is powered off:
//! PID 1 exiting would panic the kernel instead. A failed step is reported as `CVM:error` and
//! also powers off, so the host sees the reason at once rather than a timeout.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cvm_proto::vmconf::{self, DiskConfig, NetConfig, VmConfig};
use cvm_proto::{Marker, DEFAULT_MARKER_FD, MARKER_FD_ENV};
use nix::fcntl::{fcntl, FcntlArg};
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::stat::Mode;

use crate::init::{Config, Tick};
use crate::markers::Markers;
use crate::{AppletResult, Failure};

/// How often init reports the guest's memory in use (`CVM:memory`) while the workload runs.
///
/// The host reads QEMU's PSS at a moment of its choosing and pairs it with the first report
/// that arrives after it, so the two figures are at most one period apart. Periodic rather than
/// on request: the console is the only host-guest channel and it runs one way (QEMU's stdin is
/// /dev/null); rather than on readiness: init does not see the workload's ready marker, which
/// goes straight to the console. The cost is one ~25-byte console line per period, well under
/// a millisecond of guest time per second even under emulation.
const MEMORY_REPORT_PERIOD: Duration = Duration::from_millis(250);

/// `CVM:memory <MemTotal - MemAvailable>`; nothing if /proc/meminfo cannot be read.
fn report_memory(markers: &Markers) {
    if let Some(used) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| memory_used(&t))
    {
        markers.emit(&Marker::Memory(used));
    }
}

/// `MemTotal - MemAvailable` in bytes, from the text of `/proc/meminfo`.
fn memory_used(meminfo: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| {
            let kib = l.strip_prefix(name)?.strip_prefix(':')?;
            kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
    };
    Some(field("MemTotal")?.saturating_sub(field("MemAvailable")?) * 1024)
}

/// True when this process is PID 1 of a cvm VM.
pub fn in_vm() -> bool {
    nix::unistd::getpid().as_raw() == 1 && Path::new(vmconf::PATH).exists()
}

/// Runs init in the VM; never returns normally (the machine powers off).
pub fn run() -> AppletResult {
    let markers = marker_channel();
    markers.emit(&Marker::Init);
    let code = match setup().and_then(|config| {
        markers.emit(&Marker::Configured);
        let (command, args) = config.argv.split_first().expect("parse checks argv");
        crate::init::supervise_config(
            &markers,
            &Config {
                command: OsString::from(command),
                args: args.iter().map(OsString::from).collect(),
                watch_port: config.watch_port,
            },
            &Tick {
                period: MEMORY_REPORT_PERIOD,
                work: &report_memory,
            },
        )
    }) {
        Ok(code) => code,
        Err(Failure::Runtime(msg) | Failure::Usage(msg)) => {
            markers.error(&format!("init: {msg}"));
            eprintln!("cvm-guest init: {msg}");
            1
        }
        Err(Failure::Help) => 0,
    };
    power_off(code)
}

/// The console (descriptor 1, given by the kernel) copied to the marker descriptor and named in
/// the environment, so init and the workload write markers exactly as in a container.
fn marker_channel() -> Markers {
    match fcntl(
        std::io::stdout().as_fd(),
        FcntlArg::F_DUPFD(DEFAULT_MARKER_FD),
    ) {
        // The copy is deliberately never closed: it is the channel for the machine's lifetime.
        Ok(fd) if fd == DEFAULT_MARKER_FD => {
            // init is still single-threaded here, so changing the environment is sound.
            std::env::set_var(MARKER_FD_ENV, DEFAULT_MARKER_FD.to_string());
            Markers::from_env()
        }
        _ => Markers::disabled(),
    }
}

fn setup() -> Result<VmConfig, Failure> {
    mount_basics()?;
    let text = std::fs::read_to_string(vmconf::PATH)
        .map_err(|e| Failure::Runtime(format!("reading {}: {e}", vmconf::PATH)))?;
    let config = VmConfig::parse(&text).map_err(|e| Failure::Runtime(e.to_string()))?;
    for m in &config.modules {
        load_module(m)?;
    }
    if let Some(NetConfig { device, cidr }) = &config.net {
        network(device, cidr)?;
    }
    if let Some(DiskConfig { device, mount }) = &config.disk {
        mount_disk(device, mount)?;
    }
    if let Some(pids) = config.pids {
        cap_threads(pids)?;
    }
    Ok(config)
}

/// The VM's pids limit: the guest kernel refuses a new task (`EAGAIN`, as a full pids cgroup
/// does) once it runs what it runs now (its own threads, init) plus `pids`. Kernel-wide rather
/// than a cgroup, since the workload is all the guest runs; last, so setup's own tools are not
/// counted against it.
fn cap_threads(pids: u64) -> Result<(), Failure> {
    const THREADS_MAX: &str = "/proc/sys/kernel/threads-max";
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map_err(|e| Failure::Runtime(format!("reading /proc/loadavg: {e}")))?;
    let running = tasks_in_loadavg(&loadavg)
        .ok_or_else(|| Failure::Runtime(format!("cannot read the task count in {loadavg:?}")))?;
    std::fs::write(THREADS_MAX, (running + pids).to_string())
        .map_err(|e| Failure::Runtime(format!("writing {THREADS_MAX}: {e}")))
}

/// The number of tasks in `/proc/loadavg` (`0.00 0.01 0.05 1/87 123`: 87).
fn tasks_in_loadavg(text: &str) -> Option<u64> {
    text.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

fn mount_basics() -> Result<(), Failure> {
    let table: [(&str, &str, &str, Option<&str>); 4] = [
        ("proc", "/proc", "proc", None),
        ("sysfs", "/sys", "sysfs", None),
        ("devtmpfs", "/dev", "devtmpfs", Some("mode=0755")),
        ("tmpfs", "/tmp", "tmpfs", Some("mode=1777")),
    ];
    for (source, target, fstype, data) in table {
        let _ = nix::unistd::mkdir(target, Mode::from_bits_truncate(0o755));
        mount(Some(source), target, Some(fstype), MsFlags::MS_NOSUID, data)
            .map_err(|e| Failure::Runtime(format!("mounting {fstype} on {target}: {e}")))?;
    }
    Ok(())
}

fn load_module(path: &str) -> Result<(), Failure> {
    let file =
        File::open(path).map_err(|e| Failure::Runtime(format!("opening module {path}: {e}")))?;
    let no_params = CString::default();
    match finit_module(&file, &no_params, ModuleInitFlags::empty()) {
        // Already there (built in, or loaded as another module's dependency): fine.
        Ok(()) | Err(nix::Error::EEXIST) => Ok(()),
        Err(e) => Err(Failure::Runtime(format!("loading module {path}: {e}"))),
    }
}

/// Loopback and `dev` up with `cidr`, through the image's busybox: the guest's network is QEMU's
/// user-mode network, so an address on the link is all the host's forwards need.
fn network(dev: &str, cidr: &str) -> Result<(), Failure> {
    let (addr, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| Failure::Runtime(format!("bad address {cidr:?} in {}", vmconf::PATH)))?;
    let prefix: u32 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| Failure::Runtime(format!("bad prefix in {cidr:?}")))?;
    let mask = netmask(prefix);
    run_tool("/bin/ifconfig", &["lo", "127.0.0.1", "up"])?;
    run_tool("/bin/ifconfig", &[dev, addr, "netmask", &mask, "up"])
}

fn netmask(prefix: u32) -> String {
    let bits: u32 = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    std::net::Ipv4Addr::from(bits).to_string()
}

fn mount_disk(dev: &str, at: &str) -> Result<(), Failure> {
    std::fs::create_dir_all(at).map_err(|e| Failure::Runtime(format!("creating {at}: {e}")))?;
    mount(Some(dev), at, Some("ext4"), MsFlags::empty(), None::<&str>)
        .map_err(|e| Failure::Runtime(format!("mounting {dev} (ext4) on {at}: {e}")))
}

fn run_tool(program: &str, args: &[&str]) -> Result<(), Failure> {
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| Failure::Runtime(format!("running {program}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Runtime(format!(
            "{program} {} failed: {status}",
            args.join(" ")
        )))
    }
}

/// Flushes and powers the machine off (QEMU then exits). Returns only if that fails.
fn power_off(code: i32) -> AppletResult {
    nix::unistd::sync();
    let err = match reboot(RebootMode::RB_POWER_OFF) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    eprintln!("cvm-guest init: power off failed: {err}");
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_in_use_is_total_minus_available() {
        let text = "MemTotal:         500000 kB\nMemFree:  1 kB\nMemAvailable:     400000 kB\n";
        assert_eq!(memory_used(text), Some(100_000 * 1024));
        assert_eq!(memory_used("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn the_task_count_is_read_from_loadavg() {
        assert_eq!(tasks_in_loadavg("0.00 0.01 0.05 1/87 123\n"), Some(87));
        assert_eq!(tasks_in_loadavg("0.00 0.01"), None);
    }

    #[test]
    fn prefixes_become_netmasks() {
        assert_eq!(netmask(24), "255.255.255.0");
        assert_eq!(netmask(32), "255.255.255.255");
        assert_eq!(netmask(0), "0.0.0.0");
    }
}
