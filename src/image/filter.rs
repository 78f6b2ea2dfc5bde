//! Running bytes through an external compressor or decompressor (xz, gzip, zstd from Debian's
//! packages): the kernel payload is unpacked and an initramfs optionally packed this way, so cvm
//! carries no compression libraries of its own.

use std::io::{self, Write};
use std::process::{Command, Output, Stdio};

/// Feeds `input` to `tool args` on its stdin and collects its stdout and exit status.
///
/// The input is written from a thread: a large input would otherwise fill both pipes and
/// deadlock. A tool may stop reading early (trailing bytes after a compressed stream), so a
/// broken pipe while feeding is not an error; callers judge the result by the status or by
/// what came out.
pub fn pipe_through(tool: &str, args: &[&str], input: &[u8]) -> io::Result<Output> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output();
    let _ = feeder.join();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_gzip_and_reports_a_missing_tool() {
        let data = vec![7u8; 300_000];
        let packed = pipe_through("gzip", &["-c"], &data).unwrap();
        assert!(packed.status.success() && packed.stdout.len() < data.len());
        let unpacked = pipe_through("gzip", &["-dc"], &packed.stdout).unwrap();
        assert_eq!(unpacked.stdout, data);
        assert!(pipe_through("no-such-tool-cvm", &[], b"x").is_err());
    }
}
