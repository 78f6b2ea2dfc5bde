//! The container's private network: a veth pair between the host and the container's own
//! network namespace, on a /30 of its own.
//!
//! Addressing: instances get consecutive /30 blocks of a subnet, `10.213.0.0/16` unless
//! `CVM_CONTAINER_SUBNET` names another IPv4 prefix (at most /30). In block *k* the host end
//! has `.4k+1` and the container's `eth0` `.4k+2`; a /16 holds 15360 instances. A block is
//! skipped when any host interface already has an address in it (another cvm, or a network the
//! user's subnet choice collides with), and blocks in use by this process are tracked so
//! concurrent instances never share one.
//!
//! The subnet's last sixteenth (`10.213.240.0/20` of the default) is never handed out as /30s:
//! it is kept for the bridges of the Docker daemons cvm starts itself
//! ([`Subnet::bridge_networks`], /24s of it), so a container's veth and a Docker bridge never
//! share addresses, whichever cvm process made them. A subnet smaller than a /25 keeps nothing
//! (its sixteenth would not hold a bridge and a container), and has no Docker bridge.
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
//! Setup is five rtnetlink requests ([`crate::netlink`]): inside the container's namespace, the
//! pair is created with its peer directly in cvm's namespace and `eth0` is addressed and brought
//! up; on the host, the host end. It is done only for `network = "private"`. With `network = "none"` the namespace
//! holds only `lo`, which `cvm-guest init` brings up itself.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use crate::netlink::{self, Netlink, LOOPBACK_INDEX};
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
/// How long a new veth may take to pass packets (the kernel's link-watch work, normally well
/// under a millisecond).
const RUNNING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The container end's interface index: the first after `lo` in its new namespace.
const CONTAINER_INDEX: i32 = 2;

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
    #[error("cannot {step} ({link})")]
    Netlink {
        step: &'static str,
        link: String,
        #[source]
        source: io::Error,
    },
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

    /// How many of its /30 blocks veth pairs may use: all but the bridge pool (the last
    /// sixteenth), which comes after them.
    pub fn veth_blocks(&self) -> u32 {
        if self.prefix <= MAX_BRIDGE_POOL_PREFIX - 4 {
            self.blocks() - self.blocks() / 16
        } else {
            self.blocks()
        }
    }

    /// The networks a Docker bridge may take, in order: /24s of the subnet's last sixteenth
    /// (the whole sixteenth when it is smaller than a /24); none when the subnet is smaller
    /// than a /25.
    pub fn bridge_networks(&self) -> Vec<Subnet> {
        let pool_prefix = self.prefix + 4;
        if pool_prefix > MAX_BRIDGE_POOL_PREFIX {
            return Vec::new();
        }
        let pool_base = self.base + 4 * self.veth_blocks();
        let prefix = pool_prefix.max(24);
        let count = 1u32 << (prefix - pool_prefix);
        let size = 1u32 << (32 - prefix);
        (0..count)
            .map(|i| Subnet {
                base: pool_base + i * size,
                prefix,
            })
            .collect()
    }

    /// The first host address: a bridge's own.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` lies in this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        };
        u32::from(addr) & mask == self.base
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

/// The smallest bridge pool: a /29 holds a bridge's address, five containers and broadcast.
const MAX_BRIDGE_POOL_PREFIX: u8 = 29;

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
    let n = subnet.veth_blocks();
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

/// Every IPv4 address on the host's interfaces (whose networks cvm must not reuse).
pub fn host_ipv4_addresses() -> Vec<Ipv4Addr> {
    Netlink::open()
        .and_then(|mut nl| nl.ipv4_addresses())
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
    Netlink::open_in(ns.as_fd())
        .and_then(|mut nl| nl.set_up(LOOPBACK_INDEX))
        .map_err(|source| NetError::Netlink {
            step: "bring up lo in the new namespace",
            link: "lo".into(),
            source,
        })?;
    Ok(ns)
}

/// [`setup`] for the network namespace `ns`.
pub fn setup_in(subnet: Subnet, run_id: &str, ns: OwnedFd) -> Result<Link, NetError> {
    let block = reserve(subnet)?;
    let (host_addr, container_addr) = subnet.block(block);
    let link = Link {
        host_name: link_name(run_id, LINK_COUNTER.fetch_add(1, Ordering::Relaxed)),
        host_addr,
        container_addr,
        block,
        removed: false,
    };
    // Any error drops `link`, which deletes whatever was created.
    let fail = |step: &'static str, name: &str| {
        let link = name.to_string();
        move |source| NetError::Netlink { step, link, source }
    };
    // Inside the container: the pair, its peer placed straight into cvm's own namespace (by
    // cvm's PID), and `eth0` configured. `eth0` is given its index, so no lookup is needed: a
    // new namespace holds only `lo` (1).
    let mut inside = Netlink::open_in(ns.as_fd()).map_err(fail(
        "open a netlink socket in the container's namespace",
        CONTAINER_IFACE,
    ))?;
    inside
        .add_veth(
            CONTAINER_IFACE,
            CONTAINER_INDEX,
            &link.host_name,
            std::process::id(),
        )
        .map_err(fail("create the veth pair", &link.host_name))?;
    // A veth passes packets only once the kernel's link-watch work has seen both ends up and
    // given each its queueing discipline; until then they drop what they send. A probe's ARP
    // request (or the container's reply) lost that way cost a whole ARP retransmission, 1 s, in
    // 2 of 9 launches; so setup waits until both ends are operationally up.
    inside
        .set_up(CONTAINER_INDEX)
        .map_err(fail("bring up the container end", CONTAINER_IFACE))?;
    inside
        .add_address(CONTAINER_INDEX, container_addr, 30)
        .map_err(fail("address the container end", CONTAINER_IFACE))?;
    let host_index =
        netlink::index_of(&link.host_name).map_err(fail("find the host end", &link.host_name))?;
    let mut host = Netlink::open().map_err(fail("open a netlink socket", &link.host_name))?;
    host.set_up(host_index)
        .map_err(fail("bring up the host end", &link.host_name))?;
    host.add_address(host_index, host_addr, 30)
        .map_err(fail("address the host end", &link.host_name))?;
    host.wait_running(host_index, RUNNING_TIMEOUT)
        .map_err(fail(
            "wait for the host end to pass packets",
            &link.host_name,
        ))?;
    inside
        .wait_running(CONTAINER_INDEX, RUNNING_TIMEOUT)
        .map_err(fail(
            "wait for the container end to pass packets",
            CONTAINER_IFACE,
        ))?;
    Ok(link)
}

/// Creates a tap device for a VM on a /30 of its own, the same addressing as a container's veth:
/// the host end (the tap) gets `.4k+1`, the guest's NIC is to take `.4k+2` with the MAC address
/// [`guest_mac`]. No bridge, route beyond the /30, forwarding or firewall rule is involved. QEMU
/// attaches to it by name.
///
/// The host knows the guest's MAC, so its neighbour entry for the guest is permanent: the host
/// never asks by ARP. A VM's NIC answers only once its kernel has brought it up, seconds after
/// the first probe; an ARP request the guest could not answer left the entry resolving, and
/// every probe waited for the next retransmission (one per second), which put 0.1–1 s of ARP
/// timer into a VM's measured readiness.
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
    run_batch(&script, &link.host_name)?;
    let fail = |source| NetError::Netlink {
        step: "add the guest's neighbour entry",
        link: link.host_name.clone(),
        source,
    };
    let index = netlink::index_of(&link.host_name).map_err(fail)?;
    Netlink::open()
        .and_then(|mut nl| nl.add_neighbour(index, container_addr, guest_mac(container_addr)))
        .map_err(fail)?;
    Ok(link)
}

/// The MAC address of the guest NIC on a tap link whose guest end is `addr`: locally
/// administered (QEMU's own `52:54:00` prefix) with the address's last three octets, so two
/// guests on this host never share one.
pub fn guest_mac(addr: Ipv4Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x52, 0x54, 0x00, o[1], o[2], o[3]]
}

fn ip_batch() -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `script` through `ip -batch` on the host (a tap device needs `ip tuntap`, which is
/// ioctls on `/dev/net/tun` rather than netlink).
fn run_batch(script: &str, link: &str) -> Result<(), NetError> {
    let mut child = ip_batch().spawn().map_err(NetError::RunIp)?;
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
            side: "host",
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
        let deleted = Netlink::open().and_then(|mut nl| nl.delete(&self.host_name));
        // Lost a race with the kernel's own cleanup: the link is gone either way.
        match deleted {
            Ok(()) => Ok(()),
            Err(_) if !link_exists(&self.host_name) => Ok(()),
            Err(e) => Err(NetError::Delete {
                link: self.host_name.clone(),
                stderr: e.to_string(),
            }),
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
    fn docker_bridges_take_the_last_sixteenth_and_veths_never_do() {
        let s = Subnet::parse("10.213.0.0/16").unwrap();
        assert_eq!(s.veth_blocks(), 15360);
        let (_, last_container) = s.block(s.veth_blocks() - 1);
        assert_eq!(last_container, Ipv4Addr::new(10, 213, 239, 254));
        let bridges = s.bridge_networks();
        assert_eq!(bridges.len(), 16);
        assert_eq!(bridges[0].to_string(), "10.213.240.0/24");
        assert_eq!(bridges[0].gateway(), Ipv4Addr::new(10, 213, 240, 1));
        assert_eq!(bridges[15].to_string(), "10.213.255.0/24");
        for k in 0..s.veth_blocks() {
            let (host, container) = s.block(k);
            assert!(bridges
                .iter()
                .all(|b| !b.contains(host) && !b.contains(container)));
        }
        // A /24 keeps its last /28 for one bridge; a /26 is too small to keep anything.
        let small = Subnet::parse("192.168.5.0/24").unwrap();
        assert_eq!(small.veth_blocks(), 60);
        let b = small.bridge_networks();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].to_string(), "192.168.5.240/28");
        let tiny = Subnet::parse("192.168.5.0/26").unwrap();
        assert_eq!(tiny.veth_blocks(), tiny.blocks());
        assert!(tiny.bridge_networks().is_empty());
    }

    #[test]
    fn link_names_fit_the_kernel_limit() {
        assert_eq!(link_name("ab12cd", 0), "cvmab12cd0");
        let long = link_name("2024-01-01T00:00:00-startup", u32::MAX);
        assert!(long.len() <= 15, "{long}");
        assert!(long.starts_with("cvm202401"));
    }
}
