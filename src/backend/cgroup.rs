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

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
    #[error("cannot read this process's cgroup from /proc/self/cgroup")]
    OwnCgroup(#[source] io::Error),
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
    #[error("cannot remove cgroup {path} (processes still inside after being killed?)")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Limits applied to an instance's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: u64,
    /// CPU time as a number of CPUs (quota / period).
    pub cpus: u32,
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

impl Cgroup {
    /// Creates `name` with `limits`. `name` should be unique on the host (it includes the run id).
    pub fn create(name: &str, limits: Limits) -> Result<Cgroup, CgroupError> {
        let version = detect().ok_or(CgroupError::NotMounted)?;
        let mut cg = Cgroup {
            version,
            dirs: Vec::new(),
            removed: false,
        };
        match version {
            CgroupVersion::V2 => {
                let own = own_cgroup_path("")?;
                let parent = Path::new(&own)
                    .parent()
                    .unwrap_or(Path::new("/"))
                    .to_path_buf();
                let base = Path::new(ROOT).join(parent.strip_prefix("/").unwrap_or(&parent));
                let base = if base.is_dir() {
                    base
                } else {
                    PathBuf::from(ROOT)
                };
                let dir = base.join(name);
                make_dir(&dir)?;
                cg.dirs.push(dir);
            }
            CgroupVersion::V1 | CgroupVersion::Hybrid => {
                for controller in V1_CONTROLLERS {
                    let mount = Path::new(ROOT).join(controller);
                    if !mount.is_dir() {
                        continue;
                    }
                    let own = own_cgroup_path(controller)?;
                    // Inside a cgroup namespace the own path may not exist under the mount.
                    let base = mount.join(own.trim_start_matches('/'));
                    let base = if base.is_dir() { base } else { mount };
                    let dir = base.join(name);
                    make_dir(&dir)?;
                    cg.dirs.push(dir);
                }
            }
        }
        cg.apply(limits)?;
        Ok(cg)
    }

    fn apply(&self, limits: Limits) -> Result<(), CgroupError> {
        const PERIOD_US: u64 = 100_000;
        let quota = PERIOD_US * u64::from(limits.cpus);
        match self.version {
            CgroupVersion::V2 => {
                let dir = &self.dirs[0];
                write_limit(dir, "memory.max", limits.memory_bytes.to_string())?;
                write_limit(dir, "cpu.max", format!("{quota} {PERIOD_US}"))?;
            }
            CgroupVersion::V1 | CgroupVersion::Hybrid => {
                for dir in &self.dirs {
                    if dir.starts_with(Path::new(ROOT).join("memory")) {
                        write_limit(
                            dir,
                            "memory.limit_in_bytes",
                            limits.memory_bytes.to_string(),
                        )?;
                    } else if dir.starts_with(Path::new(ROOT).join("cpu")) {
                        write_limit(dir, "cpu.cfs_period_us", PERIOD_US.to_string())?;
                        write_limit(dir, "cpu.cfs_quota_us", quota.to_string())?;
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
        let mut pids: Vec<u32> = self
            .dirs
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
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

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// This process's cgroup path in the hierarchy of `controller` ("" for the v2 tree).
fn own_cgroup_path(controller: &str) -> Result<String, CgroupError> {
    let text = fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::OwnCgroup)?;
    Ok(parse_cgroup(&text, controller).unwrap_or_else(|| "/".to_string()))
}

/// The directory of process `pid`'s cgroup in the hierarchy of `controller` (a v1 controller,
/// or "" for the v2 tree), read from `/proc/<pid>/cgroup`. A runtime decides itself where a
/// container's cgroup goes (runc on v2 puts a relative path beside its own cgroup, not under
/// it), so the process's own record is the one place that is always right.
pub fn of_process(pid: u32, controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = parse_cgroup(&text, controller)?;
    let mount = match (controller, detect()?) {
        ("", CgroupVersion::V2) => PathBuf::from(ROOT),
        ("", _) => Path::new(ROOT).join("unified"),
        (c, _) => Path::new(ROOT).join(c),
    };
    Some(mount.join(path.trim_start_matches('/')))
}

/// The cgroup directory that holds process `pid`'s memory accounting: its v2 cgroup on a v2
/// host, its memory-controller cgroup on v1 and hybrid hosts (where v1 does the limiting).
pub fn memory_of_process(pid: u32) -> Option<PathBuf> {
    match detect()? {
        CgroupVersion::V2 => of_process(pid, ""),
        CgroupVersion::V1 | CgroupVersion::Hybrid => of_process(pid, "memory"),
    }
}

/// The path of the cgroup in `controller`'s hierarchy ("" for the v2 tree) in the text of a
/// `/proc/<pid>/cgroup` file: one `id:controllers:path` line per hierarchy.
fn parse_cgroup(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_cgroup_is_found_per_controller() {
        let text = "4:memory:/process_api/abc\n3:cpu,cpuacct:/\n0::/user.slice\n";
        assert_eq!(
            parse_cgroup(text, "memory").as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(parse_cgroup(text, "cpu").as_deref(), Some("/"));
        assert_eq!(parse_cgroup(text, "").as_deref(), Some("/user.slice"));
        assert_eq!(parse_cgroup(text, "pids"), None);
    }

    #[test]
    fn a_container_cgroup_is_read_on_v1_v2_and_hybrid_hosts() {
        // Pure v1: no v2 line at all.
        let v1 = "12:pids:/user.slice/cvm-r1-runc-0-0\n\
                  9:memory:/user.slice/cvm-r1-runc-0-0\n\
                  4:cpu,cpuacct:/user.slice/cvm-r1-runc-0-0\n\
                  1:name=systemd:/user.slice/session-1.scope\n";
        assert_eq!(
            parse_cgroup(v1, "memory").as_deref(),
            Some("/user.slice/cvm-r1-runc-0-0")
        );
        assert_eq!(parse_cgroup(v1, ""), None);
        // Pure v2: runc put the container beside cvm's cgroup, not under it.
        let v2 = "0::/user.slice/user-0.slice/cvm-r1-runc-0-0\n";
        assert_eq!(
            parse_cgroup(v2, "").as_deref(),
            Some("/user.slice/user-0.slice/cvm-r1-runc-0-0")
        );
        assert_eq!(parse_cgroup(v2, "memory"), None);
        // Hybrid: v1 controllers, a named systemd hierarchy and the (empty) v2 tree.
        let hybrid = "11:memory:/docker/0123abcd\n\
                      5:cpu,cpuacct:/docker/0123abcd\n\
                      1:name=systemd:/docker/0123abcd\n\
                      0::/system.slice/docker.service\n";
        assert_eq!(
            parse_cgroup(hybrid, "memory").as_deref(),
            Some("/docker/0123abcd")
        );
        assert_eq!(
            parse_cgroup(hybrid, "cpuacct").as_deref(),
            Some("/docker/0123abcd")
        );
        assert_eq!(
            parse_cgroup(hybrid, "").as_deref(),
            Some("/system.slice/docker.service")
        );
        // The named hierarchy is not a controller.
        assert_eq!(parse_cgroup(hybrid, "systemd"), None);
    }

    #[test]
    fn this_process_has_a_memory_cgroup_where_cgroups_are_mounted() {
        if detect().is_some() {
            let dir = memory_of_process(std::process::id()).unwrap();
            assert!(dir.starts_with(ROOT), "{dir:?}");
        }
    }
}
