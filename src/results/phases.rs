//! Startup phase names as recorded in `phase.<name>` metrics, and the order they occur in.

/// The order phase points occur in, for display (unknown names sort last).
pub const PHASE_ORDER: &[&str] = &["spawn", "firmware", "kernel", "init", "workload", "ready"];

pub fn phase_rank(name: &str) -> usize {
    PHASE_ORDER
        .iter()
        .position(|p| *p == name)
        .unwrap_or(PHASE_ORDER.len())
}
