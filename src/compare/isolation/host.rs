//! What the isolation experiment needs to know about the host: what the audit compares the
//! instance's view with (kernel, boot id, namespaces), the targets of the containment attempts
//! (the root disk, cvm's own pid), the last-level cache the memory aggressor must overflow, and
//! the host-wide OOM counter that shows whether memory exhaustion stayed inside.

use std::time::Duration;

use cvm_proto::isolation::NAMESPACES;

/// The host as the instances are compared with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostFacts {
    pub boot_id: String,
    pub release: String,
    /// cvm's own namespaces: the host's, where cvm runs.
    pub namespaces: Vec<(String, u64)>,
    /// The root filesystem's device (`MAJOR:MINOR`) and type.
    pub disk: (u32, u32),
    pub fstype: String,
    /// The last-level cache, in bytes, where the host says.
    pub llc_bytes: Option<u64>,
}

impl HostFacts {
    pub fn collect() -> HostFacts {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let (disk, fstype) =
            root_device(&read("/proc/self/mountinfo")).unwrap_or(((0, 0), "ext4".to_string()));
        HostFacts {
            boot_id: read("/proc/sys/kernel/random/boot_id").trim().to_string(),
            release: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            namespaces: NAMESPACES
                .iter()
                .filter_map(|n| {
                    let link = std::fs::read_link(format!("/proc/self/ns/{n}")).ok()?;
                    let inode = link
                        .to_string_lossy()
                        .split_once(":[")?
                        .1
                        .strip_suffix(']')?
                        .parse()
                        .ok()?;
                    Some(((*n).to_string(), inode))
                })
                .collect(),
            disk,
            fstype,
            llc_bytes: last_level_cache(),
        }
    }

    /// The memory aggressor's working set: twice the last-level cache (64 MiB where unknown),
    /// within half the instance's memory.
    pub fn memory_working_set_mib(&self, memory_mib: u64) -> u64 {
        let llc_mib = self.llc_bytes.map_or(32, |b| b.div_ceil(1 << 20));
        (llc_mib * 2).clamp(8, (memory_mib / 2).max(8))
    }
}

/// The device and filesystem type of `/` in a `/proc/self/mountinfo` text.
pub(super) fn root_device(mountinfo: &str) -> Option<((u32, u32), String)> {
    mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(4) != Some(&"/") {
            return None;
        }
        let (major, minor) = fields.get(2)?.split_once(':')?;
        let dash = fields.iter().position(|f| *f == "-")?;
        let fstype = fields.get(dash + 1)?;
        Some((
            (major.parse().ok()?, minor.parse().ok()?),
            (*fstype).to_string(),
        ))
    })
}

/// The largest cache of CPU 0 (its `size` is `32768K`), the last level on every machine cvm
/// has met.
fn last_level_cache() -> Option<u64> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("size")).ok())
        .filter_map(|s| parse_cache_size(s.trim()))
        .max()
}

fn parse_cache_size(s: &str) -> Option<u64> {
    let (digits, scale) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * scale)
}

/// The host's OOM kills since boot (`oom_kill` in `/proc/vmstat`), every cgroup's included.
pub(super) fn oom_kills() -> Option<u64> {
    std::fs::read_to_string("/proc/vmstat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// Whether a fresh process can be started on the host (the check beside a fork bomb).
pub(super) fn can_fork() -> bool {
    std::process::Command::new("/bin/true")
        .stdin(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the HTTP server at `addr` answers a GET of `path` within two seconds.
pub(super) fn answers(addr: std::net::SocketAddr, path: &str) -> bool {
    use std::io::{Read, Write};
    let limit = Duration::from_secs(2);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.set_write_timeout(Some(limit));
    let request = format!("GET {path} HTTP/1.1\r\nHost: cvm\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    s.write_all(request.as_bytes()).is_ok()
        && s.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_device_and_type_come_from_mountinfo() {
        let text = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                    27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n";
        assert_eq!(root_device(text), Some(((254, 0), "ext4".into())));
        assert_eq!(root_device("22 27 0:21 / /proc rw - proc proc rw\n"), None);
        // Optional fields before the separator.
        let shared = "27 1 8:1 / / rw shared:1 master:2 - xfs /dev/sda1 rw\n";
        assert_eq!(root_device(shared), Some(((8, 1), "xfs".into())));
    }

    #[test]
    fn the_working_set_overflows_the_cache_within_the_instance() {
        let mut f = HostFacts::collect();
        f.llc_bytes = Some(32 << 20);
        assert_eq!(f.memory_working_set_mib(256), 64);
        assert_eq!(f.memory_working_set_mib(64), 32);
        f.llc_bytes = None;
        assert_eq!(f.memory_working_set_mib(1024), 64);
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("x"), None);
    }

    #[test]
    fn the_hosts_own_facts_are_readable() {
        let f = HostFacts::collect();
        assert_eq!(f.boot_id.len(), 36, "{f:?}");
        assert!(f.namespaces.iter().any(|(n, _)| n == "pid"), "{f:?}");
    }
}
