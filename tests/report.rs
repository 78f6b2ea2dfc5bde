//! The HTML report, rendered from a synthetic results directory written through cvm's own
//! writers: every section and chart file is there, hostile scenario text appears only escaped,
//! and a real browser (headless Chromium) renders a page with the expected sections that is
//! not blank.
//!
//! Set `CVM_KEEP_REPORT=DIR` to keep a copy of each test's report (`DIR/<test>/`) for looking at.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cvm::backend::{Availability, Stack};
use cvm::results::{
    BackendInfo, Environment, Phase, RunMeta, SampleRow, SampleWriter, ScenarioRecord, META_FILE,
    SAMPLES_FILE,
};

const HOSTILE_NAME: &str = "<script>alert(1)</script>";
const HOSTILE_DESCRIPTION: &str = "<img src=x onerror=alert(1)> & \"quotes\"";

fn environment() -> Environment {
    Environment {
        host: "refhost".into(),
        kernel: "6.1.0-test-amd64".into(),
        os: "Linux (Debian GNU/Linux 12)".into(),
        cpu_model: "Intel(R) Xeon(R) Processor".into(),
        ncpu: 2,
        mem_total: 24 << 30,
        cgroup: "hybrid (v1 controllers)".into(),
        root: true,
        cvm_version: "0.1.0".into(),
        git_sha: "abc1234".into(),
        build_profile: "release".into(),
        tools: BTreeMap::from([
            ("qemu".to_string(), "7.2.22".to_string()),
            ("runc".to_string(), "1.1.5".to_string()),
        ]),
        fingerprint: Default::default(),
        load: None,
    }
}

fn info(name: &str, stack: Stack, config: &[(&str, &str)]) -> BackendInfo {
    BackendInfo {
        backend: name.into(),
        stack,
        availability: Availability::Available,
        error: None,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Per backend: (stack, ready seconds, phases, PSS, disk layers, rps, p50); `memory_overhead`
/// is derived from PSS by the summary.
struct Profile {
    name: &'static str,
    phases: &'static [(&'static str, f64)],
    pss: f64,
    disk: &'static [(&'static str, f64)],
    rps: f64,
    p50: f64,
}

const MIB: f64 = 1024.0 * 1024.0;

const PROFILES: &[Profile] = &[
    Profile {
        name: "native",
        phases: &[("cgroup_join", 0.0011), ("workload_start", 0.0009)],
        pss: 2.1 * MIB,
        disk: &[("app", 1.2 * MIB), ("libs", 1.1 * MIB)],
        rps: 21000.0,
        p50: 0.00009,
    },
    Profile {
        name: "container",
        phases: &[
            ("cgroup_join", 0.0012),
            ("runtime", 0.0018),
            ("workload_start", 0.0004),
            ("probe", 0.0009),
        ],
        pss: 3.0 * MIB,
        disk: &[
            ("app", 1.2 * MIB),
            ("libs", 1.1 * MIB),
            ("runtime", 9.5 * MIB),
        ],
        rps: 19500.0,
        p50: 0.0001,
    },
    Profile {
        name: "runc",
        phases: &[
            ("runtime", 0.021),
            ("workload_start", 0.0005),
            ("probe", 0.001),
        ],
        pss: 9.0 * MIB,
        disk: &[
            ("app", 1.2 * MIB),
            ("libs", 1.1 * MIB),
            ("runtime", 11.0 * MIB),
        ],
        rps: 19000.0,
        p50: 0.0001,
    },
    Profile {
        name: "docker",
        phases: &[
            ("runtime", 0.204),
            ("workload_start", 0.0005),
            ("probe", 0.001),
        ],
        pss: 40.0 * MIB,
        disk: &[
            ("app", 1.2 * MIB),
            ("libs", 1.1 * MIB),
            ("runtime", 120.0 * MIB),
        ],
        rps: 15000.0,
        p50: 0.00015,
    },
    // A sandbox: recorded as a container stack, drawn in its own group with a Sentry layer.
    Profile {
        name: "gvisor",
        phases: &[
            ("runtime", 0.31),
            ("workload_start", 0.002),
            ("probe", 0.002),
        ],
        pss: 60.0 * MIB,
        disk: &[
            ("app", 1.2 * MIB),
            ("libs", 1.1 * MIB),
            ("runtime", 38.0 * MIB),
        ],
        rps: 6000.0,
        p50: 0.0006,
    },
    Profile {
        name: "vm",
        phases: &[
            ("vmm_start", 0.03),
            ("firmware", 0.01),
            ("kernel", 0.44),
            ("guest_init", 0.95),
            ("workload_start", 0.04),
            ("probe", 0.05),
        ],
        pss: 160.0 * MIB,
        disk: &[
            ("app", 1.2 * MIB),
            ("libs", 1.1 * MIB),
            ("guest_os", 66.0 * MIB),
            ("hypervisor", 28.0 * MIB),
        ],
        rps: 2100.0,
        p50: 0.0012,
    },
    Profile {
        name: "vm-classic",
        phases: &[
            ("vmm_start", 0.03),
            ("firmware", 2.1),
            ("kernel", 1.5),
            ("guest_init", 0.4),
            ("workload_start", 0.05),
            ("probe", 0.06),
        ],
        pss: 190.0 * MIB,
        disk: &[
            ("app", 1.2 * MIB),
            ("libs", 1.1 * MIB),
            ("guest_os", 75.0 * MIB),
            ("hypervisor", 31.0 * MIB),
        ],
        rps: 1900.0,
        p50: 0.0014,
    },
];

fn stack_of(name: &str) -> Stack {
    match name {
        "native" => Stack::Native,
        "vm" | "vm-classic" => Stack::Vm,
        _ => Stack::Container,
    }
}

/// Writes run.json and samples.csv for a web-like run of every backend, crun unavailable.
fn write_results(dir: &Path, name: &str, description: &str) {
    let env = environment();
    let mut backends: Vec<BackendInfo> = PROFILES
        .iter()
        .map(|p| {
            let stack = stack_of(p.name);
            let config: &[(&str, &str)] = match stack {
                Stack::Vm => &[
                    ("accel", "tcg"),
                    ("machine", "microvm"),
                    (
                        "accel_reason",
                        "KVM unusable: PVM: /dev/kvm is served by kvm_pvm",
                    ),
                    ("accel_fix", "a guest kernel built as a PVM guest"),
                ],
                Stack::Container => &[("cgroup", "v1")],
                Stack::Native => &[("isolation", "none (host process)")],
            };
            info(p.name, stack, config)
        })
        .collect();
    let mut crun = info("crun", Stack::Container, &[]);
    crun.availability = Availability::unavailable(
        "cgroups in hybrid mode not supported",
        "boot with systemd.unified_cgroup_hierarchy=1",
    );
    backends.insert(3, crun);
    let meta = RunMeta {
        schema_version: cvm::results::SCHEMA_VERSION,
        run_id: "20260101T000000-web".into(),
        started: "2026-01-01T00:00:00Z".into(),
        finished: Some("2026-01-01T00:03:00Z".into()),
        status: cvm::results::RunStatus::Done,
        scenario: ScenarioRecord {
            name: name.into(),
            description: description.into(),
            definition: serde_json::json!({ "name": name }),
        },
        runs: 12,
        warmup: 2,
        timeout_s: 60.0,
        environment: env.clone(),
        backends: backends.clone(),
        load: Some(BTreeMap::from([(
            "connections".to_string(),
            "4".to_string(),
        )])),
        order: Some("interleaved".into()),
        seed: Some(7),
        cgroup_state: None,
    };
    meta.write(&dir.join(META_FILE)).unwrap();

    // Fixtures are rewritten in place by some tests: replace, where a run would create new.
    let mut w = SampleWriter::replace(&dir.join(SAMPLES_FILE)).unwrap();
    for p in PROFILES {
        let b = backends.iter().find(|b| b.backend == p.name).unwrap();
        let config: Vec<String> = b.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let template = SampleRow {
            run_id: meta.run_id.clone(),
            scenario: name.into(),
            backend: p.name.into(),
            iteration: 0,
            phase: Phase::Measure,
            metric: String::new(),
            value: 0.0,
            unit: String::new(),
            host: env.host.clone(),
            kernel: env.kernel.clone(),
            cpu_model: env.cpu_model.clone(),
            ncpu: env.ncpu,
            mem_total: env.mem_total,
            accel: b.config.get("accel").cloned().unwrap_or_default(),
            qemu_version: "7.2.22".into(),
            cvm_version: env.cvm_version.clone(),
            git_sha: env.git_sha.clone(),
            config: config.join(";"),
            note: String::new(),
        };
        for iteration in 0..14u32 {
            let phase = if iteration < 2 {
                Phase::Warmup
            } else {
                Phase::Measure
            };
            // Deterministic spread of about ±15% with one slow run per backend.
            let jitter = 1.0 + ((f64::from(iteration) * 0.618).fract() - 0.5) * 0.3;
            let jitter = if iteration == 7 { jitter * 1.8 } else { jitter };
            let mut sample = |metric: &str, value: f64, unit: &str| {
                w.write(&SampleRow {
                    iteration,
                    phase,
                    metric: metric.into(),
                    value,
                    unit: unit.into(),
                    ..template.clone()
                })
                .unwrap();
            };
            let mut ready = 0.0;
            for (ph, v) in p.phases {
                sample(&format!("phase.{ph}"), v * jitter, "s");
                ready += v * jitter;
            }
            sample("ready_latency", ready, "s");
            sample("memory_pss", p.pss * (1.0 + (jitter - 1.0) * 0.05), "B");
            let mut total = 0.0;
            for (layer, v) in p.disk {
                sample(&format!("disk.{layer}"), *v, "B");
                total += v;
            }
            sample("disk_footprint", total, "B");
            sample("http_rps", p.rps / jitter, "1/s");
            for (q, f) in [("p50", 1.0), ("p90", 1.6), ("p99", 3.5), ("max", 9.0)] {
                sample(&format!("http_latency_{q}"), p.p50 * f * jitter, "s");
            }
        }
        // Density: per-instance PSS with `iteration` = instances running (compare/density.rs).
        if matches!(p.name, "container" | "vm") {
            for run in 0..3u32 {
                for n in 1..=8u32 {
                    let per = p.pss * (1.0 + 0.3 / f64::from(n)) * (1.0 + f64::from(run) * 0.01);
                    let mut row = template.clone();
                    row.iteration = n;
                    row.metric = "density_pss_per_instance".into();
                    row.value = per;
                    row.unit = "B".into();
                    w.write(&row).unwrap();
                }
            }
        }
    }
}

fn render(test: &str, name: &str, description: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    write_results(dir.path(), name, description);
    cvm::report::render_dir(dir.path()).expect("render_dir failed");
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    if let Ok(keep) = std::env::var("CVM_KEEP_REPORT") {
        let keep = PathBuf::from(keep).join(test);
        let _ = std::fs::remove_dir_all(&keep);
        copy_dir(dir.path(), &keep);
    }
    (dir, html)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

const SECTIONS: &[&str] = &[
    "findings",
    "environment",
    "summary",
    "stack",
    "charts",
    "files",
];
const CHARTS: &[&str] = &[
    "startup",
    "phases",
    "memory",
    "disk",
    "http-rps",
    "http-latency",
    "density",
    "stack",
];

#[test]
fn a_report_has_every_section_and_chart_file() {
    let (dir, html) = render("sections", "web", "HTTP server under load");
    for id in SECTIONS {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "no section #{id}"
        );
    }
    for chart in CHARTS {
        for ext in ["png", "svg"] {
            let f = dir.path().join("charts").join(format!("{chart}.{ext}"));
            let len = std::fs::metadata(&f)
                .unwrap_or_else(|_| panic!("{} missing", f.display()))
                .len();
            assert!(len > 1000, "{} is only {len} bytes", f.display());
        }
        if *chart != "stack" {
            assert!(html.contains(&format!("id=\"chart-{chart}\"")), "{chart}");
        }
    }
    // The verdict panel opens the page: a multiple per question this run answers, and the
    // same panel as one image beside the report.
    let multiples = html.matches("class=\"multiple\"").count();
    assert_eq!(multiples, 4, "time to ready, memory, disk, throughput");
    assert!(html.find("id=\"verdict\"").unwrap() < html.find("id=\"findings\"").unwrap());
    for ext in ["png", "svg"] {
        let f = dir.path().join(format!("summary.{ext}"));
        assert!(
            std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0) > 1000,
            "{f:?}"
        );
    }
    // Every figure in a table per question; a long one (phases: many rows) starts collapsed.
    for id in ["ready", "memory", "disk", "throughput", "density"] {
        assert!(
            html.contains(&format!("<details id=\"table-{id}\"")),
            "{id}"
        );
    }
    assert!(html.contains("<details id=\"table-ready\">\n"), "collapsed");
    // Inline SVG: the verdict's multiples, the stack diagram and every chart, and no network
    // fetch anywhere.
    assert_eq!(html.matches("<svg").count(), CHARTS.len() + multiples);
    for forbidden in ["http://", "https://", "<script", "<link", "src="] {
        let hits: Vec<&str> = html
            .match_indices(forbidden)
            .map(|(i, _)| &html[i.saturating_sub(40)..(i + 60).min(html.len())])
            .filter(|ctx| !ctx.contains("xmlns"))
            .collect();
        assert!(hits.is_empty(), "{forbidden} in index.html: {hits:?}");
    }
    assert!(html.contains("id=\"tcg-warning\""));
    assert!(html.contains("VM figures come from TCG emulation, not hardware virtualisation"));
    // The banner says why, in the probe's words, and what would make KVM usable.
    assert!(
        html.contains(": KVM unusable: PVM: /dev/kvm is served by kvm_pvm.")
            && html.contains("KVM would be usable with a guest kernel built as a PVM guest."),
        "{html}"
    );
    assert!(html.contains("cgroups in hybrid mode not supported"));
    for file in ["samples.csv", "summary.json", "run.json"] {
        assert!(html.contains(&format!("href=\"{file}\"")), "{file}");
    }
    assert!(dir.path().join("summary.md").is_file());
    // The answer comes first, with figures computed from these samples.
    let at = |id: &str| html.find(&format!("<section id=\"{id}\">")).unwrap();
    assert!(at("findings") < at("environment"));
    let findings = &html[at("findings")..at("environment")];
    assert!(
        findings.contains("gvisor was ready in") && findings.contains("faster than vm-classic"),
        "{findings}"
    );
    // One column per backend that ran, in its group; gVisor's with its Sentry.
    for text in [
        "Sandbox",
        "Sentry (user-space kernel): runsc",
        "Docker Engine: dockerd, containerd,",
        "Not drawn: crun: unavailable",
    ] {
        assert!(html.contains(text), "{text}");
    }
    // The stack diagram names every layer of the three stacks.
    for layer in [
        "Guest OS",
        "Hypervisor",
        "Container runtime",
        "Binaries/libraries",
        "Host OS",
        "Infrastructure",
    ] {
        assert!(html.contains(layer), "{layer}");
    }
}

#[test]
fn a_native_only_run_omits_charts_it_has_no_data_for_and_has_no_tcg_warning() {
    let dir = tempfile::tempdir().unwrap();
    write_results(dir.path(), "startup", "native only");
    // Keep only native's startup samples.
    let path = dir.path().join(SAMPLES_FILE);
    let rows: Vec<SampleRow> = cvm::results::read_samples(&path)
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.backend == "native" && (r.metric == "ready_latency" || r.metric.starts_with("phase."))
        })
        .collect();
    let mut w = SampleWriter::replace(&path).unwrap();
    for r in &rows {
        w.write(r).unwrap();
    }
    drop(w);
    let mut meta = RunMeta::read(&dir.path().join(META_FILE)).unwrap();
    meta.backends.retain(|b| b.backend == "native");
    meta.write(&dir.path().join(META_FILE)).unwrap();
    cvm::report::render_dir(dir.path()).unwrap();
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(html.contains("id=\"chart-startup\""));
    assert!(html.contains("id=\"chart-phases\""));
    for absent in ["memory", "disk", "http-rps", "http-latency", "density"] {
        assert!(
            !html.contains(&format!("id=\"chart-{absent}\"")),
            "{absent}"
        );
        assert!(!dir.path().join(format!("charts/{absent}.png")).exists());
    }
    assert!(!html.contains("tcg-warning"));
}

#[test]
fn a_run_where_nothing_could_run_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    write_results(dir.path(), "startup", "nothing available");
    drop(SampleWriter::replace(&dir.path().join(SAMPLES_FILE)).unwrap());
    let mut meta = RunMeta::read(&dir.path().join(META_FILE)).unwrap();
    meta.backends.retain(|b| b.backend == "crun");
    meta.write(&dir.path().join(META_FILE)).unwrap();
    cvm::report::render_dir(dir.path()).unwrap();
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    for id in SECTIONS {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    assert!(html.contains("cgroups in hybrid mode not supported"));
    assert!(!html.contains("id=\"chart-"));
    assert!(dir.path().join("charts/stack.png").is_file());
    assert!(
        dir.path().join("summary.png").is_file(),
        "every report has its summary.png"
    );
}

#[test]
fn hostile_scenario_text_appears_only_escaped() {
    let (dir, html) = render("hostile", HOSTILE_NAME, HOSTILE_DESCRIPTION);
    for raw in ["<script", "<img", "onerror=alert(1)>"] {
        assert!(!html.contains(raw), "unescaped {raw:?} in index.html");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;"));
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(!md.contains("<script"), "{md}");
}

/// Runs chromium with a hard deadline; returns stdout.
fn chromium(args: &[&str], profile: &Path) -> String {
    chromium_logged(args, profile).0
}

/// Runs chromium with a hard deadline; returns stdout and stderr (where `--enable-logging=stderr`
/// puts the page's console messages).
fn chromium_logged(args: &[&str], profile: &Path) -> (String, String) {
    let mut child = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start chromium");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_reader =
        std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (reader.join().unwrap(), err_reader.join().unwrap())
}

#[test]
fn the_report_renders_in_a_real_browser() {
    if !common::host_has(
        common::which("chromium") && Path::new("/usr/bin/chromium").exists(),
        "headless Chromium (/usr/bin/chromium; scripts/setup.sh --test installs it)",
    ) {
        return;
    }
    let (dir, _) = render("browser", HOSTILE_NAME, HOSTILE_DESCRIPTION);
    let dom = check_in_browser(dir.path(), "browser");
    assert!(dom.contains("id=\"tcg-warning\""));
    // The hostile name is text in the DOM, not an element.
    assert!(!dom.contains("<script>alert(1)</script>"));
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

/// Loads `dir/index.html` in headless Chromium: every section, an inline SVG per chart, and a
/// screenshot that is not blank. Returns the DOM.
fn check_in_browser(dir: &Path, keep_as: &str) -> String {
    let url = format!("file://{}", dir.join("index.html").display());
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(&["--dump-dom", &url], profile.path());
    for id in SECTIONS {
        assert!(dom.contains(&format!("id=\"{id}\"")), "DOM lacks #{id}");
    }
    assert!(
        dom.matches("<svg").count() >= CHARTS.len(),
        "inline SVG missing"
    );
    let shot = dir.join("screenshot.png");
    let profile = tempfile::tempdir().unwrap();
    chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,3000",
            &url,
        ],
        profile.path(),
    );
    let (colours, size) = distinct_colours(&shot);
    assert!(size.0 >= 1000 && size.1 >= 2000, "{size:?}");
    assert!(
        colours > 200,
        "the screenshot looks blank: only {colours} distinct colours"
    );
    if let Ok(keep) = std::env::var("CVM_KEEP_REPORT") {
        let keep = Path::new(&keep).join(keep_as);
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&shot, keep.join("screenshot.png"));
    }
    dom
}

/// `cvm report --merge` of three hosts' results: the host is in every backend's name, the
/// fingerprints stand side by side, and the page passes the same browser check.
#[test]
fn a_merged_report_of_three_hosts_renders_in_a_real_browser() {
    if !common::host_has(
        common::which("chromium") && Path::new("/usr/bin/chromium").exists(),
        "headless Chromium (/usr/bin/chromium; scripts/setup.sh --test installs it)",
    ) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = ["alpha", "beta", "gamma"]
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let d = root.path().join(host);
            std::fs::create_dir_all(&d).unwrap();
            write_results(&d, "web", "three hosts");
            let path = d.join(META_FILE);
            let mut meta = RunMeta::read(&path).unwrap();
            meta.environment.host = host.to_string();
            meta.environment.fingerprint.smt = ["on", "off", "on"][i].into();
            meta.write(&path).unwrap();
            d
        })
        .collect();
    let out = root.path().join("merged");
    let summary = cvm::report::merge::merge_dirs(&dirs, &out).expect("merge failed");
    assert!(summary.backend("vm@gamma").is_some());
    let dom = check_in_browser(&out, "merged");
    assert!(dom.contains("id=\"hosts\""));
    assert!(
        dom.contains("SMT ≠"),
        "the differing fingerprint row is marked"
    );
    for host in ["alpha", "beta", "gamma"] {
        assert!(dom.contains(&format!("container@{host}")), "{host} missing");
    }
    if let Ok(keep) = std::env::var("CVM_KEEP_REPORT") {
        copy_dir(&out, &PathBuf::from(keep).join("merged"));
    }
}

/// The screenshot's distinct colours, and its size.
fn distinct_colours(png_path: &Path) -> (usize, (u32, u32)) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).expect("no screenshot written"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let channels = frame.color_type.samples();
    let bytes = &buf[..frame.buffer_size()];
    let colours: std::collections::HashSet<&[u8]> = bytes.chunks_exact(channels).collect();
    (colours.len(), (frame.width, frame.height))
}

/// A results directory from before `run.json` carried a schema version still renders with
/// `cvm report`, and the report says exactly what it cannot show, in the terminal, the
/// summary and the page.
#[test]
fn a_directory_without_a_schema_version_renders_and_says_what_it_cannot_show() {
    let dir = tempfile::tempdir().unwrap();
    write_results(dir.path(), "web", "old");
    let meta_path = dir.path().join(META_FILE);
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("schema_version");
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    // Before schema 3, memory_overhead was stored as a sample (against native's running
    // median); stored values, here a bogus 1 B each, give way to the derived figure.
    let samples = dir.path().join(SAMPLES_FILE);
    let rows = cvm::results::read_samples(&samples).unwrap();
    let mut w = SampleWriter::replace(&samples).unwrap();
    for r in &rows {
        w.write(r).unwrap();
        if r.metric == "memory_pss" && r.backend != "native" {
            w.write(&SampleRow {
                metric: "memory_overhead".into(),
                value: 1.0,
                ..r.clone()
            })
            .unwrap();
        }
    }
    drop(w);

    let out = common::cvm_cmd()
        .arg("report")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    // The one-screen summary names the limitation; `--full` says all of it.
    assert!(common::stdout(&out).contains("older cvm (results schema 1"));
    let out = common::cvm_cmd()
        .args(["report", "--full"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let table = common::stdout(&out);
    assert!(
        table.contains("older cvm (results schema 1") && table.contains("memory_vmm"),
        "{table}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["limitations"].as_array().map(Vec::len), Some(2));
    assert!(table.contains("stored memory_overhead samples"), "{table}");
    let median = |backend: &str, metric: &str| {
        summary["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == backend)
            .and_then(|b| b["metrics"][metric]["median"].as_f64())
            .unwrap()
    };
    let derived = median("runc", "memory_overhead");
    let want = median("runc", "memory_pss") - median("native", "memory_pss");
    assert!((derived - want).abs() < 1.0, "{derived} vs {want}");
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(html.contains("id=\"schema-warning\""));
    // The current version has nothing to warn about.
    write_results(dir.path(), "web", "new");
    let out = common::cvm_cmd()
        .arg("report")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!common::stdout(&out).contains("results schema"));
}

/// Three scenarios' results directories under `root` (named after their scenarios).
fn three_scenarios(root: &Path) -> Vec<PathBuf> {
    ["startup", "web", "sweep"]
        .iter()
        .map(|name| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            write_results(&d, name, &format!("the {name} scenario"));
            d
        })
        .collect()
}

/// `cvm report --site OUT DIR...` builds the site: `OUT/<scenario>/` holds each report with its
/// `summary.png`, and the index links each with its thumbnail over an overview table with a row
/// per backend.
#[test]
fn a_site_of_three_scenarios_has_an_overview_row_per_backend() {
    let root = tempfile::tempdir().unwrap();
    let dirs = three_scenarios(root.path());
    let site = root.path().join("site");
    let out = common::cvm_cmd()
        .args(["report", "--site"])
        .arg(&site)
        .args(&dirs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    for name in ["startup", "web", "sweep"] {
        assert!(site.join(name).join("index.html").is_file(), "{name}");
        assert!(site.join(name).join("summary.png").is_file(), "{name}");
        assert!(
            index.contains(&format!("<img src=\"{name}/summary.png\"")),
            "{name}"
        );
        assert!(
            index.contains(&format!("href=\"{name}/index.html\"")),
            "{name}"
        );
    }
    let rows = index.matches("<tr class=\"backend\">").count();
    println!("overview rows: {rows}");
    assert_eq!(rows, PROFILES.len(), "a row per backend that ran");
    for p in PROFILES {
        assert!(
            index.contains(&format!("<tr class=\"backend\"><td>{}</td>", p.name)),
            "{}",
            p.name
        );
    }
    // 3 scenarios × (time to ready, memory, disk, throughput).
    assert_eq!(index.matches("<th>Time to ready</th>").count(), 3);
    // A directory that holds no results is refused in one sentence.
    let bad = common::cvm_cmd()
        .args(["report", "--site"])
        .arg(root.path().join("site2"))
        .arg(root.path())
        .output()
        .unwrap();
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        common::stderr(&bad).contains("is not a cvm results directory"),
        "{}",
        common::stderr(&bad)
    );
}

/// What the probe page measured of a page shown in a frame of a given size.
#[derive(Debug, serde::Deserialize)]
struct Probe {
    inner: f64,
    scroll_w: f64,
    verdict_top: Option<f64>,
    verdict_bottom: Option<f64>,
    images: usize,
    broken: usize,
}

/// Loads `page` in a `w`×`h` frame of a probe page (the report's own policy forbids scripts,
/// so the probe's script reads it from outside) and returns what it measured.
fn probe(page: &Path, (w, h): (u32, u32), work: &Path) -> Probe {
    let probe = work.join(format!("probe-{w}x{h}.html"));
    std::fs::write(
        &probe,
        format!(
            "<!DOCTYPE html><html><head><style>body{{margin:0}}iframe{{border:0;display:block;\
             width:{w}px;height:{h}px}}</style></head><body><iframe id=\"f\" src=\"file://{}\">\
             </iframe><pre id=\"out\">pending</pre><script>\
             const f = document.getElementById('f');\
             f.addEventListener('load', () => {{\
               const d = f.contentDocument, v = d.getElementById('verdict');\
               const r = v ? v.getBoundingClientRect() : null;\
               const imgs = [...d.images];\
               document.getElementById('out').textContent = JSON.stringify({{\
                 inner: f.contentWindow.innerWidth, scroll_w: d.documentElement.scrollWidth,\
                 verdict_top: r && r.top, verdict_bottom: r && r.bottom, images: imgs.length,\
                 broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length }});\
             }});</script></body></html>",
            page.display()
        ),
    )
    .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(
        &[
            "--allow-file-access-from-files",
            "--window-size=1400,1000",
            "--virtual-time-budget=10000",
            "--dump-dom",
            &format!("file://{}", probe.display()),
        ],
        profile.path(),
    );
    let json = dom
        .split("<pre id=\"out\">")
        .nth(1)
        .and_then(|t| t.split("</pre>").next())
        .unwrap_or("pending");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("the probe read nothing ({e}): {json}"))
}

/// Issue 29's acceptance in a real browser: at 1280×800 the report's verdict panel is in the
/// first screen and no page scrolls sideways, at 390×844 (a phone) neither; every image of the
/// report and of the site's index loads; no console message. Screenshots of both sizes are kept
/// under `target/tmp/report-browser/`.
#[test]
fn the_verdict_is_in_the_first_screen_and_nothing_scrolls_sideways() {
    if !common::host_has(
        common::which("chromium") && Path::new("/usr/bin/chromium").exists(),
        "headless Chromium (/usr/bin/chromium; scripts/setup.sh --test installs it)",
    ) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dirs = three_scenarios(root.path());
    let site = root.path().join("site");
    cvm::report::site::build(&site, &dirs, None).expect("site");
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-browser");
    std::fs::create_dir_all(&keep).unwrap();
    for (page, images) in [("web/index.html", 0), ("index.html", 3)] {
        let path = site.join(page);
        for (w, h) in [(1280, 800), (390, 844)] {
            let p = probe(&path, (w, h), root.path());
            println!("{page} at {w}×{h}: {p:?}");
            assert_eq!(p.inner, f64::from(w), "the frame is the viewport");
            assert!(
                p.scroll_w <= f64::from(w),
                "{page} scrolls sideways at {w} px"
            );
            assert_eq!((p.images, p.broken), (images, 0), "{page}: images");
            if page.ends_with("web/index.html") && w == 1280 {
                let (top, bottom) = (p.verdict_top.unwrap(), p.verdict_bottom.unwrap());
                assert!(
                    top < 200.0 && bottom <= f64::from(h),
                    "verdict at {top}–{bottom}"
                );
            }
            let shot = keep.join(format!("{}-{w}x{h}.png", page.replace('/', "-")));
            let profile = tempfile::tempdir().unwrap();
            chromium(
                &[
                    &format!("--screenshot={}", shot.display()),
                    &format!("--window-size={w},{h}"),
                    &format!("file://{}", path.display()),
                ],
                profile.path(),
            );
            let (colours, size) = distinct_colours(&shot);
            println!("kept {} ({colours} colours, {size:?})", shot.display());
            assert!(colours > 50, "{} looks blank", shot.display());
        }
        let profile = tempfile::tempdir().unwrap();
        let (_, log) = chromium_logged(
            &[
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                &format!("file://{}", path.display()),
            ],
            profile.path(),
        );
        let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
        assert!(console.is_empty(), "{page}: console said {console:#?}");
    }
}
