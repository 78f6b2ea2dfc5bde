//! The inside half of a server's readiness: init watches the instance's own socket tables for a
//! socket in LISTEN on the workload's port and says so with `CVM:listening <port>`.
//!
//! The host's probe connects from outside, and on a VM QEMU's user network accepts that
//! connection before the guest listens; only a look from inside the instance's network
//! namespace shows when the workload really listens (`cvm_runtime::listen`: sock_diag, or the
//! `/proc/net/tcp{,6}` tables). A forked child does the watching, so init's own loop (waiting
//! for signals, reaping) is unchanged and the child is gone as soon as it has seen the socket.

use cvm_proto::Marker;
use cvm_runtime::listen::ListenWatch;
use nix::sys::signal::Signal;
use nix::unistd::ForkResult;

use crate::markers::Markers;
use crate::Failure;

/// Forks the watcher; the caller (init) stays single-threaded and reaps it like any child.
pub fn spawn(markers: &Markers, port: u16) -> Result<(), Failure> {
    // SAFETY: init is single-threaded here: the guest starts no threads, and its callers fork
    // the watcher before any workload code runs in this process.
    match unsafe { crate::sys::fork_single_threaded() } {
        Ok(ForkResult::Parent { .. }) => Ok(()),
        Ok(ForkResult::Child) => {
            // When init execs the workload (not PID 1), the workload is this child's parent:
            // the watcher must not outlive it. As PID 1, the namespace or the VM ends with init.
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            );
            watch(markers, port);
            std::process::exit(0)
        }
        Err(e) => Err(Failure::Runtime(format!(
            "cannot fork the listen watcher: {e}"
        ))),
    }
}

fn watch(markers: &Markers, port: u16) {
    let mut watch = ListenWatch::new("/proc");
    loop {
        match watch.listening(port) {
            Some(true) => {
                markers.emit(&Marker::Listening(port));
                return;
            }
            Some(false) => {}
            None => {
                markers.error("init: cannot watch for the workload's listening socket (no sock_diag, no /proc/net/tcp)");
                return;
            }
        }
        std::thread::sleep(cvm_runtime::listen::POLL);
    }
}
