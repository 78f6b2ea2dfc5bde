//! The `podman` backend on the real host: rootful Podman with conmon and runc, its storage
//! private to the run. Needs root and Debian's podman, conmon and runc; without them it skips
//! (or fails under `CVM_REQUIRE_HOST=1`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use cvm::audit;
use cvm::results::{read_samples, SampleRow};
use cvm::scenario::BackendKind;

use common::instances::usable;
use common::{cvm_cmd, host_has, is_root, stderr};

/// Every value of each metric podman recorded in measured runs.
fn podman_figures(rows: &[SampleRow]) -> BTreeMap<String, Vec<f64>> {
    let mut figures: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.backend == "podman") {
        figures.entry(r.metric.clone()).or_default().push(r.value);
    }
    figures
}

fn compare(scenario: &str, out: &Path) -> BTreeMap<String, Vec<f64>> {
    let run = cvm_cmd()
        .args(["compare", "--no-progress", "--backends", "podman"])
        .args(["--scenario", scenario, "--runs", "2", "--warmup", "0"])
        .arg("--output")
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    podman_figures(&read_samples(&out.join("samples.csv")).unwrap())
}

fn assert_positive(figures: &BTreeMap<String, Vec<f64>>, metric: &str) {
    let values = figures
        .get(metric)
        .unwrap_or_else(|| panic!("podman recorded no {metric}: {figures:#?}"));
    assert!(
        values.iter().all(|v| *v > 0.0),
        "podman's {metric}: {values:?}"
    );
}

#[test]
fn podman_runs_hello_and_web_in_private_storage_and_leaves_nothing_behind() {
    if !host_has(is_root(), "podman tests need root")
        || !host_has(
            common::which("podman") && common::which("conmon") && common::which("runc"),
            "Podman is not installed (Debian packages podman, conmon, runc)",
        )
        || !usable(BackendKind::Container)
    {
        return;
    }
    let shm_lock = Path::new("/dev/shm/libpod_lock");
    let shm_lock_before = shm_lock.exists();
    let before = audit::snapshot();
    let dir = tempfile::tempdir().unwrap();

    let hello = compare("startup", &dir.path().join("startup"));
    for metric in [
        "ready_latency",
        "phase.runtime",
        "disk_footprint",
        "disk.runtime",
    ] {
        assert_positive(&hello, metric);
    }

    let web = compare("web", &dir.path().join("web"));
    for metric in [
        "ready_latency",
        "memory_pss",
        "memory_supervisor",
        "disk_footprint",
        "disk.runtime",
        "http_rps",
    ] {
        assert_positive(&web, metric);
    }
    // conmon is the supervisor, counted inside the instance's PSS.
    let (pss, conmon) = (web["memory_pss"][0], web["memory_supervisor"][0]);
    assert!(conmon < pss, "conmon {conmon} B within memory_pss {pss} B");

    // No container, storage directory, mount, cgroup or link of the run's Podman is left, and
    // the host-wide lock file Podman uses by default was never made.
    let leaked = audit::snapshot().matching("podman").leaked_since(&before);
    assert!(leaked.is_empty(), "left behind: {leaked:#?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains("-podman/")),
        "a mount of Podman's private storage is left"
    );
    assert_eq!(shm_lock.exists(), shm_lock_before, "{}", shm_lock.display());
    let conmons = std::process::Command::new("pgrep")
        .args(["-f", "conmon.*-podman/"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&conmons.stdout).trim().is_empty(),
        "a conmon of the run is still running"
    );
}

/// An ordinary user made for the test, with subordinate ids (Debian's `useradd` gives them),
/// deleted with its home and its subordinate ids when dropped.
struct TestUser {
    name: String,
    home: std::path::PathBuf,
    uid: u32,
}

impl TestUser {
    fn create() -> TestUser {
        let name = format!("cvmrl{}", fastrand::u32(10_000..99_999));
        let ok = std::process::Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {name} failed");
        let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
        let user = TestUser {
            name,
            home: user.dir,
            uid: user.uid.as_raw(),
        };
        for (file, flag) in [
            ("/etc/subuid", "--add-subuids"),
            ("/etc/subgid", "--add-subgids"),
        ] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text
                .lines()
                .any(|l| l.starts_with(&format!("{}:", user.name)))
            {
                let ok = std::process::Command::new("usermod")
                    .args([flag, "200000-265535", &user.name])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "usermod {flag} failed");
            }
        }
        user
    }

    /// The names in the user's home directory.
    fn home_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.home)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// What in `/tmp` the user owns.
    fn tmp_entries(&self) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir("/tmp")
            .unwrap()
            .flatten()
            .filter(|e| e.metadata().is_ok_and(|m| m.uid() == self.uid))
            .map(|e| e.path().display().to_string())
            .collect()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .args(["--remove", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn an_ordinary_user_measures_native_rootless_podman_and_a_user_network_vm() {
    if !host_has(is_root(), "creating a user needs root")
        || !host_has(
            [
                "podman",
                "conmon",
                "runc",
                "slirp4netns",
                "newuidmap",
                "useradd",
                "runuser",
            ]
            .into_iter()
            .all(common::which),
            "rootless Podman is not installed (Debian packages podman, uidmap, slirp4netns)",
        )
    {
        return;
    }
    let user = TestUser::create();
    let home_before = user.home_entries();
    // Where the user may write: the results and a cache of its own, removed by the test.
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(work.path(), Some(user.uid), None).unwrap();
    let out = work.path().join("out");
    let run = std::process::Command::new("runuser")
        .args(["-u", &user.name, "--", "env"])
        .arg(format!("HOME={}", user.home.display()))
        .arg(format!(
            "CVM_CACHE_DIR={}",
            work.path().join("cache").display()
        ))
        .arg(common::cvm_bin())
        .args(["compare", "--no-progress", "--scenario", "startup"])
        .args(["--backends", "native,container,podman,vm-user"])
        .args(["--runs", "2", "--warmup", "0", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    let said = format!("{}{}", common::stdout(&run), stderr(&run));
    assert_eq!(run.status.code(), Some(0), "{said}");
    let rows = read_samples(&out.join("samples.csv")).unwrap();
    let ready = |backend: &str| {
        rows.iter()
            .any(|r| r.backend == backend && r.metric == "ready_latency" && r.value > 0.0)
    };
    assert!(ready("native"), "{said}");
    assert!(ready("podman"), "rootless podman measured nothing: {said}");
    assert!(
        rows.iter()
            .any(|r| r.backend == "podman" && r.config.contains("rootless")),
        "podman's samples do not say rootless"
    );
    // A VM on the user network runs without root; anything else is unavailable with a reason.
    assert!(
        ready("vm-user") || said.contains("vm-user: unavailable — "),
        "{said}"
    );
    assert!(said.contains("container: unavailable — "), "{said}");
    std::fs::remove_dir_all(&out).unwrap();
    assert_eq!(user.home_entries(), home_before, "left in the user's home");
    // The test's own directory aside, which it removes itself.
    let left: Vec<String> = user
        .tmp_entries()
        .into_iter()
        .filter(|e| std::path::Path::new(e) != work.path())
        .collect();
    assert!(left.is_empty(), "left in /tmp: {left:?}");
    // Podman's default lock file for the user, in shared memory, was never made.
    let lock = format!("/dev/shm/libpod_rootless_lock_{}", user.uid);
    assert!(!std::path::Path::new(&lock).exists(), "{lock} left");
    // A process the user still runs (a zombie an unrelated parent has yet to reap has ended,
    // and a killed one may take a moment to go).
    let running = || {
        let out = std::process::Command::new("pgrep")
            .args(["-u", &user.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat
                    .rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().next());
                !matches!(state, None | Some("Z"))
            })
            .map(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                format!("{pid} {}", comm.trim())
            })
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !running().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        running().is_empty(),
        "processes of the user left: {:?}",
        running()
    );
}
