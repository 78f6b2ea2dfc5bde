//! The io workload's storage, the same on every backend: one host directory, `io/` in cvm's
//! cache directory, under which each instance gets a directory of its own. Native writes there
//! directly, the container backends bind it at the workload's `--dir` (Docker too: a bind mount,
//! never a tmpfs), and a VM's ext4 data disk image is a file in it. So every backend's writes end
//! up on the same host filesystem, whose type (from `statfs`) is recorded with every sample.
//!
//! A tmpfs or ramfs there would turn an io benchmark into a memory benchmark: such a run is
//! refused unless the scenario asks for memory-backed io (`io_storage = "memory"`), and a run
//! that asks for memory is refused on a disk-backed filesystem, so the label never lies.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::statfs::{self, FsType};

use super::BackendConfig;
use crate::scenario::{IoStorage, Scenario};

/// Configuration keys recorded for an io workload on every backend.
pub const IO_DIR_KEY: &str = "io_dir";
pub const IO_FS_KEY: &str = "io_fs";
pub const IO_STORAGE_KEY: &str = "io_storage";

/// Prefix of every instance's directory, so the leak audit finds leftovers.
pub const INSTANCE_PREFIX: &str = "cvm-";

#[derive(Debug, thiserror::Error)]
pub enum IoDirError {
    #[error("cannot create the io directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the filesystem type of the io directory {path}")]
    Statfs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(
        "the io directory {path} is on {fs}, a memory filesystem, so the io workload would \
         measure memory rather than a disk; point CVM_CACHE_DIR at a disk-backed filesystem, or \
         set `io_storage = \"memory\"` under [resources] in the scenario to measure memory-backed io"
    )]
    OnMemory { path: PathBuf, fs: String },
    #[error(
        "the scenario asks for memory-backed io (`io_storage = \"memory\"`), but the io \
         directory {path} is on {fs}, which is disk-backed; point CVM_CACHE_DIR at a tmpfs, or \
         remove `io_storage` to measure the disk"
    )]
    NotMemory { path: PathBuf, fs: String },
}

/// The host directory the io workload's instances write under, checked against the scenario.
#[derive(Debug, Clone)]
pub struct IoStore {
    root: PathBuf,
    fs: FsName,
    storage: IoStorage,
}

impl IoStore {
    /// The store for `scenario`'s io workload, or `None` for any other workload. Creates the
    /// directory and refuses a filesystem that does not match `resources.io_storage`.
    pub fn for_scenario(scenario: &Scenario) -> Result<Option<IoStore>, IoDirError> {
        if scenario.workload.io_target().is_none() {
            return Ok(None);
        }
        let storage = *scenario.resources.io_storage.get_ref();
        IoStore::open(&root(), storage).map(Some)
    }

    fn open(root: &Path, storage: IoStorage) -> Result<IoStore, IoDirError> {
        std::fs::create_dir_all(root).map_err(|source| IoDirError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        let fs = fs_name(root)?;
        let store = IoStore {
            root: root.to_path_buf(),
            fs,
            storage,
        };
        match (storage, fs.memory) {
            (IoStorage::Disk, true) => Err(IoDirError::OnMemory {
                path: store.root,
                fs: fs.name.into(),
            }),
            (IoStorage::Memory, false) => Err(IoDirError::NotMemory {
                path: store.root,
                fs: fs.name.into(),
            }),
            _ => Ok(store),
        }
    }

    /// The facts recorded with every sample: the directory, its filesystem, what was asked for.
    pub fn config(&self) -> BackendConfig {
        BackendConfig::from([
            (IO_DIR_KEY.into(), self.root.display().to_string()),
            (IO_FS_KEY.into(), self.fs.name.into()),
            (IO_STORAGE_KEY.into(), self.storage.as_str().into()),
        ])
    }

    /// A new, empty directory for one instance (`label` names the backend and instance).
    pub fn instance_dir(&self, label: &str) -> Result<InstanceIoDir, IoDirError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join(format!(
            "{INSTANCE_PREFIX}{label}-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir(&path).map_err(|source| IoDirError::Create {
            path: path.clone(),
            source,
        })?;
        Ok(InstanceIoDir(path))
    }
}

/// The io root, created if missing, with its filesystem's name and whether it is memory-backed
/// (for `cvm doctor`).
pub fn root_filesystem() -> Result<(PathBuf, &'static str, bool), IoDirError> {
    let root = root();
    std::fs::create_dir_all(&root).map_err(|source| IoDirError::Create {
        path: root.clone(),
        source,
    })?;
    let fs = fs_name(&root)?;
    Ok((root, fs.name, fs.memory))
}

/// The io root: `io/` in cvm's cache directory.
pub fn root() -> PathBuf {
    crate::image::cache_dir().join("io")
}

/// One instance's io directory; removed with everything in it when dropped.
#[derive(Debug)]
pub struct InstanceIoDir(PathBuf);

impl InstanceIoDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for InstanceIoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A filesystem type as `statfs` reports it, named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FsName {
    name: &'static str,
    memory: bool,
}

/// The filesystem type of `path`, from `statfs`'s magic number.
fn fs_name(path: &Path) -> Result<FsName, IoDirError> {
    let st = statfs::statfs(path).map_err(|source| IoDirError::Statfs {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(name_of(st.filesystem_type()))
}

/// ramfs's magic number (linux/magic.h), which nix does not name.
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);

fn name_of(t: FsType) -> FsName {
    // Magic numbers of linux/magic.h; ext2, ext3 and ext4 share one.
    let (name, memory) = match t {
        statfs::TMPFS_MAGIC => ("tmpfs", true),
        RAMFS_MAGIC => ("ramfs", true),
        statfs::EXT4_SUPER_MAGIC => ("ext2/3/4", false),
        statfs::BTRFS_SUPER_MAGIC => ("btrfs", false),
        statfs::XFS_SUPER_MAGIC => ("xfs", false),
        statfs::OVERLAYFS_SUPER_MAGIC => ("overlayfs", false),
        statfs::NFS_SUPER_MAGIC => ("nfs", false),
        statfs::FUSE_SUPER_MAGIC => ("fuse", false),
        _ => ("other", false),
    };
    FsName { name, memory }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_filesystems_are_refused_for_disk_io_and_required_for_memory_io() {
        assert!(name_of(statfs::TMPFS_MAGIC).memory);
        assert!(name_of(RAMFS_MAGIC).memory);
        assert!(!name_of(statfs::EXT4_SUPER_MAGIC).memory);
        // /dev/shm is a tmpfs wherever glibc's POSIX shared memory works; a temporary directory
        // beside the sources is whatever the host has, so the expectation there follows statfs,
        // read with nix's constant rather than through `fs_name`.
        let shm_is_tmpfs =
            statfs::statfs("/dev/shm").is_ok_and(|s| s.filesystem_type() == statfs::TMPFS_MAGIC);
        if !crate::host_has(shm_is_tmpfs, "/dev/shm mounted as a tmpfs") {
            return;
        }
        let shm = Path::new("/dev/shm").join(format!("cvm-iotest-{}", std::process::id()));
        match IoStore::open(&shm, IoStorage::Disk) {
            Err(IoDirError::OnMemory { fs, .. }) => assert_eq!(fs, "tmpfs"),
            other => panic!("disk io on /dev/shm must be refused: {other:?}"),
        }
        let store = IoStore::open(&shm, IoStorage::Memory).expect("memory io on tmpfs");
        assert_eq!(store.config()[IO_FS_KEY], "tmpfs");
        let dir = store.instance_dir("t-0").unwrap();
        let kept = dir.path().to_path_buf();
        assert!(kept.is_dir() && kept.starts_with(&shm));
        std::fs::write(kept.join("f"), b"x").unwrap();
        drop(dir);
        assert!(
            !kept.exists(),
            "an instance's io directory is removed with it"
        );
        std::fs::remove_dir(&shm).unwrap();

        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let on_tmpfs =
            statfs::statfs(disk.path()).unwrap().filesystem_type() == statfs::TMPFS_MAGIC;
        let r = IoStore::open(disk.path(), IoStorage::Memory);
        assert_eq!(r.is_ok(), on_tmpfs, "{r:?}");
        if let Err(e) = r {
            assert!(e.to_string().contains("CVM_CACHE_DIR"), "{e}");
        }
    }
}
