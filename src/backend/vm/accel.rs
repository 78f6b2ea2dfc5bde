//! Choosing the accelerator: KVM only if a guest actually boots under it.
//!
//! `/dev/kvm` existing, even opening and creating a VM, does not mean guests run: on the
//! reference host (itself a guest of a paging-based nested hypervisor) stock kernels hang under
//! `-accel kvm`, and `-accel kvm:tcg` does not fall back because nothing *fails*. So the probe
//! boots the same microvm guest the `vm` backend uses, under KVM, and waits a bounded time for
//! init's `CVM:init` marker. No marker in time: KVM is unusable and TCG is used, with a warning.
//!
//! The verdict is cached twice: in memory for the rest of this cvm process (both VM backends
//! and `cvm doctor` ask), and on disk keyed by the QEMU version, the kernel's content hash and
//! the host kernel release, so only the first run on a host pays the probe's seconds. On disk a
//! success is kept for as long as its key holds, a failure for [`FAILURE_TTL`] only (see
//! [`reusable`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::kvm_host::KvmHost;
use super::qemu::{cmdline, Accel, Profile, QemuSpec};
use crate::backend::process::{Supervised, Terminate};
use crate::image::initramfs::{self, Compression, InitramfsError, InitramfsSpec};
use crate::image::{self, Image};
use cvm_proto::vmconf::{self, VmConfig, VmConfigError};

/// How long the probe guest gets to reach init under KVM. A working KVM boots the tuned microvm
/// to init in well under a second; TCG on the reference host takes about 2 s, so a KVM that is
/// slower than this is no better than emulation anyway.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(8);
/// Bumped when the probe's method or the cache format changes, so cached verdicts are redone.
const PROBE_VERSION: &str = "2";
/// How long a failed probe's verdict is reused from disk.
pub const FAILURE_TTL: Duration = Duration::from_secs(3600);

/// Which accelerator the user asked for (`--accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM if the probe guest boots under it, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// What the KVM probe found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kvm", rename_all = "snake_case")]
pub enum KvmProbe {
    /// The probe guest reached init under KVM.
    Usable { boot_s: f64 },
    /// No /dev/kvm.
    Absent,
    /// /dev/kvm exists but cannot be opened.
    NoAccess { error: String },
    /// The probe guest did not reach init in time (the reference host's case).
    Hung { timeout_s: u64 },
    /// QEMU refused or the guest died; QEMU's last words.
    Failed { error: String },
}

impl KvmProbe {
    pub fn usable(&self) -> bool {
        matches!(self, KvmProbe::Usable { .. })
    }

    /// One line for users: what was found and what it means.
    pub fn describe(&self) -> String {
        match self {
            KvmProbe::Usable { boot_s } => {
                format!("KVM usable (probe guest reached init in {boot_s:.2} s)")
            }
            KvmProbe::Absent => "no /dev/kvm — TCG (emulation) will be used".into(),
            KvmProbe::NoAccess { error } => {
                format!("/dev/kvm present but cannot be opened ({error}) — TCG will be used")
            }
            KvmProbe::Hung { timeout_s } => format!(
                "KVM present but unusable (probe guest did not boot within {timeout_s} s under KVM) — TCG will be used"
            ),
            KvmProbe::Failed { error } => format!(
                "KVM present but unusable (probe guest failed under KVM: {error}) — TCG will be used"
            ),
        }
    }
}

/// The probe's verdict with the host's facts that explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct KvmVerdict {
    pub probe: KvmProbe,
    pub host: KvmHost,
}

impl KvmVerdict {
    pub fn usable(&self) -> bool {
        self.probe.usable()
    }

    /// What was found, in words: what serves `/dev/kvm` (PVM, nested without VMX/SVM,
    /// permissions, a missing module), what the probe guest did, the kernel's own report.
    pub fn describe(&self) -> String {
        if self.usable() {
            return self.probe.describe();
        }
        let mut words = format!("KVM unusable: {}", self.host.finding().what());
        match &self.probe {
            KvmProbe::Hung { timeout_s } => words.push_str(&format!(
                "; the probe guest (a stock kernel) did not reach init within {timeout_s} s under KVM"
            )),
            KvmProbe::Failed { error } => {
                words.push_str(&format!("; the probe guest failed under KVM ({error})"))
            }
            KvmProbe::Usable { .. } | KvmProbe::Absent | KvmProbe::NoAccess { .. } => {}
        }
        if let Some(line) = &self.host.kernel_log {
            words.push_str(&format!("; kernel log: `{line}`"));
        }
        words
    }

    /// What would make KVM usable (`None` where it is).
    pub fn fix(&self) -> Option<String> {
        (!self.usable()).then(|| self.host.finding().fix())
    }
}

/// The accelerator to use and why.
#[derive(Debug, Clone, PartialEq)]
pub struct AccelDecision {
    pub accel: Accel,
    /// Why: the probe's verdict, or that the user asked.
    pub reason: String,
    /// Set when VM figures will be emulated although the user did not ask for that.
    pub warning: Option<String>,
    /// What would make KVM usable, when the probe found it unusable.
    pub fix: Option<String>,
}

/// Applies `--accel` to the probe's verdict. `probe` runs only for `auto`.
pub fn decide(choice: Option<AccelChoice>, probe: impl FnOnce() -> KvmVerdict) -> AccelDecision {
    match choice.unwrap_or(AccelChoice::Auto) {
        AccelChoice::Kvm => AccelDecision {
            accel: Accel::Kvm,
            reason: "--accel kvm (not probed)".into(),
            warning: None,
            fix: None,
        },
        AccelChoice::Tcg => AccelDecision {
            accel: Accel::Tcg,
            reason: "--accel tcg".into(),
            warning: None,
            fix: None,
        },
        AccelChoice::Auto => {
            let verdict = probe();
            if verdict.usable() {
                AccelDecision {
                    accel: Accel::Kvm,
                    reason: verdict.describe(),
                    warning: None,
                    fix: None,
                }
            } else {
                let why = verdict.describe();
                let fix = verdict.fix();
                AccelDecision {
                    accel: Accel::Tcg,
                    warning: Some(format!(
                        "{why} — TCG will be used; VM figures are from emulation and are \
                         labelled accel=tcg (KVM would need {})",
                        fix.as_deref()
                            .unwrap_or("a host that runs this guest under KVM")
                    )),
                    reason: why,
                    fix,
                }
            }
        }
    }
}

/// What a probe boots.
pub struct ProbeGuest<'a> {
    pub qemu: &'a Path,
    pub qemu_version: &'a str,
    pub vmlinux: &'a Path,
    pub kernel_hash: &'a str,
    /// An initramfs whose init writes `CVM:init`.
    pub initrd: &'a Path,
    pub cache: &'a Path,
}

fn memo() -> &'static Mutex<HashMap<String, KvmProbe>> {
    static MEMO: OnceLock<Mutex<HashMap<String, KvmProbe>>> = OnceLock::new();
    MEMO.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The cached verdict for this QEMU, kernel and host, probing if there is none.
pub fn probe_cached(guest: &ProbeGuest<'_>) -> KvmProbe {
    if !Path::new("/dev/kvm").exists() {
        return KvmProbe::Absent;
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return KvmProbe::NoAccess {
            error: e.to_string(),
        };
    }
    let key = cache_key(guest);
    // Held across the probe: a second backend asking meanwhile waits for this verdict instead
    // of booting a second probe guest.
    let mut memo = memo().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = memo.get(&key) {
        return v.clone();
    }
    let file = guest.cache.join("accel").join(format!("{key}.json"));
    let now = unix_now();
    let cached = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice::<CachedVerdict>(&b).ok())
        .filter(|c| reusable(c, now));
    let verdict = match cached {
        Some(c) => c.verdict,
        None => {
            let v = probe_kvm(guest);
            if let Some(dir) = file.parent() {
                // Best effort: without the file the next cvm process probes again.
                let _ = std::fs::create_dir_all(dir);
                let entry = CachedVerdict {
                    verdict: v.clone(),
                    probed_at: now,
                };
                if let Ok(json) = serde_json::to_vec(&entry) {
                    let _ = std::fs::write(&file, json);
                }
            }
            v
        }
    };
    memo.insert(key, verdict.clone());
    verdict
}

/// A verdict as stored on disk, with when it was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedVerdict {
    verdict: KvmProbe,
    /// Seconds since the Unix epoch.
    probed_at: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a verdict from disk may stand in for a probe at `now`.
///
/// A success is reused for as long as the cache key holds: the key already changes with
/// everything that makes KVM boot this guest or not on the cvm side (QEMU version, guest
/// kernel, host kernel release), and re-probing a working KVM costs a boot every run for no
/// news. A failure is reused for [`FAILURE_TTL`] only, because its causes often lie outside the
/// key and get fixed without any of it changing: the user added to the kvm group, a module was
/// loaded, the outer hypervisor's nested paging was switched on, a busy host made the probe time
/// out. Not caching failures at all would make every cvm process on a host with a hung KVM (the
/// reference host) pay the full probe timeout; an hour bounds both costs.
fn reusable(cached: &CachedVerdict, now: u64) -> bool {
    cached.verdict.usable() || now.saturating_sub(cached.probed_at) < FAILURE_TTL.as_secs()
}

fn cache_key(guest: &ProbeGuest<'_>) -> String {
    let host_release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut h = Sha256::new();
    for part in [
        PROBE_VERSION,
        guest.qemu_version,
        guest.kernel_hash,
        &host_release,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("kvm-{}", &format!("{:x}", h.finalize())[..16])
}

/// Boots the probe guest under KVM and waits for `CVM:init`.
fn probe_kvm(guest: &ProbeGuest<'_>) -> KvmProbe {
    let spec = QemuSpec {
        binary: guest.qemu.to_path_buf(),
        profile: Profile::Micro,
        accel: Accel::Kvm,
        vcpus: 1,
        memory_mib: 128,
        kernel: guest.vmlinux.to_path_buf(),
        initrd: guest.initrd.to_path_buf(),
        cmdline: cmdline(Profile::Micro, Accel::Kvm, None, None),
        qmp: None,
        net: None,
        disk: None,
        // As the measured runs will run it.
        sandbox: super::qemu::sandbox_supported(guest.qemu),
        tap: None,
    };
    let start = Instant::now();
    let mut child = match Command::new(&spec.binary)
        .args(spec.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return KvmProbe::Failed {
                error: format!("cannot start {}: {e}", spec.binary.display()),
            }
        }
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let mut qemu = Supervised::from_child(child);
    let (tx, rx) = mpsc::channel();
    if let Some(out) = stdout {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                if String::from_utf8_lossy(&line).contains("CVM:init") {
                    let _ = tx.send(Ok(()));
                    return;
                }
            }
            let _ = tx.send(Err(String::new()));
        });
    }
    let stderr_lines = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
    if let Some(err) = stderr {
        let keep = stderr_lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                keep.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
    }
    drop(tx);
    let outcome = rx.recv_timeout(PROBE_TIMEOUT);
    let boot = start.elapsed();
    // The one stop sequence: SIGTERM (QEMU's quit), the grace period, then SIGKILL for a QEMU
    // stuck in a guest that never ran; reaped either way.
    qemu.stop(&Terminate);
    qemu.reap();
    match outcome {
        Ok(Ok(())) => KvmProbe::Usable {
            boot_s: boot.as_secs_f64(),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => KvmProbe::Hung {
            timeout_s: PROBE_TIMEOUT.as_secs(),
        },
        Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            // Give the stderr reader a moment to collect QEMU's message.
            std::thread::sleep(Duration::from_millis(50));
            let lines = stderr_lines.lock().unwrap_or_else(|p| p.into_inner());
            KvmProbe::Failed {
                error: lines
                    .last()
                    .cloned()
                    .unwrap_or_else(|| "the guest stopped before init".into()),
            }
        }
    }
}

/// What keeps a probe guest from being built (it then counts as a failed probe).
#[derive(Debug, thiserror::Error)]
pub enum ProbeSetupError {
    #[error("cannot write the probe guest's configuration")]
    Config(#[source] VmConfigError),
    #[error("cannot build the probe guest's initramfs")]
    Initramfs(#[source] InitramfsError),
}

/// The kernel a probe boots: its vmlinux and content hash (part of the verdict's cache key).
pub struct ProbeKernel<'a> {
    pub vmlinux: &'a Path,
    pub hash: &'a str,
}

/// The accelerator for a VM backend: as `--accel` says, or for `auto` as [`verdict`] finds.
pub fn choose(
    choice: Option<AccelChoice>,
    kernel: &ProbeKernel<'_>,
    image: &Image,
) -> AccelDecision {
    decide(choice, || verdict(kernel, image))
}

/// Whether `kernel` boots under KVM here (the probe guest: the image's `cvm-guest hello` as
/// init, no modules; cached, see [`probe_cached`]), with the host's facts that explain it, read
/// after the probe so that the kernel's report of it is among them. A probe guest that cannot
/// be built counts as a failed probe.
pub fn verdict(kernel: &ProbeKernel<'_>, image: &Image) -> KvmVerdict {
    let probe = if !Path::new("/dev/kvm").exists() {
        KvmProbe::Absent
    } else {
        match probe_initrd(image) {
            Ok(initrd) => {
                let qemu = super::find_qemu().unwrap_or_else(|| PathBuf::from(super::QEMU));
                let version =
                    crate::tools::tool_version(super::QEMU, &["--version"]).unwrap_or_default();
                probe_cached(&ProbeGuest {
                    qemu: &qemu,
                    qemu_version: &version,
                    vmlinux: kernel.vmlinux,
                    kernel_hash: kernel.hash,
                    initrd: &initrd,
                    cache: &image::cache_dir(),
                })
            }
            Err(e) => KvmProbe::Failed {
                error: format!("{:#}", anyhow::Error::new(e)),
            },
        }
    };
    KvmVerdict {
        probe,
        host: KvmHost::read(),
    }
}

/// The probe guest's initramfs: the image with init told to run `cvm-guest hello`.
fn probe_initrd(image: &Image) -> Result<PathBuf, ProbeSetupError> {
    let config = VmConfig {
        modules: Vec::new(),
        net: None,
        disk: None,
        watch_port: None,
        pids: None,
        argv: vec![
            image::GUEST_PATH.to_string(),
            cvm_proto::applet::Applet::Hello.name().to_string(),
        ],
    };
    let text = config.to_text().map_err(ProbeSetupError::Config)?;
    initramfs::build(
        &InitramfsSpec {
            rootfs: image.rootfs().to_path_buf(),
            modules: Vec::new(),
            files: vec![(vmconf::PATH.to_string(), text.into_bytes())],
            compression: Compression::None,
        },
        &image::cache_dir().join("initramfs"),
    )
    .map_err(ProbeSetupError::Initramfs)
}

/// The host's TSC rate in kHz, which a TCG guest's TSC also runs at: measured, TSC ticks
/// against `CLOCK_MONOTONIC` over a few short windows (the median of them, so one preemption
/// does not skew it). `cpu MHz` in /proc/cpuinfo is the current core clock on some hosts, not
/// the TSC's. `None` when there is no TSC to read.
pub fn host_tsc_khz() -> Option<u64> {
    const WINDOWS: usize = 5;
    const WINDOW: Duration = Duration::from_millis(20);
    let mut rates: Vec<f64> = (0..WINDOWS)
        .filter_map(|_| {
            let (c0, t0) = (crate::sys::tsc()?, Instant::now());
            std::thread::sleep(WINDOW);
            let (c1, t1) = (crate::sys::tsc()?, Instant::now());
            tsc_khz(c1.checked_sub(c0)?, t1 - t0)
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).map(|khz| khz.round() as u64)
}

/// kHz from a tick count over an interval; `None` for an implausible one (a stopped counter).
fn tsc_khz(ticks: u64, over: Duration) -> Option<f64> {
    let ms = over.as_secs_f64() * 1000.0;
    let khz = ticks as f64 / ms;
    (ms > 0.0 && khz > 100_000.0).then_some(khz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsc_rate_is_ticks_per_millisecond() {
        assert_eq!(
            tsc_khz(2_400_000_000, Duration::from_secs(1)),
            Some(2_400_000.0)
        );
        assert_eq!(tsc_khz(10, Duration::from_secs(1)), None);
        if let Some(khz) = host_tsc_khz() {
            // Any real TSC counts between 100 MHz and 10 GHz.
            assert!((100_000..10_000_000).contains(&khz), "{khz}");
        }
    }

    #[test]
    fn explicit_choices_skip_the_probe() {
        let d = decide(Some(AccelChoice::Tcg), || panic!("must not probe"));
        assert_eq!(d.accel, Accel::Tcg);
        let d = decide(Some(AccelChoice::Kvm), || panic!("must not probe"));
        assert_eq!(d.accel, Accel::Kvm);
    }

    /// The reference host's facts: PVM serves /dev/kvm on a CPU without VMX/SVM.
    fn pvm_host(kernel_log: Option<&str>) -> KvmHost {
        KvmHost {
            dev_kvm: super::super::kvm_host::DevKvm::Usable,
            module: Some("kvm_pvm"),
            cpu_virt: None,
            is_guest: true,
            kernel_log: kernel_log.map(String::from),
        }
    }

    #[test]
    fn auto_falls_back_to_tcg_naming_what_it_found_and_the_fix() {
        let verdict = || KvmVerdict {
            probe: KvmProbe::Hung { timeout_s: 8 },
            host: pvm_host(Some("kvm-pvm: INTERNAL_ERROR in batch emul")),
        };
        let d = decide(Some(AccelChoice::Auto), verdict);
        assert_eq!(d.accel, Accel::Tcg);
        assert!(
            d.reason
                .starts_with("KVM unusable: PVM: /dev/kvm is served by kvm_pvm"),
            "{}",
            d.reason
        );
        assert!(
            d.reason.contains("did not reach init within 8 s"),
            "{}",
            d.reason
        );
        assert!(
            d.reason
                .ends_with("kernel log: `kvm-pvm: INTERNAL_ERROR in batch emul`"),
            "{}",
            d.reason
        );
        assert!(d.fix.as_deref().unwrap().contains("PVM guest"));
        let warning = d.warning.unwrap();
        assert!(
            warning.contains("accel=tcg") && warning.contains("KVM would need"),
            "{warning}"
        );
        let d = decide(None, || KvmVerdict {
            probe: KvmProbe::Usable { boot_s: 0.2 },
            host: KvmHost {
                cpu_virt: Some("vmx"),
                module: Some("kvm_intel"),
                ..pvm_host(None)
            },
        });
        assert_eq!(d.accel, Accel::Kvm);
        assert!(d.warning.is_none() && d.fix.is_none());
    }

    #[test]
    fn verdicts_round_trip_through_the_disk_cache_format() {
        for v in [
            KvmProbe::Usable { boot_s: 0.5 },
            KvmProbe::Hung { timeout_s: 8 },
            KvmProbe::Failed { error: "x".into() },
        ] {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<KvmProbe>(&json).unwrap(), v);
        }
    }

    #[test]
    fn a_failed_probe_is_not_reused_once_it_is_stale() {
        let now = 100_000_000;
        let entry = |verdict, age: u64| CachedVerdict {
            verdict,
            probed_at: now - age,
        };
        let hung = || KvmProbe::Hung { timeout_s: 8 };
        let failed = || KvmProbe::Failed { error: "x".into() };
        let stale = FAILURE_TTL.as_secs();
        assert!(!reusable(&entry(hung(), stale), now));
        assert!(!reusable(&entry(failed(), stale + 1), now));
        assert!(!reusable(
            &entry(KvmProbe::NoAccess { error: "x".into() }, stale),
            now
        ));
        assert!(reusable(&entry(hung(), 60), now));
        let usable = || KvmProbe::Usable { boot_s: 0.3 };
        assert!(reusable(&entry(usable(), 30 * 24 * 3600), now));
        // A clock that went backwards makes the entry fresh, not an underflow.
        assert!(reusable(
            &CachedVerdict {
                verdict: hung(),
                probed_at: now + 10
            },
            now
        ));
    }

    #[test]
    fn a_cache_file_from_the_old_format_is_not_read() {
        let old = serde_json::to_vec(&KvmProbe::Hung { timeout_s: 8 }).unwrap();
        assert!(serde_json::from_slice::<CachedVerdict>(&old).is_err());
    }
}
