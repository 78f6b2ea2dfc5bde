//! Microbenchmarks of the isolation primitives: *why* the end-to-end numbers of `cvm compare`
//! are what they are, primitive by primitive. Run with `cargo bench` (as root for everything;
//! a normal user gets the cases that need no privileges). `cargo bench -- --list` lists every
//! case; `cargo bench -- namespaces` runs one group.
//!
//! Cases (`group/case`: what one iteration measures):
//!
//! namespaces — one child process per iteration, timed from the clone to its reaping (so the
//! kernel's synchronous namespace teardown at exit is included; a network namespace's final
//! cleanup runs later, on a kernel worker, and is not):
//! - `fork`: plain `fork()`, the child `_exit(0)`s, the parent waits — the baseline;
//! - `vfork`: the container backend's clone (`CLONE_VM | CLONE_VFORK`) with no namespace;
//! - `pid`, `mount`, `uts`, `ipc`, `net`, `user`, `cgroup`: that clone with one `CLONE_NEW*`;
//! - `all`: all seven together.
//!
//! namespaces_exec — the same with an exec of `/bin/true` (what the DESIGN's launch floor
//! measured), through `cvm::sys::spawn_namespaced`:
//! - `plain`: no namespace; `container_set`: pid, mount, uts, ipc, cgroup; `container_set_net`:
//!   those plus net (what the `container` backend creates).
//!
//! netns_veth — a network namespace and a veth pair (names `cvmb*`), with `ip` (iproute2):
//! - `ip_netns_add_del`: `ip netns add` + `ip netns del` of a named namespace;
//! - `veth_setup`: cvm's `container::net::setup` (two `ip -batch` runs: the pair, addresses,
//!   links up) for a process already in a new network namespace;
//! - `veth_remove`: cvm's `Link::remove` (`ip link del`);
//! - `netns_veth_create_destroy`: all of it: clone a holder process into a new network
//!   namespace, set up the pair, remove it, kill and reap the holder.
//!
//! cgroup — `cvm::backend::cgroup::Cgroup` (v1 controllers memory, cpu, pids on a v1 or hybrid
//! host; the single v2 directory on a v2 host), attaching a helper `sleep` process:
//! - `v1/create_limits` (or `v2/...`): create the directories and write the memory and CPU limits;
//! - `v1/attach`: move a process in (one `cgroup.procs` write per hierarchy);
//! - `v1/destroy`: remove the (empty) cgroup;
//! - `v1/lifecycle`: create + limits, attach, move out, destroy;
//! - `v2_unified/create`, `v2_unified/attach`, `v2_unified/destroy` (hybrid hosts): the same on the
//!   controller-less v2 tree at `/sys/fs/cgroup/unified` (there is no limit to set there).
//!
//! rootfs — one child per iteration, timed from the clone to its reaping:
//! - `unshare_only`: the child unshares a mount namespace and exits;
//! - `mounts_pivot_detach`: the child also does what `cvm-guest init --container` does to the
//!   image of the `startup` scenario: `/` private, bind the image onto itself, proc, sysfs, tmpfs
//!   `/dev` + devpts, tmpfs `/tmp`, read-only remount, `pivot_root`, detach the old root (and the
//!   kernel unmounts it all when it exits). The difference to `unshare_only` is the rootfs setup;
//!   it is printed at the end, both from the two medians and from 200 alternating pairs (the
//!   robust figure on a shared host, whose load drifts between the two cases).
//!
//! container — `cvm-guest hello` from the `startup` scenario's image, from the call to the
//! backend's `launch` (which includes cvm's cgroup creation, or runc's bundle writing) to:
//! - `cvm_spawn_to_exec`: cvm's clone has exec'd `cvm-guest init` (the `spawn` phase);
//! - `cvm_spawn_to_init`, `runc_spawn_to_init`: init's first marker arrived (the exec as seen
//!   from inside; comparable between the two runtimes);
//! - `cvm_spawn_to_exit`, `runc_spawn_to_exit`: the container's init (cvm) or `runc run`
//!   (runc) exited — the whole container life of a workload that exits at once;
//! - `native_floor_to_ready`: a bare fork+exec of `cvm-guest hello` on the host to its ready
//!   marker, for reference. Teardown is outside the timing.
//!
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
//!
//! hot_paths — cvm's own per-sample work (no privileges needed):
//! - `pss_read`: `measure::memory::pss_bytes` of this process (`/proc/self/smaps_rollup`);
//! - `sample_write`: one `results::SampleWriter::write` (serialise + flush a CSV row);
//! - `summary_30`, `summary_1000`: `stats::Summary::of` on 30 and 1000 samples (with its 2000
//!   bootstrap resamples);
//! - `bootstrap_ci_30`, `bootstrap_ci_1000`: `stats::bootstrap_median_ci` alone.
//!
//! Groups that need root, a binary that is missing, or cgroups print why and are skipped; the
//! run ends with a table of the namespace costs as ratios of the plain fork.

use std::ffi::CString;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use cvm::backend::cgroup::{self, Cgroup, CgroupVersion, Limits};
use cvm::backend::container::net;
use cvm::backend::{Event, Instance, LaunchContext, Prepared};
use cvm::image::Image;
use cvm::scenario::BackendKind;
use cvm_proto::Marker;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Prefix of every resource name the benchmarks create (links, namespaces, cgroups).
const PREFIX: &str = "cvmb";
/// How long a launched instance gets to reach each event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .nresamples(20_000)
        .configure_from_args();
    let mut env = Env::probe();
    let started = Instant::now();
    namespaces(&mut c, &mut env);
    namespaces_exec(&mut c, &mut env);
    netns_veth(&mut c, &mut env);
    cgroups(&mut c, &mut env);
    rootfs(&mut c, &mut env);
    containers(&mut c, &mut env);
    vm::benches(&mut c, &mut env);
    hot_paths(&mut c);
    c.final_summary();
    if !env.listing {
        print_ratios(env.rootfs_pairs);
        let retries = vm::QMP_RETRIES.load(Ordering::Relaxed);
        if retries > 0 {
            eprintln!(
                "note: {retries} QEMU start(s) failed their QMP handshake and were retried \
                 (not counted in vm/qemu_none_to_qmp_ready)"
            );
        }
        for (group, reason) in &env.skipped {
            eprintln!("skipped {group}: {reason}");
        }
        eprintln!("all groups took {:.1} s", started.elapsed().as_secs_f64());
    }
}

/// What the host offers, probed once. In `--list` mode nothing is probed and every case is
/// registered, so the list is complete on any host.
struct Env {
    listing: bool,
    root: bool,
    /// The `startup` scenario's image, built on first use (`Err` holds why it cannot be).
    image: Option<Result<(cvm::scenario::Scenario, Image), String>>,
    skipped: Vec<(String, String)>,
    /// Medians of alternating rootfs children: unshare only, full setup, paired difference (s).
    rootfs_pairs: Option<[f64; 3]>,
}

impl Env {
    fn probe() -> Env {
        let args: Vec<String> = std::env::args().collect();
        Env {
            listing: args.iter().any(|a| a == "--list"),
            root: nix::unistd::geteuid().is_root(),
            image: None,
            skipped: Vec::new(),
            rootfs_pairs: None,
        }
    }

    /// Records (and prints at once) why `group` does not run here.
    fn skip(&mut self, group: &str, reason: impl Into<String>) {
        let reason = reason.into();
        eprintln!("skipping {group}: {reason}");
        self.skipped.push((group.to_string(), reason));
    }

    /// `None` (and the group skipped) unless running as root or listing.
    fn needs_root(&mut self, group: &str) -> bool {
        if self.root || self.listing {
            return true;
        }
        self.skip(group, "needs root (run `sudo cargo bench`)");
        false
    }

    fn image(&mut self) -> Result<(cvm::scenario::Scenario, Image), String> {
        self.image
            .get_or_insert_with(|| {
                locate_guest()?;
                let scenario = cvm::scenario::load("startup").map_err(|e| e.to_string())?;
                let image = Image::build(&scenario).map_err(|e| format!("{e:#}"))?;
                Ok((scenario, image))
            })
            .clone()
    }
}

/// Makes `cvm-guest` findable: `Image::build` looks beside the running executable (release/),
/// but `cargo bench` does not build the guest package's binary; a `cargo build` (debug) or
/// `cargo build --release` does.
fn locate_guest() -> Result<(), String> {
    if cvm::image::find_guest().is_ok() {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<triple>/<profile>/deps/primitives-<hash>: try every profile directory.
    let triple_dir = exe
        .ancestors()
        .nth(3)
        .ok_or("cannot locate the target directory")?;
    for profile in ["release", "debug"] {
        let candidate = triple_dir.join(profile).join("cvm-guest");
        if candidate.is_file() {
            // Single-threaded here: nothing else reads the environment meanwhile.
            std::env::set_var("CVM_GUEST", &candidate);
            return Ok(());
        }
    }
    Err("cvm-guest is not built (run `cargo build` first, or set CVM_GUEST)".into())
}

fn which(tool: &str) -> Option<PathBuf> {
    cvm::backend::find_binary(tool)
}

/// A unique name `cvmb<pid><sep><n>`, at most 15 characters (the kernel's limit for links).
fn unique_name(sep: char) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed) % 100_000;
    format!("{PREFIX}{}{sep}{n}", std::process::id() % 100_000)
}

/// Times `iters` runs of `op`, each with an untimed `setup` before and `cleanup` after.
fn timed<S, T, R>(
    iters: u64,
    mut setup: impl FnMut() -> S,
    mut op: impl FnMut(&mut S) -> T,
    mut cleanup: impl FnMut(S, T) -> R,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut s = setup();
        let start = Instant::now();
        let t = op(&mut s);
        total += start.elapsed();
        black_box(cleanup(s, t));
    }
    total
}

// ---------------------------------------------------------------------------------------------
// namespaces

const NAMESPACES: [(&str, libc::c_int); 7] = [
    ("pid", libc::CLONE_NEWPID),
    ("mount", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("user", libc::CLONE_NEWUSER),
    ("cgroup", libc::CLONE_NEWCGROUP),
];

fn namespaces(c: &mut Criterion, env: &mut Env) {
    // The host is shared and loaded: 3 s per case keeps the medians steady.
    let mut g = c.benchmark_group("namespaces");
    g.sample_size(50).measurement_time(Duration::from_secs(3));
    g.bench_function("fork", |b| {
        b.iter(|| cvm::sys::fork_and_exit().expect("fork"));
    });
    g.bench_function("vfork", |b| {
        b.iter(|| cvm::sys::clone_and_exit(0).expect("clone"));
    });
    let all = NAMESPACES.iter().fold(0, |acc, (_, f)| acc | f);
    let cases = NAMESPACES.iter().copied().chain([("all", all)]);
    let mut skipped = Vec::new();
    for (name, flags) in cases {
        // Probe once: a user namespace works without root where the kernel allows it.
        if !env.listing {
            if let Err(e) = cvm::sys::clone_and_exit(flags) {
                let why = if env.root {
                    format!("{e:#}: {}", error_chain(&e))
                } else {
                    "needs root".to_string()
                };
                skipped.push((format!("namespaces/{name}"), why));
                continue;
            }
        }
        g.bench_function(name, |b| {
            b.iter(|| cvm::sys::clone_and_exit(flags).expect("clone"));
        });
    }
    g.finish();
    for (case, why) in skipped {
        env.skip(&case, why);
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// Clone into `flags` namespaces, exec `/bin/true`, reap.
fn spawn_true(program: &CString, flags: libc::c_int) {
    let spec = cvm::sys::NamespacedExec {
        program: program.clone(),
        argv: vec![c"true".into()],
        envp: Vec::new(),
        clone_flags: flags,
        unshare_after_join: 0,
        cgroup_procs: Vec::new(),
        fds: Vec::new(),
    };
    let pid = cvm::sys::spawn_namespaced(spec).expect("spawn /bin/true");
    let status = nix::sys::wait::waitpid(Pid::from_raw(pid), None).expect("wait");
    assert!(
        matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

fn namespaces_exec(c: &mut Criterion, env: &mut Env) {
    let Some(true_bin) = which("true") else {
        return env.skip("namespaces_exec", "no `true` binary on PATH");
    };
    let program = CString::new(true_bin.as_os_str().as_encoded_bytes()).expect("path");
    let container_set = libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP;
    let mut g = c.benchmark_group("namespaces_exec");
    g.sample_size(30);
    g.bench_function("plain", |b| b.iter(|| spawn_true(&program, 0)));
    if env.root || env.listing {
        g.bench_function("container_set", |b| {
            b.iter(|| spawn_true(&program, container_set));
        });
        g.bench_function("container_set_net", |b| {
            b.iter(|| spawn_true(&program, container_set | libc::CLONE_NEWNET));
        });
    }
    g.finish();
    if !(env.root || env.listing) {
        env.skip("namespaces_exec/container_set*", "needs root");
    }
}

// ---------------------------------------------------------------------------------------------
// netns_veth

/// A process of ours in a new network namespace (what a container's init is to its netns);
/// killed and reaped on drop.
struct NetnsHolder {
    pid: i32,
}

impl NetnsHolder {
    fn start(sleep: &CString) -> NetnsHolder {
        let spec = cvm::sys::NamespacedExec {
            program: sleep.clone(),
            argv: vec![c"sleep".into(), c"1000".into()],
            envp: Vec::new(),
            clone_flags: libc::CLONE_NEWNET,
            unshare_after_join: 0,
            cgroup_procs: Vec::new(),
            fds: Vec::new(),
        };
        let pid = cvm::sys::spawn_namespaced(spec).expect("clone the netns holder");
        NetnsHolder { pid }
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(self.pid), None);
    }
}

/// A named network namespace (`ip netns add`), deleted on drop if still there.
struct NamedNetns {
    name: String,
    deleted: bool,
}

impl NamedNetns {
    fn add() -> NamedNetns {
        let name = unique_name('n');
        ip(&["netns", "add", &name]);
        NamedNetns {
            name,
            deleted: false,
        }
    }
    fn delete(mut self) {
        self.deleted = true;
        ip(&["netns", "del", &self.name]);
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn netns_veth(c: &mut Criterion, env: &mut Env) {
    const GROUP: &str = "netns_veth";
    if !env.needs_root(GROUP) {
        return;
    }
    if !env.listing && which("ip").is_none() {
        return env.skip(GROUP, "`ip` is missing (install iproute2)");
    }
    let sleep = which("sleep").unwrap_or_else(|| "/bin/sleep".into());
    let sleep = CString::new(sleep.as_os_str().as_encoded_bytes()).expect("path");
    let subnet = net::Subnet::from_env().expect("subnet");
    // net::setup names the host end `cvm` + the run id's first 6 characters + a counter.
    let run_id = "bench";
    let mut g = c.benchmark_group(GROUP);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(15)
        .measurement_time(Duration::from_millis(1500));
    g.bench_function("ip_netns_add_del", |b| {
        b.iter(|| NamedNetns::add().delete());
    });
    // Its untimed cleanup (the veth removal) costs several times the timed part.
    g.measurement_time(Duration::from_millis(600));
    g.bench_function("veth_setup", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || NetnsHolder::start(&sleep),
                |h| net::setup(subnet, run_id, h.pid).expect("veth setup"),
                |h, mut link| {
                    link.remove().expect("veth remove");
                    drop(h);
                },
            )
        });
    });
    g.measurement_time(Duration::from_millis(1500));
    g.bench_function("veth_remove", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || {
                    let h = NetnsHolder::start(&sleep);
                    let link = net::setup(subnet, run_id, h.pid).expect("veth setup");
                    (h, link)
                },
                |(_, link)| link.remove().expect("veth remove"),
                |s, ()| drop(s),
            )
        });
    });
    g.bench_function("netns_veth_create_destroy", |b| {
        b.iter(|| {
            let h = NetnsHolder::start(&sleep);
            let mut link = net::setup(subnet, run_id, h.pid).expect("veth setup");
            link.remove().expect("veth remove");
            drop(h);
        });
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// cgroup

/// A `sleep` moved in and out of the cgroups under test; killed on drop.
struct Helper(std::process::Child);

impl Helper {
    fn start() -> Helper {
        Helper(
            Command::new("sleep")
                .arg("100000")
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn sleep"),
        )
    }
    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const LIMITS: Limits = Limits {
    memory_bytes: 256 << 20,
    cpus: 1,
};

/// Writes `pid` into `cgroup.procs` of each directory.
fn move_to(dirs: &[PathBuf], pid: &str) {
    for d in dirs {
        std::fs::write(d.join("cgroup.procs"), pid).expect("write cgroup.procs");
    }
}

/// Moves `pid` back to the parent (cvm's own cgroup) of each directory.
fn move_out(dirs: &[PathBuf], pid: &str) {
    let parents: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.parent().expect("parent").to_path_buf())
        .collect();
    move_to(&parents, pid);
}

fn cgroups(c: &mut Criterion, env: &mut Env) {
    const GROUP: &str = "cgroup";
    if !env.needs_root(GROUP) {
        return;
    }
    let version = cgroup::detect();
    if !env.listing && version.is_none() {
        return env.skip(GROUP, "cgroups are not mounted under /sys/fs/cgroup");
    }
    let label = match version {
        Some(CgroupVersion::V2) => "v2",
        _ => "v1",
    };
    let unified = Path::new("/sys/fs/cgroup/unified");
    let hybrid = version == Some(CgroupVersion::Hybrid) || env.listing;
    let helper = std::cell::OnceCell::new();
    let helper = || helper.get_or_init(Helper::start).pid();
    let create = || Cgroup::create(&unique_name('c'), LIMITS).expect("create cgroup");

    // The untimed setup and cleanup of these cases (create, remove) cost several times the timed
    // part: short measurement times keep the group's wall time to about 30 s.
    let mut g = c.benchmark_group(GROUP);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(700));
    g.bench_function(format!("{label}/create_limits"), |b| {
        b.iter_custom(|iters| timed(iters, || (), |()| create(), |(), cg| drop(cg)));
    });
    g.bench_function(format!("{label}/attach"), |b| {
        let pid = helper();
        b.iter_custom(|iters| {
            timed(
                iters,
                create,
                |cg| move_to(cg.dirs(), &pid),
                |cg, ()| move_out(cg.dirs(), &pid),
            )
        });
    });
    g.bench_function(format!("{label}/destroy"), |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                create,
                |cg| cg.remove().expect("remove cgroup"),
                |cg, ()| drop(cg),
            )
        });
    });
    g.bench_function(format!("{label}/lifecycle"), |b| {
        let pid = helper();
        b.iter(|| {
            let mut cg = create();
            move_to(cg.dirs(), &pid);
            move_out(cg.dirs(), &pid);
            cg.remove().expect("remove cgroup");
        });
    });
    if hybrid {
        // No controllers are enabled in a hybrid host's v2 tree: there is no limit to write.
        let mkdir = || {
            let d = unified.join(unique_name('u'));
            std::fs::create_dir(&d).expect("mkdir in the v2 tree");
            V2Dir(d)
        };
        g.bench_function("v2_unified/create", |b| {
            b.iter_custom(|iters| timed(iters, || (), |()| mkdir(), |(), d| drop(d)));
        });
        g.bench_function("v2_unified/attach", |b| {
            let pid = helper();
            b.iter_custom(|iters| {
                timed(
                    iters,
                    mkdir,
                    |d| move_to(std::slice::from_ref(&d.0), &pid),
                    |d, ()| move_out(std::slice::from_ref(&d.0), &pid),
                )
            });
        });
        g.bench_function("v2_unified/destroy", |b| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    mkdir,
                    |d| std::fs::remove_dir(&d.0).expect("rmdir"),
                    |d, ()| drop(d),
                )
            });
        });
    } else if version == Some(CgroupVersion::V1) {
        env.skip("cgroup/v2_unified", "this host has no v2 tree");
    }
    g.finish();
}

/// A directory in the v2 tree, removed on drop if still there.
struct V2Dir(PathBuf);

impl Drop for V2Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// rootfs

fn rootfs(c: &mut Criterion, env: &mut Env) {
    const GROUP: &str = "rootfs";
    if !env.needs_root(GROUP) {
        return;
    }
    let mounts = if env.listing {
        None
    } else {
        match env.image() {
            Ok((_, image)) => Some(cvm::sys::RootfsMounts::new(image.rootfs()).expect("paths")),
            Err(e) => return env.skip(GROUP, e),
        }
    };
    let mut g = c.benchmark_group(GROUP);
    g.sample_size(30);
    g.bench_function("unshare_only", |b| {
        b.iter(|| cvm::sys::clone_into_rootfs(None).expect("unshare child"));
    });
    g.bench_function("mounts_pivot_detach", |b| {
        let mounts = mounts.as_ref().expect("image");
        b.iter(|| {
            cvm::sys::clone_into_rootfs(Some(mounts))
                .map_err(|e| format!("{e}: {}", error_chain(&e)))
                .expect("rootfs child")
        });
    });
    g.finish();
    // The two cases above run seconds apart, and a shared host's load drifts: the difference of
    // their medians can even come out negative. Alternating pairs see the same load.
    if let Some(m) = mounts.as_ref().filter(|_| !env.listing && wants("rootfs/")) {
        env.rootfs_pairs = Some(paired_rootfs(m, 200));
    }
}

/// True unless the command line filters benchmarks and none of its filters matches `prefix`
/// (a rough check: criterion's filters are regexes; plain group names are what people type).
fn wants(prefix: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| prefix.contains(f.trim_start_matches('^')))
}

/// `n` alternating (unshare only, full rootfs setup) children: the medians of each and of the
/// paired differences, in seconds.
fn paired_rootfs(mounts: &cvm::sys::RootfsMounts, n: usize) -> [f64; 3] {
    let mut only = Vec::with_capacity(n);
    let mut full = Vec::with_capacity(n);
    let mut delta = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        cvm::sys::clone_into_rootfs(None).expect("unshare child");
        let a = t.elapsed().as_secs_f64();
        let t = Instant::now();
        cvm::sys::clone_into_rootfs(Some(mounts)).expect("rootfs child");
        let b = t.elapsed().as_secs_f64();
        only.push(a);
        full.push(b);
        delta.push(b - a);
    }
    [
        cvm::stats::median(&only),
        cvm::stats::median(&full),
        cvm::stats::median(&delta),
    ]
}

// ---------------------------------------------------------------------------------------------
// container

/// Which instant of a launch a case stops at.
#[derive(Clone, Copy)]
enum Until {
    Exec,
    Init,
    Exit,
}

/// Launches one instance and returns the time from the `launch` call to `until`. The instance
/// is then left to exit by itself (`hello` exits at once; a teardown of a running init would
/// wait out its stop grace period) and torn down, untimed.
fn launch_until(prepared: &dyn Prepared, until: Until) -> Duration {
    static INSTANCE: AtomicU32 = AtomicU32::new(0);
    let ctx = LaunchContext {
        instance: INSTANCE.fetch_add(1, Ordering::Relaxed),
        run_id: format!("{PREFIX}{}", std::process::id()),
    };
    let start = Instant::now();
    let mut instance = prepared.launch(&ctx).expect("launch");
    let at = wait_for(instance.as_ref(), until);
    let took = at.duration_since(start);
    instance.teardown().expect("teardown");
    took
}

/// Waits for `until` and for the exit (the exit is watched on one thread and markers are read
/// on another, so it can arrive before the last markers); returns when `until` happened.
fn wait_for(instance: &dyn Instance, until: Until) -> Instant {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let mut output = Vec::new();
    let mut target = None;
    let mut exited = false;
    while target.is_none() || !exited {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match instance.events().recv_timeout(left) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no event in time (exited: {exited}); output: {output:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("events ended (exited: {exited}); output: {output:?}")
            }
        };
        match (until, event) {
            (Until::Exec, Event::Phase("spawn", at)) => target = Some(at),
            (Until::Init, Event::Marker(Marker::Init, at)) => target = Some(at),
            (_, Event::Exited(info, at)) => {
                assert!(info.success(), "{info}; output: {output:?}");
                exited = true;
                if matches!(until, Until::Exit) {
                    target = Some(at);
                }
            }
            (_, Event::Output(line)) => output.push(line),
            (_, Event::Marker(Marker::Error(e), _)) => output.push(e),
            _ => {}
        }
    }
    target.expect("seen")
}

fn containers(c: &mut Criterion, env: &mut Env) {
    const GROUP: &str = "container";
    if !env.needs_root(GROUP) {
        return;
    }
    let mut cvm_prepared: Option<Box<dyn Prepared>> = None;
    let mut runc_prepared: Option<Box<dyn Prepared>> = None;
    let mut guest = None;
    if !env.listing {
        let (scenario, image) = match env.image() {
            Ok(x) => x,
            Err(e) => return env.skip(GROUP, e),
        };
        guest = cvm::image::find_guest().ok();
        let opts = cvm::backend::HostOptions::default();
        for (kind, slot) in [
            (BackendKind::Container, &mut cvm_prepared),
            (BackendKind::Runc, &mut runc_prepared),
        ] {
            let backend = cvm::backend::create(kind, &opts);
            match backend.availability() {
                cvm::backend::Availability::Available => match backend.prepare(&scenario, &image) {
                    Ok(p) => *slot = Some(p),
                    Err(e) => env.skip(
                        &format!("{GROUP}/{kind}"),
                        format!("{e}: {}", error_chain(&e)),
                    ),
                },
                cvm::backend::Availability::Unavailable { reason, hint } => {
                    env.skip(&format!("{GROUP}/{kind}"), format!("{reason} ({hint})"))
                }
            }
        }
    }
    // Each iteration also waits (untimed) for the exit and tears down: 1.5 s of timed
    // measurement is 3-5 s of wall time per case.
    let mut g = c.benchmark_group(GROUP);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(15)
        .measurement_time(Duration::from_millis(1500));
    let cases = [
        ("cvm", "spawn_to_exec", Until::Exec),
        ("cvm", "spawn_to_init", Until::Init),
        ("cvm", "spawn_to_exit", Until::Exit),
        ("runc", "spawn_to_init", Until::Init),
        ("runc", "spawn_to_exit", Until::Exit),
    ];
    for (runtime, what, until) in cases {
        let prepared = if runtime == "cvm" {
            &cvm_prepared
        } else {
            &runc_prepared
        };
        if prepared.is_none() && !env.listing {
            continue;
        }
        g.bench_function(format!("{runtime}_{what}"), |b| {
            let p = prepared.as_deref().expect("prepared");
            b.iter_custom(|iters| (0..iters).map(|_| launch_until(p, until)).sum());
        });
    }
    if guest.is_some() || env.listing {
        g.bench_function("native_floor_to_ready", |b| {
            let guest = guest.as_deref().expect("guest");
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        cvm::backend::native::fork_exec_floor(guest, EVENT_TIMEOUT).expect("floor")
                    })
                    .sum()
            });
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// vm

mod vm {
    use super::*;
    use cvm::backend::vm::kernel::{self, Kernel};
    use cvm::backend::vm::qmp::Qmp;
    use cvm::image::initramfs::{self, Compression, InitramfsSpec};

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
}

// ---------------------------------------------------------------------------------------------
// hot_paths

fn hot_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_paths");
    g.sample_size(30);
    let me = std::process::id();
    g.bench_function("pss_read", |b| {
        b.iter(|| cvm::measure::memory::pss_bytes(black_box(me)).expect("pss"));
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer =
        cvm::results::SampleWriter::create(&dir.path().join("samples.csv")).expect("writer");
    let mut row = sample_row();
    g.bench_function("sample_write", |b| {
        b.iter(|| {
            row.iteration = row.iteration.wrapping_add(1);
            writer.write(black_box(&row)).expect("write");
        });
    });
    let mut rng = fastrand::Rng::with_seed(7);
    // Startup latencies: a skewed distribution around 10 ms with a few slow outliers.
    let mut samples =
        |n: usize| -> Vec<f64> { (0..n).map(|_| 0.01 * (1.0 + rng.f64().powi(4))).collect() };
    for n in [30, 1000] {
        if n == 1000 {
            // About 60 ms each: ten single-iteration samples.
            g.sampling_mode(SamplingMode::Flat).sample_size(10);
        }
        let v = samples(n);
        g.bench_function(format!("summary_{n}"), |b| {
            b.iter(|| cvm::stats::Summary::of(black_box(&v)).expect("summary"));
        });
        g.bench_function(format!("bootstrap_ci_{n}"), |b| {
            b.iter(|| {
                cvm::stats::bootstrap_median_ci(
                    black_box(&v),
                    cvm::stats::BOOTSTRAP_RESAMPLES,
                    cvm::stats::CONFIDENCE,
                    cvm::stats::BOOTSTRAP_SEED,
                )
            });
        });
    }
    g.finish();
    drop(writer);
    let _ = std::io::stderr().flush();
}

fn sample_row() -> cvm::results::SampleRow {
    cvm::results::SampleRow {
        run_id: "2026-01-01T00-00-00-startup".into(),
        scenario: "startup".into(),
        backend: "container".into(),
        iteration: 0,
        phase: cvm::results::Phase::Measure,
        metric: "ready_latency".into(),
        value: 0.012_345_678,
        unit: "s".into(),
        host: "bench-host".into(),
        kernel: "6.1.0-18-amd64".into(),
        cpu_model: "Intel(R) Xeon(R) CPU".into(),
        ncpu: 2,
        mem_total: 24 << 30,
        accel: "tcg".into(),
        qemu_version: "7.2.0".into(),
        cvm_version: "0.1.0".into(),
        git_sha: "0123456789ab".into(),
        config: "cgroup=hybrid (v1 controllers);network=none (loopback only)".into(),
        note: String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// the closing table

/// criterion's output directory (where it keeps `<group>/<case>/new/estimates.json`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(Path::new(&target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .map(|a| a.join("criterion"))
        .find(|d| d.is_dir())
}

/// The median of the latest run of `group/case`, in seconds.
fn median(dir: &Path, group: &str, case: &str) -> Option<f64> {
    let path = dir.join(group).join(case).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64().map(|ns| ns / 1e9)
}

/// Prints each namespace's cost, as the time it adds to the same clone without namespaces
/// (`vfork`), and that as a multiple of a plain fork; and the rootfs setup's cost.
fn print_ratios(rootfs_pairs: Option<[f64; 3]>) {
    let Some(dir) = criterion_dir() else {
        return;
    };
    let ns = |case: &str| median(&dir, "namespaces", case);
    let (Some(fork), Some(vfork)) = (ns("fork"), ns("vfork")) else {
        return;
    };
    println!();
    println!("namespaces (medians; `added` is over the same clone without namespaces, `vfork`):");
    println!(
        "{:<8} {:>10} {:>11} {:>13}",
        "case", "median", "added", "added / fork"
    );
    println!(
        "{:<8} {:>7.1} us {:>11} {:>13}",
        "fork",
        fork * 1e6,
        "-",
        "1 fork"
    );
    println!(
        "{:<8} {:>7.1} us {:>11} {:>13}",
        "vfork",
        vfork * 1e6,
        "-",
        "-"
    );
    let all = NAMESPACES.iter().map(|(n, _)| *n).chain(["all"]);
    for case in all {
        if let Some(m) = ns(case) {
            let added = m - vfork;
            println!(
                "{case:<8} {:>7.1} us {:>8.1} us {:>12.2}x",
                m * 1e6,
                added * 1e6,
                added / fork
            );
        }
    }
    if let (Some(only), Some(full)) = (
        median(&dir, "rootfs", "unshare_only"),
        median(&dir, "rootfs", "mounts_pivot_detach"),
    ) {
        println!(
            "rootfs (criterion medians): unshare only {:.1} us, with mounts + pivot_root + \
             detach {:.1} us: difference {:.1} us",
            only * 1e6,
            full * 1e6,
            (full - only) * 1e6
        );
    }
    if let Some([only, full, delta]) = rootfs_pairs {
        println!(
            "rootfs (200 alternating pairs, medians): unshare only {:.1} us, full {:.1} us; \
             mounts + pivot_root + detach add {:.1} us ({:.2}x a fork)",
            only * 1e6,
            full * 1e6,
            delta * 1e6,
            delta / fork
        );
    }
}
