//! Numeric axes: when a log axis is needed, the range, the ticks and their labels. Pure and
//! unit-tested; the drawing code only places what these return.

use crate::report::format::{display_unit, format_number, format_value, DisplayUnit};

/// When the largest median is this many times the smallest, a linear axis would flatten the
/// fast backends to nothing (milliseconds for containers, seconds for emulated VMs): use a log
/// axis, or for stacked bars (which cannot be stacked on a log axis) separate panels.
pub const LOG_SPREAD: f64 = 20.0;

pub(super) fn spread_is_large(values: impl IntoIterator<Item = f64>) -> bool {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values {
        if v <= 0.0 || !v.is_finite() {
            // A log axis cannot show zero or negative values.
            return false;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    lo.is_finite() && hi / lo > LOG_SPREAD
}

/// A numeric axis: range, ticks and labels in a display unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    /// Range in display units (log: still display units, not exponents).
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    pub unit: DisplayUnit,
    /// The data's SI unit (`s`, `B`...), for log tick labels that carry their own unit.
    pub base: String,
}

fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

impl Scale {
    /// The axis for `values`: log when the chart asked for one and every value is positive,
    /// linear (from zero) otherwise.
    pub fn fitting(values: impl Iterator<Item = f64>, log: bool, unit: &str) -> Scale {
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if log && lo > 0.0 {
            Scale::log(lo, hi, unit)
        } else {
            Scale::linear(lo.min(0.0), hi, unit)
        }
    }

    /// A linear axis from min(0, min) to a rounded max, with headroom for labels above bars.
    pub fn linear(min: f64, max: f64, unit: &str) -> Scale {
        let du = display_unit(unit, max.abs().max(min.abs()));
        let (dmin, dmax) = (min.min(0.0) / du.factor, (max / du.factor).max(0.0));
        let span = if dmax - dmin > 0.0 { dmax - dmin } else { 1.0 };
        let step = nice_step(span * 1.12 / 5.0);
        Scale {
            lo: (dmin / step).floor() * step,
            hi: ((dmax + span * 0.12) / step).ceil() * step,
            log: false,
            unit: du,
            base: unit.to_string(),
        }
    }

    /// A log axis from the decade below `min` to a little above `max` (room for the labels
    /// above the largest values); `min` must be positive.
    pub fn log(min: f64, max: f64, unit: &str) -> Scale {
        let du = display_unit(unit, min);
        let lo = 10f64.powf((min / du.factor).log10().floor());
        let hi = max * 1.8 / du.factor;
        Scale {
            lo,
            hi: hi.max(lo * 10.0),
            log: true,
            unit: du,
            base: unit.to_string(),
        }
    }

    /// Ticks in display units.
    pub fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut out = self.log_ticks(&[1.0]);
            if out.len() < 3 {
                out = self.log_ticks(&[1.0, 2.0, 5.0]);
            }
            out
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let mut out = Vec::new();
            let mut i = (self.lo / step).round() as i64;
            while (i as f64) * step <= self.hi + step * 1e-6 {
                out.push(i as f64 * step);
                i += 1;
            }
            out
        }
    }

    /// Log ticks at 1, 10 and 100 of each unit the base unit comes in (1 ms, 10 ms, 100 ms,
    /// 1 s; 1 MiB, 10 MiB, 100 MiB, 1 GiB), times each multiplier, within the range.
    fn log_ticks(&self, mults: &[f64]) -> Vec<f64> {
        let units: &[f64] = match self.base.as_str() {
            "s" => &[1e-6, 1e-3, 1.0],
            "B" | "B/s" => &[1.0, 1024.0, 1048576.0, 1073741824.0],
            _ => &[1.0],
        };
        let (lo, hi) = (self.lo * self.unit.factor, self.hi * self.unit.factor);
        let decades: Vec<i32> = if units.len() == 1 {
            (lo.log10().floor() as i32..=hi.log10().ceil() as i32).collect()
        } else {
            vec![0, 1, 2]
        };
        let mut out: Vec<f64> = Vec::new();
        for (i, u) in units.iter().enumerate() {
            for &k in &decades {
                for m in mults {
                    let v = u * 10f64.powi(k) * m;
                    // The last unit continues past 100 (1000 s), the others hand over to the
                    // next unit there.
                    let next_unit = units.get(i + 1).is_some_and(|n| v >= n * 0.99);
                    if v >= lo * 0.9999 && v <= hi * 1.0001 && !next_unit {
                        out.push(v / self.unit.factor);
                    }
                }
            }
        }
        out.sort_by(f64::total_cmp);
        out.dedup();
        out
    }

    /// Position of a base-unit value as a fraction of the axis (0 at `lo`, 1 at `hi`), clamped.
    pub fn frac(&self, base_value: f64) -> f64 {
        let v = base_value / self.unit.factor;
        let f = if self.log {
            if v <= 0.0 {
                return 0.0;
            }
            (v / self.lo).log10() / (self.hi / self.lo).log10()
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        f.clamp(0.0, 1.0)
    }

    /// A tick label. Log axes span several units (µs to s), so each of their ticks carries its
    /// own ("100 µs", "1 ms", "10 ms"); linear ticks are bare numbers in the title's unit.
    pub fn tick_label(&self, display_value: f64) -> String {
        if self.log {
            format_value(display_value * self.unit.factor, &self.base)
        } else {
            format_number(display_value)
        }
    }

    /// "time to ready (ms)", or "time to ready (log scale)" when the ticks carry the unit.
    pub fn title(&self, quantity: &str) -> String {
        if self.log {
            format!("{quantity} (log scale)")
        } else if self.unit.name.is_empty() {
            quantity.to_string()
        } else {
            format!("{quantity} ({})", self.unit.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_pick_readable_units_and_ticks() {
        let s = Scale::linear(0.0, 0.0024, "s");
        assert_eq!(s.unit.name, "ms");
        assert_eq!(s.lo, 0.0);
        assert!(s.hi >= 2.4);
        let ticks = s.ticks();
        assert!(ticks.len() >= 4 && ticks.len() <= 8, "{ticks:?}");
        assert_eq!(s.title("time"), "time (ms)");

        let l = Scale::log(0.0012, 2.1, "s");
        assert_eq!(l.unit.name, "ms");
        assert_eq!(l.lo, 1.0);
        assert!((l.hi - 3780.0).abs() < 1e-6);
        assert_eq!(l.ticks(), [1.0, 10.0, 100.0, 1000.0]);
        let m = Scale::log(2.0 * 1048576.0, 190.0 * 1048576.0, "B");
        let labels: Vec<String> = m.ticks().iter().map(|t| m.tick_label(*t)).collect();
        assert_eq!(labels, ["1 MiB", "10 MiB", "100 MiB"]);
        let labels: Vec<String> = l.ticks().iter().map(|t| l.tick_label(*t)).collect();
        assert_eq!(labels, ["1 ms", "10 ms", "100 ms", "1 s"]);
        assert_eq!(l.title("time"), "time (log scale)");
        let narrow = Scale::log(0.002, 0.03, "s");
        assert_eq!(narrow.ticks(), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);

        let b = Scale::linear(0.0, 70.0 * 1024.0 * 1024.0, "B");
        assert_eq!(b.unit.name, "MiB");
    }
}
