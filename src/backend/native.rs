//! The `native` backend: the workload as a plain host process, the baseline every overhead is
//! measured against. It runs the image's own `cvm-guest` (the byte-identical file every other
//! backend runs) and, as root, puts it in a cgroup of its own with the scenario's limits, so the
//! only thing missing compared with a container is the namespaces.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};

use super::cgroup::{self, Cgroup, Limits};
use super::events::{spawn_marker_reader, Event, ExitInfo};
use super::{
    Availability, Backend, BackendConfig, BackendError, Instance, LaunchContext, Prepared, Stack,
};
use crate::image::Image;
use crate::scenario::{BackendKind, Scenario};
use crate::sys::CommandSetup;

/// How long a workload gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("cannot create the marker pipe")]
    Pipe(#[source] nix::Error),
    #[error("cannot create the instance's cgroup")]
    Cgroup(#[source] cgroup::CgroupError),
    #[error("cannot start {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the event threads")]
    Thread(#[source] io::Error),
    #[error("cannot remove the instance's cgroup")]
    RemoveCgroup(#[source] cgroup::CgroupError),
}

pub struct NativeBackend;

impl NativeBackend {
    pub fn new() -> Self {
        NativeBackend
    }
}

impl Default for NativeBackend {
    fn default() -> Self {
        Self::new()
    }
}

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
        Ok(Box::new(NativePrepared {
            argv: image.workload_argv(&scenario.workload),
            rootfs: image.rootfs().to_path_buf(),
            limits: Limits {
                memory_bytes: scenario.resources.memory_mib.get_ref() * 1024 * 1024,
                cpus: *scenario.resources.vcpus.get_ref(),
            },
            use_cgroup,
            disk: image.layer_files(),
        }))
    }
}

struct NativePrepared {
    /// argv inside the image; argv[0] is resolved against the rootfs.
    argv: Vec<String>,
    rootfs: PathBuf,
    limits: Limits,
    use_cgroup: bool,
    disk: BTreeMap<String, Vec<PathBuf>>,
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

    fn disk_layers(&self) -> BTreeMap<String, Vec<PathBuf>> {
        self.disk
            .iter()
            .filter(|(layer, _)| matches!(layer.as_str(), "app" | "libs"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn launch(&self, ctx: &LaunchContext) -> Result<Box<dyn Instance>, BackendError> {
        let fail = |e| BackendError::launch(BackendKind::Native, e);
        let cgroup = if self.use_cgroup {
            let name = format!("cvm-{}-native-{}", ctx.run_id, ctx.instance);
            Some(Cgroup::create(&name, self.limits).map_err(|e| fail(NativeError::Cgroup(e)))?)
        } else {
            None
        };
        let (read_end, write_end): (OwnedFd, OwnedFd) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| fail(NativeError::Pipe(e)))?;

        let program = self.rootfs.join(self.argv[0].trim_start_matches('/'));
        let mut cmd = Command::new(&program);
        cmd.args(&self.argv[1..])
            .current_dir("/")
            .env(
                cvm_proto::MARKER_FD_ENV,
                cvm_proto::DEFAULT_MARKER_FD.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches cvm, which tears down.
            .process_group(0);
        let setup = CommandSetup {
            marker: Some((write_end, cvm_proto::DEFAULT_MARKER_FD)),
            cgroup_procs: match &cgroup {
                Some(cg) => cg.open_procs().map_err(|e| fail(NativeError::Cgroup(e)))?,
                None => Vec::new(),
            },
        };
        let started_at = Instant::now();
        let guard = setup.install(&mut cmd);
        let child = cmd.spawn().map_err(|source| {
            fail(NativeError::Spawn {
                program: program.clone(),
                source,
            })
        })?;
        drop(guard); // closes the parent's write end: EOF on the pipe means the workload is gone
        let spawned = Instant::now();

        let (tx, events) = mpsc::channel();
        let _ = tx.send(Event::Phase("spawn", spawned));
        spawn_marker_reader(std::fs::File::from(read_end), tx.clone(), false)
            .map_err(|e| fail(NativeError::Thread(e)))?;
        let mut child = child;
        if let Some(stderr) = child.stderr.take() {
            // Drained so a chatty workload never blocks; its lines explain a failed run.
            spawn_marker_reader(stderr, tx.clone(), true)
                .map_err(|e| fail(NativeError::Thread(e)))?;
        }
        let pid = child.id();
        spawn_exit_watcher(pid, tx).map_err(|e| fail(NativeError::Thread(e)))?;
        Ok(Box::new(NativeInstance {
            child: Some(child),
            pid,
            started_at,
            events,
            cgroup,
        }))
    }
}

/// Waits for the child to exit *without reaping it* (WNOWAIT), so its PID cannot be reused
/// before teardown kills and reaps it: cvm never signals a PID it does not own.
fn spawn_exit_watcher(pid: u32, tx: mpsc::Sender<Event>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("cvm-exit".into())
        .spawn(move || {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            let status = loop {
                match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
                    Err(nix::Error::EINTR) => continue,
                    other => break other,
                }
            };
            let at = Instant::now();
            let info = match status {
                Ok(WaitStatus::Exited(_, code)) => ExitInfo {
                    code: Some(code),
                    signal: None,
                },
                Ok(WaitStatus::Signaled(_, sig, _)) => ExitInfo {
                    code: None,
                    signal: Some(sig as i32),
                },
                _ => ExitInfo {
                    code: None,
                    signal: None,
                },
            };
            let _ = tx.send(Event::Exited(info, at));
        })?;
    Ok(())
}

struct NativeInstance {
    child: Option<Child>,
    pid: u32,
    started_at: Instant,
    events: Receiver<Event>,
    cgroup: Option<Cgroup>,
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
            None if self.child.is_some() => vec![self.pid],
            None => Vec::new(),
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
        if let Some(mut child) = self.child.take() {
            // The child is unreaped until `wait` below, so its PID is still ours to signal.
            let pid = Pid::from_raw(self.pid as i32);
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(pid, Signal::SIGTERM);
                let deadline = Instant::now() + STOP_GRACE;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = child.kill();
            }
            let _ = child.wait();
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

/// The launch floor: a bare fork+exec of `program hello`, timed the way every instance is (from
/// just before spawn to the arrival of its ready marker), with no cgroup, no event threads and
/// no teardown. The `native` backend is judged against it.
pub fn fork_exec_floor(program: &std::path::Path, timeout: Duration) -> io::Result<Duration> {
    use std::io::Read;
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let mut cmd = Command::new(program);
    cmd.arg("hello")
        .env(
            cvm_proto::MARKER_FD_ENV,
            cvm_proto::DEFAULT_MARKER_FD.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let setup = CommandSetup {
        marker: Some((write_end, cvm_proto::DEFAULT_MARKER_FD)),
        cgroup_procs: Vec::new(),
    };
    let start = Instant::now();
    let guard = setup.install(&mut cmd);
    let mut child = cmd.spawn()?;
    drop(guard);
    let mut pipe = std::fs::File::from(read_end);
    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    let ready = loop {
        let n = pipe.read(&mut buf)?;
        if n == 0 {
            break None;
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(9).any(|w| w == b"CVM:ready") {
            break Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            break None;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    ready.ok_or_else(|| io::Error::other("the floor workload never wrote its ready marker"))
}
