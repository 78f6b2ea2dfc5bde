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
        /// A bare fork+exec of the same binary, timed the same way (native, `hello`).
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
        /// Bytes on disk of the backend's whole stack.
        DiskFootprint => "disk_footprint",
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
        /// CPU time the cpu workload took (reported by the guest).
        CpuTime => "cpu_time",
        MemBandwidthCopy => "mem_bandwidth_copy",
        MemBandwidthTriad => "mem_bandwidth_triad",
        IoWriteBandwidth => "io_write_bandwidth",
        IoFsyncLatencyP50 => "io_fsync_latency_p50",
        IoFsyncLatencyP99 => "io_fsync_latency_p99",
        /// The port the http workload listens on (reported by the guest).
        HttpPort => "http_port",
    }
}

impl Metric {
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
            Metric::HttpPort | Metric::LoadClientCpu => Unit::One,
        }
    }
}

/// Above this `load_client_cpu` a load phase is client-bound: its figures may be the client's
/// limit rather than the server's, and the summary and report say so.
pub const CLIENT_BOUND_SHARE: f64 = 0.9;

/// The unit of a figure, as written in `samples.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Seconds,
    Bytes,
    PerSecond,
    BytesPerSecond,
    Count,
    /// A dimensionless number (a port, a share).
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
    /// A point of an instance's startup, observed by the host (`spawn`, `firmware`, `kernel`) or
    /// announced by the guest (`init`, `workload`, `ready`). `phase.<point>` is the time from the
    /// previous observed point to this one, so a run's phases add up to its `ready_latency`.
    /// `ALL` is the order they happen in.
    pub enum Phase {
        /// The runtime's or QEMU's process exists (the clone or exec returned).
        Spawn => "spawn",
        /// A VM's firmware printed its first byte (vm-classic's SeaBIOS).
        Firmware => "firmware",
        /// A VM's kernel printed its banner.
        Kernel => "kernel",
        /// `cvm-guest init` runs.
        Init => "init",
        /// init starts the workload.
        Workload => "workload",
        /// The workload is ready.
        Ready => "ready",
    }
}

/// Prefix of the per-phase duration metrics (`phase.kernel`).
pub const PHASE_PREFIX: &str = "phase.";

named_enum! {
    /// A layer of the "VM stack vs container stack" diagram that files on disk belong to. Each file
    /// is counted once, in the lowest layer that needs it; `ALL` runs bottom-up.
    pub enum Layer {
        /// QEMU, its shared libraries and firmware.
        Hypervisor => "hypervisor",
        /// The container runtime (cvm's own, runc, crun, Docker) or nothing for native.
        Runtime => "runtime",
        /// A VM's kernel and initramfs.
        GuestOs => "guest_os",
        /// Shared libraries and tools of the image (busybox).
        Libs => "libs",
        /// The workload's own binary.
        App => "app",
    }
}

impl Layer {
    /// The metric its bytes on disk are recorded as.
    pub fn metric(self) -> String {
        format!("{DISK_PREFIX}{}", self.name())
    }
}

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
    fn family_metrics_carry_their_prefix() {
        assert_eq!(Layer::GuestOs.metric(), "disk.guest_os");
        assert_eq!(Metric::IoWriteBandwidth.unit().symbol(), "B/s");
        assert_eq!(Metric::HttpRps.unit().symbol(), "1/s");
    }
}
