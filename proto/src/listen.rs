//! Seeing a server's listening socket from inside its instance.
//!
//! Readiness of a server is observed from both sides: the host's probe connects from outside,
//! and init looks inside the instance's network namespace for a socket in LISTEN on the port.
//! The inside look reads the kernel's socket tables, `/proc/net/tcp` and `/proc/net/tcp6`, whose
//! lines are
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue ...
//!    0: 00000000:1F90 00000000:0000 0A 00000000:00000000 ...
//! ```
//!
//! with the local port in hexadecimal after the colon and the state `0A` for LISTEN. A
//! forwarding proxy (QEMU's user network) accepts host connections before the guest listens,
//! which is why the host's probe alone proves nothing for a VM.

/// The kernel's socket tables that list IPv4 and IPv6 TCP sockets of the reader's namespace.
pub const TCP_TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// The `st` column of a socket in LISTEN (`TCP_LISTEN` in the kernel).
const LISTEN_STATE: &str = "0A";

/// Whether `table` (the text of one of [`TCP_TABLES`]) lists a socket in LISTEN on `port`.
pub fn listening(table: &str, port: u16) -> bool {
    !listening_inodes(table, port).is_empty()
}

/// The inodes (the `inode` column) of the sockets `table` lists in LISTEN on `port`.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if *state != LISTEN_STATE || local_port != Some(port) {
                return None;
            }
            // A table without the column (an older or trimmed one) still says "listening".
            Some(fields.get(9).and_then(|i| i.parse().ok()).unwrap_or(0))
        })
        .collect()
}

/// The init option that asks init to watch for a socket in LISTEN on a port
/// (`init --watch-port 8080 -- http`), and how init reads it back.
pub const WATCH_PORT_OPTION: &str = "--watch-port";

/// `[--watch-port, PORT]`: init options for [`crate::applet::init_command`].
pub fn watch_port_options(port: Option<u16>) -> Vec<String> {
    port.map(|p| vec![WATCH_PORT_OPTION.to_string(), p.to_string()])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0 100 0 0 10 0\n\
   1: 0100007F:0050 0100007F:A0B2 01 00000000:00000000 00:00000000 00000000     0        0 1235 1 0 100 0 0 10 0\n";

    #[test]
    fn finds_only_listening_sockets_on_the_port() {
        assert!(listening(TABLE, 8080));
        // Port 80 is there, but as an established connection, not a listener.
        assert!(!listening(TABLE, 80));
        assert!(!listening(TABLE, 8081));
        assert!(!listening("", 8080));
        assert!(!listening("header only\n", 8080));
    }

    #[test]
    fn a_listeners_inode_is_read_from_its_line() {
        assert_eq!(listening_inodes(TABLE, 8080), vec![1234]);
        assert!(listening_inodes(TABLE, 80).is_empty());
    }

    #[test]
    fn reads_ipv6_lines() {
        let v6 = "  sl  local_address                         remote_address                        st\n\
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000\n";
        assert!(listening(v6, 8080));
    }

    #[test]
    fn options_name_the_port_once() {
        assert_eq!(watch_port_options(Some(80)), ["--watch-port", "80"]);
        assert!(watch_port_options(None).is_empty());
    }
}
