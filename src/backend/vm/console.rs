//! The guest's serial console (QEMU's stdout) and QEMU's own stderr, read on their own threads
//! into the instance's events.
//!
//! Phase points come from the console: `firmware` (vm-classic only) at the first byte, SeaBIOS's
//! banner; `kernel` at the kernel's `Linux version` banner; then the guest's markers, which init
//! and the workload write to the same console. Every other line is kept as output for error
//! messages.

use std::io::{self, Read};
use std::sync::mpsc::Sender;
use std::time::Instant;

use cvm_proto::Marker;

use crate::backend::events::{spawn_labelled_output_reader, Event, OutputLine};
use crate::backend::output::{with_cut, OutputBudget, MAX_LINE};
use cvm_proto::metric::Phase;

/// Reads the guest's serial console (QEMU's stdout): phase points, markers, and other lines
/// kept for error messages. Lines are stamped when their newline arrives, as markers from a
/// pipe are; the `firmware` and `kernel` points are stamped at their first byte.
pub(super) fn spawn_console_reader<R: Read + Send + 'static>(
    mut source: R,
    tx: Sender<Event>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("cvm-console".into())
        .spawn(move || {
            let mut parser = ConsoleParser::default();
            let mut budget = OutputBudget::default();
            let mut buf = [0u8; 4096];
            loop {
                let n = match source.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let at = Instant::now();
                for event in parser.feed(&buf[..n], at) {
                    let sent = match event {
                        Event::Output(line) => budget.send(&tx, line.into_text()).is_ok(),
                        other => tx.send(other).is_ok(),
                    };
                    if !sent {
                        return;
                    }
                }
            }
            let _ = budget.report_dropped(&tx);
        })?;
    Ok(())
}

/// The console's state machine, separate from the thread so it can be tested.
#[derive(Default)]
struct ConsoleParser {
    line: Vec<u8>,
    /// Where each read's bytes start in `line`, and when they arrived: a line can span reads
    /// that arrive seconds apart (vm-classic's loader prints `Probing EDD... ok`, then the
    /// kernel, decompressed much later, continues the same line with its banner).
    arrivals: Vec<(usize, Instant)>,
    /// When the very first byte arrived.
    first_byte: Option<Instant>,
    kernel_seen: bool,
    lines_before_kernel: usize,
    /// Bytes of the current line past [`MAX_LINE`], not kept.
    cut: usize,
}

/// The kernel's banner (`pr_notice`, printed at `loglevel=6`): kernel entry, where `firmware` ends.
const KERNEL_BANNER: &str = "Linux version ";

impl ConsoleParser {
    fn feed(&mut self, bytes: &[u8], at: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        if !bytes.is_empty() {
            self.first_byte.get_or_insert(at);
        }
        for &b in bytes {
            if self.arrivals.last().is_none_or(|(_, t)| *t != at) {
                self.arrivals.push((self.line.len(), at));
            }
            if b != b'\n' {
                if self.line.len() < MAX_LINE {
                    self.line.push(b);
                } else {
                    self.cut += 1;
                }
                continue;
            }
            self.finish_line(at, &mut events);
        }
        events
    }

    fn finish_line(&mut self, at: Instant, events: &mut Vec<Event>) {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        if !self.kernel_seen {
            if let Some(pos) = find_bytes(&self.line, KERNEL_BANNER.as_bytes()) {
                self.kernel_seen = true;
                let banner_at = self
                    .arrivals
                    .iter()
                    .rev()
                    .find(|(offset, _)| *offset <= pos)
                    .map_or(at, |(_, t)| *t);
                let first = self.first_byte.unwrap_or(banner_at);
                // Firmware (from `cont`) ends at kernel entry: the banner, or when the banner is
                // the first thing printed, its first byte. Whole lines before it are SeaBIOS's
                // and the loader's, still firmware.
                let kernel_entry = if self.lines_before_kernel > 0 {
                    banner_at
                } else {
                    first
                };
                events.push(Event::Phase(Phase::Firmware, kernel_entry));
            }
        }
        if !self.kernel_seen {
            self.lines_before_kernel += 1;
        }
        self.line.clear();
        self.arrivals.clear();
        let cut = std::mem::take(&mut self.cut);
        match Marker::parse(&text) {
            Some(m) => events.push(Event::Marker(m, at)),
            None => {
                let clean: String = text.trim().chars().filter(|c| !c.is_control()).collect();
                if !clean.is_empty() {
                    events.push(Event::Output(OutputLine::new(with_cut(&clean, cut))));
                }
            }
        }
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn spawn_stderr_reader<R: Read + Send + 'static>(
    source: R,
    tx: Sender<Event>,
) -> io::Result<()> {
    spawn_labelled_output_reader(source, tx, "qemu: ").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn console_parser_ends_firmware_at_the_kernel_banner_and_reads_markers() {
        let t0 = Instant::now();
        let t = |ms| t0 + Duration::from_millis(ms);
        let mut p = ConsoleParser::default();
        let mut ev = p.feed(b"\x1b[2JSeaBIOS (version 1.16)\r\nProbing EDD... ok", t(10));
        ev.extend(p.feed(b"\x1b[2J[    0.000000] Linux ", t(20)));
        ev.extend(p.feed(b"version 6.1.0\r\n", t(25)));
        ev.extend(p.feed(b"CVM:init\r\nCVM:ready\r\n", t(30)));
        let phases: Vec<(Phase, Instant)> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Phase(n, at) => Some((*n, *at)),
                _ => None,
            })
            .collect();
        assert_eq!(phases, vec![(Phase::Firmware, t(20))]);
        let markers: Vec<&Marker> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Marker(m, _) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(markers, vec![&Marker::Init, &Marker::Ready]);
        assert!(ev
            .iter()
            .any(|e| matches!(e, Event::Output(l) if l.text().starts_with("[2JSeaBIOS") || l.text().contains("SeaBIOS"))));
    }

    #[test]
    fn a_kernel_banner_first_ends_firmware_at_its_first_byte() {
        let t0 = Instant::now();
        let mut p = ConsoleParser::default();
        let mut ev = p.feed(b"[    0.000000] Linux ", t0);
        ev.extend(p.feed(b"version 6.1.0\r\n", t0 + Duration::from_millis(5)));
        assert!(matches!(ev[0], Event::Phase(Phase::Firmware, at) if at == t0));
        assert_eq!(
            ev.iter().filter(|e| matches!(e, Event::Phase(..))).count(),
            1
        );
    }
}
