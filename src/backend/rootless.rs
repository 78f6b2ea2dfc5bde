//! What the backends that run without root share (cvm run by a normal user): what rootless
//! needs and lacks ([`missing`]), the user's subordinate ids and the id maps written with
//! them ([`IdMap`]), a user-mode network for a namespace no veth can reach ([`Slirp`]), and the
//! configuration every rootless backend records beside its figures ([`record`]).
//!
//! A user namespace maps the user to root inside and the user's subordinate ids (from
//! `/etc/subuid` and `/etc/subgid`) to the ids above, written by the setuid `newuidmap` and
//! `newgidmap` (Debian's uidmap). No cgroup is delegated to the user on a host with cgroup v1
//! controllers, so nothing is limited; no veth can be made, so a private network is
//! slirp4netns (a TAP device in the namespace, served by a user-mode TCP/IP stack on the host)
//! and the readiness port is forwarded from a free port on the host's loopback, as rootless
//! Podman publishes it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::command::{run_within, CommandError};
use super::process::{Supervised, Terminate};
use super::BackendConfig;
use crate::scenario::NetworkMode;

/// How long `newuidmap`, `newgidmap` and slirp4netns's start may take.
const LIMIT: Duration = Duration::from_secs(10);
/// The MTU rootless Podman gives slirp4netns by default, so both pay the same per packet.
const SLIRP_MTU: &str = "65520";

#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error("{file} has no subordinate ids for {user}")]
    NoSubordinateIds { file: &'static str, user: String },
    #[error("cannot run {tool}")]
    Tool {
        tool: &'static str,
        #[source]
        source: CommandError,
    },
    #[error("{tool} failed: {stderr}")]
    ToolFailed { tool: &'static str, stderr: String },
    #[error("cannot make slirp4netns's directory")]
    Dir(#[source] std::io::Error),
    #[error("cannot start slirp4netns")]
    SlirpSpawn(#[source] std::io::Error),
    #[error("slirp4netns did not answer on its API socket within {LIMIT:?}")]
    SlirpTimeout,
    #[error("slirp4netns exited before it served the network: {0}")]
    SlirpExited(String),
    #[error("cannot ask slirp4netns to forward the port")]
    SlirpApi(#[source] std::io::Error),
    #[error("slirp4netns refused to forward the port: {0}")]
    SlirpRefused(String),
    #[error("cannot find a free port on the host's loopback")]
    Port(#[source] std::io::Error),
}

/// Whether cvm runs without root, so backends take their rootless way.
pub fn active() -> bool {
    !nix::unistd::geteuid().is_root()
}

/// The user's name (or, with no entry in the password database, the uid as text).
fn user_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// The user's first range in a subordinate-id file, as (start, count).
fn subordinate(file: &'static str, id: u32) -> Result<(u32, u32), RootlessError> {
    let name = user_name();
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            (owner == name || owner == id.to_string())
                .then(|| Some((start.parse().ok()?, count.parse().ok()?)))
                .flatten()
        })
        .next()
        .ok_or(RootlessError::NoSubordinateIds { file, user: name })
}

/// What `who` (say "rootless podman") lacks for this user, with the fix: newuidmap and
/// newgidmap, slirp4netns when a network is asked for, subordinate ids. `None`: nothing.
pub fn missing(who: &str, network: bool) -> Option<(String, String)> {
    if super::find_binary("newuidmap").is_none() || super::find_binary("newgidmap").is_none() {
        return Some((
            format!("{who} needs newuidmap and newgidmap, not found"),
            "install the Debian package uidmap".into(),
        ));
    }
    if network && super::find_binary("slirp4netns").is_none() {
        return Some((
            format!("{who}'s network needs slirp4netns, not found"),
            "install the Debian package slirp4netns".into(),
        ));
    }
    let uid = nix::unistd::getuid().as_raw();
    for file in ["/etc/subuid", "/etc/subgid"] {
        if let Err(RootlessError::NoSubordinateIds { file, user }) = subordinate(file, uid) {
            return Some((
                format!("{who} needs subordinate ids: {file} has no entry for {user}"),
                format!(
                    "as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 \
                     {user}"
                ),
            ));
        }
    }
    None
}

/// A user namespace's id maps for this user: the user is root inside, its subordinate ids
/// the ids from 1 up.
#[derive(Debug, Clone)]
pub struct IdMap {
    uid: u32,
    gid: u32,
    subuid: (u32, u32),
    subgid: (u32, u32),
}

impl IdMap {
    pub fn for_user() -> Result<IdMap, RootlessError> {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        Ok(IdMap {
            uid,
            gid,
            subuid: subordinate("/etc/subuid", uid)?,
            // Keyed by the user too (name or uid), not by group.
            subgid: subordinate("/etc/subgid", uid)?,
        })
    }

    /// The arguments of `newuidmap PID ...` and `newgidmap PID ...` after the PID.
    pub fn ranges(&self) -> [Vec<String>; 2] {
        let one = |id: u32, (start, count): (u32, u32)| {
            [
                "0",
                &id.to_string(),
                "1",
                "1",
                &start.to_string(),
                &count.to_string(),
            ]
            .map(String::from)
            .to_vec()
        };
        [one(self.uid, self.subuid), one(self.gid, self.subgid)]
    }

    /// The user namespace of process `pid` gets these maps (`newuidmap`, then `newgidmap`).
    pub fn apply(&self, pid: i32) -> Result<(), RootlessError> {
        let [uids, gids] = self.ranges();
        for (tool, ranges) in [("newuidmap", uids), ("newgidmap", gids)] {
            let done = run_within(Command::new(tool).arg(pid.to_string()).args(&ranges), LIMIT)
                .map_err(|source| RootlessError::Tool { tool, source })?;
            if !done.success() {
                return Err(RootlessError::ToolFailed {
                    tool,
                    stderr: done.stderr_text(),
                });
            }
        }
        Ok(())
    }

    /// The same maps as (inside, host, count) for an OCI bundle: uids, then gids.
    pub fn oci(&self) -> [Vec<(u32, u32, u32)>; 2] {
        let one = |id: u32, (start, count): (u32, u32)| vec![(0, id, 1), (1, start, count)];
        [one(self.uid, self.subuid), one(self.gid, self.subgid)]
    }

    /// [`IdMap::apply`] as the hook cvm's runtime calls while its cloned child waits.
    pub fn mapper(&self) -> cvm_runtime::sys::UserMapper {
        let map = self.clone();
        Box::new(move |pid| map.apply(pid).map_err(std::io::Error::other))
    }
}

/// A port on the host's loopback that nothing listens on now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What a rootless run changes, recorded with every sample (`rootless`, `limits`, and
/// `network` unless there is none) so the report marks the figures and `cvm diff` names them.
pub fn record(c: &mut BackendConfig, how: &str, network: NetworkMode) {
    c.insert("rootless".into(), format!("yes: {how}"));
    c.insert(
        "limits".into(),
        "none: no cgroup is delegated to the user (cgroup v1 controllers here)".into(),
    );
    if network != NetworkMode::None {
        c.insert(
            "network".into(),
            "slirp4netns (user-mode network), the port forwarded from 127.0.0.1".into(),
        );
    }
}

/// slirp4netns serving the network namespace of one process, with the readiness port
/// forwarded from the host's loopback; stopped and its directory removed when dropped.
pub struct Slirp {
    process: Supervised,
    dir: PathBuf,
    /// (port inside, port on the host's loopback), when one is forwarded.
    pub forwarded: Option<(u16, u16)>,
}

impl Slirp {
    /// Starts slirp4netns on the network namespace of `pid` (joining its user namespace), waits
    /// for its API socket (opened once the TAP is configured) and forwards `port`.
    pub fn start(pid: i32, port: Option<u16>, label: &str) -> Result<Slirp, RootlessError> {
        let dir = std::env::temp_dir().join(format!("cvm-slirp-{label}-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(RootlessError::Dir)?;
        let socket = dir.join("api.sock");
        let log = dir.join("slirp4netns.log");
        let child = std::fs::File::create(&log).and_then(|log| {
            Command::new("slirp4netns")
                .args(["--configure", "--mtu", SLIRP_MTU, "--disable-host-loopback"])
                .arg("--api-socket")
                .arg(&socket)
                .args([pid.to_string().as_str(), "tap0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
        });
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(RootlessError::SlirpSpawn(e));
            }
        };
        // From here on dropping `slirp` stops it and removes its directory.
        let mut slirp = Slirp {
            process: Supervised::from_child(child),
            dir,
            forwarded: None,
        };
        let deadline = Instant::now() + LIMIT;
        let stream = loop {
            match UnixStream::connect(&socket) {
                Ok(s) => break s,
                Err(_) if slirp.process.running_pid().is_none() => {
                    let said = std::fs::read_to_string(&log).unwrap_or_default();
                    let last = said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
                    return Err(RootlessError::SlirpExited(last.trim().to_string()));
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(_) => return Err(RootlessError::SlirpTimeout),
            }
        };
        if let Some(inside) = port {
            let host = free_port().map_err(RootlessError::Port)?;
            forward(stream, host, inside)?;
            slirp.forwarded = Some((inside, host));
        }
        Ok(slirp)
    }

    /// slirp4netns's PID while it runs: it stays for the container's life.
    pub fn pid(&self) -> Option<u32> {
        self.process.running_pid()
    }
}

/// One `add_hostfwd` request on slirp4netns's API socket.
fn forward(mut stream: UnixStream, host: u16, inside: u16) -> Result<(), RootlessError> {
    let request = format!(
        r#"{{"execute": "add_hostfwd", "arguments": {{"proto": "tcp", "host_addr": "127.0.0.1", "host_port": {host}, "guest_port": {inside}}}}}"#
    );
    stream
        .set_read_timeout(Some(LIMIT))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(RootlessError::SlirpApi)?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(RootlessError::SlirpApi)?;
    if answer.contains("\"error\"") || !answer.contains("\"return\"") {
        return Err(RootlessError::SlirpRefused(answer.trim().to_string()));
    }
    Ok(())
}

impl Drop for Slirp {
    fn drop(&mut self) {
        self.process.stop(&Terminate);
        self.process.reap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_root_inside_and_its_subordinate_ids_follow() {
        let map = IdMap {
            uid: 1000,
            gid: 1001,
            subuid: (100_000, 65536),
            subgid: (200_000, 65536),
        };
        let [uids, gids] = map.ranges();
        assert_eq!(uids.join(" "), "0 1000 1 1 100000 65536");
        assert_eq!(gids.join(" "), "0 1001 1 1 200000 65536");
    }

    #[test]
    fn a_rootless_record_names_what_changed() {
        let mut c = BackendConfig::new();
        record(&mut c, "a user namespace", NetworkMode::Private);
        assert!(c["rootless"].starts_with("yes"));
        assert!(c["limits"].starts_with("none"));
        assert!(c["network"].contains("slirp4netns"));
        let mut c = BackendConfig::new();
        record(&mut c, "a user namespace", NetworkMode::None);
        assert!(!c.contains_key("network"));
    }
}
