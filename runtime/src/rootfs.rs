//! What the first process of a container does inside it before the workload runs.
//!
//! cvm's `container` backend clones `cvm-guest init --container` straight into new PID, mount,
//! UTS, IPC and network namespaces, puts it in the instance's cgroup, unshares a cgroup
//! namespace rooted there, and execs it; cvm never runs code of its own inside the new
//! namespaces (it is multi-threaded, see [`crate::sys`]). So the guest's init finishes the
//! container with these functions, as PID 1. The `cvm-runtime` binary is single-threaded: its
//! cloned child calls the same functions before it execs the bundle's process. The order is
//! one where each step still has what it needs:
//!
//! 1. make every mount private (`MS_REC | MS_PRIVATE` on `/`): the mount namespace starts as a
//!    copy of the host's, and with shared propagation the mounts below would appear on the host;
//! 2. bind the image directory onto itself (`pivot_root` needs a mount point) and mount `/proc`,
//!    `/sys` (read-only), a tmpfs `/dev` with the usual nodes, a `devpts` instance, a `nodev`
//!    tmpfs `/dev/shm` and a `nodev` tmpfs `/tmp` inside it, then remount `/dev` and the bind
//!    read-only: the image is shared by every instance and every backend, so nothing may write
//!    to it. Submounts come first because a read-only bind still accepts mounts on its
//!    directories, while the nodes in `/dev` need a writable tmpfs. `/dev` read-only is what
//!    keeps the workload off the host's devices: it keeps `CAP_MKNOD` (Docker's set has it), and
//!    a node it could create on a mount without `nodev` would open any host device (`/dev/kvm`,
//!    a disk). Docker and runc close that with the devices cgroup instead, which cgroup v2 only
//!    offers as an eBPF program; a read-only `/dev` works on v1 and v2 alike;
//! 3. `pivot_root(".", ".")` and detach the old root, so no host path stays reachable (the
//!    image has no spare directory for the old root, and this needs none);
//! 4. set the hostname (the UTS namespace is new, so this is the container's own);
//! 5. bring up `lo` (the network namespace is new and its loopback starts down);
//! 6. drop the capabilities to Docker's default set (bounding, permitted, effective; inheritable
//!    and ambient cleared) and set `no_new_privs`: last, because every step above needs
//!    `CAP_SYS_ADMIN`;
//!
//! An OCI bundle may also ask for a `mqueue` at `/dev/mqueue` and a read-only cgroup2 tree at
//! `/sys/fs/cgroup` (both in [`RootfsConfig`]), and for masked and read-only paths
//! ([`mask_paths`], [`readonly_paths`], after `pivot_root`, as runc applies them); cvm's own
//! container init applies the runtime spec's default lists (`cvm_proto::isolation`) and asks
//! for no mqueue or cgroup tree.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

/// The capabilities the workload keeps by default: the shared default set, parsed from the
/// kernel's names.
pub fn default_capabilities() -> CapsHashSet {
    cvm_proto::caps::DEFAULT
        .iter()
        .filter_map(|name| name.parse::<Capability>().ok())
        .collect()
}

/// A capability set from the kernel's names (`CAP_NET_BIND_SERVICE`); an unknown name is an
/// error, not silently dropped.
pub fn parse_capabilities<S: AsRef<str>>(names: &[S]) -> Result<CapsHashSet, RootfsError> {
    names
        .iter()
        .map(|n| {
            n.as_ref()
                .parse::<Capability>()
                .map_err(|_| RootfsError::UnknownCapability(n.as_ref().to_string()))
        })
        .collect()
}

/// Device nodes of the container's `/dev`: (name, major, minor), all mode 0666.
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The container's file system: what [`mount_rootfs`] mounts.
#[derive(Debug, Clone, Default)]
pub struct RootfsConfig {
    /// The image directory, as the host sees it.
    pub rootfs: PathBuf,
    /// Remount the image read-only once everything is mounted on it (cvm's images are shared
    /// by every instance and every backend, so cvm always asks for this).
    pub readonly: bool,
    /// Host directories bound writable at paths inside (HOST, PATH): the io workload's own
    /// disk, as Docker's volumes are.
    pub volumes: Vec<(PathBuf, PathBuf)>,
    /// A `mqueue` instance at `/dev/mqueue`.
    pub mqueue: bool,
    /// The cgroup2 tree, read-only, at `/sys/fs/cgroup` (rooted at the container's cgroup
    /// when it has a cgroup namespace).
    pub cgroupfs: bool,
}

/// One failing step of the container setup.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot make the mounts private")]
    MakePrivate(#[source] nix::Error),
    #[error("cannot bind the rootfs {rootfs}")]
    BindRootfs {
        rootfs: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot mount {target}")]
    Mount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot create {path}")]
    Device {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the rootfs read-only")]
    RemountReadOnly(#[source] nix::Error),
    #[error("pivot_root failed")]
    PivotRoot(#[source] nix::Error),
    #[error("cannot detach the old root")]
    DetachOldRoot(#[source] nix::Error),
    #[error("cannot mask {path}")]
    Mask {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot make {path} read-only")]
    ReadOnlyPath {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot set the hostname")]
    Hostname(#[source] nix::Error),
    #[error("cannot bring up lo: {0}")]
    Loopback(String),
    #[error("unknown capability {0}")]
    UnknownCapability(String),
    #[error("cannot drop capabilities")]
    Capabilities(#[source] caps::errors::CapsError),
    #[error("cannot set no_new_privs")]
    NoNewPrivs(#[source] nix::Error),
}

fn mount_at(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), RootfsError> {
    mount(Some(source), target, Some(fstype), flags, data).map_err(|source| RootfsError::Mount {
        target: target.to_path_buf(),
        source,
    })
}

/// Step 1 and 2 of the module docs: everything mounted on the image, before `pivot_root`.
pub fn mount_rootfs(config: &RootfsConfig) -> Result<(), RootfsError> {
    let rootfs = config.rootfs.as_path();
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(RootfsError::MakePrivate)?;
    mount(
        Some(rootfs),
        rootfs,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|source| RootfsError::BindRootfs {
        rootfs: rootfs.to_path_buf(),
        source,
    })?;
    let secure = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_at("proc", &rootfs.join("proc"), "proc", secure, None)?;
    mount_at(
        "sysfs",
        &rootfs.join("sys"),
        "sysfs",
        secure | MsFlags::MS_RDONLY,
        None,
    )?;
    if config.cgroupfs {
        mount_at(
            "cgroup2",
            &rootfs.join("sys/fs/cgroup"),
            "cgroup2",
            secure | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    let dev = rootfs.join("dev");
    mount_at(
        "tmpfs",
        &dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=65536k"),
    )?;
    populate_dev(&dev, config.mqueue)?;
    mount_at(
        "devpts",
        &dev.join("pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    mount_at(
        "shm",
        &dev.join("shm"),
        "tmpfs",
        secure,
        Some("mode=1777,size=65536k"),
    )?;
    if config.mqueue {
        mount_at("mqueue", &dev.join("mqueue"), "mqueue", secure, None)?;
    }
    // No node can be added to /dev from here on (see the module docs); its submounts stay
    // writable. A bind remount changes only this mount's flags, so nosuid and noexec are
    // repeated to keep them.
    mount_at(
        "none",
        &dev,
        "none",
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NOEXEC,
        None,
    )?;
    mount_at(
        "tmpfs",
        &rootfs.join("tmp"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    for (host, inside) in &config.volumes {
        // Over whatever the image (or the tmpfs above) has there: the workload writes to the
        // host's disk, not to memory.
        let target = rootfs.join(inside.strip_prefix("/").unwrap_or(inside));
        mount(Some(host.as_path()), &target, none, MsFlags::MS_BIND, none)
            .and_then(|()| remount_bind(&target, MsFlags::MS_NOSUID | MsFlags::MS_NODEV))
            .map_err(|source| RootfsError::Mount { target, source })?;
    }
    if !config.readonly {
        return Ok(());
    }
    remount_bind(rootfs, MsFlags::MS_RDONLY).map_err(RootfsError::RemountReadOnly)
}

/// Remounts the bind at `target` with `flags`. In a user namespace (rootless) the flags the
/// host's mount had are locked and a remount that would clear one fails with `EPERM`: then it
/// is asked again with them kept (nosuid, nodev, noexec, the atime rule), as runc does.
fn remount_bind(target: &Path, flags: MsFlags) -> nix::Result<()> {
    let none: Option<&str> = None;
    let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    match mount(none, target, none, base | flags, none) {
        Err(nix::errno::Errno::EPERM) => {
            let kept = locked_flags(target)?;
            mount(none, target, none, base | flags | kept, none)
        }
        other => other,
    }
}

/// The flags of the mount `path` is on that a less privileged user namespace cannot clear.
fn locked_flags(path: &Path) -> nix::Result<MsFlags> {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let have = statvfs(path)?.flags();
    let mut flags = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(fs) {
            flags |= ms;
        }
    }
    Ok(flags)
}

fn populate_dev(dev: &Path, mqueue: bool) -> Result<(), RootfsError> {
    let fail = |path: PathBuf| move |source| RootfsError::Device { path, source };
    for &(name, major, minor) in DEVICES {
        let path = dev.join(name);
        match mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        ) {
            // In a user namespace (rootless) no node can be made: the host's is bound instead,
            // as runc does rootless.
            Err(nix::errno::Errno::EPERM) => {
                bind_host_device(name, &path).map_err(|e| fail(path.clone())(e))?;
                continue;
            }
            other => other.map_err(|e| fail(path.clone())(e.into()))?,
        }
        // mknod honours the umask; the nodes must be usable by any user.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
            .map_err(fail(path.clone()))?;
    }
    // Mount points: a devpts instance and the shared-memory tmpfs (mode 1777 by its options).
    let dirs: &[&str] = if mqueue {
        &["pts", "shm", "mqueue"]
    } else {
        &["pts", "shm"]
    };
    for dir in dirs {
        let path = dev.join(dir);
        fs::create_dir(&path).map_err(fail(path.clone()))?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let path = dev.join(link);
        symlink(target, &path).map_err(fail(path.clone()))?;
    }
    Ok(())
}

/// The host's `/dev/NAME` bound onto a new empty file at `path` (still before `pivot_root`,
/// so the host's `/dev` is in reach).
fn bind_host_device(name: &str, path: &Path) -> std::io::Result<()> {
    fs::File::create(path)?;
    let none: Option<&str> = None;
    let host = Path::new("/dev").join(name);
    mount(Some(host.as_path()), path, none, MsFlags::MS_BIND, none)?;
    Ok(())
}

/// Step 3: `pivot_root` into the image and detach the old root; the working directory is `/`.
pub fn enter_rootfs(rootfs: &Path) -> Result<(), RootfsError> {
    nix::unistd::chdir(rootfs).map_err(RootfsError::PivotRoot)?;
    // The old root is stacked on top of the new one at "/"; detaching it leaves the new root.
    nix::unistd::pivot_root(".", ".").map_err(RootfsError::PivotRoot)?;
    umount2(".", MntFlags::MNT_DETACH).map_err(RootfsError::DetachOldRoot)?;
    nix::unistd::chdir("/").map_err(RootfsError::PivotRoot)
}

/// Hides each path (inside the new root) from the workload: `/dev/null` bound over a file, an
/// empty read-only tmpfs over a directory. A path that does not exist needs no hiding.
pub fn mask_paths<P: AsRef<Path>>(paths: &[P]) -> Result<(), RootfsError> {
    let none: Option<&str> = None;
    for path in paths {
        let path = path.as_ref();
        let result = match fs::metadata(path) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => {
                mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, none)
            }
            Ok(_) => mount(Some("/dev/null"), path, none, MsFlags::MS_BIND, none),
        };
        result.map_err(|source| RootfsError::Mask {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Makes each path (inside the new root) read-only by binding it onto itself and remounting the
/// bind read-only. A path that does not exist is skipped.
pub fn readonly_paths<P: AsRef<Path>>(paths: &[P]) -> Result<(), RootfsError> {
    let none: Option<&str> = None;
    for path in paths {
        let path = path.as_ref();
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        mount(
            Some(path),
            path,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .and_then(|()| {
            mount(
                none,
                path,
                none,
                MsFlags::MS_REMOUNT
                    | MsFlags::MS_BIND
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                none,
            )
        })
        .map_err(|source| RootfsError::ReadOnlyPath {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Step 4: the hostname (the UTS namespace is new, so this is the container's own).
pub fn set_hostname(name: &str) -> Result<(), RootfsError> {
    nix::unistd::sethostname(name).map_err(RootfsError::Hostname)
}

/// Step 5: brings up `lo` (always interface 1 of a new network namespace) with one rtnetlink
/// request, which needs no `ip` binary.
pub fn loopback_up() -> Result<(), RootfsError> {
    crate::netlink::Netlink::open()
        .and_then(|mut nl| nl.set_up(crate::netlink::LOOPBACK_INDEX))
        .map_err(|e| RootfsError::Loopback(e.to_string()))
}

/// Step 6: drops the capabilities to `keep` (bounding, permitted, effective; inheritable and
/// ambient cleared) and, with `no_new_privs`, sets it. Last, because every step before needs
/// `CAP_SYS_ADMIN`.
pub fn drop_privileges(keep: &CapsHashSet, no_new_privs: bool) -> Result<(), RootfsError> {
    // The bounding set first: dropping from it needs CAP_SETPCAP in the effective set. It is
    // what a root workload's permitted set is computed from at exec.
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(RootfsError::Capabilities)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(RootfsError::Capabilities)?;
    caps::clear(None, CapSet::Inheritable).map_err(RootfsError::Capabilities)?;
    caps::set(None, CapSet::Effective, keep).map_err(RootfsError::Capabilities)?;
    caps::set(None, CapSet::Permitted, keep).map_err(RootfsError::Capabilities)?;
    if no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(RootfsError::NoNewPrivs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_capability_name_is_known_to_the_caps_crate() {
        let set = default_capabilities();
        assert_eq!(set.len(), cvm_proto::caps::DEFAULT.len());
        assert!(set.contains(&Capability::CAP_NET_BIND_SERVICE));
        assert!(!set.contains(&Capability::CAP_SYS_ADMIN));
        assert_eq!(parse_capabilities(cvm_proto::caps::DEFAULT).unwrap(), set);
    }

    #[test]
    fn unknown_capability_names_are_refused() {
        assert!(matches!(
            parse_capabilities(&["CAP_CHOWN", "CAP_NOPE"]),
            Err(RootfsError::UnknownCapability(n)) if n == "CAP_NOPE"
        ));
    }
}
