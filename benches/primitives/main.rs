//! Microbenchmarks of the isolation primitives: *why* the end-to-end numbers of `cvm compare`
//! are what they are, primitive by primitive. Run with `cargo bench` (as root
//! for everything; a normal user gets the cases that need no privileges).
//! `cargo bench -- --list` lists every case;
//! `cargo bench -- namespaces` runs one group.
//!
//! One module per criterion group, each of which documents its cases (`group/case`: what one
//! iteration measures): [`namespaces`], [`namespaces_exec`], [`netns_veth`], [`cgroup`],
//! [`rootfs`], [`container`], [`vm`], [`hot_paths`]. This file holds what they share: the host
//! probe with its skip-with-reason record, the names of what they create and the timing loop.
//!
//! Groups that need root, a binary that is missing, or cgroups print why and are skipped; the
//! run ends with a table of the namespace costs as ratios of the plain fork ([`ratios`]).

mod cgroup;
mod container;
mod hot_paths;
mod namespaces;
mod namespaces_exec;
mod netns_veth;
mod ratios;
mod rootfs;
mod vm;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use cvm::image::Image;

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
    namespaces::benches(&mut c, &mut env);
    namespaces_exec::benches(&mut c, &mut env);
    netns_veth::benches(&mut c, &mut env);
    cgroup::benches(&mut c, &mut env);
    rootfs::benches(&mut c, &mut env);
    container::benches(&mut c, &mut env);
    vm::benches(&mut c, &mut env);
    hot_paths::benches(&mut c);
    c.final_summary();
    if !env.listing {
        ratios::print(env.rootfs_pairs);
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
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
