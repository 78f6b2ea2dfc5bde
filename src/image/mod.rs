//! The one image: a rootfs directory that every backend runs, byte for byte.
//!
//! It holds `cvm-guest` (init and the workloads, statically linked), busybox (a shell and tools,
//! statically linked), the mount points init needs, and whatever the scenario adds. It is built
//! once per content hash into cvm's cache directory and exported from there to each backend's
//! format (the directory itself, an OCI bundle, an initramfs, an ext4 disk).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use cvm_proto::applet::Applet;
pub use cvm_proto::applet::GUEST_PATH;
use cvm_proto::metric::Layer;
use sha2::{Digest, Sha256};

mod byo;
pub mod ext4;
pub mod filter;
pub mod initramfs;
pub mod libs;
mod packages;

use crate::scenario::{Scenario, Workload};

/// Bumped whenever the layout below changes, so old cache entries are not reused.
const LAYOUT_VERSION: &str = "1";
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
    #[error("the image's package {name} cannot be used: {reason}")]
    Package { name: String, reason: String },
    #[error("bring-your-own binary {path} is not usable: {reason}")]
    HostBinary { path: PathBuf, reason: String },
    #[error("cannot use {path} as the image's base rootfs")]
    Rootfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A built rootfs directory in the cache.
#[derive(Debug, Clone)]
pub struct Image {
    rootfs: PathBuf,
    hash: String,
    /// Host-side sources of the image's files, by disk layer (`app`, `libs`).
    layers: BTreeMap<Layer, Vec<PathBuf>>,
    /// Built by this call rather than found in the cache: its files have never been run.
    fresh: bool,
}

/// The image's cache key: the layout, cvm-guest's and busybox's bytes, every brought file by
/// path and content, the app's links, the io mount point and the user's base rootfs.
fn content_hash(
    scenario: &Scenario,
    binaries: [&[u8]; 2],
    byo_files: &BTreeSet<PathBuf>,
    links: &BTreeMap<PathBuf, PathBuf>,
    io_mount: Option<&str>,
) -> Result<String, ImageError> {
    let mut hasher = Sha256::new();
    hasher.update(LAYOUT_VERSION);
    for bytes in binaries {
        hasher.update(bytes);
    }
    for f in byo_files {
        hasher.update(f.as_os_str().as_encoded_bytes());
        hasher.update(read(f)?);
    }
    if let Some(dir) = io_mount {
        hasher.update(dir.as_bytes());
    }
    for (link, target) in links {
        hasher.update(link.as_os_str().as_encoded_bytes());
        hasher.update(target.as_os_str().as_encoded_bytes());
    }
    if let Some(base) = &scenario.image.rootfs {
        hasher.update(base.as_os_str().as_encoded_bytes());
        hasher.update(tree_fingerprint(base)?);
    }
    Ok(format!("{:x}", hasher.finalize())[..16].to_string())
}

impl Image {
    /// Builds (or finds in the cache) the image for `scenario`.
    pub fn build(scenario: &Scenario) -> Result<Image, ImageError> {
        let guest = find_guest()?;
        let busybox = find_busybox()?;
        let guest_bytes = read(&guest)?;
        let busybox_bytes = read(&busybox)?;
        let mut byo_files = BTreeSet::new();
        for bin in &scenario.image.host_binaries {
            byo_files.extend(byo::closure(bin)?);
        }
        let app_files = packages::collect(&scenario.image.packages, &scenario.image.files)?;
        byo_files.extend(app_files.app.iter().cloned());
        byo_files.extend(app_files.libs.iter().cloned());

        let io_mount = scenario.workload.io_target().map(|(dir, _)| dir);
        let hash = content_hash(
            scenario,
            [&guest_bytes, &busybox_bytes],
            &byo_files,
            &app_files.links,
            io_mount.as_deref(),
        )?;

        let images = cache_dir().join("images");
        fs::create_dir_all(&images).map_err(|source| ImageError::Cache {
            path: images.clone(),
            source,
        })?;
        let rootfs = images.join(&hash);
        let in_image = |p: &Path| rootfs.join(p.strip_prefix("/").unwrap_or(p));
        let mut app = vec![in_image(Path::new(GUEST_PATH))];
        app.extend(scenario.image.host_binaries.iter().map(|b| in_image(b)));
        // An app's executables and data count as app; the libraries they load as libs.
        app.extend(app_files.app.iter().map(|f| in_image(f)));
        let mut libs = vec![in_image(Path::new("/bin/busybox"))];
        libs.extend(
            byo_files
                .iter()
                .filter(|f| {
                    !scenario.image.host_binaries.contains(f) && !app_files.app.contains(*f)
                })
                .map(|f| in_image(f)),
        );
        if scenario.image.rootfs.is_some() {
            // The user's base rootfs counts as libraries, less the files the layers name themselves
            // (the footprint counts those where they are named).
            libs.push(rootfs.clone());
        }
        let layers = BTreeMap::from([(Layer::App, app), (Layer::Libs, libs)]);
        let mut image = Image {
            rootfs: rootfs.clone(),
            hash,
            layers,
            fresh: false,
        };
        if rootfs.is_dir() {
            return Ok(image);
        }
        image.fresh = true;
        // Build beside the final place and rename: a crash mid-build never leaves a half image
        // that a later run would trust.
        // Unique per build, not only per process: threads of one process (tests, density) may
        // build the same image at once.
        static BUILDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tmp = images.join(format!(
            ".{}.tmp-{}-{}",
            image.hash,
            std::process::id(),
            BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&tmp);
        let result = (|| {
            fs::create_dir_all(&tmp).map_err(|source| ImageError::Write {
                path: tmp.clone(),
                source,
            })?;
            if let Some(base) = &scenario.image.rootfs {
                byo::unpack_rootfs(base, &tmp)?;
            }
            populate(&tmp, &guest_bytes, &busybox_bytes)?;
            byo::copy_into(&tmp, &byo_files)?;
            packages::make_links(&tmp, &app_files.links)?;
            // The io storage's mount point, for a read-only rootfs that cannot grow one.
            match &io_mount {
                Some(dir) => {
                    let p = tmp.join(dir.trim_start_matches('/'));
                    fs::create_dir_all(&p).map_err(|source| ImageError::Write { path: p, source })
                }
                None => Ok(()),
            }
        })();
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

    /// Whether this call built the image (a cache miss): the first launches of a fresh image
    /// are measured apart, as `first_launch`.
    pub fn fresh(&self) -> bool {
        self.fresh
    }

    /// A short content hash naming this image (cache key, docker tag).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Files of the image by disk layer: `app` (the workload binary), `libs` (busybox and
    /// shared libraries).
    pub fn layer_files(&self) -> BTreeMap<Layer, Vec<PathBuf>> {
        self.layers.clone()
    }

    /// The workload's argv inside the image.
    pub fn workload_argv(&self, w: &Workload) -> Vec<String> {
        let mut argv = match (&w.applet, &w.command) {
            (Some(applet), _) => vec![GUEST_PATH.to_string(), applet.get_ref().clone()],
            (None, Some(cmd)) => cmd.get_ref().clone(),
            (None, None) => vec![GUEST_PATH.to_string(), Applet::Hello.name().into()],
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
    beside_cvm("cvm-guest").ok_or(ImageError::GuestMissing { exe })
}

/// A binary built or installed with `cvm` (`cvm-guest`, `cvm-runtime`): in the same directory
/// as the running executable, or one level up (test binaries live in cargo's `deps/`).
pub fn beside_cvm(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(name), dir.join("..").join(name)]
        .into_iter()
        .find(|p| p.is_file())
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
        // A base rootfs's own tools win: the user's image stays the user's.
        if p.symlink_metadata().is_err() {
            symlink("busybox", &p).map_err(|e| w(p, e))?;
        }
    }
    for (link, target) in [("init", "bin/cvm-guest"), ("sbin/init", "../bin/cvm-guest")] {
        let p = root.join(link);
        let _ = fs::remove_file(&p);
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
        // Only where the base rootfs has none of its own.
        let p = root.join(file);
        if p.symlink_metadata().is_err() {
            fs::write(&p, text).map_err(|e| w(p, e))?;
        }
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

/// A cheap fingerprint of a base rootfs (a tarball's bytes, or a directory tree's paths, sizes
/// and modification times), so an edited base makes a new image.
fn tree_fingerprint(base: &Path) -> Result<Vec<u8>, ImageError> {
    use std::os::unix::fs::MetadataExt;
    let err = |path: &Path, source| ImageError::Rootfs {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(base).map_err(|e| err(base, e))?;
    if !meta.is_dir() {
        return read(base);
    }
    let mut out = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| err(&dir, e))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            out.extend_from_slice(e.path().as_os_str().as_encoded_bytes());
            out.extend_from_slice(&m.size().to_le_bytes());
            out.extend_from_slice(&m.mtime().to_le_bytes());
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(out)
}
