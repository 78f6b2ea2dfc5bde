//! `hello`: announce readiness and exit.
//!
//! This is the startup floor that every backend is compared with, timed against a bare
//! fork+exec, so it does nothing beyond the marker write: no allocation, no setup.

use std::ffi::OsString;

use crate::markers::Markers;
use cvm_proto::applet::Applet as AppletName;

use crate::AppletResult;

/// `cvm-guest hello --help`.
pub const USAGE: &str = "usage: cvm-guest hello\n\nWrites CVM:ready and exits 0.\n";

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    if !argv.is_empty() {
        AppletName::Hello.parse(argv)?;
    }
    markers.ready();
    Ok(0)
}
