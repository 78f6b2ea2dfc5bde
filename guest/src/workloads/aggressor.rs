//! `aggressor`: the noisy neighbour of the isolation scenario. For `--seconds` it does one kind
//! of work as fast as the instance lets it, then reports how much it got done (per second) and
//! exits, so a backend that isolates the victim by starving the aggressor shows it:
//!
//! - `cpu`: the `cpu` applet's integer loop on one thread per CPU it may run on;
//! - `memory`: streaming writes over `--mib` MiB (the host picks twice the last-level cache);
//! - `io`: 4 KiB appended and fsync'd, again and again, in `--dir` (the instance's io storage,
//!   by the io scenario's rule); the file is cut back at 16 MiB and removed at the end;
//! - `fork`: children that exit at once, forked as fast as possible and reaped in batches, so
//!   the storm runs into the instance's pids limit (and never beyond its own cap).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cvm_proto::isolation::{Aggressor, AggressorArgs};

use crate::markers::Markers;
use crate::workloads::cpu;
use crate::{AppletResult, Failure};

/// `cvm-guest aggressor --help`.
pub const USAGE: &str = "usage: cvm-guest aggressor --kind cpu|memory|io|fork [--seconds S] \
     [--dir D] [--mib N]\n\n\
     Runs one kind of noisy work for S seconds (default 5): cpu spins on every CPU it may use,\n\
     memory streams writes over N MiB (default 64), io appends and fsyncs 4 KiB blocks in D\n\
     (default /tmp), fork forks children that exit at once. Then reports its work per second as\n\
     CVM:result noisy_<kind>_work and exits.\n";

/// Integer-loop iterations between two looks at the clock.
const CPU_CHUNK: u64 = 200_000;
/// The io aggressor's block, as the io applet's default.
const IO_BLOCK: usize = 4096;
/// The io aggressor's file is cut back to empty at this size.
const IO_FILE_CAP: u64 = 16 << 20;
/// The fork aggressor never has more unreaped children than this, limit or not.
const FORK_OUTSTANDING_CAP: usize = 4096;

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    let args = AggressorArgs::parse(argv)?;
    let seconds = Duration::from_secs_f64(args.seconds);
    let work = match args.kind {
        Aggressor::Cpu => spin(markers, seconds),
        Aggressor::Memory => stream(markers, seconds, args.mib)?,
        Aggressor::Io => fsyncs(markers, seconds, &PathBuf::from(&args.dir))?,
        Aggressor::Fork => forks(markers, seconds)?,
    };
    markers.result(args.kind.work(), work);
    println!(
        "aggressor {}: {work:.1} {}",
        args.kind,
        args.kind.work().unit()
    );
    Ok(0)
}

/// The CPUs this process may run on (its affinity: a container's cpuset, a VM's vCPUs).
fn allowed_cpus() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// Iterations per second over all threads.
fn spin(markers: &Markers, seconds: Duration) -> f64 {
    let threads = allowed_cpus();
    markers.ready();
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut done = 0u64;
                    while start.elapsed() < seconds {
                        black_box(cpu::work(black_box(CPU_CHUNK)));
                        done += CPU_CHUNK;
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64().max(1e-9)
}

/// Bytes written per second, a pass over the whole working set at a time.
fn stream(markers: &Markers, seconds: Duration, mib: u64) -> Result<f64, Failure> {
    let bytes =
        usize::try_from(mib << 20).map_err(|_| Failure::Usage("--mib is too large".into()))?;
    let mut set: Vec<u8> = Vec::new();
    set.try_reserve_exact(bytes)
        .map_err(|e| Failure::Runtime(format!("allocating {mib} MiB: {e}")))?;
    set.resize(bytes, 1);
    markers.ready();
    let start = Instant::now();
    let mut written = 0u64;
    let mut pass = 0u8;
    while start.elapsed() < seconds {
        pass = pass.wrapping_add(1) | 1;
        set.fill(pass);
        black_box(&mut set);
        written += bytes as u64;
    }
    Ok(written as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// fsync'd appends per second.
fn fsyncs(markers: &Markers, seconds: Duration, dir: &std::path::Path) -> Result<f64, Failure> {
    let path = dir.join(format!(".cvm-aggressor-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Failure::Runtime(format!("creating {}: {e}", path.display())))?;
    let block = vec![0x5Au8; IO_BLOCK];
    markers.ready();
    let start = Instant::now();
    let mut done = 0u64;
    let mut result = Ok(());
    while start.elapsed() < seconds && result.is_ok() {
        result = file.write_all(&block).and_then(|()| file.sync_data());
        done += 1;
        if done * IO_BLOCK as u64 % IO_FILE_CAP == 0 {
            result = result.and_then(|()| file.set_len(0));
        }
    }
    let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
    // Removed whether or not the writes worked: the storage is shared with the host.
    let removed = std::fs::remove_file(&path);
    result.map_err(|e| Failure::Runtime(format!("writing {}: {e}", path.display())))?;
    removed.map_err(|e| Failure::Runtime(format!("removing {}: {e}", path.display())))?;
    Ok(rate)
}

/// Forks per second. Children are reaped oldest first (they exit at once); a failed fork (the
/// pids limit) waits for the oldest before the next try.
fn forks(markers: &Markers, seconds: Duration) -> Result<f64, Failure> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut children = std::collections::VecDeque::new();
    markers.ready();
    let start = Instant::now();
    let mut forked = 0u64;
    while start.elapsed() < seconds {
        let full = children.len() >= FORK_OUTSTANDING_CAP;
        let attempt = if full {
            Err(nix::errno::Errno::EAGAIN)
        } else {
            crate::sys::fork_exiting_child()
        };
        match attempt {
            Ok(pid) => {
                forked += 1;
                children.push_back(pid);
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::ENOMEM) if !children.is_empty() => {
                if let Some(oldest) = children.pop_front() {
                    let _ = waitpid(oldest, None);
                }
            }
            Err(e) => return Err(Failure::Runtime(format!("fork: {e}"))),
        }
        while let Some(&oldest) = children.front() {
            match waitpid(oldest, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                _ => {
                    children.pop_front();
                }
            }
        }
    }
    let rate = forked as f64 / start.elapsed().as_secs_f64().max(1e-9);
    for pid in children {
        let _ = waitpid(pid, None);
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_does_measurable_work_in_a_short_run() {
        let markers = Markers::disabled();
        let short = Duration::from_millis(150);
        assert!(spin(&markers, short) > 0.0);
        assert!(stream(&markers, short, 1).unwrap() > 0.0);
        let dir = std::env::temp_dir();
        assert!(fsyncs(&markers, short, &dir).unwrap() > 0.0);
        assert!(forks(&markers, short).unwrap() > 0.0);
        // The io aggressor leaves nothing behind.
        let leftover = std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy() == format!(".cvm-aggressor-{}", std::process::id())
        });
        assert!(!leftover);
    }
}
