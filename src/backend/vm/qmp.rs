//! A hand-rolled QMP client: JSON lines over the Unix socket QEMU opens with `-qmp`.
//!
//! QMP is a greeting, `qmp_capabilities`, then one `{"execute": ...}` per line answered by a
//! `{"return": ...}` or `{"error": ...}` line, with asynchronous `{"event": ...}` lines
//! interleaved. Connecting and `quit` are all cvm needs, so a crate would add more than it saves.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to the QMP socket {path}")]
    Connect {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("QMP I/O failed")]
    Io(#[source] io::Error),
    #[error("QEMU closed the QMP connection")]
    Closed,
    #[error("QMP sent something that is not JSON: {0}")]
    Parse(String),
    #[error("QMP command {command} failed: {message}")]
    Command { command: String, message: String },
}

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects (retrying until `timeout`: QEMU creates the socket early in its start-up but not
    /// instantly), reads the greeting and enters command mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(QmpError::Connect {
                        path: path.display().to_string(),
                        source: e,
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(100))))
            .map_err(QmpError::Io)?;
        let writer = stream.try_clone().map_err(QmpError::Io)?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Parse(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs one command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(QmpError::Io)?;
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(QmpError::Command {
                    command: command.to_string(),
                    message: err
                        .get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                        .to_string(),
                });
            }
        }
    }

    /// `quit`: QEMU stops the guest and exits cleanly (closing files, removing nothing it did
    /// not create). The connection closing before the reply is also success.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None) {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(QmpError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(QmpError::Io)?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(line.trim()).map_err(|_| QmpError::Parse(line.trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A scripted QMP server: greets, then answers each command line with the next reply.
    fn fake_qemu(path: &Path, replies: Vec<&'static str>) -> std::thread::JoinHandle<Vec<String>> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            let mut seen = Vec::new();
            for reply in replies {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                seen.push(line.trim().to_string());
                w.write_all(reply.as_bytes()).unwrap();
                w.write_all(b"\n").unwrap();
            }
            seen
        })
    }

    #[test]
    fn quit_succeeds_when_qemu_hangs_up_before_replying() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            w.write_all(b"{\"QMP\": {}}\n{\"return\": {}}\n").unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap(); // qmp_capabilities
            line.clear();
            r.read_line(&mut line).unwrap(); // quit: hang up without a reply
            line
        });
        let mut q = Qmp::connect(&sock, Duration::from_secs(2)).unwrap();
        q.quit().unwrap();
        assert_eq!(server.join().unwrap().trim(), r#"{"execute":"quit"}"#);
    }

    #[test]
    fn negotiates_then_runs_commands_skipping_events() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let server = fake_qemu(
            &sock,
            vec![
                r#"{"return": {}}"#,
                r#"{"event": "RESUME", "timestamp": {}}
{"return": {"status": "running", "running": true}}"#,
                r#"{"return": {"base-memory": 268435456}}"#,
                r#"{"error": {"class": "GenericError", "desc": "nope"}}"#,
            ],
        );
        let mut q = Qmp::connect(&sock, Duration::from_secs(2)).unwrap();
        let status = q.execute("query-status", None).unwrap();
        assert_eq!(status["status"], "running");
        let mem = q
            .execute("query-memory-size-summary", Some(json!({})))
            .unwrap();
        assert_eq!(mem["base-memory"], 268435456u64);
        let err = q.execute("system_powerdown", None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let seen = server.join().unwrap();
        assert_eq!(seen[0], r#"{"execute":"qmp_capabilities"}"#);
        assert_eq!(seen[1], r#"{"execute":"query-status"}"#);
        let third: Value = serde_json::from_str(&seen[2]).unwrap();
        assert_eq!(
            third,
            json!({"execute": "query-memory-size-summary", "arguments": {}})
        );
    }
}
