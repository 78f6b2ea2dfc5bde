//! `scripts/setup.sh`: a failed install must not leave its policy-rc.d guard behind (it would
//! block every later service start on the host).
//!
//! The script runs with fake `dpkg-query` (every package missing) and `apt-get` (`update` works,
//! `install` fails) first in PATH, and its guard pointed into a temporary directory with
//! `CVM_POLICY_RC_D`, so the real host is never touched. It checks for root before anything else:
//! without root the test skips, or fails under `CVM_REQUIRE_HOST=1`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{host_has, is_root, stderr, stdout};

fn fake(dir: &Path, name: &str, script: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run_setup(bin: &Path, guard: &Path) -> std::process::Output {
    run_setup_with(bin, guard, &[])
}

fn run_setup_with(bin: &Path, guard: &Path, args: &[&str]) -> std::process::Output {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/setup.sh"))
        .args(args)
        .env("PATH", path)
        .env("CVM_POLICY_RC_D", guard)
        .output()
        .expect("cannot run scripts/setup.sh")
}

/// A temp dir holding the fakes; the fake `apt-get install` records whether the guard existed
/// while it ran (in `install-saw-guard`), so the test knows the guard was put in place.
fn fakes(guard: &Path) -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    fake(bin.path(), "dpkg-query", "exit 1\n");
    let seen = bin.path().join("install-saw-guard");
    fake(
        bin.path(),
        "apt-get",
        &format!(
            "case \"$1\" in update) exit 0 ;; esac\n\
             if [ -e '{}' ]; then echo yes >'{}'; else echo no >'{}'; fi\nexit 100\n",
            guard.display(),
            seen.display(),
            seen.display()
        ),
    );
    bin
}

#[test]
fn a_failed_install_removes_the_policy_rc_d_guard() {
    if !host_has(is_root(), "scripts/setup.sh runs only as root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let guard = tmp.path().join("policy-rc.d");
    let bin = fakes(&guard);
    let out = run_setup(bin.path(), &guard);
    assert!(
        !out.status.success(),
        "setup.sh succeeded although apt-get install failed: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(bin.path().join("install-saw-guard"))
            .expect("the fake apt-get install never ran")
            .trim(),
        "yes",
        "no guard was in place during the install"
    );
    assert!(
        !guard.exists(),
        "the policy-rc.d guard was left behind after a failed install"
    );
}

#[test]
fn an_existing_policy_rc_d_is_left_as_it_was() {
    if !host_has(is_root(), "scripts/setup.sh runs only as root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let guard = tmp.path().join("policy-rc.d");
    let mine = "#!/bin/sh\n# the host's own policy\nexit 0\n";
    std::fs::write(&guard, mine).unwrap();
    let bin = fakes(&guard);
    let out = run_setup(bin.path(), &guard);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&guard).unwrap(), mine);
}

#[test]
fn the_kernel_group_asks_for_the_source_and_the_kernel_build_tools() {
    if !host_has(is_root(), "scripts/setup.sh runs only as root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let guard = tmp.path().join("policy-rc.d");
    let bin = fakes(&guard);
    // The fake dpkg-query knows no package, so everything wanted is listed as being installed.
    let out = run_setup_with(bin.path(), &guard, &["--kernel"]);
    let said = stdout(&out);
    for package in ["linux-source", "bc", "bison", "flex", "libelf-dev"] {
        assert!(
            said.split_whitespace().any(|w| w == package),
            "--kernel does not install {package}: {said}"
        );
    }
    let plain = stdout(&run_setup(bin.path(), &guard));
    assert!(
        !plain.contains("bison"),
        "the default group builds no kernel: {plain}"
    );
    let bad = run_setup_with(bin.path(), &guard, &["--kernal"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("unknown option --kernal"));
}

#[test]
fn the_apps_group_asks_for_the_app_scenarios_programs() {
    if !host_has(is_root(), "scripts/setup.sh runs only as root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let guard = tmp.path().join("policy-rc.d");
    let bin = fakes(&guard);
    let said = stdout(&run_setup_with(bin.path(), &guard, &["--apps"]));
    for package in ["redis-server", "redis-tools", "fio", "sysbench"] {
        assert!(
            said.split_whitespace().any(|w| w == package),
            "--apps does not install {package}: {said}"
        );
    }
    let plain = stdout(&run_setup(bin.path(), &guard));
    assert!(
        !plain.split_whitespace().any(|w| w == "sysbench"),
        "the default group installs no app: {plain}"
    );
}
