//! The `native` backend: the workload as a plain host process, the baseline every overhead is
//! measured against. It runs the image's own `cvm-guest` (the byte-identical file every other
//! backend runs) and, as root, puts it in a cgroup of its own with the scenario's limits, so the
//! only thing missing compared with a container is the namespaces.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use super::cgroup::{self, Cgroup, Limits};
use super::events::{spawn_marker_reader, spawn_output_reader, Event};
use super::io_dir::{self, InstanceIoDir, IoStore};
use super::listen_watch::spawn_listen_watcher;
use super::process::{Supervised, Terminate};
use super::{
    process, Availability, Backend, BackendConfig, BackendError, Instance, LaunchContext, Prepared,
    Stack, WORKLOAD_PATH,
};
use crate::backend::DiskLayers;
use crate::image::Image;
use crate::scenario::{BackendKind, Scenario};
use crate::sys::{spawn_namespaced, spawn_namespaced_timed, NamespacedExec, SpawnError};
use cvm_proto::metric::Phase;

#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("cannot create the marker pipe")]
    Pipe(#[source] nix::Error),
    #[error("cannot create the instance's cgroup")]
    Cgroup(#[source] cgroup::CgroupError),
    #[error("cannot open /dev/null for the workload's stdio")]
    DevNull(#[source] io::Error),
    #[error("an argument or environment entry contains a NUL byte: {0:?}")]
    Nul(String),
    #[error("cannot start {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: SpawnError,
    },
    #[error("cannot start the event threads")]
    Thread(#[source] io::Error),
    #[error("cannot remove the instance's cgroup")]
    RemoveCgroup(#[source] cgroup::CgroupError),
    #[error("cannot prepare the io workload's directory")]
    IoDir(#[source] io_dir::IoDirError),
}

#[derive(Debug, Default)]
pub struct NativeBackend;

impl Backend for NativeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Native
    }
    fn stack(&self) -> Stack {
        Stack::Native
    }
    fn availability(&self) -> Availability {
        Availability::Available
    }
    fn prepare(
        &self,
        scenario: &Scenario,
        image: &Image,
    ) -> Result<Box<dyn Prepared>, BackendError> {
        let use_cgroup = nix::unistd::geteuid().is_root() && cgroup::detect().is_some();
        let io = IoStore::for_scenario(scenario)
            .map_err(|e| BackendError::prepare(BackendKind::Native, NativeError::IoDir(e)))?;
        Ok(Box::new(NativePrepared {
            io,
            argv: image.workload_argv(&scenario.workload),
            rootfs: image.rootfs().to_path_buf(),
            limits: super::limits(scenario),
            use_cgroup,
            disk: image.layer_files(),
            watch_port: scenario.readiness.port(),
            io_by_env: scenario.workload.applet.is_none(),
        }))
    }
}

struct NativePrepared {
    /// argv inside the image; argv[0] is resolved against the rootfs.
    argv: Vec<String>,
    rootfs: PathBuf,
    limits: Limits,
    use_cgroup: bool,
    disk: DiskLayers,
    /// For the io workload: where each instance gets its directory (given as its `--dir`).
    io: Option<IoStore>,
    /// The port watched for LISTEN: by the host, since native has no init of cvm's.
    watch_port: Option<u16>,
    /// A command (not the io applet) is told its io directory in the environment
    /// ([`cvm_proto::app::IO_DIR_ENV`]): native has no mount namespace to put it at `io_dir`.
    io_by_env: bool,
}

impl Prepared for NativePrepared {
    fn config(&self) -> BackendConfig {
        let mut c = BackendConfig::new();
        c.insert("isolation".into(), "none (host process)".into());
        let cg = if self.use_cgroup {
            cgroup::detect().map_or("none", |v| v.as_str())
        } else {
            "none (not root)"
        };
        c.insert("cgroup".into(), cg.into());
        c.insert("network".into(), "host".into());
        c
    }

    fn disk_layers(&self) -> DiskLayers {
        self.disk.clone()
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |e| BackendError::launch(BackendKind::Native, e);
        let cgroup = if self.use_cgroup {
            let name = format!("cvm-{}-native-{}", ctx.run_id, ctx.instance);
            Some(
                Cgroup::create(&name, self.limits.clone())
                    .map_err(|e| fail(NativeError::Cgroup(e)))?,
            )
        } else {
            None
        };
        let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| fail(NativeError::Pipe(e)));
        let (marker_read, marker_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let program = self.rootfs.join(self.argv[0].trim_start_matches('/'));
        let cgroup_procs = match &cgroup {
            Some(cg) => cg.open_procs().map_err(|e| fail(NativeError::Cgroup(e)))?,
            None => Vec::new(),
        };
        let mut args = self.argv[1..].to_vec();
        let mut io_env = None;
        let io_dir = match &self.io {
            Some(store) => {
                let label = format!("{}-native-{}", ctx.run_id, ctx.instance);
                let dir = store
                    .instance_dir(&label)
                    .map_err(|e| fail(NativeError::IoDir(e)))?;
                if self.io_by_env {
                    io_env = Some(format!(
                        "{}={}",
                        cvm_proto::app::IO_DIR_ENV,
                        dir.path().display()
                    ));
                } else {
                    // The last `--dir` wins: the workload writes where every backend's io goes.
                    args.push(format!("--dir={}", dir.path().display()));
                }
                Some(dir)
            }
            None => None,
        };
        let fds = process::workload_fds(stderr_write, marker_write)
            .map_err(|e| fail(NativeError::DevNull(e)))?;
        let spec =
            exec_spec(&program, &args, io_env.as_deref(), cgroup_procs, fds).map_err(fail)?;
        let started_at = Instant::now();
        // The same spawn as the container backend's (a vfork-style clone straight into exec),
        // so the comparison isolates the namespaces rather than two ways of starting a process.
        let spawned = spawn_namespaced_timed(spec)
            .map_err(|source| fail(NativeError::Spawn { program, source }))?;
        let pid = spawned.pid;
        // From here on the instance owns the child: an error below drops it, which tears down.
        let (tx, events) = mpsc::channel();
        if let Some(joined) = spawned.cgroup_joined {
            let _ = tx.send(Event::Phase(Phase::CgroupJoin, joined));
        }
        let instance = NativeInstance {
            process: Supervised::from_pid(pid),
            started_at,
            events,
            cgroup,
            io_dir,
        };
        spawn_marker_reader(std::fs::File::from(marker_read), tx.clone())
            .map_err(|e| fail(NativeError::Thread(e)))?;
        spawn_output_reader(std::fs::File::from(stderr_read), tx.clone())
            .map_err(|e| fail(NativeError::Thread(e)))?;
        if let Some(port) = self.watch_port {
            let pid = u32::try_from(pid).unwrap_or_default();
            spawn_listen_watcher(pid, port, tx.clone())
                .map_err(|e| fail(NativeError::Thread(e)))?;
        }
        let memory_dir = instance
            .cgroup
            .as_ref()
            .and_then(|c| c.memory_dir())
            .map(PathBuf::from);
        instance
            .process
            .watch_exit(memory_dir, self.limits.memory_bytes, tx)
            .map_err(|e| fail(NativeError::Thread(e)))?;
        Ok(Box::new(instance))
    }
}

struct NativeInstance {
    /// The workload.
    process: Supervised,
    started_at: Instant,
    events: Receiver<Event>,
    cgroup: Option<Cgroup>,
    /// Removed after teardown (fields drop after `Drop::drop`), once nothing writes to it.
    io_dir: Option<InstanceIoDir>,
}

impl Instance for NativeInstance {
    fn started_at(&self) -> Instant {
        self.started_at
    }
    fn events(&self) -> &Receiver<Event> {
        &self.events
    }
    fn host_pids(&self) -> Vec<u32> {
        match &self.cgroup {
            Some(cg) => cg.pids(),
            None => self.process.running_pid().into_iter().collect(),
        }
    }
    fn endpoint(&self, port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }
    fn memory_cgroup(&self) -> Option<PathBuf> {
        self.cgroup
            .as_ref()
            .and_then(|c| c.memory_dir())
            .map(PathBuf::from)
    }
    fn teardown(&mut self) -> Result<(), BackendError> {
        self.process.stop(&Terminate);
        // Anything the workload forked is in its cgroup (created for it alone): killed before
        // the workload is reaped, so no PID in there can have been reused.
        let removed = self.cgroup.as_mut().map(Cgroup::remove);
        self.process.reap();
        // Nothing writes to the io directory any more.
        self.io_dir = None;
        if let Some(Err(e)) = removed {
            return Err(BackendError::teardown(
                BackendKind::Native,
                NativeError::RemoveCgroup(e),
            ));
        }
        if let Some(cg) = self.cgroup.as_mut() {
            cg.remove().map_err(|e| {
                BackendError::teardown(BackendKind::Native, NativeError::RemoveCgroup(e))
            })?;
        }
        Ok(())
    }
}

impl Drop for NativeInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// What native execs: `program` with `args`, the same environment every backend gives its
/// workload (nothing of cvm's own), no namespaces (what the native baseline leaves out is
/// exactly the isolation), joining `cgroup_procs`, with `fds` in place.
fn exec_spec(
    program: &std::path::Path,
    args: &[String],
    io_env: Option<&str>,
    cgroup_procs: Vec<std::fs::File>,
    fds: Vec<(std::os::fd::OwnedFd, std::os::fd::RawFd)>,
) -> Result<NamespacedExec, NativeError> {
    let cstr = |s: &[u8]| {
        CString::new(s).map_err(|_| NativeError::Nul(String::from_utf8_lossy(s).into_owned()))
    };
    let mut argv = vec![cstr(program.as_os_str().as_bytes())?];
    for a in args {
        argv.push(cstr(a.as_bytes())?);
    }
    let marker_env = format!(
        "{}={}",
        cvm_proto::MARKER_FD_ENV,
        cvm_proto::DEFAULT_MARKER_FD
    );
    let envp = [WORKLOAD_PATH, "HOME=/root", marker_env.as_str()]
        .into_iter()
        .chain(io_env)
        .map(|e| cstr(e.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NamespacedExec {
        program: cstr(program.as_os_str().as_bytes())?,
        argv,
        envp,
        clone_flags: 0,
        unshare_after_join: 0,
        cgroup_procs,
        fds,
        map_user: None,
    })
}

/// The launch floor: `program hello` started exactly as `native` starts its workload (the same
/// clone-into-exec spawn, environment and descriptors) and timed the same way (from just before
/// the spawn to the arrival of its ready marker), but with no cgroup, no event threads and no
/// teardown: what `native` adds on top of it is cvm's own bookkeeping. The wait for the marker
/// is bounded by `timeout` (a hung child is killed and reaped, never waited for forever).
pub fn fork_exec_floor(program: &std::path::Path, timeout: Duration) -> io::Result<Duration> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    use std::os::fd::AsFd;
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let devnull = std::fs::File::options().write(true).open("/dev/null")?;
    let fds = process::workload_fds(devnull.into(), write_end)?;
    let args = [cvm_proto::applet::Applet::Hello.name().to_string()];
    let spec = exec_spec(program, &args, None, Vec::new(), fds).map_err(io::Error::other)?;
    let start = Instant::now();
    let pid = spawn_namespaced(spec).map_err(io::Error::other)?;
    // Owned from here: dropping it kills (if need be) and reaps the child.
    let _child = Supervised::from_pid(pid);
    let mut pipe = std::fs::File::from(read_end);
    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    loop {
        let left = (start + timeout).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the floor workload did not write its ready marker in time",
            ));
        }
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let n = pipe.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other(
                "the floor workload never wrote its ready marker",
            ));
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(9).any(|w| w == b"CVM:ready") {
            return Ok(start.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_floor_cannot_block_on_a_hung_child() {
        use std::os::unix::fs::PermissionsExt;
        // A program that never writes a marker and never exits, keeping the pipe open.
        let dir = tempfile::tempdir().unwrap();
        let hang = dir.path().join("hang");
        std::fs::write(&hang, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
        let started = Instant::now();
        let e = fork_exec_floor(&hang, Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // A program that exits without a marker is an error too, at once.
        assert!(fork_exec_floor(Path::new("/bin/true"), Duration::from_secs(30)).is_err());
    }
}
