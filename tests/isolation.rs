//! Isolation beyond the container tests' basics (tests/container.rs checks PIDs, mounts, hostname,
//! the read-only rootfs and CapEff), on the container backends `container`, `runc` and `gvisor`
//! (whose limits are the same bundle's, applied to the Sentry's cgroup):
//!
//! - device access is denied: a workload holding `CAP_MKNOD` (Docker's default set has it) may
//!   create a node for the host's disk, or for `/dev/mem`, wherever it can write, but it must not
//!   be able to open one;
//! - no capability comes back after exec: a grandchild of the workload has exactly Docker's set
//!   (effective, permitted, bounding), nothing inheritable or ambient, and `no_new_privs`;
//! - the CPU limit holds under load: two busy loops in a 1-vCPU instance get about one CPU of
//!   time, and the cgroup reports throttling.
//!
//! QEMU's isolation (`-sandbox`, nothing listening beyond loopback) is checked on the booted VM
//! of tests/faults_backends.rs, which has to boot one anyway.
//!
//! They need root, cgroups, runc and a built `cvm-guest`; without them they skip (or fail under
//! `CVM_REQUIRE_HOST=1`). Each audits only the resources carrying its own run token.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cvm::audit;
use cvm::scenario::BackendKind;

use common::instances::*;

/// Runs `script` (its stderr is the report) in a fresh instance of `kind`, tears it down and
/// audits; returns the report lines.
fn report(kind: BackendKind, script: &str, tag: &str) -> Vec<String> {
    let prepared = prepare(kind, &scenario(&shell(script), "memory_mib = 64"));
    let token = token(tag);
    let before = audit::snapshot();
    let mut instance = launch(prepared.as_ref(), &token);
    let (lines, code) = run_to_exit(instance.as_ref());
    instance.teardown().expect("teardown failed");
    assert_eq!(code, Some(0), "{kind}: {lines:#?}");
    assert_no_leaks(&before, &token);
    lines
}

/// The host's first disk (major, minor) from /proc/partitions: what a workload would go for.
fn host_disk() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/partitions").ok()?;
    text.lines().skip(2).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?))
    })
}

/// Host device nodes a container must not open, as (name, mknod type, major, minor, host path),
/// kept only where the host itself can open the node: otherwise a refusal inside the container
/// would prove nothing (the reference host refuses even root a read of its disk).
fn forbidden_devices() -> Vec<(&'static str, char, u32, u32)> {
    let mut nodes = vec![
        ("kmsg", 'c', 1, 11, "/dev/kmsg".to_string()),
        ("kvm", 'c', 10, 232, "/dev/kvm".into()),
    ];
    if let Some((major, minor)) = host_disk() {
        let name = std::fs::read_to_string("/proc/partitions")
            .ok()
            .and_then(|t| {
                t.lines()
                    .nth(2)
                    .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            })
            .unwrap_or_default();
        nodes.push(("disk", 'b', major, minor, format!("/dev/{name}")));
    }
    nodes
        .into_iter()
        .filter(|(name, _, _, _, path)| {
            let ok = std::fs::File::open(path).is_ok();
            if !ok {
                eprintln!("not checking {name}: the host itself cannot open {path}");
            }
            ok
        })
        .map(|(name, kind, major, minor, _)| (name, kind, major, minor))
        .collect()
}

fn device_access_is_denied(kind: BackendKind) {
    if !usable(kind) {
        return;
    }
    let nodes = forbidden_devices();
    assert!(
        nodes.iter().any(|n| n.0 == "kmsg"),
        "the host cannot open /dev/kmsg: nothing to check against"
    );
    // For every place the workload can write: create the node (CAP_MKNOD, in Docker's default
    // set, may allow that much) and try to open it; opening is what must fail.
    let mut script = String::from("{\n");
    for (name, t, major, minor) in &nodes {
        script.push_str(&format!(
            r#"for dir in /dev /dev/shm /tmp; do
            n="$dir/cvm-{name}"
            if busybox mknod "$n" {t} {major} {minor} 2>/dev/null; then mk=created; else mk=refused; fi
            if (exec 5<"$n") 2>/dev/null; then op=OPENED; else op=denied; fi
            echo "{name}$(echo "$dir" | busybox tr / _)=$mk,$op"
        done
"#
        ));
    }
    script.push_str(
        r#"if busybox mkdir -p /tmp/m && busybox mount -t tmpfs none /tmp/m 2>/dev/null; then echo mount=MOUNTED; else echo mount=refused; fi
        if echo x > /dev/null && busybox dd if=/dev/zero of=/dev/null bs=1 count=1 2>/dev/null; then echo devnull=usable; else echo devnull=broken; fi
        if echo x > /dev/shm/f; then echo shm=writable; else echo shm=readonly; fi
    } >&2"#,
    );
    let lines = report(kind, &script, "v");
    for (name, ..) in &nodes {
        for dir in ["_dev", "_dev_shm", "_tmp"] {
            let v = value(&lines, &format!("{name}{dir}"));
            assert!(
                v.ends_with(",denied"),
                "{kind}: the workload could open the host's {name} through a node in {} ({v}); all: {lines:#?}",
                dir.replace('_', "/")
            );
        }
    }
    assert_eq!(value(&lines, "mount"), "refused", "{kind}: {lines:#?}");
    // The nodes a workload is given still work.
    assert_eq!(value(&lines, "devnull"), "usable", "{kind}: {lines:#?}");
    assert_eq!(value(&lines, "shm"), "writable", "{kind}: {lines:#?}");
}

#[test]
fn container_workloads_cannot_open_host_devices() {
    device_access_is_denied(BackendKind::Container);
}

#[test]
fn runc_workloads_cannot_open_host_devices() {
    device_access_is_denied(BackendKind::Runc);
}

#[test]
fn gvisor_workloads_cannot_open_host_devices() {
    device_access_is_denied(BackendKind::Gvisor);
}

fn no_capabilities_come_back_after_exec(kind: BackendKind) {
    if !usable(kind) {
        return;
    }
    // The workload's own status, and that of a grandchild after two more execs.
    let script = r#"{
        busybox awk '/^Cap|^NoNewPrivs/ {print "self_" $1 $2}' /proc/self/status | busybox tr ':' '='
        busybox sh -c "busybox awk '/^Cap|^NoNewPrivs/ {print \"child_\" \$1 \$2}' /proc/self/status" | busybox tr ':' '='
    } >&2"#;
    let lines = report(kind, script, "p");
    // runsc drops CAP_NET_RAW (bit 13) unless told `--net-raw`, and cvm keeps its default;
    // its /proc shows neither CapAmb nor NoNewPrivs, so those are checked on the others only.
    let (caps, checks) = if kind == BackendKind::Gvisor {
        (GVISOR_DEFAULT_CAPS, 4)
    } else {
        (DOCKER_DEFAULT_CAPS, 6)
    };
    for who in ["self", "child"] {
        for (set, want) in [
            ("CapEff", caps),
            ("CapPrm", caps),
            ("CapBnd", caps),
            ("CapInh", "0000000000000000"),
            ("CapAmb", "0000000000000000"),
            ("NoNewPrivs", "1"),
        ]
        .into_iter()
        .take(checks)
        {
            assert_eq!(
                value(&lines, &format!("{who}_{set}")),
                want,
                "{kind}: {who} {set}; all: {lines:#?}"
            );
        }
    }
}

#[test]
fn container_workloads_keep_docker_capabilities_after_exec() {
    no_capabilities_come_back_after_exec(BackendKind::Container);
}

#[test]
fn runc_workloads_keep_docker_capabilities_after_exec() {
    no_capabilities_come_back_after_exec(BackendKind::Runc);
}

#[test]
fn gvisor_workloads_keep_docker_capabilities_after_exec() {
    no_capabilities_come_back_after_exec(BackendKind::Gvisor);
}

/// The cpu controller's directory of `pid` (v1: the hierarchy holding `cpu`; v2: the unified one).
fn cpu_cgroup_of(pid: u32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (id, controllers, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "cpu") {
            return Path::new("/sys/fs/cgroup").join(controllers).join(rel);
        }
        if id == "0" && Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            return Path::new("/sys/fs/cgroup").join(rel);
        }
    }
    panic!("no cpu cgroup for {pid} in {text}");
}

/// `key value` from a cgroup's `cpu.stat`.
fn cpu_stat(dir: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join("cpu.stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} "))?.trim().parse().ok())
}

/// CPU time used so far by the cgroup, in nanoseconds: the cgroup's own counter where its
/// hierarchy has one (v2 `usage_usec`, v1 `cpuacct.usage` when cpu and cpuacct share it), else
/// the sum over its tasks (v1 with cpuacct mounted apart, as on the reference host).
fn cpu_used_ns(dir: &Path) -> u64 {
    if let Some(us) = cpu_stat(dir, "usage_usec") {
        return us * 1000;
    }
    if let Some(ns) = std::fs::read_to_string(dir.join("cpuacct.usage"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
    {
        return ns;
    }
    let ticks = 100u64; // USER_HZ on Linux/x86.
    std::fs::read_to_string(dir.join("tasks"))
        .or_else(|_| std::fs::read_to_string(dir.join("cgroup.threads")))
        .unwrap()
        .lines()
        .filter_map(|t| {
            // The thread's own times: `/proc/<tid>/stat` of a thread group's leader sums every
            // thread of the process, which counted a multi-threaded task (gVisor's Sentry) once
            // per thread.
            let t = t.trim();
            let stat = std::fs::read_to_string(format!("/proc/{t}/task/{t}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command name.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum::<u64>()
        * (1_000_000_000 / ticks)
}

/// The cgroup's CPU quota and period in microseconds (v2 `cpu.max`, v1 `cpu.cfs_*_us`).
fn cpu_quota(dir: &Path) -> (u64, u64) {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    if let Some(text) = read("cpu.max") {
        let mut f = text.split_whitespace();
        let quota = f.next().and_then(|q| q.parse().ok());
        let period = f.next().and_then(|p| p.parse().ok());
        return (
            quota.unwrap_or_else(|| panic!("no quota in cpu.max: {text}")),
            period.unwrap_or_else(|| panic!("no period in cpu.max: {text}")),
        );
    }
    let num = |name: &str| -> u64 {
        read(name)
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no positive {name} in {}", dir.display()))
    };
    (num("cpu.cfs_quota_us"), num("cpu.cfs_period_us"))
}

/// The CPU tests run one at a time: two limited instances competing for this host's CPUs
/// would each get less than its limit.
static CPU_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cpu_limit_holds_under_load(kind: BackendKind) {
    if !usable(kind) {
        return;
    }
    let _one_at_a_time = CPU_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let script =
        "while :; do :; done & while :; do :; done & echo CVM:ready >&$CVM_MARKER_FD; wait";
    let prepared = prepare(
        kind,
        &scenario(&shell(script), "vcpus = 1\nmemory_mib = 64"),
    );
    let token = token("u");
    let before = audit::snapshot();
    let mut instance = launch(prepared.as_ref(), &token);
    wait_marker_ready(instance.as_ref(), "the busy workload");
    let pid = *instance.host_pids().last().expect("no host pids");
    let dir = cpu_cgroup_of(pid);
    assert!(
        dir.to_string_lossy().contains(&token),
        "{kind}: {pid} is not in the instance's cgroup but in {}",
        dir.display()
    );
    // Whatever else this host runs must not starve the loops below the limit, or the limit
    // would never bind: give the instance's cgroup the largest CPU weight (its quota, the
    // thing tested, is untouched).
    let weight = if dir.join("cpu.weight").exists() {
        ("cpu.weight", "10000")
    } else {
        ("cpu.shares", "262144")
    };
    std::fs::write(dir.join(weight.0), weight.1).unwrap();
    // The limit as the cgroup holds it: one vCPU is one period's worth of quota.
    let (quota_us, period_us) = cpu_quota(&dir);
    assert_eq!(
        quota_us, period_us,
        "{kind}: 1 vCPU is not a quota of one period"
    );
    // The cgroup's own counters, not the wall clock: the kernel throttles the group (which
    // proves the quota is enforced), and over the periods it counted the group never used more
    // than the quota per period.
    let stat = |key| cpu_stat(&dir, key).unwrap_or_else(|| panic!("no {key} in cpu.stat"));
    let (periods0, throttled0, used0) =
        (stat("nr_periods"), stat("nr_throttled"), cpu_used_ns(&dir));
    let deadline = Instant::now() + TIMEOUT;
    while stat("nr_throttled") < throttled0 + 3 {
        assert!(
            Instant::now() < deadline,
            "{kind}: the cgroup was never throttled (nr_throttled stayed at {})",
            stat("nr_throttled")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (periods1, used1) = (stat("nr_periods"), cpu_used_ns(&dir));
    instance.teardown().expect("teardown failed");
    let periods = periods1 - periods0;
    assert!(periods > 0, "{kind}: throttled without a period elapsing");
    // Two periods of slack for the partial periods at either end (and tick-based accounting).
    let allowed_ns = (periods + 2) * quota_us * 1000;
    let used = used1 - used0;
    eprintln!(
        "{kind}: {} ms of CPU over {periods} periods of {} ms quota (allowed {} ms)",
        used / 1_000_000,
        quota_us / 1000,
        allowed_ns / 1_000_000
    );
    assert!(
        used <= allowed_ns + allowed_ns / 10,
        "{kind}: the workload used {used} ns of CPU over {periods} periods of {quota_us} us quota"
    );
    assert_no_leaks(&before, &token);
}

#[test]
fn container_cpu_limit_holds_under_load() {
    cpu_limit_holds_under_load(BackendKind::Container);
}

#[test]
fn runc_cpu_limit_holds_under_load() {
    cpu_limit_holds_under_load(BackendKind::Runc);
}

#[test]
fn gvisor_cpu_limit_holds_under_load() {
    cpu_limit_holds_under_load(BackendKind::Gvisor);
}
