//! Simulation check of every interval method's stated level: draw n values per side from a
//! known distribution many times, and count how often the interval holds the true value. The
//! stated level must be within [`TOLERANCE`] of that coverage at n = 3, 5 and 10 (for two
//! samples: order statistics below [`super::MIN_N_BOOTSTRAP`], the bootstrap from it).

use super::{ab, ratio_of_medians, Estimate, Summary, BOOTSTRAP_SEED};

/// How far a stated level may be from the measured coverage (3 points).
const TOLERANCE: f64 = 0.03;
/// Simulated samples per method and n: the coverage's standard error is then at most
/// 0.5/√2000 ≈ 1.1 points, a third of the tolerance.
const TRIALS: usize = 2000;
/// Latency-like skew: log-normal with σ = 0.5 of the logarithm, median 1.
const SIGMA: f64 = 0.5;
/// The new side's shift (difference) and factor (ratio) over the base.
const SHIFT: f64 = 0.3;
const FACTOR: f64 = 3.0;

fn lognormal(rng: &mut fastrand::Rng) -> f64 {
    // Box–Muller; 1 - f64() is in (0, 1], so the logarithm is finite.
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
    (SIGMA * z).exp()
}

fn draw(rng: &mut fastrand::Rng, n: usize, f: impl Fn(f64) -> f64) -> Vec<f64> {
    (0..n).map(|_| f(lognormal(rng))).collect()
}

/// One method: the interval from one simulated data set, and the true value it should hold.
type Method = fn(&mut fastrand::Rng, usize) -> (Estimate, f64);

fn median_ci(rng: &mut fastrand::Rng, n: usize) -> (Estimate, f64) {
    let e = Summary::of(&draw(rng, n, |x| x)).unwrap().median_ci;
    (e, 1.0)
}

fn difference(rng: &mut fastrand::Rng, n: usize) -> (Estimate, f64) {
    let base = draw(rng, n, |x| x);
    let new = draw(rng, n, |x| x + SHIFT);
    (ab::median_difference(&base, &new).unwrap(), SHIFT)
}

fn ratio(rng: &mut fastrand::Rng, n: usize) -> (Estimate, f64) {
    let a = draw(rng, n, |x| FACTOR * x);
    let b = draw(rng, n, |x| x);
    // As the summary calls it.
    (
        ratio_of_medians(&a, &b, 1000, BOOTSTRAP_SEED).unwrap(),
        FACTOR,
    )
}

/// The level every trial stated (one per method and n) and the share of trials that covered.
fn measure(method: Method, n: usize, seed: u64) -> (f64, f64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut covered = 0;
    let mut level = None;
    for _ in 0..TRIALS {
        let (e, truth) = method(&mut rng, n);
        assert!(
            level.is_none_or(|l: f64| (l - e.level).abs() < 1e-12),
            "one level per method and n: {level:?} then {}",
            e.level
        );
        level = Some(e.level);
        if e.lower <= truth && truth <= e.upper {
            covered += 1;
        }
    }
    (level.unwrap_or(0.0), covered as f64 / TRIALS as f64)
}

#[test]
fn every_interval_covers_what_it_states_at_3_5_and_10_runs() {
    let methods: [(&str, Method); 3] = [
        ("median", median_ci),
        ("difference of medians", difference),
        ("ratio of medians", ratio),
    ];
    let mut failures = Vec::new();
    for (m, (name, method)) in methods.iter().enumerate() {
        for n in [3, 5, 10] {
            let (stated, measured) = measure(*method, n, 1000 * m as u64 + n as u64);
            let line = format!(
                "{name:<22} n = {n:>2}: stated {:>5.1} %, measured {:>5.1} %",
                stated * 100.0,
                measured * 100.0
            );
            println!("{line}");
            if (stated - measured).abs() > TOLERANCE {
                failures.push(line);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
