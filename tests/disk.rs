//! Disk layers as cvm reports them (the `disk.*` samples of a real `cvm compare` run), per
//! backend, against a count the test makes itself: the files it expects each layer to hold,
//! found with the shell's own PATH lookup and `ldd` (or, for QEMU, the files QEMU opens under
//! `strace`), and their bytes from `du`, of stripped copies for executables and libraries.
//! Docker's layers are checked in `tests/container.rs`, beside the private daemon that test
//! starts.

mod common;

use std::path::{Path, PathBuf};

use cvm::results::SampleRow;
use cvm::scenario::BackendKind;

use common::disk::{
    assert_layers, disk_cache, disk_figures, du_bytes, du_installed, which, with_ldd,
};
use common::instances::{setup_env, usable};
use common::{cvm_cmd, host_has, stderr};

const HELLO: &str = "name = \"disk\"\nruns = 1\nwarmup = 0\ntimeout_s = 120\n\
                     [workload]\napplet = \"hello\"\n";

/// One `cvm compare` of the hello scenario on `backend`, under `wrapper` (e.g. strace) if given;
/// its samples.
fn compare(dir: &Path, backend: &str, wrapper: &[&str]) -> Vec<SampleRow> {
    compare_with(dir, backend, wrapper, HELLO)
}

/// [`compare`] of `scenario` (TOML text).
fn compare_with(dir: &Path, backend: &str, wrapper: &[&str], text: &str) -> Vec<SampleRow> {
    let scenario = dir.join("disk.toml");
    std::fs::write(&scenario, text).unwrap();
    let out_dir = dir.join(format!("out-{backend}"));
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let base = cvm_cmd();
            let mut c = std::process::Command::new(program);
            c.args(args).arg(base.get_program());
            c.envs(base.get_envs().filter_map(|(k, v)| Some((k, v?))));
            c
        }
        None => cvm_cmd(),
    };
    let out = cmd
        .args(["compare", "--no-progress", "--accel", "tcg", "--backends"])
        .arg(backend)
        .arg("--scenario")
        .arg(&scenario)
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    cvm::results::read_samples(&out_dir.join("samples.csv")).unwrap()
}

/// The image directory cvm built for the hello scenario (content-addressed, so the same one the
/// `cvm` process used), and its `app` and `libs` files as the test expects them.
fn image_files() -> (PathBuf, PathBuf) {
    setup_env();
    let s = common::instances::scenario("applet = \"hello\"", "");
    let image = cvm::image::Image::build(&s).expect("cannot build the image");
    let root = image.rootfs();
    (
        root.join(cvm::image::GUEST_PATH.trim_start_matches('/')),
        root.join("bin/busybox"),
    )
}

/// `app` and `libs` of the image directory, which every backend but Docker counts (a VM's
/// initramfs packs the same files).
fn image_layers() -> [(&'static str, u64); 2] {
    let (guest, busybox) = image_files();
    [
        ("app", du_installed(&[guest])),
        ("libs", du_installed(&[busybox])),
    ]
}

#[test]
fn native_counts_the_image_only() {
    if !usable(BackendKind::Native) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rows = compare(dir.path(), "native", &[]);
    assert_layers("native", &disk_figures(&rows, "native"), &image_layers());
}

#[test]
fn container_counts_the_standalone_runtime_binary_not_cvm() {
    if !usable(BackendKind::Container) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rows = compare(dir.path(), "container", &[]);
    let cvm_bin = common::cvm_bin();
    let runtime = cvm_bin.with_file_name("cvm-runtime");
    assert!(runtime.is_file(), "{} is not built", runtime.display());
    let runtime_bytes = du_installed(&with_ldd(&runtime));
    let [app, libs] = image_layers();
    assert_layers(
        "container",
        &disk_figures(&rows, "container"),
        &[app, libs, ("runtime", runtime_bytes)],
    );
    // The layer is the runtime a user would install, not the harness with its charts.
    assert!(runtime_bytes < du_bytes(&[cvm_bin]));
}

/// With a private network too, the runtime layer is runc and its libraries: cvm sets up the veth
/// pair itself (rtnetlink), with no program of its own on disk.
#[test]
fn runc_counts_runc_and_its_libraries() {
    if !usable(BackendKind::Runc) {
        return;
    }
    let runc = which("runc").expect("usable() found runc");
    let files = with_ldd(&runc);
    assert!(
        files.len() > 1,
        "Debian's runc is dynamically linked (libseccomp): {files:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    // A workload that stays up: the network is set up after runc has started it.
    let idle = "name = \"disk\"\nruns = 1\nwarmup = 0\ntimeout_s = 60\n[workload]\n\
                applet = \"idle\"\n[resources]\nnetwork = \"private\"\n";
    let rows = compare_with(dir.path(), "runc", &[], idle);
    let [app, libs] = image_layers();
    assert_layers(
        "runc",
        &disk_figures(&rows, "runc"),
        &[app, libs, ("runtime", du_installed(&files))],
    );
}

/// crun refuses hybrid cgroups, so `cvm compare` does not run it here; its layers are still
/// counted by the same code `cvm compare` records them with.
#[test]
fn crun_counts_crun_and_its_libraries_even_where_it_cannot_run() {
    if !host_has(common::is_root(), "needs root")
        || !host_has(which("crun").is_some(), "crun is not installed")
    {
        return;
    }
    let crun = which("crun").unwrap();
    setup_env();
    let s = common::instances::scenario("applet = \"hello\"", "");
    let image = cvm::image::Image::build(&s).expect("cannot build the image");
    let prepared = cvm::backend::create(BackendKind::Crun, &Default::default())
        .prepare(&s, &image)
        .expect("preparing crun needs only its binary");
    let fp = cvm::usage::disk::footprint(&prepared.disk_layers(), &[], &[]);
    let got = fp
        .per_layer
        .iter()
        .map(|(l, b)| (l.metric(), *b))
        .chain([("disk_footprint".to_string(), fp.total)])
        .collect();
    let [app, libs] = image_layers();
    assert_layers(
        "crun",
        &got,
        &[app, libs, ("runtime", du_installed(&with_ldd(&crun)))],
    );
}

/// The files QEMU opened in a measured launch, from strace's log (the last QEMU started: the
/// footprint probe runs at prepare, before any launch, and both start paused with `-S`): the kernel and initramfs it was handed, and every
/// other regular file it opened outside /proc, /sys, /dev and /etc.
struct QemuTrace {
    kernel: PathBuf,
    initrd: PathBuf,
    opened: Vec<PathBuf>,
}

fn qemu_trace(log: &str) -> QemuTrace {
    let mut launch: Option<(String, Vec<String>)> = None;
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some(call) = rest.trim_start().strip_prefix("execve(\"") else {
            continue;
        };
        if !call.contains("qemu-system") || !call.contains("\"-kernel\"") {
            continue;
        }
        let args: Vec<String> = call
            .split("\", \"")
            .map(|a| {
                a.trim_matches(|c| c == '"' || c == '[' || c == ']')
                    .to_string()
            })
            .collect();
        launch = Some((pid.to_string(), args));
    }
    let (pid, args) = launch.expect("no QEMU launch in the strace log");
    let after = |flag: &str| {
        let i = args.iter().position(|a| a == flag).unwrap();
        PathBuf::from(&args[i + 1])
    };
    let (kernel, initrd) = (after("-kernel"), after("-initrd"));
    let mut opened = Vec::new();
    for line in log.lines().filter(|l| l.starts_with(&format!("{pid} "))) {
        if !line.contains("openat(") || line.contains("O_DIRECTORY") {
            continue;
        }
        let Some(path) = line.split('"').nth(1).map(PathBuf::from) else {
            continue;
        };
        let skipped = ["/proc", "/sys", "/dev", "/etc"]
            .iter()
            .any(|d| path.starts_with(d));
        if !skipped && path.is_file() && path != kernel && path != initrd {
            opened.push(path);
        }
    }
    QemuTrace {
        kernel,
        initrd,
        opened,
    }
}

fn vm_layers_match_what_qemu_opens(backend: &str, kind: BackendKind) {
    if !usable(kind) || !host_has(which("strace").is_some(), "strace is not installed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("strace.log");
    let log_arg = log.display().to_string();
    let rows = compare(
        dir.path(),
        backend,
        &[
            "strace",
            "-f",
            "-qq",
            "-s",
            "4096",
            "-e",
            "trace=execve,openat",
            "-e",
            "status=successful",
            "-o",
            &log_arg,
        ],
    );
    let trace = qemu_trace(&std::fs::read_to_string(&log).unwrap());
    let qemu = which("qemu-system-x86_64").unwrap();
    // The binary and its libraries (the loader maps itself: ldd names it), the modules and
    // ROMs it opened.
    let mut hypervisor = with_ldd(&qemu);
    hypervisor.extend(trace.opened.iter().cloned());
    let roms = trace
        .opened
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bin" || e == "rom"))
        .count();
    assert!(
        roms >= 2,
        "{backend}: QEMU opened no firmware? {:?}",
        trace.opened
    );
    // The label the samples carry (`vm-minimal` under `CVM_KERNEL=minimal`).
    let label = if backend == "vm" {
        common::vm_label()
    } else {
        backend
    };
    // The kernel as installed: the minimal one is built as the vmlinux QEMU loads; a
    // distribution's is its bzImage in /boot, which `vm` boots through the vmlinux cvm keeps
    // extracted, a cache in no layer.
    let (installed, cache) = if label == "vm-minimal" || backend == "vm-classic" {
        (trace.kernel.clone(), None)
    } else {
        let release = std::fs::read_to_string(dir.path().join(format!("out-{backend}/run.json")))
            .map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap())
            .map(|v| {
                v["backends"][0]["config"]["kernel"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .unwrap();
        let bzimage = PathBuf::from(format!("/boot/vmlinuz-{release}"));
        // The cache as it lies on disk: cvm's own file, not an installed binary.
        (bzimage, Some(du_bytes(std::slice::from_ref(&trace.kernel))))
    };
    assert_eq!(disk_cache(&rows, label), cache, "{label}: disk_cache");
    // The initramfs packs the image's app and libs verbatim (uncompressed): they count in
    // their own layers, its other bytes in the guest OS.
    let (guest, busybox) = image_files();
    let packed: u64 = [guest, busybox]
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let [app, libs] = image_layers();
    assert_layers(
        label,
        &disk_figures(&rows, label),
        &[
            app,
            libs,
            ("hypervisor", du_installed(&hypervisor)),
            (
                "guest_os",
                du_installed(&[installed]) + du_bytes(&[trace.initrd]) - packed,
            ),
        ],
    );
}

#[test]
fn vm_counts_the_image_the_installed_kernel_the_initramfs_and_every_file_qemu_opens() {
    vm_layers_match_what_qemu_opens("vm", BackendKind::Vm);
}

#[test]
fn vm_classic_counts_the_image_the_installed_kernel_the_initramfs_and_every_file_qemu_opens() {
    vm_layers_match_what_qemu_opens("vm-classic", BackendKind::VmClassic);
}

/// An io scenario writing `mib` MiB, with `resources` added under `[resources]`.
fn io_scenario(dir: &Path, mib: u32, resources: &str) -> PathBuf {
    let path = dir.join(format!("io-{}.toml", fastrand::u32(..)));
    std::fs::write(
        &path,
        format!(
            "name = \"io\"\nruns = 1\nwarmup = 0\ntimeout_s = 120\n[workload]\napplet = \"io\"\n\
             args = [\"--dir\", \"/tmp\", \"--mib\", \"{mib}\", \"--fsyncs\", \"10\"]\n\
             [resources]\nmemory_mib = 256\n{resources}\n"
        ),
    )
    .unwrap();
    path
}

/// The `io_fs` configuration entry of every sample row, by backend.
fn io_fs_by_backend(rows: &[SampleRow]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in rows {
        let fs = r
            .config
            .split(';')
            .find_map(|kv| kv.strip_prefix("io_fs="))
            .unwrap_or("(none)")
            .to_string();
        let seen = by.entry(r.backend.clone()).or_default();
        if !seen.contains(&fs) {
            seen.push(fs);
        }
    }
    by
}

#[test]
fn every_backend_records_the_same_io_filesystem_the_cache_is_on() {
    let backends: Vec<&str> = [
        ("native", BackendKind::Native),
        ("container", BackendKind::Container),
        ("runc", BackendKind::Runc),
        ("vm", BackendKind::Vm),
    ]
    .into_iter()
    .filter(|(_, kind)| usable(*kind))
    // `vm-minimal` under `CVM_KERNEL=minimal`, the label its samples carry.
    .map(|(name, _)| {
        if name == "vm" {
            common::vm_label()
        } else {
            name
        }
    })
    .collect();
    if backends.len() < 2 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = io_scenario(dir.path(), 4, "");
    let out_dir = dir.path().join("out");
    let child = cvm_cmd()
        .args(["compare", "--no-progress", "--accel", "tcg", "--backends"])
        .arg(backends.join(","))
        .arg("--scenario")
        .arg(&scenario)
        .arg("--output")
        .arg(&out_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Instances' io directories carry the PID of the cvm that made them.
    let cvm_pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = cvm::results::read_samples(&out_dir.join("samples.csv")).unwrap();
    let by = io_fs_by_backend(&rows);
    // The cache's filesystem as stat(1) reports its statfs magic number, here and not by cvm.
    let stat = std::process::Command::new("stat")
        .args(["-f", "-c", "%t"])
        .arg(common::cache_dir())
        .output()
        .unwrap();
    let magic = String::from_utf8_lossy(&stat.stdout).trim().to_string();
    let want = match magic.as_str() {
        "ef53" => "ext2/3/4",
        "9123683e" => "btrfs",
        "58465342" => "xfs",
        "794c7630" => "overlayfs",
        other => panic!("add the name of statfs magic {other} to this test"),
    };
    for b in &backends {
        assert_eq!(by.get(*b), Some(&vec![want.to_string()]), "{b}: {by:?}");
        assert!(
            rows.iter()
                .any(|r| r.backend == *b && r.metric == "io_write_bandwidth"),
            "{b} measured no io"
        );
    }
    // Every instance's io directory went with it.
    let io_root = common::cache_dir().join("io");
    let mine: Vec<_> = std::fs::read_dir(&io_root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&format!("-{cvm_pid}-")))
        .collect();
    assert!(mine.is_empty(), "left in {}: {mine:?}", io_root.display());
}

#[test]
fn io_on_a_memory_filesystem_is_refused_unless_the_scenario_asks_for_it() {
    if !usable(BackendKind::Native) {
        return;
    }
    let shm = Path::new("/dev/shm");
    let fs_type = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(shm)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !host_has(fs_type == "tmpfs", "/dev/shm mounted as a tmpfs") {
        return;
    }
    let cache = tempfile::tempdir_in(shm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |scenario: &Path, cache: &Path| {
        let out_dir = dir.path().join(format!("out-{}", fastrand::u32(..)));
        let out = cvm_cmd()
            .env("CVM_CACHE_DIR", cache)
            .args([
                "compare",
                "--no-progress",
                "--backends",
                "native",
                "--scenario",
            ])
            .arg(scenario)
            .arg("--output")
            .arg(&out_dir)
            .output()
            .unwrap();
        (out, out_dir)
    };
    let (out, _) = run(&io_scenario(dir.path(), 1, ""), cache.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(
        msg.contains("tmpfs") && msg.contains("io_storage = \"memory\""),
        "{msg}"
    );
    let (out, out_dir) = run(
        &io_scenario(dir.path(), 1, "io_storage = \"memory\""),
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = cvm::results::read_samples(&out_dir.join("samples.csv")).unwrap();
    assert_eq!(
        io_fs_by_backend(&rows).get("native"),
        Some(&vec!["tmpfs".to_string()])
    );
    // Asking for memory on the disk-backed test cache is refused the other way round.
    let (out, _) = run(
        &io_scenario(dir.path(), 1, "io_storage = \"memory\""),
        &common::cache_dir(),
    );
    if !common::cache_dir().starts_with(shm) {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("disk-backed"), "{}", stderr(&out));
    }
}
