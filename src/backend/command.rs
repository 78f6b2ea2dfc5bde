//! Short commands cvm runs to completion (the `docker` CLI, `runc kill` and `delete`, the `tar`
//! feeding `docker import`): every one with a time limit, through the one lifecycle, so a hung
//! command is killed and reaped, never waited for forever and never left a zombie.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::events::ExitInfo;
use super::process::Supervised;

/// The most of a command's stdout or stderr kept; the rest is read and dropped, so a chatty
/// command can neither block on a full pipe nor grow cvm's memory.
const KEEP_OUTPUT: u64 = 1 << 20;
/// How long the pipes of a command that has ended may stay open (a child it left behind holds
/// them) before what was read is taken as all.
const PIPE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {} s; it was killed", .limit.as_secs_f64())]
    TimedOut { program: PathBuf, limit: Duration },
}

/// How a command ended, and what it wrote.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitInfo,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Its stderr as trimmed text, for an error message.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Runs `cmd` with its stdout and stderr collected, and waits at most `limit` for it: past that
/// it is killed and reaped, and the answer is [`CommandError::TimedOut`]. Its stdin is left as
/// the caller set it (the caller sets `/dev/null` or a pipe).
pub fn run_within(cmd: &mut Command, limit: Duration) -> Result<Finished, CommandError> {
    let program = PathBuf::from(cmd.get_program());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program.clone(),
            source,
        })?;
    let (stdout, stderr) = collect_output(&mut child);
    let mut process = Supervised::from_child(child);
    let Some(status) = process.wait_within(limit) else {
        process.reap();
        return Err(CommandError::TimedOut { program, limit });
    };
    let take = |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(PIPE_GRACE).unwrap_or_default();
    Ok(Finished {
        status,
        stdout: take(stdout),
        stderr: take(stderr),
    })
}

/// Reads the child's stdout and stderr on threads, each sent whole at end-of-file.
fn collect_output(child: &mut Child) -> (mpsc::Receiver<Vec<u8>>, mpsc::Receiver<Vec<u8>>) {
    fn reader(source: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel();
        if let Some(source) = source {
            std::thread::spawn(move || {
                let mut source = source;
                let mut kept = Vec::new();
                let _ = source.by_ref().take(KEEP_OUTPUT).read_to_end(&mut kept);
                let _ = std::io::copy(&mut source, &mut std::io::sink());
                let _ = tx.send(kept);
            });
        }
        rx
    }
    (reader(child.stdout.take()), reader(child.stderr.take()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).stdin(Stdio::null());
        cmd
    }

    #[test]
    fn a_command_that_finishes_gives_its_status_and_output() {
        let done = run_within(
            &mut sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(done.status.code, Some(3));
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr_text(), "err");
        assert!(!done.success());
    }

    #[test]
    fn a_hung_command_is_killed_and_reaped_at_its_limit() {
        let pid_file = tempfile::NamedTempFile::new().unwrap();
        let script = format!("echo $$ > {}; exec sleep 600", pid_file.path().display());
        let started = Instant::now();
        let err = run_within(&mut sh(&script), Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(60));
        let pid: i32 = std::fs::read_to_string(pid_file.path())
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Reaped, not a zombie: the PID is no child of ours any more.
        assert_eq!(
            nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::Error::ECHILD)
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run_within(
            Command::new("/nonexistent/cvm-no-such-tool").stdin(Stdio::null()),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }), "{err}");
    }
}
