//! The host's tools as a run records them: the first line of a tool's version output, and the
//! version number inside it. Backends record the version of what they run with every sample,
//! the environment records every tool's, and `cvm doctor` shows them: one way to ask, used by
//! all three, and depending on no other module of cvm.

use std::process::Command;

/// The first line of a tool's version output, with the leading tool name kept (it is short).
pub fn tool_version(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// The version number inside a tool's version line ("QEMU emulator version 7.2.19 (...)").
pub fn version_number(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .map(|w| w.trim_end_matches(',').to_string())
        .unwrap_or_else(|| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_are_extracted() {
        assert_eq!(
            version_number("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"),
            "7.2.19"
        );
        assert_eq!(version_number("runc version 1.1.5+ds1"), "1.1.5+ds1");
        assert_eq!(version_number("crun version 1.8.1"), "1.8.1");
        assert_eq!(version_number("weird"), "weird");
    }
}
