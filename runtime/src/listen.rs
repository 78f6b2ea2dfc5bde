//! Whether a TCP socket is in LISTEN on a port, in the caller's network namespace: the inside
//! half of a server's readiness (init asks it inside a container or VM; the host asks it for a
//! native process, which shares the host's namespace).
//!
//! The kernel is asked over `NETLINK_SOCK_DIAG` for listening sockets only. The obvious
//! alternative, reading `/proc/net/tcp{,6}`, walks every bucket of the established-connection
//! hash table, which every namespace shares by default: on the reference host (24 GiB, 262144
//! buckets) one read of both tables took about 14 ms of kernel time, more than a container
//! takes to start. A dump restricted to LISTEN walks only the listening hash. Where sock_diag is
//! missing (a guest kernel whose `inet_diag` is a module nobody loaded) the tables are read
//! instead; a small guest's hash table is small.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::netlink::{self, DumpEnd};
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// How often a watcher asks, inside an instance (init) and on the host (native): two sock_diag
/// dumps of the listening hash, tens of microseconds of CPU each time, against the readiness
/// bias it bounds (half of it on average: at 1 ms, the host's probe was answered 0.3 ms before
/// init's marker in the median container launch of `web` on the reference host).
pub const POLL: std::time::Duration = std::time::Duration::from_micros(200);

/// `SOCK_DIAG_BY_FAMILY`, the request type of a socket dump.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
/// `NLM_F_ROOT | NLM_F_MATCH`: every socket the filter matches.
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// `TCP_LISTEN` in the kernel's state numbering, as a bit of `idiag_states`.
const LISTEN_STATES: u32 = 1 << 10;
/// Offset of `idiag_sport` (big-endian) in a reply's body: after `idiag_family`,
/// `idiag_state`, `idiag_timer` and `idiag_retrans`.
const SPORT_OFFSET: usize = 4;
/// Offset of `idiag_inode` in a reply's body: after those four bytes, the 48-byte socket id,
/// and `idiag_expires`, `idiag_rqueue`, `idiag_wqueue`, `idiag_uid`.
const INODE_OFFSET: usize = 68;

/// A netlink socket for repeated questions (one per watch, not one per question).
pub struct ListenQuery {
    sock: OwnedFd,
}

/// The answer to one dump: the inodes of the sockets in LISTEN on the port, or that sock_diag
/// cannot tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Listeners(Vec<u64>),
    /// The kernel refused the request (an errno from `NLMSG_ERROR`).
    Refused(i32),
}

impl ListenQuery {
    pub fn open() -> io::Result<ListenQuery> {
        let sock = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        Ok(ListenQuery { sock })
    }

    /// Whether a TCP socket (IPv4 or IPv6) is in LISTEN on `port`.
    pub fn listening(&self, port: u16) -> io::Result<bool> {
        Ok(!self.listeners(port)?.is_empty())
    }

    /// The inodes of the TCP sockets (IPv4 and IPv6) in LISTEN on `port`: whose they are is
    /// found by the `socket:[inode]` links in the owners' `/proc/PID/fd`.
    pub fn listeners(&self, port: u16) -> io::Result<Vec<u64>> {
        let mut inodes = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            match self.dump(family, port)? {
                Reply::Listeners(found) => inodes.extend(found),
                Reply::Refused(errno) => return Err(io::Error::from_raw_os_error(errno)),
            }
        }
        Ok(inodes)
    }

    fn dump(&self, family: libc::c_int, port: u16) -> io::Result<Reply> {
        let fd = self.sock.as_raw_fd();
        socket::sendto(
            fd,
            &request(family),
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        let mut buf = vec![0u8; 32 * 1024];
        let mut found = Vec::new();
        loop {
            let n = socket::recv(fd, &mut buf, MsgFlags::empty())?;
            match scan(&buf[..n], port, &mut found) {
                Scan::More => {}
                Scan::Done => return Ok(Reply::Listeners(found)),
                Scan::Error(errno) => return Ok(Reply::Refused(errno)),
            }
        }
    }
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for every TCP socket in LISTEN of `family`.
fn request(family: libc::c_int) -> Vec<u8> {
    const REQ_LEN: usize = 56; // inet_diag_req_v2: 8 bytes, then a 48-byte inet_diag_sockid
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + REQ_LEN);
    msg.extend_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel's
    msg.push(u8::try_from(family).unwrap_or(0)); // sdiag_family
    msg.push(u8::try_from(libc::IPPROTO_TCP).unwrap_or(6)); // sdiag_protocol
    msg.push(0); // idiag_ext: no extensions
    msg.push(0); // pad
    msg.extend_from_slice(&LISTEN_STATES.to_ne_bytes());
    msg.resize(NLMSG_HDRLEN + REQ_LEN, 0); // the socket id: ignored by a dump
    msg
}

/// Polls for a listener: by sock_diag while the kernel answers it, else by reading the socket
/// tables under `proc_dir` (`/proc` for the caller's namespace, `/proc/PID` for a process's).
pub struct ListenWatch {
    query: Option<ListenQuery>,
    proc_dir: std::path::PathBuf,
}

impl ListenWatch {
    pub fn new(proc_dir: impl Into<std::path::PathBuf>) -> ListenWatch {
        ListenWatch {
            query: ListenQuery::open().ok(),
            proc_dir: proc_dir.into(),
        }
    }

    /// Whether `port` listens; `None` when neither way can tell (no sock_diag and no tables).
    pub fn listening(&mut self, port: u16) -> Option<bool> {
        self.listeners(port).map(|inodes| !inodes.is_empty())
    }

    /// The inodes of the sockets in LISTEN on `port`; `None` when neither way can tell.
    pub fn listeners(&mut self, port: u16) -> Option<Vec<u64>> {
        if let Some(query) = &self.query {
            match query.listeners(port) {
                Ok(inodes) => return Some(inodes),
                // Not supported here: from now on, the tables.
                Err(_) => self.query = None,
            }
        }
        let mut readable = false;
        let mut inodes = Vec::new();
        for table in cvm_proto::listen::TCP_TABLES {
            let path = self.proc_dir.join(table.trim_start_matches("/proc/"));
            if let Ok(text) = std::fs::read_to_string(path) {
                readable = true;
                inodes.extend(cvm_proto::listen::listening_inodes(&text, port));
            }
        }
        readable.then_some(inodes)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The datagram held replies and no end: more follow.
    More,
    /// The dump ended (`NLMSG_DONE`).
    Done,
    Error(i32),
}

/// Reads one datagram of replies, adding the inode of each socket on `port` to `inodes`.
fn scan(data: &[u8], port: u16, inodes: &mut Vec<u64>) -> Scan {
    let end = netlink::walk_dump(data, |kind, body| {
        if kind != SOCK_DIAG_BY_FAMILY {
            return;
        }
        let sport = body.get(SPORT_OFFSET..SPORT_OFFSET + 2);
        let inode = body.get(INODE_OFFSET..INODE_OFFSET + 4);
        if let (Some(p), Some(i)) = (sport, inode) {
            if u16::from_be_bytes([p[0], p[1]]) == port {
                inodes.push(u64::from(u32::from_ne_bytes([i[0], i[1], i[2], i[3]])));
            }
        }
    });
    match end {
        DumpEnd::More => Scan::More,
        DumpEnd::Done => Scan::Done,
        DumpEnd::Error(errno) => Scan::Error(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{NLMSG_DONE, NLMSG_ERROR};

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    fn listener(port: u16, inode: u32) -> Vec<u8> {
        let mut body = vec![libc::AF_INET as u8, 10, 0, 0];
        body.extend_from_slice(&port.to_be_bytes());
        body.resize(INODE_OFFSET, 0);
        body.extend_from_slice(&inode.to_ne_bytes());
        message(SOCK_DIAG_BY_FAMILY, &body)
    }

    #[test]
    fn the_request_asks_for_listening_tcp_sockets() {
        let r = request(libc::AF_INET6);
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]), 72);
        assert_eq!((r[16], r[17]), (libc::AF_INET6 as u8, 6));
        assert_eq!(u32::from_ne_bytes([r[20], r[21], r[22], r[23]]), 1 << 10);
    }

    #[test]
    fn replies_are_scanned_for_the_port_up_to_done() {
        let mut data = listener(80, 7);
        data.extend(listener(8080, 9));
        let mut found = Vec::new();
        assert_eq!(scan(&data, 8080, &mut found), Scan::More);
        assert_eq!(found, vec![9]);
        found.clear();
        assert_eq!(scan(&data, 9090, &mut found), Scan::More);
        assert!(found.is_empty());
        data.extend(message(NLMSG_DONE, &[0; 4]));
        assert_eq!(scan(&data, 80, &mut found), Scan::Done);
        assert_eq!(found, vec![7]);
        assert_eq!(
            scan(
                &message(NLMSG_ERROR, &(-2i32).to_ne_bytes()),
                80,
                &mut found
            ),
            Scan::Error(2)
        );
    }

    #[test]
    fn a_real_listener_is_seen_and_a_closed_one_is_not() {
        let Ok(query) = ListenQuery::open() else {
            return; // no sock_diag here: the callers fall back to /proc
        };
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let inodes = match query.listeners(port) {
            Ok(inodes) => inodes,
            Err(_) => return, // inet_diag missing: the callers fall back
        };
        // The one listener, by the inode its descriptor links to.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(
            link.to_string_lossy(),
            format!("socket:[{}]", inodes.first().copied().unwrap_or_default())
        );
        assert_eq!(inodes.len(), 1);
        drop(l);
        assert!(!query.listening(port).unwrap());
    }
}
