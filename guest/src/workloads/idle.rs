//! `idle`: a process that is ready and does nothing.
//!
//! It gives the memory and density scenarios the cost of an instance itself, with the smallest
//! possible workload inside it.

use std::ffi::OsString;

use crate::markers::Markers;
use cvm_proto::applet::Applet as AppletName;

use crate::{signals, AppletResult, Failure};

/// `cvm-guest idle --help`.
pub const USAGE: &str =
    "usage: cvm-guest idle\n\nWrites CVM:ready, then sleeps until SIGTERM or SIGINT and exits 0.\n";

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    AppletName::Idle.parse(argv)?;
    let stop = signals::block_termination().map_err(Failure::Runtime)?;
    markers.ready();
    signals::wait(&stop).map_err(Failure::Runtime)?;
    Ok(0)
}
