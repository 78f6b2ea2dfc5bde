//! The few rtnetlink requests cvm makes: create a veth pair, give an interface an IPv4 address,
//! bring it up, delete a link. Each is one message and one acknowledgement on a netlink socket,
//! which is bound to the network namespace it was created in.
//!
//! Why not `ip`: a run of `ip` is a process start (fork, exec, its dynamic libraries), and the
//! container's veth took two of them, 3–10 ms of a container's `runtime` phase on the reference
//! host, more than the kernel's own work. The messages are small and fixed, so they are built
//! here rather than through a netlink crate's generic message model.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWNEIGH: u16 = 28;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
/// `NLM_F_ROOT | NLM_F_MATCH`: every object of the kind.
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_IFNAME: u16 = 3;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_PERMANENT: u16 = 0x80;
const IFF_UP: u32 = 1;
const AF_INET: u8 = libc::AF_INET as u8;
/// RFC 2863's "up" in `IFLA_OPERSTATE`.
const IF_OPER_UP: u8 = 6;
/// How often [`Netlink::wait_running`] asks.
const RUNNING_POLL: Duration = Duration::from_micros(200);

/// The interface index of `lo` in every network namespace.
pub const LOOPBACK_INDEX: i32 = 1;

/// A netlink route socket in one network namespace.
pub struct Netlink {
    sock: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let sock = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// A socket in the network namespace `ns` (a `/proc/PID/ns/net` descriptor); it stays in
    /// `ns` for its whole life. The calling thread enters `ns` for the one `socket` call and
    /// goes back to its own namespace before it returns; no other thread of the caller ever
    /// changes namespace. On this thread rather than on a new one: a new thread is a wakeup of
    /// another CPU, which under a hypervisor took 0.2–1 ms of the container's `runtime` phase on
    /// the reference host, more than creating and configuring the veth itself.
    pub fn open_in(ns: BorrowedFd<'_>) -> io::Result<Netlink> {
        let home = std::fs::File::open("/proc/thread-self/ns/net")?;
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let opened = Netlink::open();
        // Going back to the namespace the thread came from cannot be refused for want of a
        // right the entry had; should it fail all the same, the thread must not go on working
        // in the container's namespace unnoticed.
        if let Err(e) = nix::sched::setns(home.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET) {
            panic!("cannot return to the caller's network namespace after entering another: {e}");
        }
        opened
    }

    /// Creates the veth pair `name` (here, with interface index `index`; 0 lets the kernel
    /// choose) and `peer`, the peer placed in the network namespace of process `peer_pid`.
    pub fn add_veth(
        &mut self,
        name: &str,
        index: i32,
        peer: &str,
        peer_pid: u32,
    ) -> io::Result<()> {
        let mut peer_msg = ifinfomsg(0, 0, 0);
        attr(&mut peer_msg, IFLA_IFNAME, &c_name(peer));
        attr(&mut peer_msg, IFLA_NET_NS_PID, &peer_pid.to_ne_bytes());
        let mut data = Vec::new();
        attr(&mut data, VETH_INFO_PEER, &peer_msg);
        let mut info = Vec::new();
        attr(&mut info, IFLA_INFO_KIND, b"veth");
        attr(&mut info, IFLA_INFO_DATA, &data);
        let mut body = ifinfomsg(index, 0, 0);
        attr(&mut body, IFLA_IFNAME, &c_name(name));
        attr(&mut body, IFLA_LINKINFO, &info);
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &body)
    }

    /// Creates the bridge `name`, down and without ports.
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut info = Vec::new();
        attr(&mut info, IFLA_INFO_KIND, b"bridge");
        let mut body = ifinfomsg(0, 0, 0);
        attr(&mut body, IFLA_IFNAME, &c_name(name));
        attr(&mut body, IFLA_LINKINFO, &info);
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &body)
    }

    /// Gives interface `index` the address `addr/prefix`.
    pub fn add_address(&mut self, index: i32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut body = Vec::with_capacity(24);
        body.extend_from_slice(&[AF_INET, prefix, 0, 0]); // family, prefixlen, flags, scope
        body.extend_from_slice(&(index as u32).to_ne_bytes());
        attr(&mut body, IFA_LOCAL, &addr.octets());
        attr(&mut body, IFA_ADDRESS, &addr.octets());
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body)
    }

    /// A permanent neighbour entry on interface `index`: `addr` is at `mac`, never asked by ARP.
    pub fn add_neighbour(&mut self, index: i32, addr: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
        // struct ndmsg: family, 3 bytes of padding, ifindex, state, flags, type.
        let mut body = Vec::with_capacity(32);
        body.extend_from_slice(&[AF_INET, 0, 0, 0]);
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&NUD_PERMANENT.to_ne_bytes());
        body.extend_from_slice(&[0, 0]);
        attr(&mut body, NDA_DST, &addr.octets());
        attr(&mut body, NDA_LLADDR, &mac);
        self.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &body)
    }

    /// Brings interface `index` up.
    pub fn set_up(&mut self, index: i32) -> io::Result<()> {
        self.request(RTM_NEWLINK, 0, &ifinfomsg(index, IFF_UP, IFF_UP))
    }

    /// Waits until interface `index` is operationally up, for at most `timeout`. A link brought
    /// up is not yet passing packets: the kernel attaches its queueing discipline later, from a
    /// work queue, once the carrier is seen (for a veth, when both ends are up), and until then
    /// drops what is sent. A probe's first ARP request lost that way waits for the
    /// retransmission, 1 s later. The operational state is set by that same work item.
    pub fn wait_running(&mut self, index: i32, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.operstate(index)? == IF_OPER_UP {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("interface {index} not operationally up after {timeout:?}"),
                ));
            }
            std::thread::sleep(RUNNING_POLL);
        }
    }

    /// `IFLA_OPERSTATE` of interface `index`.
    fn operstate(&mut self, index: i32) -> io::Result<u8> {
        let reply = self.query(RTM_GETLINK, &ifinfomsg(index, 0, 0))?;
        // nlmsghdr (16) + ifinfomsg (16), then attributes.
        let mut at = 32;
        while at + 4 <= reply.len() {
            let len = usize::from(u16::from_ne_bytes([reply[at], reply[at + 1]]));
            let kind = u16::from_ne_bytes([reply[at + 2], reply[at + 3]]) & 0x3fff;
            if len < 4 || at + len > reply.len() {
                break;
            }
            if kind == IFLA_OPERSTATE && len >= 5 {
                return Ok(reply[at + 4]);
            }
            at += (len + 3) & !3;
        }
        Err(io::Error::other(
            "no operational state in the link's description",
        ))
    }

    /// Deletes the link called `name` (a veth takes its peer with it).
    pub fn delete(&mut self, name: &str) -> io::Result<()> {
        let mut body = ifinfomsg(0, 0, 0);
        attr(&mut body, IFLA_IFNAME, &c_name(name));
        self.request(RTM_DELLINK, 0, &body)
    }

    /// Every IPv4 address in the socket's namespace (`IFA_LOCAL`, else `IFA_ADDRESS`). One dump
    /// of IPv4 addresses only: `getifaddrs` dumps every link and every address of every family,
    /// about three times as long, and this is asked on every container launch.
    pub fn ipv4_addresses(&mut self) -> io::Result<Vec<Ipv4Addr>> {
        // struct ifaddrmsg: family, prefixlen, flags, scope, index.
        let fd = self.send(RTM_GETADDR, NLM_F_DUMP, &[AF_INET, 0, 0, 0, 0, 0, 0, 0])?;
        let mut found = Vec::new();
        read_dump(fd, |kind, body| {
            if kind == RTM_NEWADDR {
                found.extend(ipv4_of(body));
            }
        })?;
        Ok(found)
    }

    /// Sends a request that is answered with one message and returns that message.
    fn query(&mut self, kind: u16, body: &[u8]) -> io::Result<Vec<u8>> {
        let fd = self.send(kind, 0, body)?;
        let mut reply = vec![0u8; 16384];
        loop {
            let n = socket::recv(fd, &mut reply, MsgFlags::empty())?;
            if n < 20 {
                return Err(io::Error::other("short rtnetlink reply"));
            }
            if u32::from_ne_bytes([reply[8], reply[9], reply[10], reply[11]]) != self.seq {
                continue;
            }
            if u16::from_ne_bytes([reply[4], reply[5]]) == NLMSG_ERROR {
                let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
                return Err(io::Error::from_raw_os_error(-errno));
            }
            reply.truncate(n);
            return Ok(reply);
        }
    }

    /// Sends one message with the next sequence number; returns the socket's descriptor.
    fn send(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<std::os::fd::RawFd> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
        msg.extend_from_slice(body);
        let fd = self.sock.as_raw_fd();
        socket::sendto(fd, &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())?;
        Ok(fd)
    }

    /// Sends one request and waits for its acknowledgement; a negative error in it is the
    /// request's errno.
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        let fd = self.send(kind, NLM_F_ACK | flags, body)?;
        // The ack is the error code and the request echoed after it (whole on failure):
        // 512 bytes hold it for every request here.
        let mut reply = [0u8; 512];
        loop {
            let n = socket::recv(fd, &mut reply, MsgFlags::empty())?;
            if n < 20 {
                return Err(io::Error::other("short rtnetlink reply"));
            }
            let kind = u16::from_ne_bytes([reply[4], reply[5]]);
            let seq = u32::from_ne_bytes([reply[8], reply[9], reply[10], reply[11]]);
            if kind != NLMSG_ERROR || seq != self.seq {
                continue;
            }
            let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
            return if errno == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-errno))
            };
        }
    }
}

/// How one datagram of a dump's replies ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DumpEnd {
    /// No end yet: more datagrams follow.
    More,
    /// `NLMSG_DONE`.
    Done,
    /// `NLMSG_ERROR`, with its (positive) errno.
    Error(i32),
}

/// Walks the messages of one datagram of a netlink dump, rtnetlink's or sock_diag's alike:
/// each reply's type and body (what follows its 16-byte header) go to `each`, up to the
/// dump's end.
pub(crate) fn walk_dump(mut data: &[u8], mut each: impl FnMut(u16, &[u8])) -> DumpEnd {
    const HEADER: usize = 16;
    while data.len() >= HEADER {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < HEADER || len > data.len() {
            break;
        }
        match kind {
            NLMSG_DONE => return DumpEnd::Done,
            NLMSG_ERROR => {
                let errno = data
                    .get(HEADER..HEADER + 4)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                return DumpEnd::Error(-errno);
            }
            _ => each(kind, &data[HEADER..len]),
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        let step = (len + 3) & !3;
        data = data.get(step..).unwrap_or_default();
    }
    DumpEnd::More
}

/// Receives a dump's datagrams on `fd` up to its end, each reply to `each` ([`walk_dump`]).
fn read_dump(fd: std::os::fd::RawFd, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = socket::recv(fd, &mut buf, MsgFlags::empty())?;
        match walk_dump(&buf[..n], &mut each) {
            DumpEnd::More => {}
            DumpEnd::Done => return Ok(()),
            DumpEnd::Error(errno) => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// The address of one `RTM_NEWADDR` message's body (`ifaddrmsg`, then attributes): its
/// `IFA_LOCAL`, or its `IFA_ADDRESS` where it has no local one (most do, a point-to-point
/// link's peer address is `IFA_ADDRESS`).
fn ipv4_of(body: &[u8]) -> Option<Ipv4Addr> {
    if body.len() < 8 || body[0] != AF_INET {
        return None;
    }
    let (mut local, mut address) = (None, None);
    let mut at = 8;
    while at + 4 <= body.len() {
        let len = usize::from(u16::from_ne_bytes([body[at], body[at + 1]]));
        let kind = u16::from_ne_bytes([body[at + 2], body[at + 3]]);
        if len < 4 || at + len > body.len() {
            break;
        }
        if len == 8 {
            let a = Ipv4Addr::new(body[at + 4], body[at + 5], body[at + 6], body[at + 7]);
            match kind {
                IFA_LOCAL => local = Some(a),
                IFA_ADDRESS => address = Some(a),
                _ => {}
            }
        }
        at += (len + 3) & !3;
    }
    local.or(address)
}

/// The index of the interface called `name` in the calling thread's network namespace.
pub fn index_of(name: &str) -> io::Result<i32> {
    let index = nix::net::if_::if_nametoindex(name).map_err(io::Error::from)?;
    i32::try_from(index).map_err(|_| io::Error::other(format!("interface index {index}")))
}

/// `struct ifinfomsg` for interface `index`.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&[0, 0]); // family AF_UNSPEC, padding
    m.extend_from_slice(&0u16.to_ne_bytes()); // type
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&change.to_ne_bytes());
    m
}

/// A NUL-terminated interface name.
fn c_name(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

/// Appends one attribute (length, type, payload, padding to 4 bytes).
fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_message_gives_its_local_address() {
        let mut body = vec![AF_INET, 30, 0, 0, 7, 0, 0, 0];
        attr(&mut body, IFA_ADDRESS, &[10, 0, 0, 2]);
        attr(&mut body, IFA_LOCAL, &[10, 0, 0, 1]);
        assert_eq!(ipv4_of(&body), Some(Ipv4Addr::new(10, 0, 0, 1)));
        let mut peer_only = vec![AF_INET, 30, 0, 0, 7, 0, 0, 0];
        attr(&mut peer_only, IFA_ADDRESS, &[10, 0, 0, 2]);
        assert_eq!(ipv4_of(&peer_only), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(ipv4_of(&[10, 30, 0, 0, 7, 0, 0, 0]), None, "not AF_INET");
    }

    #[test]
    fn the_dump_lists_the_loopback_address() {
        let found = Netlink::open().unwrap().ipv4_addresses().unwrap();
        assert!(found.contains(&Ipv4Addr::LOCALHOST), "{found:?}");
    }

    #[test]
    fn attributes_are_padded_to_four_bytes_and_nest() {
        let mut inner = Vec::new();
        attr(&mut inner, IFLA_INFO_KIND, b"veth");
        assert_eq!(inner.len(), 8);
        let mut outer = Vec::new();
        attr(&mut outer, IFLA_IFNAME, &c_name("eth0"));
        assert_eq!(outer.len(), 12, "4 header + 5 name bytes, padded");
        assert_eq!(&outer[4..9], b"eth0\0");
        attr(&mut outer, IFLA_LINKINFO, &inner);
        assert_eq!(u16::from_ne_bytes([outer[12], outer[13]]), 12);
    }
}
