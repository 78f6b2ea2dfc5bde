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

/// A VMM's PSS by what each of its mappings holds, in bytes, from `/proc/PID/smaps`: the guest's
/// RAM, TCG's translated-code buffer, QEMU's copies of the guest's kernel and initramfs, and
/// the rest, QEMU's own code and data. `None` if the process is gone.
pub fn vmm_split(pid: u32, layout: &VmmLayout) -> Option<VmmSplit> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(parse_vmm_split(&text, layout))
}

/// What identifies a VMM's mappings.
#[derive(Debug, Clone, Default)]
pub struct VmmLayout {
    /// The path prefix of the mapping that backs guest RAM (a named memory backend).
    pub guest_ram: String,
    /// The kernel and initramfs QEMU was handed, with their lengths: it maps a file it loads
    /// as ELF or keeps whole (a vmlinux, an initramfs) and reads a bzImage into a buffer of
    /// its own, less the setup sectors.
    pub boot_images: Vec<(String, u64)>,
}

/// A VMM's PSS in bytes: `total`, and the parts in the guest's RAM, TCG's translation cache
/// (emulation only: an anonymous writable and executable mapping, or QEMU's split `tcg-jit`
/// memfd) and the boot images. The rest of `total` is QEMU's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmmSplit {
    pub total: u64,
    pub guest_ram: u64,
    pub translation_cache: u64,
    pub boot_images: u64,
}

impl VmmSplit {
    /// QEMU without guest RAM (`memory_vmm`).
    pub fn vmm(&self) -> u64 {
        self.total - self.guest_ram
    }

    /// What QEMU needs whatever the guest: its code, libraries, heap and device state.
    pub fn own(&self) -> u64 {
        self.vmm()
            .saturating_sub(self.translation_cache + self.boot_images)
    }

    pub fn plus(self, o: VmmSplit) -> VmmSplit {
        VmmSplit {
            total: self.total + o.total,
            guest_ram: self.guest_ram + o.guest_ram,
            translation_cache: self.translation_cache + o.translation_cache,
            boot_images: self.boot_images + o.boot_images,
        }
    }
}

/// A buffer of QEMU's holding a bzImage is the file less its setup sectors (at most 64 of 512
/// bytes, with the boot sector), plus the allocator's page rounding.
const SETUP_MAX: u64 = 65 * 512;
const PAGE: u64 = 4096;

/// One mapping of smaps: its size, permissions, path (empty when anonymous) and PSS.
struct Mapping {
    size: u64,
    perms: String,
    path: String,
    pss: u64,
}

fn parse_mappings(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        // A mapping's header is the only kind of line whose first word is an address range.
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            let (start, end) = first.split_once('-').unwrap_or(("0", "0"));
            let addr = |a: &str| u64::from_str_radix(a, 16).unwrap_or(0);
            let mut fields = line.split_whitespace();
            let perms = fields.nth(1).unwrap_or("").to_string();
            // Then offset, dev, inode, and the path (which may hold spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            out.push(Mapping {
                size: addr(end).saturating_sub(addr(start)),
                perms,
                path,
                pss: 0,
            });
        } else if let (Some(kib), Some(m)) = (parse_pss_kib(line), out.last_mut()) {
            m.pss += kib * 1024;
        }
    }
    out
}

fn parse_vmm_split(smaps: &str, layout: &VmmLayout) -> VmmSplit {
    let maps = parse_mappings(smaps);
    let mut split = VmmSplit {
        total: maps.iter().map(|m| m.pss).sum(),
        ..VmmSplit::default()
    };
    let file = |m: &Mapping| m.path.trim_end_matches(" (deleted)").to_string();
    let mut claimed = vec![false; maps.len()];
    for (i, m) in maps.iter().enumerate() {
        let guest_ram = !layout.guest_ram.is_empty() && m.path.starts_with(&layout.guest_ram);
        let jit = (m.path.is_empty() && m.perms.starts_with("rwx"))
            || m.path.starts_with("/memfd:tcg-jit");
        let boot = layout.boot_images.iter().any(|(p, _)| *p == file(m));
        if guest_ram {
            split.guest_ram += m.pss;
        } else if jit {
            split.translation_cache += m.pss;
        } else if boot {
            split.boot_images += m.pss;
        } else {
            continue;
        }
        claimed[i] = true;
    }
    // A boot image QEMU does not map is in a buffer of its own: the anonymous mapping closest
    // to its length, within what the boot protocol leaves out of it.
    for (path, len) in &layout.boot_images {
        if maps.iter().any(|m| file(m) == *path) {
            continue;
        }
        let fits = |m: &Mapping| {
            m.path.is_empty()
                && m.perms.starts_with("rw-")
                && m.size + SETUP_MAX >= *len
                && m.size <= len + 2 * PAGE
        };
        let closest = (0..maps.len())
            .filter(|&i| !claimed[i] && fits(&maps[i]))
            .min_by_key(|&i| maps[i].size.abs_diff(*len));
        if let Some(i) = closest {
            claimed[i] = true;
            split.boot_images += maps[i].pss;
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
    fn a_vmms_pss_is_split_by_what_its_mappings_hold() {
        let smaps = "\
5600-5700 r-xp 00000000 08:01 12 /usr/bin/qemu-system-x86_64
Size:  1024 kB
Pss:    300 kB
Pss_Anon: 0 kB
7f00-7f80 rw-s 00000000 00:01 6413                       /memfd:memory-backend-memfd (deleted)
Size: 131072 kB
Pss:   40000 kB
7e00000000-7e40000000 rwxp 00000000 00:00 0
Pss:   30000 kB
7f90-7fa0 rw-p 00000000 00:00 0
Pss:    700 kB
7fa0-8fa0 rw-p 00000000 08:01 99 /var/cache/cvm/kernels/k/vmlinux
Pss:   20000 kB
9000-9800 r--p 00000000 08:01 98 /var/cache/cvm/initramfs/i.cpio
Pss:    500 kB
";
        let layout = VmmLayout {
            guest_ram: "/memfd:memory-backend-memfd".into(),
            boot_images: vec![
                ("/var/cache/cvm/kernels/k/vmlinux".into(), 60 << 20),
                ("/var/cache/cvm/initramfs/i.cpio".into(), 2 << 10),
            ],
        };
        let split = parse_vmm_split(smaps, &layout);
        assert_eq!(split.total, 91_500 * 1024);
        assert_eq!(split.guest_ram, 40_000 * 1024);
        assert_eq!(split.translation_cache, 30_000 * 1024);
        assert_eq!(split.boot_images, 20_500 * 1024);
        assert_eq!(split.own(), 1_000 * 1024);
        assert_eq!(split.vmm(), 51_500 * 1024);
        let bare = parse_vmm_split(smaps, &VmmLayout::default());
        assert_eq!((bare.guest_ram, bare.boot_images), (0, 0));
        // Pss_Anon and friends are breakdowns of Pss, not more of it.
        assert_eq!(parse_pss_kib("Pss_Anon: 5 kB"), None);
    }

    /// A bzImage is read, not mapped: the anonymous buffer of about its length (less its setup
    /// sectors) is QEMU's copy, and the closest such buffer wins.
    #[test]
    fn an_unmapped_kernel_is_the_anonymous_buffer_of_its_length() {
        let len: u64 = 8_249_344;
        let kernel_buffer = (len - 20 * 512).div_ceil(4096) * 4096;
        let smaps = format!(
            "1000-{:x} rw-p 00000000 00:00 0\nPss: 8000 kB\n\
             a000000-{:x} rw-p 00000000 00:00 0\nPss: 900 kB\n\
             c000000-c001000 rw-p 00000000 00:00 0\nPss: 4 kB\n",
            0x1000 + kernel_buffer,
            0xa000000 + len + 64 * 4096,
        );
        let layout = VmmLayout {
            guest_ram: String::new(),
            boot_images: vec![("/boot/vmlinuz".into(), len)],
        };
        let split = parse_vmm_split(&smaps, &layout);
        assert_eq!(split.boot_images, 8000 * 1024);
        assert_eq!(split.own(), 904 * 1024);
    }

    #[test]
    fn own_pss_is_positive() {
        assert!(pss_bytes(std::process::id()).unwrap() > 0);
        assert!(mem_available().unwrap() > 0);
    }
}
