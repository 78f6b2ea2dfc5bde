//! Suites on the real host: `cvm compare --scenario SUITE` measures each member into a folder of
//! its own and writes one site with the study's figures beside this host's; a bad member is
//! refused before anything runs, and a member whose workload fails does not stop the others.
//! Needs root (the container backend).

mod common;

use std::path::Path;

use common::{cvm_cmd, host_has, is_root, stderr, stdout};

/// A suite of `members` (built-in names or files beside it) on native and container, 2 runs.
fn write_suite(dir: &Path, members: &[&str]) -> std::path::PathBuf {
    let list: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    let path = dir.join("suite.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"small\"\n[suite]\nscenarios = [{}]\nbackends = [\"native\", \
             \"container\"]\nruns = 2\nwarmup = 0\nreference = \"felter-2014\"\n",
            list.join(", ")
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_suite_measures_each_member_and_sets_the_study_beside_them() {
    if !host_has(is_root(), "the container backend needs root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), &["cpu", "memory"]);
    let out = dir.path().join("out");
    let run = cvm_cmd()
        .args(["compare", "--no-progress", "--scenario"])
        .arg(&suite)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&run), stderr(&run));
    assert_eq!(run.status.code(), Some(0), "{said}");
    assert!(said.contains("small 1/2: cpu") && said.contains("small 2/2: memory"));
    for member in ["cpu", "memory"] {
        let rows = cvm::results::read_samples(&out.join(member).join("samples.csv")).unwrap();
        assert!(
            rows.iter()
                .any(|r| r.backend == "container" && r.metric != "run_failed"),
            "{member}: {said}"
        );
        assert!(out.join(member).join("index.html").is_file());
    }
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    let study = index
        .find("<section id=\"study\">")
        .expect("no study section");
    // The answer comes first: before the verdict panels.
    assert!(study < index.find("<section id=\"scenarios\">").unwrap());
    for want in ["Linpack", "STREAM Triad", "container here", "RC25482"] {
        assert!(index.contains(want), "{want} missing from the site");
    }
    // The same site again from the members' folders, and an unknown reference refused.
    let again = dir.path().join("again");
    let site = |reference: &str| {
        cvm_cmd()
            .args(["report", "--site"])
            .arg(&again)
            .args(["--reference", reference])
            .arg(out.join("cpu"))
            .arg(out.join("memory"))
            .output()
            .unwrap()
    };
    let bad = site("nope");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("known: felter-2014"),
        "{}",
        stderr(&bad)
    );
    let good = site("felter-2014");
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    let index = std::fs::read_to_string(again.join("index.html")).unwrap();
    assert!(index.contains("<section id=\"study\">") && index.contains("Linpack"));
}

#[test]
fn a_bad_member_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let suite = write_suite(dir.path(), &["cpu", "no-such-scenario"]);
    let out = dir.path().join("out");
    let run = cvm_cmd()
        .args(["compare", "--no-progress", "--scenario"])
        .arg(&suite)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    let said = stderr(&run);
    assert!(
        said.contains("member scenario `no-such-scenario`") && said.contains("built-in"),
        "{said}"
    );
    assert!(!out.exists(), "a refused suite created {}", out.display());
}

#[test]
fn a_member_that_fails_does_not_stop_the_others() {
    if !host_has(is_root(), "the container backend needs root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Exits at once with an error: every run of it fails.
    std::fs::write(
        dir.path().join("broken.toml"),
        "name = \"broken\"\ntimeout_s = 10\n[workload]\ncommand = [\"/bin/sh\", \"-c\", \
         \"exit 3\"]\n",
    )
    .unwrap();
    let suite = write_suite(dir.path(), &["broken.toml", "cpu"]);
    let out = dir.path().join("out");
    let run = cvm_cmd()
        .args(["compare", "--no-progress", "--scenario"])
        .arg(&suite)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&run), stderr(&run));
    assert_eq!(run.status.code(), Some(1), "{said}");
    let cpu = cvm::results::read_samples(&out.join("cpu").join("samples.csv")).unwrap();
    assert!(
        cpu.iter()
            .any(|r| r.backend == "container" && r.metric == "cpu_score"),
        "{said}"
    );
    let broken = std::fs::read_to_string(out.join("broken").join("samples.csv")).unwrap();
    assert!(broken.contains("run_failed"), "{broken}");
    assert!(out.join("index.html").is_file(), "{said}");
}
