//! namespaces_exec — the namespaces cases with an exec of `/bin/true`, through
//! `cvm::sys::spawn_namespaced`:
//! - `plain`: no namespace; `container_set`: pid, mount, uts, ipc, cgroup; `container_set_net`:
//!   those plus net (what the `container` backend creates).

use std::ffi::CString;

use criterion::Criterion;
use nix::unistd::Pid;

use crate::{which, Env};

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
        map_user: None,
    };
    let pid = cvm::sys::spawn_namespaced(spec).expect("spawn /bin/true");
    let status = nix::sys::wait::waitpid(Pid::from_raw(pid), None).expect("wait");
    assert!(
        matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

pub fn benches(c: &mut Criterion, env: &mut Env) {
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
