//! Bring your own workload: host binaries copied into the image with the shared libraries they
//! load (see [`super::libs`]), and a user-supplied rootfs (a directory, or a tarball such as
//! `docker export` writes) as the image's base.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;

/// The files a host binary needs inside the image: itself and every library `ldd` names,
/// including the dynamic loader. Paths are absolute host paths; each is copied to the same path.
pub fn closure(binary: &Path) -> Result<BTreeSet<PathBuf>, ImageError> {
    let bad = |reason: String| ImageError::HostBinary {
        path: binary.to_path_buf(),
        reason,
    };
    if !binary.is_absolute() {
        return Err(bad("give an absolute path".into()));
    }
    let meta = fs::metadata(binary).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let mut files = BTreeSet::from([binary.to_path_buf()]);
    files.extend(super::libs::shared_libraries(binary).map_err(|e| bad(e.to_string()))?);
    Ok(files)
}

/// Where host path `path` goes under `root`, with its parent made and whatever stood there
/// removed: the destination may be a symlink from the base rootfs, to be replaced, never
/// written through.
pub fn place(root: &Path, path: &Path) -> Result<PathBuf, ImageError> {
    let dest = root.join(path.strip_prefix("/").unwrap_or(path));
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|source| ImageError::Write {
            path: dest.clone(),
            source,
        })?;
    }
    let _ = fs::remove_file(&dest);
    Ok(dest)
}

/// Copies `files` (absolute host paths) to the same paths under `root`, following symlinks so
/// the image holds real files.
pub fn copy_into(root: &Path, files: &BTreeSet<PathBuf>) -> Result<(), ImageError> {
    for f in files {
        let dest = place(root, f)?;
        fs::copy(f, &dest).map_err(|source| ImageError::Write { path: dest, source })?;
    }
    Ok(())
}

/// Lays a user rootfs (directory or tarball, any compression tar detects) into `root`.
pub fn unpack_rootfs(src: &Path, root: &Path) -> Result<(), ImageError> {
    let status = if src.is_dir() {
        // cp -a keeps links, modes and ownership: the user's tree as it is.
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.display()))
            .arg(root)
            .status()
    } else {
        Command::new("tar")
            .arg("-xaf")
            .arg(src)
            .arg("-C")
            .arg(root)
            .arg("--no-same-owner")
            .status()
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(ImageError::Rootfs {
            path: src.to_path_buf(),
            source: io::Error::other(format!("unpacking exited with {s}")),
        }),
        Err(source) => Err(ImageError::Rootfs {
            path: src.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_host_binary_brings_its_loader_and_libc() {
        let files = closure(Path::new("/bin/ls")).unwrap();
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().contains("libc.so")),
            "{files:?}"
        );
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().contains("ld-linux")),
            "{files:?}"
        );
        assert!(closure(Path::new("relative/ls")).is_err());
        assert!(closure(Path::new("/nonexistent/bin")).is_err());
    }
}
