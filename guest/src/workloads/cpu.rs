//! `cpu`: a fixed amount of integer work, timed by the workload itself.
//!
//! The loop is an xorshift generator folded into an FNV-1a style hash: every iteration depends on
//! the one before, so the compiler can neither vectorise nor shorten it, and the printed checksum
//! keeps it from being optimised away. It measures one core's integer throughput, which is what
//! virtualisation overhead (or the lack of it) shows up in for compute-bound work.

use std::ffi::OsString;
use std::hint::black_box;
use std::time::Instant;

use cvm_proto::applet::Applet as AppletName;

use cvm_proto::metric::Metric;

use crate::markers::Markers;
use crate::{AppletResult, Failure};

/// `cvm-guest cpu --help`.
pub const USAGE: &str = "usage: cvm-guest cpu [--iterations N]\n\n\
     Runs N iterations (default 20_000_000) of an integer mixing loop and reports\n\
     CVM:result cpu_score <iterations/s> 1/s and CVM:result cpu_time <seconds> s.\n";

const DEFAULT_ITERATIONS: u64 = 20_000_000;

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    let parsed = AppletName::Cpu.parse(argv)?;
    let iterations: u64 = parsed.number("iterations", DEFAULT_ITERATIONS)?;
    if iterations == 0 {
        return Err(Failure::Usage("--iterations must be at least 1".into()));
    }
    markers.ready();
    let start = Instant::now();
    let checksum = black_box(work(black_box(iterations)));
    // A floor keeps a tiny run from dividing by zero on a coarse clock.
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let score = iterations as f64 / seconds;
    markers.result(Metric::CpuScore, score);
    markers.result(Metric::CpuTime, seconds);
    println!("cpu: {iterations} iterations in {seconds:.6} s ({score:.0} iterations/s), checksum {checksum:016x}");
    Ok(0)
}

/// The work itself: deterministic for a given count.
pub fn work(iterations: u64) -> u64 {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for _ in 0..iterations {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        hash = (hash ^ (state & 0xFF)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_deterministic_and_depends_on_the_count() {
        assert_eq!(work(1000), work(1000));
        assert_ne!(work(1000), work(1001));
        assert_ne!(work(0), work(1));
    }
}
