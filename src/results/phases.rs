//! Startup phase names as recorded in `phase.<name>` metrics, in the order they occur.

use cvm_proto::metric::Phase;

/// Where a phase recorded as `name` sorts for display (names cvm does not know sort last).
pub fn phase_rank(name: &str) -> usize {
    Phase::from_name(name).map_or(Phase::ALL.len(), |p| p as usize)
}
