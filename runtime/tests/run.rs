//! `cvm-runtime run` on a real bundle (root needed): a rootfs holding only the static
//! `cvm-guest`, and a config.json shaped like the one cvm's OCI backend writes. The same bundle
//! also goes to runc when it is installed: two runtimes, one bundle.
//!
//! A missing prerequisite skips a test with a message, unless `CVM_REQUIRE_HOST=1` (CI sets
//! it), in which case it fails.

#[path = "../../tests/common/host.rs"]
mod host;
use host::host_has;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cvm_runtime::cgroup::{self, Hierarchy};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, Mount, Root, Spec};

fn runtime_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cvm-runtime"))
}

/// `cvm-guest`, which a plain `cargo build` puts beside `cvm-runtime`.
fn guest_bin() -> PathBuf {
    runtime_bin().with_file_name("cvm-guest")
}

fn ready_to_run() -> bool {
    host_has(nix::unistd::geteuid().is_root(), "cvm-runtime needs root")
        && host_has(cgroup::detect().is_some(), "cgroups are not mounted")
        && host_has(
            guest_bin().is_file(),
            "cvm-guest is not built beside cvm-runtime (run a plain `cargo build` first)",
        )
}

const MEMORY: i64 = 128 << 20;
/// The CPUs the bundle's container is confined to (`linux.resources.cpu.cpus`).
const CPUSET: &str = "0";

/// A bundle in a temporary directory whose process is `cvm-guest ARGS`, markers on stdout.
fn bundle(args: &[&str], cgroup_path: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    for sub in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    std::fs::copy(guest_bin(), rootfs.join("bin/cvm-guest")).unwrap();
    let mut spec = Spec::default();
    let mut root = Root::default();
    root.set_path("rootfs".into()).set_readonly(Some(true));
    spec.set_root(Some(root));
    spec.set_hostname(Some("cvm-rt-test".into()));
    let mut process = spec.process().clone().unwrap();
    let mut argv = vec!["/bin/cvm-guest".to_string()];
    // cvm gives the workload no inheritable or ambient capabilities.
    let mut caps = process.capabilities().clone().unwrap();
    caps.set_inheritable(None).set_ambient(None);
    process.set_capabilities(Some(caps));
    argv.extend(args.iter().map(|a| a.to_string()));
    process
        .set_args(Some(argv))
        .set_env(Some(vec![
            "PATH=/bin".into(),
            format!("{}=1", cvm_proto::MARKER_FD_ENV),
        ]))
        .set_no_new_privileges(Some(true));
    spec.set_process(Some(process));
    let mut mounts = spec.mounts().clone().unwrap();
    let mut tmp = Mount::default();
    tmp.set_destination("/tmp".into())
        .set_typ(Some("tmpfs".into()))
        .set_source(Some("tmpfs".into()))
        .set_options(Some(vec!["nosuid".into(), "nodev".into()]));
    mounts.push(tmp);
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap();
    linux.set_cgroups_path(Some(cgroup_path.into()));
    let mut resources = linux.resources().clone().unwrap();
    let mut memory = LinuxMemory::default();
    memory.set_limit(Some(MEMORY));
    resources.set_memory(Some(memory));
    let mut cpu = LinuxCpu::default();
    cpu.set_quota(Some(50_000))
        .set_period(Some(100_000))
        .set_cpus(Some(CPUSET.into()));
    resources.set_cpu(Some(cpu));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    spec.save(dir.path().join("config.json")).unwrap();
    dir
}

fn unique(tag: &str) -> String {
    format!("cvm-rt-{tag}-{}", std::process::id())
}

/// Where a relative cgroup path ends up for a runtime started by this process (v1: below our
/// own memory cgroup; v2: beside our own cgroup).
fn memory_cgroup_of(name: &str) -> PathBuf {
    match cgroup::detect() {
        Some(cgroup::CgroupVersion::V2) => {
            let own = cgroup::cgroup_of(None, Hierarchy::Unified)
                .unwrap()
                .unwrap();
            own.parent().unwrap().join(name)
        }
        _ => cgroup::cgroup_of(None, Hierarchy::Controller("memory"))
            .unwrap()
            .unwrap()
            .join(name),
    }
}

#[test]
fn hello_runs_and_leaves_no_cgroup() {
    if !ready_to_run() {
        return;
    }
    let name = unique("hello");
    let b = bundle(&["hello"], &name);
    let out = Command::new(runtime_bin())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout {stdout}\nstderr {stderr}"
    );
    assert!(
        stdout.contains("CVM:ready"),
        "stdout {stdout}\nstderr {stderr}"
    );
    assert!(!memory_cgroup_of(&name).exists(), "cgroup left behind");
}

#[test]
fn the_container_has_its_namespaces_cgroup_and_limits_and_gets_sigterm() {
    if !ready_to_run() {
        return;
    }
    let name = unique("idle");
    let b = bundle(&["idle"], &name);
    let pid_file = b.path().join("pid");
    let mut child = Command::new(runtime_bin())
        .args(["run", "--pid-file"])
        .arg(&pid_file)
        .arg("--bundle")
        .arg(b.path())
        .arg(&name)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().map(Result::unwrap).unwrap_or_default();
    assert!(first.contains("CVM:ready"), "first line {first:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.ends_with("\t1"),
        "not PID 1 of its namespace: {nspid}"
    );
    for ns in ["uts", "pid", "net", "mnt", "ipc", "cgroup"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "{ns} namespace shared with the host");
    }
    let memory_dir = memory_cgroup_of(&name);
    let hierarchy = match cgroup::detect() {
        Some(cgroup::CgroupVersion::V2) => Hierarchy::Unified,
        _ => Hierarchy::Controller("memory"),
    };
    // From outside the container's cgroup namespace, the path is the host's.
    assert_eq!(
        cgroup::cgroup_of(Some(pid), hierarchy).unwrap(),
        Some(memory_dir.clone())
    );
    // Confined to the bundle's CPUs, where the host has a cpuset controller.
    if cgroup::cpuset_supported() {
        let allowed = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap();
        assert_eq!(allowed, format!("Cpus_allowed_list:\t{CPUSET}"));
    }
    let limit = ["memory.max", "memory.limit_in_bytes"]
        .iter()
        .find_map(|f| std::fs::read_to_string(memory_dir.join(f)).ok())
        .unwrap();
    assert_eq!(limit.trim(), MEMORY.to_string());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "idle exits 0 on the forwarded SIGTERM"
    );
    assert!(!memory_dir.exists(), "cgroup left behind");
}

#[test]
fn a_bad_config_is_refused_naming_the_field() {
    if !host_has(
        guest_bin().is_file(),
        "cvm-guest is not built beside cvm-runtime",
    ) {
        return;
    }
    let b = bundle(&["hello"], "unused");
    let path = b.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Each bad config is refused with a message naming the field.
    let refused_naming = |json: &serde_json::Value, field: &str| {
        std::fs::write(&path, json.to_string()).unwrap();
        let out = Command::new(runtime_bin())
            .args(["run", "--bundle"])
            .arg(b.path())
            .arg("bad")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0));
        assert!(stderr.contains(field), "{stderr}");
    };
    json.as_object_mut().unwrap().remove("root");
    refused_naming(&json, "root.path");
    json["root"] = serde_json::json!({"path": "rootfs"});
    json["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
    refused_naming(&json, "linux.seccomp");
}

/// runc, where the host has it (`which runc`).
fn runc() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
}

#[test]
fn the_same_bundle_runs_under_runc() {
    if !ready_to_run() || !host_has(runc().is_some(), "runc is not installed") {
        return;
    }
    let name = unique("runc");
    let b = bundle(&["hello"], &name);
    for (runtime, id) in [
        (runc().unwrap(), format!("{name}-runc")),
        (runtime_bin(), name.clone()),
    ] {
        let out = Command::new(&runtime)
            .args(["run", "--bundle"])
            .arg(b.path())
            .arg(&id)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: stdout {stdout}\nstderr {stderr}",
            runtime.display()
        );
        assert!(
            stdout.contains("CVM:ready"),
            "{}: {stdout}",
            runtime.display()
        );
    }
}

#[test]
fn version_is_printed() {
    let out = Command::new(runtime_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cvm-runtime "));
}
