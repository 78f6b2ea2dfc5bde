//! The applets of `cvm-guest` and their command lines: the names a scenario may use, the options
//! each accepts, and the arguments the host itself needs to understand (where the io applet
//! writes, whether a workload finishes by itself). The guest runs these applets; the host
//! validates a scenario's arguments against the same option tables and reads them with the same
//! parser, so a form the guest accepts (`--dir=/data`) is never misread by the host.

use std::ffi::OsString;

use crate::args::{self, ArgError, Opt, Parsed};

/// Where `cvm-guest` lives inside every image.
pub const GUEST_PATH: &str = "/bin/cvm-guest";

named_enum! {
    /// One entry point of the multi-call `cvm-guest` binary, by the name it is called by (first
    /// argument, or `argv[0]`'s basename); `ALL` is the order `cvm-guest --help` lists them in.
    pub enum Applet {
        /// PID 1 of a container or VM: announces itself, finishes the instance, runs the workload.
        Init => "init",
        /// Writes ready and exits: the startup floor.
        Hello => "hello",
        /// Writes ready and sleeps until stopped.
        Idle => "idle",
        /// An HTTP/1.1 keep-alive server.
        Http => "http",
        /// Fixed integer work; reports a score.
        Cpu => "cpu",
        /// Holds memory resident, or measures memory bandwidth.
        Mem => "mem",
        /// Sequential write bandwidth and fsync latency.
        Io => "io",
        /// Exits 3 after a delay (fault tests).
        Crash => "crash",
        /// Never writes ready (fault tests).
        NeverReady => "never-ready",
        /// A noisy neighbour: spins, streams memory, fsyncs or forks for a while; reports its
        /// work (the isolation scenario).
        Aggressor => "aggressor",
        /// Reads the instance's attack surface from inside and reports it, then waits until
        /// stopped (the isolation scenario).
        Audit => "audit",
        /// Containment attempts, each refused or not, with its evidence; runs only as the
        /// workload of an instance's PID 1 (the isolation scenario).
        Contain => "contain",
    }
}

impl Applet {
    /// The applets a scenario may run as its workload (all but `init`, which runs them).
    pub fn workloads() -> impl Iterator<Item = Applet> {
        Applet::ALL.iter().copied().filter(|a| *a != Applet::Init)
    }

    /// The options a workload applet accepts (`init` parses its own command line, which ends
    /// in another applet's).
    pub const fn options(self) -> &'static [Opt] {
        const HTTP: &[Opt] = &[
            Opt::value("port"),
            Opt::value("body"),
            Opt::value("bind"),
            Opt::value(HTTP_LISTEN_DELAY_OPTION),
        ];
        const CPU: &[Opt] = &[Opt::value("iterations")];
        const MEM: &[Opt] = &[Opt::value("mib"), Opt::switch("bandwidth")];
        const IO: &[Opt] = &[
            Opt::value("dir"),
            Opt::value("mib"),
            Opt::value("fsyncs"),
            Opt::value("block"),
        ];
        const CRASH: &[Opt] = &[Opt::value("after-ms"), Opt::switch("ready")];
        const HELLO: &[Opt] = &[Opt::value(HELLO_DELAY_OPTION)];
        const AGGRESSOR: &[Opt] = &[
            Opt::value("kind"),
            Opt::value("seconds"),
            Opt::value("dir"),
            Opt::value("mib"),
        ];
        const AUDIT: &[Opt] = &[
            Opt::value("host-boot-id"),
            Opt::value("host-release"),
            Opt::value("host-ns"),
        ];
        const CONTAIN: &[Opt] = &[
            Opt::value("host-boot-id"),
            Opt::value("host-pid"),
            Opt::value("host-disk"),
            Opt::value("host-fstype"),
            Opt::value("memory-mib"),
            Opt::value("pids"),
            Opt::value("from"),
        ];
        match self {
            Applet::Hello => HELLO,
            Applet::Init | Applet::Idle | Applet::NeverReady => &[],
            Applet::Http => HTTP,
            Applet::Cpu => CPU,
            Applet::Mem => MEM,
            Applet::Io => IO,
            Applet::Crash => CRASH,
            Applet::Aggressor => AGGRESSOR,
            Applet::Audit => AUDIT,
            Applet::Contain => CONTAIN,
        }
    }

    /// Parses `args` (after the applet's name) against its options.
    pub fn parse(self, args: &[OsString]) -> Result<Parsed, ArgError> {
        args::parse(args, self.options())
    }

    /// Whether the workload finishes by itself (and reports results) rather than serving until
    /// it is stopped; `None` when `args` do not parse.
    pub fn runs_to_completion(self, args: &[OsString]) -> Option<bool> {
        Some(match self {
            Applet::Hello
            | Applet::Cpu
            | Applet::Io
            | Applet::Crash
            | Applet::Aggressor
            | Applet::Contain => true,
            Applet::Mem => self.parse(args).ok()?.switch("bandwidth"),
            Applet::Init | Applet::Idle | Applet::Http | Applet::NeverReady | Applet::Audit => {
                false
            }
        })
    }
}

/// The io applet's command line: what it writes, and where. The host gives that directory a
/// disk of the instance's own (a host directory for containers, a virtio-blk disk for VMs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoArgs {
    /// The directory it writes to (`--dir`, default `/tmp`).
    pub dir: String,
    /// MiB written for the bandwidth figure (`--mib`, default 64, at least 1).
    pub mib: u64,
    /// Small durable writes for the fsync latency (`--fsyncs`, default 200).
    pub fsyncs: usize,
    /// Bytes per small write (`--block`, default 4096, 1 to [`IoArgs::MAX_BLOCK`]).
    pub block: usize,
}

impl IoArgs {
    /// Largest `--block`, far above any realistic log write, so the buffer allocation cannot
    /// fail.
    pub const MAX_BLOCK: usize = 64 << 20;

    pub fn parse(args: &[OsString]) -> Result<IoArgs, ArgError> {
        let parsed = Applet::Io.parse(args)?;
        let io = IoArgs {
            dir: parsed.value("dir").unwrap_or("/tmp").to_string(),
            mib: parsed.number("mib", 64)?,
            fsyncs: parsed.number("fsyncs", 200)?,
            block: parsed.number("block", 4096)?,
        };
        let invalid = |name: &'static str, value: String| ArgError::Invalid { name, value };
        if io.mib == 0 {
            return Err(invalid("mib", "0 (must be at least 1)".into()));
        }
        if io.block == 0 || io.block > IoArgs::MAX_BLOCK {
            return Err(invalid(
                "block",
                format!("{} (must be 1 to {})", io.block, IoArgs::MAX_BLOCK),
            ));
        }
        Ok(io)
    }
}

/// `cvm-guest init [init options] -- <workload>`: the command every container and VM starts
/// with, so init is PID 1 and the workload's start is observable the same way everywhere.
pub fn init_command(init_options: &[String], workload: &[String]) -> Vec<String> {
    let mut argv = vec![GUEST_PATH.to_string(), Applet::Init.name().to_string()];
    argv.extend(init_options.iter().cloned());
    argv.push("--".to_string());
    argv.extend(workload.iter().cloned());
    argv
}

/// The http applet's option that delays its `listen` by this many milliseconds: a server that
/// is slow to start, to check that readiness waits for the socket and not for the process.
pub const HTTP_LISTEN_DELAY_OPTION: &str = "listen-delay-ms";

/// The http applet's own count of requests served: a GET of this path answers the number of
/// other requests, so the load generator's count can be checked against the server's.
pub const HTTP_COUNT_PATH: &str = "/cvm/count";

/// The hello applet's option that waits this many milliseconds before it writes ready: a
/// known, real startup cost, so that a regression check can be shown to find one.
pub const HELLO_DELAY_OPTION: &str = "delay-ms";

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<OsString> {
        w.iter().map(OsString::from).collect()
    }

    #[test]
    fn names_round_trip_and_init_is_no_workload() {
        for &a in Applet::ALL {
            assert_eq!(Applet::from_name(a.name()), Some(a));
        }
        assert_eq!(Applet::from_name("bogus"), None);
        assert!(!Applet::workloads().any(|a| a == Applet::Init));
        assert_eq!(Applet::workloads().count(), Applet::ALL.len() - 1);
    }

    #[test]
    fn io_reads_both_option_forms_and_its_defaults() {
        let io = IoArgs::parse(&words(&["--dir=/data", "--mib", "8"])).unwrap();
        assert_eq!(io.dir, "/data");
        assert_eq!(io.mib, 8);
        let io = IoArgs::parse(&words(&["--dir", "/var/x"])).unwrap();
        assert_eq!((io.dir.as_str(), io.mib, io.fsyncs), ("/var/x", 64, 200));
        assert_eq!(IoArgs::parse(&[]).unwrap().dir, "/tmp");
    }

    #[test]
    fn io_refuses_what_the_applet_would_refuse() {
        assert!(IoArgs::parse(&words(&["--mib", "0"])).is_err());
        assert!(IoArgs::parse(&words(&["--block", "0"])).is_err());
        assert!(IoArgs::parse(&words(&["--size", "1"])).is_err());
    }

    #[test]
    fn completion_follows_the_applet_and_its_switches() {
        assert_eq!(Applet::Cpu.runs_to_completion(&[]), Some(true));
        assert_eq!(Applet::Http.runs_to_completion(&[]), Some(false));
        assert_eq!(Applet::Mem.runs_to_completion(&[]), Some(false));
        assert_eq!(
            Applet::Mem.runs_to_completion(&words(&["--bandwidth"])),
            Some(true)
        );
        assert_eq!(Applet::Mem.runs_to_completion(&words(&["--nope"])), None);
    }
}
