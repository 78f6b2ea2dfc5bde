//! The launch's cgroup state, a controlled condition of every measured launch.
//!
//! Every `cgroup.procs` write on the host takes one lock (the cgroup migration lock). After an
//! idle spell the first write waits for an RCU grace period (~10 ms on the reference host);
//! within a few tens of milliseconds of another write it does not (see
//! [`cvm_runtime::cgroup::rejoin_own_cgroup`]). Left alone, what a launch's join costs would
//! depend on what ran just before it: in an interleaved run, whether the previous backend wrote
//! `cgroup.procs` (a container) or not (a VM). So before every launch, of every backend, cvm
//! puts the lock in one state:
//! - **warm** (the default): cvm itself writes a throwaway `cgroup.procs` just before the
//!   launch, so the launch's own join finds the lock as a back-to-back launch does;
//! - **cold**: an idle gap of [`COLD_GAP`] (the one the `startup-cold` scenario uses) before the
//!   launch, so the join waits out the grace period as a launch after a quiet spell does.
//!
//! A runtime that joins its cgroup tens of milliseconds into its start (runc, Docker, gVisor)
//! finds the lock in whatever state those milliseconds left it; its join is measured apart
//! (see `backend::cgroup_trace`), so that wait is never hidden in its runtime's figure.
//! Other processes on the host (another cvm, a container engine) also take the lock: cvm can
//! set the state, not keep the host quiet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The idle gap of a cold cgroup state: `startup-cold`'s `idle_gap_s`.
pub const COLD_GAP: Duration = Duration::from_secs(2);

/// The configuration key (in `run.json`'s backends and every sample's `config`).
pub const CONFIG_KEY: &str = "cgroup_state";

/// The state of the cgroup migration lock at every launch (`--cgroup-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CgroupState {
    /// A throwaway `cgroup.procs` write by cvm just before each launch.
    Warm,
    /// An idle gap before each launch.
    Cold,
}

impl CgroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupState::Warm => "warm",
            CgroupState::Cold => "cold",
        }
    }

    /// Brings the lock to this state; the last thing before a launch. `idle_since` is when cvm
    /// last did anything that may have taken the lock (a teardown, a cold start's gap). Returns
    /// false when a warm write failed (not root, no cgroups): the launch is then as it comes.
    pub fn settle(self, idle_since: Instant, interrupted: &AtomicBool) -> bool {
        match self {
            CgroupState::Warm => cvm_runtime::cgroup::rejoin_own_cgroup().is_ok(),
            CgroupState::Cold => {
                let until = idle_since + COLD_GAP;
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    if interrupted.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cold_state_waits_out_the_gap_from_the_last_activity_only() {
        let never = AtomicBool::new(false);
        let long_ago = Instant::now() - COLD_GAP - Duration::from_millis(10);
        let t0 = Instant::now();
        assert!(CgroupState::Cold.settle(long_ago, &never));
        assert!(
            t0.elapsed() < COLD_GAP / 2,
            "waited although the host was idle long enough"
        );
        let recently = Instant::now() - COLD_GAP + Duration::from_millis(120);
        let t0 = Instant::now();
        CgroupState::Cold.settle(recently, &never);
        assert!(
            t0.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );
        // An interrupt ends the gap at once.
        let t0 = Instant::now();
        CgroupState::Cold.settle(Instant::now(), &AtomicBool::new(true));
        assert!(t0.elapsed() < COLD_GAP / 2);
    }
}
