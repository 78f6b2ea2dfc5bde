//! The isolation experiment (`[isolation]`, the built-in `isolation` scenario): what a backend
//! protects, and how well, measured beside what it costs. Per backend and iteration, with the
//! scenario's workload as the victim (an HTTP server):
//!
//! 1. noisy neighbour ([`neighbour`]): a closed-loop calibration of the victim alone, then the
//!    victim at a share of that rate (open loop) alone and beside one aggressor instance of each
//!    kind, of the same backend, with the same limits, on the same CPUs ([`roles`]);
//! 2. the attack-surface audit, read from inside by the `audit` applet, with the host's side
//!    added: the seccomp filters of the process that carries the instance's system calls, and
//!    a VM's `-sandbox` ([`probes`]);
//! 3. the containment attempts of the `contain` applet, beside the running victim, with the
//!    host checking meanwhile that it can still start processes, that the neighbour answers and
//!    that its OOM killer fires nowhere else. Never on native: the attempts would run against
//!    the bare host ([`roles::containment_allowed`]), and the applet itself refuses to run
//!    anywhere but under an instance's PID 1.
//!
//! Every figure is a sample like any other (`noisy_*`, `audit_*`, `contain_*`), its evidence in
//! the sample's note, so summaries, reports, `cvm diff` and bounds files read them as usual.

mod host;
mod neighbour;
mod probes;
mod roles;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use cvm_proto::isolation::Probe;

use super::order::{BackendEnd, Plan};
use super::runner::Runner;
use crate::backend::{Backend, Instance, LaunchContext, Prepared};
use crate::image::Image;
use crate::measure::startup::{self, Timeline};
use crate::results::Phase;
use crate::results::ResultsError;
use crate::scenario::{BackendKind, IsolationSpec, Scenario};

/// The instance numbers of the roles (the victim is 0; aggressor `k` of the run's list is
/// `ROLE_AGGRESSOR + k`), so no two roles' resources share a name, even while one's removal
/// is still under way (Docker removes a `--rm` container after it has exited).
const ROLE_AGGRESSOR: u32 = 1;
const ROLE_AUDIT: u32 = 8;
const ROLE_CONTAIN: u32 = 9;

/// Why a step stopped: the run failed (recorded, the backend goes on), or recording failed.
#[derive(Debug)]
enum StepError {
    Run(String),
    Record(ResultsError),
}

impl From<ResultsError> for StepError {
    fn from(f: ResultsError) -> StepError {
        StepError::Record(f)
    }
}

type Step<T> = Result<T, StepError>;

/// Prepares the containment attempts from one of them on (after one that ended an instance).
type Restart<'a> = &'a dyn Fn(Probe) -> Step<Box<dyn Prepared>>;

/// The victim, running, and where the host reaches it.
struct Victim {
    instance: Box<dyn Instance>,
    timeline: Timeline,
    addr: SocketAddr,
}

impl Victim {
    /// Fails the run if the victim has ended (an aggressor or an attempt took it down).
    fn check_alive(&mut self, when: &str) -> Step<()> {
        startup::drain(self.instance.as_ref(), &mut self.timeline);
        match self.timeline.exit {
            Some((exit, _)) => Err(StepError::Run(format!(
                "the victim ended with {exit} {when}"
            ))),
            None => Ok(()),
        }
    }
}

/// Launches one role's instance beside the victim.
fn launch_role(runner: &Runner, prepared: &dyn Prepared, instance: u32) -> Step<Box<dyn Instance>> {
    let ctx = LaunchContext {
        instance,
        ..runner.ctx.clone()
    };
    prepared
        .launch(&ctx)
        .map_err(|e| StepError::Run(format!("{:#}", anyhow::Error::new(e))))
}

/// Configuration facts of a backend in an isolation run, recorded with its samples: how its
/// limits are enforced, and whether it runs the containment attempts.
pub(super) fn config_facts(kind: BackendKind, scenario: &Scenario) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    let Some(spec) = &scenario.isolation else {
        return facts;
    };
    let l = crate::backend::limits(scenario);
    let pids = l
        .pids
        .map_or("no pids limit".to_string(), |n| format!("pids {n}"));
    let cpus = format!(
        "CPU quota {} CPU(s){}",
        l.cpus,
        l.cpuset
            .as_deref()
            .map_or(String::new(), |c| format!(" on CPU(s) {c}"))
    );
    let mib = l.memory_bytes >> 20;
    let enforced = match kind {
        BackendKind::Vm | BackendKind::VmMinimal | BackendKind::VmClassic | BackendKind::VmUser => {
            format!(
                "{} vCPU(s), QEMU's cgroup {cpus}; guest RAM {mib} MiB (no host memory limit); \
             {pids} as the guest kernel's thread cap",
                l.cpus
            )
        }
        BackendKind::Gvisor => format!(
            "the sandbox's cgroup (Sentry, gofer and stubs): {cpus}, memory {mib} MiB, {pids}"
        ),
        _ => format!("cgroup: {cpus}, memory {mib} MiB, {pids}"),
    };
    facts.insert("isolation_limits".into(), enforced);
    if !scenario.security.is_default() {
        let applies = match kind {
            BackendKind::Native => "not applicable (no confinement to loosen)",
            BackendKind::Vm
            | BackendKind::VmMinimal
            | BackendKind::VmClassic
            | BackendKind::VmUser => {
                "not applicable (the guest's root holds every capability of its own kernel)"
            }
            _ => "applied",
        };
        facts.insert(
            "security".into(),
            format!(
                "cap_add [{}], seccomp {:?}: {applies}",
                scenario.security.cap_add.get_ref().join(" "),
                scenario.security.seccomp
            ),
        );
    }
    if spec.containment {
        let plan = match roles::containment_allowed(kind) {
            Ok(()) => "run in an instance of its own beside the victim".to_string(),
            Err(why) => why.to_string(),
        };
        facts.insert("isolation_containment".into(), plan);
    }
    facts
}

/// Every run of one backend: warm-ups then measured runs, each the whole experiment.
pub(super) fn run(
    runner: &mut Runner,
    plan: &Plan,
    backend: &dyn Backend,
    image: &Image,
) -> Result<BackendEnd, ResultsError> {
    let Some(spec) = runner.scenario.isolation.clone() else {
        return super::order::run_iterations(runner, plan);
    };
    let facts = host::HostFacts::collect();
    let kind = runner.kind;
    if let (true, Err(why)) = (spec.containment, roles::containment_allowed(kind)) {
        plan.progress
            .suspend(|| eprintln!("cvm: {kind}: containment attempts {why}"));
    }
    plan.progress
        .set_message(format!("{kind}: preparing the aggressors and probes"));
    let roles = match roles::prepare(runner.scenario, &spec, kind, backend, image, &facts) {
        Ok(r) => r,
        Err(msg) => {
            runner.record_failure(0, Phase::Measure, &msg)?;
            plan.progress.inc(u64::from(plan.warmup + plan.runs));
            return Ok(BackendEnd::GaveUp(msg));
        }
    };
    let mut end = BackendEnd::AllMeasured;
    for i in 0..plan.warmup + plan.runs {
        if runner.interrupted.load(Ordering::SeqCst) {
            break;
        }
        let at = if i < plan.warmup {
            (i, Phase::Warmup)
        } else {
            (i - plan.warmup, Phase::Measure)
        };
        let restart = |from| {
            let s = roles::contain_scenario(runner.scenario, &facts, Some(from));
            backend.prepare(&s, image).map_err(|e| {
                StepError::Run(format!(
                    "preparing the containment attempts from {from}: {:#}",
                    anyhow::Error::new(e)
                ))
            })
        };
        let started = std::time::Instant::now();
        match one_run(runner, plan, &spec, (&roles, &restart), at) {
            Ok(()) => plan.progress.suspend(|| {
                eprintln!(
                    "cvm: {kind}: isolation run {} took {:.0} s",
                    i + 1,
                    started.elapsed().as_secs_f64()
                )
            }),
            Err(StepError::Record(f)) => return Err(f),
            Err(StepError::Run(msg)) => {
                plan.progress
                    .suspend(|| eprintln!("cvm: {kind} isolation run {} failed: {msg}", i + 1));
                runner.record_failure(at.0, at.1, &msg)?;
                end = BackendEnd::SomeFailed;
            }
        }
        plan.progress.inc(1);
    }
    Ok(end)
}

/// The victim up, the experiment's parts beside it, the victim down.
fn one_run(
    runner: &mut Runner,
    plan: &Plan,
    spec: &IsolationSpec,
    (roles, restart): (&roles::Roles, Restart),
    at: (u32, Phase),
) -> Step<()> {
    let kind = runner.kind;
    plan.progress.set_message(format!("{kind}: victim alone"));
    let mut victim = start_victim(runner)?;
    let outcome = (|| -> Step<()> {
        let alone = neighbour::alone(
            runner,
            &victim,
            *spec.calibration_s.get_ref(),
            *spec.offered_share.get_ref(),
            at,
        )?;
        for (k, (aggressor, prepared)) in (ROLE_AGGRESSOR..).zip(&roles.aggressors) {
            plan.progress
                .set_message(format!("{kind}: victim beside the {aggressor} aggressor"));
            let role = (*aggressor, prepared.as_ref(), k);
            neighbour::beside(runner, &mut victim, role, alone, at)?;
        }
        if let Some(prepared) = &roles.audit {
            plan.progress.set_message(format!("{kind}: audit"));
            probes::audit(runner, prepared.as_ref(), at)?;
        }
        if let Some(prepared) = &roles.contain {
            plan.progress
                .set_message(format!("{kind}: containment attempts"));
            let path = runner
                .scenario
                .load
                .as_ref()
                .map_or("/".to_string(), |l| l.path.clone());
            probes::contain(runner, prepared.as_ref(), restart, &mut victim, &path, at)?;
        }
        Ok(())
    })();
    let torn = victim.instance.teardown();
    outcome?;
    torn.map_err(|e| {
        StepError::Run(format!(
            "the victim's teardown: {:#}",
            anyhow::Error::new(e)
        ))
    })
}

/// Launches the victim and waits until it serves.
fn start_victim(runner: &Runner) -> Step<Victim> {
    let instance = runner
        .prepared
        .launch(&runner.ctx)
        .map_err(|e| StepError::Run(format!("{:#}", anyhow::Error::new(e))))?;
    let timeline = startup::wait_ready(
        instance.as_ref(),
        &runner.scenario.readiness,
        runner.timeout,
        runner.interrupted,
    )
    .map_err(|e| StepError::Run(format!("the victim: {e}")))?;
    let port = runner.scenario.readiness.port().unwrap_or(0);
    let addr = instance.endpoint(port).ok_or_else(|| {
        StepError::Run(format!("the victim has no host endpoint for port {port}"))
    })?;
    Ok(Victim {
        instance,
        timeline,
        addr,
    })
}
