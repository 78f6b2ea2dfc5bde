//! The shared libraries a host binary loads, as the system's `ldd` (the dynamic loader's own
//! answer) names them: used to copy a host binary into an image and to count a hypervisor's
//! on-disk footprint.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum LibsError {
    #[error("cannot run ldd on {binary}")]
    Ldd {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{binary} needs shared libraries missing on this host: {}", missing.join(", "))]
    Missing {
        binary: PathBuf,
        missing: Vec<String>,
    },
}

/// One line of `ldd` output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LddLine {
    /// A library (or the loader) at this absolute path.
    Found(PathBuf),
    /// `name => not found`.
    NotFound(String),
}

/// Absolute paths of every shared library `binary` loads, the dynamic loader included, in `ldd`'s
/// order. A static binary has none (`ldd` says "not a dynamic executable" and fails: not an
/// error here). A library `ldd` cannot find is an error naming it.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, LibsError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|source| LibsError::Ldd {
            binary: binary.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Ok(Vec::new());
    }
    libraries(&String::from_utf8_lossy(&out.stdout)).map_err(|missing| LibsError::Missing {
        binary: binary.to_path_buf(),
        missing,
    })
}

/// The pure part of [`shared_libraries`]: the paths, or the names of the missing libraries.
fn libraries(ldd_output: &str) -> Result<Vec<PathBuf>, Vec<String>> {
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for line in ldd_output.lines().filter_map(parse_line) {
        match line {
            LddLine::Found(p) => found.push(p),
            LddLine::NotFound(name) => missing.push(name),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(missing)
    }
}

/// `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)`, `/lib64/ld-linux-x86-64.so.2 (0x...)`,
/// `libfoo.so => not found`; the vDSO (`linux-vdso.so.1 (0x...)`) has no file and is skipped.
fn parse_line(line: &str) -> Option<LddLine> {
    let line = line.trim();
    if let Some(name) = line.strip_suffix("=> not found") {
        return Some(LddLine::NotFound(name.trim().to_string()));
    }
    let path = match line.split_once("=>") {
        Some((_, rest)) => rest.split_whitespace().next()?,
        None => line.split_whitespace().next()?,
    };
    path.starts_with('/')
        .then(|| LddLine::Found(PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            libraries(text).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn missing_libraries_are_named() {
        let text = "\tlibfoo.so => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n\tlibbar.so.2 => not found\n";
        assert_eq!(
            libraries(text).unwrap_err(),
            vec!["libfoo.so".to_string(), "libbar.so.2".to_string()]
        );
    }

    #[test]
    fn a_dynamic_binary_has_libc_and_a_static_one_nothing() {
        let libs = shared_libraries(Path::new("/bin/ls")).unwrap();
        assert!(
            libs.iter().any(|f| f.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
        let guest = env!("CARGO_MANIFEST_DIR");
        // A directory is no dynamic executable either: ldd fails, which means no libraries.
        assert_eq!(
            shared_libraries(Path::new(guest)).unwrap(),
            Vec::<PathBuf>::new()
        );
    }
}
