//! cvm run by an ordinary user (rootless): a user made for the test, with subordinate ids,
//! runs `startup` and `web` on native, `container` (cvm's runtime in a user namespace), runc
//! rootless, rootless Podman and a VM on the user network; every backend that cannot run
//! without root says why. Needs root (to make the user) and Debian's podman, runc, uidmap and
//! slirp4netns; without them it skips (or fails under `CVM_REQUIRE_HOST=1`).

mod common;

use std::path::Path;

use cvm::results::{read_samples, SampleRow};

use common::user::TestUser;
use common::{host_has, is_root, stderr};

/// The backends every run asks for; crun and gvisor only in `startup`, to hear their reasons.
const BACKENDS: &str = "native,container,runc,podman,vm-user";
/// Those that must measure rootless here.
const MEASURED: [&str; 4] = ["native", "container", "runc", "podman"];

/// `cvm compare` of `scenario` as `user`: its samples and everything it said.
fn compare(
    user: &TestUser,
    work: &Path,
    scenario: &str,
    backends: &str,
) -> (Vec<SampleRow>, String) {
    let out = work.join(format!("out-{scenario}"));
    let run = user.cvm(
        work,
        &[
            "compare",
            "--no-progress",
            "--scenario",
            scenario,
            "--backends",
            backends,
            "--runs",
            "2",
            "--warmup",
            "0",
            "--output",
            &out.to_string_lossy(),
        ],
    );
    let said = format!("{}{}", common::stdout(&run), stderr(&run));
    println!("{said}");
    assert_eq!(run.status.code(), Some(0), "{said}");
    let rows = read_samples(&out.join("samples.csv")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    (rows, said)
}

/// Whether `backend` recorded `metric` above zero in every row of it, and at least once.
fn positive(rows: &[SampleRow], backend: &str, metric: &str) -> bool {
    let values: Vec<f64> = rows
        .iter()
        .filter(|r| r.backend == backend && r.metric == metric)
        .map(|r| r.value)
        .collect();
    !values.is_empty() && values.iter().all(|v| *v > 0.0)
}

fn prerequisites() -> bool {
    host_has(is_root(), "creating a user needs root")
        && host_has(
            [
                "podman",
                "conmon",
                "runc",
                "slirp4netns",
                "newuidmap",
                "newgidmap",
                "useradd",
                "runuser",
            ]
            .into_iter()
            .all(common::which),
            "rootless tools are not installed (Debian packages podman, runc, uidmap, slirp4netns)",
        )
}

#[test]
fn an_ordinary_user_measures_every_rootless_backend_and_leaves_nothing_behind() {
    if !prerequisites() {
        return;
    }
    let user = TestUser::create();
    let home_before = user.home_entries();
    // Where the user may write: the results and a cache of its own, removed by the test.
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(work.path(), Some(user.uid), None).unwrap();
    for (scenario, backends) in [
        ("startup", format!("{BACKENDS},crun,gvisor")),
        ("web", BACKENDS.to_string()),
    ] {
        let (rows, said) = compare(&user, work.path(), scenario, &backends);
        for backend in MEASURED {
            assert!(
                positive(&rows, backend, "ready_latency"),
                "{scenario}: {backend} has no ready_latency: {said}"
            );
            if scenario == "web" {
                assert!(
                    positive(&rows, backend, "http_rps"),
                    "web: {backend} has no http_rps: {said}"
                );
            }
        }
        for backend in ["container", "runc", "podman"] {
            assert!(
                rows.iter()
                    .any(|r| r.backend == backend && r.config.contains("rootless")),
                "{scenario}: {backend}'s samples do not say rootless"
            );
        }
        // A VM on the user network runs without root; anything else is unavailable with a
        // reason after the dash.
        assert!(
            positive(&rows, "vm-user", "ready_latency") || said.contains("vm-user: unavailable — "),
            "{said}"
        );
        for line in said.lines().filter(|l| l.contains(": unavailable")) {
            let reason = line.split(" — ").nth(1).unwrap_or("").trim();
            assert!(
                reason.len() > 10,
                "an unavailable backend without a reason: {line}"
            );
        }
        if scenario == "startup" {
            for backend in ["crun", "gvisor"] {
                assert!(
                    said.contains(&format!("{backend}: unavailable — "))
                        || positive(&rows, backend, "ready_latency"),
                    "{backend} neither ran nor said why: {said}"
                );
            }
        }
    }
    assert_eq!(user.home_entries(), home_before, "left in the user's home");
    // The test's own directory aside, which it removes itself: slirp4netns's sockets, the
    // runtimes' state roots and bundles all lie in /tmp and must be gone.
    let left: Vec<String> = user
        .tmp_entries()
        .into_iter()
        .filter(|e| Path::new(e) != work.path())
        .collect();
    assert!(left.is_empty(), "left in /tmp: {left:?}");
    // Podman's default lock file for the user, in shared memory, was never made.
    let lock = format!("/dev/shm/libpod_rootless_lock_{}", user.uid);
    assert!(!Path::new(&lock).exists(), "{lock} left");
    let running = user.processes_left();
    assert!(
        running.is_empty(),
        "processes of the user left: {running:?}"
    );
}
