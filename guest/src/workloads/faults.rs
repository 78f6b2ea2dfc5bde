//! Misbehaving workloads for the host's fault handling: one that dies (`crash`) and one that
//! never becomes ready (`never-ready`), so tests can check that cvm reports a failed run
//! clearly and tears the instance down instead of hanging.

use std::ffi::OsString;
use std::time::Duration;

use cvm_proto::applet::Applet as AppletName;

use crate::markers::Markers;
use crate::{signals, AppletResult, Failure};

/// `cvm-guest crash --help`.
pub const CRASH_USAGE: &str = "usage: cvm-guest crash [--after-ms MS] [--ready]\n\n\
     Exits with code 3 after MS milliseconds (default 0), writing CVM:ready first only with --ready.\n";

/// `cvm-guest never-ready --help`.
pub const NEVER_READY_USAGE: &str = "usage: cvm-guest never-ready\n\n\
     Never writes CVM:ready; sleeps until SIGTERM or SIGINT and exits 0.\n";

/// The code `crash` exits with, distinct from the usage (2) and runtime (1) failures.
pub const CRASH_EXIT_CODE: i32 = 3;

/// `crash`.
pub fn crash(markers: &Markers, argv: &[OsString]) -> AppletResult {
    let parsed = AppletName::Crash.parse(argv)?;
    let after_ms: u64 = parsed.number("after-ms", 0)?;
    if parsed.switch("ready") {
        markers.ready();
    }
    if after_ms > 0 {
        std::thread::sleep(Duration::from_millis(after_ms));
    }
    Ok(CRASH_EXIT_CODE)
}

/// `never-ready`.
pub fn never_ready(_markers: &Markers, argv: &[OsString]) -> AppletResult {
    AppletName::NeverReady.parse(argv)?;
    let stop = signals::block_termination().map_err(Failure::Runtime)?;
    signals::wait(&stop).map_err(Failure::Runtime)?;
    Ok(0)
}
