//! The vocabulary of the `isolation` scenario: the aggressor kinds of the noisy-neighbour
//! experiment, the containment probes, the namespaces and sensitive paths the audit looks at, and
//! the command lines of the three applets that run inside (`aggressor`, `audit`, `contain`).
//! The host writes those command lines from the structs here and the guest reads them back with
//! the same parsers, so the two sides cannot disagree on what a host fact means.
//!
//! One rule keeps the containment probes off the bare host: `contain` runs only when init told
//! it, through [`ISOLATED_ENV`], that it is PID 1 of an instance (a container's PID namespace, a
//! sandbox, a VM), and its parent is that PID 1. Native runs its workload with no init at all.

use std::ffi::OsString;

use crate::applet::Applet;
use crate::args::ArgError;
use crate::metric::Metric;

named_enum! {
    /// What the aggressor instance does beside the victim, for as long as it is asked to.
    pub enum Aggressor {
        /// Spins an integer loop on one thread per CPU it may run on.
        Cpu => "cpu",
        /// Streams writes over a working set larger than the last-level cache.
        Memory => "memory",
        /// Appends small blocks and fsyncs each, on the instance's io storage.
        Io => "io",
        /// Forks children that exit at once, as fast as it can, up to the pids limit.
        Fork => "fork",
    }
}

impl Aggressor {
    /// The victim's p99 beside this aggressor over its p99 alone.
    pub const fn p99_ratio(self) -> Metric {
        match self {
            Aggressor::Cpu => Metric::NoisyCpuP99Ratio,
            Aggressor::Memory => Metric::NoisyMemoryP99Ratio,
            Aggressor::Io => Metric::NoisyIoP99Ratio,
            Aggressor::Fork => Metric::NoisyForkP99Ratio,
        }
    }

    /// The victim's achieved rate beside this aggressor over the offered rate.
    pub const fn rate_ratio(self) -> Metric {
        match self {
            Aggressor::Cpu => Metric::NoisyCpuRateRatio,
            Aggressor::Memory => Metric::NoisyMemoryRateRatio,
            Aggressor::Io => Metric::NoisyIoRateRatio,
            Aggressor::Fork => Metric::NoisyForkRateRatio,
        }
    }

    /// The aggressor's own work done, per second (its unit is the metric's).
    pub const fn work(self) -> Metric {
        match self {
            Aggressor::Cpu => Metric::NoisyCpuWork,
            Aggressor::Memory => Metric::NoisyMemoryWork,
            Aggressor::Io => Metric::NoisyIoWork,
            Aggressor::Fork => Metric::NoisyForkWork,
        }
    }
}

named_enum! {
    /// One containment attempt of the `contain` applet, in the order it runs them (memory
    /// exhaustion last: on some backends it ends the whole instance).
    pub enum Probe {
        /// `/proc/sysrq-trigger` opened for writing (nothing is ever written).
        Sysrq => "sysrq",
        /// A `/proc/sys/kernel/*` file opened for writing (nothing is ever written).
        Sysctl => "sysctl",
        /// `init_module` of an empty image (a kernel that gets that far refuses it as no ELF).
        KernelModule => "kernel_module",
        /// `kexec_load` with one segment too many (a kernel that gets that far refuses it).
        Kexec => "kexec",
        /// A node for the host's root disk, opened read-only (nothing is read).
        Device => "device",
        /// The host's root disk mounted read-only (unmounted at once if it ever succeeds).
        MountHostDisk => "mount_host_disk",
        /// `PTRACE_SEIZE` of a host process (cvm itself; detached at once if it succeeds).
        Ptrace => "ptrace",
        /// Children forked until fork fails (all killed afterwards).
        ForkBomb => "fork_bomb",
        /// Memory touched until the instance's OOM killer ends it (in a child process).
        Memory => "memory",
    }
}

impl Probe {
    pub const fn metric(self) -> Metric {
        match self {
            Probe::Sysrq => Metric::ContainSysrq,
            Probe::Sysctl => Metric::ContainSysctl,
            Probe::KernelModule => Metric::ContainKernelModule,
            Probe::Kexec => Metric::ContainKexec,
            Probe::Device => Metric::ContainDevice,
            Probe::MountHostDisk => Metric::ContainMountHostDisk,
            Probe::Ptrace => Metric::ContainPtrace,
            Probe::ForkBomb => Metric::ContainForkBomb,
            Probe::Memory => Metric::ContainMemory,
        }
    }

    /// What the attempt is, in a few words, for reports.
    pub const fn attempt(self) -> &'static str {
        match self {
            Probe::Sysrq => "write /proc/sysrq-trigger",
            Probe::Sysctl => "write /proc/sys/kernel/*",
            Probe::KernelModule => "load a kernel module",
            Probe::Kexec => "kexec_load a new kernel",
            Probe::Device => "open the host's disk device",
            Probe::MountHostDisk => "mount the host's disk",
            Probe::Ptrace => "ptrace a host process",
            Probe::ForkBomb => "fork bomb",
            Probe::Memory => "exhaust memory",
        }
    }
}

/// The environment variable init sets, as PID 1 of an instance, for the workload it starts: the
/// `contain` applet refuses to run without it.
pub const ISOLATED_ENV: &str = "CVM_ISOLATED";
/// Its value.
pub const ISOLATED_VALUE: &str = "pid1";

/// The namespaces the audit compares with the host's, by their `/proc/PID/ns` names.
pub const NAMESPACES: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// Paths a container runtime masks (OCI's and Docker's defaults): kernel memory, keys, timers
/// and firmware a workload has no business reading. Masking binds `/dev/null` over a file or an
/// empty read-only tmpfs over a directory.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths a container runtime makes read-only (OCI's and Docker's defaults): the host kernel's
/// knobs that `/proc` shows even inside a PID namespace.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn invalid(name: &'static str, value: impl Into<String>) -> ArgError {
    ArgError::Invalid {
        name,
        value: value.into(),
    }
}

/// `cvm-guest aggressor`'s command line.
#[derive(Debug, Clone, PartialEq)]
pub struct AggressorArgs {
    pub kind: Aggressor,
    /// How long it runs, then reports its work and exits (`--seconds`, 0.1 to 3600).
    pub seconds: f64,
    /// Where the `io` aggressor writes (`--dir`, default `/tmp`: the host gives it a disk there
    /// by the io scenario's storage rule).
    pub dir: String,
    /// The `memory` aggressor's working set in MiB (`--mib`, default 64).
    pub mib: u64,
}

impl AggressorArgs {
    pub fn parse(args: &[OsString]) -> Result<AggressorArgs, ArgError> {
        let p = Applet::Aggressor.parse(args)?;
        let kind = p.value("kind").ok_or(ArgError::MissingValue("kind"))?;
        let kind = Aggressor::from_name(kind).ok_or_else(|| invalid("kind", kind))?;
        let a = AggressorArgs {
            kind,
            seconds: p.number("seconds", 5.0)?,
            dir: p.value("dir").unwrap_or("/tmp").to_string(),
            mib: p.number("mib", 64)?,
        };
        if !(a.seconds.is_finite() && (0.1..=3600.0).contains(&a.seconds)) {
            return Err(invalid("seconds", format!("{} (0.1 to 3600)", a.seconds)));
        }
        if !(1..=65536).contains(&a.mib) {
            return Err(invalid("mib", format!("{} (1 to 65536)", a.mib)));
        }
        Ok(a)
    }

    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--kind".into(),
            self.kind.name().into(),
            "--seconds".into(),
            self.seconds.to_string(),
            "--dir".into(),
            self.dir.clone(),
            "--mib".into(),
            self.mib.to_string(),
        ]
    }
}

/// What the host tells the `audit` applet about itself, to compare with what it sees inside.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditArgs {
    /// The host kernel's `/proc/sys/kernel/random/boot_id`.
    pub host_boot_id: String,
    /// The host kernel's release (`uname -r`).
    pub host_release: String,
    /// The host's namespaces (init's), as `name:inode` pairs (`--host-ns pid:4026531836,...`).
    pub host_namespaces: Vec<(String, u64)>,
}

impl AuditArgs {
    pub fn parse(args: &[OsString]) -> Result<AuditArgs, ArgError> {
        let p = Applet::Audit.parse(args)?;
        let mut a = AuditArgs {
            host_boot_id: p.value("host-boot-id").unwrap_or_default().to_string(),
            host_release: p.value("host-release").unwrap_or_default().to_string(),
            host_namespaces: Vec::new(),
        };
        for pair in p.value("host-ns").unwrap_or_default().split(',') {
            if pair.is_empty() {
                continue;
            }
            let (name, inode) = pair
                .split_once(':')
                .and_then(|(n, i)| Some((n, i.parse::<u64>().ok()?)))
                .ok_or_else(|| invalid("host-ns", pair))?;
            a.host_namespaces.push((name.to_string(), inode));
        }
        Ok(a)
    }

    pub fn to_args(&self) -> Vec<String> {
        let ns: Vec<String> = self
            .host_namespaces
            .iter()
            .map(|(n, i)| format!("{n}:{i}"))
            .collect();
        vec![
            "--host-boot-id".into(),
            self.host_boot_id.clone(),
            "--host-release".into(),
            self.host_release.clone(),
            "--host-ns".into(),
            ns.join(","),
        ]
    }
}

/// What the host tells the `contain` applet: the targets of its attempts and the limits they
/// must run into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainArgs {
    /// The host kernel's boot id: an attempt that reaches a kernel with another one reached
    /// the instance's own kernel, not the host's.
    pub host_boot_id: String,
    /// A host process to try to trace (cvm itself).
    pub host_pid: u32,
    /// The host's root disk, `MAJOR:MINOR`.
    pub host_disk: (u32, u32),
    /// Its filesystem type, for the mount attempt.
    pub host_fstype: String,
    /// The instance's memory limit in MiB: the memory probe stops by itself at twice this.
    pub memory_mib: u64,
    /// The instance's pids limit: the fork bomb stops by itself at [`ContainArgs::fork_cap`].
    pub pids: u64,
    /// Start at this attempt, skipping those before it (`--from`): the host's way to go on
    /// after an attempt that ended the whole instance.
    pub from: Option<Probe>,
}

impl ContainArgs {
    /// The most children the fork bomb ever makes, limit or not: far above any pids limit it
    /// is meant to hit, far below what would trouble a host.
    pub fn fork_cap(&self) -> u64 {
        (self.pids.saturating_mul(4)).clamp(64, 4096)
    }

    pub fn parse(args: &[OsString]) -> Result<ContainArgs, ArgError> {
        let p = Applet::Contain.parse(args)?;
        let disk = p.value("host-disk").unwrap_or("0:0");
        let host_disk = disk
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| invalid("host-disk", disk))?;
        let a = ContainArgs {
            host_boot_id: p.value("host-boot-id").unwrap_or_default().to_string(),
            host_pid: p.number("host-pid", 0)?,
            host_disk,
            host_fstype: p.value("host-fstype").unwrap_or("ext4").to_string(),
            memory_mib: p.number("memory-mib", 256)?,
            pids: p.number("pids", 128)?,
            from: match p.value("from") {
                None => None,
                Some(name) => Some(Probe::from_name(name).ok_or_else(|| invalid("from", name))?),
            },
        };
        if a.host_pid == 0 {
            return Err(ArgError::MissingValue("host-pid"));
        }
        if !(1..=65536).contains(&a.memory_mib) {
            return Err(invalid("memory-mib", a.memory_mib.to_string()));
        }
        if !(1..=65536).contains(&a.pids) {
            return Err(invalid("pids", a.pids.to_string()));
        }
        Ok(a)
    }

    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--host-boot-id".into(),
            self.host_boot_id.clone(),
            "--host-pid".into(),
            self.host_pid.to_string(),
            "--host-disk".into(),
            format!("{}:{}", self.host_disk.0, self.host_disk.1),
            "--host-fstype".into(),
            self.host_fstype.clone(),
            "--memory-mib".into(),
            self.memory_mib.to_string(),
            "--pids".into(),
            self.pids.to_string(),
        ]
        .into_iter()
        .chain(
            self.from
                .iter()
                .flat_map(|p| ["--from".to_string(), p.name().to_string()]),
        )
        .collect()
    }

    /// The attempts this command line runs, in order.
    pub fn probes(&self) -> impl Iterator<Item = Probe> + '_ {
        let start = self
            .from
            .map_or(0, |f| Probe::ALL.iter().position(|p| *p == f).unwrap_or(0));
        Probe::ALL[start..].iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: Vec<String>) -> Vec<OsString> {
        v.into_iter().map(OsString::from).collect()
    }

    #[test]
    fn each_aggressor_and_probe_has_its_own_metrics() {
        let mut seen = Vec::new();
        for &a in Aggressor::ALL {
            seen.extend([a.p99_ratio(), a.rate_ratio(), a.work()]);
        }
        for &p in Probe::ALL {
            seen.push(p.metric());
            assert!(p.metric().name().ends_with(p.name()), "{p}");
        }
        let n = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), n);
        assert_eq!(Probe::ALL.last(), Some(&Probe::Memory), "memory runs last");
    }

    #[test]
    fn command_lines_round_trip() {
        let a = AggressorArgs {
            kind: Aggressor::Io,
            seconds: 4.5,
            dir: "/data".into(),
            mib: 80,
        };
        assert_eq!(AggressorArgs::parse(&os(a.to_args())).unwrap(), a);
        let audit = AuditArgs {
            host_boot_id: "f74b-x".into(),
            host_release: "6.18.0".into(),
            host_namespaces: vec![("pid".into(), 4026531836), ("net".into(), 4026531840)],
        };
        assert_eq!(AuditArgs::parse(&os(audit.to_args())).unwrap(), audit);
        let c = ContainArgs {
            host_boot_id: "b".into(),
            host_pid: 4242,
            host_disk: (254, 0),
            host_fstype: "ext4".into(),
            memory_mib: 256,
            pids: 128,
            from: None,
        };
        assert_eq!(ContainArgs::parse(&os(c.to_args())).unwrap(), c);
        assert_eq!(c.fork_cap(), 512);
        assert_eq!(c.probes().count(), Probe::ALL.len());
        let later = ContainArgs {
            from: Some(Probe::Memory),
            ..c
        };
        assert_eq!(ContainArgs::parse(&os(later.to_args())).unwrap(), later);
        assert_eq!(later.probes().collect::<Vec<_>>(), [Probe::Memory]);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(AggressorArgs::parse(&words(&["--seconds", "1"])).is_err());
        assert!(AggressorArgs::parse(&words(&["--kind", "disk"])).is_err());
        assert!(AggressorArgs::parse(&words(&["--kind", "cpu", "--seconds", "0"])).is_err());
        assert!(AuditArgs::parse(&words(&["--host-ns", "pid=1"])).is_err());
        assert!(ContainArgs::parse(&words(&["--host-disk", "254:0"])).is_err());
        assert!(ContainArgs::parse(&words(&["--host-pid", "9", "--host-disk", "x"])).is_err());
        assert!(ContainArgs::parse(&words(&["--host-pid", "9", "--pids", "0"])).is_err());
        assert!(ContainArgs::parse(&words(&["--host-pid", "9", "--from", "x"])).is_err());
    }
}
