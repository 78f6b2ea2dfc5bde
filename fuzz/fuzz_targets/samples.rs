//! The samples.csv reader behind `cvm report`: never panics, and the rows it accepts survive a
//! write/read round trip.
//! The checks live in `fuzz/checks.rs`, shared with the corpus replay in `tests/fuzz_corpus.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::samples(data));
