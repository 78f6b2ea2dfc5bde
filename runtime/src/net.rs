//! The container's private network: a veth pair between the host and the container's own
//! network namespace, on a /30 of its own.
//!
//! Addressing: instances get consecutive /30 blocks of a subnet, `10.213.0.0/16` unless
//! `CVM_CONTAINER_SUBNET` names another IPv4 prefix (at most /30). In block *k* the host end
//! has `.4k+1` and the container's `eth0` `.4k+2`; a /16 holds 16384 instances. A block is
//! skipped when any host interface already has an address in it (another cvm, or a network the
//! user's subnet choice collides with), and blocks in use by this process are tracked so
//! concurrent instances never share one.
//!
//! Names: the host end is `cvm<token><n>`, where `<token>` is the first six alphanumeric
//! characters of the launch's run id and `<n>` a per-process counter in base 36, so a name is at
//! most 15 characters (Linux's limit) and every leftover link can be traced to the run that
//! made it. The container end is always `eth0`.
//!
//! No route beyond the /30 is configured, no forwarding or NAT is enabled, and the host's
//! firewall is not touched: the container can reach the host end of its link and nothing else,
//! and cvm's probes and load only ever address the container end.
//!
//! Setup costs two runs of `ip` (one inside the container's namespace, which creates the pair
//! with its peer directly in cvm's namespace and configures `eth0`; one on the host for the host
//! end), so it is done only for `network = "private"`. With `network = "none"` the namespace
//! holds only `lo`, which `cvm-guest init` brings up itself.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// The subnet instances' /30 blocks come from, unless overridden.
pub const DEFAULT_SUBNET: &str = "10.213.0.0/16";
/// Environment variable overriding [`DEFAULT_SUBNET`].
pub const SUBNET_ENV: &str = "CVM_CONTAINER_SUBNET";
/// The container end's name inside its namespace.
pub const CONTAINER_IFACE: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "{SUBNET_ENV}={value} is not an IPv4 prefix of length 30 or less (like {DEFAULT_SUBNET})"
    )]
    BadSubnet { value: String },
    #[error("no free /30 left in {subnet}")]
    Exhausted { subnet: String },
    #[error("cannot open the container's network namespace {path}")]
    OpenNamespace {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot run `ip` (install iproute2)")]
    RunIp(#[source] io::Error),
    #[error("`ip` failed configuring the {side} end of {link}: {stderr}")]
    Ip {
        side: &'static str,
        link: String,
        stderr: String,
    },
    #[error("cannot delete link {link}: {stderr}")]
    Delete { link: String, stderr: String },
    #[error("cannot create a network namespace")]
    NewNamespace(#[source] io::Error),
}

/// An IPv4 prefix carved into /30 blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    pub fn parse(text: &str) -> Option<Subnet> {
        let (addr, len) = text.trim().split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = len.parse().ok()?;
        if prefix > 30 {
            return None;
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Some(Subnet {
            base: u32::from(addr) & mask,
            prefix,
        })
    }

    /// The subnet in force: `CVM_CONTAINER_SUBNET` or the default.
    pub fn from_env() -> Result<Subnet, NetError> {
        match std::env::var(SUBNET_ENV) {
            Ok(value) => Subnet::parse(&value).ok_or(NetError::BadSubnet { value }),
            Err(_) => Ok(Subnet::parse(DEFAULT_SUBNET).unwrap_or(Subnet {
                base: 0x0ad5_0000,
                prefix: 16,
            })),
        }
    }

    /// How many /30 blocks it holds.
    pub fn blocks(&self) -> u32 {
        1u32 << (30 - u32::from(self.prefix))
    }

    /// (host end, container end) of block `k`.
    pub fn block(&self, k: u32) -> (Ipv4Addr, Ipv4Addr) {
        let net = self.base + 4 * k;
        (Ipv4Addr::from(net + 1), Ipv4Addr::from(net + 2))
    }

    fn contains_block(&self, k: u32, addr: Ipv4Addr) -> bool {
        let net = self.base + 4 * k;
        u32::from(addr) & !3 == net
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Blocks held by this process's live instances.
static IN_USE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
/// Numbers link names, so a name is never reused while the kernel may still be destroying an
/// old namespace (and with it the old link).
static LINK_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The host end's name for a launch of run `run_id`.
pub fn link_name(run_id: &str, n: u32) -> String {
    let token: String = run_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    // Six base-36 digits at most (wrapping after 2e9 links): 3 + 6 + 6 = 15 characters.
    format!("cvm{token}{}", base36(n % 36u32.pow(6)))
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A configured veth pair; [`Link::remove`] (also on drop) deletes it and frees its block.
#[derive(Debug)]
pub struct Link {
    pub host_name: String,
    pub host_addr: Ipv4Addr,
    pub container_addr: Ipv4Addr,
    block: u32,
    removed: bool,
}

/// Reserves a free /30 block in `subnet`.
fn reserve(subnet: Subnet) -> Result<u32, NetError> {
    let taken: Vec<Ipv4Addr> = host_ipv4_addresses();
    let mut in_use = IN_USE.lock().unwrap_or_else(|p| p.into_inner());
    let n = subnet.blocks();
    // A random start keeps two cvm processes that start together from racing for block 0.
    let start = fastrand::u32(..n);
    for i in 0..n {
        let k = (start + i) % n;
        if in_use.contains(&k) || taken.iter().any(|a| subnet.contains_block(k, *a)) {
            continue;
        }
        in_use.insert(k);
        return Ok(k);
    }
    Err(NetError::Exhausted {
        subnet: subnet.to_string(),
    })
}

fn release(block: u32) {
    IN_USE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&block);
}

fn host_ipv4_addresses() -> Vec<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
                .collect()
        })
        .unwrap_or_default()
}

/// Creates the veth pair for the container whose init has host PID `pid`, configures both
/// ends, and returns it. On failure nothing is left behind.
pub fn setup(subnet: Subnet, run_id: &str, pid: i32) -> Result<Link, NetError> {
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns: OwnedFd = std::fs::File::open(&ns_path)
        .map_err(|source| NetError::OpenNamespace {
            path: ns_path.clone(),
            source,
        })?
        .into();
    setup_in(subnet, run_id, ns)
}

/// A new, empty network namespace with `lo` up, held only by the returned descriptor (no
/// process and no bind mount under `/run/netns`, so closing it is the whole cleanup). For a
/// runtime that joins a namespace named in its bundle rather than making its own (gVisor's
/// host network), so the veth can be configured before the runtime starts. A short-lived
/// thread unshares its own network namespace, so cvm's other threads never change theirs.
pub fn new_namespace() -> Result<OwnedFd, NetError> {
    let ns = std::thread::spawn(|| -> io::Result<OwnedFd> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
    })
    .join()
    .map_err(|_| NetError::NewNamespace(io::Error::other("the unsharing thread panicked")))?
    .map_err(NetError::NewNamespace)?;
    let guard_ns = ns.try_clone().map_err(NetError::NewNamespace)?;
    let mut cmd = ip_batch();
    let guard = crate::sys::enter_namespace_before_exec(&mut cmd, guard_ns, libc::CLONE_NEWNET);
    run_batch(cmd, guard, "link set lo up\n", "container", "lo")?;
    Ok(ns)
}

/// [`setup`] for the network namespace `ns`.
pub fn setup_in(subnet: Subnet, run_id: &str, ns: OwnedFd) -> Result<Link, NetError> {
    let block = reserve(subnet)?;
    let (host_addr, container_addr) = subnet.block(block);
    let mut link = Link {
        host_name: link_name(run_id, LINK_COUNTER.fetch_add(1, Ordering::Relaxed)),
        host_addr,
        container_addr,
        block,
        removed: false,
    };
    // Any error drops `link`, which deletes whatever was created.
    // Inside the container: create the pair with its peer placed straight into cvm's own
    // namespace (by cvm's PID), so one `ip` run does the container side completely.
    let inside = format!(
        "link add {CONTAINER_IFACE} type veth peer name {host} netns {cvm}\n\
         addr add {container_addr}/30 dev {CONTAINER_IFACE}\n\
         link set {CONTAINER_IFACE} up\n",
        host = link.host_name,
        cvm = std::process::id(),
    );
    let mut cmd = ip_batch();
    let guard = crate::sys::enter_namespace_before_exec(&mut cmd, ns, libc::CLONE_NEWNET);
    run_batch(cmd, guard, &inside, "container", &link.host_name)?;
    let outside = format!(
        "addr add {host_addr}/30 dev {name}\nlink set {name} up\n",
        name = link.host_name
    );
    run_batch(ip_batch(), (), &outside, "host", &link.host_name)?;
    link.removed = false;
    Ok(link)
}

/// Creates a tap device for a VM on a /30 of its own, the same addressing as a container's veth:
/// the host end (the tap) gets `.4k+1`, the guest's NIC is to take `.4k+2`. No bridge, route
/// beyond the /30, forwarding or firewall rule is involved. QEMU attaches to it by name.
pub fn setup_tap(subnet: Subnet, run_id: &str) -> Result<Link, NetError> {
    let block = reserve(subnet)?;
    let (host_addr, container_addr) = subnet.block(block);
    // Any error drops `link`, which deletes whatever was created.
    let link = Link {
        host_name: link_name(run_id, LINK_COUNTER.fetch_add(1, Ordering::Relaxed)),
        host_addr,
        container_addr,
        block,
        removed: false,
    };
    let script = format!(
        "tuntap add dev {name} mode tap\naddr add {host_addr}/30 dev {name}\nlink set {name} up\n",
        name = link.host_name
    );
    run_batch(ip_batch(), (), &script, "host", &link.host_name)?;
    Ok(link)
}

fn ip_batch() -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn run_batch<G>(
    mut cmd: Command,
    guard: G,
    script: &str,
    side: &'static str,
    link: &str,
) -> Result<(), NetError> {
    let mut child = cmd.spawn().map_err(NetError::RunIp)?;
    drop(guard);
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NetError::RunIp)?;
    }
    let out = child.wait_with_output().map_err(NetError::RunIp)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            side,
            link: link.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Link {
    /// Deletes the pair (both ends go together) if it still exists. Once the container's
    /// namespace is gone the kernel deletes it too, but asynchronously: deleting it here makes
    /// teardown complete when it returns.
    pub fn remove(&mut self) -> Result<(), NetError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        release(self.block);
        if !link_exists(&self.host_name) {
            return Ok(());
        }
        let out = Command::new("ip")
            .args(["link", "del", &self.host_name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(NetError::RunIp)?;
        // Lost a race with the kernel's own cleanup: the link is gone either way.
        if out.status.success() || !link_exists(&self.host_name) {
            Ok(())
        } else {
            Err(NetError::Delete {
                link: self.host_name.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_carved_into_thirty_twos() {
        let s = Subnet::parse("10.213.7.9/16").unwrap();
        assert_eq!(s.to_string(), "10.213.0.0/16");
        assert_eq!(s.blocks(), 16384);
        assert_eq!(
            s.block(0),
            (Ipv4Addr::new(10, 213, 0, 1), Ipv4Addr::new(10, 213, 0, 2))
        );
        assert_eq!(
            s.block(65),
            (Ipv4Addr::new(10, 213, 1, 5), Ipv4Addr::new(10, 213, 1, 6))
        );
        assert!(s.contains_block(65, Ipv4Addr::new(10, 213, 1, 7)));
        assert!(!s.contains_block(65, Ipv4Addr::new(10, 213, 1, 8)));
        assert_eq!(Subnet::parse("10.0.0.0/30").unwrap().blocks(), 1);
        assert!(Subnet::parse("10.0.0.0/31").is_none());
        assert!(Subnet::parse("10.0.0.0").is_none());
        assert!(Subnet::parse("nonsense/8").is_none());
    }

    #[test]
    fn link_names_fit_the_kernel_limit() {
        assert_eq!(link_name("ab12cd", 0), "cvmab12cd0");
        let long = link_name("2024-01-01T00:00:00-startup", u32::MAX);
        assert!(long.len() <= 15, "{long}");
        assert!(long.starts_with("cvm202401"));
    }
}
