//! The `native` backend: the workload as a plain host process, the baseline every overhead is
//! measured against. It runs the image's own `cvm-guest` (the byte-identical file every other
//! backend runs) and, as root, puts it in a cgroup of its own with the scenario's limits, so the
//! only thing missing compared with a container is the namespaces.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

use super::cgroup::{self, Cgroup, Limits};
use super::events::{spawn_marker_reader, spawn_output_reader, Event};
use super::process::{Supervised, Terminate};
use super::{
    process, Availability, Backend, BackendConfig, BackendError, Instance, LaunchContext, Prepared,
    Stack, WORKLOAD_PATH,
};
use crate::backend::DiskLayers;
use crate::image::Image;
use crate::scenario::{BackendKind, Scenario};
use crate::sys::{spawn_namespaced, CommandSetup, NamespacedExec, SpawnError};
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
        Ok(Box::new(NativePrepared {
            argv: image.workload_argv(&scenario.workload),
            rootfs: image.rootfs().to_path_buf(),
            limits: super::limits(scenario),
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
    disk: DiskLayers,
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
        let cstr = |s: &[u8]| {
            CString::new(s)
                .map_err(|_| fail(NativeError::Nul(String::from_utf8_lossy(s).into_owned())))
        };
        let mut argv = vec![cstr(program.as_os_str().as_bytes())?];
        for a in &self.argv[1..] {
            argv.push(cstr(a.as_bytes())?);
        }
        // The same environment every backend gives its workload, nothing of cvm's own.
        let marker_env = format!(
            "{}={}",
            cvm_proto::MARKER_FD_ENV,
            cvm_proto::DEFAULT_MARKER_FD
        );
        let envp = [WORKLOAD_PATH, "HOME=/root", marker_env.as_str()]
            .iter()
            .map(|e| cstr(e.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = NamespacedExec {
            program: cstr(program.as_os_str().as_bytes())?,
            argv,
            envp,
            // No namespaces: what the native baseline leaves out is exactly the isolation.
            clone_flags: 0,
            unshare_after_join: 0,
            cgroup_procs: match &cgroup {
                Some(cg) => cg.open_procs().map_err(|e| fail(NativeError::Cgroup(e)))?,
                None => Vec::new(),
            },
            fds: process::workload_fds(stderr_write, marker_write)
                .map_err(|e| fail(NativeError::DevNull(e)))?,
        };
        let started_at = Instant::now();
        // The same spawn as the container backend's (a vfork-style clone straight into exec),
        // so the comparison isolates the namespaces rather than two ways of starting a process.
        let pid = spawn_namespaced(spec)
            .map_err(|source| fail(NativeError::Spawn { program, source }))?;
        let spawned = Instant::now();
        // From here on the instance owns the child: an error below drops it, which tears down.
        let (tx, events) = mpsc::channel();
        let _ = tx.send(Event::Phase(Phase::Spawn, spawned));
        let instance = NativeInstance {
            process: Supervised::from_pid(pid),
            started_at,
            events,
            cgroup,
        };
        spawn_marker_reader(std::fs::File::from(marker_read), tx.clone())
            .map_err(|e| fail(NativeError::Thread(e)))?;
        spawn_output_reader(std::fs::File::from(stderr_read), tx.clone())
            .map_err(|e| fail(NativeError::Thread(e)))?;
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

/// The launch floor: a bare fork+exec of `program hello`, timed the way every instance is (from
/// just before spawn to the arrival of its ready marker), with no cgroup, no event threads and
/// no teardown. The `native` backend is judged against it.
pub fn fork_exec_floor(program: &std::path::Path, timeout: Duration) -> io::Result<Duration> {
    use std::io::Read;
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let mut cmd = Command::new(program);
    cmd.arg(cvm_proto::applet::Applet::Hello.name())
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
