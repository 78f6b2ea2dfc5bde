//! The runtime driver: how cvm talks to `runc`, `crun` or `runsc`. Every command carries
//! `--root /run/cvm-oci/<runtime>`, so cvm's containers are kept apart from anyone else's, and
//! the runtime's global flags (runsc's platform and network mode).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::backend::command::{run_within, CommandError};

/// How long `kill` may take: milliseconds normally; a runtime that hangs is killed so a
/// teardown always ends.
const KILL_LIMIT: Duration = Duration::from_secs(5);
/// How long `delete` may take (runsc waits for its sandbox's processes to go).
const DELETE_LIMIT: Duration = Duration::from_secs(30);
/// How long `--version` may take.
const VERSION_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot remove the container's leftover cgroup")]
    LeftoverCgroup(#[source] cvm_runtime::cgroup::CgroupError),
    #[error("cannot run `{runtime} delete`")]
    DeleteSpawn {
        runtime: &'static str,
        #[source]
        source: CommandError,
    },
    #[error("`{runtime} delete` failed: {stderr}")]
    Delete {
        runtime: &'static str,
        stderr: String,
    },
}

/// An installed OCI runtime binary and its state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub name: &'static str,
    pub path: PathBuf,
    pub root: PathBuf,
    /// Global flags before the command (`--platform=ptrace --network=none` for runsc).
    pub global: Vec<String>,
    /// gVisor's runsc: it hands a container only stdio (no `--preserve-fds`), keeps its state
    /// in files rather than a directory, and starts a gofer beside the sandbox.
    pub runsc: bool,
    /// Rootless: the user namespace's id maps the bundle asks for.
    pub id_maps: Option<crate::backend::rootless::IdMap>,
    /// Rootless: the state root made for this run, removed when its last user is gone.
    pub _state: Option<std::sync::Arc<StateDir>>,
}

/// A rootless runtime's state root (the user cannot write `/run`), under `XDG_RUNTIME_DIR` or
/// the temporary directory, one per cvm process; removed when dropped.
#[derive(Debug)]
pub struct StateDir {
    pub path: PathBuf,
}

impl StateDir {
    pub fn new(runtime: &str) -> StateDir {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        StateDir {
            path: base.join(format!("cvm-oci-{runtime}-{}", std::process::id())),
        }
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl Runtime {
    /// The runtime with cvm's state directory.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root").arg(&self.root).args(&self.global);
        cmd
    }

    /// The descriptor the container's markers go to: 3, handed on with `--preserve-fds` (runc,
    /// crun), or 1, the runtime's stdout, which runsc hands to the container.
    /// The bundle's user namespace maps, rootless.
    pub fn id_maps(&self) -> Option<[Vec<(u32, u32, u32)>; 2]> {
        self.id_maps
            .as_ref()
            .map(crate::backend::rootless::IdMap::oci)
    }

    pub fn marker_fd(&self) -> i32 {
        if self.runsc {
            1
        } else {
            cvm_proto::DEFAULT_MARKER_FD
        }
    }

    /// The first line of `--version`, recorded with every sample.
    pub fn version(&self) -> String {
        run_within(
            self.command().arg("--version").stdin(Stdio::null()),
            VERSION_LIMIT,
        )
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
    }

    /// `run` of container `id` from `bundle`, in the foreground: the runtime process lives as
    /// long as the container, so its exit is the container's.
    pub fn run(&self, bundle: &Path, id: &str) -> Command {
        let mut cmd = self.command();
        cmd.args(["run", "--bundle"]).arg(bundle);
        cmd.arg(id);
        cmd
    }

    /// `run --detach` of container `id` from `bundle`, as production uses a runtime: it starts
    /// the container and exits, leaving the container's processes running. Descriptor 3 (the
    /// marker pipe) is handed on to the container, and the container's init PID is written to
    /// `pid_file`, which is how cvm finds the container's init, cgroup and network namespace.
    pub fn run_detached(&self, bundle: &Path, pid_file: &Path, id: &str) -> Command {
        let mut cmd = self.command();
        cmd.args(["run", "--detach", "--bundle"]).arg(bundle);
        if !self.runsc {
            cmd.args(["--preserve-fds", "1"]);
        }
        cmd.arg("--pid-file").arg(pid_file).arg(id);
        cmd
    }

    /// Sends `signal` (`TERM`, `KILL`) to container `id`'s init through the runtime; false if
    /// it failed or did not finish within [`KILL_LIMIT`].
    pub fn kill(&self, id: &str, signal: &str) -> bool {
        run_within(
            self.command()
                .args(["kill", id, signal])
                .stdin(Stdio::null()),
            KILL_LIMIT,
        )
        .is_ok_and(|done| done.success())
    }

    /// Where the runtime keeps container `id`'s state: runc and crun a directory named `id`,
    /// runsc a `<id>_sandbox:<id>.state` file and its `.lock`, which runsc's own `delete`
    /// leaves behind when a run was killed.
    fn state_paths(&self, id: &str) -> Vec<PathBuf> {
        if self.runsc {
            ["state", "lock"]
                .iter()
                .map(|ext| self.root.join(format!("{id}_sandbox:{id}.{ext}")))
                .collect()
        } else {
            vec![self.root.join(id)]
        }
    }

    fn knows(&self, id: &str) -> bool {
        self.state_paths(id).iter().any(|p| p.exists())
    }

    /// runsc's gofer (the process serving the container's files to the Sentry): resident for
    /// the container's life, outside its cgroup; its PID is in runsc's state file.
    pub fn gofer_pid(&self, id: &str) -> Option<u32> {
        let state = self.state_paths(id).into_iter().next()?;
        let text = std::fs::read_to_string(state).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json.get("goferPid")?
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
    }

    /// Deletes container `id` (and with it its cgroup) if the runtime still knows it.
    /// Removes what is left of the cgroup named `cgroup` (its `cgroupsPath`) after the
    /// container has been deleted: runsc leaves directories behind in several v1 controllers.
    /// Nothing to do for runc and crun, whose teardown is not charged for the look.
    pub fn remove_leftover_cgroup(&self, cgroup: &str) -> Result<(), RuntimeError> {
        if !self.runsc {
            return Ok(());
        }
        cvm_runtime::cgroup::remove_named(cgroup).map_err(RuntimeError::LeftoverCgroup)
    }

    pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        if !self.knows(id) {
            return Ok(());
        }
        let out = run_within(
            self.command()
                .args(["delete", "--force", id])
                .stdin(Stdio::null()),
            DELETE_LIMIT,
        )
        .map_err(|source| RuntimeError::DeleteSpawn {
            runtime: self.name,
            source,
        })?;
        if self.runsc && out.success() {
            // runsc keeps the lock file of a deleted container.
            for path in self.state_paths(id) {
                let _ = std::fs::remove_file(path);
            }
        }
        if out.success() || !self.knows(id) {
            Ok(())
        } else {
            Err(RuntimeError::Delete {
                runtime: self.name,
                stderr: out.stderr_text(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_hung_runtime_kill_ends_at_its_limit_and_is_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let fake = dir.path().join("runc");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho $$ > {}\nexec sleep 600\n",
                pid_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let runtime = Runtime {
            name: "runc",
            path: fake,
            root: dir.path().join("root"),
            global: Vec::new(),
            runsc: false,
            id_maps: None,
            _state: None,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(runtime.kill("c1", "TERM"));
        });
        // A teardown must end: the call returns (a failure) well within the test's patience.
        let sent = rx.recv_timeout(KILL_LIMIT * 6);
        assert_eq!(sent, Ok(false), "the kill of a hung runtime did not return");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::Error::ECHILD),
            "the hung runtime was left unreaped"
        );
    }
}
