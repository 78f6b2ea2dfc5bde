//! The inside half of a server's readiness for an instance with no cvm init (native, which
//! shares the host's network namespace): a thread asks the kernel, as init does inside a
//! container or VM (`cvm_runtime::listen`), until `port` is in LISTEN, and sends
//! `CVM:listening` as init would.
//!
//! On the host's network any process may hold the port, so a listener counts only if it is the
//! instance's: the socket's inode must be one of the `socket:[inode]` links in the descriptors
//! of the workload or a process it started (its tree, by `/proc/PID/task/TID/children`).
//! A port held by another process is a failed run that names the holder, never a "ready"
//! answered by someone else. (A server that daemonizes out of its tree would not be seen;
//! cvm-guest's and bring-your-own servers stay in the foreground, as every backend runs them.)

use std::collections::BTreeSet;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cvm_proto::Marker;

use super::events::Event;

/// How long a port may be held by others alone (the workload's own listener not yet there)
/// before the run fails: a server on another address of the same port can share it.
const FOREIGN_GRACE: Duration = Duration::from_secs(1);
/// How often the owner is looked for while the port is held by others (each look reads the
/// descriptors of the workload's tree).
const FOREIGN_POLL: Duration = Duration::from_millis(10);

/// Watches for `port` in LISTEN by process `pid`'s tree; stops when `pid` is gone, when
/// nobody listens to the answer, or once it has answered.
pub fn spawn_listen_watcher(
    pid: u32,
    port: u16,
    tx: Sender<Event>,
) -> std::io::Result<JoinHandle<()>> {
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    std::thread::Builder::new()
        .name("cvm-listen".into())
        .spawn(move || {
            let mut watch = cvm_runtime::listen::ListenWatch::new(&proc_dir);
            let mut held_by_others_since = None;
            while proc_dir.exists() {
                let Some(inodes) = watch.listeners(port) else {
                    return;
                };
                if inodes.is_empty() {
                    held_by_others_since = None;
                    std::thread::sleep(cvm_runtime::listen::POLL);
                    continue;
                }
                if tree_holds(pid, &inodes) {
                    let _ = tx.send(Event::Marker(Marker::Listening(port), Instant::now()));
                    return;
                }
                let since = *held_by_others_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= FOREIGN_GRACE {
                    let _ = tx.send(Event::Marker(
                        Marker::Error(held_by_others(port, &inodes)),
                        Instant::now(),
                    ));
                    return;
                }
                std::thread::sleep(FOREIGN_POLL);
            }
        })
}

/// Whether a process of `root`'s tree has one of the sockets `inodes` open.
fn tree_holds(root: u32, inodes: &[u64]) -> bool {
    tree(root).into_iter().any(|pid| holds(pid, inodes))
}

/// `root` and every process it started, by the kernel's lists of each thread's children.
pub(crate) fn tree(root: u32) -> BTreeSet<u32> {
    let mut seen = BTreeSet::from([root]);
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        for task in tasks.into_iter().flatten().flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if seen.insert(child) {
                    todo.push(child);
                }
            }
        }
    }
    seen
}

/// Whether process `pid` has one of the sockets `inodes` open.
fn holds(pid: u32, inodes: &[u64]) -> bool {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"));
    fds.into_iter().flatten().flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|link| socket_inode(&link.to_string_lossy()))
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

/// The inode of a `socket:[inode]` descriptor link.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Why the run fails when the port is held by another process, naming it when it can be found.
fn held_by_others(port: u16, inodes: &[u64]) -> String {
    let holder = super::procfs::processes()
        .map(|(pid, _)| pid)
        .find(|&pid| holds(pid, inodes))
        .map_or_else(
            || "a process cvm cannot see".to_string(),
            |pid| format!("PID {pid}, {}", super::procfs::name(pid)),
        );
    format!(
        "port {port} is in LISTEN by a process outside the instance ({holder}), not by the \
         workload: the host's probe would be answered by it; stop it or choose another port"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_socket_is_traced_to_the_tree_that_holds_it() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", l.as_raw_fd())).unwrap();
        let inode = socket_inode(&link.to_string_lossy()).unwrap();
        let me = std::process::id();
        assert!(holds(me, &[inode]));
        assert!(tree_holds(me, &[inode]));
        // A child of ours is in our tree, and does not hold our socket itself.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(tree(me).contains(&child.id()));
        assert!(!holds(child.id(), &[inode]));
        assert!(!tree_holds(child.id(), &[inode]));
        child.kill().unwrap();
        child.wait().unwrap();
        let port = l.local_addr().unwrap().port();
        let why = held_by_others(port, &[inode]);
        assert!(why.contains(&format!("PID {me}")), "{why}");
    }
}
