//! Exit codes, as documented in docs/results.md, and the error type that carries one to `main`.

/// Everything asked for was done.
pub const OK: u8 = 0;
/// At least one run or backend failed; what was measured is still written.
pub const RUN_FAILED: u8 = 1;
/// Bad input: a flag, a scenario file, an unknown backend or scenario.
pub const USAGE: u8 = 2;
/// Stopped by SIGINT or SIGTERM; instances were torn down and samples kept.
pub const INTERRUPTED: u8 = 130;

/// An error on its way to `main`, with the exit code that describes it.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: USAGE,
            error: error.into(),
        }
    }
    pub fn run(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: RUN_FAILED,
            error: error.into(),
        }
    }
}

/// `?` on a plain error inside a command means the run failed (exit 1); bad input is mapped to
/// [`Failure::usage`] explicitly where it is detected.
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::run(error)
    }
}

impl From<crate::results::ResultsError> for Failure {
    fn from(e: crate::results::ResultsError) -> Self {
        Failure::run(e)
    }
}

impl From<crate::report::ReportError> for Failure {
    fn from(e: crate::report::ReportError) -> Self {
        Failure::run(e)
    }
}
