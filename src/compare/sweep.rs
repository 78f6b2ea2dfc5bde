//! The rate sweep: after the main load phase, one open-loop phase per offered rate, each checked
//! like the main phase (a dead server or a count mismatch fails the run), recorded as
//! `rate.<N>.<figure>`.

use std::sync::atomic::Ordering;

use cvm_proto::metric::SweepFigure;

use super::load_phase::count_mismatch;
use super::runner::{RunEnd, Runner};
use crate::backend::Instance;
use crate::load::http::{self as http_load, HttpLoad};
use crate::measure::startup;
use crate::results::{Phase, ResultsError};

impl Runner<'_> {
    /// The rate sweep: one open-loop phase per offered rate, each checked like the main phase
    /// (a dead server or a count mismatch fails the run), recorded as `rate.<N>.<figure>`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_sweep(
        &mut self,
        instance: &dyn Instance,
        timeline: &mut startup::Timeline,
        base: &HttpLoad,
        rates: &[f64],
        is_cvm_http: bool,
        iteration: u32,
        phase: Phase,
    ) -> Result<RunEnd, ResultsError> {
        for &rate in rates {
            if self.interrupted.load(Ordering::SeqCst) {
                break;
            }
            let load = HttpLoad {
                rate: Some(rate),
                ..base.clone()
            };
            let before = is_cvm_http
                .then(|| http_load::server_count(load.addr))
                .flatten();
            let result = http_load::run(&load, self.interrupted);
            startup::drain(instance, timeline);
            if let Some((exit, _)) = timeline.exit {
                return Ok(RunEnd::Failed(format!(
                    "the workload ended with {exit} during the rate sweep at {rate}/s"
                )));
            }
            let r = match result {
                Ok(r) => r,
                Err(e) => return Ok(RunEnd::Failed(format!("rate sweep at {rate}/s: {e}"))),
            };
            if let (Some(before), Some(after)) = (before, http_load::server_count(load.addr)) {
                let served = after.saturating_sub(before);
                if let Some(reason) = count_mismatch(
                    served,
                    r.requests,
                    u64::from(load.connections) + timeline.probe_unanswered,
                    self.exact_server_count(),
                ) {
                    return Ok(RunEnd::Failed(format!("rate sweep at {rate}/s: {reason}")));
                }
            }
            for (figure, value) in [
                (SweepFigure::Rps, r.rps()),
                (SweepFigure::LatencyP50, r.latency_p50.as_secs_f64()),
                (SweepFigure::LatencyP99, r.latency_p99.as_secs_f64()),
                (SweepFigure::Unanswered, r.unanswered as f64),
            ] {
                let unit = figure.unit().symbol();
                self.record(iteration, phase, &figure.metric(rate), value, unit, "")?;
            }
        }
        Ok(RunEnd::Measured)
    }
}
