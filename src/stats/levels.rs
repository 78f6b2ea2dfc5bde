//! How an interval's level is written, and the one level several intervals share: every label
//! (tables, charts, findings, `cvm diff`) prints the level the method has, never a nominal one.

/// The level of an interval as every label prints it: "95 %", "93.8 %", "97.9 %".
pub fn level_text(level: f64) -> String {
    let pct = level * 100.0;
    if (pct - pct.round()).abs() < 0.05 {
        format!("{pct:.0} %")
    } else {
        format!("{pct:.1} %")
    }
}

/// The levels of the intervals a table or chart shows: one level for all of them goes in the
/// heading ("median [93.8 % CI]"); when they differ (a backend with failed runs, a metric
/// measured fewer times), the heading says "CI" and each interval carries its own level. A
/// single value's "interval" (level 0) is the value itself and claims nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// The one level every interval has, if they agree.
    common: Option<f64>,
}

impl Levels {
    pub fn of<'a>(intervals: impl IntoIterator<Item = &'a super::Estimate>) -> Levels {
        let mut common = None;
        let mut agree = true;
        for e in intervals.into_iter().filter(|e| e.level > 0.0) {
            match common {
                None => common = Some(e.level),
                Some(l) if (l - e.level).abs() > 1e-9 => agree = false,
                Some(_) => {}
            }
        }
        Levels {
            common: common.filter(|_| agree),
        }
    }

    /// "93.8 % CI", or "CI" when the levels differ (each cell then says its own).
    pub fn heading(&self) -> String {
        match self.common {
            Some(l) => format!("{} CI", level_text(l)),
            None => "CI".to_string(),
        }
    }

    /// What to put after an interval: nothing when the heading states its level, else " (90 %)".
    pub fn caveat(&self, e: &super::Estimate) -> String {
        if e.level <= 0.0 || self.common.is_some() {
            String::new()
        } else {
            format!(" ({})", level_text(e.level))
        }
    }

    /// The levels in words for a caption, in brackets after "interval": "95 %", or where each
    /// is given when they differ.
    pub fn words(&self) -> String {
        match self.common {
            Some(l) => level_text(l),
            None => "levels differ: each is in the summary table".to_string(),
        }
    }
}
