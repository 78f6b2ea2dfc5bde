//! `hello`: announce readiness and exit.
//!
//! This is the startup floor that every backend is compared with, timed against a bare
//! fork+exec, so without options it does nothing beyond the marker write: no allocation, no
//! setup. `--delay-ms MS` waits before the marker: a known, real startup cost, with which a
//! regression check (`cvm diff`) is shown to find what it should.

use std::ffi::OsString;
use std::time::Duration;

use crate::markers::Markers;
use cvm_proto::applet::{Applet as AppletName, HELLO_DELAY_OPTION};

use crate::AppletResult;

/// `cvm-guest hello --help`.
pub const USAGE: &str = "usage: cvm-guest hello [--delay-ms MS]\n\n\
     Waits MS milliseconds (default 0), writes CVM:ready and exits 0.\n";

/// Runs the applet.
pub fn run(markers: &Markers, argv: &[OsString]) -> AppletResult {
    if !argv.is_empty() {
        let delay_ms: u64 = AppletName::Hello
            .parse(argv)?
            .number(HELLO_DELAY_OPTION, 0)?;
        if delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
    }
    markers.ready();
    Ok(0)
}
