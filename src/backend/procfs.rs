//! What `/proc` says of the host's processes, for the scans that find a process cvm did not
//! start itself by what it is (a runtime's shim or conmon, a daemon's containerd, a socket's
//! holder, a network helper): every PID, a process's name and its parent.

use std::path::PathBuf;

/// Every process visible in `/proc`: its PID and its `/proc/<pid>` directory.
pub fn processes() -> impl Iterator<Item = (u32, PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
}

/// A process's command name (`/proc/<pid>/comm`, at most 15 bytes), trimmed; empty once it
/// has gone.
pub fn name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

/// The parent of `pid`, from `/proc/<pid>/stat` (the field after the parenthesised name, which
/// may itself hold spaces and parentheses).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_past_a_name_with_spaces_and_parentheses() {
        assert_eq!(
            parent_pid(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
        assert_eq!(parent_pid(u32::MAX), None);
    }

    #[test]
    fn this_process_is_listed_with_its_name() {
        let me = std::process::id();
        assert!(processes().any(|(pid, dir)| pid == me && dir.ends_with(me.to_string())));
        assert!(!name(me).is_empty());
        assert_eq!(name(u32::MAX), "");
    }
}
