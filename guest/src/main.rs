//! `cvm-guest`: the one static binary cvm puts in every image.
//!
//! It is `init` (PID 1 of a container or VM) and every built-in workload, chosen like busybox by
//! the name it was started under (`/sbin/init`, a `hello` symlink) or by its first argument
//! (`cvm-guest http --port 8080`). One binary means one file to copy into each rootfs, and the
//! static C runtime lets it run in a rootfs with no `/lib`. Applets announce their progress with
//! marker lines (see [`markers`]); the host measures, the guest only reports events.
//!
//! Exit codes: 0 success, 1 runtime failure (also reported as a `CVM:error` marker), 2 bad
//! command line; `init` passes on its workload's code.

mod args;
mod container_init;
mod init;
mod markers;
mod signals;
mod sys;
mod vm_init;
mod watch;
mod workloads;

/// For unit tests that need something from the host: the same rule as every other test's.
#[cfg(test)]
#[path = "../../tests/common/host.rs"]
mod host;
#[cfg(test)]
pub(crate) use host::host_has;

use std::ffi::{OsStr, OsString};
use std::path::Path;

use cvm_proto::applet::Applet as AppletName;
use markers::Markers;

/// Why an applet stopped without doing its job.
#[derive(Debug)]
pub enum Failure {
    /// `--help`: print the applet's usage and exit 0.
    Help,
    /// A bad command line (exit 2).
    Usage(String),
    /// The environment let the applet down: a port in use, a read-only directory (exit 1).
    Runtime(String),
}

impl From<args::ArgError> for Failure {
    fn from(err: args::ArgError) -> Failure {
        match err {
            args::ArgError::Help => Failure::Help,
            other => Failure::Usage(other.to_string()),
        }
    }
}

/// What an applet returns: its exit code, or why it failed.
pub type AppletResult = Result<i32, Failure>;

/// One entry point of the multi-call binary.
pub struct Applet {
    /// The name it is called by (first argument or `argv[0]` basename).
    pub name: &'static str,
    /// One line for `cvm-guest --help`.
    pub summary: &'static str,
    /// Printed by `cvm-guest <applet> --help` and after a usage error.
    pub usage: &'static str,
    /// The applet itself, given the arguments after its name.
    pub run: fn(&Markers, &[OsString]) -> AppletResult,
}

/// Every applet, in the order `--help` lists them (the shared list's order).
pub const APPLETS: &[Applet] = &[
    Applet {
        name: AppletName::Init.name(),
        summary: "PID 1: announce, set up, then run the workload",
        usage: init::USAGE,
        run: init::run,
    },
    Applet {
        name: AppletName::Hello.name(),
        summary: "write ready and exit (startup floor)",
        usage: workloads::hello::USAGE,
        run: workloads::hello::run,
    },
    Applet {
        name: AppletName::Idle.name(),
        summary: "write ready, sleep until SIGTERM/SIGINT",
        usage: workloads::idle::USAGE,
        run: workloads::idle::run,
    },
    Applet {
        name: AppletName::Http.name(),
        summary: "HTTP/1.1 keep-alive server with a fixed-size body",
        usage: workloads::http::USAGE,
        run: workloads::http::run,
    },
    Applet {
        name: AppletName::Cpu.name(),
        summary: "fixed integer work, reports cpu_score",
        usage: workloads::cpu::USAGE,
        run: workloads::cpu::run,
    },
    Applet {
        name: AppletName::Mem.name(),
        summary: "hold N MiB resident, or measure memory bandwidth",
        usage: workloads::mem::USAGE,
        run: workloads::mem::run,
    },
    Applet {
        name: AppletName::Io.name(),
        summary: "sequential write bandwidth and fsync latency",
        usage: workloads::io::USAGE,
        run: workloads::io::run,
    },
    Applet {
        name: AppletName::Crash.name(),
        summary: "exit 3 after a delay (fault tests)",
        usage: workloads::faults::CRASH_USAGE,
        run: workloads::faults::crash,
    },
    Applet {
        name: AppletName::NeverReady.name(),
        summary: "never write ready; sleep until SIGTERM (fault tests)",
        usage: workloads::faults::NEVER_READY_USAGE,
        run: workloads::faults::never_ready,
    },
    Applet {
        name: AppletName::Aggressor.name(),
        summary: "noisy neighbour: cpu, memory, io or fork work for a while",
        usage: workloads::aggressor::USAGE,
        run: workloads::aggressor::run,
    },
    Applet {
        name: AppletName::Audit.name(),
        summary: "the instance's attack surface, read from inside",
        usage: workloads::audit::USAGE,
        run: workloads::audit::run,
    },
    Applet {
        name: AppletName::Contain.name(),
        summary: "containment attempts (only inside an instance)",
        usage: workloads::contain::USAGE,
        run: workloads::contain::run,
    },
];

/// The applet called `name`, if there is one.
pub fn find_applet(name: &str) -> Option<&'static Applet> {
    APPLETS.iter().find(|applet| applet.name == name)
}

fn main() {
    // First, before anything opens a file: see `Markers::from_env`.
    let markers = Markers::from_env();
    let argv: Vec<OsString> = std::env::args_os().collect();
    std::process::exit(dispatch(&markers, &argv));
}

fn dispatch(markers: &Markers, argv: &[OsString]) -> i32 {
    let invoked_as = argv
        .first()
        .and_then(|arg0| Path::new(arg0).file_name())
        .and_then(OsStr::to_str);
    if let Some(applet) = invoked_as.and_then(find_applet) {
        return run_applet(markers, applet, argv.get(1..).unwrap_or(&[]));
    }
    let Some(first) = argv.get(1) else {
        eprintln!("cvm-guest: no applet given\n\n{}", help_text());
        return 2;
    };
    match first.to_str() {
        Some("--help" | "-h" | "help") => {
            print!("{}", help_text());
            0
        }
        Some("--version" | "-V") => {
            println!("cvm-guest {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(name) => match find_applet(name) {
            Some(applet) => run_applet(markers, applet, &argv[2..]),
            None => {
                eprintln!("cvm-guest: unknown applet '{name}' (try 'cvm-guest --help')");
                2
            }
        },
        None => {
            eprintln!(
                "cvm-guest: unknown applet '{}' (try 'cvm-guest --help')",
                first.to_string_lossy()
            );
            2
        }
    }
}

fn run_applet(markers: &Markers, applet: &Applet, args: &[OsString]) -> i32 {
    match (applet.run)(markers, args) {
        Ok(code) => code,
        Err(Failure::Help) => {
            print!("{}", applet.usage);
            0
        }
        Err(Failure::Usage(msg)) => {
            markers.error(&format!("{}: {msg}", applet.name));
            eprintln!(
                "cvm-guest {}: {msg}\n{}",
                applet.name,
                applet.usage.trim_end()
            );
            2
        }
        Err(Failure::Runtime(msg)) => {
            markers.error(&format!("{}: {msg}", applet.name));
            eprintln!("cvm-guest {}: {msg}", applet.name);
            1
        }
    }
}

fn help_text() -> String {
    let mut text = String::from(
        "cvm-guest: cvm's in-guest init and workloads\n\n\
         usage: cvm-guest <applet> [options]   (or call a link named after the applet)\n\n\
         applets:\n",
    );
    for applet in APPLETS {
        text.push_str(&format!("  {:<12} {}\n", applet.name, applet.summary));
    }
    text.push_str(
        "\nMarkers (CVM:...) go to the descriptor in CVM_MARKER_FD (default 3) when it is open.\n\
         'cvm-guest <applet> --help' shows an applet's options.\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_applet_is_implemented_in_the_shared_order() {
        let names: Vec<&str> = APPLETS.iter().map(|a| a.name).collect();
        let shared: Vec<&str> = AppletName::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names, shared);
    }
}
