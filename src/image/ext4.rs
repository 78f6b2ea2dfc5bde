//! An ext4 disk image made without mounting anything: `mkfs.ext4 -d DIR` populates the new
//! filesystem from a host directory in user space, so there are no loop devices to leak and no
//! root privileges needed. The VM backends attach it as a virtio-blk data disk for the io
//! scenario, so a VM's writes hit a guest filesystem on a host file, as in a real VM.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    #[error("cannot create the disk image {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot run mkfs.ext4 (install e2fsprogs; scripts/setup.sh does)")]
    Spawn(#[source] io::Error),
    #[error("mkfs.ext4 failed on {path}: {stderr}")]
    Mkfs { path: PathBuf, stderr: String },
}

/// Creates a sparse `size_mib` MiB file at `path` holding an ext4 filesystem, populated from
/// `contents` when given.
pub fn make_disk(path: &Path, size_mib: u64, contents: Option<&Path>) -> Result<(), Ext4Error> {
    let create = |source| Ext4Error::Create {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::create(path).map_err(create)?;
    file.set_len(size_mib * 1024 * 1024).map_err(create)?;
    drop(file);
    let mut cmd = Command::new("mkfs.ext4");
    // Inode tables and the journal are initialised here, on the host, instead of lazily by a
    // kernel thread in the guest, which under emulation would compete with the workload.
    cmd.args([
        "-q",
        "-F",
        "-E",
        "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
    ]);
    if let Some(dir) = contents {
        cmd.arg("-d").arg(dir);
    }
    cmd.arg(path);
    let out = cmd.output().map_err(Ext4Error::Spawn)?;
    if !out.status.success() {
        let _ = fs::remove_file(path);
        return Err(Ext4Error::Mkfs {
            path: path.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_populated_ext4_image_without_mounting() {
        let present = Command::new("mkfs.ext4").arg("-V").output().is_ok();
        if !crate::host_has(present, "mkfs.ext4 (e2fsprogs) installed") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("hello"), b"hi").unwrap();
        let img = tmp.path().join("disk.img");
        make_disk(&img, 8, Some(&src)).unwrap();
        assert_eq!(fs::metadata(&img).unwrap().len(), 8 << 20);
        // The ext4 superblock magic 0xEF53 sits at byte 1024 + 56.
        let bytes = fs::read(&img).unwrap();
        assert_eq!(&bytes[1024 + 56..1024 + 58], &[0x53, 0xef]);
    }
}
