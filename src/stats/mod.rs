//! Statistics over raw samples: robust location (median) with a confidence interval,
//! spread, percentiles, and outliers labelled by the MAD rule — never dropped.
//!
//! Intervals say what they are. The median's interval is the distribution-free one between
//! order statistics at every n, so its `level` is its exact coverage: at least 95 % from 6
//! samples (97.9 % at n = 10, the nearest pair above 95 %), and with n ≤ 5 even min–max covers
//! less (93.75 % at n = 5); the report prints the level each interval has. Two-sample intervals (ratios, differences) follow the same
//! rule ([`twosample`]); a simulation test checks every method's stated level against the
//! coverage it has at n = 3, 5 and 10. Outliers need a spread: when more than half the samples
//! are equal (MAD = 0) the mean absolute deviation stands in, so one different value is not
//! everything-but-the-median labelled an outlier.
//!
//! Kept apart from the samples themselves (criterion's split between raw data and estimates):
//! everything here is a pure function of a slice, so `cvm report` recomputes the same summary
//! from `samples.csv` as `cvm compare` did. The two-sample bootstrap uses a fixed seed for that
//! reason.

pub mod ab;
pub mod levels;
pub mod twosample;

use serde::{Deserialize, Serialize};

/// Bootstrap resamples of a two-sample interval (`cvm diff`'s difference of medians).
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// Confidence level of every interval cvm reports.
pub const CONFIDENCE: f64 = 0.95;
/// Fixed so that re-rendering a report reproduces its intervals exactly.
pub const BOOTSTRAP_SEED: u64 = 0x5eed_c0de;
/// Modified z-score above which a sample is labelled an outlier (Iglewicz and Hoaglin).
pub const OUTLIER_Z: f64 = 3.5;
/// Below this many samples on either side a two-sample interval (ratio, difference) comes from
/// order statistics (exact, with its true coverage) instead of the bootstrap, whose percentile
/// interval undercovers there.
pub const MIN_N_BOOTSTRAP: usize = 10;

/// A point estimate with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    pub level: f64,
}

/// Samples far from the median, by side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outliers {
    pub low: usize,
    pub high: usize,
}

/// Everything cvm reports about one (backend, metric) series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    pub p5: f64,
    pub p95: f64,
    pub mad: f64,
    pub median_ci: Estimate,
    pub outliers: Outliers,
}

impl Summary {
    /// Summarises `values`; `None` when there are none (or none finite).
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let median = percentile_sorted(&v, 50.0);
        let mad = mad_sorted(&v, median);
        Some(Summary {
            n: v.len(),
            median,
            mean: mean(&v),
            stddev: stddev(&v),
            min: v[0],
            max: v[v.len() - 1],
            p5: percentile_sorted(&v, 5.0),
            p95: percentile_sorted(&v, 95.0),
            mad,
            median_ci: median_interval(&v),
            outliers: outliers(&v, median, mad),
        })
    }
}

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (n − 1); 0 for a single sample.
pub fn stddev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

pub fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

/// Percentile `p` (0–100) with linear interpolation between closest ranks (numpy's default).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile_sorted(&s, p)
}

fn percentile_sorted(s: &[f64], p: f64) -> f64 {
    match s.len() {
        0 => f64::NAN,
        1 => s[0],
        n => {
            let rank = p.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            s[lo] + (s[hi] - s[lo]) * (rank - lo as f64)
        }
    }
}

/// Median absolute deviation from the median (unscaled).
pub fn mad(v: &[f64]) -> f64 {
    let m = median(v);
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    mad_sorted(&s, m)
}

fn mad_sorted(s: &[f64], median: f64) -> f64 {
    let mut dev: Vec<f64> = s.iter().map(|x| (x - median).abs()).collect();
    dev.sort_by(f64::total_cmp);
    percentile_sorted(&dev, 50.0)
}

/// Modified z-score of `x`: 0.6745 (x − median) / MAD. Infinite when MAD is 0 and x ≠ median.
pub fn modified_z(x: f64, median: f64, mad: f64) -> f64 {
    let d = x - median;
    if mad == 0.0 {
        return if d == 0.0 {
            0.0
        } else {
            d.signum() * f64::INFINITY
        };
    }
    0.6745 * d / mad
}

/// The median's interval: the narrowest pair of order statistics `[x(k), x(n+1-k)]` whose
/// coverage, `1 - 2 P(Binomial(n, 1/2) < k)`, reaches [`CONFIDENCE`], or min–max with the
/// coverage it has when none does (n ≤ 5). Exact and distribution-free at every n, so its
/// `level` is what it covers: a percentile bootstrap, used here before, stated 95 % and covered
/// 92.4 % at n = 10 in the simulation test.
pub fn median_interval(sorted: &[f64]) -> Estimate {
    let n = sorted.len();
    let point = percentile_sorted(sorted, 50.0);
    if n < 2 {
        return Estimate {
            point,
            lower: point,
            upper: point,
            level: 0.0,
        };
    }
    let cdf = binomial_half_cdf(n);
    let coverage = |k: usize| 1.0 - 2.0 * cdf[k - 1];
    // The largest k (narrowest interval) that still covers CONFIDENCE; 1 is min–max.
    let k = (1..=n / 2)
        .rev()
        .find(|&k| coverage(k) >= CONFIDENCE)
        .unwrap_or(1);
    Estimate {
        point,
        lower: sorted[k - 1],
        upper: sorted[n - k],
        level: coverage(k),
    }
}

/// `P(Binomial(n, 1/2) ≤ j)` for j = 0..=n, from the log of each term so that no power of 2
/// overflows at large n.
fn binomial_half_cdf(n: usize) -> Vec<f64> {
    let mut log_term = -(n as f64) * std::f64::consts::LN_2; // C(n, 0) / 2^n
    let mut acc = 0.0;
    (0..=n)
        .map(|i| {
            if i > 0 {
                log_term += ((n + 1 - i) as f64 / i as f64).ln();
            }
            acc += log_term.exp();
            acc.min(1.0)
        })
        .collect()
}

/// Mean absolute deviation from the median, scaled to stand in for the MAD in the modified
/// z-score when the MAD is 0 (Iglewicz and Hoaglin: 1.253314 × MeanAD ≈ σ, as 1.4826 × MAD).
fn mean_ad_scale(s: &[f64], median: f64) -> f64 {
    1.253_314 * mean(&s.iter().map(|x| (x - median).abs()).collect::<Vec<_>>()) / 1.4826
}

fn outliers(s: &[f64], median: f64, mad: f64) -> Outliers {
    let mut o = Outliers::default();
    let scale = if mad == 0.0 {
        mean_ad_scale(s, median)
    } else {
        mad
    };
    for &x in s {
        let z = modified_z(x, median, scale);
        if z > OUTLIER_Z {
            o.high += 1;
        } else if z < -OUTLIER_Z {
            o.low += 1;
        }
    }
    o
}

/// Why no ratio can be taken to `base` (the baseline's samples), or `None` when one can: a
/// baseline whose median is zero or negative, or whose own 95 % interval reaches zero (within
/// its noise of zero), gives ratios that are huge, negative or of either sign from one run to
/// the next ("-6271x"), which mean nothing.
pub fn ratio_baseline_problem(base: &[f64]) -> Option<&'static str> {
    let s = Summary::of(base)?;
    if s.median == 0.0 {
        Some("baseline median is 0")
    } else if s.median < 0.0 {
        Some("baseline median is negative")
    } else if s.median_ci.lower <= 0.0 {
        Some("baseline is within its noise of 0")
    } else {
        None
    }
}

/// The ratio of two medians with its interval (A/B comparison: "container is 3.1x native
/// [2.8, 3.4]"): from independent bootstrap resamples of each side when both have
/// [`MIN_N_BOOTSTRAP`] samples, else the order-statistic interval of the pairwise ratios with its
/// true level ([`twosample`]).
pub fn ratio_of_medians(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<Estimate> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let point = median(a) / median(b);
    // No ratio to a zero (or an undefined) baseline: "0 errors vs 0 errors" is not a factor.
    if !point.is_finite() {
        return None;
    }
    if !twosample::bootstrap_fits(a.len(), b.len()) {
        return twosample::ratio_by_ranks(a, b);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut ratios = Vec::with_capacity(resamples);
    let mut ra = vec![0.0; a.len()];
    let mut rb = vec![0.0; b.len()];
    for _ in 0..resamples {
        for s in ra.iter_mut() {
            *s = a[rng.usize(..a.len())];
        }
        for s in rb.iter_mut() {
            *s = b[rng.usize(..b.len())];
        }
        ratios.push(median(&ra) / median(&rb));
    }
    ratios.retain(|r| r.is_finite());
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0 * 100.0;
    Some(Estimate {
        point,
        lower: percentile_sorted(&ratios, tail),
        upper: percentile_sorted(&ratios, 100.0 - tail),
        level: CONFIDENCE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn location_and_spread_on_a_fixed_vector() {
        assert!(close(median(&V), 5.0));
        assert!(close(median(&[4.0, 1.0, 3.0, 2.0]), 2.5));
        assert!(close(mean(&V), 136.0 / 9.0));
        // Python: statistics.stdev(V) = 31.91568753937648
        assert!(
            (stddev(&V) - 31.915_687_539_376_48).abs() < 1e-9,
            "{}",
            stddev(&V)
        );
        assert!(close(mad(&V), 2.0));
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        assert!(close(percentile(&V, 0.0), 1.0));
        assert!(close(percentile(&V, 100.0), 100.0));
        // numpy.percentile(V, 95) = 8 + 0.6 * 92
        assert!(close(percentile(&V, 95.0), 63.2));
        assert!(close(percentile(&V, 5.0), 1.4));
        assert!(close(percentile(&[7.0], 42.0), 7.0));
    }

    #[test]
    fn mad_rule_labels_the_far_sample_only() {
        let s = Summary::of(&V).unwrap();
        assert_eq!(s.outliers, Outliers { low: 0, high: 1 });
        assert_eq!(s.n, 9);
        let flat = Summary::of(&[2.0, 2.0, 2.0, 2.0]).unwrap();
        assert_eq!(flat.outliers, Outliers::default());
    }

    #[test]
    fn a_zero_mad_does_not_make_every_other_value_an_outlier() {
        // More than half equal: MAD = 0. Two values one step away are ordinary spread.
        let s = Summary::of(&[1.0, 1.0, 1.0, 2.0, 2.0]).unwrap();
        assert_eq!(s.mad, 0.0);
        assert_eq!(s.outliers, Outliers::default());
        // One value far from seven equal ones still stands out.
        let s = Summary::of(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 50.0]).unwrap();
        assert_eq!(s.outliers, Outliers { low: 0, high: 1 });
    }

    #[test]
    fn small_samples_get_an_exact_interval_with_its_true_level() {
        // n = 5: min–max is the best there is, and it covers 1 - 2/32 = 93.75 %, not 95 %.
        let e = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap().median_ci;
        assert_eq!((e.lower, e.point, e.upper), (1.0, 3.0, 5.0));
        assert!(close(e.level, 0.9375), "{e:?}");
        // n = 9: [x(2), x(8)] covers 1 - 2 * 10/512 = 96.1 %; [x(3), x(7)] only 82 %.
        let e = Summary::of(&V).unwrap().median_ci;
        assert_eq!((e.lower, e.upper), (2.0, 8.0));
        assert!(
            e.level >= CONFIDENCE && close(e.level, 1.0 - 20.0 / 512.0),
            "{e:?}"
        );
        // n = 10: [x(2), x(9)] covers 1 - 2 * 11/1024 = 97.9 %.
        let ten: Vec<f64> = (0..10).map(f64::from).collect();
        let e = Summary::of(&ten).unwrap().median_ci;
        assert_eq!((e.lower, e.upper), (1.0, 8.0));
        assert!(close(e.level, 1.0 - 22.0 / 1024.0), "{e:?}");
        // Large n: no overflow, and the level stays just above 95 %.
        let many: Vec<f64> = (0..2000).map(f64::from).collect();
        let e = Summary::of(&many).unwrap().median_ci;
        assert!(e.level >= CONFIDENCE && e.level < 0.96, "{e:?}");
        assert!(
            e.lower < 999.5 && 999.5 < e.upper && e.upper - e.lower < 100.0,
            "{e:?}"
        );
        assert_eq!(Summary::of(&[7.0]).unwrap().median_ci.level, 0.0);
        let flat = Summary::of(&[3.0; 10]).unwrap().median_ci;
        assert_eq!((flat.lower, flat.point, flat.upper), (3.0, 3.0, 3.0));
    }

    #[test]
    fn ratio_of_medians_brackets_the_true_ratio() {
        let a: Vec<f64> = (0..30).map(|i| 3.0 + 0.01 * f64::from(i % 5)).collect();
        let b: Vec<f64> = (0..30).map(|i| 1.0 + 0.01 * f64::from(i % 5)).collect();
        let r = ratio_of_medians(&a, &b, 1000, 3).unwrap();
        assert!(r.lower <= r.point && r.point <= r.upper);
        assert!((r.point - 3.02 / 1.02).abs() < 1e-9);
    }

    #[test]
    fn no_ratio_to_a_baseline_near_zero_or_below() {
        assert_eq!(
            ratio_baseline_problem(&[0.0, 0.0]),
            Some("baseline median is 0")
        );
        assert_eq!(
            ratio_baseline_problem(&[-26e3, -25e3, -27e3]),
            Some("baseline median is negative")
        );
        // Mostly positive, but one sample below zero: its interval reaches zero.
        assert_eq!(
            ratio_baseline_problem(&[-5e3, 2e3, 3e3]),
            Some("baseline is within its noise of 0")
        );
        assert_eq!(ratio_baseline_problem(&[5e6, 5.1e6, 4.9e6]), None);
        assert_eq!(ratio_baseline_problem(&[]), None);
    }

    #[test]
    fn no_ratio_to_a_zero_baseline() {
        assert!(ratio_of_medians(&[0.0, 0.0], &[0.0, 0.0], 100, 1).is_none());
        assert!(ratio_of_medians(&[1.0], &[0.0], 100, 1).is_none());
        assert_eq!(ratio_of_medians(&[0.0], &[2.0], 100, 1).unwrap().point, 0.0);
    }

    #[test]
    fn empty_and_non_finite_input() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
        assert_eq!(Summary::of(&[1.0, f64::NAN, 3.0]).unwrap().n, 2);
    }
}

#[cfg(test)]
mod coverage;
