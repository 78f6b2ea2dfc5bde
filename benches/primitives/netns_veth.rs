//! netns_veth — a network namespace and a veth pair (names `cvmb*`), with `ip` (iproute2):
//! - `ip_netns_add_del`: `ip netns add` + `ip netns del` of a named namespace;
//! - `veth_setup`: cvm's `container::net::setup` (two `ip -batch` runs: the pair, addresses,
//!   links up) for a process already in a new network namespace;
//! - `veth_remove`: cvm's `Link::remove` (`ip link del`);
//! - `netns_veth_create_destroy`: all of it: clone a holder process into a new network
//!   namespace, set up the pair, remove it, kill and reap the holder.

use std::ffi::CString;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use cvm::backend::container::net;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{timed, unique_name, which, Env};

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
            map_user: None,
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

pub fn benches(c: &mut Criterion, env: &mut Env) {
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
