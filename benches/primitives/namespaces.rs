//! namespaces — one child process per iteration, timed from the clone to its reaping (so the
//! kernel's synchronous namespace teardown at exit is included; a network namespace's final
//! cleanup runs later, on a kernel worker, and is not):
//! - `fork`: plain `fork()`, the child `_exit(0)`s, the parent waits — the baseline;
//! - `vfork`: the container backend's clone (`CLONE_VM | CLONE_VFORK`) with no namespace;
//! - `pid`, `mount`, `uts`, `ipc`, `net`, `user`, `cgroup`: that clone with one `CLONE_NEW*`;
//! - `all`: all seven together.

use std::time::Duration;

use criterion::Criterion;
use cvm::sys::bench::{clone_and_exit, fork_and_exit};

use crate::{error_chain, Env};

/// Each namespace case: its name and its `CLONE_NEW*` flag.
pub const NAMESPACES: [(&str, libc::c_int); 7] = [
    ("pid", libc::CLONE_NEWPID),
    ("mount", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("user", libc::CLONE_NEWUSER),
    ("cgroup", libc::CLONE_NEWCGROUP),
];

pub fn benches(c: &mut Criterion, env: &mut Env) {
    // The host is shared and loaded: 3 s per case keeps the medians steady.
    let mut g = c.benchmark_group("namespaces");
    g.sample_size(50).measurement_time(Duration::from_secs(3));
    g.bench_function("fork", |b| {
        b.iter(|| fork_and_exit().expect("fork"));
    });
    g.bench_function("vfork", |b| {
        b.iter(|| clone_and_exit(0).expect("clone"));
    });
    let all = NAMESPACES.iter().fold(0, |acc, (_, f)| acc | f);
    let cases = NAMESPACES.iter().copied().chain([("all", all)]);
    let mut skipped = Vec::new();
    for (name, flags) in cases {
        // Probe once: a user namespace works without root where the kernel allows it.
        if !env.listing {
            if let Err(e) = clone_and_exit(flags) {
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
            b.iter(|| clone_and_exit(flags).expect("clone"));
        });
    }
    g.finish();
    for (case, why) in skipped {
        env.skip(&case, why);
    }
}
