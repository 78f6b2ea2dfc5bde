//! The `docker` CLI, run against one daemon: every call cvm makes to Docker goes through it, so
//! the daemon is named in one place (`DOCKER_HOST`), and a failure comes back in Docker's words.

use std::path::Path;
use std::process::{Command, Stdio};

use super::DockerError;

#[derive(Debug, Clone)]
pub(super) struct Client {
    /// `DOCKER_HOST` for every call; `None` uses the client's own default.
    pub host: Option<String>,
}

impl Client {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("docker");
        if let Some(host) = &self.host {
            cmd.env("DOCKER_HOST", host);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `docker args...`; its trimmed stdout, or the failure in Docker's words.
    pub fn run(&self, step: &'static str, args: &[&str]) -> Result<String, DockerError> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(DockerError::Client)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(DockerError::Command {
                step,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    pub fn server_version(&self) -> Result<String, DockerError> {
        self.run("version", &["version", "--format", "{{.Server.Version}}"])
    }

    /// `tar -C rootfs -c . | docker import - tag`.
    pub fn import(&self, rootfs: &Path, tag: &str) -> Result<(), DockerError> {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(DockerError::Client)?;
        let stdout = tar.stdout.take().map_or_else(Stdio::null, Stdio::from);
        let out = self
            .command()
            .args(["import", "-", tag])
            .stdin(stdout)
            .output()
            .map_err(DockerError::Client)?;
        let _ = tar.wait();
        if out.status.success() {
            Ok(())
        } else {
            Err(DockerError::Command {
                step: "import",
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}
