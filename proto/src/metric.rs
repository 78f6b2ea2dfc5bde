//! The names of what cvm measures, with their units: the figures the host records and the ones a
//! workload reports itself (`CVM:result`), the startup phase points and the disk layers. Samples
//! are stored as text (`samples.csv` is read by pandas and by older cvm versions), so every name
//! here has one spelling, defined once and used by the guest, the recorder and the report.
//!
//! Units are SI base units: seconds, bytes, `1/s`, or `count`.

use std::fmt;

/// A figure with a fixed name and unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Launch began → workload ready.
    ReadyLatency,
    /// A bare fork+exec of the same binary, timed the same way (native, `hello`).
    LaunchFloor,
    /// Stop and remove everything the instance created.
    TeardownLatency,
    /// PSS summed over every host process of the instance.
    MemoryPss,
    /// `memory_pss` minus native's median in the same run.
    MemoryOverhead,
    /// The highest PSS sampled during the load phase.
    MemoryPssPeak,
    /// Memory charged to the instance's cgroup.
    MemoryCgroup,
    /// Host `MemAvailable` drop per instance (density).
    MemoryHostDelta,
    /// Bytes on disk of the backend's whole stack.
    DiskFootprint,
    /// Responses per second during the load phase.
    HttpRps,
    HttpLatencyP50,
    HttpLatencyP90,
    HttpLatencyP99,
    HttpLatencyMax,
    /// Responses the client counted.
    HttpRequests,
    /// The client's errors.
    HttpErrors,
    /// The server's own count over the same phase.
    HttpServerRequests,
    /// PSS of all running instances divided by their number (density).
    DensityPssPerInstance,
    /// Time to start all N instances (density).
    DensityLaunchAll,
    /// One per failed run; the reason is in the sample's note.
    RunFailed,
    /// Iterations per second of the cpu workload (reported by the guest).
    CpuScore,
    /// CPU time the cpu workload took (reported by the guest).
    CpuTime,
    MemBandwidthCopy,
    MemBandwidthTriad,
    IoWriteBandwidth,
    IoFsyncLatencyP50,
    IoFsyncLatencyP99,
    /// The port the http workload listens on (reported by the guest).
    HttpPort,
}

impl Metric {
    pub const ALL: [Metric; 28] = [
        Metric::ReadyLatency,
        Metric::LaunchFloor,
        Metric::TeardownLatency,
        Metric::MemoryPss,
        Metric::MemoryOverhead,
        Metric::MemoryPssPeak,
        Metric::MemoryCgroup,
        Metric::MemoryHostDelta,
        Metric::DiskFootprint,
        Metric::HttpRps,
        Metric::HttpLatencyP50,
        Metric::HttpLatencyP90,
        Metric::HttpLatencyP99,
        Metric::HttpLatencyMax,
        Metric::HttpRequests,
        Metric::HttpErrors,
        Metric::HttpServerRequests,
        Metric::DensityPssPerInstance,
        Metric::DensityLaunchAll,
        Metric::RunFailed,
        Metric::CpuScore,
        Metric::CpuTime,
        Metric::MemBandwidthCopy,
        Metric::MemBandwidthTriad,
        Metric::IoWriteBandwidth,
        Metric::IoFsyncLatencyP50,
        Metric::IoFsyncLatencyP99,
        Metric::HttpPort,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Metric::ReadyLatency => "ready_latency",
            Metric::LaunchFloor => "launch_floor",
            Metric::TeardownLatency => "teardown_latency",
            Metric::MemoryPss => "memory_pss",
            Metric::MemoryOverhead => "memory_overhead",
            Metric::MemoryPssPeak => "memory_pss_peak",
            Metric::MemoryCgroup => "memory_cgroup",
            Metric::MemoryHostDelta => "memory_host_delta",
            Metric::DiskFootprint => "disk_footprint",
            Metric::HttpRps => "http_rps",
            Metric::HttpLatencyP50 => "http_latency_p50",
            Metric::HttpLatencyP90 => "http_latency_p90",
            Metric::HttpLatencyP99 => "http_latency_p99",
            Metric::HttpLatencyMax => "http_latency_max",
            Metric::HttpRequests => "http_requests",
            Metric::HttpErrors => "http_errors",
            Metric::HttpServerRequests => "http_server_requests",
            Metric::DensityPssPerInstance => "density_pss_per_instance",
            Metric::DensityLaunchAll => "density_launch_all",
            Metric::RunFailed => "run_failed",
            Metric::CpuScore => "cpu_score",
            Metric::CpuTime => "cpu_time",
            Metric::MemBandwidthCopy => "mem_bandwidth_copy",
            Metric::MemBandwidthTriad => "mem_bandwidth_triad",
            Metric::IoWriteBandwidth => "io_write_bandwidth",
            Metric::IoFsyncLatencyP50 => "io_fsync_latency_p50",
            Metric::IoFsyncLatencyP99 => "io_fsync_latency_p99",
            Metric::HttpPort => "http_port",
        }
    }

    pub const fn unit(self) -> Unit {
        match self {
            Metric::ReadyLatency
            | Metric::LaunchFloor
            | Metric::TeardownLatency
            | Metric::HttpLatencyP50
            | Metric::HttpLatencyP90
            | Metric::HttpLatencyP99
            | Metric::HttpLatencyMax
            | Metric::DensityLaunchAll
            | Metric::CpuTime
            | Metric::IoFsyncLatencyP50
            | Metric::IoFsyncLatencyP99 => Unit::Seconds,
            Metric::MemoryPss
            | Metric::MemoryOverhead
            | Metric::MemoryPssPeak
            | Metric::MemoryCgroup
            | Metric::MemoryHostDelta
            | Metric::DiskFootprint
            | Metric::DensityPssPerInstance => Unit::Bytes,
            Metric::HttpRps | Metric::CpuScore => Unit::PerSecond,
            Metric::MemBandwidthCopy | Metric::MemBandwidthTriad | Metric::IoWriteBandwidth => {
                Unit::BytesPerSecond
            }
            Metric::HttpRequests
            | Metric::HttpErrors
            | Metric::HttpServerRequests
            | Metric::RunFailed => Unit::Count,
            Metric::HttpPort => Unit::One,
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The unit of a figure, as written in `samples.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Seconds,
    Bytes,
    PerSecond,
    BytesPerSecond,
    Count,
    /// A dimensionless number (a port).
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

/// A point of an instance's startup, observed by the host (`spawn`, `firmware`, `kernel`) or
/// announced by the guest (`init`, `workload`, `ready`). `phase.<point>` is the time from the
/// previous observed point to this one, so a run's phases add up to its `ready_latency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// The runtime's or QEMU's process exists (the clone or exec returned).
    Spawn,
    /// A VM's firmware printed its first byte (vm-classic's SeaBIOS).
    Firmware,
    /// A VM's kernel printed its banner.
    Kernel,
    /// `cvm-guest init` runs.
    Init,
    /// init starts the workload.
    Workload,
    /// The workload is ready.
    Ready,
}

impl Phase {
    /// In the order they happen.
    pub const ORDER: [Phase; 6] = [
        Phase::Spawn,
        Phase::Firmware,
        Phase::Kernel,
        Phase::Init,
        Phase::Workload,
        Phase::Ready,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Phase::Spawn => "spawn",
            Phase::Firmware => "firmware",
            Phase::Kernel => "kernel",
            Phase::Init => "init",
            Phase::Workload => "workload",
            Phase::Ready => "ready",
        }
    }

    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ORDER.into_iter().find(|p| p.name() == name)
    }

    /// The metric its duration is recorded as.
    pub fn metric(self) -> String {
        format!("{PHASE_PREFIX}{}", self.name())
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Prefix of the per-phase duration metrics (`phase.kernel`).
pub const PHASE_PREFIX: &str = "phase.";

/// A layer of the "VM stack vs container stack" diagram that files on disk belong to. Each file
/// is counted once, in the lowest layer that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// QEMU, its shared libraries and firmware.
    Hypervisor,
    /// The container runtime (cvm's own, runc, crun, Docker) or nothing for native.
    Runtime,
    /// A VM's kernel and initramfs.
    GuestOs,
    /// Shared libraries and tools of the image (busybox).
    Libs,
    /// The workload's own binary.
    App,
}

impl Layer {
    /// From the bottom of the stack to the top, the order they are stacked in.
    pub const BOTTOM_UP: [Layer; 5] = [
        Layer::Hypervisor,
        Layer::Runtime,
        Layer::GuestOs,
        Layer::Libs,
        Layer::App,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Layer::Hypervisor => "hypervisor",
            Layer::Runtime => "runtime",
            Layer::GuestOs => "guest_os",
            Layer::Libs => "libs",
            Layer::App => "app",
        }
    }

    pub fn from_name(name: &str) -> Option<Layer> {
        Layer::BOTTOM_UP.into_iter().find(|l| l.name() == name)
    }

    /// The metric its bytes on disk are recorded as.
    pub fn metric(self) -> String {
        format!("{DISK_PREFIX}{}", self.name())
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Prefix of the per-layer disk metrics (`disk.guest_os`).
pub const DISK_PREFIX: &str = "disk.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
        for p in Phase::ORDER {
            assert_eq!(Phase::from_name(p.name()), Some(p));
        }
        for l in Layer::BOTTOM_UP {
            assert_eq!(Layer::from_name(l.name()), Some(l));
        }
    }

    #[test]
    fn family_metrics_carry_their_prefix() {
        assert_eq!(Phase::Kernel.metric(), "phase.kernel");
        assert_eq!(Layer::GuestOs.metric(), "disk.guest_os");
        assert_eq!(Metric::IoWriteBandwidth.unit().symbol(), "B/s");
        assert_eq!(Metric::HttpRps.unit().symbol(), "1/s");
    }
}
