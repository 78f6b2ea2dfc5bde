//! The `docker` CLI, run against one daemon: every call cvm makes to Docker goes through it, so
//! the daemon is named in one place (`DOCKER_HOST`), and a failure comes back in Docker's words.
//! Two questions asked while something is being timed go to the Engine API on the daemon's Unix
//! socket instead ([`engine_get`]): a client run is a process start of its own, 10–30 ms here.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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

    /// The daemon's Unix socket, where the client would use one: `DOCKER_HOST`'s `unix://`
    /// path, or the default socket when neither cvm nor the environment names a daemon.
    pub fn socket(&self) -> Option<PathBuf> {
        let host = self
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok());
        match host {
            Some(host) => host.strip_prefix("unix://").map(PathBuf::from),
            None => Some(PathBuf::from(super::DEFAULT_DOCKER_SOCKET)),
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

/// How long one Engine API request may take.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET path` on the Engine API at the Unix socket `socket`: the body of a 200 answer, `None` on
/// any other answer or failure. HTTP/1.0, so the daemon answers with a plain body and closes.
pub(super) fn engine_get(socket: &Path, path: &str) -> Option<String> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(ENGINE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(ENGINE_TIMEOUT)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    stream.take(1 << 20).read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    (status.starts_with("HTTP/1.") && status.split_whitespace().nth(1) == Some("200"))
        .then(|| body.to_string())
}

/// The container's address on its network from the Engine API's `GET /containers/NAME/json`
/// (`NetworkSettings.IPAddress`), once it has one.
pub(super) fn address_of(inspect: &str) -> Option<std::net::IpAddr> {
    let value: serde_json::Value = serde_json::from_str(inspect).ok()?;
    value["NetworkSettings"]["IPAddress"].as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_read_once_the_container_has_one() {
        let started = r#"{"Id":"x","NetworkSettings":{"IPAddress":"10.213.240.2","Ports":{}}}"#;
        assert_eq!(address_of(started), Some("10.213.240.2".parse().unwrap()));
        let created = r#"{"Id":"x","NetworkSettings":{"IPAddress":""}}"#;
        assert_eq!(address_of(created), None);
        assert_eq!(address_of("not json"), None);
    }

    #[test]
    fn engine_get_returns_the_body_of_a_200_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        assert_eq!(engine_get(&path, "/_ping"), None, "no socket");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let serve = |reply: &'static [u8]| {
            let l = listener.try_clone().unwrap();
            std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 256];
                let n = s.read(&mut buf).unwrap();
                s.write_all(reply).unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            })
        };
        let t = serve(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        assert_eq!(engine_get(&path, "/_ping").as_deref(), Some("OK"));
        assert!(t.join().unwrap().starts_with("GET /_ping HTTP/1.0\r\n"));
        let t = serve(b"HTTP/1.0 404 Not Found\r\n\r\n{}");
        assert_eq!(engine_get(&path, "/containers/x/json"), None);
        t.join().unwrap();
    }
}
