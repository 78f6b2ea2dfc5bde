//! Memory as the host pays for it: proportional set size (PSS) summed over every host process of
//! an instance. PSS splits shared pages between the processes sharing them, so a runtime's shared
//! libraries are not counted once per instance (Kata's and Firecracker's method).

use std::fs;

/// PSS of one process in bytes, from `/proc/PID/smaps_rollup`. `None` if it is gone.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_pss_kib(&text).map(|kib| kib * 1024)
}

/// PSS summed over `pids`; processes that vanished meanwhile count as zero.
pub fn pss_total(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| pss_bytes(p)).sum()
}

fn parse_pss_kib(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|l| {
        let rest = l.strip_prefix("Pss:")?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Host `MemAvailable` in bytes (the density method: its drop per instance).
pub fn mem_available() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let kib: u64 = l
            .strip_prefix("MemAvailable:")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_line_is_parsed_in_kib() {
        let text = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  2048 kB\nPss:  1234 kB\nPss_Anon: 10 kB\n";
        assert_eq!(parse_pss_kib(text), Some(1234));
        assert_eq!(parse_pss_kib("Rss: 1 kB\n"), None);
    }

    #[test]
    fn own_pss_is_positive() {
        assert!(pss_bytes(std::process::id()).unwrap() > 0);
        assert!(mem_available().unwrap() > 0);
    }
}
