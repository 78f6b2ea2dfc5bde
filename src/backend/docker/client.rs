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
use crate::backend::command::{run_within, CommandError};
use crate::backend::process::Supervised;

/// How long one `docker` call may take (`rm --force` of a running container included) before
/// it is killed: a teardown always ends.
const CLIENT_LIMIT: Duration = Duration::from_secs(60);
/// How long `docker import` of the image's root filesystem may take.
const IMPORT_LIMIT: Duration = Duration::from_secs(600);
/// How long `tar` may take to exit once `docker import` has read its stream to the end.
const TAR_EXIT_LIMIT: Duration = Duration::from_secs(10);

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

    /// Runs `docker args...`; its trimmed stdout, or the failure in Docker's words. A call that
    /// does not finish within [`CLIENT_LIMIT`] is killed.
    pub fn run(&self, step: &'static str, args: &[&str]) -> Result<String, DockerError> {
        let out = run_within(self.command().args(args), CLIENT_LIMIT)
            .map_err(|e| command_error(step, e))?;
        if out.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(DockerError::Command {
                step,
                stderr: out.stderr_text(),
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

    /// `tar -C rootfs -c . | docker import - tag`. A failure of either side removes what the
    /// import may have stored under `tag`, so a truncated image is never found in the cache.
    pub fn import(&self, rootfs: &Path, tag: &str) -> Result<(), DockerError> {
        let mut tar = Command::new("tar");
        tar.arg("-C").arg(rootfs).args(["-cf", "-", "."]);
        let mut import = self.command();
        import.args(["import", "-", tag]);
        import_stream(tar, import, || {
            // Best effort: "No such image" when the import stored nothing.
            let _ = self.run("image rm", &["image", "rm", "--force", tag]);
        })
    }
}

/// Runs `tar` into `import`'s stdin; both must succeed. On any failure `remove` is called
/// before the error is returned.
fn import_stream(
    mut tar: Command,
    mut import: Command,
    remove: impl FnOnce(),
) -> Result<(), DockerError> {
    let mut child = tar
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(DockerError::Tar)?;
    let stdout = child.stdout.take().map_or_else(Stdio::null, Stdio::from);
    // Read beside the import, so a tar with much to say never blocks on a full pipe.
    let tar_stderr = child.stderr.take().map(|e| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = e.take(64 * 1024).read_to_string(&mut text);
            text.trim().to_string()
        })
    });
    let mut tar = Supervised::from_child(child);
    let imported = run_within(import.stdin(stdout), IMPORT_LIMIT);
    let tar_exit = tar.wait_within(TAR_EXIT_LIMIT);
    // A tar still running is killed now, which ends its stderr too.
    tar.reap();
    let tar_says = tar_stderr
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    let result = match (imported, tar_exit) {
        (Err(e), _) => Err(command_error("import", e)),
        (Ok(out), _) if !out.success() => Err(DockerError::Command {
            step: "import",
            stderr: out.stderr_text(),
        }),
        (Ok(_), Some(exit)) if exit.success() => Ok(()),
        (Ok(_), exit) => Err(DockerError::TarFailed {
            exit: exit.map_or_else(
                || format!("still running after {} s; killed", TAR_EXIT_LIMIT.as_secs()),
                |e| e.to_string(),
            ),
            stderr: tar_says,
        }),
    };
    if result.is_err() {
        remove();
    }
    result
}

/// A `docker` call that could not be run or did not finish in time.
fn command_error(step: &'static str, e: CommandError) -> DockerError {
    match e {
        CommandError::Spawn { source, .. } => DockerError::Client(source),
        CommandError::TimedOut { limit, .. } => DockerError::TimedOut {
            step,
            limit_s: limit.as_secs(),
        },
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
    use std::cell::Cell;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn a_failed_tar_fails_the_import_and_removes_what_it_stored() {
        let removed = Cell::new(false);
        // tar writes part of a stream and fails; the import reads it all and succeeds.
        let result = import_stream(
            sh("printf partial; echo 'tar: ./etc: Cannot open' >&2; exit 2"),
            sh("cat > /dev/null"),
            || removed.set(true),
        );
        match result {
            Err(DockerError::TarFailed { exit, stderr }) => {
                assert_eq!(exit, "exit code 2");
                assert!(stderr.contains("Cannot open"), "{stderr}");
            }
            other => panic!("{other:?}"),
        }
        assert!(removed.get(), "the partial image was left under its tag");
    }

    #[test]
    fn an_import_succeeds_only_when_both_sides_do() {
        let removed = Cell::new(false);
        import_stream(sh("printf whole"), sh("cat > /dev/null"), || {
            removed.set(true)
        })
        .unwrap();
        assert!(!removed.get());
        let failed = import_stream(sh("printf whole"), sh("cat > /dev/null; exit 1"), || {
            removed.set(true)
        });
        assert!(matches!(
            failed,
            Err(DockerError::Command { step: "import", .. })
        ));
        assert!(removed.get());
    }

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
