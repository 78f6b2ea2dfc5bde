//! rootfs — one child per iteration, timed from the clone to its reaping:
//! - `unshare_only`: the child unshares a mount namespace and exits;
//! - `mounts_pivot_detach`: the child also does what `cvm-guest init --container` does to the
//!   image of the `startup` scenario: `/` private, bind the image onto itself, proc, sysfs, tmpfs
//!   `/dev` + devpts, tmpfs `/tmp`, read-only remount, `pivot_root`, detach the old root (and the
//!   kernel unmounts it all when it exits). The difference to `unshare_only` is the rootfs setup;
//!   it is printed at the end, both from the two medians and from 200 alternating pairs (the
//!   robust figure on a shared host, whose load drifts between the two cases).

use std::time::Instant;

use criterion::Criterion;
use cvm::sys::bench::{clone_into_rootfs, RootfsMounts};

use crate::{error_chain, wants, Env};

pub fn benches(c: &mut Criterion, env: &mut Env) {
    const GROUP: &str = "rootfs";
    if !env.needs_root(GROUP) {
        return;
    }
    let mounts = if env.listing {
        None
    } else {
        match env.image() {
            Ok((_, image)) => Some(RootfsMounts::new(image.rootfs()).expect("paths")),
            Err(e) => return env.skip(GROUP, e),
        }
    };
    let mut g = c.benchmark_group(GROUP);
    g.sample_size(30);
    g.bench_function("unshare_only", |b| {
        b.iter(|| clone_into_rootfs(None).expect("unshare child"));
    });
    g.bench_function("mounts_pivot_detach", |b| {
        let mounts = mounts.as_ref().expect("image");
        b.iter(|| {
            clone_into_rootfs(Some(mounts))
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

/// `n` alternating (unshare only, full rootfs setup) children: the medians of each and of the
/// paired differences, in seconds.
fn paired_rootfs(mounts: &RootfsMounts, n: usize) -> [f64; 3] {
    let mut only = Vec::with_capacity(n);
    let mut full = Vec::with_capacity(n);
    let mut delta = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        clone_into_rootfs(None).expect("unshare child");
        let a = t.elapsed().as_secs_f64();
        let t = Instant::now();
        clone_into_rootfs(Some(mounts)).expect("rootfs child");
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
