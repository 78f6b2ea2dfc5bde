//! Podman's private storage for one cvm run: its own `--root` (images, containers, its
//! database), `--runroot`, `--tmpdir` (exit files, file locks) and `containers.conf`, all in one
//! temporary directory `cvm-<token>-podman` that is removed when the run ends, and the cgroup
//! parent its containers and their conmons sit under. The host's own Podman storage
//! (`/var/lib/containers/storage`) and configuration are never read or written.
//!
//! Every `podman` call goes through [`Store::command`], so the flags that make it private are
//! said once. What the store leaves on drop is nothing: containers and images removed through
//! Podman, then the mounts its overlay driver keeps under the root (a private bind mount of
//! `overlay/`), the directory, and the cgroup parent in every hierarchy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::backend::command::{run_within, CommandError};

/// How long one `podman` call may take before it is killed: a teardown always ends.
const CALL_LIMIT: Duration = Duration::from_secs(60);
/// How long `podman import` of the image's root filesystem may take.
const IMPORT_LIMIT: Duration = Duration::from_secs(600);
/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The configuration every call reads instead of the host's (`CONTAINERS_CONF`): file locks in
/// the private tmpdir rather than the host-wide `/dev/shm/libpod_lock`, no default pids limit
/// (Docker and cvm's other runtimes set none unless the scenario does), the OCI runtime runc,
/// cgroupfs (no systemd on the launch path) and no events log.
const CONTAINERS_CONF: &str = r#"[containers]
pids_limit = 0

[engine]
lock_type = "file"
num_locks = 256
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "runc"
"#;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create Podman's private storage directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`podman {step}` could not be run")]
    Run {
        step: &'static str,
        #[source]
        source: CommandError,
    },
    #[error("`podman {step}` failed: {stderr}")]
    Failed { step: &'static str, stderr: String },
    #[error("cannot unmount {path} in Podman's private storage")]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One run's private Podman storage; removed on drop.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    token: String,
    /// cvm runs as a normal user: Podman runs rootless, in a user namespace of its own.
    pub rootless: bool,
}

impl Store {
    /// Makes the directory and its `containers.conf`.
    pub fn create() -> Result<Store, StoreError> {
        let token = format!(
            "{:04x}{:02x}",
            std::process::id() & 0xffff,
            fastrand::u8(..)
        );
        let dir = std::env::temp_dir().join(format!("cvm-{token}-podman"));
        let create = |path: &Path| {
            fs::create_dir_all(path).map_err(|source| StoreError::Create {
                path: path.to_path_buf(),
                source,
            })
        };
        create(&dir)?;
        // From here on the store owns the directory: an error drops it, which removes it.
        let store = Store {
            dir,
            token,
            rootless: !nix::unistd::geteuid().is_root(),
        };
        for sub in ["root", "run", "tmp", "home", "xdg-run"] {
            create(&store.dir.join(sub))?;
        }
        // Rootless Podman wants its runtime directory private to the user.
        let _ = fs::set_permissions(
            store.xdg_runtime_dir(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        );
        fs::write(store.conf(), CONTAINERS_CONF).map_err(|source| StoreError::Create {
            path: store.conf(),
            source,
        })?;
        Ok(store)
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("containers.conf")
    }

    /// `XDG_RUNTIME_DIR` of every call: a rootless Podman's pause process, netns and locks.
    fn xdg_runtime_dir(&self) -> PathBuf {
        self.dir.join("xdg-run")
    }

    /// The directory every call's paths start with.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where Podman keeps images and containers (`--root`).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The cgroup parent of every container and conmon of the run (`--cgroup-parent`).
    pub fn cgroup_parent(&self) -> String {
        format!("cvm-{}-podman", self.token)
    }

    /// `podman` with the private storage's flags, stdin closed.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        // The XDG directories too: a rootless Podman otherwise writes lock files and caches in
        // the user's home (`~/.config/cni`, from `HOME`; `~/.cache/containers`,
        // `~/.local/share/containers`).
        let home = self.dir.join("home");
        cmd.env("CONTAINERS_CONF", self.conf())
            .env("HOME", &home)
            // And its temporary files (`podman-run-<uid>`, `containers-user-<uid>`).
            .env("TMPDIR", self.dir.join("tmp"))
            .env("XDG_RUNTIME_DIR", self.xdg_runtime_dir())
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .arg("--root")
            .arg(self.root())
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "overlay"])
            .args(["--cgroup-manager", "cgroupfs", "--runtime", "runc"])
            .args(["--events-backend", "none"])
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `podman args...` within [`CALL_LIMIT`]; its trimmed stdout, or Podman's words.
    pub fn run(&self, step: &'static str, args: &[&str]) -> Result<String, StoreError> {
        self.run_command(step, self.command().args(args), CALL_LIMIT)
    }

    fn run_command(
        &self,
        step: &'static str,
        cmd: &mut Command,
        limit: Duration,
    ) -> Result<String, StoreError> {
        let out = run_within(cmd, limit).map_err(|source| StoreError::Run { step, source })?;
        if out.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(StoreError::Failed {
                step,
                stderr: out.stderr_text(),
            })
        }
    }

    /// `podman import` of the image's root filesystem as `tag` (a directory tarred by podman
    /// itself), unless the store has it already.
    pub fn import(&self, rootfs: &Path, tag: &str) -> Result<(), StoreError> {
        if self.run("image exists", &["image", "exists", tag]).is_ok() {
            return Ok(());
        }
        let tar = self.dir.join("tmp/image.tar");
        let mut pack = Command::new("tar");
        pack.arg("-C")
            .arg(rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .stdin(Stdio::null());
        let result = self
            .run_command("import (tar)", &mut pack, IMPORT_LIMIT)
            .and_then(|_| {
                let mut import = self.command();
                import.arg("import").arg(&tar).arg(tag);
                self.run_command("import", &mut import, IMPORT_LIMIT)
            });
        let _ = fs::remove_file(&tar);
        if result.is_err() {
            // Best effort: a failed import may have stored part of the image under the tag.
            let _ = self.run("image rm", &["image", "rm", "--force", tag]);
        }
        result.map(|_| ())
    }

    /// Removes everything: containers and images through Podman, the mounts left under the
    /// directory, the directory, the cgroup parent. The first failure is reported; every step
    /// is tried.
    fn remove(&mut self) -> Result<(), StoreError> {
        let mut first_error = self
            .run("rm", &["rm", "--all", "--force", "--time", "0"])
            .and_then(|_| self.run("rmi", &["rmi", "--all", "--force"]))
            .err();
        if self.rootless {
            // Files stored by a rootless Podman belong to the user's subordinate ids: only
            // inside its user namespace may they be removed.
            let (root, run) = (self.root(), self.dir.join("run"));
            // The overlay directory is a mount in the namespace's own mount namespace.
            let mut rm = self.command();
            rm.args(["unshare", "sh", "-c"])
                .arg(r#"umount -l "$1/overlay" 2>/dev/null; rm -rf "$1" "$2""#)
                .arg("sh")
                .arg(&root)
                .arg(&run);
            if let Err(e) = self.run_command("unshare rm", &mut rm, CALL_LIMIT) {
                first_error.get_or_insert(e);
            }
            // Its PID file is in `--tmpdir` (in the runtime directory where none is given).
            stop_pause_process(&[
                self.dir.join("tmp"),
                self.xdg_runtime_dir().join("libpod/tmp"),
            ]);
        }
        if let Err(e) = unmount_below(&self.dir) {
            first_error.get_or_insert(e);
        }
        if let Err(source) = fs::remove_dir_all(&self.dir) {
            if source.kind() != io::ErrorKind::NotFound {
                first_error.get_or_insert(StoreError::Remove {
                    path: self.dir.clone(),
                    source,
                });
            }
        }
        if let Err(e) = remove_cgroup_tree(&self.cgroup_parent()) {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!(
                "cvm: warning: removing Podman's private storage: {:#}",
                anyhow::Error::new(e)
            );
        }
    }
}

/// Ends the pause process a rootless Podman leaves to keep its user namespace: the one whose
/// PID its `pause.pid` in one of this store's `dirs` names, checked to be Podman's pause
/// after its pidfd is open (so the check and the signal meet the same process).
fn stop_pause_process(dirs: &[PathBuf]) {
    let Some(pid) = dirs
        .iter()
        .find_map(|d| fs::read_to_string(d.join("pause.pid")).ok())
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    let Ok(pidfd) = cvm_runtime::sys::pidfd_open(pid) else {
        return;
    };
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() == "podman pause" {
        use std::os::fd::AsFd;
        let _ = crate::sys::pidfd_send_signal(pidfd.as_fd(), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Unmounts every mount point at or below `dir`, deepest first (Podman's overlay driver bind
/// mounts its `overlay/` directory on itself, and a container's rootfs is mounted while it
/// runs): removing the directory would otherwise fail, or reach into a mounted filesystem.
fn unmount_below(dir: &Path) -> Result<(), StoreError> {
    let mut points = mount_points_below(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for path in points {
        nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|source| StoreError::Unmount { path, source })?;
    }
    Ok(())
}

/// The mount points at or below `dir`, from `/proc/self/mountinfo` (field 5, octal-escaped).
pub(super) fn mount_points_below(dir: &Path) -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// `\040`-style escapes of the kernel's mount tables.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes the cgroup `name` (directly under each hierarchy's root) and everything below it,
/// deepest first: Podman leaves its parent and the `conmon` cgroup in it after the last
/// container is gone.
pub(super) fn remove_cgroup_tree(name: &str) -> Result<(), StoreError> {
    let Ok(hierarchies) = fs::read_dir(CGROUP_ROOT) else {
        return Ok(());
    };
    let mut dirs = Vec::new();
    let mut roots = vec![PathBuf::from(CGROUP_ROOT)];
    roots.extend(hierarchies.flatten().map(|e| e.path()));
    for root in roots {
        collect_dirs(&root.join(name), &mut dirs);
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        if let Err(source) = fs::remove_dir(&dir) {
            if source.kind() != io::ErrorKind::NotFound {
                return Err(StoreError::Remove { path: dir, source });
            }
        }
    }
    Ok(())
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() || dir.is_symlink() {
        return;
    }
    out.push(dir.to_path_buf());
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&entry.path(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_escapes_are_read_back() {
        assert_eq!(unescape_octal(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_octal(r"/plain"), "/plain");
        assert_eq!(unescape_octal(r"/end\04"), r"/end\04");
    }
}
