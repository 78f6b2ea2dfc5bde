//! An open loop's CPUs kept from halting. Between an open loop's sparse requests the server's
//! and the client's CPUs go idle, and on a virtual machine whose idle CPUs halt (the reference
//! host: `cpuidle-haltpoll` with `haltpoll.guest_halt_poll_ns=0`) waking one costs a round trip
//! through the hypervisor on every request, which a closed loop, never idle, does not pay
//! (native's p50 at 100 requests/s read 159-217 µs against 37-53 µs closed-loop; with the
//! request below, 46-93 µs). So during an open-loop phase cvm holds a PM QoS request of 0 µs on
//! `/dev/cpu_dma_latency`, the one cyclictest and tuned's latency profiles make: the idle
//! governor then picks only states with no exit latency (polling), on every CPU, until the
//! request is dropped (the kernel drops it when cvm closes the file, also if cvm is killed).
//! The open loop then measures the server, not the host's wake from halt; the condition is
//! recorded with every sample (`cpu_idle`).

use std::fs::File;
use std::io::Write;

/// The configuration key (in `run.json`'s backends and every sample's `config`).
pub const CONFIG_KEY: &str = "cpu_idle";

const QOS_FILE: &str = "/dev/cpu_dma_latency";

/// A held request: dropped (and the host's own idle states back) when this is dropped.
pub struct PollIdle {
    _request: Option<File>,
}

/// A PM QoS request of this process's own (the default limit until a value is written), kept
/// until the file is closed.
fn open_request() -> std::io::Result<File> {
    File::options().write(true).open(QOS_FILE)
}

/// Asks for idle states with no exit latency until the returned value is dropped; without the
/// file or the permission to write it (it needs root) the host's idle states stay, as
/// [`describe`] records.
pub fn hold() -> PollIdle {
    let request = open_request()
        .and_then(|mut f| f.write_all(&0i32.to_ne_bytes()).map(|()| f))
        .ok();
    PollIdle { _request: request }
}

/// What an open-loop phase's CPUs do when idle on this host, in words, for the record.
pub fn describe() -> String {
    match open_request() {
        Ok(_) => "polling during open-loop phases: cvm holds a PM QoS request of 0 µs \
                  (/dev/cpu_dma_latency), so idle CPUs poll instead of halting and a sparse \
                  load does not measure the host's wake from halt"
            .into(),
        Err(e) => format!(
            "the host's own during open-loop phases ({QOS_FILE}: {e}), so a sparse load's \
             latency includes the host's wake from idle"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's current PM QoS latency limit, in µs.
    fn current() -> i32 {
        let bytes = std::fs::read(QOS_FILE).unwrap();
        i32::from_ne_bytes(bytes[..4].try_into().unwrap())
    }

    #[test]
    fn the_request_holds_while_kept_and_goes_with_it() {
        let writable = open_request().is_ok();
        if !crate::host_has(writable, "writing /dev/cpu_dma_latency needs root") {
            return;
        }
        let before = current();
        let held = hold();
        assert_eq!(current(), 0, "the request of 0 µs is not in force");
        assert!(describe().starts_with("polling"));
        drop(held);
        // Another process's request (none on a quiet host) would keep its own limit.
        assert_eq!(current(), before, "the request outlived its holder");
    }
}
