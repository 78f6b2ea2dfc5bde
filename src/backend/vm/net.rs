//! Guest networking: QEMU's user-mode network (slirp) with the workload's port forwarded from
//! an ephemeral port on the host's loopback.
//!
//! Why user-mode networking rather than a tap device in a network namespace:
//! - it lives entirely inside the QEMU process, so there is nothing to leak: no tap, bridge,
//!   namespace or firewall rule survives a killed QEMU, which is the backend's hardest promise
//!   (nothing left behind, also after SIGINT or a crash);
//! - it needs no root and no host network changes, and runs the same on every host;
//! - it is the default a QEMU user gets, so it is a fair "VM" figure.
//!
//! The cost is throughput and latency: slirp proxies every connection in user space. That is
//! recorded with each sample (`network=user (slirp) hostfwd 127.0.0.1`) so readers can tell; a
//! tap backend is the natural extension for users who want to measure it.
//!
//! The guest side is QEMU's fixed user-net layout: the guest is 10.0.2.15/24, the host's
//! loopback forwards arrive from 10.0.2.2. Init configures `eth0` with that address.

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
