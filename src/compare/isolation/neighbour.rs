//! Performance isolation: the victim at a fixed open-loop rate, alone and beside one aggressor
//! instance of each kind. The rate is a share of what the victim sustained alone in a short
//! closed-loop calibration (recorded), so every backend is loaded alike relative to its own
//! capacity; the victim's p99 is taken from each request's intended send time.

use std::net::SocketAddr;
use std::time::Duration;

use cvm_proto::isolation::Aggressor;
use cvm_proto::metric::Metric;

use super::{launch_role, Step, StepError, Victim};
use crate::backend::{Instance, Prepared};
use crate::compare::runner::Runner;
use crate::load::http::{self as http_load, HttpLoad, HttpLoadResult};
use crate::measure::startup;
use crate::results::Phase;
use crate::scenario::Readiness;

/// The victim alone: the rate offered to it, and its p99 there.
#[derive(Debug, Clone, Copy)]
pub(super) struct Alone {
    pub offered: f64,
    pub p99: f64,
}

/// One load phase against the victim: closed (`rate` none) or open.
fn load(
    runner: &Runner,
    addr: SocketAddr,
    rate: Option<f64>,
    seconds: f64,
) -> Step<HttpLoadResult> {
    let spec = runner
        .scenario
        .load
        .as_ref()
        .ok_or_else(|| StepError::Run("the isolation scenario has no [load]".into()))?;
    let l = HttpLoad {
        threads: *spec.client_threads.get_ref(),
        rate,
        cpus: runner.client_cpus.clone(),
        ..HttpLoad::closed(
            addr,
            &spec.path,
            *spec.connections.get_ref(),
            Duration::from_secs_f64(seconds),
        )
    };
    http_load::run(&l, runner.interrupted).map_err(|e| StepError::Run(format!("load phase: {e}")))
}

fn duration(runner: &Runner) -> f64 {
    runner
        .scenario
        .load
        .as_ref()
        .map_or(3.0, |l| *l.duration_s.get_ref())
}

/// Calibration, then the victim alone at the offered rate.
pub(super) fn alone(
    runner: &mut Runner,
    victim: &Victim,
    calibration_s: f64,
    share: f64,
    (iteration, phase): (u32, Phase),
) -> Step<Alone> {
    let calibrated = load(runner, victim.addr, None, calibration_s)?;
    let sustained = calibrated.rps();
    if sustained < 1.0 {
        return Err(StepError::Run(format!(
            "the victim served {sustained:.1} requests/s alone in its calibration: too little to load"
        )));
    }
    let offered = (sustained * share).max(1.0);
    let note = format!(
        "closed loop, {} s, {} requests",
        calibration_s, calibrated.requests
    );
    runner.record(
        iteration,
        phase,
        Metric::NoisyCalibratedRate.name(),
        sustained,
        "1/s",
        &note,
    )?;
    let note = format!("{:.0} % of the calibrated rate, open loop", share * 100.0);
    runner.record(
        iteration,
        phase,
        Metric::NoisyOfferedRate.name(),
        offered,
        "1/s",
        &note,
    )?;
    let r = load(runner, victim.addr, Some(offered), duration(runner))?;
    let p99 = r.latency_p99.as_secs_f64();
    runner.sample(iteration, phase, Metric::NoisyAloneP99, p99)?;
    runner.sample(
        iteration,
        phase,
        Metric::NoisyAloneRateRatio,
        r.rps() / offered,
    )?;
    Ok(Alone { offered, p99 })
}

/// The victim beside one aggressor of `kind`, launched from `prepared`.
pub(super) fn beside(
    runner: &mut Runner,
    victim: &mut Victim,
    (kind, prepared, number): (Aggressor, &dyn Prepared, u32),
    alone: Alone,
    (iteration, phase): (u32, Phase),
) -> Step<()> {
    let mut aggressor = launch_role(runner, prepared, number)?;
    let measured = disturbed(runner, victim.addr, aggressor.as_mut(), kind, alone.offered);
    let torn = aggressor.teardown();
    let Disturbed {
        load: r,
        work,
        ended_early,
    } = measured?;
    torn.map_err(|e| {
        StepError::Run(format!(
            "{kind} aggressor's teardown: {:#}",
            anyhow::Error::new(e)
        ))
    })?;
    victim.check_alive(&format!("beside the {kind} aggressor"))?;
    let p99 = r.latency_p99.as_secs_f64();
    let mut note = format!(
        "victim p99 {:.2} ms beside the {kind} aggressor, {:.2} ms alone",
        p99 * 1e3,
        alone.p99 * 1e3
    );
    if let Some(early) = &ended_early {
        note.push_str(&format!("; {early}"));
    }
    let ratio = if alone.p99 > 0.0 {
        p99 / alone.p99
    } else {
        f64::NAN
    };
    runner.record(iteration, phase, kind.p99_ratio().name(), ratio, "1", &note)?;
    let note = format!("{:.0} of {:.0} requests/s offered", r.rps(), alone.offered);
    runner.record(
        iteration,
        phase,
        kind.rate_ratio().name(),
        r.rps() / alone.offered,
        "1",
        &note,
    )?;
    if let Some(work) = work {
        runner.sample(iteration, phase, kind.work(), work)?;
    }
    Ok(())
}

/// What the load phase beside an aggressor gave: the victim's figures, the aggressor's own
/// report of its work, and how the aggressor ended if it did not finish its time.
struct Disturbed {
    load: HttpLoadResult,
    work: Option<f64>,
    ended_early: Option<String>,
}

/// The load phase with the aggressor running. An aggressor whose whole instance falls over
/// (gVisor's Sentry at its pids limit under the fork storm) is an outcome, not a failed run:
/// the victim's phase was measured, and its figures say the aggressor stopped early.
fn disturbed(
    runner: &Runner,
    addr: SocketAddr,
    aggressor: &mut dyn Instance,
    kind: Aggressor,
    offered: f64,
) -> Step<Disturbed> {
    let what = format!("the {kind} aggressor");
    let mut timeline = startup::wait_ready(
        aggressor,
        &Readiness::Marker,
        runner.timeout,
        runner.interrupted,
    )
    .map_err(|e| StepError::Run(format!("{what}: {e}")))?;
    let r = load(runner, addr, Some(offered), duration(runner))?;
    let exit = startup::wait_exit(aggressor, &mut timeline, runner.timeout, runner.interrupted)
        .map_err(|e| StepError::Run(format!("{what}: {e}")))?;
    let work = timeline
        .results
        .iter()
        .find(|(m, _, _)| m == kind.work().name())
        .map(|(_, v, _)| *v);
    let ended_early = (!exit.success() || work.is_none())
        .then(|| format!("{what}'s instance ended with {exit} before its time"));
    Ok(Disturbed {
        load: r,
        work,
        ended_early,
    })
}
