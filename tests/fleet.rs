//! `cvm fleet` end to end, on a fleet of three hosts built on this machine: each host is a
//! network namespace with its own sshd on its own address (a veth pair on a /30 of
//! 10.214.0.0/16, a subnet cvm's container backend does not use), keys generated for the test,
//! and its own work directory (the hosts share one filesystem). The playbook runs against them for
//! real (Ansible over SSH); then one host's sshd is stopped to check a partial failure. Teardown
//! is asserted: no namespace, sshd (or anything else running in a fleet namespace), veth or key
//! of the test fleet remains.
//!
//! Needs root, ansible-playbook, sshd, ssh-keygen, ip and nsenter (`scripts/setup.sh --test`).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{cvm_cmd, host_has, is_root, stderr, stdout, which};

const SSHD: &str = "/usr/sbin/sshd";

struct Host {
    name: String,
    netns: String,
    veth: String,
    addr: String,
    /// The namespace's inode: any process still in it after teardown is a leak.
    netns_inode: u64,
    sshd: Option<Child>,
    /// The role's free-disk prerequisite for this host (`cvm_min_free_gib`).
    min_free_gib: f64,
}

/// What a test host needs under its directory: cvm's debug binaries (about 55 MiB), a startup
/// run's results and cache. The role's default (2 GiB, for real hosts with VM images and a Docker
/// data root) would refuse the test's hosts on a machine whose /tmp has less free.
const TEST_HOST_MIN_FREE_GIB: f64 = 0.5;

struct TestFleet {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    hosts: Vec<Host>,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("cannot run a setup command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) -> Output {
    run(Command::new("ip").args(args))
}

impl TestFleet {
    fn new(count: usize) -> TestFleet {
        let dir = tempfile::Builder::new()
            .prefix("cvm-fleet-test-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        let mut fleet = TestFleet {
            dir: Some(dir),
            path: path.clone(),
            hosts: Vec::new(),
        };
        let pid = std::process::id();
        let token = format!("{:05}", pid % 100_000);
        let octet = 20 + pid % 200;
        run(Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "cvm-fleet-test",
                "-f",
            ])
            .arg(path.join("client")));
        std::fs::copy(path.join("client.pub"), path.join("authorized_keys")).unwrap();
        // sshd refuses to start without its privilege separation directory, which Debian's
        // service creates at start (and this test never starts the service).
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut known_hosts = String::new();
        for i in 0..count {
            let name = format!("h{}", i + 1);
            let netns = format!("cvmfleet{token}{name}");
            let veth = format!("cvmf{token}{name}");
            let (near, addr) = (
                format!("10.214.{octet}.{}", 4 * i + 1),
                format!("10.214.{octet}.{}", 4 * i + 2),
            );
            ip(&["netns", "add", &netns]);
            let netns_inode = std::fs::metadata(format!("/run/netns/{netns}"))
                .unwrap()
                .ino();
            fleet.hosts.push(Host {
                name: name.clone(),
                netns: netns.clone(),
                veth: veth.clone(),
                addr: addr.clone(),
                netns_inode,
                sshd: None,
                min_free_gib: TEST_HOST_MIN_FREE_GIB,
            });
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ]);
            ip(&["addr", "add", &format!("{near}/30"), "dev", &veth]);
            ip(&["link", "set", &veth, "up"]);
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/30"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &netns, "link", "set", "eth0", "up"]);
            ip(&["-n", &netns, "link", "set", "lo", "up"]);

            let key = path.join(format!("host_{name}"));
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", &name, "-f"])
                .arg(&key));
            let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
            let mut fields = public.split_whitespace();
            known_hosts += &format!(
                "{addr} {} {}\n",
                fields.next().unwrap(),
                fields.next().unwrap()
            );
            let config = path.join(format!("sshd_{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "ListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\n\
                     PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n\
                     Subsystem sftp internal-sftp\n",
                    key.display(),
                    path.join("authorized_keys").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(path.join(format!("sshd_{name}.log"))).unwrap();
            // nsenter rather than `ip netns exec`, which remounts /sys and would hide the cgroup
            // tree from the cvm runs this sshd's sessions start. nsenter execs sshd: same PID.
            let child = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{netns}"))
                .args([SSHD, "-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("cannot start sshd");
            fleet.hosts.last_mut().unwrap().sshd = Some(child);
            wait_listening(&addr, &path.join(format!("sshd_{name}.log")));
        }
        std::fs::write(path.join("known_hosts"), known_hosts).unwrap();
        fleet
    }

    fn inventory(&self) -> PathBuf {
        let p = &self.path;
        let mut text = String::from("[fleet]\n");
        for h in &self.hosts {
            text += &format!(
                "{} ansible_host={} cvm_remote_dir={} cvm_cache_dir={} cvm_min_free_gib={}\n",
                h.name,
                h.addr,
                p.join(&h.name).display(),
                p.join(&h.name).join("cache").display(),
                h.min_free_gib
            );
        }
        text += &format!(
            "[fleet:vars]\nansible_user=root\nansible_python_interpreter=/usr/bin/python3\n\
             ansible_ssh_private_key_file={}\n\
             ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes'\n",
            p.join("client").display(),
            p.join("known_hosts").display()
        );
        let path = p.join("inventory.ini");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `cvm fleet` with this fleet's inventory; SSH masters go to a directory of the test's, so
    /// teardown can close them.
    fn cvm_fleet(&self, args: &[&str]) -> Output {
        let inventory = self.inventory();
        let out = cvm_cmd()
            .arg("fleet")
            .arg("--inventory")
            .arg(&inventory)
            .args(args)
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", self.path.join("cp"))
            // No compression: the hosts are on this machine, and compressing the debug binaries
            // costs more CPU than it saves.
            .env(
                "ANSIBLE_SSH_ARGS",
                "-o ControlMaster=auto -o ControlPersist=60s",
            )
            .env("ANSIBLE_NOCOLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("cannot run cvm fleet");
        eprintln!(
            "--- cvm fleet {args:?}: {}\n{}\n{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// Ansible's SSH masters outlive the playbook by ControlPersist (and would carry the next
    /// playbook to a host whose sshd is stopped): ask each to exit, which also ends its session
    /// on the host's sshd.
    fn close_ssh_masters(&self) {
        if let Ok(entries) = std::fs::read_dir(self.path.join("cp")) {
            for socket in entries.filter_map(Result::ok) {
                let _ = Command::new("ssh")
                    .arg("-o")
                    .arg(format!("ControlPath={}", socket.path().display()))
                    .args(["-O", "exit", "fleet-host"])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    fn stop_sshd(&mut self, index: usize) {
        self.close_ssh_masters();
        if let Some(mut child) = self.hosts[index].sshd.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Removes everything the fleet created and returns what could not be removed.
    fn teardown(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        self.close_ssh_masters();
        let pids: Vec<u32> = self
            .hosts
            .iter()
            .filter_map(|h| h.sshd.as_ref().map(Child::id))
            .collect();
        for i in 0..self.hosts.len() {
            self.stop_sshd(i);
        }
        for pid in pids {
            if Path::new(&format!("/proc/{pid}")).exists() {
                left.push(format!("sshd {pid} still running"));
            }
        }
        for h in &self.hosts {
            // Sessions of the stopped sshd end when their connection closes.
            let deadline = Instant::now() + Duration::from_secs(15);
            while !processes_in(h.netns_inode).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            for p in processes_in(h.netns_inode) {
                left.push(format!("process in {}: {p}", h.netns));
            }
            // Deleting our end of the veth pair deletes both ends at once (the namespace's
            // deletion would too, but later, from the kernel's cleanup work).
            let _ = Command::new("ip").args(["link", "del", &h.veth]).status();
            let _ = Command::new("ip").args(["netns", "del", &h.netns]).status();
        }
        self.hosts.retain(|h| {
            let ns = Path::new("/run/netns").join(&h.netns).exists();
            let veth = Path::new("/sys/class/net").join(&h.veth).exists();
            if ns {
                left.push(format!("namespace {}", h.netns));
            }
            if veth {
                left.push(format!("veth {}", h.veth));
            }
            ns || veth
        });
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
        if self.path.exists() {
            left.push(format!("keys and work directory {}", self.path.display()));
        }
        left
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// PIDs (with their command lines) of the processes whose network namespace has this inode.
fn processes_in(inode: u64) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::metadata(entry.path().join("ns/net")).is_ok_and(|m| m.ino() == inode) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{pid} {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

fn wait_listening(addr: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let target = format!("{addr}:22").parse().unwrap();
    while std::net::TcpStream::connect_timeout(&target, Duration::from_millis(300)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sshd on {addr} never listened: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether this build has issue 16's `cvm report --merge`; without it only the merge is left out.
fn merge_supported() -> bool {
    let out = cvm_cmd().args(["report", "--help"]).output().unwrap();
    stdout(&out).contains("--merge")
}

fn summary(out_dir: &Path) -> cvm::fleet::Summary {
    cvm::fleet::read_summary(&out_dir.join(cvm::fleet::SUMMARY_FILE))
        .expect("the playbook wrote no fleet.json")
}

fn assert_results(out_dir: &Path, host: &str) {
    let samples = out_dir.join("results").join(host).join("samples.csv");
    let text = std::fs::read_to_string(&samples)
        .unwrap_or_else(|e| panic!("{host}: no {}: {e}", samples.display()));
    for backend in ["native", "container"] {
        assert!(
            text.lines().any(|l| l.contains(&format!(",{backend},"))),
            "{host}: no {backend} sample in {}",
            samples.display()
        );
    }
}

#[test]
fn a_scenario_runs_on_three_hosts_and_an_unreachable_one_is_named() {
    let tools = ["ansible-playbook", "ssh-keygen", "ssh", "ip", "nsenter"];
    if !host_has(
        is_root(),
        "the fleet test needs root (namespaces, veths, sshd)",
    ) || !host_has(
        tools.iter().all(|t| which(t)) && Path::new(SSHD).is_file(),
        "ansible-playbook, sshd, ssh-keygen, ip and nsenter (scripts/setup.sh --test)",
    ) {
        return;
    }
    // Without it, only the merge step is skipped: the fleet runs with --no-merge and the
    // fetched results are checked instead.
    let merge = host_has(merge_supported(), "`cvm report --merge` in this build");
    let mut fleet = TestFleet::new(3);
    let compare = [
        "--",
        "--backends",
        "native,container",
        "--runs",
        "1",
        "--warmup",
        "0",
    ];
    let no_merge: &[&str] = if merge { &[] } else { &["--no-merge"] };

    // Three reachable hosts, all at once.
    let all = fleet.path.join("all");
    let mut args = vec!["--scenario", "startup", "--output", all.to_str().unwrap()];
    args.extend(no_merge);
    args.extend(compare);
    let out = fleet.cvm_fleet(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "every host should have succeeded"
    );
    let s = summary(&all);
    assert_eq!(s.ok, ["h1", "h2", "h3"]);
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    for host in ["h1", "h2", "h3"] {
        assert_results(&all, host);
    }
    if merge {
        assert_eq!(s.merge, "ok");
        assert!(
            s.report.is_dir(),
            "no merged report in {}",
            s.report.display()
        );
    }

    // h1 unreachable (its sshd stopped), h3 short of disk for what its inventory asks, one host
    // at a time: the first batch fails, and the batches after it must still run.
    fleet.stop_sshd(0);
    fleet.hosts[2].min_free_gib = 1e6;
    let partial = fleet.path.join("partial");
    let mut args = vec![
        "--scenario",
        "startup",
        "--parallel",
        "1",
        "--output",
        partial.to_str().unwrap(),
    ];
    args.extend(no_merge);
    args.extend(compare);
    let out = fleet.cvm_fleet(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed host must fail the run"
    );
    let s = summary(&partial);
    assert_eq!(s.ok, ["h2"]);
    let why = s.failed.get("h1").expect("h1 is not named as failed");
    assert!(why.starts_with("unreachable"), "{why}");
    let why = s.failed.get("h3").expect("h3 is not named as failed");
    assert!(
        why.starts_with("prerequisites: only ")
            && why.contains("GiB free")
            && why.contains("1000000 GiB needed"),
        "{why}"
    );
    assert!(
        stdout(&out).contains("failed hosts: h1, h3"),
        "the failed hosts are not named: {}",
        stdout(&out)
    );
    assert_results(&partial, "h2");
    assert!(!partial.join("results/h1").exists());
    assert!(!partial.join("results/h3").exists());
    // One host's results are not merged; the summary points to that host's own report.
    assert_eq!(s.merge, "skipped");
    assert!(
        stdout(&out).contains(&format!(
            "only h2 succeeded: its report is in {}",
            partial.join("results/h2").display()
        )),
        "{}",
        stdout(&out)
    );

    let left = fleet.teardown();
    assert!(left.is_empty(), "the test fleet left behind: {left:#?}");
}

#[test]
fn a_missing_ansible_is_named_with_its_package() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("hosts.ini");
    std::fs::write(&inventory, "[fleet]\nh1 ansible_host=192.0.2.1\n").unwrap();
    let out = cvm_cmd()
        .args(["fleet", "--scenario", "startup", "--output"])
        .arg(dir.path().join("out"))
        .arg("--inventory")
        .arg(&inventory)
        // A PATH with no ansible-playbook in it.
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("ansible-core"), "{}", stderr(&out));
}

#[test]
fn bad_fleet_input_is_refused_before_ansible_runs() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("hosts.ini");
    std::fs::write(&inventory, "[fleet]\nh1 ansible_host=192.0.2.1\n").unwrap();
    let inv = inventory.to_str().unwrap();
    for (args, expect) in [
        (
            vec!["-i", "/nonexistent/hosts.ini", "-s", "startup"],
            "inventory",
        ),
        (
            vec!["-i", inv, "-s", "no-such-scenario"],
            "no-such-scenario",
        ),
        (
            vec!["-i", inv, "-s", "startup", "--", "--runz", "2"],
            "--runz",
        ),
        (
            vec!["-i", inv, "-s", "startup", "--", "-o", "x"],
            "--output",
        ),
    ] {
        let out = cvm_cmd()
            .arg("fleet")
            .args(&args)
            .env("PATH", dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn the_playbook_passes_ansibles_syntax_check() {
    if !host_has(
        which("ansible-playbook"),
        "ansible-playbook (scripts/setup.sh --test)",
    ) {
        return;
    }
    let out = Command::new("ansible-playbook")
        .args(["--syntax-check", "-i", "localhost,"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/ansible/fleet.yml"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}
