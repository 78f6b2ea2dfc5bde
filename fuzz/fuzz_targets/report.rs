//! `cvm report` over any rows the samples reader accepts: summary, Markdown, terminal table, chart
//! plan, stack diagram, HTML.
//! The checks live in `fuzz/checks.rs`, shared with the corpus replay in `tests/fuzz_corpus.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::report(data));
