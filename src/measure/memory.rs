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

/// One process's PSS in bytes, split into the part in mappings whose path starts with
/// `mapping` and the rest, from `/proc/PID/smaps` (a VM's guest RAM apart from QEMU's own
/// memory). `None` if the process is gone.
pub fn pss_split(pid: u32, mapping: &str) -> Option<PssSplit> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(parse_smaps_split(&text, mapping))
}

/// PSS in and outside the named mapping, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PssSplit {
    pub total: u64,
    pub in_mapping: u64,
}

fn parse_smaps_split(smaps: &str, mapping: &str) -> PssSplit {
    let mut split = PssSplit::default();
    let mut inside = false;
    for line in smaps.lines() {
        // A mapping's header is the only kind of line whose first word is an address range.
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            // Fields: range, perms, offset, dev, inode, then the path (which may hold spaces).
            let path = line.split_whitespace().nth(5).unwrap_or("");
            inside = !mapping.is_empty() && path.starts_with(mapping);
        } else if let Some(kib) = parse_pss_kib(line) {
            split.total += kib * 1024;
            if inside {
                split.in_mapping += kib * 1024;
            }
        }
    }
    split
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
    fn smaps_pss_is_split_at_the_named_mapping() {
        let smaps = "\
5600-5700 r-xp 00000000 08:01 12 /usr/bin/qemu-system-x86_64
Size:  1024 kB
Pss:    300 kB
Pss_Anon: 0 kB
7f00-7f80 rw-s 00000000 00:01 6413                       /memfd:memory-backend-memfd (deleted)
Size: 131072 kB
Pss:   40000 kB
7f90-7fa0 rw-p 00000000 00:00 0
Pss:    700 kB
";
        let split = parse_smaps_split(smaps, "/memfd:memory-backend-memfd");
        assert_eq!(split.total, 41_000 * 1024);
        assert_eq!(split.in_mapping, 40_000 * 1024);
        assert_eq!(parse_smaps_split(smaps, "/nothing").in_mapping, 0);
        // Pss_Anon and friends are breakdowns of Pss, not more of it.
        assert_eq!(parse_pss_kib("Pss_Anon: 5 kB"), None);
    }

    #[test]
    fn own_pss_is_positive() {
        assert!(pss_bytes(std::process::id()).unwrap() > 0);
        assert!(mem_available().unwrap() > 0);
    }
}
