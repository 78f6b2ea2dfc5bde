//! `mem`: resident memory, or memory bandwidth.
//!
//! Without `--bandwidth` it holds N MiB that it has written to, so every page is really
//! resident: the host's memory figures (PSS, cgroup usage, host MemAvailable) then contain a
//! known amount of workload memory, and what is left over is the isolation layer's overhead.
//! With `--bandwidth` it runs STREAM's copy and triad kernels, which show the cost of nested
//! paging and of a VM's memory placement.

use std::ffi::OsString;
use std::hint::black_box;
use std::time::Instant;

use cvm_proto::applet::Applet as AppletName;

use cvm_proto::metric::Metric;

use crate::markers::Markers;
use crate::{signals, AppletResult, Failure};

/// `cvm-guest mem --help`.
pub const USAGE: &str = "usage: cvm-guest mem [--mib N] [--bandwidth]\n\n\
     Allocates N MiB (default 64), writes every page, writes CVM:ready and sleeps until SIGTERM.\n\
     With --bandwidth: runs STREAM-like copy and triad over arrays totalling about N MiB and\n\
     reports CVM:result mem_bandwidth_copy|mem_bandwidth_triad <B/s> B/s, then exits.\n";

const MIB: usize = 1 << 20;
/// Best of this many runs of each kernel, as STREAM does: the first pays for page faults.
const REPETITIONS: usize = 5;
/// The byte every held page is filled with: non-zero, so no zero-page or KSM sharing.
const FILL: u8 = 0xA5;

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    let parsed = AppletName::Mem.parse(argv)?;
    let mib: usize = parsed.number("mib", 64)?;
    let bytes = mib
        .checked_mul(MIB)
        .ok_or_else(|| Failure::Usage(format!("--mib {mib} is too large")))?;
    if parsed.switch("bandwidth") {
        return bandwidth(markers, bytes);
    }
    // Blocked before the (possibly long) allocation, so an early SIGTERM waits for us.
    let stop = signals::block_termination().map_err(Failure::Runtime)?;
    let mut held: Vec<u8> = Vec::new();
    held.try_reserve_exact(bytes)
        .map_err(|e| Failure::Runtime(format!("allocating {mib} MiB: {e}")))?;
    held.resize(bytes, FILL);
    black_box(&held);
    markers.ready();
    signals::wait(&stop).map_err(Failure::Runtime)?;
    black_box(&held);
    Ok(0)
}

fn bandwidth(markers: &Markers, bytes: usize) -> AppletResult {
    let len = bytes / (3 * std::mem::size_of::<f64>());
    if len == 0 {
        return Err(Failure::Usage(
            "--mib must be at least 1 with --bandwidth".into(),
        ));
    }
    let mut a = filled(len, 1.0)?;
    let b = filled(len, 2.0)?;
    let mut c = filled(len, 0.5)?;
    let scalar = black_box(3.0);
    markers.ready();

    let mut best_copy = f64::INFINITY;
    let mut best_triad = f64::INFINITY;
    for _ in 0..REPETITIONS {
        let start = Instant::now();
        c.copy_from_slice(black_box(&a));
        black_box(&mut c);
        best_copy = best_copy.min(start.elapsed().as_secs_f64());

        let start = Instant::now();
        triad(black_box(&mut a), &b, &c, scalar);
        black_box(&mut a);
        best_triad = best_triad.min(start.elapsed().as_secs_f64());
    }
    let array_bytes = (len * std::mem::size_of::<f64>()) as f64;
    // STREAM's accounting: copy reads one array and writes one, triad reads two and writes one.
    let copy = 2.0 * array_bytes / best_copy.max(1e-9);
    let triad = 3.0 * array_bytes / best_triad.max(1e-9);
    markers.result(Metric::MemBandwidthCopy, copy);
    markers.result(Metric::MemBandwidthTriad, triad);
    println!(
        "mem: copy {:.1} MB/s, triad {:.1} MB/s ({} x {:.1} MiB arrays, best of {REPETITIONS})",
        copy / 1e6,
        triad / 1e6,
        3,
        array_bytes / MIB as f64
    );
    Ok(0)
}

/// STREAM's triad: `a = b + scalar * c`.
fn triad(a: &mut [f64], b: &[f64], c: &[f64], scalar: f64) {
    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
        *a = b + scalar * c;
    }
}

fn filled(len: usize, value: f64) -> Result<Vec<f64>, Failure> {
    let mut array = Vec::new();
    array
        .try_reserve_exact(len)
        .map_err(|e| Failure::Runtime(format!("allocating the bandwidth arrays: {e}")))?;
    array.resize(len, value);
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triad_computes_stream_triad() {
        let mut a = vec![0.0; 4];
        triad(&mut a, &[1.0, 2.0, 3.0, 4.0], &[1.0, 1.0, 2.0, 2.0], 3.0);
        assert_eq!(a, [4.0, 5.0, 9.0, 10.0]);
    }
}
