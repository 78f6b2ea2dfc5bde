//! The scenario parser (`cvm compare --scenario FILE`): never panics, and every error points
//! inside the text.
//! The checks live in `fuzz/checks.rs`, shared with the corpus replay in `tests/fuzz_corpus.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::scenario(data));
