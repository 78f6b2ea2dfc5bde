//! The marker protocol: how `cvm-guest` tells the host where it is in its start-up.
//!
//! The guest never reports times. It writes one short text line per event to a channel that the
//! host reads and stamps with its own monotonic clock on arrival: an inherited pipe for native
//! processes and containers, a serial or debug port for VMs. Lines look like
//!
//! ```text
//! CVM:init
//! CVM:configured
//! CVM:workload http
//! CVM:listening 8080
//! CVM:ready
//! CVM:result cpu_score 123456.7 1/s
//! CVM:note contain_sysrq refused: EROFS (read-only file system)
//! CVM:memory 41943040
//! CVM:exit 0
//! ```
//!
//! A VM console mixes these lines with kernel output, so the parser looks for the prefix anywhere
//! in a line and ignores everything else.

use std::fmt;

/// Environment variable naming the file descriptor a workload writes its markers to.
pub const MARKER_FD_ENV: &str = "CVM_MARKER_FD";
/// The descriptor used when [`MARKER_FD_ENV`] is unset: the first one after stdio.
pub const DEFAULT_MARKER_FD: i32 = 3;
/// Every marker line starts with this.
pub const PREFIX: &str = "CVM:";

/// One event announced by the guest.
#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    /// `cvm-guest init` is running (PID 1 of a container or VM).
    Init,
    /// init has finished the instance (a container's rootfs, capabilities and network; a VM's
    /// mounts, modules and network) and is about to start the workload.
    Configured,
    /// init is about to exec the named workload.
    Workload(String),
    /// The workload is ready to do its job (listening, allocated, ...).
    Ready,
    /// init saw a socket in LISTEN on this TCP port inside the instance (`/proc/net/tcp{,6}`):
    /// the inside half of a server's readiness, whatever the workload itself reports.
    Listening(u16),
    /// A figure the workload measured itself (cpu score, io bandwidth), in SI base units.
    Result {
        metric: String,
        value: f64,
        unit: String,
    },
    /// The evidence behind a result of the same metric (the errno of a refused attempt, the
    /// names behind a count), written before the result; one line of free text.
    Note { metric: String, text: String },
    /// The guest's memory in use, `MemTotal - MemAvailable` in bytes: a VM's init reports it
    /// periodically while the workload runs, so the host can pair it with its own sample.
    Memory(u64),
    /// The workload exited with this code (reported by init, which outlives it in a VM).
    Exit(i32),
    /// A one-line diagnostic worth showing the user when a run fails.
    Error(String),
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Marker::Init => write!(f, "{PREFIX}init"),
            Marker::Configured => write!(f, "{PREFIX}configured"),
            Marker::Listening(port) => write!(f, "{PREFIX}listening {port}"),
            Marker::Workload(name) => write!(f, "{PREFIX}workload {name}"),
            Marker::Ready => write!(f, "{PREFIX}ready"),
            Marker::Result {
                metric,
                value,
                unit,
            } => {
                write!(f, "{PREFIX}result {metric} {value} {unit}")
            }
            Marker::Note { metric, text } => write!(f, "{PREFIX}note {metric} {text}"),
            Marker::Memory(used) => write!(f, "{PREFIX}memory {used}"),
            Marker::Exit(code) => write!(f, "{PREFIX}exit {code}"),
            Marker::Error(msg) => write!(f, "{PREFIX}error {msg}"),
        }
    }
}

impl Marker {
    /// Finds a marker in one line of channel output; `None` for anything else (kernel messages,
    /// a torn line, an unknown event).
    pub fn parse(line: &str) -> Option<Marker> {
        let start = line.find(PREFIX)?;
        let rest = line[start + PREFIX.len()..].trim_end_matches(['\r', '\n']);
        let (event, arg) = match rest.split_once(' ') {
            Some((e, a)) => (e, a.trim()),
            None => (rest.trim(), ""),
        };
        match event {
            "init" => Some(Marker::Init),
            "configured" => Some(Marker::Configured),
            "listening" => arg.parse().ok().map(Marker::Listening),
            "workload" => Some(Marker::Workload(arg.to_string())),
            "ready" => Some(Marker::Ready),
            "exit" => arg.parse().ok().map(Marker::Exit),
            "memory" => arg.parse().ok().map(Marker::Memory),
            "error" => Some(Marker::Error(arg.to_string())),
            "note" => {
                let (metric, text) = arg.split_once(' ').unwrap_or((arg, ""));
                (!metric.is_empty()).then(|| Marker::Note {
                    metric: metric.to_string(),
                    text: text.trim().to_string(),
                })
            }
            "result" => {
                let mut parts = arg.split_whitespace();
                let metric = parts.next()?.to_string();
                let value = parts.next()?.parse().ok()?;
                let unit = parts.next().unwrap_or("").to_string();
                Some(Marker::Result {
                    metric,
                    value,
                    unit,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_marker() {
        let all = [
            Marker::Init,
            Marker::Configured,
            Marker::Listening(8080),
            Marker::Workload("http".into()),
            Marker::Ready,
            Marker::Result {
                metric: "cpu_score".into(),
                value: 1234.5,
                unit: "1/s".into(),
            },
            Marker::Memory(41_943_040),
            Marker::Note {
                metric: "contain_sysrq".into(),
                text: "refused: EROFS (read-only file system)".into(),
            },
            Marker::Exit(3),
            Marker::Error("bind failed".into()),
        ];
        for m in all {
            assert_eq!(Marker::parse(&m.to_string()), Some(m.clone()), "{m}");
        }
    }

    #[test]
    fn finds_markers_inside_console_noise_and_ignores_the_rest() {
        assert_eq!(Marker::parse("[    1.2] random: crng init\r\n"), None);
        assert_eq!(Marker::parse("\u{1b}[0mCVM:ready\r\n"), Some(Marker::Ready));
        assert_eq!(Marker::parse("CVM:result cpu_score notanumber 1/s"), None);
        assert_eq!(Marker::parse("CVM:bogus"), None);
        assert_eq!(Marker::parse("CVM:memory -5"), None);
        assert_eq!(Marker::parse("CVM:listening 99999"), None);
        assert_eq!(Marker::parse("CVM:note"), None);
    }
}
