//! Per-instance cgroups with the scenario's limits, on cgroup v1, v2 and hybrid hosts.
//!
//! Most modern hosts are pure v2 (`/sys/fs/cgroup/cgroup.controllers` exists). The reference host
//! is hybrid: the controllers are on v1 hierarchies (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu`)
//! and an empty v2 tree is mounted at `/sys/fs/cgroup/unified`; there the v1 controllers are the
//! ones that limit anything, so hybrid is treated as v1.
//!
//! Where the cgroup goes: on v1, under cvm's own cgroup in each hierarchy, so cvm's instances stay
//! inside whatever limits cvm itself runs under. On v2 the "no internal processes" rule forbids
//! enabling controllers below a cgroup that holds processes (cvm's own), so instances become
//! siblings of cvm's cgroup instead.
//!
//! A process joins before it execs (see [`crate::sys::spawn_namespaced`]): the cgroup's `cgroup.procs`
//! files are opened here and the child writes "0" (itself) to each, so even a workload that exits
//! at once is accounted from its first instruction.
//!
//! Which cgroup a process is in is read from `/proc/PID/cgroup` by one function,
//! [`cgroup_of`], for any process and any hierarchy (a v1 controller or the v2 tree).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
    /// v1 controllers with an (unused) v2 tree beside them.
    Hybrid,
}

impl CgroupVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
            CgroupVersion::Hybrid => "hybrid (v1 controllers)",
        }
    }
}

/// Which cgroup layout this host has, or `None` if cgroups are not mounted.
pub fn detect() -> Option<CgroupVersion> {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Some(CgroupVersion::V2)
    } else if Path::new(ROOT).join("memory").is_dir() {
        if Path::new(ROOT).join("unified/cgroup.procs").exists() {
            Some(CgroupVersion::Hybrid)
        } else {
            Some(CgroupVersion::V1)
        }
    } else {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups are not mounted under {ROOT}")]
    NotMounted,
    #[error("cannot read {path}")]
    ReadProcCgroup {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cgroup path {0} leaves the cgroup hierarchy")]
    BadPath(PathBuf),
    #[error("cannot create cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set {file} to {value} in {dir}")]
    SetLimit {
        dir: PathBuf,
        file: &'static str,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {path} to join the cgroup")]
    OpenProcs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write this process into its own cgroup {path} (to take the migration lock)")]
    Rejoin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove cgroup {path} (processes still inside after being killed?)")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Limits applied to an instance's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// CPU time as a number of CPUs (quota / period).
    pub cpus: u32,
    /// The CPUs the instance may run on (a cpuset list such as "0" or "0-1"); `None`: any.
    pub cpuset: Option<String>,
    /// The most tasks (processes and threads) the instance may have; `None`: no limit.
    pub pids: Option<u64>,
}

/// CPU time per period, in microseconds (`quota_us / period_us` CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

/// Limits in the OCI runtime spec's terms: each one optional, CPU as any quota and period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory_bytes: Option<u64>,
    pub cpu: Option<CpuQuota>,
    /// `linux.resources.cpu.cpus`: a cpuset list.
    pub cpuset: Option<String>,
    /// `linux.resources.pids.limit`.
    pub pids: Option<u64>,
}

impl From<Limits> for Resources {
    fn from(limits: Limits) -> Resources {
        const PERIOD_US: u64 = 100_000;
        Resources {
            memory_bytes: Some(limits.memory_bytes),
            cpu: Some(CpuQuota {
                quota_us: PERIOD_US * u64::from(limits.cpus),
                period_us: PERIOD_US,
            }),
            cpuset: limits.cpuset,
            pids: limits.pids,
        }
    }
}

/// A cgroup created for one instance, removed (with anything still inside killed) on drop.
#[derive(Debug)]
pub struct Cgroup {
    version: CgroupVersion,
    /// One directory per v1 controller hierarchy used, or the single v2 directory.
    dirs: Vec<PathBuf>,
    removed: bool,
}

const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// The v1 hierarchy that places processes on CPUs; joined only when a cpuset is asked for, since
/// a new v1 cpuset starts with no CPUs and a process cannot join it until it has some.
const V1_CPUSET: &str = "cpuset";

/// Whether this host can confine an instance to some CPUs with a cgroup: a v1 `cpuset`
/// hierarchy, or on v2 the `cpuset` controller enabled where cvm creates its cgroups.
pub fn cpuset_supported() -> bool {
    match detect() {
        Some(CgroupVersion::V2) => v2_base()
            .ok()
            .and_then(|b| fs::read_to_string(b.join("cgroup.subtree_control")).ok())
            .is_some_and(|c| c.split_whitespace().any(|w| w == "cpuset")),
        Some(_) => Path::new(ROOT)
            .join(V1_CPUSET)
            .join("cpuset.cpus")
            .is_file(),
        None => false,
    }
}

impl Cgroup {
    /// Creates `name` with `limits`. `name` should be unique on the host (it includes the run id).
    pub fn create(name: &str, limits: Limits) -> Result<Cgroup, CgroupError> {
        Cgroup::create_with(name, Resources::from(limits))
    }

    /// Creates `path` with `resources`: an absolute path from the root of each hierarchy, a
    /// relative one where [`Cgroup::create`] puts a name (below this process's cgroup on v1,
    /// beside it on v2). The OCI runtime spec's `cgroupsPath`; missing parents are created.
    pub fn create_with(path: &str, resources: Resources) -> Result<Cgroup, CgroupError> {
        let rel = Path::new(path);
        if rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(CgroupError::BadPath(rel.to_path_buf()));
        }
        let version = detect().ok_or(CgroupError::NotMounted)?;
        let mut cg = Cgroup {
            version,
            dirs: Vec::new(),
            removed: false,
        };
        let absolute = rel.strip_prefix("/").ok();
        match version {
            CgroupVersion::V2 => {
                let base = match absolute {
                    Some(_) => PathBuf::from(ROOT),
                    None => v2_base()?,
                };
                let dir = base.join(absolute.unwrap_or(rel));
                make_dirs(&base, &dir)?;
                cg.dirs.push(dir);
            }
            CgroupVersion::V1 | CgroupVersion::Hybrid => {
                let cpuset = resources.cpuset.is_some().then_some(V1_CPUSET);
                for controller in V1_CONTROLLERS.into_iter().chain(cpuset) {
                    let mount = Path::new(ROOT).join(controller);
                    if !mount.is_dir() {
                        continue;
                    }
                    let base = match absolute {
                        Some(_) => mount,
                        None => v1_base(&mount, controller)?,
                    };
                    let dir = base.join(absolute.unwrap_or(rel));
                    make_dirs(&base, &dir)?;
                    if controller == V1_CPUSET {
                        inherit_cpuset_mems(&base, &dir)?;
                    }
                    cg.dirs.push(dir);
                }
            }
        }
        cg.apply(resources)?;
        Ok(cg)
    }

    fn apply(&self, resources: Resources) -> Result<(), CgroupError> {
        match self.version {
            CgroupVersion::V2 => {
                let dir = &self.dirs[0];
                if let Some(bytes) = resources.memory_bytes {
                    write_limit(dir, "memory.max", bytes.to_string())?;
                }
                if let Some(cpu) = resources.cpu {
                    write_limit(
                        dir,
                        "cpu.max",
                        format!("{} {}", cpu.quota_us, cpu.period_us),
                    )?;
                }
                if let Some(cpus) = &resources.cpuset {
                    write_limit(dir, "cpuset.cpus", cpus.clone())?;
                }
                if let Some(pids) = resources.pids {
                    write_limit(dir, "pids.max", pids.to_string())?;
                }
            }
            CgroupVersion::V1 | CgroupVersion::Hybrid => {
                for dir in &self.dirs {
                    if dir.starts_with(Path::new(ROOT).join("memory")) {
                        if let Some(bytes) = resources.memory_bytes {
                            write_limit(dir, "memory.limit_in_bytes", bytes.to_string())?;
                        }
                    } else if dir.starts_with(Path::new(ROOT).join("pids")) {
                        if let Some(pids) = resources.pids {
                            write_limit(dir, "pids.max", pids.to_string())?;
                        }
                    } else if dir.starts_with(Path::new(ROOT).join(V1_CPUSET)) {
                        if let Some(cpus) = &resources.cpuset {
                            write_limit(dir, "cpuset.cpus", cpus.clone())?;
                        }
                    } else if dir.starts_with(Path::new(ROOT).join("cpu")) {
                        if let Some(cpu) = resources.cpu {
                            write_limit(dir, "cpu.cfs_period_us", cpu.period_us.to_string())?;
                            write_limit(dir, "cpu.cfs_quota_us", cpu.quota_us.to_string())?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The directories whose `cgroup.procs` a process must join.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// `cgroup.procs` of every directory, opened for writing, to be handed to a child that joins
    /// before exec.
    pub fn open_procs(&self) -> Result<Vec<File>, CgroupError> {
        self.dirs
            .iter()
            .map(|d| {
                let path = d.join("cgroup.procs");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|source| CgroupError::OpenProcs { path, source })
            })
            .collect()
    }

    /// The directory that holds the memory accounting files.
    pub fn memory_dir(&self) -> Option<&Path> {
        match self.version {
            CgroupVersion::V2 => self.dirs.first().map(PathBuf::as_path),
            _ => self
                .dirs
                .iter()
                .find(|d| d.starts_with(Path::new(ROOT).join("memory")))
                .map(PathBuf::as_path),
        }
    }

    /// Every process still in the cgroup.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.dirs.iter().flat_map(|d| procs(d)).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills whatever is left inside, waits for it to go, and removes the directories.
    /// Every process inside was started by this instance: the cgroup was created for it alone.
    pub fn remove(&mut self) -> Result<(), CgroupError> {
        if self.removed {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut first_error = None;
        for dir in &self.dirs {
            if let Err(e) = remove_dir_retrying(dir) {
                first_error.get_or_insert(CgroupError::Remove {
                    path: dir.clone(),
                    source: e,
                });
            }
        }
        self.removed = true;
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// Memory currently charged to a memory cgroup directory, in bytes (v2 `memory.current`, v1
/// `memory.usage_in_bytes`).
pub fn memory_charged(memory_dir: &Path) -> Option<u64> {
    ["memory.current", "memory.usage_in_bytes"]
        .iter()
        .find_map(|f| read_u64(&memory_dir.join(f)))
}

/// The `oom_kill` counter of a memory cgroup directory (v2 `memory.events`, v1
/// `memory.oom_control`).
pub fn oom_kills(memory_dir: &Path) -> u64 {
    ["memory.events", "memory.oom_control"]
        .iter()
        .filter_map(|f| fs::read_to_string(memory_dir.join(f)).ok())
        .find_map(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// A process that just died may still be charged for a moment; rmdir reports EBUSY until then.
/// Removes the directories named `name` directly under every hierarchy's mount point, and
/// under this process's own cgroup in each hierarchy: where a runtime given the relative
/// `cgroupsPath` `name` creates them (runsc puts some v1 controllers' directories under its
/// caller's cgroup, others under the root). gVisor's runsc, on v1, leaves several controllers'
/// directories behind after `delete`; runc and crun remove theirs.
/// Only for a cgroup the caller created for a container that has gone: a directory that still
/// holds processes cannot be removed and is reported.
pub fn remove_named(name: &str) -> Result<(), CgroupError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(CgroupError::BadPath(PathBuf::from(name)));
    }
    let Ok(entries) = fs::read_dir(ROOT) else {
        return Ok(());
    };
    let mut candidates = vec![Path::new(ROOT).join(name)];
    for entry in entries.flatten() {
        candidates.push(entry.path().join(name));
        let mount = entry.file_name();
        let hierarchy = match mount.to_str() {
            Some("unified") => Hierarchy::Unified,
            Some(controller) => Hierarchy::Controller(controller),
            None => continue,
        };
        if let Ok(Some(own)) = cgroup_of(None, hierarchy) {
            candidates.push(own.join(name));
        }
    }
    let mut first_error = None;
    // Checked one at a time: `cpu` and `cpu,cpuacct` are the same hierarchy, gone once removed.
    for dir in candidates {
        if !dir.is_dir() {
            continue;
        }
        if let Err(source) = remove_dir_retrying(&dir) {
            first_error.get_or_insert(CgroupError::Remove { path: dir, source });
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn remove_dir_retrying(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir(dir).map_err(|source| CgroupError::Create {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_limit(dir: &Path, file: &'static str, value: String) -> Result<(), CgroupError> {
    fs::write(dir.join(file), &value).map_err(|source| CgroupError::SetLimit {
        dir: dir.to_path_buf(),
        file,
        value,
        source,
    })
}

/// The processes in the cgroup directory `dir` (none when it cannot be read).
pub fn procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// One hierarchy of the cgroup tree, as `/proc/PID/cgroup` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy<'a> {
    /// The v1 hierarchy a controller (`memory`, `cpu`, `pids`) is mounted in.
    Controller(&'a str),
    /// The v2 tree (the line with an empty controller list).
    Unified,
}

impl Hierarchy<'_> {
    /// Where this hierarchy is mounted: `/sys/fs/cgroup/CONTROLLER` for v1; for the v2 tree
    /// `/sys/fs/cgroup` on a pure v2 host and `/sys/fs/cgroup/unified` on a hybrid one.
    pub fn mount(self) -> PathBuf {
        match self {
            Hierarchy::Controller(c) => Path::new(ROOT).join(c),
            Hierarchy::Unified if detect() == Some(CgroupVersion::V2) => PathBuf::from(ROOT),
            Hierarchy::Unified => Path::new(ROOT).join("unified"),
        }
    }
}

/// The cgroup directory process `pid` (`None`: this process) is in, in `hierarchy`, read from
/// `/proc/PID/cgroup` and placed under the hierarchy's mount point. `Ok(None)` when the process
/// is in no cgroup of that hierarchy (the controller is not mounted), or when another process's
/// directory does not exist (it left, or it is in a cgroup namespace): never a guess, since a
/// wrong directory would charge the whole host to one instance. This process, when it runs in
/// a cgroup namespace, sees its path relative to the namespace's root: it gets the mount.
pub fn cgroup_of(
    pid: Option<u32>,
    hierarchy: Hierarchy<'_>,
) -> Result<Option<PathBuf>, CgroupError> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/cgroup"),
        None => "/proc/self/cgroup".to_string(),
    };
    let text =
        fs::read_to_string(&path).map_err(|source| CgroupError::ReadProcCgroup { path, source })?;
    let Some(inside) = parse_proc_cgroup(&text, hierarchy) else {
        return Ok(None);
    };
    let mount = hierarchy.mount();
    let dir = mount.join(inside.trim_start_matches('/'));
    Ok(match (dir.is_dir(), pid) {
        (true, _) => Some(dir),
        (false, None) => Some(mount),
        (false, Some(_)) => None,
    })
}

/// Takes the host's cgroup migration lock once, for nothing: this process is written into the
/// cgroup it is already in (in the v2 tree where there is one, else in its first v1 hierarchy),
/// which moves nothing. Every `cgroup.procs` write, in any hierarchy, takes that one host-wide
/// lock for writing. Unless a hierarchy is mounted with `favordynmods`, the first write after
/// an idle spell waits for an RCU grace period (~10 ms on the reference host) and writes in the
/// next few tens of milliseconds do not, so a launch that follows this call joins its cgroup
/// warm whatever ran before it. Returns how long the write took.
pub fn rejoin_own_cgroup() -> Result<Duration, CgroupError> {
    let dir = match cgroup_of(None, Hierarchy::Unified)? {
        Some(dir) => dir,
        None => {
            let text = fs::read_to_string("/proc/self/cgroup").map_err(|source| {
                CgroupError::ReadProcCgroup {
                    path: "/proc/self/cgroup".into(),
                    source,
                }
            })?;
            let first = text
                .lines()
                .filter_map(|l| l.split(':').nth(1))
                .find_map(|c| c.split(',').find(|c| !c.is_empty() && !c.contains('=')))
                .ok_or(CgroupError::NotMounted)?;
            cgroup_of(None, Hierarchy::Controller(first))?.ok_or(CgroupError::NotMounted)?
        }
    };
    let path = dir.join("cgroup.procs");
    let start = Instant::now();
    // "0" is the writing process itself, wherever its PID namespace puts it.
    fs::write(&path, "0").map_err(|source| CgroupError::Rejoin { path, source })?;
    Ok(start.elapsed())
}

/// The directory that holds process `pid`'s memory accounting: its v2 cgroup on a v2 host, its
/// memory-controller cgroup on v1 and hybrid hosts (where v1 does the limiting). A runtime
/// decides itself where a container's cgroup goes (runc on v2 puts a relative path beside its
/// own cgroup, not under it), so the process's own record is the one place that is always right.
pub fn memory_of_process(pid: u32) -> Option<PathBuf> {
    let hierarchy = match detect()? {
        CgroupVersion::V2 => Hierarchy::Unified,
        CgroupVersion::V1 | CgroupVersion::Hybrid => Hierarchy::Controller("memory"),
    };
    cgroup_of(Some(pid), hierarchy).ok().flatten()
}

/// The path of `hierarchy`'s line in the text of a `/proc/PID/cgroup` file
/// (`ID:CONTROLLERS:PATH` per line).
fn parse_proc_cgroup(text: &str, hierarchy: Hierarchy<'_>) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match hierarchy {
            Hierarchy::Unified => controllers.is_empty(),
            Hierarchy::Controller(c) => controllers.split(',').any(|x| x == c),
        };
        matches.then(|| path.to_string())
    })
}

/// Where a relative cgroup goes on v2: beside this process's cgroup (the "no internal
/// processes" rule keeps controllers from being enabled below it).
fn v2_base() -> Result<PathBuf, CgroupError> {
    let own = cgroup_of(None, Hierarchy::Unified)?.unwrap_or_else(|| PathBuf::from(ROOT));
    Ok(own
        .parent()
        .filter(|p| p.starts_with(ROOT))
        .map_or_else(|| own.clone(), Path::to_path_buf))
}

/// Where a relative cgroup goes on v1: below this process's cgroup in `controller`'s hierarchy.
fn v1_base(mount: &Path, controller: &str) -> Result<PathBuf, CgroupError> {
    Ok(cgroup_of(None, Hierarchy::Controller(controller))?.unwrap_or_else(|| mount.to_path_buf()))
}

/// A new v1 cpuset has no memory nodes and no CPUs, and no process can join it until both are
/// set: every directory from `base` down to `dir` that has none takes its parent's memory nodes
/// and CPUs (the instance's own CPUs are written afterwards).
fn inherit_cpuset_mems(base: &Path, dir: &Path) -> Result<(), CgroupError> {
    let Ok(below) = dir.strip_prefix(base) else {
        return Ok(());
    };
    let mut parent = base.to_path_buf();
    for part in below.components() {
        let child = parent.join(part);
        for file in ["cpuset.mems", "cpuset.cpus"] {
            let own = fs::read_to_string(child.join(file)).unwrap_or_default();
            if own.trim().is_empty() {
                let from = fs::read_to_string(parent.join(file)).unwrap_or_default();
                write_limit(&child, file, from.trim().to_string())?;
            }
        }
        parent = child;
    }
    Ok(())
}

/// Creates `dir` (which must not exist: it is this instance's alone) and any missing parents
/// between `base` and it.
fn make_dirs(base: &Path, dir: &Path) -> Result<(), CgroupError> {
    if let Some(parent) = dir.parent().filter(|p| *p != base) {
        fs::create_dir_all(parent).map_err(|source| CgroupError::Create {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    make_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_cgroup_is_found_per_controller() {
        let text = "4:memory:/process_api/abc\n3:cpu,cpuacct:/\n0::/user.slice\n";
        let parse = |h| parse_proc_cgroup(text, h);
        assert_eq!(
            parse(Hierarchy::Controller("memory")).as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(parse(Hierarchy::Controller("cpu")).as_deref(), Some("/"));
        assert_eq!(parse(Hierarchy::Unified).as_deref(), Some("/user.slice"));
        assert_eq!(parse(Hierarchy::Controller("pids")), None);
    }

    #[test]
    fn this_process_is_in_a_cgroup_directory() {
        if detect().is_none() {
            return;
        }
        let hierarchy = match detect() {
            Some(CgroupVersion::V2) => Hierarchy::Unified,
            _ => Hierarchy::Controller("memory"),
        };
        let dir = cgroup_of(None, hierarchy).unwrap().unwrap();
        assert!(dir.join("cgroup.procs").is_file(), "{}", dir.display());
        let pid = std::process::id();
        assert_eq!(cgroup_of(Some(pid), hierarchy).unwrap(), Some(dir));
    }

    #[test]
    fn relative_paths_may_not_climb_out() {
        assert!(matches!(
            Cgroup::create_with("../escape", Resources::default()),
            Err(CgroupError::BadPath(_))
        ));
    }

    #[test]
    fn a_container_cgroup_is_read_on_v1_v2_and_hybrid_hosts() {
        // Pure v1: no v2 line at all.
        let v1 = "12:pids:/user.slice/cvm-r1-runc-0-0\n\
                  9:memory:/user.slice/cvm-r1-runc-0-0\n\
                  4:cpu,cpuacct:/user.slice/cvm-r1-runc-0-0\n\
                  1:name=systemd:/user.slice/session-1.scope\n";
        assert_eq!(
            parse_proc_cgroup(v1, Hierarchy::Controller("memory")).as_deref(),
            Some("/user.slice/cvm-r1-runc-0-0")
        );
        assert_eq!(parse_proc_cgroup(v1, Hierarchy::Unified), None);
        // Pure v2: runc put the container beside cvm's cgroup, not under it.
        let v2 = "0::/user.slice/user-0.slice/cvm-r1-runc-0-0\n";
        assert_eq!(
            parse_proc_cgroup(v2, Hierarchy::Unified).as_deref(),
            Some("/user.slice/user-0.slice/cvm-r1-runc-0-0")
        );
        assert_eq!(parse_proc_cgroup(v2, Hierarchy::Controller("memory")), None);
        // Hybrid: v1 controllers, a named systemd hierarchy and the (empty) v2 tree.
        let hybrid = "11:memory:/docker/0123abcd\n\
                      5:cpu,cpuacct:/docker/0123abcd\n\
                      1:name=systemd:/docker/0123abcd\n\
                      0::/system.slice/docker.service\n";
        assert_eq!(
            parse_proc_cgroup(hybrid, Hierarchy::Controller("memory")).as_deref(),
            Some("/docker/0123abcd")
        );
        assert_eq!(
            parse_proc_cgroup(hybrid, Hierarchy::Controller("cpuacct")).as_deref(),
            Some("/docker/0123abcd")
        );
        assert_eq!(
            parse_proc_cgroup(hybrid, Hierarchy::Unified).as_deref(),
            Some("/system.slice/docker.service")
        );
        // The named hierarchy is not a controller.
        assert_eq!(
            parse_proc_cgroup(hybrid, Hierarchy::Controller("systemd")),
            None
        );
    }

    #[test]
    fn this_process_has_a_memory_cgroup_where_cgroups_are_mounted() {
        if detect().is_some() {
            let dir = memory_of_process(std::process::id()).unwrap();
            assert!(dir.starts_with(ROOT), "{dir:?}");
        }
    }
}
