//! The hypervisor's disk layer, asked of QEMU itself: the binary and its shared libraries (the
//! one resolver, `ldd`), the modules it loads at run time (the accelerator is a `dlopen`ed
//! module in Debian's build, invisible to `ldd`), and the firmware and option ROMs it reads for
//! the chosen machine and devices.
//!
//! Which ROMs those are depends on the machine type, its devices and the QEMU build (microvm
//! loads qboot and a linuxboot ROM; `pc` SeaBIOS, a VGA BIOS, kvmvapic, and an option ROM per
//! PCI NIC), so no list is written here. The launch command line is started paused (`-S`, the
//! guest never runs); over QMP, `info roms` names the ROMs loaded into the machine and
//! `info qtree` every device's `romfile`; QEMU's `-L help` lists the directories it resolves
//! those names in, in its own order; `/proc/PID/maps` shows the modules it mapped.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::qemu::QemuSpec;
use super::qmp::{Qmp, QmpError};
use crate::backend::command::run_within;
use crate::backend::process::{Supervised, Terminate};
use crate::image::libs::LibsError;

/// How long the paused QEMU may take to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long QEMU gets to act on QMP `quit` before the one stop sequence ends it.
const QUIT_WAIT: Duration = Duration::from_secs(5);
/// How long `qemu -L help` may take.
const HELP_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    #[error("cannot create the probe's directory {path}")]
    TempDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start {program} paused to list the files it reads")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot ask the paused QEMU which files it loaded")]
    Qmp(#[source] QmpError),
    #[error("cannot read the paused QEMU's memory map")]
    Maps(#[source] io::Error),
    #[error("cannot list QEMU's shared libraries")]
    Libraries(#[source] LibsError),
}

/// Every file of the hypervisor layer for `template`'s command line (with a NIC when `nic`, and
/// a data disk when `disk`, as launches will have them).
pub fn hypervisor_files(
    template: &QemuSpec,
    nic: bool,
    disk: bool,
) -> Result<Vec<PathBuf>, FootprintError> {
    let dir = std::env::temp_dir().join(format!(
        "cvm-footprint-{}-{:04x}",
        std::process::id(),
        fastrand::u16(..)
    ));
    std::fs::create_dir(&dir).map_err(|source| FootprintError::TempDir {
        path: dir.clone(),
        source,
    })?;
    let result = probe(template, nic, disk, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let loaded = result?;
    let mut executables = vec![template.binary.clone()];
    executables.extend(loaded.modules);
    let mut files =
        crate::backend::with_libraries(&executables).map_err(FootprintError::Libraries)?;
    let data_dirs = data_dirs(&template.binary);
    for name in loaded.roms {
        if let Some(p) = resolve(&name, &data_dirs) {
            if !files.contains(&p) {
                files.push(p);
            }
        }
    }
    Ok(files)
}

/// What the paused QEMU loaded: module files, and ROM names as QEMU gives them.
struct Loaded {
    modules: Vec<PathBuf>,
    roms: Vec<String>,
}

fn probe(template: &QemuSpec, nic: bool, disk: bool, dir: &Path) -> Result<Loaded, FootprintError> {
    let mut spec = template.clone();
    let sock = dir.join("qmp.sock");
    spec.qmp = Some(sock.clone());
    spec.net = nic.then(Vec::new);
    if disk {
        let img = dir.join("probe.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(1 << 20))
            .map_err(|source| FootprintError::TempDir {
                path: img.clone(),
                source,
            })?;
        spec.disk = Some(img);
    }
    let mut args = spec.args();
    args.push(OsString::from("-S"));
    let child = Command::new(&spec.binary)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| FootprintError::Spawn {
            program: spec.binary.clone(),
            source,
        })?;
    let pid = child.id();
    let mut qemu = Supervised::from_child(child);
    let asked = ask(&sock, pid, &spec);
    // Quit was asked for over QMP; a QEMU that did not act on it (or was never asked: QMP
    // failed) gets the one stop sequence (SIGTERM, which QEMU takes as quit, the grace period,
    // SIGKILL), and is reaped either way.
    if qemu.wait_timeout(QUIT_WAIT).is_none() {
        qemu.stop(&Terminate);
        qemu.reap();
    }
    asked
}

fn ask(sock: &Path, pid: u32, spec: &QemuSpec) -> Result<Loaded, FootprintError> {
    let mut qmp = Qmp::connect(sock, PROBE_TIMEOUT).map_err(FootprintError::Qmp)?;
    let mut hmp = |command: &str| -> Result<String, FootprintError> {
        let v = qmp
            .execute(
                "human-monitor-command",
                Some(json!({ "command-line": command })),
            )
            .map_err(FootprintError::Qmp)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    };
    let roms_text = hmp("info roms")?;
    let qtree = hmp("info qtree")?;
    let maps =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(FootprintError::Maps)?;
    let _ = qmp.quit();
    let mut roms = rom_names(&roms_text);
    roms.extend(romfiles(&qtree));
    // The kernel and initramfs are the guest OS layer's, wherever QEMU lists them.
    roms.retain(|r| Path::new(r) != spec.kernel && Path::new(r) != spec.initrd);
    Ok(Loaded {
        modules: mapped_modules(&maps, &spec.binary),
        roms,
    })
}

/// `name="..."` of each `info roms` line, less QEMU's generated tables (`etc/...`).
fn rom_names(text: &str) -> Vec<String> {
    quoted_after(text, "name=\"")
        .into_iter()
        .filter(|n| !n.starts_with("etc/"))
        .collect()
}

/// `romfile = "..."` of each device in `info qtree` that has one.
fn romfiles(text: &str) -> Vec<String> {
    quoted_after(text, "romfile = \"")
}

fn quoted_after(text: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.split_once(key).map(|(_, r)| r) {
            if let Some((value, _)) = rest.split_once('"') {
                if !value.is_empty() && !out.iter().any(|v| v == value) {
                    out.push(value.to_string());
                }
            }
        }
    }
    out
}

/// Shared objects QEMU mapped that are not its binary: its libraries and its modules (the
/// libraries come back from `ldd` too; duplicates are dropped by the caller).
fn mapped_modules(maps: &str, binary: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(path) = line
            .split_whitespace()
            .nth(5)
            .filter(|p| p.starts_with('/'))
        else {
            continue;
        };
        let p = PathBuf::from(path);
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let shared_object = name.is_some_and(|n| n.ends_with(".so") || n.contains(".so."));
        if shared_object && p != binary && p.is_file() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// QEMU's firmware directories, in its search order (`-L help`).
fn data_dirs(qemu: &Path) -> Vec<PathBuf> {
    run_within(
        Command::new(qemu).args(["-L", "help"]).stdin(Stdio::null()),
        HELP_LIMIT,
    )
    .map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect()
    })
    .unwrap_or_default()
}

/// A ROM name as QEMU resolves it: an existing absolute path, else the first data directory
/// that holds it (canonical, so `/usr/bin/../share` reads as `/usr/share`).
fn resolve(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let p = Path::new(name);
    let found = if p.is_absolute() {
        Some(p.to_path_buf()).filter(|p| p.is_file())
    } else {
        dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
    }?;
    Some(std::fs::canonicalize(&found).unwrap_or(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rom_names_come_from_info_roms_and_qtree() {
        let roms = "fw=genroms/kvmvapic.bin size=0x002400 name=\"kvmvapic.bin\"\r\n\
                    addr=00000000fffc0000 size=0x040000 mem=rom name=\"bios-256k.bin\"\r\n\
                    /rom@etc/acpi/tables size=0x200000 name=\"etc/acpi/tables\"\r\n";
        assert_eq!(rom_names(roms), vec!["kvmvapic.bin", "bios-256k.bin"]);
        let qtree = "  dev: VGA, id \"\"\n    romfile = \"vgabios-stdvga.bin\"\n    \
                     romfile = \"\"\n  dev: virtio-net-pci\n    romfile = \"efi-virtio.rom\"\n";
        assert_eq!(
            romfiles(qtree),
            vec!["vgabios-stdvga.bin", "efi-virtio.rom"]
        );
    }

    #[test]
    fn modules_are_the_mapped_shared_objects() {
        let maps = "5600-5700 r--p 0 08:01 1 /usr/bin/qemu-system-x86_64\n\
                    7f00-7f10 r-xp 0 08:01 2 /bin/sh\n\
                    7f10-7f20 rw-p 0 00:00 0 [heap]\n\
                    7f20-7f30 r--p 0 00:01 3 /memfd:pc.ram (deleted)\n";
        // Only files that exist and look like shared objects: none of these do.
        assert!(mapped_modules(maps, Path::new("/usr/bin/qemu-system-x86_64")).is_empty());
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("accel-tcg-x86_64.so");
        std::fs::write(&module, b"x").unwrap();
        let maps = format!("7f00-7f10 r-xp 0 08:01 2 {}\n", module.display());
        assert_eq!(mapped_modules(&maps, Path::new("/q")), vec![module.clone()]);
        let name = module.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            resolve(name, &[PathBuf::from("/nonexistent"), dir.path().into()]).unwrap(),
            std::fs::canonicalize(&module).unwrap()
        );
        assert_eq!(resolve("missing.bin", &[dir.path().into()]), None);
    }
}
