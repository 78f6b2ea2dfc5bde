//! `/etc/cvm/vm.conf`: what the VM backend tells the guest's init, written by the host into the
//! initramfs and read by `cvm-guest` as PID 1. Its presence is also how init knows it runs in a
//! VM: a container's rootfs never has it.
//!
//! One directive per line; blank lines and `#` comments are ignored:
//!
//! ```text
//! module /lib/modules/virtio_ring.ko    kernel modules, in load (dependency) order
//! net eth0 10.0.2.15/24                 bring up lo and this interface with this address
//! disk /dev/vda /tmp                    mount this ext4 device here
//! watch 8080                            report a socket in LISTEN on this port (CVM:listening)
//! arg /bin/cvm-guest                    the workload's argv, one word per line, in order
//! arg hello
//! ```
//!
//! `arg` takes the rest of its line verbatim (an argument may hold spaces), so the only thing the
//! format cannot carry is a newline inside a value; [`VmConfig::to_text`] refuses one.

use std::fmt;

/// Where init finds its configuration inside the initramfs.
pub const PATH: &str = "/etc/cvm/vm.conf";

/// A network interface and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The interface (`eth0`).
    pub device: String,
    /// Address and prefix length (`10.0.2.15/24`).
    pub cidr: String,
}

/// An ext4 block device and where to mount it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// The device (`/dev/vda`).
    pub device: String,
    /// The mount point (`/tmp`).
    pub mount: String,
}

/// What the VM backend asks init to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmConfig {
    /// Kernel module paths inside the guest, in load (dependency) order.
    pub modules: Vec<String>,
    pub net: Option<NetConfig>,
    pub disk: Option<DiskConfig>,
    /// A TCP port init watches for a socket in LISTEN (the inside half of a server's readiness).
    pub watch_port: Option<u16>,
    /// The instance's pids limit: init caps the guest kernel's threads at what it runs already
    /// plus this many, the VM's counterpart of a container's pids cgroup.
    pub pids: Option<u64>,
    /// The workload's argv; never empty in a parsed config.
    pub argv: Vec<String>,
}

/// Why a config cannot be written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmConfigError {
    /// A value holds a newline (or, for a word-valued directive, a space), which the line format
    /// cannot carry.
    Unrepresentable {
        directive: &'static str,
        value: String,
    },
    /// A line that is no directive, or a directive with the wrong number of words.
    BadLine { line: usize, text: String },
    /// No `arg` lines: nothing to run.
    NoWorkload,
}

impl fmt::Display for VmConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmConfigError::Unrepresentable { directive, value } => write!(
                f,
                "{PATH}: the {directive} value {value:?} cannot be written on one line"
            ),
            VmConfigError::BadLine { line, text } => {
                write!(f, "{PATH} line {line}: cannot parse {text:?}")
            }
            VmConfigError::NoWorkload => write!(f, "{PATH} names no workload (no `arg` lines)"),
        }
    }
}

impl std::error::Error for VmConfigError {}

const HEADER: &str = "# written by cvm's VM backend; read by cvm-guest init\n";

/// A value for a directive whose words are split on whitespace: one word, no line breaks.
fn word(directive: &'static str, value: &str) -> Result<String, VmConfigError> {
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(VmConfigError::Unrepresentable {
            directive,
            value: value.to_string(),
        });
    }
    Ok(value.to_string())
}

impl VmConfig {
    /// The file's text. Fails for values the line format cannot carry.
    pub fn to_text(&self) -> Result<String, VmConfigError> {
        let mut out = String::from(HEADER);
        for m in &self.modules {
            out.push_str(&format!("module {}\n", word("module", m)?));
        }
        if let Some(n) = &self.net {
            out.push_str(&format!(
                "net {} {}\n",
                word("net", &n.device)?,
                word("net", &n.cidr)?
            ));
        }
        if let Some(d) = &self.disk {
            out.push_str(&format!(
                "disk {} {}\n",
                word("disk", &d.device)?,
                word("disk", &d.mount)?
            ));
        }
        if let Some(port) = self.watch_port {
            out.push_str(&format!("watch {port}\n"));
        }
        if let Some(pids) = self.pids {
            out.push_str(&format!("pids {pids}\n"));
        }
        for a in &self.argv {
            if a.contains(['\n', '\r']) {
                return Err(VmConfigError::Unrepresentable {
                    directive: "arg",
                    value: a.clone(),
                });
            }
            out.push_str(&format!("arg {a}\n"));
        }
        Ok(out)
    }

    /// Reads the file's text; a line that is not a directive is refused with its number.
    pub fn parse(text: &str) -> Result<VmConfig, VmConfigError> {
        let mut c = VmConfig::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let words: Vec<&str> = value.split_whitespace().collect();
            match (key, words.as_slice()) {
                ("module", [path]) => c.modules.push((*path).to_string()),
                ("net", [device, cidr]) => {
                    c.net = Some(NetConfig {
                        device: (*device).into(),
                        cidr: (*cidr).into(),
                    })
                }
                ("disk", [device, mount]) => {
                    c.disk = Some(DiskConfig {
                        device: (*device).into(),
                        mount: (*mount).into(),
                    })
                }
                ("watch", [port]) if port.parse::<u16>().is_ok() => {
                    c.watch_port = port.parse().ok();
                }
                ("pids", [n]) if n.parse::<u64>().is_ok() => c.pids = n.parse().ok(),
                ("arg", _) => c.argv.push(value.to_string()),
                _ => {
                    return Err(VmConfigError::BadLine {
                        line: n + 1,
                        text: line.to_string(),
                    })
                }
            }
        }
        if c.argv.is_empty() {
            return Err(VmConfigError::NoWorkload);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> VmConfig {
        VmConfig {
            modules: vec![
                "/lib/modules/virtio_ring.ko".into(),
                "/lib/modules/virtio.ko".into(),
            ],
            net: Some(NetConfig {
                device: "eth0".into(),
                cidr: "10.0.2.15/24".into(),
            }),
            disk: Some(DiskConfig {
                device: "/dev/vda".into(),
                mount: "/tmp".into(),
            }),
            watch_port: Some(8080),
            pids: Some(128),
            argv: vec!["/bin/cvm-guest".into(), "http".into(), "a b".into()],
        }
    }

    #[test]
    fn writes_one_directive_per_line() {
        let text = full().to_text().unwrap();
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            [
                "module /lib/modules/virtio_ring.ko",
                "module /lib/modules/virtio.ko",
                "net eth0 10.0.2.15/24",
                "disk /dev/vda /tmp",
                "watch 8080",
                "pids 128",
                "arg /bin/cvm-guest",
                "arg http",
                "arg a b",
            ]
        );
    }

    #[test]
    fn round_trips() {
        for c in [
            full(),
            VmConfig {
                argv: vec!["/bin/cvm-guest".into(), "hello".into()],
                ..VmConfig::default()
            },
            VmConfig {
                argv: vec![" leading and trailing ".into(), String::new()],
                ..VmConfig::default()
            },
        ] {
            assert_eq!(VmConfig::parse(&c.to_text().unwrap()).unwrap(), c);
        }
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_ignored() {
        let c = VmConfig::parse("# x\n\r\n  \narg hello\r\n").unwrap();
        assert_eq!(c.argv, ["hello"]);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        assert_eq!(
            VmConfig::parse("arg x\n\nbogus line\n").unwrap_err(),
            VmConfigError::BadLine {
                line: 3,
                text: "bogus line".into()
            }
        );
        assert_eq!(
            VmConfig::parse("# c\nnet eth0\narg x\n").unwrap_err(),
            VmConfigError::BadLine {
                line: 2,
                text: "net eth0".into()
            }
        );
        assert!(VmConfig::parse("watch http\narg x\n").is_err());
        let e = VmConfig::parse("module a b\narg x\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn a_config_without_a_workload_is_refused() {
        assert_eq!(
            VmConfig::parse("module /x.ko\n").unwrap_err(),
            VmConfigError::NoWorkload
        );
    }

    #[test]
    fn unrepresentable_values_are_refused_when_writing() {
        let mut c = full();
        c.argv.push("a\nb".into());
        assert!(matches!(
            c.to_text(),
            Err(VmConfigError::Unrepresentable {
                directive: "arg",
                ..
            })
        ));
        let mut c = full();
        c.modules.push("/lib/modules/a b.ko".into());
        assert!(c.to_text().is_err());
    }
}
