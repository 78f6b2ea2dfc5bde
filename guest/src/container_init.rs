//! `init --container`: what PID 1 of a cvm container does before it runs the workload.
//!
//! The host (cvm's `container` backend) clones this process straight into new PID, mount, UTS,
//! IPC and network namespaces, puts it in the instance's cgroup, unshares a cgroup namespace
//! rooted there, and execs it; it never runs code of its own inside the new namespaces. So the
//! container is finished here, in an order where each step still has what it needs:
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
//! 7. with `--wait-fd N`, wait for the host's go-ahead on descriptor N (it configures the
//!    container's veth meanwhile), so the workload starts with its network in place.
//!
//! Any failure is a runtime failure of init (a `CVM:error` marker and exit 1): the host tears
//! the container down.
//!
//! This module has the guest's second bit of `unsafe`: taking ownership of the inherited
//! wait descriptor, known only by its number.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::Failure;

/// The capabilities the workload keeps: the shared default set, parsed from the kernel's names.
fn default_capabilities() -> CapsHashSet {
    cvm_proto::caps::DEFAULT
        .iter()
        .filter_map(|name| name.parse::<Capability>().ok())
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

/// What the host asked for with `init --container ...`.
#[derive(Debug)]
pub struct ContainerConfig {
    /// The image directory, as the host sees it.
    pub rootfs: PathBuf,
    pub hostname: Option<String>,
    /// The host's go-ahead arrives here (one byte; EOF means the host gave up).
    pub wait: Option<OwnedFd>,
    /// A host directory bound writable at a path inside (`--volume HOST:PATH`): the io
    /// workload's own disk, as Docker's volumes are.
    pub volume: Option<(PathBuf, PathBuf)>,
}

/// One failing step of the container setup.
#[derive(Debug)]
pub enum ContainerError {
    MakePrivate(nix::Error),
    BindRootfs { rootfs: PathBuf, source: nix::Error },
    Mount { target: PathBuf, source: nix::Error },
    Device { path: PathBuf, source: String },
    RemountReadOnly(nix::Error),
    PivotRoot(nix::Error),
    DetachOldRoot(nix::Error),
    Hostname(nix::Error),
    Loopback(String),
    Capabilities(caps::errors::CapsError),
    NoNewPrivs(nix::Error),
    Wait(String),
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerError::MakePrivate(e) => write!(f, "cannot make the mounts private: {e}"),
            ContainerError::BindRootfs { rootfs, source } => {
                write!(f, "cannot bind the rootfs {}: {source}", rootfs.display())
            }
            ContainerError::Mount { target, source } => {
                write!(f, "cannot mount {}: {source}", target.display())
            }
            ContainerError::Device { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            ContainerError::RemountReadOnly(e) => {
                write!(f, "cannot make the rootfs read-only: {e}")
            }
            ContainerError::PivotRoot(e) => write!(f, "pivot_root failed: {e}"),
            ContainerError::DetachOldRoot(e) => write!(f, "cannot detach the old root: {e}"),
            ContainerError::Hostname(e) => write!(f, "cannot set the hostname: {e}"),
            ContainerError::Loopback(e) => write!(f, "cannot bring up lo: {e}"),
            ContainerError::Capabilities(e) => write!(f, "cannot drop capabilities: {e}"),
            ContainerError::NoNewPrivs(e) => write!(f, "cannot set no_new_privs: {e}"),
            ContainerError::Wait(e) => write!(f, "no go-ahead from the host: {e}"),
        }
    }
}

impl From<ContainerError> for Failure {
    fn from(e: ContainerError) -> Failure {
        Failure::Runtime(format!("container setup: {e}"))
    }
}

/// Splits `--container [--rootfs DIR] [--hostname NAME] [--wait-fd N] [--volume HOST:PATH]` off the front of init's
/// arguments; the rest is init's usual `[--] <workload>`. `None` when `--container` is absent.
pub fn split_args(argv: &[OsString]) -> Result<(Option<ContainerConfig>, &[OsString]), Failure> {
    if argv.first().and_then(|a| a.to_str()) != Some("--container") {
        return Ok((None, argv));
    }
    let mut config = ContainerConfig {
        rootfs: PathBuf::from("/"),
        hostname: None,
        wait: None,
        volume: None,
    };
    let mut rest = &argv[1..];
    loop {
        let option = rest.first().and_then(|a| a.to_str());
        let value = || {
            rest.get(1)
                .cloned()
                .ok_or_else(|| Failure::Usage(format!("{} needs a value", option.unwrap_or(""))))
        };
        match option {
            Some("--rootfs") => config.rootfs = PathBuf::from(value()?),
            Some("--hostname") => config.hostname = Some(value()?.to_string_lossy().into_owned()),
            Some("--wait-fd") => config.wait = Some(inherited_fd(&value()?)?),
            Some("--volume") => {
                let spec = value()?.to_string_lossy().into_owned();
                let (host, inside) = spec
                    .split_once(':')
                    .filter(|(h, i)| h.starts_with('/') && i.starts_with('/'))
                    .ok_or_else(|| {
                        Failure::Usage(format!("bad --volume {spec} (want HOST:PATH)"))
                    })?;
                config.volume = Some((PathBuf::from(host), PathBuf::from(inside)));
            }
            _ => return Ok((Some(config), rest)),
        }
        rest = &rest[2..];
    }
}

/// Takes ownership of a descriptor the host passed by number.
fn inherited_fd(value: &OsString) -> Result<OwnedFd, Failure> {
    let fd: RawFd = value
        .to_str()
        .and_then(|v| v.parse().ok())
        .filter(|fd| *fd > 2)
        .ok_or_else(|| Failure::Usage(format!("bad --wait-fd {}", value.to_string_lossy())))?;
    // SAFETY: F_GETFD only reads the descriptor's flags; on a number that is not open it fails
    // with EBADF and touches nothing.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        return Err(Failure::Usage(format!("--wait-fd {fd} is not open")));
    }
    // SAFETY: the descriptor is open (checked above) and was inherited from the host for this
    // one purpose: nothing else in this process knows its number, so owning (and eventually
    // closing) it cannot disturb another owner. Arguments are parsed before init opens files.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Finishes the container (see the module docs). Runs as PID 1, before the workload.
pub fn setup(config: ContainerConfig) -> Result<(), Failure> {
    let ContainerConfig {
        rootfs,
        hostname,
        wait,
        volume,
    } = config;
    mount_rootfs(&rootfs, volume.as_ref())?;
    enter_rootfs(&rootfs)?;
    if let Some(name) = &hostname {
        nix::unistd::sethostname(name).map_err(ContainerError::Hostname)?;
    }
    loopback_up().map_err(ContainerError::Loopback)?;
    drop_privileges()?;
    if let Some(fd) = wait {
        let mut byte = [0u8; 1];
        match fs::File::from(fd).read(&mut byte) {
            Ok(1) => {}
            Ok(_) => return Err(ContainerError::Wait("the host closed the channel".into()).into()),
            Err(e) => return Err(ContainerError::Wait(e.to_string()).into()),
        }
    }
    Ok(())
}

fn mount_at(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), ContainerError> {
    mount(Some(source), target, Some(fstype), flags, data).map_err(|source| ContainerError::Mount {
        target: target.to_path_buf(),
        source,
    })
}

fn mount_rootfs(rootfs: &Path, volume: Option<&(PathBuf, PathBuf)>) -> Result<(), ContainerError> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(ContainerError::MakePrivate)?;
    mount(
        Some(rootfs),
        rootfs,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|source| ContainerError::BindRootfs {
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
    let dev = rootfs.join("dev");
    mount_at(
        "tmpfs",
        &dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=65536k"),
    )?;
    populate_dev(&dev)?;
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
    if let Some((host, inside)) = volume {
        // Over whatever the image (or the tmpfs above) has there: the workload writes to the
        // host's disk, not to memory.
        let target = rootfs.join(inside.strip_prefix("/").unwrap_or(inside));
        mount(Some(host.as_path()), &target, none, MsFlags::MS_BIND, none)
            .and_then(|()| {
                mount(
                    none,
                    &target,
                    none,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    none,
                )
            })
            .map_err(|source| ContainerError::Mount { target, source })?;
    }
    mount(
        none,
        rootfs,
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        none,
    )
    .map_err(ContainerError::RemountReadOnly)
}

fn populate_dev(dev: &Path) -> Result<(), ContainerError> {
    let fail = |path: PathBuf, e: String| ContainerError::Device { path, source: e };
    for &(name, major, minor) in DEVICES {
        let path = dev.join(name);
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| fail(path.clone(), e.to_string()))?;
        // mknod honours the umask; the nodes must be usable by any user.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
            .map_err(|e| fail(path.clone(), e.to_string()))?;
    }
    // Mount points: a devpts instance and the shared-memory tmpfs (mode 1777 by its options).
    for dir in ["pts", "shm"] {
        let path = dev.join(dir);
        fs::create_dir(&path).map_err(|e| fail(path.clone(), e.to_string()))?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let path = dev.join(link);
        symlink(target, &path).map_err(|e| fail(path.clone(), e.to_string()))?;
    }
    Ok(())
}

fn enter_rootfs(rootfs: &Path) -> Result<(), ContainerError> {
    nix::unistd::chdir(rootfs).map_err(ContainerError::PivotRoot)?;
    // The old root is stacked on top of the new one at "/"; detaching it leaves the new root.
    nix::unistd::pivot_root(".", ".").map_err(ContainerError::PivotRoot)?;
    umount2(".", MntFlags::MNT_DETACH).map_err(ContainerError::DetachOldRoot)?;
    nix::unistd::chdir("/").map_err(ContainerError::PivotRoot)
}

/// Sets `IFF_UP` on interface 1 (`lo` is always the first interface of a new network
/// namespace) with one rtnetlink request, which needs no `unsafe` ioctl and no `ip` binary.
fn loopback_up() -> Result<(), String> {
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let sock = socket::socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| e.to_string())?;
    // struct nlmsghdr (16 bytes) + struct ifinfomsg (16 bytes), native endian.
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
    msg.push(0); // ifi_family: AF_UNSPEC
    msg.push(0); // padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&1i32.to_ne_bytes()); // ifi_index: lo
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change: only IFF_UP
    let kernel = NetlinkAddr::new(0, 0);
    socket::sendto(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &msg,
        &kernel,
        MsgFlags::empty(),
    )
    .map_err(|e| e.to_string())?;
    let mut reply = [0u8; 64];
    let n = socket::recv(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &mut reply,
        MsgFlags::empty(),
    )
    .map_err(|e| e.to_string())?;
    // The ack is an NLMSG_ERROR whose error field (after the 16-byte header) is 0 on success.
    if n < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
        return Err("unexpected rtnetlink reply".into());
    }
    let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if errno != 0 {
        return Err(nix::errno::Errno::from_raw(-errno).to_string());
    }
    Ok(())
}

fn drop_privileges() -> Result<(), ContainerError> {
    let keep = default_capabilities();
    // The bounding set first: dropping from it needs CAP_SETPCAP in the effective set. It is
    // what a root workload's permitted set is computed from at exec.
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(ContainerError::Capabilities)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(ContainerError::Capabilities)?;
    caps::clear(None, CapSet::Inheritable).map_err(ContainerError::Capabilities)?;
    caps::set(None, CapSet::Effective, &keep).map_err(ContainerError::Capabilities)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(ContainerError::Capabilities)?;
    nix::sys::prctl::set_no_new_privs().map_err(ContainerError::NoNewPrivs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn container_options_are_split_off() {
        let argv = words(&[
            "--container",
            "--rootfs",
            "/img",
            "--hostname",
            "box",
            "--",
            "hello",
        ]);
        let (config, rest) = split_args(&argv).unwrap();
        let config = config.unwrap();
        assert_eq!(config.rootfs, PathBuf::from("/img"));
        assert_eq!(config.hostname.as_deref(), Some("box"));
        assert!(config.wait.is_none());
        assert_eq!(rest, &words(&["--", "hello"])[..]);
    }

    #[test]
    fn plain_init_arguments_pass_through() {
        let argv = words(&["hello", "--container"]);
        let (config, rest) = split_args(&argv).unwrap();
        assert!(config.is_none());
        assert_eq!(rest, &argv[..]);
    }

    #[test]
    fn bad_container_options_are_refused() {
        assert!(split_args(&words(&["--container", "--rootfs"])).is_err());
        assert!(split_args(&words(&["--container", "--wait-fd", "x", "hello"])).is_err());
        assert!(split_args(&words(&["--container", "--wait-fd", "987", "hello"])).is_err());
    }

    #[test]
    fn every_default_capability_name_is_known_to_the_caps_crate() {
        let set = default_capabilities();
        assert_eq!(set.len(), cvm_proto::caps::DEFAULT.len());
        assert!(set.contains(&Capability::CAP_NET_BIND_SERVICE));
        assert!(!set.contains(&Capability::CAP_SYS_ADMIN));
    }
}
