//! `io`: sequential write bandwidth and fsync latency of the instance's filesystem.
//!
//! The two figures that differ most between a container (the host's filesystem through overlay
//! or a bind mount) and a VM (a virtual block device with its own guest page cache and flush
//! path): bulk throughput up to stable storage, and the latency of a small durable write, the
//! pattern of a database log. The small writes append to the same file, as a log does.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cvm_proto::applet::IoArgs;

use cvm_proto::metric::Metric;

use crate::markers::Markers;
use crate::{AppletResult, Failure};

/// `cvm-guest io --help`.
pub const USAGE: &str = "usage: cvm-guest io [--dir D] [--mib N] [--fsyncs K] [--block BYTES]\n\n\
     Writes N MiB (default 64) to a new file in D (default /tmp) and fsyncs it, reporting\n\
     io_write_bandwidth; then K times (default 200) appends BYTES (default 4096) and fsyncs,\n\
     reporting io_fsync_latency_p50 and io_fsync_latency_p99; then deletes the file.\n";

const MIB: usize = 1 << 20;

struct Figures {
    write_bandwidth: f64,
    fsync_latencies: Vec<f64>,
}

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    // The same parse the host does to find the directory it gives the instance a disk at.
    let IoArgs {
        dir,
        mib,
        fsyncs,
        block,
    } = IoArgs::parse(argv)?;
    let dir = PathBuf::from(dir);
    let mib = usize::try_from(mib).map_err(|_| Failure::Usage("--mib is too large".into()))?;
    markers.ready();

    let path = dir.join(scratch_name());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Failure::Runtime(format!("creating {}: {e}", path.display())))?;
    let figures = measure(file, &path, mib, fsyncs, block);
    // Removed whether or not the measurement worked: a failed run must not fill the disk.
    let removed = std::fs::remove_file(&path);
    let figures = figures.map_err(Failure::Runtime)?;
    removed.map_err(|e| Failure::Runtime(format!("removing {}: {e}", path.display())))?;

    markers.result(Metric::IoWriteBandwidth, figures.write_bandwidth);
    let mut line = format!("io: write {:.1} MB/s", figures.write_bandwidth / 1e6);
    let mut latencies = figures.fsync_latencies;
    latencies.sort_by(f64::total_cmp);
    if let (Some(p50), Some(p99)) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99)) {
        markers.result(Metric::IoFsyncLatencyP50, p50);
        markers.result(Metric::IoFsyncLatencyP99, p99);
        line.push_str(&format!(
            ", fsync of {block} B: p50 {:.3} ms, p99 {:.3} ms ({} fsyncs)",
            p50 * 1e3,
            p99 * 1e3,
            latencies.len()
        ));
    }
    println!("{line} in {}", dir.display());
    Ok(0)
}

fn measure(
    mut file: File,
    path: &Path,
    mib: usize,
    fsyncs: usize,
    block: usize,
) -> Result<Figures, String> {
    let failed = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());

    // A non-zero pattern, so no filesystem can store it as a hole or compress it away cheaply.
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8 + 1).collect();
    let start = Instant::now();
    for _ in 0..mib {
        file.write_all(&chunk).map_err(|e| failed("writing", e))?;
    }
    file.sync_all().map_err(|e| failed("fsyncing", e))?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let write_bandwidth = (mib * MIB) as f64 / seconds;

    let small = vec![0x5Au8; block];
    let mut fsync_latencies = Vec::with_capacity(fsyncs);
    for _ in 0..fsyncs {
        let start = Instant::now();
        file.write_all(&small).map_err(|e| failed("writing", e))?;
        file.sync_all().map_err(|e| failed("fsyncing", e))?;
        fsync_latencies.push(start.elapsed().as_secs_f64());
    }
    Ok(Figures {
        write_bandwidth,
        fsync_latencies,
    })
}

/// A name no concurrent run (another instance sharing the directory) will pick.
fn scratch_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(".cvm-io-{}-{nanos}", std::process::id())
}

/// Nearest-rank percentile of sorted samples; `None` when there are none.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.50), Some(50.0));
        assert_eq!(percentile(&samples, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0], 0.50), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
