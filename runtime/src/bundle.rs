//! The subset of an OCI bundle's `config.json` that cvm writes for runc, read into a plain
//! [`Bundle`] the `cvm-runtime` binary runs.
//!
//! Why a subset: `cvm-runtime` exists to run the same bundle as runc with cvm's own container
//! steps (see [`cvm_runtime::rootfs`]), so that the two runtimes can be compared on equal terms. What
//! it reads is what cvm's OCI backend writes: the process (args, env, cwd, `noNewPrivileges`,
//! one capability set, an `RLIMIT_NOFILE`), the root (path, read-only), the hostname, the
//! standard mounts plus bind volumes, the namespaces, `cgroupsPath`, a memory limit and a CPU
//! quota. Anything else is refused with an error naming the field, rather than silently
//! ignored: a bundle that asks for a seccomp profile or a user namespace would otherwise run
//! without one and the comparison would be wrong.
//!
//! The standard mounts (`/proc`, `/sys`, `/dev`, `/dev/pts`, `/dev/shm`, `/tmp`) are always
//! made, the way cvm's container init makes them, and their options in `config.json` are not
//! read; `/dev/mqueue` and `/sys/fs/cgroup` are made when listed.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};

use cvm_runtime::cgroup::{CpuQuota, Resources};

/// What [`Bundle::load`] read: everything `cvm-runtime run` needs, already checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The root file system, absolute (a relative `root.path` is taken from the bundle dir).
    pub root: PathBuf,
    pub readonly: bool,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub no_new_privileges: bool,
    /// Kernel names (`CAP_CHOWN`): the bounding, effective and permitted set (they must agree).
    pub capabilities: Vec<String>,
    /// `RLIMIT_NOFILE` as (soft, hard).
    pub nofile: Option<(u64, u64)>,
    pub hostname: Option<String>,
    /// Bind mounts: (host source, destination inside).
    pub volumes: Vec<(PathBuf, PathBuf)>,
    pub mqueue: bool,
    pub cgroupfs: bool,
    /// `CLONE_NEW*` flags the clone applies (all requested namespaces but the cgroup one).
    pub clone_flags: libc::c_int,
    /// Whether a cgroup namespace is unshared once the cgroup is joined.
    pub cgroup_namespace: bool,
    /// Whether the container has its own network namespace (then `lo` is brought up).
    pub network_namespace: bool,
    pub cgroups_path: Option<String>,
    pub resources: Resources,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
}

/// Why a bundle cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("config.json has no {0}")]
    Missing(&'static str),
    #[error("config.json field {field} is not supported: {why}")]
    Unsupported { field: String, why: String },
}

fn unsupported(field: impl Into<String>, why: impl Into<String>) -> BundleError {
    BundleError::Unsupported {
        field: field.into(),
        why: why.into(),
    }
}

/// An optional field, whether the getter hands it out by reference or (`Copy`) by value.
trait IsSet {
    fn is_set(&self) -> bool;
}

impl<T> IsSet for Option<T> {
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

impl<T> IsSet for &Option<T> {
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

/// Refuses `field` when it is set at all.
fn refuse_set(field: &str, value: impl IsSet) -> Result<(), BundleError> {
    if value.is_set() {
        return Err(unsupported(field, "cvm-runtime does not implement it"));
    }
    Ok(())
}

/// Refuses the first of `linux.resources.<field>` that is set.
fn refuse_any(fields: &[(&str, bool)]) -> Result<(), BundleError> {
    match fields.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(unsupported(
            format!("linux.resources.{field}"),
            "cvm-runtime does not implement it",
        )),
        None => Ok(()),
    }
}

fn refuse_nonempty<T>(field: &str, value: &Option<Vec<T>>) -> Result<(), BundleError> {
    match value {
        Some(v) if !v.is_empty() => Err(unsupported(field, "cvm-runtime does not implement it")),
        _ => Ok(()),
    }
}

impl Bundle {
    /// Reads `DIR/config.json`.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let path = dir.join("config.json");
        let spec = Spec::load(&path).map_err(|source| BundleError::Read { path, source })?;
        Bundle::from_spec(&spec, dir)
    }

    /// Checks `spec` against the subset (see the module docs); relative paths are taken from
    /// `dir`.
    pub fn from_spec(spec: &Spec, dir: &Path) -> Result<Bundle, BundleError> {
        refuse_set("hooks", spec.hooks())?;
        refuse_set("domainname", spec.domainname())?;
        if spec.solaris().is_some() || spec.windows().is_some() || spec.vm().is_some() {
            return Err(unsupported(
                "solaris/windows/vm",
                "cvm-runtime runs Linux containers only",
            ));
        }
        let root = spec
            .root()
            .as_ref()
            .ok_or(BundleError::Missing("root.path"))?;
        if root.path().as_os_str().is_empty() {
            return Err(BundleError::Missing("root.path"));
        }
        let mut bundle = Bundle {
            root: dir.join(root.path()),
            readonly: root.readonly().unwrap_or(false),
            args: Vec::new(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            no_new_privileges: false,
            capabilities: Vec::new(),
            nofile: None,
            hostname: spec.hostname().clone(),
            volumes: Vec::new(),
            mqueue: false,
            cgroupfs: false,
            clone_flags: 0,
            cgroup_namespace: false,
            network_namespace: false,
            cgroups_path: None,
            resources: Resources::default(),
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
        };
        bundle.read_process(spec)?;
        bundle.read_mounts(spec)?;
        bundle.read_linux(spec)?;
        Ok(bundle)
    }

    fn read_process(&mut self, spec: &Spec) -> Result<(), BundleError> {
        let process = spec
            .process()
            .as_ref()
            .ok_or(BundleError::Missing("process"))?;
        if process.terminal().unwrap_or(false) {
            return Err(unsupported("process.terminal", "no terminal is allocated"));
        }
        refuse_set("process.consoleSize", process.console_size())?;
        refuse_set("process.commandLine", process.command_line())?;
        refuse_set("process.apparmorProfile", process.apparmor_profile())?;
        refuse_set("process.oomScoreAdj", process.oom_score_adj())?;
        refuse_set("process.selinuxLabel", process.selinux_label())?;
        refuse_set("process.ioPriority", process.io_priority())?;
        refuse_set("process.scheduler", process.scheduler())?;
        let user = process.user();
        if user.uid() != 0 || user.gid() != 0 {
            return Err(unsupported(
                "process.user",
                "the process runs as root (uid 0, gid 0)",
            ));
        }
        refuse_set("process.user.umask", user.umask())?;
        refuse_nonempty("process.user.additionalGids", user.additional_gids())?;
        refuse_set("process.user.username", user.username())?;
        self.args = process.args().clone().unwrap_or_default();
        if self.args.is_empty() {
            return Err(BundleError::Missing("process.args"));
        }
        self.env = process.env().clone().unwrap_or_default();
        self.cwd = process.cwd().clone();
        if !self.cwd.is_absolute() {
            return Err(unsupported("process.cwd", "it must be an absolute path"));
        }
        self.no_new_privileges = process.no_new_privileges().unwrap_or(false);
        if let Some(caps) = process.capabilities() {
            let names = |set: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
                let mut v: Vec<String> = set
                    .iter()
                    .flatten()
                    .filter_map(|c| serde_json::to_value(c).ok())
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                v.sort();
                v
            };
            let bounding = names(caps.bounding());
            if names(caps.effective()) != bounding || names(caps.permitted()) != bounding {
                return Err(unsupported(
                    "process.capabilities",
                    "bounding, effective and permitted must be the same set",
                ));
            }
            if !names(caps.inheritable()).is_empty() || !names(caps.ambient()).is_empty() {
                return Err(unsupported(
                    "process.capabilities",
                    "inheritable and ambient must be empty",
                ));
            }
            self.capabilities = bounding;
        }
        for rlimit in process.rlimits().iter().flatten() {
            if rlimit.typ() != PosixRlimitType::RlimitNofile {
                return Err(unsupported(
                    "process.rlimits",
                    format!("only RLIMIT_NOFILE, not {:?}", rlimit.typ()),
                ));
            }
            self.nofile = Some((rlimit.soft(), rlimit.hard()));
        }
        Ok(())
    }

    fn read_mounts(&mut self, spec: &Spec) -> Result<(), BundleError> {
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            let field = || format!("mounts[{i}] ({})", m.destination().display());
            if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
                return Err(unsupported(field(), "id-mapped mounts"));
            }
            let typ = m.typ().as_deref().unwrap_or("");
            let options = m.options().clone().unwrap_or_default();
            let bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
            let dest = m.destination().to_str().unwrap_or("");
            match (dest, typ) {
                _ if bind => {
                    let source = m
                        .source()
                        .as_ref()
                        .filter(|s| s.is_absolute())
                        .ok_or_else(|| unsupported(field(), "a bind needs an absolute source"))?;
                    if !m.destination().is_absolute() {
                        return Err(unsupported(field(), "the destination must be absolute"));
                    }
                    self.volumes.push((source.clone(), m.destination().clone()));
                }
                ("/proc", "proc")
                | ("/sys", "sysfs")
                | ("/dev", "tmpfs")
                | ("/dev/pts", "devpts")
                | ("/dev/shm", "tmpfs")
                | ("/tmp", "tmpfs") => {}
                ("/dev/mqueue", "mqueue") => self.mqueue = true,
                ("/sys/fs/cgroup", "cgroup" | "cgroup2") => self.cgroupfs = true,
                _ => {
                    return Err(unsupported(
                        field(),
                        format!("a {typ} mount there is not one cvm-runtime makes"),
                    ))
                }
            }
        }
        Ok(())
    }

    fn read_linux(&mut self, spec: &Spec) -> Result<(), BundleError> {
        let Some(linux) = spec.linux() else {
            return Err(BundleError::Missing("linux"));
        };
        refuse_set("linux.netDevices", linux.net_devices())?;
        refuse_nonempty("linux.uidMappings", linux.uid_mappings())?;
        refuse_nonempty("linux.gidMappings", linux.gid_mappings())?;
        if linux.sysctl().as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(unsupported(
                "linux.sysctl",
                "cvm-runtime does not implement it",
            ));
        }
        refuse_nonempty("linux.devices", linux.devices())?;
        refuse_set("linux.seccomp", linux.seccomp())?;
        if linux
            .rootfs_propagation()
            .as_ref()
            .is_some_and(|p| !p.is_empty())
        {
            return Err(unsupported(
                "linux.rootfsPropagation",
                "every mount is made private",
            ));
        }
        refuse_set("linux.mountLabel", linux.mount_label())?;
        refuse_set("linux.intelRdt", linux.intel_rdt())?;
        refuse_set("linux.memoryPolicy", linux.memory_policy())?;
        refuse_set("linux.personality", linux.personality())?;
        refuse_set("linux.timeOffsets", linux.time_offsets())?;
        let mut mount_ns = false;
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            if ns.path().is_some() {
                return Err(unsupported(
                    format!("linux.namespaces[{i}].path"),
                    "joining an existing namespace",
                ));
            }
            self.clone_flags |= match ns.typ() {
                LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
                LinuxNamespaceType::Network => {
                    self.network_namespace = true;
                    libc::CLONE_NEWNET
                }
                LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
                LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
                LinuxNamespaceType::Mount => {
                    mount_ns = true;
                    libc::CLONE_NEWNS
                }
                LinuxNamespaceType::Cgroup => {
                    self.cgroup_namespace = true;
                    0
                }
                other => {
                    return Err(unsupported(
                        format!("linux.namespaces[{i}]"),
                        format!("a {other:?} namespace"),
                    ))
                }
            };
        }
        if !mount_ns {
            return Err(unsupported(
                "linux.namespaces",
                "a mount namespace is required (the rootfs is set up in it)",
            ));
        }
        if self.hostname.is_some() && self.clone_flags & libc::CLONE_NEWUTS == 0 {
            return Err(unsupported("hostname", "it needs a uts namespace"));
        }
        self.cgroups_path = linux
            .cgroups_path()
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        self.masked_paths = linux
            .masked_paths()
            .iter()
            .flatten()
            .map(PathBuf::from)
            .collect();
        self.readonly_paths = linux
            .readonly_paths()
            .iter()
            .flatten()
            .map(PathBuf::from)
            .collect();
        if let Some(resources) = linux.resources() {
            self.read_resources(resources)?;
        }
        Ok(())
    }

    fn read_resources(
        &mut self,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), BundleError> {
        refuse_nonempty("linux.resources.devices", resources.devices())?;
        // A limit of 0 or below is "no limit" in the runtime spec.
        if let Some(pids) = resources.pids() {
            self.resources.pids = u64::try_from(pids.limit()).ok().filter(|&n| n > 0);
        }
        refuse_set("linux.resources.blockIO", resources.block_io())?;
        refuse_nonempty(
            "linux.resources.hugepageLimits",
            resources.hugepage_limits(),
        )?;
        refuse_set("linux.resources.network", resources.network())?;
        refuse_set("linux.resources.rdma", resources.rdma())?;
        refuse_set("linux.resources.unified", resources.unified())?;
        if let Some(memory) = resources.memory() {
            refuse_any(&[
                ("memory.reservation", memory.reservation().is_set()),
                ("memory.swap", memory.swap().is_set()),
                ("memory.kernel", memory.kernel().is_set()),
                ("memory.kernelTCP", memory.kernel_tcp().is_set()),
                ("memory.swappiness", memory.swappiness().is_set()),
                (
                    "memory.disableOOMKiller",
                    memory.disable_oom_killer().is_set(),
                ),
            ])?;
            self.resources.memory_bytes = match memory.limit() {
                None => None,
                Some(l) => Some(u64::try_from(l).map_err(|_| {
                    unsupported("linux.resources.memory.limit", "it must be positive")
                })?),
            };
        }
        if let Some(cpu) = resources.cpu() {
            refuse_any(&[
                ("cpu.shares", cpu.shares().is_set()),
                ("cpu.idle", cpu.idle().is_set()),
                ("cpu.burst", cpu.burst().is_set()),
                ("cpu.realtimeRuntime", cpu.realtime_runtime().is_set()),
                ("cpu.realtimePeriod", cpu.realtime_period().is_set()),
                ("cpu.mems", cpu.mems().is_set()),
            ])?;
            self.resources.cpuset = cpu.cpus().clone();
            self.resources.cpu = match (cpu.quota(), cpu.period()) {
                (None, None) => None,
                (Some(quota), Some(period)) => Some(CpuQuota {
                    quota_us: u64::try_from(quota).map_err(|_| {
                        unsupported("linux.resources.cpu.quota", "it must be positive")
                    })?,
                    period_us: period,
                }),
                _ => {
                    return Err(unsupported(
                        "linux.resources.cpu",
                        "quota and period go together",
                    ))
                }
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Mount, Root};

    /// A spec shaped like the one cvm's OCI backend writes: the library defaults plus a root,
    /// a hostname, args, a tmpfs /tmp, a cgroup path and limits.
    pub(crate) fn cvm_like_spec() -> Spec {
        let mut spec = Spec::default();
        let mut root = Root::default();
        root.set_path("rootfs".into()).set_readonly(Some(true));
        spec.set_root(Some(root));
        spec.set_hostname(Some("box".into()));
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(vec!["/bin/cvm-guest".into(), "hello".into()]));
        // cvm gives the workload no inheritable or ambient capabilities.
        let mut caps = process.capabilities().clone().unwrap();
        caps.set_inheritable(None).set_ambient(None);
        process.set_capabilities(Some(caps));
        spec.set_process(Some(process));
        let mut mounts = spec.mounts().clone().unwrap();
        let mut tmp = Mount::default();
        tmp.set_destination("/tmp".into())
            .set_typ(Some("tmpfs".into()))
            .set_source(Some("tmpfs".into()));
        mounts.push(tmp);
        spec.set_mounts(Some(mounts));
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(Some("cvm-test".into()));
        let mut resources = linux.resources().clone().unwrap();
        let mut memory = oci_spec::runtime::LinuxMemory::default();
        memory.set_limit(Some(256 << 20));
        resources.set_memory(Some(memory));
        let mut cpu = oci_spec::runtime::LinuxCpu::default();
        cpu.set_quota(Some(50_000)).set_period(Some(100_000));
        resources.set_cpu(Some(cpu));
        linux.set_resources(Some(resources));
        spec.set_linux(Some(linux));
        spec
    }

    #[test]
    fn a_cvm_bundle_is_read() {
        let b = Bundle::from_spec(&cvm_like_spec(), Path::new("/b")).unwrap();
        assert_eq!(b.root, PathBuf::from("/b/rootfs"));
        assert!(b.readonly);
        assert_eq!(b.args, ["/bin/cvm-guest", "hello"]);
        assert_eq!(b.hostname.as_deref(), Some("box"));
        assert!(b.mqueue && b.cgroupfs && b.cgroup_namespace && b.network_namespace);
        assert_eq!(b.resources.memory_bytes, Some(256 << 20));
        assert_eq!(
            b.resources.cpu,
            Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000
            })
        );
        assert_eq!(b.cgroups_path.as_deref(), Some("cvm-test"));
        assert!(b.capabilities.iter().any(|c| c == "CAP_KILL"));
        assert!(!b.masked_paths.is_empty());
        let flags = libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET;
        assert_eq!(b.clone_flags, flags);
    }

    fn refused(spec: &Spec) -> String {
        Bundle::from_spec(spec, Path::new("/b"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn fields_outside_the_subset_are_refused_by_name() {
        let mut spec = cvm_like_spec();
        spec.set_root(None);
        assert!(refused(&spec).contains("root.path"));

        let mut spec = cvm_like_spec();
        let mut linux = spec.linux().clone().unwrap();
        linux.set_seccomp(Some(Default::default()));
        spec.set_linux(Some(linux));
        assert!(refused(&spec).contains("linux.seccomp"));

        let mut spec = cvm_like_spec();
        let mut process = spec.process().clone().unwrap();
        process.set_terminal(Some(true));
        spec.set_process(Some(process));
        assert!(refused(&spec).contains("process.terminal"));

        let mut spec = cvm_like_spec();
        let mut mounts = spec.mounts().clone().unwrap();
        let mut odd = Mount::default();
        odd.set_destination("/srv".into())
            .set_typ(Some("nfs".into()));
        mounts.push(odd);
        spec.set_mounts(Some(mounts));
        assert!(refused(&spec).contains("(/srv)"));

        let mut spec = cvm_like_spec();
        let mut linux = spec.linux().clone().unwrap();
        let mut namespaces = linux.namespaces().clone().unwrap();
        let mut user = oci_spec::runtime::LinuxNamespace::default();
        user.set_typ(LinuxNamespaceType::User);
        namespaces.push(user);
        linux.set_namespaces(Some(namespaces));
        spec.set_linux(Some(linux));
        assert!(refused(&spec).contains("linux.namespaces["));
    }
}
