//! Faults on the isolating backends, through the `cvm compare` a user runs (tests/faults.rs does
//! the native ones): a workload that crashes at start (`container`, `runc`) or never gets ready
//! (`container`); QEMU killed with SIGKILL while its guest is under load; runc missing; a guest
//! kernel that is missing or not a kernel; SIGINT and SIGTERM while cvm is tearing an instance
//! down. Each ends with the documented exit code, `samples.csv` parseable with what was
//! measured, and nothing of the run left: no process, mount, cgroup, link or OCI container
//! carrying the run's token, no QEMU, and an empty private TMPDIR (bundles, QMP sockets, disks).
//!
//! The VM test also checks QEMU's isolation on the guest it boots anyway (one boot is seconds
//! under TCG): the `-sandbox` seccomp filter is on where the build supports it, and every socket
//! QEMU listens on is bound to loopback.
//!
//! They need root, cgroups, runc, QEMU and a guest kernel as the other host tests do; without
//! them they skip, or fail under `CVM_REQUIRE_HOST=1`.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cvm::audit;
use cvm::backend::{self, Availability, HostOptions};
use cvm::scenario::BackendKind;

use common::{cvm_cmd, host_has, is_root, stderr, which};

/// One `cvm compare` with its own scenario, output directory and TMPDIR.
struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new(scenario: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.toml"), scenario).unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        Run { dir }
    }
    fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    fn command(&self, backends: &str, extra: &[&str]) -> Command {
        let mut c = cvm_cmd();
        c.env("TMPDIR", self.tmp())
            .args([
                "compare",
                "--no-progress",
                "--backends",
                backends,
                "--scenario",
            ])
            .arg(self.dir.path().join("s.toml"))
            .arg("--output")
            .arg(self.out())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
    fn spawn(&self, backends: &str, extra: &[&str]) -> Child {
        self.command(backends, extra).spawn().unwrap()
    }
    fn samples(&self) -> Vec<cvm::results::SampleRow> {
        cvm::results::read_samples(&self.out().join("samples.csv"))
            .expect("samples.csv must stay parseable")
    }
    /// (backend, metric, value, note) of every sample.
    fn rows(&self) -> Vec<(String, String, f64, String)> {
        self.samples()
            .into_iter()
            .map(|s| (s.backend, s.metric, s.value, s.note))
            .collect()
    }
    fn meta(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.out().join("run.json")).unwrap())
            .unwrap()
    }
    fn has_sample(&self, metric: &str) -> bool {
        cvm::results::read_samples(&self.out().join("samples.csv"))
            .is_ok_and(|rows| rows.iter().any(|r| r.metric == metric))
    }
    /// Nothing of this run survives: no QEMU naming its TMPDIR, nothing in its TMPDIR, and no
    /// audited resource carrying the token of the cvm process `pid` that appeared since `before`.
    fn assert_nothing_left(&self, before: &audit::Snapshot, pid: u32) {
        let tmp = self.tmp().to_string_lossy().into_owned();
        assert!(
            pids_with(&tmp).is_empty(),
            "a process naming {tmp} is still running"
        );
        let left: Vec<_> = std::fs::read_dir(self.tmp())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
        let leaked = audit::snapshot()
            .matching(&run_token(pid))
            .leaked_since(before);
        assert!(
            leaked.is_empty(),
            "left behind:\n{}",
            leaked
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The part of a cvm process's run token that its PID determines (`compare::short_token`): every
/// cgroup, link, bundle and temp dir of that run is named `...cvm-<token>...`.
fn run_token(pid: u32) -> String {
    format!("cvm-{:04x}", pid & 0xffff)
}

/// PIDs of processes whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

/// Waits until `f` holds, for at most `limit`, while the cvm run `child` goes on. If cvm ends
/// first, or the limit passes, the test fails with what cvm printed; on a timeout cvm is
/// interrupted first, so that its teardown leaves nothing behind for the tests that follow.
fn wait_for(what: &str, limit: Duration, child: &mut Child, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cvm ended ({status}) before {what}:\n{}", printed(child));
        }
        if Instant::now() >= deadline {
            signal(
                i32::try_from(child.id()).unwrap(),
                nix::sys::signal::Signal::SIGINT,
            );
            let stop = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() && Instant::now() < stop {
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait().unwrap().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            panic!(
                "timed out after {limit:?} waiting for {what}; cvm, interrupted, printed:\n{}",
                printed(child)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything an ended cvm wrote to its stderr and stdout.
fn printed(child: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    text
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

fn usable(kind: BackendKind) -> bool {
    if !host_has(is_root(), "these tests need root")
        || !host_has(
            cvm::image::find_guest().is_ok(),
            "cvm-guest is not built (run a plain `cargo build` first)",
        )
    {
        return false;
    }
    if kind == BackendKind::Runc && !host_has(which("runc"), "runc is not installed") {
        return false;
    }
    if kind == BackendKind::Gvisor
        && !host_has(
            which("runsc"),
            "runsc is not installed (apt-get install runsc)",
        )
    {
        return false;
    }
    match backend::create(kind, &HostOptions::default()).availability() {
        Availability::Available => true,
        Availability::Unavailable { reason, .. } => {
            host_has(false, &format!("backend {kind} is unavailable: {reason}"))
        }
    }
}

fn vm_host() -> bool {
    let kernel = std::fs::read_dir("/boot").ok().is_some_and(|d| {
        d.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("vmlinuz-")
                && std::fs::File::open(e.path()).is_ok()
        })
    });
    host_has(
        which("qemu-system-x86_64"),
        "qemu-system-x86_64 (apt-get install qemu-system-x86)",
    ) && host_has(
        kernel,
        "a readable /boot/vmlinuz-* (apt-get install linux-image-amd64)",
    )
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

#[test]
fn a_workload_crashing_at_start_is_a_failed_run_on_container_and_runc() {
    if !usable(BackendKind::Container) || !usable(BackendKind::Runc) {
        return;
    }
    crashing_at_start_is_a_failed_run(&["container", "runc"]);
}

#[test]
fn a_workload_crashing_at_start_is_a_failed_run_on_gvisor() {
    if !usable(BackendKind::Gvisor) {
        return;
    }
    crashing_at_start_is_a_failed_run(&["gvisor"]);
}

fn crashing_at_start_is_a_failed_run(backends: &[&str]) {
    let run = Run::new(
        "name = \"crash\"\nruns = 1\nwarmup = 0\ntimeout_s = 20\n[workload]\napplet = \"crash\"\n",
    );
    let before = audit::snapshot();
    let child = run.spawn(&backends.join(","), &[]);
    let pid = child.id();
    let out = finish(child);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = run.rows();
    for &backend in backends {
        let failed: Vec<_> = rows
            .iter()
            .filter(|r| r.0 == backend && r.1 == "run_failed")
            .collect();
        assert_eq!(failed.len(), 1, "{backend}: {rows:#?}");
        assert!(
            failed[0]
                .3
                .contains("ended with exit code 3 before it became ready"),
            "{backend}: unclear failure: {}",
            failed[0].3
        );
        // What was measured before the run (the disk footprint) is kept.
        assert!(rows
            .iter()
            .any(|r| r.0 == backend && r.1 == "disk_footprint"));
    }
    assert_eq!(run.meta()["status"], "failed");
    run.assert_nothing_left(&before, pid);
}

#[test]
fn a_container_that_never_gets_ready_fails_at_the_timeout_and_leaves_nothing() {
    if !usable(BackendKind::Container) {
        return;
    }
    let run = Run::new(
        "name = \"stuck\"\nruns = 1\nwarmup = 0\ntimeout_s = 2\n[workload]\napplet = \"never-ready\"\n",
    );
    let before = audit::snapshot();
    let started = Instant::now();
    let child = run.spawn("container", &[]);
    let pid = child.id();
    let out = finish(child);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("did not become ready within 2.0 s (last phase reached: runtime)"),
        "unclear error: {err}"
    );
    let rows = run.rows();
    assert_eq!(
        rows.iter().filter(|r| r.1 == "run_failed").count(),
        1,
        "{rows:#?}"
    );
    assert!(!rows.iter().any(|r| r.1 == "ready_latency"));
    run.assert_nothing_left(&before, pid);
}

/// Listening TCP sockets of `pid`, as the local addresses /proc/net/tcp{,6} give them
/// (hex `ADDR:PORT`, with "6" prefixed for IPv6).
fn listening_sockets(pid: i32) -> Vec<String> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut found = Vec::new();
    for (file, tag) in [("tcp", ""), ("tcp6", "6")] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address rem_address st ... inode (field 9)
            if f.get(3) == Some(&"0A") && f.get(9).is_some_and(|i| inodes.contains(*i)) {
                found.push(format!("{tag}{}", f[1]));
            }
        }
    }
    found
}

fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    // 127.0.0.1 little-endian, and ::1 as /proc/net/tcp6 writes it (four little-endian words).
    host == "0100007F" || host == "600000000000000000000000001000000"
}

#[test]
fn a_vm_listens_only_on_loopback_runs_sandboxed_and_a_sigkilled_qemu_is_a_failed_run() {
    if !vm_host() {
        return;
    }
    // A server under a load long enough to be killed in the middle of it. Its timeout is
    // shorter than the test's wait, so a guest that never gets ready fails with cvm's own account
    // of it (the phase reached, the console's last lines).
    let run = Run::new(
        "name = \"vmkill\"\nruns = 1\nwarmup = 0\ntimeout_s = 60\n\
         [workload]\napplet = \"http\"\nargs = [\"--port\", \"8080\"]\n\
         [readiness]\nkind = \"http\"\nport = 8080\n\
         [load]\nkind = \"http\"\nduration_s = 8\nconnections = 1\n\
         [resources]\nvcpus = 1\nmemory_mib = 128\nnetwork = \"user\"\n",
    );
    let before = audit::snapshot();
    let mut child = run.spawn("vm", &["--accel", "tcg"]);
    let pid = child.id();
    wait_for(
        "the guest to be ready",
        Duration::from_secs(90),
        &mut child,
        || run.has_sample("ready_latency"),
    );
    // This run's QEMU, and only it: its QMP socket is in this test's TMPDIR.
    let tmp = run.tmp().to_string_lossy().into_owned();
    let qemus: Vec<i32> = pids_with(&tmp)
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/exe"))
                .is_ok_and(|e| e.to_string_lossy().contains("qemu-system"))
        })
        .collect();
    assert_eq!(qemus.len(), 1, "expected one QEMU naming {tmp}: {qemus:?}");
    let qemu = qemus[0];
    // The audit sees the live QEMU under the run's token, so its absence at the end means
    // something.
    assert!(
        audit::snapshot()
            .matching(&run_token(pid))
            .resources
            .iter()
            .any(|r| r.kind == audit::ResourceKind::Process && r.name.contains("qemu-system")),
        "the leak audit does not see this run's QEMU"
    );

    // Placement: QEMU, every thread of it, runs only on the instance's CPUs, in a cgroup of its
    // own, and the run's record says where the client ran.
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(p) = backend::placement::Placement::split(ncpu, 1)
        .filter(|_| backend::cgroup::cpuset_supported())
    {
        let expected = format!(
            "Cpus_allowed_list:\t{}",
            backend::placement::cpu_list(&p.instance)
        );
        for task in std::fs::read_dir(format!("/proc/{qemu}/task"))
            .unwrap()
            .flatten()
        {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            assert!(
                status.is_empty() || status.lines().any(|l| l == expected),
                "a QEMU thread may run outside the instance's CPUs:\n{status}"
            );
        }
        let cgroups = std::fs::read_to_string(format!("/proc/{qemu}/cgroup")).unwrap();
        assert!(
            cgroups
                .lines()
                .any(|l| l.contains("cpu") && l.contains(&run_token(pid))),
            "QEMU is not in the instance's cgroup:\n{cgroups}"
        );
        let placement = run.meta()["load"]["placement"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            placement.contains(&format!(
                "load client on CPU(s) {}",
                backend::placement::cpu_list(&p.client)
            )),
            "{placement}"
        );
    }

    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap())
        .replace('\0', " ");
    let qemu_bin = std::fs::read_link(format!("/proc/{qemu}/exe")).unwrap();
    if backend::vm::qemu::sandbox_supported(&qemu_bin) {
        assert!(
            cmdline.contains(&format!("-sandbox {}", backend::vm::qemu::SANDBOX)),
            "QEMU runs without its sandbox: {cmdline}"
        );
        let status = std::fs::read_to_string(format!("/proc/{qemu}/status")).unwrap();
        assert!(
            status.lines().any(|l| l == "Seccomp:\t2"),
            "QEMU has no seccomp filter installed:\n{status}"
        );
    } else {
        eprintln!("this QEMU build has no -sandbox; not checked");
    }
    let listening = listening_sockets(qemu);
    assert!(
        !listening.is_empty(),
        "QEMU listens on nothing, but forwards the guest's port"
    );
    for addr in &listening {
        assert!(
            is_loopback(addr),
            "QEMU listens beyond loopback: {addr} (all: {listening:?})"
        );
    }

    // Mid-run: the load phase is going on. A SIGKILL, as the OOM killer would deliver it.
    assert!(!run.has_sample("http_rps"), "the load phase already ended");
    signal(qemu, nix::sys::signal::Signal::SIGKILL);
    let out = finish(child);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = run.rows();
    let failed: Vec<_> = rows.iter().filter(|r| r.1 == "run_failed").collect();
    assert_eq!(failed.len(), 1, "{rows:#?}");
    assert!(
        failed[0].3.contains("SIGKILL") && failed[0].3.contains("load phase"),
        "unclear failure: {}",
        failed[0].3
    );
    assert!(rows.iter().any(|r| r.1 == "ready_latency"));
    assert!(!rows.iter().any(|r| r.1 == "http_rps"));
    assert_eq!(run.meta()["status"], "failed");
    run.assert_nothing_left(&before, pid);
}

#[test]
fn without_runc_the_runc_backend_is_unavailable_and_the_others_run() {
    if !usable(BackendKind::Container)
        || !host_has(which("unshare"), "unshare (util-linux) is not installed")
    {
        return;
    }
    // cvm finds runc through PATH, where its other tools (ip, QEMU) live too, so PATH cannot
    // hide runc alone: a private mount namespace for this cvm, with /dev/null bound over every
    // runc in PATH or the usual sbin directories, makes it missing for that process only.
    let mut hidden: BTreeSet<PathBuf> = BTreeSet::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
    {
        if let Ok(real) = dir.join("runc").canonicalize() {
            hidden.insert(real);
        }
    }
    let run = Run::new(
        "name = \"norunc\"\nruns = 1\nwarmup = 0\ntimeout_s = 20\n[workload]\napplet = \"hello\"\n",
    );
    let mut script = String::new();
    for p in &hidden {
        script.push_str(&format!("mount --bind /dev/null '{}' && ", p.display()));
    }
    script.push_str("exec \"$@\"");
    let cvm = run.command("native,container,runc", &[]);
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .arg(cvm.get_program())
    .args(cvm.get_args())
    .envs(cvm.get_envs().filter_map(|(k, v)| Some((k, v?))))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let before = audit::snapshot();
    // unshare (without --fork) and sh exec in turn: the PID is cvm's.
    let child = c.spawn().unwrap();
    let pid = child.id();
    let out = finish(child);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "backend runc is unavailable: runc is not installed (install the Debian package runc)"
        ),
        "{err}"
    );
    let meta = run.meta();
    let runc = meta["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "runc")
        .expect("runc is listed in run.json");
    assert_eq!(runc["availability"]["status"], "unavailable", "{runc}");
    assert_eq!(runc["availability"]["reason"], "runc is not installed");
    let rows = run.rows();
    for backend in ["native", "container"] {
        assert!(
            rows.iter()
                .any(|r| r.0 == backend && r.1 == "ready_latency"),
            "{backend} did not run: {rows:#?}"
        );
    }
    assert!(!rows.iter().any(|r| r.0 == "runc"), "{rows:#?}");
    assert!(!rows.iter().any(|r| r.1 == "run_failed"), "{rows:#?}");
    assert_eq!(meta["status"], "done");
    run.assert_nothing_left(&before, pid);
    // The host's runc was never touched.
    assert!(hidden.iter().all(|p| p.is_file()));
}

#[test]
fn a_missing_or_corrupt_guest_kernel_is_bad_input_named_in_one_paragraph() {
    // Checked before anything is built or booted: no QEMU needed.
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("vmlinuz-corrupt");
    let mut rng = fastrand::Rng::with_seed(8);
    std::fs::write(
        &corrupt,
        (0..65536).map(|_| rng.u8(..)).collect::<Vec<u8>>(),
    )
    .unwrap();
    let missing = dir.path().join("no-such-vmlinuz");
    for (kernel, why) in [
        (&missing, "No such file or directory"),
        (&corrupt, "is not an x86 bzImage"),
    ] {
        let run =
            Run::new("name = \"nokernel\"\nruns = 1\nwarmup = 0\n[workload]\napplet = \"hello\"\n");
        let out = run
            .command("vm", &["--accel", "tcg", "--kernel"])
            .arg(kernel)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let text = err.trim();
        assert_eq!(text.lines().count(), 1, "one paragraph: {err}");
        assert!(text.starts_with("Error: --kernel "), "{err}");
        assert!(text.contains(&kernel.display().to_string()), "{err}");
        assert!(text.contains(why), "{err}");
        // Nothing was measured, so nothing was written, and nothing was started.
        assert!(
            !run.out().exists(),
            "bad input created the output directory"
        );
        assert_eq!(std::fs::read_dir(run.tmp()).unwrap().count(), 0);
    }
}

/// A workload that survives SIGTERM, so tearing it down waits out the grace period
/// (`process::STOP_GRACE`, 2 s) before SIGKILL: the window in which cvm is signalled. The
/// SIGTERM it gets starts a `sleep 1021`, the sign (seen from the host) that teardown has begun;
/// `wait` returns as soon as a trapped signal arrives, so the sign appears at once.
const STUBBORN: &str = "name = \"stubborn\"\nruns = 2\nwarmup = 0\ntimeout_s = 20\n\
    [workload]\ncommand = [\"/bin/sh\", \"-c\", \"trap 'sleep 1021 &' TERM; echo CVM:ready >&3; while :; do sleep 1000 & wait; done\"]\n";

fn signal_during_teardown(sig: nix::sys::signal::Signal) {
    if !usable(BackendKind::Container) {
        return;
    }
    let run = Run::new(STUBBORN);
    let before = audit::snapshot();
    let mut child = run.spawn("container", &[]);
    let pid = child.id();
    // Ready is recorded, then the run (which measures idle memory only) goes straight to
    // teardown, where the workload's refusal holds it for the grace period. cvm is signalled
    // once the workload has had its SIGTERM: by event order, not by a guess at how long the
    // steps take.
    wait_for(
        "the first run to be ready",
        Duration::from_secs(30),
        &mut child,
        || run.has_sample("ready_latency"),
    );
    wait_for(
        "the workload's SIGTERM",
        Duration::from_secs(30),
        &mut child,
        || !pids_with("sleep 1021").is_empty(),
    );
    signal(i32::try_from(pid).unwrap(), sig);
    let out = finish(child);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(run.meta()["status"], "interrupted");
    let rows = run.rows();
    // The teardown under way was finished, not abandoned, and timed; no second run began.
    let teardowns: Vec<f64> = rows
        .iter()
        .filter(|r| r.1 == "teardown_latency")
        .map(|r| r.2)
        .collect();
    assert_eq!(teardowns.len(), 1, "{rows:#?}");
    assert!(
        teardowns[0] >= 1.9,
        "teardown did not wait for the workload: {teardowns:?}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.1 == "ready_latency").count(),
        1,
        "{rows:#?}"
    );
    assert!(!rows.iter().any(|r| r.1 == "run_failed"), "{rows:#?}");
    run.assert_nothing_left(&before, pid);
}

/// A second signal during teardown forces it: no grace period waited out, no report, exit 130
/// with what was torn down named, and nothing left.
fn second_signal_during_teardown(backend: &str, sig: nix::sys::signal::Signal) {
    let run = Run::new(STUBBORN);
    let before = audit::snapshot();
    let mut child = run.spawn(backend, &[]);
    let pid = child.id();
    wait_for(
        "the first run to be ready",
        Duration::from_secs(60),
        &mut child,
        || run.has_sample("ready_latency"),
    );
    wait_for(
        "the workload's SIGTERM",
        Duration::from_secs(30),
        &mut child,
        || !pids_with("sleep 1021").is_empty(),
    );
    let raw = i32::try_from(pid).unwrap();
    signal(raw, sig);
    // Apart, so the two are two deliveries, well within the workload's 2 s grace period.
    std::thread::sleep(Duration::from_millis(300));
    signal(raw, sig);
    let out = finish(child);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains(&format!(
            "forced teardown: torn down the {backend} instance (run 1)"
        )),
        "{err}"
    );
    assert!(err.contains("nothing was left"), "{err}");
    assert_eq!(run.meta()["status"], "interrupted");
    let rows = run.rows();
    // The forced teardown skipped the grace period, so it is no teardown time.
    assert!(!rows.iter().any(|r| r.1 == "teardown_latency"), "{rows:#?}");
    assert_eq!(
        rows.iter().filter(|r| r.1 == "ready_latency").count(),
        1,
        "{rows:#?}"
    );
    assert!(
        !run.out().join("summary.json").exists(),
        "a forced stop renders no report"
    );
    run.assert_nothing_left(&before, pid);
}

#[test]
fn a_second_sigint_during_teardown_forces_it_on_native_and_runc() {
    if !usable(BackendKind::Native) || !usable(BackendKind::Runc) {
        return;
    }
    second_signal_during_teardown("native", nix::sys::signal::Signal::SIGINT);
    second_signal_during_teardown("runc", nix::sys::signal::Signal::SIGINT);
}

#[test]
fn a_second_sigterm_during_teardown_forces_it_on_container() {
    if !usable(BackendKind::Container) {
        return;
    }
    second_signal_during_teardown("container", nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_during_teardown_finishes_it_and_exits_130() {
    signal_during_teardown(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_during_teardown_finishes_it_and_exits_130() {
    signal_during_teardown(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn a_vm_on_a_private_network_is_reached_over_its_tap_and_the_tap_goes_with_it() {
    if !vm_host() || !host_has(is_root(), "a tap device needs root") {
        return;
    }
    let run = Run::new(
        "name = \"vmtap\"\nruns = 1\nwarmup = 0\ntimeout_s = 60\n\
         [workload]\napplet = \"http\"\nargs = [\"--port\", \"8080\"]\n\
         [readiness]\nkind = \"http\"\nport = 8080\n\
         [load]\nkind = \"http\"\nduration_s = 2\nconnections = 2\n\
         [resources]\nvcpus = 1\nmemory_mib = 128\nnetwork = \"private\"\n",
    );
    let before = audit::snapshot();
    let mut child = run.spawn("vm", &["--accel", "tcg"]);
    let pid = child.id();
    let tap_prefix = format!("cvm{:04x}vm", pid & 0xffff);
    let taps = || -> Vec<String> {
        std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&tap_prefix))
            .collect()
    };
    wait_for(
        "the guest to be ready",
        Duration::from_secs(90),
        &mut child,
        || run.has_sample("ready_latency"),
    );
    // The guest is reached over the tap: QEMU forwards nothing, so it listens on no port.
    assert_eq!(taps().len(), 1, "expected one tap named {tap_prefix}*");
    // The host never asks for the guest by ARP: its neighbour entry is permanent, with the MAC
    // QEMU's NIC was given.
    let neigh = std::process::Command::new("ip")
        .args(["-4", "neigh", "show", "dev", &taps()[0]])
        .output()
        .expect("ip neigh");
    let neigh = String::from_utf8_lossy(&neigh.stdout).into_owned();
    assert!(
        neigh.contains("lladdr 52:54:00:") && neigh.contains("PERMANENT"),
        "{neigh}"
    );
    let out = finish(child);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let network = run.meta()["backends"][0]["config"]["network"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(network.starts_with("private (tap "), "{network}");
    let rows = run.rows();
    let value = |m: &str| rows.iter().find(|r| r.1 == m).map(|r| r.2);
    assert!(value("http_rps").is_some_and(|v| v > 0.0), "{rows:#?}");
    // Over a tap nothing but the client and the readiness probe reach the server: the counts
    // agree within the two requests in flight at the deadline and the probe requests that gave
    // up unanswered while the guest was slow to answer its first (served later, in the load).
    let (served, counted, unanswered) = (
        value("http_server_requests").unwrap(),
        value("http_requests").unwrap(),
        value("ready_probes_unanswered").expect("an HTTP readiness records its unanswered probes"),
    );
    assert!(
        served >= counted && served <= counted + 2.0 + unanswered,
        "served {served}, counted {counted}, unanswered probes {unanswered}"
    );
    assert!(taps().is_empty(), "tap left behind: {:?}", taps());
    run.assert_nothing_left(&before, pid);
}
