//! `cvm-runtime`: runs an OCI bundle in the foreground with cvm's container steps, in the
//! command-line shape of `runc run`, so the same bundle can be run by both and compared.
//!
//! `cvm-runtime run --bundle DIR [--pid-file F] [--preserve-fds N] ID`:
//! 1. reads `DIR/config.json` (the subset cvm writes, see `cvm_runtime::bundle`);
//! 2. creates the cgroup with the limits (`linux.cgroupsPath`, else the ID; a relative path
//!    goes below this process's cgroup, as runc does);
//! 3. clones a child into the namespaces. The binary is single-threaded, so the child may run
//!    ordinary code before it execs: it joins the cgroup, unshares the cgroup namespace, starts
//!    a session, runs the `cvm_runtime::rootfs` steps (mounts, `pivot_root`, masked and
//!    read-only paths, hostname, `lo`, capabilities, `no_new_privs`) and execs `process.args`
//!    with `process.env`. A failing step reaches the parent through a close-on-exec pipe;
//!    end-of-file on it means the exec happened;
//! 4. writes the pid file, forwards SIGTERM and SIGINT to the container's first process, waits
//!    for it, removes the cgroup (killing anything left) and exits with its status (128+signal
//!    when it was killed).
//!
//! `cvm-runtime --version` prints the version.

mod bundle;

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use bundle::Bundle;
use cvm_runtime::cgroup::Cgroup;
use cvm_runtime::rootfs::{self, RootfsConfig};
use cvm_runtime::sys;

const USAGE: &str = "usage: cvm-runtime run --bundle DIR [--pid-file FILE] [--preserve-fds N] ID\n       cvm-runtime --version\n";

/// What `run` was asked for.
#[derive(Debug)]
struct RunOptions {
    bundle: PathBuf,
    pid_file: Option<PathBuf>,
    preserve_fds: i32,
    id: String,
}

fn parse(args: &[String]) -> Result<Option<RunOptions>, String> {
    match args.first().map(String::as_str) {
        Some("--version" | "-v") => return Ok(None),
        Some("run") => {}
        Some(other) => return Err(format!("unknown command {other}")),
        None => return Err("no command".into()),
    }
    let mut bundle = PathBuf::from(".");
    let mut pid_file = None;
    let mut preserve_fds = 0;
    let mut id = None;
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "--bundle" | "-b" => bundle = PathBuf::from(value()?),
            "--pid-file" => pid_file = Some(PathBuf::from(value()?)),
            "--preserve-fds" => {
                let v = value()?;
                preserve_fds = v
                    .parse()
                    .ok()
                    .filter(|n| (0..1024).contains(n))
                    .ok_or_else(|| format!("bad --preserve-fds {v}"))?;
            }
            _ if name.starts_with('-') => return Err(format!("unknown option {name}")),
            _ if id.is_none() => id = Some(arg.clone()),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    let id = id.ok_or("no container ID")?;
    Ok(Some(RunOptions {
        bundle,
        pid_file,
        preserve_fds,
        id,
    }))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match parse(&args) {
        Ok(None) => {
            println!("cvm-runtime {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Some(options)) => run(&options).unwrap_or_else(|e| {
            eprintln!("cvm-runtime: {e}");
            1
        }),
        Err(e) => {
            eprintln!("cvm-runtime: {e}\n{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

/// An error and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn run(options: &RunOptions) -> Result<i32, String> {
    let bundle = Bundle::load(&options.bundle).map_err(|e| chain(&e))?;
    let cgroup_path = bundle.cgroups_path.clone().unwrap_or(options.id.clone());
    let mut cgroup =
        Cgroup::create_with(&cgroup_path, bundle.resources.clone()).map_err(|e| chain(&e))?;
    let procs = cgroup.open_procs().map_err(|e| chain(&e))?;
    let first_free = 3 + options.preserve_fds;
    let (err_read, err_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // Above the preserved descriptors, so marking those inheritable cannot touch it. Only the
    // child's copy may stay open, or the parent never sees end-of-file on the pipe.
    let err_write =
        sys::dup_cloexec_above(err_write, first_free).map_err(|e| format!("dup: {e}"))?;
    let mut err_file = File::from(err_write);
    sys::forward_signals(&[libc::SIGTERM, libc::SIGINT])
        .map_err(|e| format!("signal handlers: {e}"))?;
    let child = || -> isize {
        let failure = container_child(&bundle, &procs, first_free);
        let _ = err_file.write_all(failure.as_bytes());
        127
    };
    // SAFETY: the binary is single-threaded (nothing here spawns a thread), which is what
    // `clone_process` needs for its child to run ordinary code.
    let pid = unsafe { cvm_runtime::sys::clone_process(bundle.clone_flags, child) }
        .map_err(|e| format!("clone: {e}"))?;
    drop(err_file);
    sys::forward_to(pid);
    let mut failure = String::new();
    let _ = File::from(err_read).read_to_string(&mut failure);
    if !failure.is_empty() {
        let _ = wait(pid);
        let _ = cgroup.remove();
        return Err(format!("container setup: {failure}"));
    }
    if let Some(path) = &options.pid_file {
        // Written beside and renamed, so whoever polls the file never reads half a PID.
        let partial = path.with_extension("partial");
        let written = std::fs::write(&partial, pid.to_string())
            .and_then(|()| std::fs::rename(&partial, path));
        if let Err(e) = written {
            // Nobody could find the container: end it rather than leave it running.
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            let _ = wait(pid);
            let _ = cgroup.remove();
            return Err(format!("cannot write {}: {e}", path.display()));
        }
    }
    let code = wait(pid)?;
    // The container's own status is the answer; a cgroup left behind is said, not hidden.
    if let Err(e) = cgroup.remove() {
        eprintln!("cvm-runtime: {}", chain(&e));
    }
    Ok(code)
}

/// Waits for `pid` and turns its end into an exit code (128+signal when killed).
fn wait(pid: libc::pid_t) -> Result<i32, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("wait: {e}")),
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
        }
    }
}

/// The child: every step up to the exec. Returns only on failure, with what failed.
fn container_child(bundle: &Bundle, procs: &[File], first_free: i32) -> String {
    match finish_container(bundle, procs, first_free) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn finish_container(
    bundle: &Bundle,
    procs: &[File],
    first_free: i32,
) -> Result<std::convert::Infallible, String> {
    for mut file in procs {
        file.write_all(b"0")
            .map_err(|e| format!("cannot join the cgroup: {e}"))?;
    }
    if bundle.cgroup_namespace {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| format!("cannot unshare the cgroup namespace: {e}"))?;
    }
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let step = |e: rootfs::RootfsError| chain(&e);
    rootfs::mount_rootfs(&RootfsConfig {
        rootfs: bundle.root.clone(),
        readonly: bundle.readonly,
        volumes: bundle.volumes.clone(),
        mqueue: bundle.mqueue,
        cgroupfs: bundle.cgroupfs,
    })
    .map_err(step)?;
    rootfs::enter_rootfs(&bundle.root).map_err(step)?;
    rootfs::mask_paths(&bundle.masked_paths).map_err(step)?;
    rootfs::readonly_paths(&bundle.readonly_paths).map_err(step)?;
    if let Some(name) = &bundle.hostname {
        rootfs::set_hostname(name).map_err(step)?;
    }
    if bundle.network_namespace {
        rootfs::loopback_up().map_err(step)?;
    }
    if let Some((soft, hard)) = bundle.nofile {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard)
            .map_err(|e| format!("cannot set RLIMIT_NOFILE: {e}"))?;
    }
    nix::unistd::chdir(&bundle.cwd)
        .map_err(|e| format!("cannot enter {}: {e}", bundle.cwd.display()))?;
    let program = find_program(&bundle.args[0], &bundle.env)?;
    let cstrings = |v: &[String]| -> Result<Vec<CString>, String> {
        v.iter()
            .map(|s| CString::new(s.as_str()).map_err(|_| format!("NUL byte in {s:?}")))
            .collect()
    };
    let argv = cstrings(&bundle.args)?;
    let envp = cstrings(&bundle.env)?;
    // The preserved descriptors (3..first_free) are inherited; every other one is not.
    sys::inherit_only(3..first_free).map_err(|e| format!("preserved descriptors: {e}"))?;
    let keep = rootfs::parse_capabilities(&bundle.capabilities).map_err(step)?;
    rootfs::drop_privileges(&keep, bundle.no_new_privileges).map_err(step)?;
    sys::default_sigpipe().map_err(|e| format!("cannot reset SIGPIPE: {e}"))?;
    let e = nix::unistd::execve(&program, &argv, &envp).unwrap_err();
    Err(format!("cannot exec {}: {e}", program.to_string_lossy()))
}

/// `process.args[0]` as a path: as given when it has a slash, else the first match in the
/// `PATH` of `process.env` (inside the container).
fn find_program(name: &str, env: &[String]) -> Result<CString, String> {
    let to_c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string());
    if name.contains('/') {
        return to_c(Path::new(name));
    }
    let path = env
        .iter()
        .find_map(|v| v.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found in PATH {path}"))
        .and_then(|p| to_c(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn run_takes_runc_shaped_arguments() {
        let o = parse(&words(&[
            "run",
            "--bundle",
            "/b",
            "--pid-file=/p",
            "--preserve-fds",
            "1",
            "box",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.bundle, PathBuf::from("/b"));
        assert_eq!(o.pid_file, Some(PathBuf::from("/p")));
        assert_eq!(o.preserve_fds, 1);
        assert_eq!(o.id, "box");
        assert!(parse(&words(&["--version"])).unwrap().is_none());
        assert!(parse(&words(&["run", "--bundle", "/b"])).is_err());
        assert!(parse(&words(&["run", "--nope", "x"])).is_err());
        assert!(parse(&words(&["start", "x"])).is_err());
    }
}
