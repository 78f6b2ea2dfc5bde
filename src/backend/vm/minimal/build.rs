//! `cvm kernel build` itself: unpack the source once, configure with the fragment, `make vmlinux`
//! in the kept object directory at the lowest CPU priority with progress, check that Kconfig kept
//! the fragment, install into the cache with `build.json`; and the image's content size.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    kernels_dir, missing_packages, not_applied, BuildKey, Built, MinimalKernelError, Source,
    BUILD_DIR_ENV, FRAGMENT, PROFILE,
};

/// Options of `cvm kernel build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub jobs: usize,
    /// Rebuild even if this key is already built.
    pub force: bool,
}

/// Builds the minimal kernel into `cache` (or returns the existing build), reporting progress
/// on `progress`.
pub fn build(
    cache: &Path,
    opts: &BuildOptions,
    progress: &mut dyn Write,
) -> Result<Built, MinimalKernelError> {
    let source = find_source()?;
    let key = BuildKey::new(FRAGMENT, &source.version);
    let kernels = kernels_dir(cache);
    let out_dir = key.dir(&kernels);
    if !opts.force {
        if let Ok(built) = Built::read(&out_dir) {
            if built.vmlinux.is_file() {
                return Ok(built);
            }
        }
    }
    let started = Instant::now();
    let workdir = match std::env::var_os(BUILD_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => cache.join("kernel-build").join(&source.version),
    };
    let srctree = unpack(&source, &workdir, progress)?;
    let objdir = workdir.join("obj");
    fs::create_dir_all(&objdir).map_err(|source| MinimalKernelError::Workdir {
        path: objdir.clone(),
        source,
    })?;
    let log = objdir.join("build.log");
    let resolved = configure(&srctree, &objdir, &source, &key, progress)?;

    let _ = writeln!(
        progress,
        "cvm kernel build: building vmlinux with {} jobs (log: {})",
        opts.jobs,
        log.display()
    );
    make(
        &srctree,
        &objdir,
        &[],
        "vmlinux",
        opts.jobs,
        &log,
        Some(progress),
    )?;
    let release = fs::read_to_string(objdir.join("include/config/kernel.release"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();

    let built = Built {
        profile: PROFILE.into(),
        release,
        source_version: source.version.clone(),
        config_hash: key.config_hash.clone(),
        key: key.key.clone(),
        build_seconds: started.elapsed().as_secs_f64(),
        vmlinux_bytes: 0,
        image_bytes: 0,
        vmlinux: out_dir.join("vmlinux"),
    };
    install(&objdir, &kernels, &key, &resolved, built)
}

/// The linux-source package, or the packages a build still needs.
fn find_source() -> Result<Source, MinimalKernelError> {
    let missing = missing_packages(
        |t| crate::backend::find_binary(t).is_some(),
        |p| p.is_file(),
    );
    let source = match Source::find() {
        Ok(s) => Some(s),
        Err(MinimalKernelError::MissingPackages(_)) => None,
        Err(e) => return Err(e),
    };
    let missing: Vec<&'static str> = source
        .is_none()
        .then_some("linux-source")
        .into_iter()
        .chain(missing)
        .collect();
    if !missing.is_empty() {
        return Err(MinimalKernelError::MissingPackages(missing));
    }
    Ok(source.expect("no missing packages, so the source was found"))
}

/// `allnoconfig` with cvm's fragment, then a check that every option of the fragment held:
/// the resolved `.config`.
fn configure(
    srctree: &Path,
    objdir: &Path,
    source: &Source,
    key: &BuildKey,
    progress: &mut dyn Write,
) -> Result<String, MinimalKernelError> {
    let work_err = |source| MinimalKernelError::Workdir {
        path: objdir.to_path_buf(),
        source,
    };
    let fragment_file = objdir.join("cvm-minimal.config");
    fs::write(&fragment_file, FRAGMENT).map_err(work_err)?;
    let log = objdir.join("build.log");
    let _ = writeln!(
        progress,
        "cvm kernel build: configuring linux-source {} (allnoconfig + assets/kernel/minimal.config, config {})",
        source.version, key.config_hash
    );
    let mut allconfig = OsArg::new();
    allconfig.push("KCONFIG_ALLCONFIG=", &fragment_file);
    make(
        srctree,
        objdir,
        &[allconfig.0],
        "allnoconfig",
        1,
        &log,
        None,
    )?;
    let resolved = fs::read_to_string(objdir.join(".config")).map_err(work_err)?;
    let lost = not_applied(FRAGMENT, &resolved);
    if !lost.is_empty() {
        return Err(MinimalKernelError::NotApplied(lost));
    }

    Ok(resolved)
}

/// Copies the build into the cache under a staging name, then renames it into place, so a
/// reader never sees half a kernel; `built` gets its sizes from the copied image.
fn install(
    objdir: &Path,
    kernels: &Path,
    key: &BuildKey,
    resolved: &str,
    mut built: Built,
) -> Result<Built, MinimalKernelError> {
    let out_dir = key.dir(kernels);
    let install_err = |source| MinimalKernelError::Install {
        path: out_dir.clone(),
        source,
    };
    let staging = kernels.join(format!(".{PROFILE}-{}.tmp-{}", key.key, std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(install_err)?;
    fs::copy(objdir.join("vmlinux"), staging.join("vmlinux")).map_err(install_err)?;
    fs::write(staging.join("config"), resolved).map_err(install_err)?;
    let image = fs::read(staging.join("vmlinux")).map_err(install_err)?;
    built.vmlinux_bytes = image.len() as u64;
    built.image_bytes = elf_content_bytes(&image).unwrap_or(built.vmlinux_bytes);
    let record = serde_json::to_string_pretty(&built).expect("a Built serialises");
    fs::write(staging.join("build.json"), record).map_err(install_err)?;
    let _ = fs::remove_dir_all(&out_dir);
    fs::rename(&staging, &out_dir).map_err(|e| {
        let _ = fs::remove_dir_all(&staging);
        install_err(e)
    })?;
    Ok(built)
}

/// One `NAME=path` make argument, built without assuming the path is UTF-8.
struct OsArg(std::ffi::OsString);

impl OsArg {
    fn new() -> OsArg {
        OsArg(std::ffi::OsString::new())
    }
    fn push(&mut self, name: &str, path: &Path) {
        self.0.push(name);
        self.0.push(path);
    }
}

/// Unpacks the tarball into `workdir` once (a marker file says it completed) and returns the
/// source tree.
fn unpack(
    source: &Source,
    workdir: &Path,
    progress: &mut dyn Write,
) -> Result<PathBuf, MinimalKernelError> {
    let marker = workdir.join(".cvm-unpacked");
    let werr = |source| MinimalKernelError::Workdir {
        path: workdir.to_path_buf(),
        source,
    };
    if let Ok(tree) = fs::read_to_string(&marker) {
        let tree = workdir.join(tree.trim());
        if tree.join("Makefile").is_file() {
            return Ok(tree);
        }
    }
    fs::create_dir_all(workdir).map_err(werr)?;
    let _ = writeln!(
        progress,
        "cvm kernel build: unpacking {} into {}",
        source.tarball.display(),
        workdir.display()
    );
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&source.tarball)
        .arg("-C")
        .arg(workdir)
        .status()
        .map_err(|e| MinimalKernelError::Spawn {
            tool: "tar".into(),
            source: e,
        })?;
    if !status.success() {
        return Err(MinimalKernelError::Unpack {
            tarball: source.tarball.clone(),
            status,
        });
    }
    // Debian's tarball holds one directory named like the tarball (linux-source-6.1).
    let name = source
        .tarball
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.xz"))
        .unwrap_or("linux-source")
        .to_string();
    fs::write(&marker, &name).map_err(werr)?;
    Ok(workdir.join(name))
}

/// Runs `make -C srctree O=objdir ARCH=x86_64 target`, its output appended to `log`. With
/// `progress`, prints how many files are compiled every [`PROGRESS_EVERY`].
fn make(
    srctree: &Path,
    objdir: &Path,
    extra: &[std::ffi::OsString],
    target: &str,
    jobs: usize,
    log: &Path,
    mut progress: Option<&mut dyn Write>,
) -> Result<(), MinimalKernelError> {
    let log_err = |source| MinimalKernelError::Workdir {
        path: log.to_path_buf(),
        source,
    };
    let mut log_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(log_err)?;
    let mut o = OsArg::new();
    o.push("O=", objdir);
    let mut child = Command::new("nice")
        .args(["-n", "19", "make"])
        .arg("-C")
        .arg(srctree)
        .arg(o.0)
        .arg("ARCH=x86_64")
        .arg(format!("-j{}", jobs.max(1)))
        .args(extra)
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| MinimalKernelError::Spawn {
            tool: "make".into(),
            source,
        })?;
    // stderr joins stdout in the log through a thread, so neither pipe can fill up and stall.
    let stderr = child.stderr.take().expect("stderr is piped");
    let err_log = log_file.try_clone().map_err(log_err)?;
    let err_thread = std::thread::spawn(move || {
        let mut err_log = err_log;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(err_log, "{line}");
        }
    });
    let started = Instant::now();
    let mut last = Instant::now();
    let mut compiled = 0u64;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let _ = writeln!(log_file, "{line}");
        if line.starts_with("  CC ") || line.starts_with("  AS ") {
            compiled += 1;
        }
        if let Some(p) = progress.as_deref_mut() {
            if last.elapsed() >= PROGRESS_EVERY {
                last = Instant::now();
                let _ = writeln!(
                    p,
                    "cvm kernel build: {compiled} files compiled, {}",
                    humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
                );
            }
        }
    }
    let _ = err_thread.join();
    let status = child.wait().map_err(|source| MinimalKernelError::Spawn {
        tool: "make".into(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    Err(MinimalKernelError::Make {
        target: target.into(),
        status,
        log: log.to_path_buf(),
        tail,
    })
}

const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// The bytes of an ELF64 (little-endian) file's allocated sections that have contents
/// (`SHF_ALLOC`, not `SHT_NOBITS`): what the image holds, without alignment padding. `None`
/// when `elf` is not such a file.
pub fn elf_content_bytes(elf: &[u8]) -> Option<u64> {
    const SHT_NOBITS: u32 = 8;
    const SHF_ALLOC: u64 = 2;
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    // ELF magic, 64-bit class, little-endian.
    if elf.get(0..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    if shentsize < 0x28 {
        return None;
    }
    let mut total = 0u64;
    for i in 0..shnum {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let (kind, flags, size) = (u32_at(h + 4)?, u64_at(h + 8)?, u64_at(h + 0x20)?);
        if flags & SHF_ALLOC != 0 && kind != SHT_NOBITS {
            total = total.checked_add(size)?;
        }
    }
    Some(total)
}
