//! An app's files from installed Debian packages (`dpkg -L`) or an explicit list, by the
//! bring-your-own rule: each file to the same path in the image, an executable with the shared
//! libraries it loads ([`super::byo::closure`]), a symbolic link as a link (so a program
//! installed under two names counts once), documentation left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{byo, ImageError};

/// What a package installs that no program reads at run time.
const LEFT_OUT: &[&str] = &[
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/lintian/",
    "/usr/share/bash-completion/",
    "/usr/share/zsh/",
    "/lib/systemd/",
    "/usr/lib/systemd/",
    "/etc/init.d/",
    "/etc/logrotate.d/",
];

/// An app's files: what its own layer counts, the libraries its executables load, and links.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AppFiles {
    /// Executables and data files (host paths, copied to the same path).
    pub app: BTreeSet<PathBuf>,
    /// Shared libraries the executables load, less those the app lists itself.
    pub libs: BTreeSet<PathBuf>,
    /// Symbolic links: path → the target as written.
    pub links: BTreeMap<PathBuf, PathBuf>,
}

/// The files of `packages` (installed) and `files`, by the rule above.
pub fn collect(packages: &[String], files: &[PathBuf]) -> Result<AppFiles, ImageError> {
    let mut paths: Vec<PathBuf> = files.to_vec();
    for p in packages {
        paths.extend(listed(p)?);
    }
    let mut out = AppFiles::default();
    for path in paths {
        add(&mut out, &path)?;
    }
    let app = out.app.clone();
    out.libs.retain(|l| !app.contains(l));
    Ok(out)
}

/// The regular files and links `dpkg -L` lists for an installed package, less [`LEFT_OUT`].
fn listed(package: &str) -> Result<Vec<PathBuf>, ImageError> {
    let bad = |reason: String| ImageError::Package {
        name: package.to_string(),
        reason,
    };
    let out = Command::new("dpkg")
        .args(["-L", package])
        .output()
        .map_err(|e| bad(format!("cannot run dpkg: {e}")))?;
    if !out.status.success() {
        return Err(bad(format!(
            "not installed ({}); `scripts/setup.sh --apps` installs the built-in apps' packages",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .filter(|p| {
            let s = p.to_string_lossy();
            p.is_absolute() && !LEFT_OUT.iter().any(|l| s.starts_with(l))
        })
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()) && !p.is_dir())
        .collect())
}

fn add(out: &mut AppFiles, path: &Path) -> Result<(), ImageError> {
    let bad = |reason: String| ImageError::HostBinary {
        path: path.to_path_buf(),
        reason,
    };
    let meta = fs::symlink_metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(|e| bad(e.to_string()))?;
        // A dangling link (a package's link to a file another package ships) is left out.
        let Ok(real) = fs::canonicalize(path) else {
            return Ok(());
        };
        // A link to a directory (`/lib` on a merged-/usr host, which dpkg lists as a path of
        // the package) is the host's layout, not the app's.
        if real.is_dir() {
            return Ok(());
        }
        out.links.insert(path.to_path_buf(), target);
        if !out.app.contains(&real) {
            add(out, &real)?;
        }
        return Ok(());
    }
    if !meta.is_file() {
        return Ok(());
    }
    if meta.permissions().mode() & 0o111 != 0 && is_elf(path) {
        let closure = byo::closure(path)?;
        out.libs.extend(closure.into_iter().filter(|f| f != path));
    }
    out.app.insert(path.to_path_buf());
    Ok(())
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

/// Makes `links` under `root` (after the files are copied, so a link never points nowhere).
pub fn make_links(root: &Path, links: &BTreeMap<PathBuf, PathBuf>) -> Result<(), ImageError> {
    for (path, target) in links {
        let dest = super::byo::place(root, path)?;
        std::os::unix::fs::symlink(target, &dest)
            .map_err(|source| ImageError::Write { path: dest, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_brings_its_programs_libraries_and_links_without_docs() {
        // coreutils is essential on every Debian host: its programs are ELF executables.
        let files = collect(&["coreutils".to_string()], &[]).unwrap();
        assert!(files.app.contains(Path::new("/usr/bin/seq")), "{files:?}");
        assert!(files
            .libs
            .iter()
            .any(|f| f.to_string_lossy().contains("libc.so")));
        assert!(!files
            .app
            .iter()
            .any(|f| f.starts_with("/usr/share/doc") || f.starts_with("/usr/share/man")));
        let missing = collect(&["cvm-no-such-package".to_string()], &[]).unwrap_err();
        assert!(missing.to_string().contains("not installed"), "{missing}");
    }

    #[test]
    fn a_link_is_kept_as_a_link_and_brings_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.txt");
        fs::write(&data, "x").unwrap();
        let link = dir.path().join("alias");
        std::os::unix::fs::symlink("data.txt", &link).unwrap();
        let files = collect(&[], std::slice::from_ref(&link)).unwrap();
        assert_eq!(files.links.get(&link), Some(&PathBuf::from("data.txt")));
        assert!(files.app.contains(&fs::canonicalize(&data).unwrap()));
    }
}
