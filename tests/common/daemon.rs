//! A private Docker daemon for the tests that need one (Docker tests, memory figures).
//! cvm never starts a daemon itself: a default one rewrites the host's network.

use std::time::{Duration, Instant};

/// A private Docker daemon for one test: its own data root, exec root and socket under a
/// temporary directory, and no say over the host's network (`--iptables=false`,
/// `--bridge=none`: a default dockerd sets the FORWARD policy to DROP and adds docker0).
/// Stopped, and its directory removed, on drop.
pub struct TestDaemon {
    pub dir: std::path::PathBuf,
    child: std::process::Child,
    pub host: String,
    /// Docker's parent cgroups (`docker` in each hierarchy) that existed before this daemon.
    preexisting_cgroups: Vec<std::path::PathBuf>,
}

/// Docker's parent cgroup directories (`/sys/fs/cgroup/<hierarchy>/docker`) that exist now.
fn docker_cgroups() -> Vec<std::path::PathBuf> {
    let mut dirs = vec![std::path::PathBuf::from("/sys/fs/cgroup/docker")];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("docker")),
        );
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

impl TestDaemon {
    pub fn start(token: &str) -> TestDaemon {
        let dir = std::env::temp_dir().join(format!("cvm-dockerd-{token}"));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let existing = docker_cgroups();
        let child = std::process::Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start dockerd");
        let mut daemon = TestDaemon {
            dir,
            child,
            host: format!("unix://{}", socket.display()),
            preexisting_cgroups: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = std::process::Command::new("docker")
                .env("DOCKER_HOST", &daemon.host)
                .args(["version", "--format", "{{.Server.Version}}"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                daemon.preexisting_cgroups = existing;
                return daemon;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(daemon.dir.join("dockerd.log")).unwrap_or_default();
        panic!("the test dockerd never answered; its log:\n{log}");
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        // The daemon creates its parent cgroups lazily and leaves them; remove the ones that
        // were not there before it (rmdir fails on a cgroup still in use, so this is safe).
        for dir in docker_cgroups() {
            if !self.preexisting_cgroups.contains(&dir) {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}
