//! `init --container`: what PID 1 of a cvm container does before it runs the workload.
//!
//! The host (cvm's `container` backend) clones this process straight into new PID, mount, UTS,
//! IPC and network namespaces, puts it in the instance's cgroup, unshares a cgroup namespace
//! rooted there, and execs it; it never runs code of its own inside the new namespaces. So the
//! container is finished here, with the steps of `cvm_runtime::rootfs` (whose docs explain the
//! order): mounts, `pivot_root`, the OCI default masked and read-only paths, hostname, `lo`,
//! capabilities and `no_new_privs`. Then, with
//! `--wait-fd N`, init waits for the host's go-ahead on descriptor N (the host configures the
//! container's veth meanwhile), so the workload starts with its network in place.
//!
//! Any failure is a runtime failure of init (a `CVM:error` marker and exit 1): the host tears
//! the container down.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;

use cvm_proto::isolation::{MASKED_PATHS, READONLY_PATHS};
use cvm_runtime::rootfs::{self, RootfsConfig, RootfsError};

use crate::Failure;

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
    /// Capabilities kept beyond Docker's default set (`--cap-add NAME`, repeatable).
    pub cap_add: Vec<String>,
}

/// Splits `--container [--rootfs DIR] [--hostname NAME] [--wait-fd N] [--volume HOST:PATH]
/// [--cap-add NAME]...` off the front of init's
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
        cap_add: Vec::new(),
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
            Some("--cap-add") => config.cap_add.push(value()?.to_string_lossy().into_owned()),
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
    // Arguments are parsed before init opens files, as taking the descriptor requires.
    crate::sys::take_inherited(fd)
        .ok_or_else(|| Failure::Usage(format!("--wait-fd {fd} is not open")))
}

impl From<RootfsError> for Failure {
    fn from(e: RootfsError) -> Failure {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        Failure::Runtime(format!("container setup: {text}"))
    }
}

/// Finishes the container (see the module docs). Runs as PID 1, before the workload.
pub fn setup(config: ContainerConfig) -> Result<(), Failure> {
    let ContainerConfig {
        rootfs,
        hostname,
        wait,
        volume,
        cap_add,
    } = config;
    rootfs::mount_rootfs(&RootfsConfig {
        rootfs: rootfs.clone(),
        readonly: true,
        volumes: volume.into_iter().collect(),
        mqueue: false,
        cgroupfs: false,
    })?;
    rootfs::enter_rootfs(&rootfs)?;
    // The host kernel's knobs and secrets that /proc and /sys show even inside the namespaces
    // (/proc/sys, /proc/sysrq-trigger, /proc/kcore, ...): masked and read-only as runc, crun,
    // gVisor and Docker do by default, from the same lists.
    rootfs::mask_paths(MASKED_PATHS)?;
    rootfs::readonly_paths(READONLY_PATHS)?;
    if let Some(name) = &hostname {
        rootfs::set_hostname(name)?;
    }
    rootfs::loopback_up()?;
    let mut keep = rootfs::default_capabilities();
    keep.extend(rootfs::parse_capabilities(&cap_add)?);
    rootfs::drop_privileges(&keep, true)?;
    if let Some(fd) = wait {
        let mut byte = [0u8; 1];
        let fail = |why: String| {
            Failure::Runtime(format!("container setup: no go-ahead from the host: {why}"))
        };
        match fs::File::from(fd).read(&mut byte) {
            Ok(1) => {}
            Ok(_) => return Err(fail("the host closed the channel".into())),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    Ok(())
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
            "--cap-add",
            "CAP_SYS_ADMIN",
            "--",
            "hello",
        ]);
        let (config, rest) = split_args(&argv).unwrap();
        let config = config.unwrap();
        assert_eq!(config.rootfs, PathBuf::from("/img"));
        assert_eq!(config.hostname.as_deref(), Some("box"));
        assert!(config.wait.is_none());
        assert_eq!(config.cap_add, ["CAP_SYS_ADMIN"]);
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
}
