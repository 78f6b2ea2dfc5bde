//! The private Docker daemon `cvm compare` starts when none answers (`--docker-daemon managed`
//! here, so a daemon already on the host cannot stand in for it): a `web` run on it measures
//! everything the other backends are measured by, and after the run, after SIGINT during the
//! Docker runs, and after a failed run the host is as before: no dockerd or containerd of the
//! run, no bridge, network namespace, veth, cgroup or mount of cvm's, and `iptables-save` and
//! the FORWARD policy byte-identical (a default dockerd rewrites both).
//!
//! They need root, Docker (docker.io) and iptables; without them they skip, or fail under
//! `CVM_REQUIRE_HOST=1`. They run one at a time: each starts a daemon, which on two CPUs is
//! better not done three times at once.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cvm::audit;
use cvm::results::SampleRow;

use common::{cvm_cmd, host_has, is_root, stderr, which};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn docker_host() -> bool {
    host_has(is_root(), "a private dockerd needs root")
        && host_has(
            which("dockerd") && which("containerd") && which("docker"),
            "Docker is not installed (Debian package docker.io)",
        )
        && host_has(
            which("iptables-save") && which("iptables"),
            "iptables-save is not installed (Debian package iptables)",
        )
}

/// What a default dockerd would change on the host's network, captured as text.
#[derive(Debug, PartialEq, Eq)]
struct Firewall {
    rules: String,
    forward_policy: String,
    ip_forward: String,
}

impl Firewall {
    fn capture() -> Firewall {
        let run = |cmd: &str, args: &[&str]| -> String {
            let out = Command::new(cmd).args(args).output().unwrap();
            assert!(out.status.success(), "{cmd} {args:?}: {}", stderr(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // iptables-save prints a timestamp in comments; everything else must match.
        let rules = run("iptables-save", &[])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let forward_policy = run("iptables", &["-S", "FORWARD"])
            .lines()
            .find(|l| l.starts_with("-P FORWARD"))
            .unwrap_or_default()
            .to_string();
        Firewall {
            rules,
            forward_policy,
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        }
    }
}

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new(scenario: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.toml"), scenario).unwrap();
        Run { dir }
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    fn spawn(&self) -> Child {
        cvm_cmd()
            .args([
                "compare",
                "--no-progress",
                "--backends",
                "docker",
                "--docker-daemon",
                "managed",
                "--scenario",
            ])
            .arg(self.dir.path().join("s.toml"))
            .arg("--output")
            .arg(self.out())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
    fn samples(&self) -> Vec<SampleRow> {
        cvm::results::read_samples(&self.out().join("samples.csv"))
            .expect("samples.csv must stay parseable")
    }
    fn has(&self, metric: &str) -> bool {
        cvm::results::read_samples(&self.out().join("samples.csv"))
            .is_ok_and(|rows| rows.iter().any(|r| r.metric == metric))
    }
    fn meta(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.out().join("run.json")).unwrap())
            .unwrap()
    }
    /// The private daemon's data root, as run.json records it.
    fn data_root(&self) -> Option<String> {
        let meta = self.meta();
        let daemon = meta["backends"][0]["config"]["daemon"]
            .as_str()?
            .to_string();
        let rest = daemon.split_once("data root ")?.1;
        Some(rest.split(',').next()?.to_string())
    }
}

fn web(duration_s: u32, timeout_s: u32) -> String {
    format!(
        "name = \"dockerweb\"\nruns = 1\nwarmup = 0\ntimeout_s = {timeout_s}\n\
         [workload]\napplet = \"http\"\nargs = [\"--port\", \"8080\"]\n\
         [readiness]\nkind = \"http\"\nport = 8080\n\
         [load]\nkind = \"http\"\nduration_s = {duration_s}\nconnections = 2\n\
         [resources]\nmemory_mib = 128\nnetwork = \"private\"\n"
    )
}

/// Nothing of the run is left: by the run's token (cvm's PID, in every name it makes: the
/// daemon's processes, bridge, cgroups and temp dir, the containers' veths and netns), mounts
/// under the daemon's data root, and the firewall as it was.
fn assert_host_clean(before: &audit::Snapshot, firewall: &Firewall, pid: u32, data_root: &str) {
    let token = format!("cvm-{:04x}", pid & 0xffff);
    let deadline = Instant::now() + Duration::from_secs(10);
    let leaked = loop {
        let now = audit::snapshot();
        let mut leaked = now.matching(&token).leaked_since(before);
        leaked.extend(
            now.leaked_since(before)
                .into_iter()
                .filter(|r| r.kind == audit::ResourceKind::Mount && r.name.contains(data_root)),
        );
        // A process the kernel is still retiring may linger for a moment.
        if leaked.is_empty() || Instant::now() > deadline {
            break leaked;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(leaked.is_empty(), "left behind: {leaked:#?}");
    let links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&token))
        .collect();
    assert!(links.is_empty(), "the bridge is still there: {links:?}");
    assert_eq!(&Firewall::capture(), firewall, "the firewall changed");
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

#[test]
fn a_web_run_on_the_private_daemon_measures_everything_and_leaves_the_host_as_it_was() {
    if !docker_host() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let firewall = Firewall::capture();
    let before = audit::snapshot();
    let run = Run::new(&web(1, 60));
    let child = run.spawn();
    let pid = child.id();
    let out = finish(child);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = run.samples();
    let value = |metric: &str| {
        rows.iter()
            .find(|r| r.backend == "docker" && r.metric == metric)
            .map(|r| r.value)
            .unwrap_or_else(|| panic!("docker has no {metric}"))
    };
    for metric in [
        "ready_latency",
        "http_rps",
        "http_latency_p50",
        "http_latency_p99",
    ] {
        assert!(value(metric) > 0.0, "{metric} = {}", value(metric));
    }
    for metric in [
        "memory_pss",
        "memory_daemon",
        "disk.app",
        "disk.libs",
        "disk.runtime",
    ] {
        assert!(value(metric) > 1e5, "{metric} = {} B", value(metric));
    }
    // The daemon's start is its own, host-wide figure, recorded once and not a phase of the
    // instance's startup.
    let start = value("docker_daemon_start");
    assert!(
        start > 0.0 && start < 60.0,
        "docker_daemon_start = {start} s"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.metric == "docker_daemon_start")
            .count(),
        1
    );
    assert!(rows
        .iter()
        .all(|r| !r.metric.contains("daemon") || !r.metric.starts_with("phase.")));
    // The daemons are apart from the instance: they alone outweigh a container and its shim.
    assert!(value("memory_daemon") > value("memory_pss"));
    let meta = run.meta();
    let config = &meta["backends"][0]["config"];
    let daemon = config["daemon"].as_str().unwrap();
    assert!(daemon.starts_with("managed: a private dockerd"), "{daemon}");
    let network = config["network"].as_str().unwrap();
    assert!(
        network.contains("cvm's bridge") && network.contains("10.213."),
        "{network}"
    );
    eprintln!(
        "docker: ready_latency {:.3} s, http_rps {:.0}/s, memory_daemon {:.1} MiB, \
         docker_daemon_start {:.3} s",
        value("ready_latency"),
        value("http_rps"),
        value("memory_daemon") / 1048576.0,
        start
    );
    assert_host_clean(&before, &firewall, pid, &run.data_root().unwrap());
}

#[test]
fn sigint_during_the_docker_runs_stops_the_private_daemon_and_leaves_the_host_as_it_was() {
    if !docker_host() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let firewall = Firewall::capture();
    let before = audit::snapshot();
    let run = Run::new(&web(60, 60));
    let child = run.spawn();
    let pid = child.id();
    // Interrupted under load: the container serves, the daemon runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !run.has("ready_latency") {
        assert!(Instant::now() < deadline, "the docker run never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let data_root = run
        .data_root()
        .expect("run.json names the daemon's data root");
    let token = format!("cvm-{:04x}", pid & 0xffff);
    assert!(
        std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&token)),
        "the private daemon's bridge exists while it runs"
    );
    // The test started this cvm; it signals that PID only.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = finish(child);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(run.meta()["status"], "interrupted");
    assert_host_clean(&before, &firewall, pid, &data_root);
}

#[test]
fn a_failed_docker_run_stops_the_private_daemon_and_leaves_the_host_as_it_was() {
    if !docker_host() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let firewall = Firewall::capture();
    let before = audit::snapshot();
    // A server that never listens: the run times out, fails, and the backend is given up.
    let run = Run::new(
        "name = \"dockerstuck\"\nruns = 1\nwarmup = 0\ntimeout_s = 5\n\
         [workload]\ncommand = [\"/bin/sh\", \"-c\", \"exec sleep 1019\"]\n\
         [readiness]\nkind = \"http\"\nport = 8080\n\
         [resources]\nnetwork = \"private\"\n",
    );
    let child = run.spawn();
    let pid = child.id();
    let out = finish(child);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        run.samples().iter().any(|r| r.metric == "run_failed"),
        "the failed run is recorded"
    );
    assert_host_clean(&before, &firewall, pid, &run.data_root().unwrap());
}
