//! The OCI bundle of one container: a temporary directory holding the `config.json` (made with
//! the `oci-spec` crate), which binds the io workload's host directory (made in the one io
//! directory every backend uses, see `backend::io_dir`) where it writes. The root filesystem is
//! not copied: `root.path` is the shared image directory, read-only.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCpu, LinuxIdMappingBuilder, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, Mount, Process, Root, Spec,
};

use crate::backend::cgroup::Limits;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot create the bundle directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot build the OCI configuration")]
    Spec(#[source] oci_spec::OciSpecError),
    #[error("cannot write {path}")]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
}

/// Docker's default capability set by kernel name: what a workload keeps unless its scenario
/// says otherwise, and what cvm's own helper containers run with.
pub fn default_capabilities() -> Vec<String> {
    cvm_proto::caps::DEFAULT
        .iter()
        .map(|c| c.to_string())
        .collect()
}

/// What differs between the containers cvm writes bundles for.
pub struct SpecInput<'a> {
    pub rootfs: &'a Path,
    pub args: Vec<String>,
    pub hostname: &'a str,
    /// The relative `linux.cgroupsPath`: the runtime decides where it goes.
    pub cgroup: &'a str,
    pub limits: Limits,
    /// A host directory bound writable at a path inside: the io workload's own disk.
    pub volume: Option<(PathBuf, String)>,
    /// The descriptor the markers go to inside (`CVM_MARKER_FD`).
    pub marker_fd: i32,
    /// An existing network namespace for the container to join (`linux.namespaces` path),
    /// instead of a new one the runtime makes.
    pub netns: Option<PathBuf>,
    /// The capabilities the workload keeps (kernel names): Docker's default set, plus what the
    /// scenario's `[security]` adds.
    pub capabilities: &'a [String],
    /// Rootless: a user namespace with these uid and gid maps (inside, host, count), and no
    /// cgroup (none is delegated to the user), so no limits.
    pub id_maps: Option<[Vec<(u32, u32, u32)>; 2]>,
}

/// A unique temporary directory `cvm-oci-<what>-<pid>-<n>`.
pub fn temp_dir(what: &str) -> Result<PathBuf, BundleError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cvm-oci-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).map_err(|source| BundleError::Create {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Writes `bundle/config.json` for `input`.
pub fn write_config(bundle: &Path, input: &SpecInput<'_>) -> Result<(), BundleError> {
    let spec = bundle_spec(input).map_err(BundleError::Spec)?;
    let path = bundle.join("config.json");
    spec.save(&path)
        .map_err(|source| BundleError::WriteConfig { path, source })
}

/// The bundle's `config.json`: the runtime's usual defaults (namespaces pid, net, ipc, uts,
/// mount, cgroup; /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, read-only /sys; masked paths)
/// with the image as a read-only root, a tmpfs /tmp, Docker's capability set, the scenario's
/// limits and the marker channel in the environment.
fn bundle_spec(input: &SpecInput<'_>) -> Result<Spec, oci_spec::OciSpecError> {
    let mut spec = Spec::default();
    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf())
        .set_readonly(Some(true));
    spec.set_root(Some(root));
    spec.set_hostname(Some(input.hostname.to_string()));

    let caps: HashSet<Capability> = input
        .capabilities
        .iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.clone())).ok())
        .collect();
    let mut capabilities = LinuxCapabilities::default();
    capabilities
        .set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(None)
        .set_ambient(None);
    let mut process = Process::default();
    process
        .set_args(Some(input.args.clone()))
        .set_env(Some(vec![
            crate::backend::WORKLOAD_PATH.into(),
            "HOME=/root".into(),
            format!("HOSTNAME={}", input.hostname),
            format!("{}={}", cvm_proto::MARKER_FD_ENV, input.marker_fd),
        ]))
        .set_cwd("/".into())
        .set_terminal(Some(false))
        .set_no_new_privileges(Some(true))
        .set_capabilities(Some(capabilities));
    spec.set_process(Some(process));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let mut tmp = Mount::default();
    tmp.set_destination("/tmp".into())
        .set_typ(Some("tmpfs".into()))
        .set_source(Some("tmpfs".into()))
        .set_options(Some(vec![
            "nosuid".into(),
            "nodev".into(),
            "mode=1777".into(),
        ]));
    mounts.push(tmp);
    if let Some((host, inside)) = &input.volume {
        let mut bind = Mount::default();
        bind.set_destination(inside.into())
            .set_typ(Some("bind".into()))
            .set_source(Some(host.clone()))
            .set_options(Some(vec![
                "rbind".into(),
                "rw".into(),
                "nosuid".into(),
                "nodev".into(),
            ]));
        mounts.push(bind);
    }
    spec.set_mounts(Some(mounts));

    let mut linux = spec.linux().clone().unwrap_or_default();
    if let Some(maps) = &input.id_maps {
        user_namespace(&mut linux, maps)?;
    } else {
        linux.set_cgroups_path(Some(PathBuf::from(input.cgroup)));
        linux.set_resources(Some(resources(&input.limits)));
    }
    if let Some(namespaces) = linux.namespaces() {
        debug_assert!(namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Network));
    }
    if let Some(path) = &input.netns {
        let namespaces = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|mut n| {
                if n.typ() == LinuxNamespaceType::Network {
                    n.set_path(Some(path.clone()));
                }
                n
            })
            .collect();
        linux.set_namespaces(Some(namespaces));
    }
    // The runtime spec's defaults, from the one list cvm's own container init applies too.
    let paths = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    linux
        .set_masked_paths(Some(paths(cvm_proto::isolation::MASKED_PATHS)))
        .set_readonly_paths(Some(paths(cvm_proto::isolation::READONLY_PATHS)));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The scenario's limits as the spec's resources.
fn resources(limits: &Limits) -> oci_spec::runtime::LinuxResources {
    let mut resources = oci_spec::runtime::LinuxResources::default();
    let mut memory = LinuxMemory::default();
    memory.set_limit(i64::try_from(limits.memory_bytes).ok());
    resources.set_memory(Some(memory));
    let mut cpu = LinuxCpu::default();
    cpu.set_period(Some(100_000))
        .set_quota(Some(100_000 * i64::from(limits.cpus)))
        .set_cpus(limits.cpuset.clone());
    resources.set_cpu(Some(cpu));
    if let Some(limit) = limits.pids.and_then(|n| i64::try_from(n).ok()) {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    resources
}

/// A user namespace with the given uid and gid maps (what `runc spec --rootless` adds).
fn user_namespace(
    linux: &mut oci_spec::runtime::Linux,
    [uids, gids]: &[Vec<(u32, u32, u32)>; 2],
) -> Result<(), oci_spec::OciSpecError> {
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut user = LinuxNamespace::default();
    user.set_typ(LinuxNamespaceType::User);
    namespaces.push(user);
    linux.set_namespaces(Some(namespaces));
    let maps = |list: &[(u32, u32, u32)]| {
        list.iter()
            .map(|&(inside, host, size)| {
                LinuxIdMappingBuilder::default()
                    .container_id(inside)
                    .host_id(host)
                    .size(size)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
    };
    linux.set_uid_mappings(Some(maps(uids)?));
    linux.set_gid_mappings(Some(maps(gids)?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_network_namespace_is_joined_and_markers_go_where_asked() {
        let spec = bundle_spec(&SpecInput {
            rootfs: Path::new("/img"),
            args: vec!["/bin/cvm-guest".into()],
            hostname: "cvm-0",
            cgroup: "cvm-x-runsc-0-0",
            limits: Limits {
                memory_bytes: 64 << 20,
                cpus: 1,
                cpuset: None,
                pids: None,
            },
            volume: None,
            marker_fd: 1,
            netns: Some(PathBuf::from("/proc/42/fd/7")),
            capabilities: &default_capabilities(),
            id_maps: None,
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let namespaces = json["linux"]["namespaces"].as_array().unwrap();
        let net = namespaces.iter().find(|n| n["type"] == "network").unwrap();
        assert_eq!(net["path"], "/proc/42/fd/7");
        assert!(namespaces
            .iter()
            .filter(|n| n["type"] != "network")
            .all(|n| n.get("path").is_none()));
        assert!(json["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&"CVM_MARKER_FD=1".into()));
    }

    #[test]
    fn the_bundle_has_the_image_read_only_and_the_scenarios_limits() {
        let spec = bundle_spec(&SpecInput {
            rootfs: Path::new("/img"),
            args: vec![
                "/bin/cvm-guest".into(),
                "init".into(),
                "--".into(),
                "hello".into(),
            ],
            hostname: "cvm-0",
            cgroup: "cvm-x-runc-0-0",
            limits: Limits {
                memory_bytes: 256 << 20,
                cpus: 2,
                cpuset: Some("0".into()),
                pids: Some(128),
            },
            volume: Some((PathBuf::from("/var/tmp/cvm-v"), "/data".into())),
            marker_fd: cvm_proto::DEFAULT_MARKER_FD,
            netns: None,
            capabilities: &default_capabilities(),
            id_maps: None,
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["root"]["path"], "/img");
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["args"][3], "hello");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert!(json["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&"CVM_MARKER_FD=3".into()));
        let bounding = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(bounding.len(), cvm_proto::caps::DEFAULT.len());
        assert!(!bounding.contains(&"CAP_SYS_ADMIN".into()));
        assert_eq!(json["linux"]["cgroupsPath"], "cvm-x-runc-0-0");
        let volume = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert_eq!(volume["source"], "/var/tmp/cvm-v");
        assert_eq!(volume["type"], "bind");
        assert_eq!(
            json["linux"]["resources"]["memory"]["limit"],
            256 * 1024 * 1024
        );
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 200_000);
        assert_eq!(json["linux"]["resources"]["cpu"]["cpus"], "0");
        assert_eq!(json["linux"]["resources"]["pids"]["limit"], 128);
        assert_eq!(
            json["linux"]["readonlyPaths"],
            serde_json::json!(cvm_proto::isolation::READONLY_PATHS)
        );
        assert!(json["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&"/proc/kcore".into()));
        let namespaces: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for ns in ["pid", "network", "ipc", "uts", "mount"] {
            assert!(namespaces.contains(&ns), "{namespaces:?}");
        }
        assert!(json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n.get("path").is_none()));
        assert!(json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/tmp" && m["type"] == "tmpfs"));
    }
}
