//! The names of what cvm measures, with their units: the figures the host records and the ones a
//! workload reports itself (`CVM:result`), the startup phase points and the disk layers. Samples
//! are stored as text (`samples.csv` is read by pandas and by older cvm versions), so every name
//! here has one spelling, defined once and used by the guest, the recorder and the report.
//!
//! Units are SI base units: seconds, bytes, `1/s`, or `count`.

use std::fmt;

named_enum! {
    /// A figure with a fixed name and unit.
    pub enum Metric {
        /// Launch began → workload ready.
        ReadyLatency => "ready_latency",
        /// How long readiness waited on the host's probe once the inside saw LISTEN: the
        /// probe's first success minus init's inside observation of the port, or zero when the
        /// probe succeeded first. Never negative (it is the `probe` phase of a server).
        ReadyProbeDelay => "ready_probe_delay",
        /// The host probe's first success minus the inside observation of LISTEN, signed: how
        /// far apart the two observers saw the same readiness. Negative when the host's answer
        /// came first (the inside observation reached the host later: init's poll, a VM's
        /// serial console), which [`Metric::ReadyProbeDelay`] counts as zero.
        ReadyProbeSkew => "ready_probe_skew",
        /// Host readiness probe requests that went out and gave up unanswered: a slow server
        /// may still serve (and count) them later, during the load phase.
        ReadyProbesUnanswered => "ready_probes_unanswered",
        /// `ready_latency` of a backend's first launch of an image built in the same run (its
        /// files never read before: cold in every cache).
        FirstLaunch => "first_launch",
        /// The same binary started by native's own spawn, without cgroup or event threads,
        /// timed the same way (native, `hello`).
        LaunchFloor => "launch_floor",
        /// Stop and remove everything the instance created.
        TeardownLatency => "teardown_latency",
        /// PSS summed over every host process of the instance.
        MemoryPss => "memory_pss",
        /// `memory_pss` minus native's median in the same run.
        MemoryOverhead => "memory_overhead",
        /// The highest PSS sampled during the load phase.
        MemoryPssPeak => "memory_pss_peak",
        /// Memory charged to the instance's cgroup.
        MemoryCgroup => "memory_cgroup",
        /// Host `MemAvailable` drop per instance (density).
        MemoryHostDelta => "memory_host_delta",
        /// A VM's QEMU PSS without the mapping that backs guest RAM: the hypervisor's cost, the
        /// sum of `memory_vmm_base`, `memory_vmm_tcg` and `memory_vmm_boot`.
        MemoryVmm => "memory_vmm",
        /// What QEMU needs whatever the guest: `memory_vmm` less the translation cache and the
        /// boot images (its code, libraries, heap and device state).
        MemoryVmmBase => "memory_vmm_base",
        /// PSS of TCG's translated-code buffer inside `memory_vmm`: emulation only (a KVM guest
        /// has none), and it grows with the guest code that ran.
        MemoryVmmTcg => "memory_vmm_tcg",
        /// PSS of QEMU's copies of the guest kernel and initramfs inside `memory_vmm` (a file
        /// it maps, or a bzImage read into a buffer), kept for a reset.
        MemoryVmmBoot => "memory_vmm_boot",
        /// PSS of the mapping that backs a VM's RAM: host memory the guest has touched.
        MemoryGuestRam => "memory_guest_ram",
        /// The guest's own view of its use, `MemTotal - MemAvailable` (reported by its init).
        MemoryGuestUsed => "memory_guest_used",
        /// PSS of the process that stays resident to supervise the container in the deployment
        /// the backend stands for, inside `memory_pss`: containerd-shim (docker), the
        /// `cvm-runtime` waiter, measured apart once per run because cvm waits in-process
        /// (container). Absent where none is counted (runc, crun and gvisor run detached).
        MemorySupervisor => "memory_supervisor",
        /// PSS of the host-wide daemons a backend needs (dockerd, containerd), once per run:
        /// shared by every instance of the host, so never inside an instance's figure.
        MemoryDaemon => "memory_daemon",
        /// A private Docker daemon's start, from spawning dockerd to its first answer on its
        /// socket, once per run: a host-wide cost, never inside an instance's startup.
        DockerDaemonStart => "docker_daemon_start",
        /// Bytes on disk of the backend's whole stack: the sum of its `disk.<layer>` figures.
        /// Every file counts the whole blocks it allocates, and an executable or shared library
        /// what it takes installed, stripped of debug info and symbol tables, whoever built it.
        DiskFootprint => "disk_footprint",
        /// Bytes cvm keeps beside a stack only to start it faster (a VM's kernel decompressed
        /// for direct boot), in no layer and not in `disk_footprint`.
        DiskCache => "disk_cache",
        /// Responses per second during the load phase.
        HttpRps => "http_rps",
        HttpLatencyP50 => "http_latency_p50",
        HttpLatencyP90 => "http_latency_p90",
        HttpLatencyP99 => "http_latency_p99",
        HttpLatencyMax => "http_latency_max",
        /// Responses the client counted.
        HttpRequests => "http_requests",
        /// The client's errors.
        HttpErrors => "http_errors",
        /// Open loop: requests scheduled before the phase's deadline that had no answer by
        /// then (in flight, or never sent because their connection still waited on an earlier
        /// one). Each is in the latency percentiles too, charged the deadline.
        HttpUnanswered => "http_unanswered",
        /// The server's own count over the same phase.
        HttpServerRequests => "http_server_requests",
        /// The load client's CPU time over the load phase, as a share of the CPUs it was given
        /// (1 = every client CPU busy throughout).
        LoadClientCpu => "load_client_cpu",
        /// PSS of all running instances divided by their number (density).
        DensityPssPerInstance => "density_pss_per_instance",
        /// Time to start all N instances (density).
        DensityLaunchAll => "density_launch_all",
        /// One per failed run; the reason is in the sample's note.
        RunFailed => "run_failed",
        /// Iterations per second of the cpu workload (reported by the guest).
        CpuScore => "cpu_score",
        /// CPU time the cpu workload took (reported by the guest, on the guest's clock).
        CpuTime => "cpu_time",
        /// The same interval stamped by the host: the workload's `CVM:ready` (right before its
        /// timed work) to its first `CVM:result` (right after), both on arrival.
        CpuTimeHost => "cpu_time_host",
        /// `cpu_time / cpu_time_host - 1`: how far the guest's clock is from the host's over
        /// the workload's own interval (beyond ±2 % the report trusts the host's figure).
        GuestClockError => "guest_clock_error",
        MemBandwidthCopy => "mem_bandwidth_copy",
        MemBandwidthTriad => "mem_bandwidth_triad",
        IoWriteBandwidth => "io_write_bandwidth",
        IoFsyncLatencyP50 => "io_fsync_latency_p50",
        IoFsyncLatencyP99 => "io_fsync_latency_p99",
        /// The port the http workload listens on (reported by the guest).
        HttpPort => "http_port",
        /// App scenarios (a real program and its own standard client, parsed by `cvm`): Redis
        /// GET requests per second, as `redis-benchmark` counts them.
        RedisGetRps => "redis_get_rps",
        /// `redis-benchmark`'s median GET latency.
        RedisGetLatencyP50 => "redis_get_latency_p50",
        RedisGetLatencyP99 => "redis_get_latency_p99",
        /// Redis SET requests per second.
        RedisSetRps => "redis_set_rps",
        RedisSetLatencyP50 => "redis_set_latency_p50",
        RedisSetLatencyP99 => "redis_set_latency_p99",
        /// Requests `redis-benchmark` completed over its tests (GET and SET together).
        RedisRequests => "redis_requests",
        /// Redis's own count over the same client run: the change in `INFO stats`
        /// `total_commands_processed`, less the `INFO` command itself.
        RedisServerCommands => "redis_server_commands",
        /// PostgreSQL: transactions per second of the timed `pgbench` run.
        PgbenchTps => "pgbench_tps",
        /// `pgbench`'s average transaction latency.
        PgbenchLatencyAvg => "pgbench_latency_avg",
        /// Transactions `pgbench` reports processed.
        PgbenchTransactions => "pgbench_transactions",
        /// PostgreSQL's own count over the same run: the change in `pg_stat_database`'s
        /// `xact_commit` for the benchmark's database.
        PgServerCommits => "pg_server_commits",
        /// nginx: requests per second `wrk` counted over its timed run (the cross-check of
        /// cvm's own load, `http_rps`, against a client users know).
        WrkRps => "wrk_rps",
        /// `wrk`'s median latency.
        WrkLatencyP50 => "wrk_latency_p50",
        WrkLatencyP99 => "wrk_latency_p99",
        /// Requests `wrk` completed.
        WrkRequests => "wrk_requests",
        /// nginx's own count over the same `wrk` run: the change in `stub_status`'s requests,
        /// less the status request itself.
        NginxServerRequests => "nginx_server_requests",
        /// `fio` on the instance's io storage: 4 KiB random reads per second.
        FioRandreadIops => "fio_randread_iops",
        /// The 99th percentile completion latency of those reads.
        FioRandreadP99 => "fio_randread_p99",
        /// 4 KiB random writes per second.
        FioRandwriteIops => "fio_randwrite_iops",
        FioRandwriteP99 => "fio_randwrite_p99",
        /// Sequential 1 MiB writes, bytes per second.
        FioSeqwriteBandwidth => "fio_seqwrite_bandwidth",
        /// 1 when `fio` ran with direct I/O (`O_DIRECT`), 0 when the storage refused it and it
        /// ran buffered: the figures mean different things, so it is recorded with them.
        FioDirect => "fio_direct",
        /// `sysbench cpu`: events (prime searches) per second, one thread.
        SysbenchCpuEvents => "sysbench_cpu_events",
        /// `sysbench memory`: bytes written per second, one thread.
        SysbenchMemoryBandwidth => "sysbench_memory_bandwidth",
        /// Noisy neighbour: the rate the victim sustained alone in its closed-loop calibration.
        NoisyCalibratedRate => "noisy_calibrated_rate",
        /// Noisy neighbour: the open-loop rate offered to the victim in every phase (a share
        /// of `noisy_calibrated_rate`).
        NoisyOfferedRate => "noisy_offered_rate",
        /// Noisy neighbour: the victim's p99 latency alone at the offered rate.
        NoisyAloneP99 => "noisy_alone_p99",
        /// Noisy neighbour: the victim's achieved rate alone over the offered rate.
        NoisyAloneRateRatio => "noisy_alone_rate_ratio",
        /// The victim's p99 beside a `cpu` aggressor over its p99 alone.
        NoisyCpuP99Ratio => "noisy_cpu_p99_ratio",
        /// The victim's achieved rate beside a `cpu` aggressor over the offered rate.
        NoisyCpuRateRatio => "noisy_cpu_rate_ratio",
        /// The `cpu` aggressor's own work: loop iterations per second, all its threads.
        NoisyCpuWork => "noisy_cpu_work",
        NoisyMemoryP99Ratio => "noisy_memory_p99_ratio",
        NoisyMemoryRateRatio => "noisy_memory_rate_ratio",
        /// The `memory` aggressor's own work: bytes written per second.
        NoisyMemoryWork => "noisy_memory_work",
        NoisyIoP99Ratio => "noisy_io_p99_ratio",
        NoisyIoRateRatio => "noisy_io_rate_ratio",
        /// The `io` aggressor's own work: fsync'd writes per second.
        NoisyIoWork => "noisy_io_work",
        NoisyForkP99Ratio => "noisy_fork_p99_ratio",
        NoisyForkRateRatio => "noisy_fork_rate_ratio",
        /// The `fork` aggressor's own work: processes forked (and reaped) per second.
        NoisyForkWork => "noisy_fork_work",
        /// Containment (1 contained, 0 not; the evidence in the sample's note): a fork bomb
        /// stopped by the instance's pids limit, the host still forking, the neighbour serving.
        ContainForkBomb => "contain_fork_bomb",
        /// Memory exhaustion ended by the instance's own OOM killer, the host's untouched.
        ContainMemory => "contain_memory",
        /// `/proc/sysrq-trigger` cannot be opened for writing.
        ContainSysrq => "contain_sysrq",
        /// Loading a kernel module (`init_module`) does not reach the host kernel's loader.
        ContainKernelModule => "contain_kernel_module",
        /// Mounting the host's root disk is refused.
        ContainMountHostDisk => "contain_mount_host_disk",
        /// `kexec_load` does not reach the host kernel.
        ContainKexec => "contain_kexec",
        /// A device node for the host's disk cannot be opened.
        ContainDevice => "contain_device",
        /// A host `/proc/sys/kernel/*` file cannot be opened for writing.
        ContainSysctl => "contain_sysctl",
        /// A process outside the instance cannot be traced.
        ContainPtrace => "contain_ptrace",
        /// Attack surface (read from inside): 1 when the kernel is the host's (same release and
        /// boot id), 0 for a kernel of its own (a VM's, gVisor's Sentry).
        AuditKernelShared => "audit_kernel_shared",
        /// Namespaces (of cgroup, ipc, mnt, net, pid, time, user, uts) that are the host's.
        AuditNamespacesShared => "audit_namespaces_shared",
        /// 1 when root inside is root on the host kernel (no user namespace mapping, same kernel).
        AuditRootIsHostRoot => "audit_root_is_host_root",
        /// Capabilities in the effective set.
        AuditCapEffective => "audit_cap_effective",
        /// Capabilities in the bounding set.
        AuditCapBounding => "audit_cap_bounding",
        /// 1 when `CAP_SYS_ADMIN` is in the effective set.
        AuditCapSysAdmin => "audit_cap_sys_admin",
        /// The seccomp mode (0 none, 1 strict, 2 filter).
        AuditSeccompMode => "audit_seccomp_mode",
        /// 1 when `no_new_privs` is set.
        AuditNoNewPrivs => "audit_no_new_privs",
        /// System calls of the fixed list probed.
        AuditSyscallsProbed => "audit_syscalls_probed",
        /// Of those, how many reached a kernel (answered by the kernel's own argument checks,
        /// not refused with EPERM/ENOSYS by a filter).
        AuditSyscallsReachingKernel => "audit_syscalls_reaching_kernel",
        /// Sensitive paths (of a fixed list) masked inside.
        AuditMaskedPaths => "audit_masked_paths",
        /// Sensitive paths (of a fixed list) read-only inside.
        AuditReadonlyPaths => "audit_readonly_paths",
        /// Device nodes in `/dev`.
        AuditDeviceNodes => "audit_device_nodes",
        /// 1 when a Linux security module confines the workload (a label other than unconfined).
        AuditLsmConfined => "audit_lsm_confined",
        /// A VM's emulated devices as its guest sees them (PCI, virtio, legacy PnP): the device
        /// models of the VMM a guest can reach.
        AuditVmmDevices => "audit_vmm_devices",
        /// Read on the host: how many system calls of the x86-64 table the host kernel accepts
        /// from the process that issues the instance's system calls (the workload, gVisor's
        /// Sentry, QEMU), as its seccomp filters allow.
        AuditHostSyscalls => "audit_host_syscalls",
        /// Read on the host: 1 when the VMM runs with its own seccomp sandbox (`-sandbox on`).
        AuditVmmSandbox => "audit_vmm_sandbox",
    }
}

impl Metric {
    pub const fn unit(self) -> Unit {
        match self {
            Metric::ReadyLatency
            | Metric::ReadyProbeDelay
            | Metric::ReadyProbeSkew
            | Metric::FirstLaunch
            | Metric::LaunchFloor
            | Metric::TeardownLatency
            | Metric::HttpLatencyP50
            | Metric::HttpLatencyP90
            | Metric::HttpLatencyP99
            | Metric::HttpLatencyMax
            | Metric::DensityLaunchAll
            | Metric::CpuTime
            | Metric::CpuTimeHost
            | Metric::IoFsyncLatencyP50
            | Metric::IoFsyncLatencyP99
            | Metric::DockerDaemonStart
            | Metric::NoisyAloneP99
            | Metric::RedisGetLatencyP50
            | Metric::RedisGetLatencyP99
            | Metric::RedisSetLatencyP50
            | Metric::RedisSetLatencyP99
            | Metric::PgbenchLatencyAvg
            | Metric::WrkLatencyP50
            | Metric::WrkLatencyP99
            | Metric::FioRandreadP99
            | Metric::FioRandwriteP99 => Unit::Seconds,
            Metric::MemoryPss
            | Metric::MemoryOverhead
            | Metric::MemoryPssPeak
            | Metric::MemoryCgroup
            | Metric::MemoryHostDelta
            | Metric::MemoryVmm
            | Metric::MemoryVmmBase
            | Metric::MemoryVmmTcg
            | Metric::MemoryVmmBoot
            | Metric::MemoryGuestRam
            | Metric::MemoryGuestUsed
            | Metric::MemoryDaemon
            | Metric::MemorySupervisor
            | Metric::DiskFootprint
            | Metric::DiskCache
            | Metric::DensityPssPerInstance => Unit::Bytes,
            Metric::HttpRps
            | Metric::CpuScore
            | Metric::NoisyCalibratedRate
            | Metric::NoisyOfferedRate
            | Metric::NoisyCpuWork
            | Metric::NoisyIoWork
            | Metric::NoisyForkWork
            | Metric::RedisGetRps
            | Metric::RedisSetRps
            | Metric::PgbenchTps
            | Metric::WrkRps
            | Metric::FioRandreadIops
            | Metric::FioRandwriteIops
            | Metric::SysbenchCpuEvents => Unit::PerSecond,
            Metric::MemBandwidthCopy
            | Metric::MemBandwidthTriad
            | Metric::IoWriteBandwidth
            | Metric::NoisyMemoryWork
            | Metric::FioSeqwriteBandwidth
            | Metric::SysbenchMemoryBandwidth => Unit::BytesPerSecond,
            Metric::HttpRequests
            | Metric::HttpErrors
            | Metric::HttpUnanswered
            | Metric::HttpServerRequests
            | Metric::RedisRequests
            | Metric::RedisServerCommands
            | Metric::PgbenchTransactions
            | Metric::PgServerCommits
            | Metric::WrkRequests
            | Metric::NginxServerRequests
            | Metric::ReadyProbesUnanswered
            | Metric::RunFailed
            | Metric::AuditNamespacesShared
            | Metric::AuditCapEffective
            | Metric::AuditCapBounding
            | Metric::AuditSyscallsProbed
            | Metric::AuditSyscallsReachingKernel
            | Metric::AuditMaskedPaths
            | Metric::AuditReadonlyPaths
            | Metric::AuditDeviceNodes
            | Metric::AuditVmmDevices
            | Metric::AuditHostSyscalls => Unit::Count,
            Metric::HttpPort
            | Metric::GuestClockError
            | Metric::LoadClientCpu
            | Metric::NoisyAloneRateRatio
            | Metric::NoisyCpuP99Ratio
            | Metric::NoisyCpuRateRatio
            | Metric::NoisyMemoryP99Ratio
            | Metric::NoisyMemoryRateRatio
            | Metric::NoisyIoP99Ratio
            | Metric::NoisyIoRateRatio
            | Metric::NoisyForkP99Ratio
            | Metric::NoisyForkRateRatio
            | Metric::ContainForkBomb
            | Metric::ContainMemory
            | Metric::ContainSysrq
            | Metric::ContainKernelModule
            | Metric::ContainMountHostDisk
            | Metric::ContainKexec
            | Metric::ContainDevice
            | Metric::ContainSysctl
            | Metric::ContainPtrace
            | Metric::AuditKernelShared
            | Metric::AuditRootIsHostRoot
            | Metric::AuditCapSysAdmin
            | Metric::AuditSeccompMode
            | Metric::AuditNoNewPrivs
            | Metric::AuditLsmConfined
            | Metric::AuditVmmSandbox
            | Metric::FioDirect => Unit::One,
        }
    }
}

/// Above this `load_client_cpu` a load phase is client-bound: its figures may be the client's
/// limit rather than the server's, and the summary and report say so.
pub const CLIENT_BOUND_SHARE: f64 = 0.9;

/// The throughput figures a report answers "throughput kept" with, as a share of native's (all
/// higher-is-better), in the order a run's first one present is taken: cvm's own workloads', then
/// an app scenario's own client's headline figure.
pub const THROUGHPUT_KEPT: [Metric; 8] = [
    Metric::HttpRps,
    Metric::CpuScore,
    Metric::MemBandwidthTriad,
    Metric::IoWriteBandwidth,
    Metric::RedisGetRps,
    Metric::PgbenchTps,
    Metric::FioRandreadIops,
    Metric::SysbenchCpuEvents,
];

/// The unit of a figure, as written in `samples.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Seconds,
    Bytes,
    PerSecond,
    BytesPerSecond,
    Count,
    /// A dimensionless number (a port, a ratio, a share).
    One,
}

impl Unit {
    pub const fn symbol(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Bytes => "B",
            Unit::PerSecond => "1/s",
            Unit::BytesPerSecond => "B/s",
            Unit::Count => "count",
            Unit::One => "1",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

named_enum! {
    /// A phase of an instance's startup, named for what happens in it and charged to the same
    /// layer on every backend. Each ends at one observed point (stamped on the host's clock on
    /// arrival) and starts where the previous observed phase ended, so the phases a backend has
    /// add up to its `ready_latency`. `ALL` is the order they happen in; a backend has a subset.
    pub enum Phase {
        /// Launch began → the instance's first process is in its cgroup (the `cgroup.procs`
        /// write, stamped by the child itself): native and cvm's container.
        CgroupJoin => "cgroup_join",
        /// → init has finished the instance and reports `CVM:configured`: namespaces, rootfs,
        /// capabilities, network, and whatever a runtime (runc, Docker) does before it execs init.
        Runtime => "runtime",
        /// Launch began → QEMU is up (started paused with `-S`) and QMP `cont` is sent.
        VmmStart => "vmm_start",
        /// `cont` → the guest kernel's first console output (SeaBIOS and the boot loader on
        /// vm-classic; almost nothing with PVH direct boot).
        Firmware => "firmware",
        /// Kernel entry → init runs (`CVM:init`).
        Kernel => "kernel",
        /// init runs → it has mounted, loaded modules, configured the network
        /// (`CVM:configured`), in a VM.
        GuestInit => "guest_init",
        /// The workload is started → it is ready as seen from inside the instance: its
        /// `CVM:ready`, or init's `CVM:listening` for a server.
        WorkloadStart => "workload_start",
        /// Inside readiness → the host's probe has succeeded too (servers only).
        Probe => "probe",
    }
}

/// Prefix of the per-phase duration metrics (`phase.kernel`).
pub const PHASE_PREFIX: &str = "phase.";

named_enum! {
    /// A layer of the "VM stack vs container stack" diagram that files on disk belong to. Each file
    /// is counted once, in the lowest layer that needs it; `ALL` runs bottom-up. Every layer
    /// counts an executable or shared library as installed, stripped (see `disk_footprint`).
    pub enum Layer {
        /// QEMU, its shared libraries, the modules it loads and the firmware and option ROMs
        /// it reads for the machine.
        Hypervisor => "hypervisor",
        /// The container runtime's binaries and their shared libraries (`cvm-runtime`, runc,
        /// crun, Docker's CLI, daemons, shim, runc and init); nothing for native.
        Runtime => "runtime",
        /// A sandbox's user-space kernel: gVisor's Sentry, which is the `runsc` binary itself
        /// (with its gofer), counted as the standalone binary a user installs.
        UserSpaceKernel => "user_space_kernel",
        /// A VM's guest OS: its kernel as installed (the bzImage, or the minimal kernel's
        /// vmlinux) and its initramfs's own bytes: the kernel modules, init's configuration, device
        /// nodes, links and the archive's headers, less the image's app and libraries it packs,
        /// which count in their own layers as on a container.
        GuestOs => "guest_os",
        /// Shared libraries and tools of the image (busybox, a bring-your-own binary's
        /// libraries), on every backend alike.
        Libs => "libs",
        /// The workload's own binary (`cvm-guest`, which is also init), on every backend alike.
        App => "app",
    }
}

impl Layer {
    /// The metric its bytes on disk are recorded as.
    pub fn metric(self) -> String {
        format!("{DISK_PREFIX}{}", self.name())
    }
}

/// Which way a figure gets better, so a change can be called a regression or an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Better {
    /// Latency, memory, disk, errors: less is better.
    Lower,
    /// Throughput, scores, bandwidth: more is better.
    Higher,
    /// Neither (a port number, a signed bias): a change is only a change.
    Neither,
}

impl Metric {
    /// Which way this figure gets better. Derived from the unit (time and bytes are costs,
    /// rates are throughput) except where a count is work done rather than a fault.
    pub const fn better(self) -> Better {
        match self {
            Metric::HttpRequests
            | Metric::HttpServerRequests
            | Metric::RedisRequests
            | Metric::RedisServerCommands
            | Metric::PgbenchTransactions
            | Metric::PgServerCommits
            | Metric::WrkRequests
            | Metric::NginxServerRequests => Better::Higher,
            // A signed difference between two observers: neither way is better.
            Metric::HttpPort | Metric::ReadyProbeSkew => Better::Neither,
            // Isolation: a ratio near 1 and a contained attempt are better; the aggressor's
            // work and the offered rate are context, neither good nor bad.
            Metric::NoisyCpuP99Ratio
            | Metric::NoisyMemoryP99Ratio
            | Metric::NoisyIoP99Ratio
            | Metric::NoisyForkP99Ratio
            | Metric::AuditKernelShared
            | Metric::AuditRootIsHostRoot
            | Metric::AuditCapSysAdmin => Better::Lower,
            Metric::NoisyAloneRateRatio
            | Metric::NoisyCpuRateRatio
            | Metric::NoisyMemoryRateRatio
            | Metric::NoisyIoRateRatio
            | Metric::NoisyForkRateRatio
            | Metric::ContainForkBomb
            | Metric::ContainMemory
            | Metric::ContainSysrq
            | Metric::ContainKernelModule
            | Metric::ContainMountHostDisk
            | Metric::ContainKexec
            | Metric::ContainDevice
            | Metric::ContainSysctl
            | Metric::ContainPtrace
            | Metric::AuditSeccompMode
            | Metric::AuditNoNewPrivs
            | Metric::AuditMaskedPaths
            | Metric::AuditReadonlyPaths
            | Metric::AuditLsmConfined
            | Metric::AuditVmmSandbox => Better::Higher,
            Metric::NoisyOfferedRate
            | Metric::NoisyCpuWork
            | Metric::NoisyMemoryWork
            | Metric::NoisyIoWork
            | Metric::NoisyForkWork
            | Metric::AuditSyscallsProbed => Better::Neither,
            _ => match self.unit() {
                Unit::Seconds | Unit::Bytes | Unit::Count => Better::Lower,
                Unit::PerSecond | Unit::BytesPerSecond => Better::Higher,
                Unit::One => Better::Neither,
            },
        }
    }
}

/// Which way a recorded metric name gets better: the families (`phase.*`, `disk.*`, density at
/// N) follow their unit's rule, names this cvm does not know are [`Better::Neither`].
pub fn better_by_name(name: &str) -> Better {
    let base = name
        .split_once(PER_INSTANCES_SEPARATOR)
        .map_or(name, |(m, _)| m);
    if let Some(m) = Metric::from_name(base) {
        return m.better();
    }
    if base.starts_with(PHASE_PREFIX) || base.starts_with(DISK_PREFIX) {
        return Better::Lower;
    }
    Better::Neither
}

/// How a summary names a density figure at N instances running (`density_pss_per_instance@n=3`):
/// density samples carry N in their `iteration`, and are summarised at each N.
pub fn per_instances(metric: &str, n: u32) -> String {
    format!("{metric}{PER_INSTANCES_SEPARATOR}{n}")
}

/// What joins a metric and its N in [`per_instances`].
pub const PER_INSTANCES_SEPARATOR: &str = "@n=";

/// Prefix of the per-layer disk metrics (`disk.guest_os`).
pub const DISK_PREFIX: &str = "disk.";

named_enum! {
    /// A figure of one step of a rate sweep (`[load] rates`), recorded as
    /// `rate.<offered requests/s>.<figure>`.
    pub enum SweepFigure {
        /// Responses per second achieved at the offered rate.
        Rps => "rps",
        /// Latency from each request's intended send time.
        LatencyP50 => "latency_p50",
        LatencyP99 => "latency_p99",
        /// Requests scheduled before the deadline and unanswered by it (charged the deadline
        /// in the percentiles).
        Unanswered => "unanswered",
    }
}

/// Prefix of the rate sweep's metrics (`rate.20000.latency_p99`).
pub const RATE_PREFIX: &str = "rate.";

impl SweepFigure {
    /// The metric this figure is recorded as at offered rate `rate`.
    pub fn metric(self, rate: f64) -> String {
        format!("{RATE_PREFIX}{rate}.{}", self.name())
    }

    /// The offered rate and figure of a sweep metric's name.
    pub fn parse(metric: &str) -> Option<(f64, SweepFigure)> {
        let (rate, figure) = metric.strip_prefix(RATE_PREFIX)?.rsplit_once('.')?;
        Some((rate.parse().ok()?, SweepFigure::from_name(figure)?))
    }

    pub const fn unit(self) -> Unit {
        match self {
            SweepFigure::Rps => Unit::PerSecond,
            SweepFigure::LatencyP50 | SweepFigure::LatencyP99 => Unit::Seconds,
            SweepFigure::Unanswered => Unit::Count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_metrics_round_trip_with_their_rate() {
        assert_eq!(
            SweepFigure::LatencyP99.metric(20000.0),
            "rate.20000.latency_p99"
        );
        assert_eq!(
            SweepFigure::parse("rate.2500.5.rps"),
            Some((2500.5, SweepFigure::Rps))
        );
        assert_eq!(SweepFigure::parse("rate.x.rps"), None);
        assert_eq!(SweepFigure::parse("phase.kernel"), None);
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        for &m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
        for &p in Phase::ALL {
            assert_eq!(Phase::from_name(p.name()), Some(p));
        }
        for &l in Layer::ALL {
            assert_eq!(Layer::from_name(l.name()), Some(l));
        }
    }

    #[test]
    fn direction_follows_the_unit_and_the_families() {
        assert_eq!(Metric::ReadyLatency.better(), Better::Lower);
        assert_eq!(Metric::MemoryPss.better(), Better::Lower);
        assert_eq!(Metric::HttpRps.better(), Better::Higher);
        assert_eq!(Metric::IoWriteBandwidth.better(), Better::Higher);
        assert_eq!(Metric::HttpErrors.better(), Better::Lower);
        assert_eq!(Metric::HttpRequests.better(), Better::Higher);
        assert_eq!(Metric::HttpPort.better(), Better::Neither);
        assert_eq!(better_by_name("phase.kernel"), Better::Lower);
        assert_eq!(better_by_name("disk.guest_os"), Better::Lower);
        assert_eq!(
            better_by_name(&per_instances("density_pss_per_instance", 4)),
            Better::Lower
        );
        assert_eq!(better_by_name("something_new"), Better::Neither);
        // Isolation: contained and undisturbed are better, a bigger surface worse, the
        // aggressor's own work is context.
        assert_eq!(Metric::ContainSysctl.better(), Better::Higher);
        assert_eq!(Metric::NoisyCpuP99Ratio.better(), Better::Lower);
        assert_eq!(Metric::NoisyCpuRateRatio.better(), Better::Higher);
        assert_eq!(Metric::AuditHostSyscalls.better(), Better::Lower);
        assert_eq!(Metric::AuditSyscallsReachingKernel.better(), Better::Lower);
        assert_eq!(Metric::AuditMaskedPaths.better(), Better::Higher);
        assert_eq!(Metric::NoisyMemoryWork.better(), Better::Neither);
        assert_eq!(Metric::NoisyMemoryWork.unit(), Unit::BytesPerSecond);
    }

    #[test]
    fn family_metrics_carry_their_prefix() {
        assert_eq!(Layer::GuestOs.metric(), "disk.guest_os");
        assert_eq!(Metric::IoWriteBandwidth.unit().symbol(), "B/s");
        assert_eq!(Metric::HttpRps.unit().symbol(), "1/s");
    }
}
