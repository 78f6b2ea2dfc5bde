//! Shared by the integration tests: locating the built binaries, and the rule for tests that
//! need the real host (root, QEMU, runc): they skip with a clear message, unless
//! `CVM_REQUIRE_HOST=1` (CI sets it), in which case a missing prerequisite fails the test.
#![allow(dead_code)]

pub mod disk;
pub mod instances;
pub mod user;

mod host;
pub use host::host_has;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The tests of one binary run on parallel threads. A test that checks measured figures against
/// bounds takes this lock alone ([`measuring_alone`]), its siblings take it shared
/// ([`beside_measurements`]): otherwise their report rendering shares the host's CPUs with the
/// measured launches (on 2 vCPUs that once made a native hello 5 ms instead of 0.8 ms). A test
/// that reads every process the test binary holds takes it alone too.
static MEASURING: RwLock<()> = RwLock::new(());

pub fn measuring_alone() -> RwLockWriteGuard<'static, ()> {
    // A sibling's failed assertion poisons the lock; the lock guards no data, so go on.
    MEASURING.write().unwrap_or_else(|e| e.into_inner())
}

pub fn beside_measurements() -> RwLockReadGuard<'static, ()> {
    MEASURING.read().unwrap_or_else(|e| e.into_inner())
}

/// The `cvm` binary cargo built for this test run.
pub fn cvm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cvm"))
}

/// `cvm` with a private cache dir, so tests do not depend on (or disturb) the user's cache.
pub fn cvm(args: &[&str]) -> Output {
    cvm_cmd().args(args).output().expect("cannot run cvm")
}

pub fn cvm_cmd() -> Command {
    let mut c = Command::new(cvm_bin());
    c.env("CVM_CACHE_DIR", cache_dir());
    c
}

/// One cache for the whole test run (images are content-addressed, so sharing is safe).
pub fn cache_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cvm-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A TCP port nothing on this host listens on now (the kernel picks it), for a workload that
/// must listen on the host's network.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a free port")
        .port()
}

pub fn is_root() -> bool {
    nix_geteuid() == 0
}

fn nix_geteuid() -> u32 {
    // /proc/self/status avoids a dependency just for this.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:").map(|r| {
                    r.split_whitespace()
                        .nth(1)
                        .unwrap_or("1")
                        .parse()
                        .unwrap_or(1)
                })
            })
        })
        .unwrap_or(1)
}

pub fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The label a `vm` run's samples carry: `vm-minimal` when `$CVM_KERNEL` (which `--kernel`
/// reads) chooses the minimal kernel, as CI's rerun of the VM tests does.
pub fn vm_label() -> &'static str {
    match std::env::var("CVM_KERNEL").as_deref().map(str::trim) {
        Ok("minimal") => "vm-minimal",
        _ => "vm",
    }
}
