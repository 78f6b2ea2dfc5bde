//! `contain`: containment attempts from inside an instance, each one reported as contained or
//! not, with its evidence (the errno, or what happened). Every attempt is made so that it would
//! do no harm even where it succeeds: files are opened and never written, the module image is
//! empty, kexec gets one segment too many, the host's disk is mounted read-only and unmounted
//! at once, a traced process is never stopped, the fork bomb and the memory hog stop at twice
//! or four times the instance's limit and are killed afterwards.
//!
//! It runs only where init said, as PID 1 of the instance, that there is an instance around it
//! (`CVM_ISOLATED`), and as init's child: never as a plain process on the host, whatever the
//! host asks. An attempt that reaches a kernel is contained only when that kernel is the
//! instance's own (a VM's, the Sentry's): the host's boot id, given on the command line, tells.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use cvm_proto::isolation::{ContainArgs, Probe, ISOLATED_ENV, ISOLATED_VALUE};
use cvm_proto::Marker;
use nix::errno::Errno;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::markers::Markers;
use crate::sys::{probe_syscall, UNMAPPED};
use crate::{AppletResult, Failure};

/// `cvm-guest contain --help`.
pub const USAGE: &str = "usage: cvm-guest contain --host-pid P --host-disk MAJ:MIN \
     [--host-fstype T] [--host-boot-id ID] [--memory-mib N] [--pids N] [--from PROBE]\n\n\
     Containment attempts, each reported as CVM:result contain_<probe> 1 (contained) or 0 after a\n\
     CVM:note with its evidence: write /proc/sysrq-trigger and /proc/sys/kernel/panic (opened,\n\
     never written), load an empty kernel module, kexec_load too many segments, open and mount\n\
     (read-only) the host's disk, ptrace the host process P, a fork bomb, memory exhaustion.\n\
     --from starts at that attempt. Runs only as the workload of an instance's PID 1 (cvm-guest\n\
     init sets CVM_ISOLATED).\n";

/// How long the fork bomb stays at its limit, so the host's checks (can it fork, does the
/// neighbour answer) overlap it.
const FORK_HOLD: Duration = Duration::from_millis(1500);
/// The sysctl the attempt opens for writing.
const SYSCTL: &str = "/proc/sys/kernel/panic";

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Something refused it: the errno.
    Refused(Errno),
    /// What it targets does not exist here (no such device, not visible).
    Absent(String),
    /// It reached a kernel (what happened); contained only if that kernel is the instance's.
    Reached(String),
    /// Decided by the attempt itself (fork bomb, memory), with its evidence.
    Judged { contained: bool, evidence: String },
}

impl Outcome {
    pub fn contained(&self, own_kernel: bool) -> bool {
        match self {
            Outcome::Refused(_) | Outcome::Absent(_) => true,
            Outcome::Reached(_) => own_kernel,
            Outcome::Judged { contained, .. } => *contained,
        }
    }

    pub fn evidence(&self, own_kernel: bool) -> String {
        match self {
            Outcome::Refused(e) => format!("refused: {e:?} ({})", e.desc()),
            Outcome::Absent(what) => format!("not reachable: {what}"),
            Outcome::Reached(what) if own_kernel => {
                format!("{what}, in the instance's own kernel (not the host's)")
            }
            Outcome::Reached(what) => format!("{what}, in the host's kernel"),
            Outcome::Judged { evidence, .. } => evidence.clone(),
        }
    }
}

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    let args = ContainArgs::parse(argv)?;
    inside_an_instance()?;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let own_kernel = boot_id.trim() != args.host_boot_id;
    markers.ready();
    for probe in args.probes() {
        let outcome = attempt(probe, &args);
        let contained = outcome.contained(own_kernel);
        let evidence = outcome.evidence(own_kernel);
        println!(
            "contain {probe}: {} — {evidence}",
            if contained {
                "contained"
            } else {
                "NOT contained"
            }
        );
        markers.emit(&Marker::Note {
            metric: probe.metric().name().to_string(),
            text: evidence,
        });
        markers.result(probe.metric(), f64::from(u8::from(contained)));
    }
    Ok(0)
}

/// The one permission the attempts run on: init, as PID 1 of an instance, set
/// [`ISOLATED_ENV`] and is this process's parent.
fn inside_an_instance() -> Result<(), Failure> {
    let told = std::env::var(ISOLATED_ENV).is_ok_and(|v| v == ISOLATED_VALUE);
    let parent_is_pid1 = nix::unistd::getppid().as_raw() == 1;
    if told && parent_is_pid1 {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "refusing to run containment attempts outside an instance: they run only as the \
         workload of an instance's init (PID 1 sets {ISOLATED_ENV}; here it is {}, and the \
         parent is PID {})",
        if told { "set" } else { "not set" },
        nix::unistd::getppid()
    )))
}

fn attempt(probe: Probe, args: &ContainArgs) -> Outcome {
    match probe {
        Probe::Sysrq => open_for_writing("/proc/sysrq-trigger"),
        Probe::Sysctl => open_for_writing(SYSCTL),
        Probe::KernelModule => kernel_call(
            // An empty image: a kernel that gets past its privilege check refuses it as no ELF.
            probe_syscall(nix::libc::SYS_init_module, [0, 0, UNMAPPED, 0, 0, 0]),
            "the module loader answered",
        ),
        Probe::Kexec => kernel_call(
            // KEXEC_SEGMENT_MAX + 1 segments: refused (EINVAL) right after the privilege check.
            probe_syscall(nix::libc::SYS_kexec_load, [0, 17, UNMAPPED, 0, 0, 0]),
            "kexec_load answered",
        ),
        Probe::Device => host_disk(args, |node| {
            OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(node)
                .map(drop)
                .map_err(io_errno)
        }),
        Probe::MountHostDisk => host_disk(args, |node| mount_read_only(node, &args.host_fstype)),
        Probe::Ptrace => ptrace(args.host_pid),
        Probe::ForkBomb => fork_bomb(args),
        Probe::Memory => exhaust_memory(args),
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// Opened for writing (and closed at once, nothing written) or refused.
fn open_for_writing(path: &str) -> Outcome {
    match OpenOptions::new().write(true).open(path) {
        Ok(_) => Outcome::Reached(format!("{path} opened for writing (nothing written)")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Outcome::Absent(format!("{path} does not exist"))
        }
        Err(e) => Outcome::Refused(io_errno(e)),
    }
}

/// A call that either a privilege check or filter refuses (EPERM, ENOSYS) or a kernel answers.
fn kernel_call(answer: Result<usize, Errno>, reached: &str) -> Outcome {
    match answer {
        Err(e @ (Errno::EPERM | Errno::ENOSYS | Errno::EACCES)) => Outcome::Refused(e),
        Err(e) => Outcome::Reached(format!("{reached} {e:?}")),
        Ok(_) => Outcome::Reached(format!("{reached} with success")),
    }
}

/// Makes a node for the host's disk (in `/dev`, else `/tmp`), runs `with` on it, removes it.
fn host_disk(args: &ContainArgs, with: impl Fn(&str) -> Result<(), Errno>) -> Outcome {
    let (major, minor) = args.host_disk;
    let name = format!(".cvm-hostdisk-{}", std::process::id());
    let mut made = Err(Errno::ENOENT);
    let mut node = String::new();
    for dir in ["/dev", "/tmp"] {
        node = format!("{dir}/{name}");
        let dev = makedev(u64::from(major), u64::from(minor));
        made = mknod(
            node.as_str(),
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o600),
            dev,
        );
        if made.is_ok() {
            break;
        }
    }
    if let Err(e) = made {
        return Outcome::Refused(e);
    }
    let result = with(&node);
    let _ = std::fs::remove_file(&node);
    match result {
        Ok(()) => Outcome::Reached(format!("the host's disk {major}:{minor} was opened")),
        Err(e @ (Errno::ENXIO | Errno::ENODEV | Errno::ENOENT | Errno::ENOTBLK)) => {
            Outcome::Absent(format!("no device {major}:{minor} here ({e:?})"))
        }
        Err(e @ (Errno::EPERM | Errno::EACCES | Errno::EROFS | Errno::ENOSYS)) => {
            Outcome::Refused(e)
        }
        Err(e) => Outcome::Reached(format!(
            "the kernel tried the device {major}:{minor} ({e:?})"
        )),
    }
}

/// Mounts `node` read-only on a fresh directory and unmounts it at once.
fn mount_read_only(node: &str, fstype: &str) -> Result<(), Errno> {
    use nix::mount::{mount, umount, MsFlags};
    let target = format!("/tmp/.cvm-mnt-{}", std::process::id());
    std::fs::create_dir_all(&target).map_err(io_errno)?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mounted = mount(
        Some(node),
        target.as_str(),
        Some(fstype),
        flags,
        None::<&str>,
    );
    if mounted.is_ok() {
        let _ = umount(target.as_str());
    }
    let _ = std::fs::remove_dir(&target);
    mounted
}

/// `PTRACE_SEIZE` of the host's process: never stopped; released when this process exits.
fn ptrace(pid: u32) -> Outcome {
    let Ok(raw) = i32::try_from(pid) else {
        return Outcome::Absent(format!("pid {pid} out of range"));
    };
    let target = nix::unistd::Pid::from_raw(raw);
    match nix::sys::ptrace::seize(target, nix::sys::ptrace::Options::empty()) {
        Ok(()) => {
            let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
            if ns(&pid.to_string()).is_some() && ns(&pid.to_string()) == ns("self") {
                Outcome::Absent(format!("pid {pid} here is a process of this instance"))
            } else {
                Outcome::Reached(format!("host pid {pid} was seized for tracing"))
            }
        }
        Err(Errno::ESRCH) => Outcome::Absent(format!("host pid {pid} is not visible (ESRCH)")),
        Err(e) => Outcome::Refused(e),
    }
}

/// Children that wait, forked until fork fails or the probe's cap; held there a moment, then
/// all killed and reaped.
fn fork_bomb(args: &ContainArgs) -> Outcome {
    let cap = usize::try_from(args.fork_cap()).unwrap_or(4096);
    let mut children = Vec::new();
    let failed = loop {
        if children.len() >= cap {
            break None;
        }
        match crate::sys::fork_paused_child() {
            Ok(pid) => children.push(pid),
            Err(e) => break Some(e),
        }
    };
    let at_limit = children.len();
    // Keep pressing on the limit while the host checks that it can still fork.
    let until = Instant::now() + FORK_HOLD;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
        if children.len() < cap {
            if let Ok(pid) = crate::sys::fork_paused_child() {
                children.push(pid);
            }
        }
    }
    for &pid in &children {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    for &pid in &children {
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    let limit = args.pids;
    match failed {
        Some(e) => Outcome::Judged {
            contained: true,
            evidence: format!(
                "fork failed with {e:?} after {at_limit} children (pids limit {limit})"
            ),
        },
        None => Outcome::Judged {
            contained: false,
            evidence: format!(
                "{at_limit} children (the probe's own cap) without reaching a limit (pids limit \
                 {limit})"
            ),
        },
    }
}

/// A child touches memory, a MiB at a time, telling its parent each MiB, until it is killed or
/// has touched twice the instance's limit.
fn exhaust_memory(args: &ContainArgs) -> Outcome {
    let cap = args.memory_mib.saturating_mul(2);
    let (read_end, write_end) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::Refused(e),
    };
    // SAFETY: the applet is single-threaded (init forked it and it starts no thread), as
    // `fork_single_threaded` requires.
    let child = match unsafe { crate::sys::fork_single_threaded() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(read_end);
            let mut held: Vec<Vec<u8>> = Vec::new();
            for mib in 1..=cap {
                held.push(vec![0xA5; 1 << 20]);
                let _ = nix::unistd::write(&write_end, &(mib as u32).to_le_bytes());
            }
            std::process::exit(0);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Outcome::Refused(e),
    };
    drop(write_end);
    let mut last = 0u32;
    let mut buf = [0u8; 4];
    let mut reader = std::fs::File::from(read_end);
    while reader.read_exact(&mut buf).is_ok() {
        last = u32::from_le_bytes(buf);
    }
    let limit = args.memory_mib;
    match nix::sys::wait::waitpid(child, None) {
        Ok(nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)) => {
            Outcome::Judged {
                contained: true,
                evidence: format!("OOM-killed after {last} MiB (memory limit {limit} MiB)"),
            }
        }
        Ok(status) => Outcome::Judged {
            contained: false,
            evidence: format!(
                "touched {last} MiB, twice the {limit} MiB limit, without being stopped ({status:?})"
            ),
        },
        Err(e) => Outcome::Refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reached_kernel_is_contained_only_when_it_is_the_instances_own() {
        let reached = Outcome::Reached("kexec_load answered EINVAL".into());
        assert!(!reached.contained(false));
        assert!(reached.contained(true));
        assert!(reached.evidence(false).contains("host's kernel"));
        assert!(reached.evidence(true).contains("own kernel"));
        let refused = Outcome::Refused(Errno::EPERM);
        assert!(refused.contained(false));
        assert!(
            refused.evidence(false).contains("EPERM"),
            "{}",
            refused.evidence(false)
        );
        assert!(Outcome::Absent("no device".into()).contained(false));
        assert_eq!(
            kernel_call(Err(Errno::ENOEXEC), "the module loader answered"),
            Outcome::Reached("the module loader answered ENOEXEC".into())
        );
        assert_eq!(
            kernel_call(Err(Errno::ENOSYS), "x"),
            Outcome::Refused(Errno::ENOSYS)
        );
    }

    /// The guard that keeps the attempts off the bare host: a test process is no instance's
    /// workload (its parent is cargo's test runner, not PID 1), whatever its environment says.
    #[test]
    fn the_attempts_refuse_to_run_outside_an_instance() {
        std::env::set_var(ISOLATED_ENV, ISOLATED_VALUE);
        let refused = inside_an_instance();
        std::env::remove_var(ISOLATED_ENV);
        match refused {
            Err(Failure::Usage(msg)) => assert!(msg.contains("outside an instance"), "{msg}"),
            other => panic!("ran outside an instance: {other:?}"),
        }
        let markers = Markers::disabled();
        let argv: Vec<OsString> = ["--host-pid", "1", "--host-disk", "254:0"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(matches!(run(&markers, &argv), Err(Failure::Usage(_))));
    }
}
