//! A private Docker daemon, started by cvm when no daemon answers and stopped at the end of the
//! run: the `dockerd` a user would run, kept off the host's own configuration.
//!
//! - Its data root is `dockerd/<slot>` in cvm's cache directory, so the imported image is kept
//!   between runs; a slot is held by an exclusive lock (`dockerd/slot-<slot>.lock`) for the
//!   daemon's life, so concurrent cvm runs each get their own (dockerd locks its data root).
//!   Its log is `dockerd/<slot>.log` there too, kept after the run for a failed start.
//! - Its exec root, socket, pid file and configuration file (empty: the host's
//!   `/etc/docker/daemon.json` is not read) live in `cvm-<token>-dockerd` in the temporary
//!   directory, removed at the end.
//! - `--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false`: a default dockerd
//!   sets the FORWARD policy to DROP and adds NAT chains. Its containers attach to a bridge cvm
//!   creates ([`super::bridge`]), which the host reaches directly.
//! - `--cgroup-parent=cvm-<token>-dockerd`: its containers' cgroups sit under a parent named for
//!   the run in every hierarchy, which cvm removes at the end (Docker never does), with any
//!   `docker` parent cgroup that appeared while it ran.
//! - It runs in its own process group (a Ctrl-C on cvm's terminal reaches cvm, which stops its
//!   containers first and then the daemon) and gets SIGTERM if cvm dies ([`crate::sys`]).
//!
//! Stopping: dockerd goes through the one lifecycle ([`Supervised::stop`]: SIGTERM, which
//! stops containerd (its child), a grace period of its own, SIGKILL). containerd is not cvm's
//! child while dockerd lives, so no [`Supervised`] can own it: it is watched and, if need be,
//! killed through a pidfd taken while it was still dockerd's child (the same guarantee: never a
//! stranger that reused the PID), and reaped only once it is cvm's. Then what either left is
//! removed: mounts under its directories, the cgroups, the bridge, the run directory.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;

use super::bridge::{Bridge, BridgeError};
use super::leftovers::{
    cgroups_named, children_named, containerd_of, docker_cgroups, reap_if_ours, remove_cgroup_tree,
    unmount_under,
};
use crate::backend::process::{self, StopPolicy, Supervised};

/// How long dockerd may take to answer on its socket (a first start creates the data root).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd gets to stop (its containers are already gone) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How long containerd gets to exit after dockerd has, before it is killed.
const CONTAINERD_GRACE: Duration = Duration::from_secs(10);
/// Concurrent private daemons on one host (one data root each).
const SLOTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "all {SLOTS} data roots of private Docker daemons under {dir} are in use by other cvm runs"
    )]
    NoSlot { dir: PathBuf },
    #[error("cannot create the bridge of the private Docker daemon")]
    Bridge(#[source] BridgeError),
    #[error("cannot start dockerd (install docker.io)")]
    Spawn(#[source] io::Error),
    #[error("the private dockerd exited before it answered; its log: {log}")]
    Exited { log: PathBuf },
    #[error(
        "the private dockerd did not answer on {socket} within {} s; its log: {log}",
        START_TIMEOUT.as_secs()
    )]
    Timeout { socket: PathBuf, log: PathBuf },
    #[error("cannot remove {path} after the private dockerd stopped")]
    Cleanup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove the bridge of the private Docker daemon")]
    RemoveBridge(#[source] BridgeError),
}

/// A dockerd cvm started; stopped, and everything it left removed, by [`ManagedDaemon::stop`]
/// (also on drop).
#[derive(Debug)]
pub struct ManagedDaemon {
    token: String,
    dockerd: Option<Supervised>,
    /// containerd, as dockerd's child: its PID and a pidfd that stays valid if it is reparented.
    containerd: Option<(u32, OwnedFd)>,
    run_dir: Option<PathBuf>,
    socket: PathBuf,
    data_root: PathBuf,
    log: PathBuf,
    bridge: Option<Bridge>,
    /// `docker` parent cgroups that existed before the daemon started.
    docker_cgroups_before: Vec<PathBuf>,
    start: Duration,
    /// Held for the daemon's life: the data root is this daemon's alone.
    _slot: Option<Flock<File>>,
}

impl ManagedDaemon {
    /// Starts a private dockerd and waits until it answers.
    pub fn start() -> Result<ManagedDaemon, DaemonError> {
        let token = format!(
            "{:04x}{:02x}",
            std::process::id() & 0xffff,
            fastrand::u8(..)
        );
        let dir = crate::image::cache_dir().join("dockerd");
        let (slot, k) = lock_slot(&dir)?;
        let run_dir = std::env::temp_dir().join(format!("cvm-{token}-dockerd"));
        let mut daemon = ManagedDaemon {
            socket: run_dir.join("docker.sock"),
            data_root: dir.join(k.to_string()),
            log: dir.join(format!("{k}.log")),
            token,
            dockerd: None,
            containerd: None,
            run_dir: None,
            bridge: None,
            docker_cgroups_before: docker_cgroups(),
            start: Duration::ZERO,
            _slot: Some(slot),
        };
        // A failure from here on drops `daemon`, which removes what was made.
        create_dir(&run_dir)?;
        daemon.run_dir = Some(run_dir.clone());
        let config = run_dir.join("daemon.json");
        std::fs::write(&config, "{}\n").map_err(|source| DaemonError::Create {
            path: config.clone(),
            source,
        })?;
        let bridge =
            Bridge::create(&format!("cvm-{}", daemon.token)).map_err(DaemonError::Bridge)?;
        let bridge_name = bridge.name.clone();
        daemon.bridge = Some(bridge);
        let log = File::create(&daemon.log).map_err(|source| DaemonError::Create {
            path: daemon.log.clone(),
            source,
        })?;
        let log_err = log.try_clone().map_err(DaemonError::Spawn)?;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(&daemon.data_root)
            .arg("--exec-root")
            .arg(run_dir.join("exec"))
            .arg("--pidfile")
            .arg(run_dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", daemon.socket.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .arg(format!("--bridge={bridge_name}"))
            .arg(format!("--cgroup-parent={}", daemon.cgroup_parent()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        crate::sys::signal_on_parent_death(&mut cmd, Signal::SIGTERM);
        let started = Instant::now();
        let child = cmd.spawn().map_err(DaemonError::Spawn)?;
        let dockerd = daemon.dockerd.insert(Supervised::from_child(child));
        let deadline = started + START_TIMEOUT;
        loop {
            if ping(&daemon.socket) {
                break;
            }
            if dockerd.running_pid().is_none() {
                return Err(DaemonError::Exited {
                    log: daemon.log.clone(),
                });
            }
            if Instant::now() >= deadline {
                return Err(DaemonError::Timeout {
                    socket: daemon.socket.clone(),
                    log: daemon.log.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        daemon.start = started.elapsed();
        daemon.containerd = daemon.dockerd_pid().and_then(containerd_of);
        Ok(daemon)
    }

    /// The client's `DOCKER_HOST` for this daemon.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The token in the names of everything it made (`cvm-<token>`: bridge, cgroups, temp dir).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// From spawning dockerd to its first answer on the socket.
    pub fn start_time(&self) -> Duration {
        self.start
    }

    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    pub fn bridge(&self) -> Option<&Bridge> {
        self.bridge.as_ref()
    }

    /// The parent cgroup of its containers, in every hierarchy.
    pub fn cgroup_parent(&self) -> String {
        format!("cvm-{}-dockerd", self.token)
    }

    fn dockerd_pid(&self) -> Option<u32> {
        self.dockerd.as_ref().and_then(Supervised::running_pid)
    }

    /// dockerd and containerd while they run: the daemons every container shares.
    pub fn pids(&self) -> Vec<u32> {
        let Some(dockerd) = self.dockerd_pid() else {
            return Vec::new();
        };
        let mut pids = vec![dockerd];
        pids.extend(children_named(dockerd, "containerd"));
        pids
    }

    /// Stops dockerd and containerd and removes everything they and cvm made for them.
    /// Idempotent; every step is tried even when an earlier one failed (the first failure is
    /// returned).
    pub fn stop(&mut self) -> Result<(), DaemonError> {
        if let Some(mut dockerd) = self.dockerd.take() {
            if self.containerd.is_none() {
                self.containerd = dockerd.running_pid().and_then(containerd_of);
            }
            dockerd.stop(&DockerdStop);
            dockerd.reap();
        }
        if let Some((pid, fd)) = self.containerd.take() {
            if !process::wait_pidfd(fd.as_fd(), CONTAINERD_GRACE) {
                let _ = crate::sys::pidfd_send_signal(fd.as_fd(), Signal::SIGKILL);
                process::wait_pidfd(fd.as_fd(), CONTAINERD_GRACE);
            }
            reap_if_ours(pid);
        }
        let mut first: Result<(), DaemonError> = Ok(());
        let mut keep = |r: Result<(), DaemonError>| {
            if first.is_ok() {
                first = r;
            }
        };
        // What a killed daemon could not unmount: its containers' root filesystems, network
        // namespaces.
        for dir in [self.run_dir.clone(), Some(self.data_root.clone())]
            .into_iter()
            .flatten()
        {
            unmount_under(&dir);
        }
        for dir in cgroups_named(&self.cgroup_parent()) {
            keep(
                remove_cgroup_tree(&dir)
                    .map_err(|(path, source)| DaemonError::Cleanup { path, source }),
            );
        }
        for dir in docker_cgroups() {
            if !self.docker_cgroups_before.contains(&dir) {
                // rmdir fails on a cgroup still in use (another daemon's): then it stays.
                let _ = std::fs::remove_dir(&dir);
            }
        }
        if let Some(mut bridge) = self.bridge.take() {
            keep(bridge.remove().map_err(DaemonError::RemoveBridge));
        }
        if let Some(dir) = self.run_dir.take() {
            keep(
                std::fs::remove_dir_all(&dir)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|source| DaemonError::Cleanup { path: dir, source }),
            );
        }
        self._slot = None;
        first
    }
}

impl Drop for ManagedDaemon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "cvm: warning: stopping the private Docker daemon: {:#}",
                anyhow::Error::new(e)
            );
        }
    }
}

/// SIGTERM (the default request), with the daemon's own grace period: dockerd stops its
/// containerd first.
struct DockerdStop;

impl StopPolicy for DockerdStop {
    fn grace(&self) -> Duration {
        STOP_GRACE
    }
}

/// The first free data-root slot, locked.
fn lock_slot(dir: &Path) -> Result<(Flock<File>, u32), DaemonError> {
    create_dir(dir)?;
    for k in 0..SLOTS {
        let path = dir.join(format!("slot-{k}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| DaemonError::Create { path, source })?;
        if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            return Ok((lock, k));
        }
    }
    Err(DaemonError::NoSlot {
        dir: dir.to_path_buf(),
    })
}

fn create_dir(dir: &Path) -> Result<(), DaemonError> {
    std::fs::create_dir_all(dir).map_err(|source| DaemonError::Create {
        path: dir.to_path_buf(),
        source,
    })
}

/// Whether a Docker daemon answers `GET /_ping` on the Unix socket at `socket`: cheaper than a
/// client run, so the start is timed in milliseconds rather than in client starts.
pub fn ping(socket: &Path) -> bool {
    super::client::engine_get(socket, "/_ping").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exclusive_and_freed_with_their_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (first, a) = lock_slot(dir.path()).unwrap();
        let (_second, b) = lock_slot(dir.path()).unwrap();
        assert_eq!((a, b), (0, 1));
        drop(first);
        let (_third, c) = lock_slot(dir.path()).unwrap();
        assert_eq!(c, 0, "a released slot is taken again");
    }
}
