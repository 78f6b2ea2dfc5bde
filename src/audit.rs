//! Leak audit: everything on the host that looks like it was left by cvm, as a comparable
//! snapshot. Take one before and one after a piece of work; [`Snapshot::leaked_since`] lists
//! what appeared and is still there. The tests use it to prove that teardown removes every
//! process, mount, cgroup, network namespace, link and temporary directory an instance created.
//!
//! What counts:
//! - processes running `cvm-guest` (by executable or first argument) and OCI runtime processes
//!   (`runc`, `crun`, `runsc` with its sandbox and gofer) and their children — recorded with their memory cgroup, so a leak can be
//!   traced to the run whose cgroup name it carries — and QEMU processes whose command line
//!   names a `cvm-` path (a VM instance's QMP socket lives in its `cvm-<run>-...` temp dir);
//! - mounts whose source or mount point mentions `cvm`;
//! - cgroup directories named `cvm-*` in any hierarchy (searched a few levels deep, because cvm
//!   nests instances under its own cgroup);
//! - named network namespaces (`/run/netns/cvm*`) and network links named `cvm*`;
//! - temporary directories named `cvm-*`, and containers left in cvm's OCI state directories.
//!
//! On a shared machine other cvm runs come and go while a test runs; every resource name cvm
//! creates carries its run token, so [`Snapshot::matching`] narrows a diff to one run.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// One resource that looks like cvm's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    pub kind: ResourceKind,
    /// What identifies it: a PID with its command line and cgroup, a path, a link name.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceKind {
    Process,
    Mount,
    Cgroup,
    NetNamespace,
    Link,
    TempDir,
    OciContainer,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.kind, self.name)
    }
}

/// The cvm-looking resources present at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub resources: BTreeSet<Resource>,
}

impl Snapshot {
    /// What is in `self` but was not in `before`.
    pub fn leaked_since(&self, before: &Snapshot) -> Vec<Resource> {
        self.resources
            .difference(&before.resources)
            .cloned()
            .collect()
    }

    /// Only the resources whose name contains `token` (a run id).
    pub fn matching(&self, token: &str) -> Snapshot {
        Snapshot {
            resources: self
                .resources
                .iter()
                .filter(|r| r.name.contains(token))
                .cloned()
                .collect(),
        }
    }
}

/// Takes a snapshot of the host now.
pub fn snapshot() -> Snapshot {
    let mut resources = BTreeSet::new();
    let mut add = |kind, name: String| {
        resources.insert(Resource { kind, name });
    };
    for p in processes() {
        add(ResourceKind::Process, p);
    }
    if let Ok(text) = fs::read_to_string("/proc/self/mountinfo") {
        for line in text.lines().filter(|l| l.contains("cvm")) {
            // Mount ids change with every mount; the mount point and source identify it.
            let fields: Vec<&str> = line.split_whitespace().collect();
            let point = fields.get(4).copied().unwrap_or("");
            let source = fields
                .iter()
                .position(|f| *f == "-")
                .and_then(|i| fields.get(i + 2))
                .copied()
                .unwrap_or("");
            add(ResourceKind::Mount, format!("{point} from {source}"));
        }
    }
    for dir in cgroup_dirs(Path::new("/sys/fs/cgroup"), 5) {
        add(ResourceKind::Cgroup, dir.display().to_string());
    }
    for name in names_in(Path::new("/run/netns"), "cvm") {
        add(ResourceKind::NetNamespace, name);
    }
    for name in names_in(Path::new("/sys/class/net"), "cvm") {
        add(ResourceKind::Link, name);
    }
    let tmp = std::env::temp_dir();
    for name in names_in(&tmp, "cvm-") {
        add(ResourceKind::TempDir, tmp.join(name).display().to_string());
    }
    // Instances' io directories live in the cache, not the temporary directory.
    let io = crate::backend::io_dir::root();
    for name in names_in(&io, crate::backend::io_dir::INSTANCE_PREFIX) {
        add(ResourceKind::TempDir, io.join(name).display().to_string());
    }
    let state = Path::new(crate::backend::oci::STATE_ROOT);
    for runtime in names_in(state, "") {
        for id in names_in(&state.join(&runtime), "") {
            add(ResourceKind::OciContainer, format!("{runtime} {id}"));
        }
    }
    Snapshot { resources }
}

fn names_in(dir: &Path, prefix: &str) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// `cvm-*` directories under `root`, at most `depth` levels down.
fn cgroup_dirs(root: &Path, depth: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(root) else {
        return found;
    };
    for entry in entries.filter_map(Result::ok) {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with("cvm-") {
            found.push(path);
        } else if depth > 0 {
            found.extend(cgroup_dirs(&path, depth - 1));
        }
    }
    found
}

/// `cvm-guest` processes and OCI runtime processes (with their descendants), as
/// "PID cmdline [cgroup]".
fn processes() -> Vec<String> {
    struct Proc {
        pid: u32,
        ppid: u32,
        cmdline: String,
        exe: String,
    }
    let mut all = Vec::new();
    for name in names_in(Path::new("/proc"), "") {
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let base = Path::new("/proc").join(&name);
        let cmdline = fs::read(base.join("cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .split('\0')
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let exe = fs::read_link(base.join("exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let ppid = fs::read_to_string(base.join("stat"))
            .ok()
            .and_then(|s| {
                // The command name may contain spaces and parentheses; fields follow the last ')'.
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0);
        all.push(Proc {
            pid,
            ppid,
            cmdline,
            exe,
        });
    }
    let is_runtime = |p: &Proc| {
        let first = p.cmdline.split(' ').next().unwrap_or("");
        // runsc re-executes itself as its sandbox (the Sentry) and its gofer, named so.
        ["runc", "crun", "runsc", "runsc-sandbox", "runsc-gofer"]
            .iter()
            .any(|r| first.ends_with(&format!("/{r}")) || first == *r)
    };
    let is_guest = |p: &Proc| {
        p.exe.ends_with("/cvm-guest")
            || p.cmdline
                .split(' ')
                .next()
                .unwrap_or("")
                .ends_with("cvm-guest")
    };
    let is_vmm = |p: &Proc| {
        let first = p.cmdline.split(' ').next().unwrap_or("");
        first
            .rsplit('/')
            .next()
            .unwrap_or("")
            .starts_with("qemu-system")
            && p.cmdline.contains("/cvm-")
    };
    let runtimes: BTreeSet<u32> = all
        .iter()
        .filter(|p| is_runtime(p))
        .map(|p| p.pid)
        .collect();
    all.iter()
        .filter(|p| is_guest(p) || is_runtime(p) || is_vmm(p) || runtimes.contains(&p.ppid))
        .map(|p| {
            let cgroup = fs::read_to_string(format!("/proc/{}/cgroup", p.pid))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.contains(":memory:") || l.starts_with("0::"))
                        .map(|l| l.rsplit(':').next().unwrap_or("").to_string())
                })
                .unwrap_or_default();
            format!("{} {} [{cgroup}]", p.pid, p.cmdline)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(kind: ResourceKind, name: &str) -> Resource {
        Resource {
            kind,
            name: name.into(),
        }
    }

    #[test]
    fn leaks_are_what_appeared_and_stayed() {
        let before = Snapshot {
            resources: [res(ResourceKind::Link, "cvmold0")].into(),
        };
        let after = Snapshot {
            resources: [
                res(ResourceKind::Link, "cvmold0"),
                res(ResourceKind::Link, "cvmabc1230"),
                res(
                    ResourceKind::Cgroup,
                    "/sys/fs/cgroup/memory/cvm-other-container-0",
                ),
            ]
            .into(),
        };
        assert_eq!(after.leaked_since(&before).len(), 2);
        assert_eq!(
            after.matching("abc123").leaked_since(&before),
            vec![res(ResourceKind::Link, "cvmabc1230")]
        );
        assert!(before.leaked_since(&after).is_empty());
    }

    #[test]
    fn a_snapshot_sees_a_cvm_temp_dir_appear_and_go() {
        // Works without root: temp dirs are audited wherever this runs.
        let dir = tempfile::Builder::new()
            .prefix("cvm-audit-test-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let it = res(ResourceKind::TempDir, &dir.path().display().to_string());
        let with = snapshot();
        assert!(with.resources.contains(&it), "{:?} not in the snapshot", it);
        let path = dir.path().to_path_buf();
        dir.close().unwrap();
        assert!(!path.exists());
        assert!(!snapshot().resources.contains(&it));
    }
}
