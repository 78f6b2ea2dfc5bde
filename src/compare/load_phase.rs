//! The HTTP load phase of one run: the load client on its own CPUs, the instance's peak memory
//! sampled alongside, and the server's own request count read before and after, so the client's
//! count is checked against it before any figure is recorded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cvm_proto::metric::Metric;

use super::runner::{RunEnd, Runner};
use crate::backend::Instance;
use crate::load::http::{self as http_load, HttpLoad};
use crate::measure::startup;
use crate::results::{Phase, ResultsError};
use crate::scenario::Readiness;
use crate::usage::memory;

/// How often memory is sampled during a load phase (for `memory_pss_peak`).
const PEAK_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

impl Runner<'_> {
    /// The HTTP load phase, with peak memory sampled alongside and the server's own request
    /// count read before and after (the load generator's count is checked against it).
    pub(super) fn run_load(
        &mut self,
        instance: &dyn Instance,
        timeline: &mut startup::Timeline,
        iteration: u32,
        phase: Phase,
    ) -> Result<RunEnd, ResultsError> {
        let Some(spec) = &self.scenario.load else {
            return Ok(RunEnd::Measured);
        };
        let port = match self.scenario.readiness {
            Readiness::Http { port, .. } | Readiness::Tcp { port } => port,
            Readiness::Marker => {
                return Ok(RunEnd::Failed("a load phase needs a readiness port".into()))
            }
        };
        let Some(addr) = instance.endpoint(port) else {
            return Ok(RunEnd::Failed(format!(
                "the instance has no host endpoint for port {port}"
            )));
        };
        let load = HttpLoad {
            threads: *spec.client_threads.get_ref(),
            rate: spec.rate.as_ref().map(|r| *r.get_ref()),
            cpus: self.client_cpus.clone(),
            ..HttpLoad::closed(
                addr,
                &spec.path,
                *spec.connections.get_ref(),
                Duration::from_secs_f64(*spec.duration_s.get_ref()),
            )
        };
        let is_cvm_http = self
            .scenario
            .workload
            .applet
            .as_ref()
            .is_some_and(|a| a.get_ref() == "http");
        let served_before = match self.served_now(addr, is_cvm_http) {
            Ok(n) => n,
            Err(reason) => return Ok(RunEnd::Failed(reason)),
        };
        let pids = instance.host_pids();
        // A supervisor measured apart is resident throughout (the one resident-process rule).
        let apart = instance.supervisor().apart();
        let done = AtomicBool::new(false);
        let (result, peak) = std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                let mut peak = 0;
                while !done.load(Ordering::SeqCst) {
                    peak = peak.max(memory::pss_total(&pids) + apart);
                    std::thread::sleep(PEAK_SAMPLE_INTERVAL);
                }
                peak
            });
            let result = http_load::run(&load, self.interrupted);
            done.store(true, Ordering::SeqCst);
            (result, sampler.join().unwrap_or(0))
        });
        // A server that died under load makes the figures meaningless: fail before recording.
        startup::drain(instance, timeline);
        if let Some((exit, _)) = timeline.exit {
            return Ok(RunEnd::Failed(format!(
                "the workload ended with {exit} during the load phase"
            )));
        }
        let r = match result {
            Ok(r) => r,
            Err(e) => return Ok(RunEnd::Failed(format!("load phase: {e}"))),
        };
        // Counts that disagree make the figures untrustworthy: fail before recording them.
        let served_after = match self.served_now(addr, is_cvm_http) {
            Ok(n) => n,
            Err(reason) => return Ok(RunEnd::Failed(reason)),
        };
        // An app's count query is counted by its server once between the two reads; cvm's
        // http applet answers its count apart from the requests it counts.
        let query = u64::from(!is_cvm_http);
        let served = served_before
            .zip(served_after)
            .map(|(before, after)| after.saturating_sub(before).saturating_sub(query));
        if let Some(served) = served {
            if let Some(reason) = count_mismatch(
                served,
                r.requests,
                u64::from(load.connections) + timeline.probe_unanswered,
                self.exact_server_count(),
            ) {
                return Ok(RunEnd::Failed(reason));
            }
        }
        let open_loop = load.rate.is_some();
        self.record_load(&r, open_loop, peak, served, iteration, phase)?;
        match spec.rates.as_ref() {
            Some(rates) => {
                let rates = rates.get_ref().clone();
                self.run_sweep(
                    instance,
                    timeline,
                    &load,
                    &rates,
                    is_cvm_http,
                    iteration,
                    phase,
                )
            }
            None => Ok(RunEnd::Measured),
        }
    }
}

impl Runner<'_> {
    /// The server's own request count now: cvm's http applet's, or an app's
    /// `[app.server_count]` (nginx's `stub_status`); `None` for a server that keeps none.
    fn served_now(&self, addr: SocketAddr, is_cvm_http: bool) -> Result<Option<u64>, String> {
        if is_cvm_http {
            return Ok(http_load::server_count(addr));
        }
        self.app_server_count(addr).transpose()
    }

    /// The main load phase's figures; `http_unanswered` only for an open loop (a closed loop
    /// has no schedule to leave unanswered).
    fn record_load(
        &mut self,
        r: &http_load::HttpLoadResult,
        open_loop: bool,
        peak: u64,
        served: Option<u64>,
        iteration: u32,
        phase: Phase,
    ) -> Result<(), ResultsError> {
        let mut figures = vec![
            (Metric::HttpRps, r.rps()),
            (Metric::HttpRequests, r.requests as f64),
            (Metric::HttpErrors, r.errors as f64),
        ];
        if open_loop {
            figures.push((Metric::HttpUnanswered, r.unanswered as f64));
        }
        for (metric, d) in [
            (Metric::HttpLatencyP50, r.latency_p50),
            (Metric::HttpLatencyP90, r.latency_p90),
            (Metric::HttpLatencyP99, r.latency_p99),
            (Metric::HttpLatencyMax, r.latency_max),
        ] {
            figures.push((metric, d.as_secs_f64()));
        }
        figures.push((Metric::LoadClientCpu, r.client_cpu_share()));
        if peak > 0 {
            figures.push((Metric::MemoryPssPeak, peak as f64));
        }
        if let Some(served) = served {
            figures.push((Metric::HttpServerRequests, served as f64));
        }
        for (metric, value) in figures {
            self.sample(iteration, phase, metric, value)?;
        }
        Ok(())
    }
}

/// Why the server's and the client's counts of one load phase disagree, if they do beyond what
/// the cut-off explains: each connection may have one request in flight when the client's clock
/// runs out, which the server answers (and counts) but the client does not. A client that counts
/// more than the server served is always wrong. A server that served more is wrong too where
/// nothing but the client can reach it during the phase (`exact`); behind QEMU's user network
/// it is not: a readiness probe that gave up while the guest's network was still coming up
/// leaves its request inside QEMU, which delivers it (counted) seconds later, during the load.
///
/// `allowed` is the connections (each may have one request in flight at the deadline) plus the
/// readiness probe requests that went out unanswered (a slow server serves them later).
pub(super) fn count_mismatch(
    served: u64,
    counted: u64,
    allowed: u64,
    exact: bool,
) -> Option<String> {
    if served < counted {
        return Some(format!(
            "the client counted {counted} responses during the load phase but the server served \
             only {served}: the client counted responses that were never sent"
        ));
    }
    let gap = served - counted;
    (exact && gap > allowed).then(|| {
        format!(
            "the server served {served} requests during the load phase and the client counted \
             {counted}: they differ by {gap}, more than the {allowed} that connections still in \
             flight at the deadline and unanswered readiness probes explain"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_may_differ_by_the_requests_in_flight_and_no_more() {
        assert_eq!(count_mismatch(1004, 1000, 4, true), None);
        assert_eq!(count_mismatch(1000, 1000, 4, true), None);
        let too_many = count_mismatch(1005, 1000, 4, true).unwrap();
        assert!(
            too_many.contains("1005") && too_many.contains("differ by 5"),
            "{too_many}"
        );
        // A client that counts more than the server served is as wrong as one that counts less.
        assert!(count_mismatch(990, 1000, 4, true).is_some());
        // Behind a user-mode network, late probe requests may add to the server's count, but
        // a client that counted more than was served is still caught.
        assert_eq!(count_mismatch(1010, 1000, 4, false), None);
        assert!(count_mismatch(990, 1000, 4, false).is_some());
    }
}
