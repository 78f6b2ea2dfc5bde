//! vm — QEMU and the VM backend's preparation:
//! - `qemu_none_to_qmp_ready`: spawn `qemu-system-x86_64 -M none -accel tcg` to the QMP greeting
//!   and `qmp_capabilities` answered, through the VM backend's `Qmp::connect` (which polls for the
//!   socket every 5 ms); quit and reap outside the timing;
//! - `initramfs_build`: the standard image's initramfs (newc cpio; compression as the VM backend
//!   uses it) into an empty cache; `initramfs_build_cached`: the same when the cache has it (the
//!   archive is still assembled and hashed, only the write is saved);
//! - `vmlinux_extract_uncached`: `Kernel::load` (read and hash the host's bzImage) and
//!   `Kernel::vmlinux` into an empty cache (decompress the payload, write the vmlinux);
//!   `vmlinux_extract_cached`: the same calls when the cache has it (what every prepare pays).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use cvm::backend::vm::kernel::{self, Kernel};
use cvm::backend::vm::qmp::Qmp;
use cvm::image::initramfs::{self, Compression, InitramfsSpec};
use cvm::image::Image;

use crate::{error_chain, timed, Env};

const GROUP: &str = "vm";

/// A QEMU process of ours; quit (or killed) and reaped on drop.
struct Qemu {
    child: std::process::Child,
    qmp: Option<Qmp>,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Some(qmp) = self.qmp.as_mut() {
            let _ = qmp.quit();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// QMP handshakes that failed and were retried (reported at the end of the run).
pub static QMP_RETRIES: AtomicU32 = AtomicU32::new(0);
const QMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Spawns `qemu -M none` with a QMP socket and returns once QMP answers
/// `qmp_capabilities` (what `Qmp::connect` does after the greeting). A start whose handshake
/// fails is reported, killed and retried (twice at most), and its time is not counted: one
/// start in a few hundred has been seen to hang before its greeting on the loaded reference
/// host.
fn qemu_to_qmp_ready(binary: &Path, dir: &Path) -> (Duration, Qemu) {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut failures = Vec::new();
    loop {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let socket = dir.join(format!("qmp-{n}.sock"));
        let stderr_path = dir.join(format!("qemu-{n}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("qemu stderr file");
        let mut qmp_arg = std::ffi::OsString::from("unix:");
        qmp_arg.push(&socket);
        qmp_arg.push(",server=on,wait=off");
        let start = Instant::now();
        let child = Command::new(binary)
            .args([
                "-M",
                "none",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
            ])
            .args(["-accel", "tcg", "-qmp"])
            .arg(qmp_arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn qemu");
        let mut qemu = Qemu { child, qmp: None };
        match Qmp::connect(&socket, QMP_TIMEOUT) {
            Ok(qmp) => {
                let took = start.elapsed();
                qemu.qmp = Some(qmp);
                return (took, qemu);
            }
            Err(e) => {
                let alive = matches!(qemu.child.try_wait(), Ok(None));
                drop(qemu);
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                let failure = format!(
                    "QMP handshake failed after {:.1} s ({e}: {}; QEMU {}; stderr: {:?})",
                    start.elapsed().as_secs_f64(),
                    error_chain(&e),
                    if alive {
                        "was still running"
                    } else {
                        "had exited"
                    },
                    log.trim()
                );
                eprintln!("vm/qemu_none_to_qmp_ready: {failure}");
                QMP_RETRIES.fetch_add(1, Ordering::Relaxed);
                failures.push(failure);
                assert!(failures.len() < 3, "QEMU never got ready: {failures:#?}");
            }
        }
    }
}

/// The `startup` scenario's initramfs as the `vm` backend builds it: the image's rootfs plus
/// init's VM configuration (the scenario needs no NIC or disk, hence no modules), with the
/// backend's compression (`CVM_INITRAMFS_COMPRESSION`, default none).
fn initramfs_spec(scenario: &cvm::scenario::Scenario, image: &Image) -> InitramfsSpec {
    let config = cvm_proto::vmconf::VmConfig {
        argv: image.workload_argv(&scenario.workload),
        ..Default::default()
    }
    .to_text()
    .expect("the startup workload's argv fits the config format");
    let compression = std::env::var(cvm::backend::vm::INITRAMFS_COMPRESSION_ENV)
        .ok()
        .and_then(|v| Compression::parse(&v))
        .unwrap_or_default();
    InitramfsSpec {
        rootfs: image.rootfs().to_path_buf(),
        modules: Vec::new(),
        files: vec![(cvm_proto::vmconf::PATH.to_string(), config.into_bytes())],
        compression,
    }
}

pub fn benches(c: &mut Criterion, env: &mut Env) {
    let listing = env.listing;
    let qemu = if listing {
        Some(PathBuf::from(cvm::backend::vm::QEMU))
    } else {
        cvm::backend::vm::find_qemu()
    };
    if qemu.is_none() {
        env.skip(
            "vm/qemu_none_to_qmp_ready",
            format!(
                "{} not found (install qemu-system-x86)",
                cvm::backend::vm::QEMU
            ),
        );
    }
    let spec = if listing {
        None
    } else {
        match env.image() {
            Ok((scenario, image)) => Some(initramfs_spec(&scenario, &image)),
            Err(e) => {
                env.skip("vm/initramfs_build*", e);
                None
            }
        }
    };
    let kernel_path = if listing {
        None
    } else {
        match kernel::find(None) {
            Ok(p) => Some(p),
            Err(e) => {
                let why = if env.root {
                    format!("{e} (install linux-image-amd64)")
                } else {
                    format!("{e} (Debian's /boot/vmlinuz-* is readable by root only)")
                };
                env.skip("vm/vmlinux_extract_*", why);
                None
            }
        }
    };
    let scratch = tempfile::tempdir().expect("tempdir");

    let mut g = c.benchmark_group(GROUP);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(2));
    if let Some(binary) = &qemu {
        g.bench_function("qemu_none_to_qmp_ready", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| qemu_to_qmp_ready(binary, scratch.path()).0)
                    .sum()
            });
        });
    }
    if spec.is_some() || listing {
        g.bench_function("initramfs_build", |b| {
            let spec = spec.as_ref().expect("spec");
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || tempfile::tempdir_in(scratch.path()).expect("tempdir"),
                    |dir| initramfs::build(spec, dir.path()).expect("initramfs"),
                    |dir, path| drop((dir, path)),
                )
            });
        });
        g.bench_function("initramfs_build_cached", |b| {
            let spec = spec.as_ref().expect("spec");
            let dir = scratch.path().join("initramfs");
            initramfs::build(spec, &dir).expect("initramfs");
            b.iter(|| initramfs::build(spec, &dir).expect("initramfs"));
        });
    }
    if kernel_path.is_some() || listing {
        // Kernel::load (read and hash the bzImage) is what every prepare pays; the uncached
        // case adds the decompression (the xz/gzip/zstd tool) and writing the vmlinux.
        let load = || Kernel::load(kernel_path.as_deref().expect("kernel")).expect("load");
        g.bench_function("vmlinux_extract_uncached", |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || tempfile::tempdir_in(scratch.path()).expect("tempdir"),
                    |cache| load().vmlinux(cache.path()).expect("extract"),
                    |cache, path| drop((cache, path)),
                )
            });
        });
        g.bench_function("vmlinux_extract_cached", |b| {
            let cache = scratch.path().join("kernel-cache");
            load().vmlinux(&cache).expect("extract");
            b.iter(|| load().vmlinux(&cache).expect("cached vmlinux"));
        });
    }
    g.finish();
}
