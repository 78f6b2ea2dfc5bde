//! Guest networking, two ways, chosen by the scenario's `network`:
//!
//! - `private` (as root): a tap device on a /30 of its own, with the container veth's addressing
//!   (`cvm_runtime::net`): the host end has `.4k+1`, the guest's `eth0` `.4k+2`, and the host
//!   reaches the guest directly, with no bridge, NAT or firewall change. The tap is created when
//!   the backend is prepared and removed when it is dropped, so every launch attaches to the same
//!   device and the guest's address is written into its initramfs; concurrent VM instances
//!   (density) therefore need `user`. The leak audit sees it like any `cvm*` link.
//! - `user` (and `private` without root): QEMU's user-mode network (slirp) with the workload's
//!   port forwarded from an ephemeral port on the host's loopback. It lives entirely inside the
//!   QEMU process (nothing to leak), needs no root, and is what a QEMU user gets by default; its
//!   cost is throughput and latency, since slirp proxies every connection in user space. It is
//!   labelled as such in every sample (`network=user (slirp), hostfwd on 127.0.0.1`).
//!
//! On the user network the guest is QEMU's fixed 10.0.2.15/24 and the host's loopback forwards
//! arrive from 10.0.2.2. Init configures `eth0` with the address either way.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// The guest's interface and address on QEMU's user-mode network.
pub const GUEST_NET_DEVICE: &str = "eth0";
pub const GUEST_CIDR: &str = "10.0.2.15/24";
/// What the config records as the network mode.
pub const MODE: &str = "user (slirp), hostfwd on 127.0.0.1";

/// A currently free TCP port on the host's loopback, for a forward. The port is released before
/// QEMU binds it; a collision in that gap makes QEMU fail at start with its own message, which
/// the run reports.
pub fn free_loopback_port() -> io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// Where a forwarded guest port is reachable from the host.
pub fn host_endpoint(host_port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, host_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable_loopback_ports() {
        let p = free_loopback_port().unwrap();
        assert!(p > 0);
        let l = TcpListener::bind(host_endpoint(p)).unwrap();
        assert_eq!(l.local_addr().unwrap().ip(), Ipv4Addr::LOCALHOST);
    }
}
