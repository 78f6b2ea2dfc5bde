//! An ordinary user for the rootless tests: made with subordinate ids, cvm run as it, and what
//! it leaves behind (its home, `/tmp`, its processes) read back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// An ordinary user made for the test, with subordinate ids (Debian's `useradd` gives them),
/// deleted with its home and its subordinate ids when dropped.
pub struct TestUser {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
}

impl TestUser {
    pub fn create() -> TestUser {
        let name = format!("cvmrl{}", fastrand::u32(10_000..99_999));
        let ok = Command::new("useradd")
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
                let ok = Command::new("usermod")
                    .args([flag, "200000-265535", &user.name])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "usermod {flag} failed");
            }
        }
        user
    }

    /// `cvm ARGS` run as the user, its home and a cache of its own (under `work`) set.
    pub fn cvm(&self, work: &Path, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", &self.name, "--", "env"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("CVM_CACHE_DIR={}", work.join("cache").display()))
            .arg(super::cvm_bin())
            .args(args)
            .output()
            .unwrap()
    }

    /// The names in the user's home directory.
    pub fn home_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.home)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// What in `/tmp` the user owns.
    pub fn tmp_entries(&self) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir("/tmp")
            .unwrap()
            .flatten()
            .filter(|e| e.metadata().is_ok_and(|m| m.uid() == self.uid))
            .map(|e| e.path().display().to_string())
            .collect()
    }

    /// The user's processes still running ("PID NAME"): a zombie an unrelated parent has yet
    /// to reap has ended, and a killed one may take a moment to go, so this waits up to 5 s
    /// for the list to empty.
    pub fn processes_left(&self) -> Vec<String> {
        let running = || {
            let out = Command::new("pgrep")
                .args(["-u", &self.name])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter(|pid| {
                    let stat =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let state = stat
                        .rfind(')')
                        .and_then(|i| stat[i + 1..].split_whitespace().next());
                    !matches!(state, None | Some("Z"))
                })
                .map(|pid| {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    format!("{pid} {}", comm.trim())
                })
                .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !running().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        running()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["--remove", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
