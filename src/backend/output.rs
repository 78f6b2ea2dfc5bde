//! A workload's output, bounded: what it prints is data kept to explain a failed run, and a
//! workload that prints without end (a server logging every request, tens of thousands of
//! lines a second under load, or a line that never ends) must not grow cvm's memory.
//!
//! - A line longer than [`MAX_LINE`] bytes is cut; the line kept says how many bytes went.
//! - At most [`MAX_UNREAD`] output lines of an instance wait unread in its event channel
//!   (nothing reads events during a load phase): each line sent holds a slot until the run
//!   takes it, and lines beyond are dropped and counted, the count sent as a line of its own
//!   once there is room again (or at the end of the output).

use std::io::{self, BufRead};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// The longest output line kept, in bytes.
pub const MAX_LINE: usize = 4096;
/// The most output lines of one instance waiting unread.
pub const MAX_UNREAD: usize = 1024;

/// One line of output; while unread, it holds one of its instance's [`MAX_UNREAD`] slots.
#[derive(Debug)]
pub struct OutputLine {
    text: String,
    _slot: Option<Slot>,
}

impl OutputLine {
    /// A line outside any budget (tests, lines made by cvm itself).
    pub fn new(text: impl Into<String>) -> OutputLine {
        OutputLine {
            text: text.into(),
            _slot: None,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text, giving the slot back.
    pub fn into_text(self) -> String {
        self.text
    }
}

impl Clone for OutputLine {
    /// A copy holds no slot: only the line sent counts against the budget.
    fn clone(&self) -> OutputLine {
        OutputLine::new(self.text.clone())
    }
}

impl PartialEq<str> for OutputLine {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

/// A taken slot, given back when its line is dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One instance's (one stream's) share of the event channel for output.
#[derive(Debug, Default)]
pub struct OutputBudget {
    unread: Arc<AtomicUsize>,
    dropped: u64,
}

/// The receiver is gone: the instance was dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl OutputBudget {
    /// Sends `text` (as the channel's event for an output line, `Event::Output`) if a slot is
    /// free, else counts it dropped.
    pub fn send<E: From<OutputLine>>(
        &mut self,
        tx: &Sender<E>,
        text: String,
    ) -> Result<(), Closed> {
        if self.unread.load(Ordering::SeqCst) >= MAX_UNREAD {
            self.dropped += 1;
            return Ok(());
        }
        self.report_dropped(tx)?;
        self.send_line(tx, text)
    }

    /// Sends the count of lines dropped so far, if any (at the end of the output).
    pub fn report_dropped<E: From<OutputLine>>(&mut self, tx: &Sender<E>) -> Result<(), Closed> {
        if self.dropped == 0 {
            return Ok(());
        }
        let note = format!(
            "[cvm: {} lines of output dropped: at most {MAX_UNREAD} wait unread]",
            self.dropped
        );
        self.dropped = 0;
        self.send_line(tx, note)
    }

    fn send_line<E: From<OutputLine>>(&self, tx: &Sender<E>, text: String) -> Result<(), Closed> {
        self.unread.fetch_add(1, Ordering::SeqCst);
        let line = OutputLine {
            text,
            _slot: Some(Slot(Arc::clone(&self.unread))),
        };
        tx.send(E::from(line)).map_err(|_| Closed)
    }

    #[cfg(test)]
    fn unread(&self) -> usize {
        self.unread.load(Ordering::SeqCst)
    }
}

/// Reads one line (without its newline) into `line`, keeping at most [`MAX_LINE`] bytes:
/// how many were cut, or `None` at the end of the input.
pub fn read_capped_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    line.clear();
    let mut cut = 0;
    let mut read_any = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(read_any.then_some(cut));
        }
        read_any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let content = &buf[..newline.unwrap_or(buf.len())];
        let room = MAX_LINE.saturating_sub(line.len()).min(content.len());
        line.extend_from_slice(&content[..room]);
        cut += content.len() - room;
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(cut));
        }
    }
}

/// A cut line's text, saying how much was cut.
pub fn with_cut(text: &str, cut: usize) -> String {
    if cut == 0 {
        text.to_string()
    } else {
        format!("{text} [cvm: {cut} more bytes cut]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::events::Event;

    #[test]
    fn a_long_line_is_cut_and_counted_and_the_next_is_whole() {
        let mut input = vec![b'x'; MAX_LINE + 100];
        input.extend_from_slice(b"\nnext\nlast");
        let mut reader = io::BufReader::with_capacity(64, input.as_slice());
        let mut line = Vec::new();
        assert_eq!(read_capped_line(&mut reader, &mut line).unwrap(), Some(100));
        assert_eq!(line.len(), MAX_LINE);
        assert_eq!(read_capped_line(&mut reader, &mut line).unwrap(), Some(0));
        assert_eq!(line, b"next");
        assert_eq!(read_capped_line(&mut reader, &mut line).unwrap(), Some(0));
        assert_eq!(line, b"last");
        assert_eq!(read_capped_line(&mut reader, &mut line).unwrap(), None);
        assert_eq!(with_cut("x", 100), "x [cvm: 100 more bytes cut]");
    }

    #[test]
    fn unread_lines_are_capped_and_the_dropped_ones_counted() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut budget = OutputBudget::default();
        for i in 0..MAX_UNREAD + 500 {
            budget.send(&tx, format!("request {i}")).unwrap();
        }
        assert_eq!(budget.unread(), MAX_UNREAD);
        // The run reads them all: the slots come back, and the next line brings the count.
        let read: Vec<Event> = rx.try_iter().collect();
        assert_eq!(read.len(), MAX_UNREAD);
        drop(read);
        assert_eq!(budget.unread(), 0);
        budget.send(&tx, "after".into()).unwrap();
        let texts: Vec<String> = rx
            .try_iter()
            .map(|e| match e {
                Event::Output(l) => l.into_text(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            texts,
            [
                format!("[cvm: 500 lines of output dropped: at most {MAX_UNREAD} wait unread]"),
                "after".to_string()
            ]
        );
        drop(rx);
        assert_eq!(budget.send(&tx, "gone".into()), Err(Closed));
    }
}
