use super::*;
use crate::results::testdata::{meta, rows};

fn summary() -> RunSummary {
    let m = meta("startup", "h", &["native", "container", "runc"]);
    let mut r = rows("native", "ready_latency", "s", &[0.001, 0.0011, 0.0009]);
    r.extend(rows(
        "container",
        "ready_latency",
        "s",
        &[0.004, 0.0041, 0.0039],
    ));
    r.extend(rows("runc", "ready_latency", "s", &[0.040, 0.041, 0.039]));
    results::summarize(&m, &r)
}

const FILE: &str = r#"
[[bound]]
backend = "container"
metric = "ready_latency"
ratio_to = "runc"
max = 0.2

[[bound]]
backend = "container"
metric = "ready_latency"
ratio_to = "native"
min = 1.0
max = 3.0
note = "our runtime within 3x of a bare spawn"

[[bound]]
backend = "native"
metric = "ready_latency"
max = 0.01

[[bound]]
backend = "vm"
metric = "ready_latency"
ratio_to = "vm-classic"
max = 0.4
"#;

#[test]
fn ratios_and_absolute_limits_are_checked_on_both_sides() {
    let bounds = parse(FILE, Path::new("goals.toml")).unwrap();
    let c = check(&bounds, &summary());
    let outcomes: Vec<Outcome> = c.iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Holds,
            Outcome::Fails,
            Outcome::Holds,
            Outcome::Skipped
        ]
    );
    assert!((c[0].value.unwrap() - 0.1).abs() < 1e-9);
    assert!(
        c[1].detail
            .contains("4.000× is not within [1.000×, 3.000×]"),
        "{}",
        c[1].detail
    );
    let text = render(&c);
    assert!(
        text.contains("FAILS    container / native ready_latency"),
        "{text}"
    );
    assert!(text.contains("our runtime within 3x"), "{text}");
    assert!(
        text.contains("4 bound(s): 2 hold, 1 fail, 1 skipped"),
        "{text}"
    );
}

#[test]
fn a_required_bound_on_a_missing_backend_fails() {
    let mut bounds = parse(FILE, Path::new("g")).unwrap();
    bounds[3].required = true;
    assert_eq!(check(&bounds, &summary())[3].outcome, Outcome::Fails);
}

#[test]
fn bad_files_are_refused_naming_the_entry() {
    let bad = [
        (
            "[[bound]]\nbackend = \"container\"\nmetric = \"ready_latency\"\n",
            "give min, max",
        ),
        (
            "[[bound]]\nbackend = \"nope\"\nmetric = \"ready_latency\"\nmax = 1\n",
            "nope",
        ),
        (
            "[[bound]]\nbackend = \"native\"\nmetric = \"speed\"\nmax = 1\n",
            "unknown metric `speed`",
        ),
        (
            "[[bound]]\nbackend = \"native\"\nmetric = \"ready_latency\"\nmin = 2\nmax = 1\n",
            "above max",
        ),
        (
            "[[bound]]\nbackend = \"native\"\nmetric = \"ready_latency\"\nmaximum = 1\n",
            "unknown field",
        ),
        ("", "no [[bound]] entries"),
        ("[[bound]\n", "goals.toml"),
    ];
    for (text, expect) in bad {
        let e = parse(text, Path::new("goals.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(expect), "{text:?}: {e}");
    }
}

#[test]
fn the_shipped_goals_parse() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bounds/goals.toml");
    let bounds = load(&path).unwrap();
    assert!(bounds.len() >= 3);
}

#[test]
fn the_shipped_isolation_bounds_parse_and_name_known_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bounds/isolation.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(load(&path).unwrap().len() >= 45);
    for line in text.lines().filter_map(|l| l.strip_prefix("metric = ")) {
        let name = line.trim_matches('"');
        assert!(
            cvm_proto::metric::Metric::from_name(name).is_some(),
            "{name}"
        );
    }
}
