//! A runtime's own cgroup join, seen from outside, so that every backend's join is measured and
//! charged to the host OS alike.
//!
//! native and cvm's container join their cgroup in the spawned child, which stamps the write
//! itself (`cgroup_join`). runc, crun, runsc and Docker's runc join theirs tens of milliseconds
//! into their own start, out of cvm's sight; left there, their join (which waits for an RCU
//! grace period when the host's cgroup migration lock is cold, ~10 ms) would sit inside their
//! `runtime` phase while cvm's runtime has it taken out. So while such a runtime starts, cvm
//! watches every cgroup hierarchy with fanotify for the `cgroup.procs` writes into the
//! container's cgroup: one group reports each such file's open, another its modification (sent
//! when the write has returned, so after any wait for the lock). Each write is reported to the
//! instance's timeline as a span ([`Event::Span`]), from the open's arrival to the write's: the
//! time the runtime spent in its `cgroup.procs` writes, carved out of its `runtime` phase.
//!
//! Two groups, because fanotify merges a file's queued open and modify into one event when the
//! reader has not read the first yet. The spans are stamped on arrival, like every event: a
//! write that returned before the watching thread woke for its open counts as zero. Where
//! fanotify is missing (not root, an old kernel) the join goes unseen: nothing is sent, and the
//! report puts every backend's join inside its runtime box (`report::stack`).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cvm_proto::metric::Phase;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, FanotifyEvent, InitFlags, MarkFlags, MaskFlags};

use super::events::Event;

/// How often the watching thread looks at its stop flag while no event comes.
const POLL_MS: u8 = 5;
/// After the first traced write, the join is over once this long passes with no other.
const QUIET: Duration = Duration::from_millis(500);
/// The longest a trace runs (a runtime that never joins: a failed start).
const LONGEST: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot start a fanotify group (needs CAP_SYS_ADMIN)")]
    Init(#[source] nix::Error),
    #[error("cannot watch the cgroup hierarchy mounted at {mount}")]
    Mark {
        mount: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("cannot start the cgroup join watcher's thread")]
    Thread(#[source] std::io::Error),
}

/// Whose `cgroup.procs` writes count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The cgroup directory named so, in any hierarchy (an OCI runtime's relative
    /// `cgroupsPath`).
    Named(String),
    /// Any cgroup directly below the one named so (a Docker daemon's `--cgroup-parent`).
    Below(String),
}

impl Target {
    /// Whether `path` (an open `cgroup.procs`) is one of the target's.
    fn matches(&self, path: &str) -> bool {
        let Some(dir) = path.strip_suffix("/cgroup.procs") else {
            return false;
        };
        match self {
            Target::Named(name) => dir.rsplit('/').next() == Some(name.as_str()),
            Target::Below(parent) => dir
                .rsplit_once('/')
                .is_some_and(|(up, _)| up.rsplit('/').next() == Some(parent.as_str())),
        }
    }
}

/// A running trace; dropping it tells the watching thread to stop, without waiting for it:
/// the thread still reports the writes made before the stop, then ends within a poll or two.
/// A launch drops it on its critical path (when a detached runtime exits), where a wait would
/// delay what follows (a runc container's veth, so its server's first answer): joining it
/// there added ~10 ms to runc's `probe` phase.
pub struct JoinTrace {
    stop: Arc<AtomicBool>,
    _thread: JoinHandle<()>,
}

impl JoinTrace {
    /// Starts watching for `target`'s `cgroup.procs` writes, each sent to `tx` as a
    /// `cgroup_join` span. Call before the runtime starts.
    pub fn start(target: Target, tx: Sender<Event>) -> Result<JoinTrace, TraceError> {
        let opens = group(MaskFlags::FAN_OPEN)?;
        let writes = group(MaskFlags::FAN_MODIFY)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("cvm-join-trace".into())
            .spawn(move || {
                // Stamps are taken on waking: a thread that wakes at once stamps the open of a
                // write before the write returns, on a busy host too. Best effort.
                let _ = crate::sys::sched::realtime_observer();
                watch(&opens, &writes, &target, &tx, &flag)
            })
            .map_err(TraceError::Thread)?;
        Ok(JoinTrace {
            stop,
            _thread: thread,
        })
    }
}

impl Drop for JoinTrace {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A fanotify group reporting `mask` on every cgroup hierarchy's mount.
fn group(mask: MaskFlags) -> Result<Fanotify, TraceError> {
    let flags = InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK;
    let events = EventFFlags::from_bits_truncate((OFlag::O_RDONLY | OFlag::O_CLOEXEC).bits() as _);
    let fan = Fanotify::init(flags, events).map_err(TraceError::Init)?;
    let mounts = cgroup_mounts();
    if mounts.is_empty() {
        return Err(TraceError::NoHierarchy);
    }
    for mount in mounts {
        let how = MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_MOUNT;
        fan.mark(how, mask, nix::fcntl::AT_FDCWD, Some(&mount))
            .map_err(|source| TraceError::Mark { mount, source })?;
    }
    Ok(fan)
}

/// Where every cgroup hierarchy (v1 or v2) is mounted, from `/proc/self/mounts`.
fn cgroup_mounts() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            matches!(f.get(2), Some(&"cgroup" | &"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// The watching thread: pairs each write with its file's open, until told to stop, until the
/// join has been quiet for [`QUIET`], or after [`LONGEST`].
fn watch(
    opens: &Fanotify,
    writes: &Fanotify,
    target: &Target,
    tx: &Sender<Event>,
    stop: &AtomicBool,
) {
    let started = Instant::now();
    let mut opened: HashMap<(i32, String), Instant> = HashMap::new();
    let mut last_write = None::<Instant>;
    loop {
        // Read before the flag is acted on: a write made before the stop is still reported.
        let stopping = stop.load(Ordering::SeqCst);
        let mut fds = [
            PollFd::new(opens.as_fd(), PollFlags::POLLIN),
            PollFd::new(writes.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, PollTimeout::from(POLL_MS));
        let now = Instant::now();
        // Opens first: a write's open is always queued before it.
        for (pid, path) in matching(opens, target) {
            opened.insert((pid, path), now);
        }
        for (pid, path) in matching(writes, target) {
            let from = opened.remove(&(pid, path)).unwrap_or(now);
            let _ = tx.send(Event::Span(Phase::CgroupJoin, from, now));
            last_write = Some(now);
        }
        let quiet = last_write.is_some_and(|t| now.duration_since(t) > QUIET);
        if stopping || quiet || now.duration_since(started) > LONGEST {
            break;
        }
    }
}

/// The target's events queued on `fan`: (writer's PID, the file's path).
fn matching(fan: &Fanotify, target: &Target) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    // Each read returns what fits in nix's buffer; read until the queue is empty.
    while let Ok(events) = fan.read_events() {
        if events.is_empty() {
            break;
        }
        found.extend(events.iter().filter_map(|e| {
            let path = event_path(e)?;
            target.matches(&path).then(|| (e.pid(), path))
        }));
    }
    found
}

/// The path of the file an event is about (its descriptor, closed when the event drops).
fn event_path(event: &FanotifyEvent) -> Option<String> {
    let fd = event.fd()?;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    link.to_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_match_their_cgroup_procs_only() {
        let named = Target::Named("cvm-ab-runc-0-1".into());
        assert!(named.matches("/sys/fs/cgroup/memory/user/cvm-ab-runc-0-1/cgroup.procs"));
        assert!(named.matches("/sys/fs/cgroup/unified/cvm-ab-runc-0-1/cgroup.procs"));
        assert!(!named.matches("/sys/fs/cgroup/memory/cvm-ab-runc-0-1/memory.limit_in_bytes"));
        assert!(!named.matches("/sys/fs/cgroup/memory/cvm-ab-runc-0-10/cgroup.procs"));
        assert!(!named.matches("/sys/fs/cgroup/memory/cvm-ab-runc-0-1/x/cgroup.procs"));
        let below = Target::Below("cvm-ab-dockerd".into());
        assert!(below.matches("/sys/fs/cgroup/pids/cvm-ab-dockerd/0123abcd/cgroup.procs"));
        assert!(!below.matches("/sys/fs/cgroup/pids/cvm-ab-dockerd/cgroup.procs"));
        assert!(!below.matches("/sys/fs/cgroup/pids/other/0123abcd/cgroup.procs"));
    }

    /// A real write into a real cgroup, traced: one span, ending after it began. Needs root
    /// (fanotify and cgroups); the host tests of the OCI backends cover the runtimes' joins.
    #[test]
    fn a_cgroup_procs_write_is_seen_as_one_span() {
        let root = nix::unistd::geteuid().is_root();
        if !crate::host_has(root, "root (fanotify and cgroups)") {
            return;
        }
        let name = format!("cvm-trace-test-{}", std::process::id());
        let (tx, rx) = std::sync::mpsc::channel();
        let trace = JoinTrace::start(Target::Named(name.clone()), tx).unwrap();
        let limits = crate::backend::cgroup::Limits {
            memory_bytes: 64 << 20,
            cpus: 1,
            cpuset: None,
            pids: None,
        };
        let mut cg = crate::backend::cgroup::Cgroup::create(&name, limits).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        // One write: with several, a loaded host can hold the test between two writes past the
        // trace's quiet period (the join then counts as over, by design) and lose the second.
        let began = Instant::now();
        std::fs::write(cg.dirs()[0].join("cgroup.procs"), child.id().to_string()).unwrap();
        let first = rx.recv_timeout(Duration::from_secs(5));
        // Nothing else was written, so nothing else may be reported.
        let extra = rx.recv_timeout(QUIET * 2);
        drop(trace);
        let _ = child.kill();
        let _ = child.wait();
        cg.remove().unwrap();
        // Stamped on arrival: never before the write began, never ending before it began.
        assert!(
            matches!(first, Ok(Event::Span(Phase::CgroupJoin, from, to)) if from >= began && to >= from),
            "{first:?}"
        );
        assert!(extra.is_err(), "{extra:?}");
    }
}
