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
use std::sync::Mutex;

use cvm_runtime::net::{host_ipv4_addresses, NetError, Subnet};
use cvm_runtime::netlink::{self, Netlink};

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
    #[error("cannot {step} {name}")]
    Netlink {
        step: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
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
            let fail = |step| {
                move |source| BridgeError::Netlink {
                    step,
                    name: name.to_string(),
                    source,
                }
            };
            let mut nl = Netlink::open().map_err(fail("open a netlink socket for"))?;
            nl.add_bridge(name).map_err(fail("create the bridge"))?;
            bridge.removed = false;
            let index = netlink::index_of(name).map_err(fail("find the bridge"))?;
            nl.add_address(index, network.gateway(), network.prefix())
                .map_err(fail("address the bridge"))?;
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
            nl.set_up(index).map_err(fail("bring up the bridge"))?;
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
            Netlink::open()
                .and_then(|mut nl| nl.delete(&self.name))
                .map_err(|source| BridgeError::Netlink {
                    step: "delete the bridge",
                    name: self.name.clone(),
                    source,
                })?;
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
