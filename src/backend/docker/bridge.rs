//! The bridge a private dockerd attaches its containers to (`dockerd --bridge=NAME`): created by
//! cvm, addressed from its container subnet's bridge pool (the last sixteenth of
//! `CVM_CONTAINER_SUBNET`, which the veth allocator never hands out), so the host reaches every
//! container directly through it, with no NAT, no forwarding and no firewall rule.
//!
//! Named `cvm-<token>` (the run's token; veth ends are `cvm<token><n>`, without the dash, so the
//! two never collide). A network is taken when no host interface has an address in it; since
//! another cvm may pick the same one at the same moment, the choice is checked again once the
//! address is on the bridge and, on a collision, given up for the next network.

use std::io;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use cvm_runtime::net::{host_ipv4_addresses, NetError, Subnet};

/// Serialises this process's choices, so its own daemons never pick the same network.
static CHOOSING: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot read the container subnet")]
    Subnet(#[source] NetError),
    #[error(
        "the container subnet {subnet} is too small to keep a network for Docker's bridge \
         (set CVM_CONTAINER_SUBNET to a /25 or larger)"
    )]
    NoPool { subnet: String },
    #[error("every network of the Docker bridge pool of {subnet} is in use on this host")]
    Exhausted { subnet: String },
    #[error("cannot run `ip` (install iproute2)")]
    RunIp(#[source] io::Error),
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
}

/// A bridge cvm created; [`Bridge::remove`] (also on drop) deletes it.
#[derive(Debug)]
pub struct Bridge {
    pub name: String,
    pub network: Subnet,
    removed: bool,
}

impl Bridge {
    /// Creates `name` on a free network of the subnet's bridge pool, up.
    pub fn create(name: &str) -> Result<Bridge, BridgeError> {
        let subnet = Subnet::from_env().map_err(BridgeError::Subnet)?;
        let networks = subnet.bridge_networks();
        if networks.is_empty() {
            return Err(BridgeError::NoPool {
                subnet: subnet.to_string(),
            });
        }
        let _choosing = CHOOSING.lock().unwrap_or_else(|p| p.into_inner());
        for network in networks {
            if host_ipv4_addresses().iter().any(|a| network.contains(*a)) {
                continue;
            }
            let mut bridge = Bridge {
                name: name.to_string(),
                network,
                removed: true,
            };
            ip(&["link", "add", name, "type", "bridge"])?;
            bridge.removed = false;
            let address = format!("{}/{}", network.gateway(), network.prefix());
            ip(&["addr", "add", &address, "dev", name])?;
            // Another process may have taken the same network in the meantime: then neither
            // keeps it (both see the other's address), and each tries the next one.
            let others = host_ipv4_addresses()
                .into_iter()
                .filter(|a| network.contains(*a))
                .count();
            if others > 1 {
                bridge.remove()?;
                continue;
            }
            ip(&["link", "set", name, "up"])?;
            return Ok(bridge);
        }
        Err(BridgeError::Exhausted {
            subnet: subnet.to_string(),
        })
    }

    /// The bridge's own address (the containers' gateway).
    pub fn address(&self) -> Ipv4Addr {
        self.network.gateway()
    }

    /// Deletes the bridge. Idempotent.
    pub fn remove(&mut self) -> Result<(), BridgeError> {
        if self.removed {
            return Ok(());
        }
        if std::path::Path::new("/sys/class/net")
            .join(&self.name)
            .exists()
        {
            ip(&["link", "delete", &self.name, "type", "bridge"])?;
        }
        self.removed = true;
        Ok(())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

fn ip(args: &[&str]) -> Result<(), BridgeError> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(BridgeError::RunIp)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BridgeError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
