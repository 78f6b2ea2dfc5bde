//! cvm's own guest kernel, built for the job (`cvm kernel build`): Debian's `linux-source`,
//! configured by `make allnoconfig` with the repository's fragment
//! (`assets/kernel/minimal.config`) as `KCONFIG_ALLCONFIG`, built as an uncompressed `vmlinux`
//! for PVH direct boot. Everything the distribution kernel loads as modules for the guest is
//! built in, so an initramfs for it carries no modules.
//!
//! Why: under TCG most of a distribution-kernel VM's time to ready is that kernel's own boot
//! (probing hardware a microvm lacks, initialising subsystems cvm never uses) and QEMU loading a
//! 60+ MB vmlinux. A kernel with nothing the microvm lacks is what Firecracker and Kata boot.
//!
//! Where: the cache (`image::cache_dir()`), keyed by the hash of the fragment, the source's
//! package version and the build recipe ([`BuildKey`]): `kernels/minimal-KEY/` holds the
//! `vmlinux`, the resolved `.config` and `build.json`; `kernel-build/SOURCE-VERSION/` the
//! unpacked source and its one object directory (`obj`), kept and shared by every fragment:
//! Kbuild tracks which objects read which option, so a changed fragment recompiles only what it
//! touches (turning on `SERIAL_8250_PNP` recompiled 3 files in 36 s on the reference host,
//! against about 11 CPU-minutes for the first build). `CVM_KERNEL_SOURCE` names another source
//! tarball, `CVM_KERNEL_BUILD_DIR` another work directory (then one per source, by whoever sets
//! it). `make` runs at the lowest CPU priority (`nice -n 19`): a build of minutes on idle CPUs
//! (over an hour on a busy shared host) must not slow what else the host is measuring.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod build;
pub use build::{build, elf_content_bytes, BuildOptions};

/// The configuration fragment, as reviewed in the repository.
pub const FRAGMENT: &str = include_str!("../../../../assets/kernel/minimal.config");
/// The name of this kernel profile wherever a kernel is recorded.
pub const PROFILE: &str = "minimal";
/// Changes whenever the way the fragment becomes a vmlinux changes, so old builds are not reused.
const RECIPE: &str = "allnoconfig + KCONFIG_ALLCONFIG fragment, make vmlinux, v1";
/// Overrides the source tarball (default: the newest `/usr/src/linux-source-*.tar.xz`).
pub const SOURCE_ENV: &str = "CVM_KERNEL_SOURCE";
/// Overrides the directory the source is unpacked and built in.
pub const BUILD_DIR_ENV: &str = "CVM_KERNEL_BUILD_DIR";
/// Overrides where builds are installed and found (default: the cache's `kernels/`), so runs
/// with a cache of their own (the tests) can boot a kernel built once for the host.
pub const KERNELS_DIR_ENV: &str = "CVM_MINIMAL_KERNEL_DIR";

/// Where builds live: `$CVM_MINIMAL_KERNEL_DIR`, else `cache/kernels`.
pub fn kernels_dir(cache: &Path) -> PathBuf {
    std::env::var_os(KERNELS_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("kernels"))
}

#[derive(Debug, thiserror::Error)]
pub enum MinimalKernelError {
    #[error(
        "cannot build the guest kernel: missing {} (apt-get install {}, or scripts/setup.sh --kernel)",
        .0.join(", "),
        .0.join(" ")
    )]
    MissingPackages(Vec<&'static str>),
    #[error("the kernel source {0} does not exist (install linux-source, or unset {SOURCE_ENV})")]
    NoSource(PathBuf),
    #[error(
        "the minimal guest kernel is not built for this configuration (key {key}); \
         run `cvm kernel build` (about 11 CPU-minutes: ~6 minutes on 2 idle CPUs)"
    )]
    NotBuilt { key: String },
    #[error("cannot read the build record {path}")]
    Record {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the build record {path} is not valid")]
    BadRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot prepare the build directory {path}")]
    Workdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot run {tool}")]
    Spawn {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("unpacking {tarball} failed ({status})")]
    Unpack {
        tarball: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("`make {target}` failed ({status}); the last lines of {log}:\n{tail}")]
    Make {
        target: String,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "Kconfig did not keep these lines of the fragment (a dependency is missing): {}",
        .0.join("; ")
    )]
    NotApplied(Vec<String>),
    #[error("cannot install the built kernel in {path}")]
    Install {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The short hash of the fragment alone: what a sample records as the kernel's configuration.
pub fn config_hash() -> String {
    short_hash(&[FRAGMENT])
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    format!("{:x}", h.finalize())[..16].to_string()
}

/// The kernel source: a `linux-source` tarball and its package version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub tarball: PathBuf,
    /// The Debian package version (`6.1.192-3`), or for a tarball no package owns, its file
    /// name, size and modification time: whatever changes when the source does.
    pub version: String,
}

impl Source {
    /// `$CVM_KERNEL_SOURCE`, else the newest `/usr/src/linux-source-*.tar.xz`.
    pub fn find() -> Result<Source, MinimalKernelError> {
        let tarball = match std::env::var_os(SOURCE_ENV) {
            Some(p) => PathBuf::from(p),
            None => newest_source_tarball(Path::new("/usr/src"))
                .ok_or(MinimalKernelError::MissingPackages(vec!["linux-source"]))?,
        };
        let meta =
            fs::metadata(&tarball).map_err(|_| MinimalKernelError::NoSource(tarball.clone()))?;
        let version = package_version(&tarball).unwrap_or_else(|| {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            format!(
                "{}-{}-{mtime}",
                tarball.file_name().unwrap_or_default().to_string_lossy(),
                meta.len()
            )
        });
        Ok(Source { tarball, version })
    }
}

fn newest_source_tarball(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-source-") && n.ends_with(".tar.xz"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The version of the Debian package that installed `file`, from dpkg's database.
fn package_version(file: &Path) -> Option<String> {
    let owner = Command::new("dpkg-query")
        .arg("-S")
        .arg(file)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&owner.stdout);
    let package = text.split(':').next()?.trim().to_string();
    if !owner.status.success() || package.is_empty() {
        return None;
    }
    let v = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", &package])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&v.stdout).trim().to_string();
    (v.status.success() && !version.is_empty()).then_some(version)
}

/// What identifies one build: the fragment, the source and the recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildKey {
    pub key: String,
    pub config_hash: String,
}

impl BuildKey {
    pub fn new(fragment: &str, source_version: &str) -> BuildKey {
        BuildKey {
            key: short_hash(&[fragment, source_version, RECIPE]),
            config_hash: short_hash(&[fragment]),
        }
    }

    /// The build's directory under `kernels` (see [`kernels_dir`]).
    pub fn dir(&self, kernels: &Path) -> PathBuf {
        kernels.join(format!("{PROFILE}-{}", self.key))
    }
}

/// What `build.json` records next to a built vmlinux.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Built {
    /// `minimal`.
    pub profile: String,
    /// The kernel's release (`6.1.192`), as `uname -r` in the guest says.
    pub release: String,
    /// The source package's version.
    pub source_version: String,
    /// [`config_hash`] of the fragment it was built from.
    pub config_hash: String,
    pub key: String,
    pub build_seconds: f64,
    /// The size of the `vmlinux` file.
    pub vmlinux_bytes: u64,
    /// What the kernel image holds: its allocated sections with contents (text, read-only
    /// data, data, init code and data; not bss), without the padding of the file. x86-64's
    /// linker script starts read-only data and data on 2 MiB boundaries (for huge-page
    /// mappings) and the segments sit at 2 MiB-aligned file offsets, so about half of the
    /// file is zeros the guest frees at boot. 0 in a record written before it was counted.
    #[serde(default)]
    pub image_bytes: u64,
    #[serde(skip)]
    pub vmlinux: PathBuf,
}

impl Built {
    fn read(dir: &Path) -> Result<Built, MinimalKernelError> {
        let path = dir.join("build.json");
        let text = fs::read_to_string(&path).map_err(|source| MinimalKernelError::Record {
            path: path.clone(),
            source,
        })?;
        let mut built: Built = serde_json::from_str(&text)
            .map_err(|source| MinimalKernelError::BadRecord { path, source })?;
        built.vmlinux = dir.join("vmlinux");
        Ok(built)
    }
}

/// The minimal kernel built from this repository's fragment and the installed source.
pub fn find_built(cache: &Path) -> Result<Built, MinimalKernelError> {
    let source = Source::find()?;
    let key = BuildKey::new(FRAGMENT, &source.version);
    let dir = key.dir(&kernels_dir(cache));
    if !dir.join("vmlinux").is_file() || !dir.join("build.json").is_file() {
        return Err(MinimalKernelError::NotBuilt { key: key.key });
    }
    Built::read(&dir)
}

/// The Debian packages whose tools a kernel build runs, given a lookup of what is installed.
pub fn missing_packages(
    has_tool: impl Fn(&str) -> bool,
    has_file: impl Fn(&Path) -> bool,
) -> Vec<&'static str> {
    let tools: [(&str, &'static str); 9] = [
        ("make", "make"),
        ("gcc", "gcc"),
        ("ld", "binutils"),
        ("bc", "bc"),
        ("bison", "bison"),
        ("flex", "flex"),
        ("perl", "perl"),
        ("tar", "tar"),
        ("xz", "xz-utils"),
    ];
    let mut missing: Vec<&'static str> = tools
        .iter()
        .filter(|(tool, _)| !has_tool(tool))
        .map(|(_, package)| *package)
        .collect();
    // objtool, built as part of every x86-64 kernel, reads ELF through libelf.
    if !has_file(Path::new("/usr/include/libelf.h")) {
        missing.push("libelf-dev");
    }
    missing
}

/// Fragment lines (`CONFIG_X=v`, `# CONFIG_X is not set`) that the resolved `.config` lacks.
pub fn not_applied(fragment: &str, resolved: &str) -> Vec<String> {
    let have: std::collections::HashSet<&str> = resolved.lines().map(str::trim).collect();
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("CONFIG_") || (l.starts_with("# CONFIG_") && l.ends_with(" is not set"))
        })
        .filter(|l| !have.contains(l))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fragment_builds_what_a_microvm_guest_needs_and_no_modules() {
        for line in [
            "CONFIG_PVH=y",
            "CONFIG_VIRTIO_MMIO=y",
            "CONFIG_VIRTIO_PCI=y",
            "CONFIG_VIRTIO_BLK=y",
            "CONFIG_VIRTIO_NET=y",
            "CONFIG_VIRTIO_CONSOLE=y",
            "CONFIG_EXT4_FS=y",
            "CONFIG_SERIAL_8250_CONSOLE=y",
            // Without it the UART has no usable IRQ on the microvm and user space cannot write
            // to the console (the marker channel).
            "CONFIG_SERIAL_8250_PNP=y",
            "CONFIG_DEVTMPFS=y",
            "CONFIG_BLK_DEV_INITRD=y",
            "# CONFIG_MODULES is not set",
            "# CONFIG_RD_GZIP is not set",
            "# CONFIG_KALLSYMS is not set",
        ] {
            assert!(
                FRAGMENT.lines().any(|l| l.trim() == line),
                "the fragment lacks {line}"
            );
        }
        assert!(
            !FRAGMENT.lines().any(|l| l.trim_end().ends_with("=m")),
            "a module in a kernel without module support"
        );
    }

    #[test]
    fn the_key_changes_with_the_fragment_and_the_source_but_the_config_hash_only_with_the_fragment()
    {
        let a = BuildKey::new("CONFIG_A=y\n", "6.1.192-3");
        assert_eq!(a, BuildKey::new("CONFIG_A=y\n", "6.1.192-3"));
        let newer_source = BuildKey::new("CONFIG_A=y\n", "6.1.193-1");
        assert_ne!(a.key, newer_source.key);
        assert_eq!(a.config_hash, newer_source.config_hash);
        let other_config = BuildKey::new("CONFIG_B=y\n", "6.1.192-3");
        assert_ne!(a.key, other_config.key);
        assert_ne!(a.config_hash, other_config.config_hash);
        assert_eq!(a.key.len(), 16);
        assert_eq!(config_hash(), BuildKey::new(FRAGMENT, "x").config_hash);
        assert!(a
            .dir(Path::new("/c"))
            .ends_with(format!("c/minimal-{}", a.key)));
    }

    #[test]
    fn lines_kconfig_dropped_are_named() {
        let fragment = "# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_N=1\n";
        let resolved = "CONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_C is not set\nCONFIG_N=1\n";
        assert_eq!(not_applied(fragment, resolved), ["CONFIG_C=y"]);
        assert!(
            not_applied(fragment, "CONFIG_A=y\nCONFIG_C=y\nCONFIG_N=1\n")
                .contains(&"# CONFIG_B is not set".to_string())
        );
    }

    #[test]
    fn missing_build_tools_are_named_by_their_packages() {
        let none = missing_packages(|_| false, |_| false);
        for p in [
            "make",
            "gcc",
            "bc",
            "bison",
            "flex",
            "libelf-dev",
            "xz-utils",
        ] {
            assert!(none.contains(&p), "{p} not named in {none:?}");
        }
        let only_bison = missing_packages(|t| t != "bison", |_| true);
        assert_eq!(only_bison, ["bison"]);
        assert!(missing_packages(|_| true, |_| true).is_empty());
        let msg = MinimalKernelError::MissingPackages(vec!["bison", "flex"]).to_string();
        assert!(msg.contains("missing bison, flex"), "{msg}");
        assert!(msg.contains("apt-get install bison flex"), "{msg}");
    }

    #[test]
    fn a_missing_build_is_reported_with_its_key_and_the_command_that_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = BuildKey::new(FRAGMENT, "1");
        assert!(Built::read(&key.dir(dir.path())).is_err());
        let msg = MinimalKernelError::NotBuilt {
            key: key.key.clone(),
        }
        .to_string();
        assert!(
            msg.contains("cvm kernel build") && msg.contains(&key.key),
            "{msg}"
        );
    }

    #[test]
    fn a_build_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let built = Built {
            profile: PROFILE.into(),
            release: "6.1.192".into(),
            source_version: "6.1.192-3".into(),
            config_hash: config_hash(),
            key: "k".into(),
            build_seconds: 12.5,
            vmlinux_bytes: 42,
            image_bytes: 21,
            vmlinux: dir.path().join("vmlinux"),
        };
        fs::write(
            dir.path().join("build.json"),
            serde_json::to_string(&built).unwrap(),
        )
        .unwrap();
        assert_eq!(Built::read(dir.path()).unwrap(), built);
        fs::write(dir.path().join("build.json"), "{").unwrap();
        assert!(matches!(
            Built::read(dir.path()),
            Err(MinimalKernelError::BadRecord { .. })
        ));
    }

    /// An ELF64 file with the given sections: (type, flags, size).
    fn elf_with(sections: &[(u32, u64, u64)]) -> Vec<u8> {
        let mut f = vec![0u8; 0x40];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[0x28..0x30].copy_from_slice(&0x40u64.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        for (kind, flags, size) in sections {
            let mut h = vec![0u8; 0x40];
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&flags.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            f.extend(h);
        }
        f
    }

    #[test]
    fn image_content_counts_allocated_sections_with_contents_only() {
        const PROGBITS: u32 = 1;
        const SYMTAB: u32 = 2;
        const NOBITS: u32 = 8;
        const ALLOC: u64 = 2;
        let elf = elf_with(&[
            (0, 0, 0),
            (PROGBITS, ALLOC | 4, 6000),  // .text
            (PROGBITS, ALLOC, 500),       // .rodata
            (NOBITS, ALLOC | 1, 100_000), // .bss: zeroed at boot, not in the image
            (SYMTAB, 0, 7000),            // .symtab: not loaded
            (PROGBITS, 0, 40),            // .comment: not loaded
        ]);
        assert_eq!(elf_content_bytes(&elf), Some(6500));
        assert_eq!(elf_content_bytes(b"\x7fELF\x01\x01"), None, "32-bit");
        assert_eq!(elf_content_bytes(b"MZ"), None);
        let mut truncated = elf.clone();
        truncated.truncate(0x40 + 0x40 + 10);
        assert_eq!(elf_content_bytes(&truncated), None);
    }

    #[test]
    fn the_newest_source_tarball_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_source_tarball(dir.path()), None);
        for n in [
            "linux-source-5.10.tar.xz",
            "linux-source-6.1.tar.xz",
            "other.tar.xz",
        ] {
            fs::write(dir.path().join(n), b"").unwrap();
        }
        assert_eq!(
            newest_source_tarball(dir.path()).unwrap(),
            dir.path().join("linux-source-6.1.tar.xz")
        );
    }
}
