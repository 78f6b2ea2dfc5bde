//! The runtime driver: how cvm talks to `runc` or `crun`. Every command carries
//! `--root /run/cvm-oci/<runtime>`, so cvm's containers are kept apart from anyone else's.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot run `{runtime} delete`")]
    DeleteSpawn {
        runtime: &'static str,
        #[source]
        source: io::Error,
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
}

impl Runtime {
    /// The runtime with cvm's state directory.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    /// The first line of `--version`, recorded with every sample.
    pub fn version(&self) -> String {
        self.command()
            .arg("--version")
            .output()
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
        cmd.args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .args(["--preserve-fds", "1"])
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id);
        cmd
    }

    /// Sends `signal` (`TERM`, `KILL`) to container `id`'s init through the runtime.
    pub fn kill(&self, id: &str, signal: &str) -> bool {
        self.command()
            .args(["kill", id, signal])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Deletes container `id` (and with it its cgroup) if the runtime still knows it.
    pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        let out = self
            .command()
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::DeleteSpawn {
                runtime: self.name,
                source,
            })?;
        if out.status.success() || !self.root.join(id).exists() {
            Ok(())
        } else {
            Err(RuntimeError::Delete {
                runtime: self.name,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}
