//! Intervals that compare two independent samples: the difference of their medians (`cvm diff`,
//! memory over native) and their ratio (a backend over native, a VM over a container).
//!
//! From [`MIN_N_BOOTSTRAP`] samples on each side the interval is a percentile bootstrap of each
//! side resampled independently, at [`CONFIDENCE`]. Below that the bootstrap's interval covers
//! less than it says (it cannot see beyond the few values it has), so the interval comes from
//! order statistics of the n·m pairwise differences `new_j - base_i` (ratios `a_i / b_j`):
//! Moses' distribution-free interval, the one the Mann–Whitney test inverts. When the two sides
//! differ by a shift (by a factor, for ratios: a shift of the logarithms), the number of pairwise
//! differences below the true shift follows the Mann–Whitney U distribution whatever the
//! distribution, so `[d(k), d(nm+1-k)]` covers it with probability exactly
//! `1 - 2 P(U ≤ k-1)`. The narrowest such pair that still reaches [`CONFIDENCE`] is taken, or
//! the widest (min–max of the differences) with the level it has when none does: 90 % with 3
//! runs a side, 2/3 with 2. The shift is then the difference of the medians (the ratio of the
//! medians), the point reported.

use super::{median, Estimate, CONFIDENCE, MIN_N_BOOTSTRAP};

/// Whether the two sides are both large enough for the bootstrap.
pub fn bootstrap_fits(a: usize, b: usize) -> bool {
    a.min(b) >= MIN_N_BOOTSTRAP
}

/// `median(new) - median(base)` with the order-statistic interval of the pairwise differences
/// (see the module documentation); `None` when a side is empty.
pub fn difference_by_ranks(base: &[f64], new: &[f64]) -> Option<Estimate> {
    if base.is_empty() || new.is_empty() {
        return None;
    }
    let point = median(new) - median(base);
    let pairs: Vec<f64> = new
        .iter()
        .flat_map(|y| base.iter().map(move |x| y - x))
        .collect();
    Some(rank_interval(pairs, base.len(), new.len(), point))
}

/// `median(a) / median(b)` with the order-statistic interval of the pairwise ratios; `None`
/// when a side is empty or the ratio of medians is not finite. A side with a negative value (or
/// `b` with a zero) has no scale model to lean on: the ratio is given as a point, level 0.
pub fn ratio_by_ranks(a: &[f64], b: &[f64]) -> Option<Estimate> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let point = median(a) / median(b);
    if !point.is_finite() {
        return None;
    }
    if a.iter().any(|&x| x < 0.0) || b.iter().any(|&x| x <= 0.0) {
        return Some(Estimate {
            point,
            lower: point,
            upper: point,
            level: 0.0,
        });
    }
    let pairs: Vec<f64> = a
        .iter()
        .flat_map(|x| b.iter().map(move |y| x / y))
        .collect();
    Some(rank_interval(pairs, a.len(), b.len(), point))
}

/// The narrowest `[d(k), d(nm+1-k)]` of `pairs` (the n·m pairwise values) whose coverage
/// reaches [`CONFIDENCE`], or min–max with the coverage it has.
fn rank_interval(mut pairs: Vec<f64>, n: usize, m: usize, point: f64) -> Estimate {
    pairs.sort_by(f64::total_cmp);
    let nm = pairs.len();
    let cdf = mann_whitney_cdf(n, m);
    let coverage = |k: usize| (1.0 - 2.0 * cdf[k - 1]).max(0.0);
    let k = (1..=nm / 2)
        .rev()
        .find(|&k| coverage(k) >= CONFIDENCE)
        .unwrap_or(1);
    Estimate {
        point,
        lower: pairs[k - 1],
        upper: pairs[nm - k],
        level: if nm < 2 { 0.0 } else { coverage(k) },
    }
}

/// `P(U ≤ u)` for u = 0..=n·m, U the Mann–Whitney statistic of samples of n and m under the null
/// (all C(n+m, n) orderings equally likely). Its counts are the coefficients of the Gaussian
/// binomial `[n+m choose n]_q = Π_{i=1..s} (1 - q^(l+i)) / (1 - q^i)` (s the smaller size, l the
/// larger), built one factor at a time: each partial product is itself a Gaussian binomial, so
/// its coefficients stay non-negative integers.
pub fn mann_whitney_cdf(n: usize, m: usize) -> Vec<f64> {
    let (s, l) = (n.min(m), n.max(m));
    let mut poly = vec![1.0_f64];
    for i in 1..=s {
        let grow = l + i;
        let mut next = vec![0.0; poly.len() + l];
        next[..poly.len()].copy_from_slice(&poly);
        // × (1 - q^(l+i)).
        for j in (grow..next.len()).rev() {
            next[j] -= next[j - grow];
        }
        // ÷ (1 - q^i): the series 1 + q^i + q^2i + ... as a running sum.
        for j in i..next.len() {
            next[j] += next[j - i];
        }
        poly = next;
    }
    let total: f64 = poly.iter().sum();
    let mut acc = 0.0;
    poly.iter()
        .map(|c| {
            acc += c.max(0.0);
            (acc / total).min(1.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn the_u_distribution_matches_its_known_counts() {
        // n = m = 3: 20 orderings; U = 0, 1, 2 have 1, 1, 2 of them.
        let c = mann_whitney_cdf(3, 3);
        assert_eq!(c.len(), 10);
        assert!(close(c[0], 1.0 / 20.0) && close(c[1], 2.0 / 20.0) && close(c[2], 4.0 / 20.0));
        assert!(close(c[9], 1.0));
        // n = m = 5: 252 orderings, P(U ≤ 2) = 4/252, P(U ≤ 3) = 7/252.
        let c = mann_whitney_cdf(5, 5);
        assert!(
            close(c[2], 4.0 / 252.0) && close(c[3], 7.0 / 252.0),
            "{c:?}"
        );
        // Symmetric in its two sizes; 1 against m is uniform on 0..=m.
        assert_eq!(mann_whitney_cdf(2, 7), mann_whitney_cdf(7, 2));
        assert!(close(mann_whitney_cdf(1, 4)[1], 2.0 / 5.0));
    }

    #[test]
    fn small_samples_get_min_max_of_the_differences_with_its_true_level() {
        let base = [1.0, 2.0, 3.0];
        let new = [11.0, 12.5, 13.0];
        let d = difference_by_ranks(&base, &new).unwrap();
        assert!(close(d.point, 10.5));
        assert_eq!((d.lower, d.upper), (8.0, 12.0));
        // 1 - 2/C(6, 3).
        assert!(close(d.level, 0.9), "{d:?}");
        // Five a side: [d(3), d(23)] covers 1 - 2 * 4/252.
        let base = [1.0, 2.0, 3.0, 4.0, 5.0];
        let new = [1.5, 2.5, 3.5, 4.5, 5.5];
        let d = difference_by_ranks(&base, &new).unwrap();
        assert!(close(d.level, 1.0 - 8.0 / 252.0), "{d:?}");
        assert!(d.lower < 0.5 && 0.5 < d.upper, "{d:?}");
    }

    #[test]
    fn ratios_by_ranks_need_positive_values() {
        let r = ratio_by_ranks(&[3.0, 6.0, 9.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!(close(r.point, 3.0));
        assert_eq!((r.lower, r.upper), (1.0, 9.0));
        assert!(close(r.level, 0.9));
        let signed = ratio_by_ranks(&[3.0, -1.0, 9.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((signed.level, signed.lower, signed.upper), (0.0, 1.5, 1.5));
        assert!(ratio_by_ranks(&[1.0], &[0.0]).is_none());
        let one = ratio_by_ranks(&[2.0], &[1.0]).unwrap();
        assert_eq!(one.level, 0.0);
    }
}
