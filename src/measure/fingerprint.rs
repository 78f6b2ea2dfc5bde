//! Reads the host fingerprint ([`HostFingerprint`]) from `/proc` and `/sys`. Every probe maps
//! "absent" to an empty field: a guest without cpufreq or a kernel without KSM is a host
//! like any other. The paths are read under a root so tests can give a fake tree.

use std::path::Path;

use crate::results::HostFingerprint;

/// Reads the running host's fingerprint; `cgroup_mode` and `cpu_model` come from the probes
/// the environment already has.
pub fn collect(cpu_model: &str, cgroup_mode: &str) -> HostFingerprint {
    let mut f = read_from(Path::new("/"));
    f.cpu_model = cpu_model.to_string();
    f.cgroup_mode = cgroup_mode.to_string();
    f
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path.trim_start_matches('/')))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The 1-minute load average (`/proc/loadavg`'s first field).
pub fn load_average() -> Option<f64> {
    read(Path::new("/"), "/proc/loadavg")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The word in brackets of a sysfs selection (`always [madvise] never` → `madvise`).
fn selected(choices: &str) -> String {
    choices
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .unwrap_or(choices)
        .to_string()
}

/// Counts the CPUs in a kernel CPU list (`0-3,6`).
fn cpu_list_len(list: &str) -> u32 {
    list.split(',')
        .filter(|r| !r.trim().is_empty())
        .map(|r| match r.trim().split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u32::from(r.trim().parse::<u32>().is_ok()),
        })
        .sum()
}

/// `on` when any cgroup or cgroup2 mount in `mounts` (the text of `/proc/mounts`) has the
/// `favordynmods` option: the lock it changes is one for every hierarchy.
fn favordynmods(mounts: &str) -> String {
    let on = mounts.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        matches!(f.get(2), Some(&"cgroup" | &"cgroup2"))
            && f.get(3)
                .is_some_and(|o| o.split(',').any(|o| o == "favordynmods"))
    });
    if mounts.is_empty() {
        String::new()
    } else if on {
        "on".into()
    } else {
        "off".into()
    }
}

/// [`favordynmods`] of the running host, without reading the rest of the fingerprint.
pub fn cgroup_favordynmods() -> String {
    favordynmods(&read(Path::new("/"), "/proc/mounts"))
}

/// Everything but the CPU model and the cgroup mode, read under `root`.
pub fn read_from(root: &Path) -> HostFingerprint {
    let turbo = {
        let no_turbo = read(root, "/sys/devices/system/cpu/intel_pstate/no_turbo");
        let boost = read(root, "/sys/devices/system/cpu/cpufreq/boost");
        match (no_turbo.as_str(), boost.as_str()) {
            ("0", _) | (_, "1") => "on".to_string(),
            ("1", _) | (_, "0") => "off".to_string(),
            _ => String::new(),
        }
    };
    let mut mitigations = std::collections::BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(root.join("sys/devices/system/cpu/vulnerabilities")) {
        for e in entries.flatten() {
            let status = std::fs::read_to_string(e.path()).unwrap_or_default();
            mitigations.insert(
                e.file_name().to_string_lossy().into_owned(),
                status.trim().to_string(),
            );
        }
    }
    let kvm = if root.join("dev/kvm").exists() {
        "/dev/kvm present"
    } else {
        "/dev/kvm absent"
    };
    HostFingerprint {
        cpu_model: String::new(),
        cpu_count: cpu_list_len(&read(root, "/sys/devices/system/cpu/online")),
        smt: read(root, "/sys/devices/system/cpu/smt/control"),
        governor: read(
            root,
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
        ),
        turbo,
        thp: selected(&read(root, "/sys/kernel/mm/transparent_hugepage/enabled")),
        ksm: read(root, "/sys/kernel/mm/ksm/run"),
        kernel_cmdline: read(root, "/proc/cmdline"),
        mitigations,
        cgroup_mode: String::new(),
        cgroup_favordynmods: favordynmods(&read(root, "/proc/mounts")),
        accelerator: kvm.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_a_fake_tree_and_leaves_absent_settings_empty() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "sys/devices/system/cpu/online", "0-3,6\n");
        put(r, "sys/devices/system/cpu/smt/control", "on\n");
        put(r, "sys/devices/system/cpu/intel_pstate/no_turbo", "1\n");
        put(
            r,
            "sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never\n",
        );
        put(
            r,
            "sys/devices/system/cpu/vulnerabilities/mds",
            "Mitigation: Clear CPU buffers\n",
        );
        put(r, "proc/cmdline", "quiet mitigations=off\n");
        let f = read_from(r);
        assert_eq!(f.cpu_count, 5);
        assert_eq!(f.smt, "on");
        assert_eq!(f.turbo, "off");
        assert_eq!(f.thp, "madvise");
        assert_eq!(f.kernel_cmdline, "quiet mitigations=off");
        assert_eq!(f.mitigations["mds"], "Mitigation: Clear CPU buffers");
        assert_eq!(f.governor, "");
        assert_eq!(f.ksm, "");
        assert_eq!(f.accelerator, "/dev/kvm absent");
        assert_eq!(f.cgroup_favordynmods, "");
    }

    #[test]
    fn favordynmods_is_read_from_any_cgroup_mount() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(favordynmods(hybrid), "off");
        let on = hybrid.replace("cgroup2 rw,relatime", "cgroup2 rw,relatime,favordynmods");
        assert_eq!(favordynmods(&on), "on");
        let v1 = "cgroup /sys/fs/cgroup/cpu cgroup rw,favordynmods,cpu 0 0\n";
        assert_eq!(favordynmods(v1), "on");
        // The word elsewhere on a line (a mount point) is not the option.
        let elsewhere = "tmpfs /favordynmods tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        assert_eq!(favordynmods(elsewhere), "off");
    }

    #[test]
    fn this_host_has_a_cpu_count_and_a_command_line() {
        let f = collect("cpu", "v2");
        assert!(f.cpu_count >= 1, "{f:?}");
        assert!(!f.kernel_cmdline.is_empty(), "{f:?}");
        assert_eq!(f.cgroup_mode, "v2");
    }
}
