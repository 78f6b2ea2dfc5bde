use super::*;
use crate::results::testdata::{meta, rows};
use crate::results::SampleRow;

const BASE: [f64; 6] = [0.010, 0.0102, 0.0098, 0.0101, 0.0099, 0.0100];

#[test]
fn a_slower_start_is_a_regression_and_a_faster_one_an_improvement() {
    let m = meta("startup", "h", &["container"]);
    let base = rows("container", "ready_latency", "s", &BASE);
    let slower: Vec<f64> = BASE.iter().map(|x| x + 0.020).collect();
    let d = diff_runs(
        &m,
        &base,
        &m,
        &rows("container", "ready_latency", "s", &slower),
        &DiffOptions::default(),
    )
    .unwrap();
    assert_eq!(d.rows.len(), 1);
    let r = &d.rows[0];
    assert_eq!(r.verdict, Verdict::Regression, "{r:?}");
    assert!(r.p_value < 0.01, "{r:?}");
    assert!((r.change - 2.0).abs() < 0.05, "{r:?}");
    let faster = diff_runs(
        &m,
        &rows("container", "ready_latency", "s", &slower),
        &m,
        &base,
        &DiffOptions::default(),
    )
    .unwrap();
    assert_eq!(faster.rows[0].verdict, Verdict::Improvement);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn higher_throughput_is_an_improvement() {
    let r = compare_metric(
        "vm",
        "http_rps",
        "1/s",
        &[100.0, 101.0, 99.0, 100.5, 99.5],
        &[200.0, 201.0, 199.0, 200.5, 199.5],
        &DiffOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::Improvement);
}

#[test]
fn a_significant_change_inside_the_noise_threshold_does_not_count() {
    // 3 % slower, perfectly separated (p = 2/924): below the 5 % threshold.
    let base = [1.0, 1.001, 1.002, 0.999, 0.998, 1.0];
    let new: Vec<f64> = base.iter().map(|x| x * 1.03).collect();
    let r = compare_metric(
        "c",
        "ready_latency",
        "s",
        &base,
        &new,
        &DiffOptions::default(),
    );
    assert!(r.p_value < 0.01, "{r:?}");
    assert!((r.change - 0.03).abs() < 1e-9, "{r:?}");
    assert_eq!(r.verdict, Verdict::Unchanged);
    // A per-metric threshold of 1 % makes it count.
    let mut opts = DiffOptions::default();
    opts.metric_thresholds.insert("ready_latency".into(), 0.01);
    let r = compare_metric("c", "ready_latency", "s", &base, &new, &opts);
    assert_eq!(r.verdict, Verdict::Regression);
}

#[test]
fn a_large_but_noisy_change_does_not_count() {
    let base = [1.0, 5.0, 2.0, 8.0, 3.0];
    let new = [2.0, 9.0, 1.5, 6.0, 4.0];
    let r = compare_metric(
        "c",
        "ready_latency",
        "s",
        &base,
        &new,
        &DiffOptions::default(),
    );
    assert!(r.change.abs() > 0.05);
    assert_eq!(r.verdict, Verdict::Unchanged, "{r:?}");
}

#[test]
fn single_measurements_are_not_tested() {
    let r = compare_metric(
        "c",
        "disk_footprint",
        "B",
        &[1e6],
        &[2e6],
        &DiffOptions::default(),
    );
    assert_eq!(r.verdict, Verdict::Untested);
}

#[test]
fn different_scenarios_or_backend_sets_are_bad_input_naming_what_differs() {
    let a = meta("startup", "h", &["native", "container"]);
    let b = meta("web", "h", &["native", "container"]);
    let e = diff_runs(&a, &[], &b, &[], &DiffOptions::default()).unwrap_err();
    assert!(matches!(e, DiffError::ScenarioDiffers { .. }), "{e}");
    assert!(e.to_string().contains("\"web\""), "{e}");
    let c = meta("startup", "h", &["native", "runc"]);
    let e = diff_runs(&a, &[], &c, &[], &DiffOptions::default()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("only in the base: container") && text.contains("only in the new run: runc"),
        "{text}"
    );
}

#[test]
fn different_hosts_are_a_warning_shown_everywhere() {
    let mut a = meta("startup", "alpha", &["native"]);
    a.environment.fingerprint.thp = "madvise".into();
    let mut b = meta("startup", "beta", &["native"]);
    b.environment.fingerprint.thp = "always".into();
    let base = rows("native", "ready_latency", "s", &BASE);
    let d = diff_runs(&a, &base, &b, &base, &DiffOptions::default()).unwrap();
    assert!(
        d.warnings[0].contains("different hosts"),
        "{:?}",
        d.warnings
    );
    assert!(d.warnings[1].contains("THP"), "{:?}", d.warnings);
    assert_eq!(d.rows[0].verdict, Verdict::Unchanged);
    assert!(render::terminal(&d).contains("warning: different hosts"));
    assert!(render::html(&d).contains("id=\"host-warning\""));
    assert!(render::markdown(&d).contains("**Warning:** different hosts"));
    // A run from before the fingerprint existed (all empty) is no fingerprint difference.
    let old = meta("startup", "alpha", &["native"]);
    let d = diff_runs(&old, &base, &b, &base, &DiffOptions::default()).unwrap();
    assert!(
        !d.warnings.iter().any(|w| w.contains("fingerprints")),
        "{:?}",
        d.warnings
    );
}

#[test]
fn a_rootful_against_a_rootless_run_names_the_conditions_that_differ() {
    let a = meta("web", "h", &["native", "podman"]);
    let mut b = meta("web", "h", &["native", "podman"]);
    b.environment.root = !a.environment.root;
    let podman = b
        .backends
        .iter_mut()
        .find(|x| x.backend == "podman")
        .unwrap();
    podman.config.insert("rootless".into(), "yes".into());
    podman.config.insert("network".into(), "slirp4netns".into());
    let base = rows("native", "ready_latency", "s", &BASE);
    let d = diff_runs(&a, &base, &b, &base, &DiffOptions::default()).unwrap();
    assert!(
        d.warnings.iter().any(|w| w.contains("rootless")),
        "{:?}",
        d.warnings
    );
    let podman = d.warnings.iter().find(|w| w.starts_with("podman")).unwrap();
    assert!(
        podman.contains("rootless (not recorded) → yes") && podman.contains("slirp4netns"),
        "{podman}"
    );
    assert!(!podman.contains("limits"), "{podman}");
    assert!(
        !d.warnings.iter().any(|w| w.starts_with("native")),
        "{:?}",
        d.warnings
    );
    // The same conditions on both sides say nothing.
    let d = diff_runs(&b, &base, &b, &base, &DiffOptions::default()).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn the_page_escapes_names_and_draws_a_bar_per_tested_row() {
    let m = meta("<b>x</b>", "h", &["container"]);
    let slower: Vec<f64> = BASE.iter().map(|x| x + 0.020).collect();
    let mut new = rows("container", "ready_latency", "s", &slower);
    new.extend(rows("container", "disk_footprint", "B", &[5.0]));
    let mut base = rows("container", "ready_latency", "s", &BASE);
    base.extend(rows("container", "disk_footprint", "B", &[4.0]));
    let d = diff_runs(&m, &base, &m, &new, &DiffOptions::default()).unwrap();
    let page = render::html(&d);
    assert!(!page.contains("<b>x</b>") && page.contains("&lt;b&gt;x&lt;/b&gt;"));
    assert_eq!(
        page.matches("fill=\"#c0392b\"").count(),
        1,
        "one regression bar"
    );
    assert!(page.contains("class=\"regression\""));
    assert!(render::terminal(&d).contains("REGRESSION"));
}

#[test]
fn a_busy_host_is_a_warning() {
    let mut a = meta("startup", "h", &["native"]);
    let mut b = a.clone();
    a.environment.ncpu = 2;
    b.environment.ncpu = 2;
    a.environment.load = Some(crate::results::HostLoad {
        start: 0.2,
        end: 0.4,
    });
    b.environment.load = Some(crate::results::HostLoad {
        start: 0.3,
        end: 0.5,
    });
    let base = rows("native", "ready_latency", "s", &BASE);
    let quiet = diff_runs(&a, &base, &b, &base, &DiffOptions::default()).unwrap();
    assert!(quiet.warnings.is_empty(), "{:?}", quiet.warnings);
    b.environment.load = Some(crate::results::HostLoad {
        start: 3.0,
        end: 8.5,
    });
    let busy = diff_runs(&a, &base, &b, &base, &DiffOptions::default()).unwrap();
    assert!(
        busy.warnings[0].contains("load average 0.2–0.4 in the base, 3.0–8.5 in the new run"),
        "{:?}",
        busy.warnings
    );
}

#[test]
fn a_slower_host_is_not_a_slower_backend() {
    let m = meta("startup", "h", &["native", "container"]);
    let slower = |v: &[f64], by: f64| -> Vec<f64> { v.iter().map(|x| x * by).collect() };
    let run = |floor: &[f64], ready: &[f64], pss: &[f64]| -> Vec<SampleRow> {
        let mut r = rows("native", "launch_floor", "s", floor);
        r.extend(rows("container", "ready_latency", "s", ready));
        r.extend(rows("container", "memory_pss", "B", pss));
        r
    };
    let pss = [1.0e6, 1.01e6, 0.99e6, 1.0e6, 1.02e6, 0.98e6];
    let base = run(&BASE, &BASE, &pss);
    // The host and the container both slower by 2x, memory 3x larger.
    let new = run(&slower(&BASE, 2.0), &slower(&BASE, 2.0), &slower(&pss, 3.0));
    let d = diff_runs(&m, &base, &m, &new, &DiffOptions::default()).unwrap();
    let verdict = |metric: &str| d.rows.iter().find(|r| r.metric == metric).unwrap().verdict;
    assert_eq!(verdict("launch_floor"), Verdict::HostChanged);
    assert_eq!(verdict("ready_latency"), Verdict::HostChanged);
    // Memory does not move with the host's speed: still a regression.
    assert_eq!(verdict("memory_pss"), Verdict::Regression);
    assert_eq!(d.count(Verdict::Regression), 1);
    assert!(
        d.warnings
            .iter()
            .any(|w| w.contains("host itself changed") && w.contains("1 time or rate change(s)")),
        "{:?}",
        d.warnings
    );
    assert!(render::terminal(&d).contains("host changed"));
    assert!(d.fails(FailOn::Change) && !d.fails(FailOn::None));

    // A change far beyond the host's is the backend's even on a changed host.
    let new = run(&slower(&BASE, 2.0), &slower(&BASE, 10.0), &pss);
    let d = diff_runs(&m, &base, &m, &new, &DiffOptions::default()).unwrap();
    let r = d.rows.iter().find(|r| r.metric == "ready_latency").unwrap();
    assert_eq!(r.verdict, Verdict::Regression, "{r:?}");

    // The same container slowdown on a steady host is the container's.
    let steady = run(&BASE, &slower(&BASE, 2.0), &pss);
    let d = diff_runs(&m, &base, &m, &steady, &DiffOptions::default()).unwrap();
    let r = d.rows.iter().find(|r| r.metric == "ready_latency").unwrap();
    assert_eq!(r.verdict, Verdict::Regression, "{r:?}");
    assert!(d.warnings.iter().all(|w| !w.contains("host itself")));
}

/// `n` values around `centre`, spread ±`spread` (a fraction), deterministic.
fn noisy(centre: f64, spread: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| centre * (1.0 + spread * ((i as f64 * 0.618).fract() * 2.0 - 1.0)))
        .collect()
}

#[test]
fn three_runs_a_side_are_untested_and_say_how_many_they_need() {
    let m = meta("startup", "h", &["native", "container"]);
    let run = |ready: &[f64]| {
        let mut r = rows("native", "ready_latency", "s", &noisy(0.001, 0.02, 3));
        r.extend(rows("container", "ready_latency", "s", ready));
        r.extend(rows("container", "disk_footprint", "B", &[4e6]));
        r
    };
    // Three times slower, perfectly separated: still not testable with 3 runs a side.
    let base = run(&noisy(0.004, 0.02, 3));
    let new = run(&noisy(0.012, 0.02, 3));
    let d = diff_runs(&m, &base, &m, &new, &DiffOptions::default()).unwrap();
    assert_eq!(d.count(Verdict::Untested), 3, "{:?}", d.rows);
    let ready = d
        .rows
        .iter()
        .find(|r| r.backend == "container" && r.metric == "ready_latency")
        .unwrap();
    assert_eq!(ready.needs_runs, Some(5));
    assert_eq!(ready.verdict_text(), "untested (needs ≥ 5 runs a side)");
    let disk = d
        .rows
        .iter()
        .find(|r| r.metric == "disk_footprint")
        .unwrap();
    assert_eq!(disk.verdict_text(), "untested (measured once)");
    assert!(!d.fails(FailOn::Change));
    let text = render::terminal(&d);
    assert!(text.contains("untested (needs ≥ 5 runs a side)"), "{text}");
    assert!(text.contains(", 3 untested ("), "{text}");
    assert!(
        text.contains("note: 2 of 3 rows untested for too few runs: with 3 runs in the base and 3 in the new run")
            && text.contains("smallest p-value the exact permutation test can give is 0.100"),
        "{text}"
    );
    // Its interval states the level 3 runs a side give: 90 %, in the heading.
    assert!(text.contains("difference [90 % CI]"), "{text}");
    assert!(render::markdown(&d).contains("> **Note:** 2 of 3 rows untested for too few runs"));
    assert!(render::html(&d).contains("<p class=\"note\">2 of 3 rows untested for too few runs"));
}

#[test]
fn a_30_percent_change_with_6_runs_a_side_is_flagged_after_the_correction() {
    let m = meta("startup", "h", &["native", "container"]);
    let run = |ready: &[f64]| {
        let mut r = rows("native", "ready_latency", "s", &noisy(0.001, 0.03, 6));
        r.extend(rows("native", "launch_floor", "s", &noisy(0.0008, 0.03, 6)));
        r.extend(rows("container", "ready_latency", "s", ready));
        r
    };
    let base = run(&noisy(0.004, 0.03, 6));
    let new = run(&noisy(0.0052, 0.03, 6));
    let d = diff_runs(&m, &base, &m, &new, &DiffOptions::default()).unwrap();
    let r = d
        .rows
        .iter()
        .find(|r| r.backend == "container" && r.metric == "ready_latency")
        .unwrap();
    assert!((r.change - 0.3).abs() < 1e-9, "{r:?}");
    assert_eq!(r.verdict, Verdict::Regression, "{r:?}");
    // 2/924, the floor of 6 runs a side, over 3 tested rows: q = 3p. (A lone change of 6 runs
    // a side stands out among at most 4 rows; the next test shows what more rows do.)
    assert!((r.q_value - 3.0 * 2.0 / 924.0).abs() < 1e-9, "{r:?}");
    assert_eq!(d.count(Verdict::Regression), 1, "{:?}", d.rows);
    assert_eq!(d.tested(), 3);
    assert!(render::verdict_line(&d).contains("Benjamini–Hochberg over the 3 tested rows"));
    assert!(d.power_notes().is_empty(), "{:?}", d.power_notes());
}

#[test]
fn the_family_holds_back_a_lone_change_its_runs_cannot_make_stand_out() {
    // The same 30 % change among 20 unchanged rows: 2/924 is not below 0.01/21.
    let names: Vec<String> = (0..20).map(|i| format!("backend{i}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("container");
    let m = meta("startup", "h", &all);
    let run = |ready: &[f64]| {
        let mut r = rows("container", "ready_latency", "s", ready);
        for b in &names {
            r.extend(rows(b, "ready_latency", "s", &noisy(0.002, 0.03, 6)));
        }
        r
    };
    let d = diff_runs(
        &m,
        &run(&noisy(0.004, 0.03, 6)),
        &m,
        &run(&noisy(0.0052, 0.03, 6)),
        &DiffOptions::default(),
    )
    .unwrap();
    let r = d.rows.iter().find(|r| r.backend == "container").unwrap();
    assert!(r.p_value < 0.01 && r.q_value > 0.01, "{r:?}");
    assert_eq!(r.verdict, Verdict::Unchanged);
    let notes = d.power_notes();
    assert!(
        notes.len() == 1 && notes[0].contains("lone change count only at p < α/21"),
        "{notes:?}"
    );
}

#[test]
fn scenarios_with_too_few_default_runs_say_so() {
    let note = scenario_runs_note(3).unwrap();
    assert!(
        note.contains("default 3 run(s) cannot support `cvm diff`"),
        "{note}"
    );
    assert!(note.contains("--runs 5"), "{note}");
    assert_eq!(scenario_runs_note(5), None);
    assert_eq!(scenario_runs_note(20), None);
}
