//! cgroup — `cvm::backend::cgroup::Cgroup` (v1 controllers memory, cpu, pids on a v1 or hybrid
//! host; the single v2 directory on a v2 host), attaching a helper `sleep` process:
//! - `v1/create_limits` (or `v2/...`): create the directories and write the memory and CPU limits;
//! - `v1/attach`: move a process in (one `cgroup.procs` write per hierarchy);
//! - `v1/destroy`: remove the (empty) cgroup;
//! - `v1/lifecycle`: create + limits, attach, move out, destroy;
//! - `v2_unified/create`, `v2_unified/attach`, `v2_unified/destroy` (hybrid hosts): the same on the
//!   controller-less v2 tree at `/sys/fs/cgroup/unified` (there is no limit to set there).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use cvm::backend::cgroup::{self, Cgroup, CgroupVersion, Limits};

use crate::{timed, unique_name, Env};

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
    cpuset: None,
    pids: None,
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

pub fn benches(c: &mut Criterion, env: &mut Env) {
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
