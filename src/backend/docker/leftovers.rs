//! What a private Docker daemon leaves on the host, found and removed: its containerd (found
//! as dockerd's child, ended through a pidfd), mounts under its directories, its cgroups in
//! every hierarchy. Nothing here touches a process or directory cvm did not make.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::backend::procfs::{self, parent_pid};

/// The children of `parent` whose command name is `name`, from `/proc`.
pub(super) fn children_named(parent: u32, name: &str) -> Vec<u32> {
    procfs::processes()
        .map(|(pid, _)| pid)
        .filter(|&pid| procfs::name(pid) == name && parent_pid(pid) == Some(parent))
        .collect()
}

/// containerd as dockerd's child, with a pidfd opened while it still was (checked after the
/// open, so the pidfd cannot be a stranger's that reused the PID).
pub(super) fn containerd_of(dockerd: u32) -> Option<(u32, OwnedFd)> {
    let pid = *children_named(dockerd, "containerd").first()?;
    let fd = cvm_runtime::sys::pidfd_open(i32::try_from(pid).ok()?).ok()?;
    (parent_pid(pid) == Some(dockerd)).then_some((pid, fd))
}

/// Reaps `pid` if it is an exited child of cvm (containerd is, when cvm is a child subreaper
/// and dockerd went first). Not through a [`crate::backend::process::Supervised`], which owns a
/// child from its spawn: this one was found in `/proc`. The check cannot be fooled by a reused
/// PID: a child of cvm's keeps its number until cvm itself reaps it.
pub(super) fn reap_if_ours(pid: u32) {
    if parent_pid(pid) == Some(std::process::id()) {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(raw), None);
        }
    }
}

/// Unmounts (lazily) every mount at or under `dir`, deepest first.
pub(super) fn unmount_under(dir: &Path) {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The cgroup hierarchies' directories named `name`, at their root or a few levels down (where
/// the host put cvm itself: Docker's cgroupfs driver places a relative parent under the
/// caller's own cgroup in each hierarchy).
pub(super) fn cgroups_named(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: u32, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name() == name {
                found.push(entry.path());
            } else if depth > 0 {
                walk(&entry.path(), name, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 4, &mut found);
    found
}

/// Removes a cgroup directory and the (empty) ones below it, deepest first; the error names
/// the directory that stayed.
pub(super) fn remove_cgroup_tree(dir: &Path) -> Result<(), (PathBuf, io::Error)> {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err((dir.to_path_buf(), e)),
        _ => Ok(()),
    }
}

/// Docker's default parent cgroups (`docker` in each hierarchy, or at the root of a unified
/// one) that exist now.
pub(super) fn docker_cgroups() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup/docker")];
    dirs.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("docker")),
    );
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}
