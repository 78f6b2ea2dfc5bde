//! A/B statistics for change detection (`cvm diff`): the difference of two medians with its
//! interval, a permutation test of the difference of means, what the test can reach with the
//! runs it has, and the Benjamini–Hochberg correction over a family of tests.
//!
//! The test follows Firecracker's A/B rule: under "no change" the labels A and B are
//! exchangeable, so the observed difference of means is compared with the differences every
//! relabelling gives. With few samples (C(n+m, n) ≤ [`EXACT_LIMIT`]) every relabelling is
//! enumerated and the p-value is exact; beyond that [`PERMUTATIONS`] seeded random relabellings
//! estimate it, (k + 1) / (R + 1) so it is never 0, continued to [`MAX_PERMUTATIONS`] when
//! fewer than [`FEW_HITS`] were as extreme (so a clear change is not floored at 1e-4). The seed
//! is fixed so a diff re-run on the same directories prints the same p-value.
//!
//! An exact test has a smallest p-value ([`min_p`]): the observed labelling and, with equal
//! sides, its mirror are the most extreme of C(n+m, n), so with 4 runs a side p ≥ 2/70 = 0.029
//! whatever the data. A row whose smallest p is not below α cannot show a change: it is
//! untested, not unchanged.

use super::{median, Estimate, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE};

/// Random relabellings when enumerating them all would cost more than [`EXACT_LIMIT`].
pub const PERMUTATIONS: usize = 10_000;
/// Random relabellings at most, when the first [`PERMUTATIONS`] found fewer than [`FEW_HITS`]
/// as extreme as the observed one.
pub const MAX_PERMUTATIONS: usize = 100_000;
/// Below this many extreme relabellings the estimate is refined up to [`MAX_PERMUTATIONS`].
pub const FEW_HITS: usize = 10;
/// Up to this many relabellings the test enumerates them all (C(10, 5) = 252; C(20, 10) =
/// 184 756, so 10 runs a side are exact).
pub const EXACT_LIMIT: u64 = 200_000;

/// Two-sided permutation p-value of the difference of means of `a` and `b`; 1 when either is
/// empty (nothing to test).
pub fn permutation_p(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return 1.0;
    }
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let total: f64 = pooled.iter().sum();
    // Difference of means from the sum of group A alone: mean_a - mean_b.
    let diff = |sum_a: f64| sum_a / n as f64 - (total - sum_a) / m as f64;
    let observed = diff(a.iter().sum()).abs();
    // Relabellings as extreme as the observed one, with a tolerance for float summation order.
    let tolerance = 1e-12 * observed.max(1e-300);
    let extreme = |sum_a: f64| diff(sum_a).abs() >= observed - tolerance;
    match binomial(n + m, n) {
        Some(count) if count <= EXACT_LIMIT => {
            let mut hits = 0u64;
            for_each_subset_sum(&pooled, n, &mut |s| {
                if extreme(s) {
                    hits += 1;
                }
            });
            hits as f64 / count as f64
        }
        _ => {
            let mut rng = fastrand::Rng::with_seed(BOOTSTRAP_SEED);
            let mut idx: Vec<usize> = (0..n + m).collect();
            let (mut hits, mut drawn) = (0usize, 0usize);
            while drawn < PERMUTATIONS || (hits < FEW_HITS && drawn < MAX_PERMUTATIONS) {
                // Partial Fisher–Yates: the first n slots are a uniform random group A.
                for i in 0..n {
                    let j = rng.usize(i..n + m);
                    idx.swap(i, j);
                }
                let s: f64 = idx[..n].iter().map(|&i| pooled[i]).sum();
                if extreme(s) {
                    hits += 1;
                }
                drawn += 1;
            }
            (hits + 1) as f64 / (drawn + 1) as f64
        }
    }
}

/// The smallest p-value [`permutation_p`] can give with `n` and `m` samples, whatever they are:
/// the observed relabelling alone (and its mirror, with equal sides) as extreme, out of
/// C(n+m, n); with random relabellings, one hit in [`MAX_PERMUTATIONS`]. 1 with an empty side.
pub fn min_p(n: usize, m: usize) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    match binomial(n + m, n) {
        Some(count) if count <= EXACT_LIMIT => {
            let extreme = if n == m { 2.0 } else { 1.0 };
            (extreme / count as f64).min(1.0)
        }
        _ => 1.0 / (MAX_PERMUTATIONS + 1) as f64,
    }
}

/// The fewest runs a side with which the test can give a p-value below `alpha`; `None` when no
/// number can (α at or below the random relabellings' floor).
pub fn runs_needed(alpha: f64) -> Option<usize> {
    (1..=200).find(|&n| min_p(n, n) < alpha)
}

/// Benjamini–Hochberg adjusted p-values (q-values) of a family of tests, in the input's order:
/// `q(i) = min over j ≥ i of p(j) · k / j` over the p-values sorted ascending, at most 1. A
/// test counts when its q is below α, which keeps the expected share of false discoveries
/// among the changes reported at or below α (for independent or positively dependent tests).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let k = p.len();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![1.0; k];
    let mut running = 1.0_f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * k as f64 / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    q
}

/// C(n, k), or `None` when it does not fit in a u64.
fn binomial(n: usize, k: usize) -> Option<u64> {
    let k = k.min(n - k);
    let mut c: u64 = 1;
    for i in 0..k {
        c = c.checked_mul((n - i) as u64)? / (i as u64 + 1);
    }
    Some(c)
}

/// Calls `f` with the sum of every k-element subset of `v`.
fn for_each_subset_sum(v: &[f64], k: usize, f: &mut impl FnMut(f64)) {
    fn walk(v: &[f64], start: usize, left: usize, sum: f64, f: &mut impl FnMut(f64)) {
        if left == 0 {
            f(sum);
            return;
        }
        for i in start..=v.len() - left {
            walk(v, i + 1, left - 1, sum + v[i], f);
        }
    }
    walk(v, 0, k, 0.0, f);
}

/// `median(new) - median(base)` with a percentile bootstrap interval from independent
/// resamples of each side when both have [`super::MIN_N_BOOTSTRAP`] samples, else the
/// order-statistic interval of the pairwise differences with its true level
/// ([`super::twosample`]).
pub fn median_difference(base: &[f64], new: &[f64]) -> Option<Estimate> {
    if base.is_empty() || new.is_empty() {
        return None;
    }
    if !super::twosample::bootstrap_fits(base.len(), new.len()) {
        return super::twosample::difference_by_ranks(base, new);
    }
    let point = median(new) - median(base);
    let mut rng = fastrand::Rng::with_seed(BOOTSTRAP_SEED);
    let mut rb = vec![0.0; base.len()];
    let mut rn = vec![0.0; new.len()];
    let mut diffs = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for s in rb.iter_mut() {
            *s = base[rng.usize(..base.len())];
        }
        for s in rn.iter_mut() {
            *s = new[rng.usize(..new.len())];
        }
        diffs.push(median(&rn) - median(&rb));
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0 * 100.0;
    Some(Estimate {
        point,
        lower: super::percentile(&diffs, tail),
        upper: super::percentile(&diffs, 100.0 - tail),
        level: CONFIDENCE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fully_separated_groups_of_five_reach_the_exact_floor() {
        // 252 relabellings; only the observed one and its mirror are as extreme.
        let a = [1.0, 1.1, 1.2, 1.3, 1.4];
        let b = [2.0, 2.1, 2.2, 2.3, 2.4];
        let p = permutation_p(&a, &b);
        assert!((p - 2.0 / 252.0).abs() < 1e-12, "{p}");
    }

    #[test]
    fn identical_distributions_are_not_significant() {
        let a = [1.0, 3.0, 2.0, 5.0, 4.0];
        let b = [2.0, 4.0, 1.0, 3.0, 5.0];
        assert!((permutation_p(&a, &b) - 1.0).abs() < 1e-12);
        let interleaved_a = [1.0, 3.0, 5.0, 7.0, 9.0, 11.0];
        let interleaved_b = [2.0, 4.0, 6.0, 8.0, 10.0, 12.0];
        assert!(permutation_p(&interleaved_a, &interleaved_b) > 0.3);
    }

    #[test]
    fn large_groups_use_seeded_random_relabellings() {
        let a: Vec<f64> = (0..30).map(|i| 10.0 + f64::from(i % 7)).collect();
        let shifted: Vec<f64> = a.iter().map(|x| x + 5.0).collect();
        let p = permutation_p(&a, &shifted);
        assert!(p < 0.001, "{p}");
        assert_eq!(p, permutation_p(&a, &shifted), "seeded: reproducible");
        let same = permutation_p(&a, &a);
        assert!(same > 0.9, "{same}");
    }

    #[test]
    fn the_smallest_p_says_how_many_runs_a_test_needs() {
        // 2/C(8, 4) = 0.029: 4 runs a side cannot reach 0.01; 5 can (2/252 = 0.0079).
        assert!((min_p(4, 4) - 2.0 / 70.0).abs() < 1e-15);
        assert!((min_p(3, 3) - 0.1).abs() < 1e-15);
        assert!((min_p(2, 3) - 0.1).abs() < 1e-15);
        assert_eq!(runs_needed(0.01), Some(5));
        assert_eq!(runs_needed(0.05), Some(4));
        assert_eq!(runs_needed(0.001), Some(7));
        // Ten a side are enumerated: 2/184 756.
        assert!((min_p(10, 10) - 2.0 / 184_756.0).abs() < 1e-15);
        assert!(min_p(30, 30) < 1e-4);
        assert_eq!(runs_needed(1e-9), None);
        assert_eq!(min_p(0, 5), 1.0);
        // The data reach the floor when fully separated.
        let a = [1.0, 1.1, 1.2];
        let b = [2.0, 2.1, 2.2];
        assert!((permutation_p(&a, &b) - min_p(3, 3)).abs() < 1e-12);
    }

    #[test]
    fn benjamini_hochberg_adjusts_by_rank() {
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5]);
        // Sorted 0.01, 0.03, 0.04, 0.5 give 0.04, 0.06, 0.0533, 0.5; 0.06 falls to the 0.0533
        // after it (q never decreases with rank).
        let want = [0.04, 0.16 / 3.0, 0.16 / 3.0, 0.5];
        for (got, want) in q.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{q:?}");
        }
        assert_eq!(benjamini_hochberg(&[0.2]), vec![0.2]);
        assert!(benjamini_hochberg(&[]).is_empty());
        assert_eq!(benjamini_hochberg(&[0.9, 0.8]), vec![0.9, 0.9]);
    }

    #[test]
    fn nothing_to_test_is_p_one() {
        assert_eq!(permutation_p(&[], &[1.0]), 1.0);
        assert_eq!(permutation_p(&[1.0], &[1.0]), 1.0);
    }

    #[test]
    fn the_median_difference_brackets_the_shift() {
        let base: Vec<f64> = (0..20).map(|i| 1.0 + 0.01 * f64::from(i % 5)).collect();
        let new: Vec<f64> = base.iter().map(|x| x + 0.5).collect();
        let d = median_difference(&base, &new).unwrap();
        assert!((d.point - 0.5).abs() < 1e-9);
        assert!(d.lower <= 0.5 && 0.5 <= d.upper, "{d:?}");
        assert!(d.lower > 0.4 && d.upper < 0.6, "{d:?}");
        assert!(median_difference(&[], &new).is_none());
    }
}
