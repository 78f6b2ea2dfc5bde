//! The supervisor the `container` backend stands for, measured: `cvm-runtime run` stays
//! resident as its container's waiter (it forwards signals, waits, removes the cgroup), as
//! containerd's shim does for Docker. cvm links the runtime and waits in-process, so no such
//! process exists in a measured run; its memory is measured once per run from a real one, the
//! standalone binary waiting on a container of the same image, and added to every instance's
//! PSS (`memory_supervisor`), so `container` counts a supervisor as `docker` does.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::backend::bundle::{self, BundleError, SpecInput};
use crate::backend::cgroup::Limits;
use crate::usage::memory;

/// How long the waiter may take to start its container.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Settling time after the pid file appears: the runtime writes it right before it waits.
const SETTLE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum WaiterError {
    #[error("cannot write the waiter's bundle")]
    Bundle(#[source] BundleError),
    #[error("cannot start {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} ended before its container started ({status}): {stderr}")]
    Exited {
        program: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{program} did not start its container within {START_TIMEOUT:?}")]
    Timeout { program: PathBuf },
    #[error("cannot read the waiter's PSS (it is gone)")]
    Pss,
}

/// The PSS in bytes of `runtime` (`cvm-runtime`) once it waits on an idle container of
/// `rootfs` under `limits`; the container and the waiter are ended before this returns.
pub fn waiter_pss(runtime: &Path, rootfs: &Path, limits: Limits) -> Result<u64, WaiterError> {
    let dir = bundle::temp_dir("waiter").map_err(WaiterError::Bundle)?;
    let result = measure(runtime, rootfs, limits, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(runtime: &Path, rootfs: &Path, limits: Limits, dir: &Path) -> Result<u64, WaiterError> {
    // Unique per call: two lanes (or two tests in one process) may measure at once.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("cvm-{}-{n}-waiter", std::process::id());
    bundle::write_config(
        dir,
        &SpecInput {
            rootfs,
            args: ["/bin/busybox", "sleep", "60"].map(String::from).into(),
            hostname: "cvm-waiter",
            cgroup: &id,
            limits,
            volume: None,
            marker_fd: 3,
            netns: None,
            capabilities: &bundle::default_capabilities(),
            id_maps: None,
        },
    )
    .map_err(WaiterError::Bundle)?;
    let pid_file = dir.join("container.pid");
    let mut child = Command::new(runtime)
        .arg("run")
        .arg("--bundle")
        .arg(dir)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| WaiterError::Spawn {
            program: runtime.to_path_buf(),
            source,
        })?;
    let container = wait_for_container(runtime, &mut child, &pid_file);
    let pss = container.as_ref().ok().and_then(|_| {
        std::thread::sleep(SETTLE);
        memory::pss_bytes(child.id())
    });
    // The container's init ignores SIGTERM (PID 1 without a handler): SIGKILL ends it, and the
    // waiter then removes the cgroup and exits.
    if let Ok(pid) = &container {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    end(&mut child);
    container?;
    pss.ok_or(WaiterError::Pss)
}

/// The container's host PID, from the pid file the runtime writes once it has started it.
fn wait_for_container(
    runtime: &Path,
    child: &mut Child,
    pid_file: &Path,
) -> Result<i32, WaiterError> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            return Err(WaiterError::Exited {
                program: runtime.to_path_buf(),
                status,
                stderr: stderr.trim().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(WaiterError::Timeout {
        program: runtime.to_path_buf(),
    })
}

/// Waits a few seconds for the waiter to exit on its own (its container is gone), then kills
/// it; always reaps it.
fn end(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
