//! The one rule for tests that need something from the host (root, a tool, a daemon): shared by
//! the integration tests (`tests/common`), the runtime crate's tests and the library's unit tests,
//! so a skip means the same everywhere.

/// True when the prerequisite is `present`. Otherwise the test should return early, and this says
/// clearly that it was skipped; under `CVM_REQUIRE_HOST=1` (CI sets it) a missing prerequisite
/// fails the test instead.
pub fn host_has(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CVM_REQUIRE_HOST").is_ok_and(|v| v == "1") {
        panic!("CVM_REQUIRE_HOST=1 but this host lacks a prerequisite: {what}");
    }
    eprintln!("SKIPPED: {what} (set CVM_REQUIRE_HOST=1 to make this a failure)");
    false
}
