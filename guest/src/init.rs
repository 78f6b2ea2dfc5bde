//! `init`: the first process of a container or VM, and the bridge to its workload.
//!
//! It runs in three steps:
//!
//! 1. announce: `CVM:init`, the host's mark for "the isolation layer handed over to us";
//! 2. finish the instance: a container's init (`--container`) finishes its rootfs (mounts,
//!    `pivot_root`, hostname, capabilities: see `container_init`); a VM's init, configured by a
//!    file in its initramfs instead of arguments, mounts proc/sys/dev, loads the image's kernel
//!    modules and configures the network (see `vm_init`); a plain process has nothing to do;
//!    then `CVM:configured`: the instance is finished (the end of the host's `runtime` phase in a
//!    container, of `guest_init` in a VM);
//! 3. run the workload, announced as `CVM:workload <name>` right before it starts; with
//!    `--watch-port P` (a server), a forked watcher also writes `CVM:listening P` once a socket
//!    is in LISTEN on P inside the instance (see `watch`).
//!
//! How the workload runs depends on the PID. Outside a PID namespace init simply `exec`s it, so
//! the measured process tree has no extra process. As PID 1 it cannot: the kernel gives PID 1
//! no default signal actions (a SIGTERM from the host would be dropped, not obeyed), orphans are
//! reparented to it and must be reaped, and in a VM the exit of PID 1 panics the kernel. So it
//! spawns the workload, forwards SIGTERM/SIGINT to it, reaps every child, writes
//! `CVM:exit <code>` and exits with the workload's code (128 + signal if it was killed).
//!
//! Only PID 1 tells the workload it runs inside an instance of its own (`CVM_ISOLATED`), which
//! the containment attempts of the isolation scenario require; the exec path removes it.
//!
//! The workload is an applet name (run from this same binary) or any command. It inherits the
//! marker descriptor and `CVM_MARKER_FD` so its own markers reach the host on the same channel.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use cvm_proto::isolation::{ISOLATED_ENV, ISOLATED_VALUE};
use cvm_proto::listen::WATCH_PORT_OPTION;
use cvm_proto::Marker;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::markers::Markers;
use crate::{find_applet, signals, Applet, AppletResult, Failure};

/// `cvm-guest init --help`.
pub const USAGE: &str = "usage: cvm-guest init [--watch-port P] [--] <applet|command> [args...]\n\n\
     Writes CVM:init, then runs the workload: an applet of this binary (hello, http, ...) or any\n\
     command. With --watch-port, writes CVM:listening P once a socket listens on TCP port P. As PID 1 it supervises the workload (forwards SIGTERM/SIGINT, reaps children,\n\
     writes CVM:exit <code>); otherwise it execs it directly.\n";

/// The exit code when the workload cannot be found, as in a shell.
const NOT_FOUND_EXIT_CODE: i32 = 127;
/// The exit code when the workload exists but cannot be started.
const NOT_STARTED_EXIT_CODE: i32 = 126;

/// What init was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The workload: an applet name or a command (a path, or a name looked up in PATH).
    pub command: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// A TCP port to watch for a socket in LISTEN (`--watch-port`), reported as
    /// `CVM:listening`: the inside half of a server's readiness.
    pub watch_port: Option<u16>,
}

impl Config {
    /// Parses `[--] <command> [args...]`. Options before the command belong to init; there are
    /// none yet besides `--help`, so any other is an error rather than silently ignored.
    pub fn parse(argv: &[OsString]) -> Result<Config, Failure> {
        // Init's own options go before the command; `--` ends them.
        let mut rest = argv;
        let mut watch_port = None;
        while let Some((first, tail)) = rest.split_first() {
            match first.to_str() {
                Some("--") => {
                    rest = tail;
                    break;
                }
                Some("--help" | "-h") => return Err(Failure::Help),
                Some(WATCH_PORT_OPTION) => {
                    let value = tail.first().and_then(|v| v.to_str()).ok_or_else(|| {
                        Failure::Usage(format!("{WATCH_PORT_OPTION} needs a port"))
                    })?;
                    let port = value.parse::<u16>().ok().filter(|p| *p != 0);
                    watch_port = Some(port.ok_or_else(|| {
                        Failure::Usage(format!("invalid port '{value}' for {WATCH_PORT_OPTION}"))
                    })?);
                    rest = &tail[1..];
                }
                Some(option) if option.starts_with('-') => {
                    return Err(Failure::Usage(format!("unknown option '{option}'")));
                }
                _ => break,
            }
        }
        let Some((command, args)) = rest.split_first() else {
            return Err(Failure::Usage("no workload given".into()));
        };
        Ok(Config {
            command: command.clone(),
            args: args.to_vec(),
            watch_port,
        })
    }
}

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    // PID 1 of a cvm VM: configured by a file in the initramfs, not by arguments.
    if crate::vm_init::in_vm() {
        return crate::vm_init::run();
    }
    let (container, argv) = crate::container_init::split_args(argv)?;
    let config = Config::parse(argv)?;
    markers.emit(&Marker::Init);
    if let Some(container) = container {
        crate::container_init::setup(container)?;
    }
    markers.emit(&Marker::Configured);
    let workload = Workload::resolve(&config);
    markers.keep_across_exec();
    if nix::unistd::getpid() == Pid::from_raw(1) {
        supervise(markers, workload)
    } else {
        exec(markers, workload)
    }
}

/// The workload, ready to start.
struct Workload {
    /// As the host named it, for `CVM:workload`.
    name: String,
    command: Command,
    /// A built-in applet and its arguments: run in a forked child rather than a fresh exec.
    applet: Option<(&'static Applet, Vec<OsString>)>,
    /// The port to watch for LISTEN, if any.
    watch_port: Option<u16>,
}

impl Workload {
    fn resolve(config: &Config) -> Workload {
        let name = config.command.to_string_lossy().into_owned();
        let applet = config
            .command
            .to_str()
            .filter(|c| !c.contains('/'))
            .and_then(find_applet);
        let mut command = match applet {
            Some(applet) => {
                let mut command = Command::new(own_executable());
                // Named `cvm-guest` whatever the file is called (it may be /init itself), so the
                // child dispatches on its first argument and not back into init.
                command.arg0("cvm-guest").arg(applet.name);
                command
            }
            None => Command::new(&config.command),
        };
        command.args(&config.args);
        // `/bin/cvm-guest <applet> ...` (how the host names applets inside the image) is this
        // very binary: it can run in a forked child too.
        let own_applet = || {
            let named_self = std::path::Path::new(&config.command).file_name()
                == Some(std::ffi::OsStr::new("cvm-guest"));
            let (first, rest) = config.args.split_first()?;
            let applet = find_applet(first.to_str()?)?;
            named_self.then(|| (applet, rest.to_vec()))
        };
        let applet = match applet {
            Some(a) => Some((a, config.args.clone())),
            None => own_applet(),
        };
        Workload {
            name,
            command,
            applet,
            watch_port: config.watch_port,
        }
    }
}

/// This binary's path: `/proc/self/exe` when proc is mounted, else how we were started.
fn own_executable() -> PathBuf {
    if let Ok(path) = std::env::current_exe() {
        return path;
    }
    match std::env::args_os().next() {
        Some(arg0) if arg0.to_string_lossy().contains('/') => PathBuf::from(arg0),
        _ => PathBuf::from("/proc/self/exe"),
    }
}

/// Work PID 1 does every `period` while it supervises the workload (a VM's memory report).
pub(crate) struct Tick<'a> {
    pub period: std::time::Duration,
    pub work: &'a dyn Fn(&Markers),
}

/// Runs `config`'s workload under PID 1's supervision (for the VM's init, after its setup),
/// doing `tick`'s work periodically meanwhile.
pub(crate) fn supervise_config(markers: &Markers, config: &Config, tick: &Tick) -> AppletResult {
    let workload = Workload::resolve(config);
    markers.keep_across_exec();
    supervise_with(markers, workload, Some(tick))
}

/// Replaces init with the workload (not PID 1).
fn exec(markers: &Markers, mut workload: Workload) -> AppletResult {
    // Not PID 1: no instance of its own around the workload, whatever the caller's
    // environment says (see `supervise_with`).
    workload.command.env_remove(ISOLATED_ENV);
    markers.emit(&Marker::Workload(workload.name.clone()));
    if let Some(port) = workload.watch_port {
        crate::watch::spawn(markers, port)?;
    }
    let error = workload.command.exec();
    Ok(launch_failed(markers, &workload.name, &error))
}

/// Runs the workload as a child and stays PID 1 until it exits.
fn supervise(markers: &Markers, workload: Workload) -> AppletResult {
    supervise_with(markers, workload, None)
}

fn supervise_with(markers: &Markers, mut workload: Workload, tick: Option<&Tick>) -> AppletResult {
    // Blocked before the spawn, so neither an early SIGTERM nor a quick exit is missed.
    let mut watched = signals::termination();
    watched.add(Signal::SIGCHLD);
    signals::block(&watched).map_err(Failure::Runtime)?;
    // As PID 1, init stands for an instance of its own (a PID namespace, a sandbox or a VM):
    // it says so to the workload, the one permission the containment attempts run on. Set
    // while init is single-threaded, before any fork, so every child inherits it.
    std::env::set_var(ISOLATED_ENV, ISOLATED_VALUE);

    markers.emit(&Marker::Workload(workload.name.clone()));
    // Forked first, while init is still single-threaded; reaped below like any orphan.
    if let Some(port) = workload.watch_port {
        crate::watch::spawn(markers, port)?;
    }
    // The child is reaped below with waitpid(-1), together with any orphans, not by `Child`.
    let pid = match workload.applet.take() {
        Some((applet, args)) if single_threaded() => fork_applet(markers, applet, &args)?,
        _ => {
            crate::sys::unblock_signals_on_exec(&mut workload.command);
            let child = match workload.command.spawn() {
                Ok(child) => child,
                Err(error) => return Ok(launch_failed(markers, &workload.name, &error)),
            };
            i32::try_from(child.id()).map(Pid::from_raw).map_err(|_| {
                Failure::Runtime(format!("workload pid {} out of range", child.id()))
            })?
        }
    };

    // After the forks above, so no forked child inherits the handler (see the function).
    crate::sys::catch_termination()
        .map_err(|e| Failure::Runtime(format!("cannot catch SIGTERM: {e}")))?;
    let code = loop {
        let signal = match tick {
            None => signals::wait(&watched).map_err(Failure::Runtime)?,
            Some(tick) => {
                match signals::wait_timeout(&watched, tick.period).map_err(Failure::Runtime)? {
                    Some(signal) => signal,
                    None => {
                        (tick.work)(markers);
                        continue;
                    }
                }
            }
        };
        match signal {
            Signal::SIGCHLD => {
                if let Some(code) = reap(pid).map_err(Failure::Runtime)? {
                    break code;
                }
            }
            // The workload may already be gone (ESRCH); its SIGCHLD ends the loop.
            forwarded => {
                let _ = kill(pid, forwarded);
            }
        }
    };
    markers.emit(&Marker::Exit(code));
    // Exiting is right for a container, whose runtime reads the code; a VM's init powers the
    // machine off instead (see `vm_init`).
    Ok(code)
}

/// Whether init has no other threads (read from /proc/self/status): the condition for a plain
/// `fork` that runs Rust code in the child.
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim() == "1"))
        })
        .unwrap_or(false)
}

/// Runs a built-in applet in a forked child of init. Exec'ing this binary again would repeat
/// its whole program start-up (about a millisecond for a static-pie binary) and charge it to
/// every container and VM as "init" overhead; a fork of the small, single-threaded init costs
/// a fraction of that, and the applet runs the same code either way.
fn fork_applet(
    markers: &Markers,
    applet: &'static Applet,
    args: &[OsString],
) -> Result<Pid, Failure> {
    // SAFETY: init is single-threaded here (the caller checked `single_threaded()` just before,
    // and nothing since starts a thread), as `fork_single_threaded` requires.
    match unsafe { crate::sys::fork_single_threaded() } {
        Ok(ForkResult::Parent { child }) => Ok(child),
        Ok(ForkResult::Child) => {
            // The child starts as the applet would after an exec: no blocked signals.
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            );
            std::process::exit(crate::run_applet(markers, applet, args))
        }
        Err(e) => Err(Failure::Runtime(format!("cannot fork the workload: {e}"))),
    }
}

/// Reaps every child that has exited; returns the workload's exit code once it is among them.
fn reap(workload: Pid) -> Result<Option<i32>, String> {
    let mut code = None;
    loop {
        match waitpid(Option::<Pid>::None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Ok(code),
            Ok(WaitStatus::Exited(pid, status)) if pid == workload => code = Some(status),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == workload => {
                code = Some(128 + signal as i32)
            }
            // An orphan that was reparented to us: reaped, nothing more.
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => {
                return code.map(Some).ok_or_else(|| {
                    "the workload was reaped by someone else (is SIGCHLD ignored?)".to_string()
                });
            }
            Err(e) => return Err(format!("waiting for the workload: {e}")),
        }
    }
}

/// Reports a workload that could not be started and picks a shell-like exit code.
fn launch_failed(markers: &Markers, name: &str, error: &io::Error) -> i32 {
    let message = format!("init: starting workload '{name}': {error}");
    markers.error(&message);
    eprintln!("cvm-guest {message}");
    match error.kind() {
        io::ErrorKind::NotFound => NOT_FOUND_EXIT_CODE,
        _ => NOT_STARTED_EXIT_CODE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_command_lines() {
        let config = Config::parse(&words(&["http", "--port", "80"])).unwrap();
        assert_eq!(config.command, "http");
        assert_eq!(config.args, words(&["--port", "80"]));
        let config = Config::parse(&words(&["--", "/bin/sh", "-c", "true"])).unwrap();
        assert_eq!(config.command, "/bin/sh");
        assert_eq!(config.args, words(&["-c", "true"]));
        let config = Config::parse(&words(&["--", "--weird"])).unwrap();
        assert_eq!(config.command, "--weird");
        let config = Config::parse(&words(&["--watch-port", "80", "--", "http"])).unwrap();
        assert_eq!(
            (config.watch_port, config.command.to_str()),
            (Some(80), Some("http"))
        );
    }

    #[test]
    fn refuses_bad_command_lines() {
        assert!(matches!(Config::parse(&[]), Err(Failure::Usage(_))));
        assert!(matches!(
            Config::parse(&words(&["--"])),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            Config::parse(&words(&["--bogus", "hello"])),
            Err(Failure::Usage(_))
        ));
        for bad in [
            &["--watch-port"][..],
            &["--watch-port", "0", "http"],
            &["--watch-port", "x", "http"],
        ] {
            assert!(
                matches!(Config::parse(&words(bad)), Err(Failure::Usage(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Config::parse(&words(&["--help"])),
            Err(Failure::Help)
        ));
    }

    #[test]
    fn resolves_applets_to_this_binary_and_others_to_commands() {
        let applet = Workload::resolve(&Config::parse(&words(&["hello"])).unwrap());
        assert_eq!(applet.name, "hello");
        assert_eq!(applet.command.get_program(), own_executable());
        assert_eq!(applet.command.get_args().collect::<Vec<_>>(), ["hello"]);
        let command = Workload::resolve(&Config::parse(&words(&["/bin/hello", "x"])).unwrap());
        assert_eq!(command.command.get_program(), "/bin/hello");
        assert_eq!(command.command.get_args().collect::<Vec<_>>(), ["x"]);
        assert!(command.applet.is_none());
        // The image's own path to this binary is recognised as an applet call.
        let own = Workload::resolve(
            &Config::parse(&words(&["/bin/cvm-guest", "http", "--port", "1"])).unwrap(),
        );
        let (applet, args) = own.applet.expect("recognised as an applet");
        assert_eq!(applet.name, "http");
        assert_eq!(args, words(&["--port", "1"]));
    }
}
