//! The one image: a rootfs directory that every backend runs, byte for byte.
//!
//! It holds `cvm-guest` (init and the workloads, statically linked), busybox (a shell and tools,
//! statically linked), the mount points init needs, and whatever the scenario adds. It is built
//! once per content hash into cvm's cache directory and exported from there to each backend's
//! format (the directory itself, an OCI bundle, an initramfs, an ext4 disk).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::scenario::{Scenario, Workload};

/// Bumped whenever the layout below changes, so old cache entries are not reused.
const LAYOUT_VERSION: &str = "1";
/// Where `cvm-guest` lives inside the image.
pub const GUEST_PATH: &str = "/bin/cvm-guest";
/// Environment variable overriding where `cvm-guest` is found on the host.
pub const GUEST_ENV: &str = "CVM_GUEST";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot find cvm-guest beside {exe} (build it with a plain `cargo build`, or set {GUEST_ENV})")]
    GuestMissing { exe: PathBuf },
    #[error("cannot find a statically linked busybox (install the Debian package busybox-static)")]
    BusyboxMissing,
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the cache directory {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path} into the image")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bring-your-own binary {path} is not usable: {reason}")]
    HostBinary { path: PathBuf, reason: String },
}

/// A built rootfs directory in the cache.
#[derive(Debug, Clone)]
pub struct Image {
    rootfs: PathBuf,
    hash: String,
    /// Host-side sources of the image's files, by disk layer (`app`, `libs`).
    layers: BTreeMap<String, Vec<PathBuf>>,
}

impl Image {
    /// Builds (or finds in the cache) the image for `scenario`.
    pub fn build(scenario: &Scenario) -> Result<Image, ImageError> {
        let guest = find_guest()?;
        let busybox = find_busybox()?;
        let guest_bytes = read(&guest)?;
        let busybox_bytes = read(&busybox)?;

        let mut hasher = Sha256::new();
        hasher.update(LAYOUT_VERSION);
        hasher.update(&guest_bytes);
        hasher.update(&busybox_bytes);
        for bin in &scenario.image.host_binaries {
            hasher.update(bin.as_os_str().as_encoded_bytes());
            hasher.update(read(bin)?);
        }
        let hash = format!("{:x}", hasher.finalize())[..16].to_string();

        let images = cache_dir().join("images");
        fs::create_dir_all(&images).map_err(|source| ImageError::Cache {
            path: images.clone(),
            source,
        })?;
        let rootfs = images.join(&hash);
        let mut image = Image {
            rootfs: rootfs.clone(),
            hash,
            layers: BTreeMap::new(),
        };
        image.layers.insert(
            "app".into(),
            vec![rootfs.join(GUEST_PATH.trim_start_matches('/'))],
        );
        image
            .layers
            .insert("libs".into(), vec![rootfs.join("bin/busybox")]);
        if rootfs.is_dir() {
            return Ok(image);
        }
        // Build beside the final place and rename: a crash mid-build never leaves a half image
        // that a later run would trust.
        let tmp = images.join(format!(".{}.tmp-{}", image.hash, std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let result = populate(&tmp, &guest_bytes, &busybox_bytes);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &rootfs) {
            Ok(()) => {}
            // Another cvm finished the same image first; theirs is identical.
            Err(_) if rootfs.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
            }
            Err(source) => {
                return Err(ImageError::Write {
                    path: rootfs,
                    source,
                })
            }
        }
        Ok(image)
    }

    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// A short content hash naming this image (cache key, docker tag).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Files of the image by disk layer: `app` (the workload binary), `libs` (busybox and
    /// shared libraries).
    pub fn layer_files(&self) -> BTreeMap<String, Vec<PathBuf>> {
        self.layers.clone()
    }

    /// The workload's argv inside the image.
    pub fn workload_argv(&self, w: &Workload) -> Vec<String> {
        let mut argv = match (&w.applet, &w.command) {
            (Some(applet), _) => vec![GUEST_PATH.to_string(), applet.get_ref().clone()],
            (None, Some(cmd)) => cmd.get_ref().clone(),
            (None, None) => vec![GUEST_PATH.to_string(), "hello".into()],
        };
        argv.extend(w.args.iter().cloned());
        argv
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// cvm's cache: `$CVM_CACHE_DIR`, else `/var/cache/cvm` for root, else `~/.cache/cvm`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CVM_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/cache/cvm");
    }
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    home.join("cvm")
}

/// `cvm-guest` on the host: `$CVM_GUEST`, else beside the running `cvm` (cargo puts both in the
/// same target directory; an install puts both in the same bin directory).
pub fn find_guest() -> Result<PathBuf, ImageError> {
    if let Some(p) = std::env::var_os(GUEST_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cvm"));
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test binaries live one level down, in deps/.
    for candidate in [dir.join("cvm-guest"), dir.join("../cvm-guest")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(ImageError::GuestMissing { exe })
}

/// A statically linked busybox (Debian's busybox-static installs /usr/bin/busybox, older
/// releases /bin/busybox).
pub fn find_busybox() -> Result<PathBuf, ImageError> {
    ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(ImageError::BusyboxMissing)
}

/// busybox applets linked into /bin: enough for a shell session and the scripts users write.
const BUSYBOX_LINKS: &[&str] = &[
    "sh", "ash", "cat", "echo", "ls", "mount", "umount", "mkdir", "rm", "sleep", "true", "false",
    "ps", "kill", "ip", "ifconfig", "insmod", "modprobe", "poweroff", "reboot", "dd", "sync",
    "uname", "env",
];

fn populate(root: &Path, guest: &[u8], busybox: &[u8]) -> Result<(), ImageError> {
    let w = |path: PathBuf, e: io::Error| ImageError::Write { path, source: e };
    for dir in [
        "bin",
        "sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "mnt",
        "root",
        "var/tmp",
        "lib/modules",
    ] {
        let p = root.join(dir);
        fs::create_dir_all(&p).map_err(|e| w(p, e))?;
    }
    write_exec(&root.join("bin/cvm-guest"), guest)?;
    write_exec(&root.join("bin/busybox"), busybox)?;
    for applet in BUSYBOX_LINKS {
        let p = root.join("bin").join(applet);
        symlink("busybox", &p).map_err(|e| w(p, e))?;
    }
    for (link, target) in [("init", "bin/cvm-guest"), ("sbin/init", "../bin/cvm-guest")] {
        let p = root.join(link);
        symlink(target, &p).map_err(|e| w(p, e))?;
    }
    for (file, text) in [
        ("etc/hostname", "cvm\n"),
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hosts", "127.0.0.1 localhost cvm\n"),
    ] {
        let p = root.join(file);
        fs::write(&p, text).map_err(|e| w(p, e))?;
    }
    Ok(())
}

fn write_exec(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, bytes)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
        .map_err(|source| ImageError::Write {
            path: path.to_path_buf(),
            source,
        })
}
