//! A comparison's `run.json`: written when the run starts (environment, scenario, every backend
//! and whether it is available), rewritten as each backend is prepared, and closed with how the
//! run ended. A reader of a results directory cut off half-way finds `running` and everything
//! known until then.

use std::path::{Path, PathBuf};

use super::order::{BackendEnd, Lane};
use super::setup::Setup;
use super::{CompareError, CompareOptions, RunOrder};
use crate::backend::placement::{self, HostPin, Placement};
use crate::backend::{self, Availability, Backend, HostOptions};
use crate::results::{self, BackendInfo, Environment, RunMeta, RunStatus};

/// The run's metadata as it stands, the backends it names, and where the run is placed.
pub(super) struct Record {
    pub(super) meta: RunMeta,
    meta_path: PathBuf,
    /// In the order of `meta.backends`.
    pub(super) backends: Vec<Box<dyn Backend>>,
    /// Where the instance and the load client run (disjoint CPUs), when the scenario has a load.
    placement: Result<Placement, &'static str>,
    /// The CPUs the load client's threads are pinned to.
    pub(super) client_cpus: Vec<usize>,
}

impl Record {
    /// Probes every backend and writes the first `run.json` (status `running`).
    pub(super) fn start(
        setup: &Setup,
        run_id: &str,
        started: &str,
        dir: &Path,
        opts: &CompareOptions,
    ) -> Result<Record, CompareError> {
        let scenario = &setup.scenario;
        eprintln!("cvm: scenario {} — {}", scenario.name, scenario.description);
        let environment = Environment::collect();
        let placement = placement::for_scenario(scenario);
        let (client_cpus, placement_note) = match &placement {
            Ok(p) => (p.client.clone(), placement_note(p)),
            Err(why) => (crate::load::http::default_client_cpus(), why.to_string()),
        };
        let host = HostOptions {
            accel: Some(opts.accel),
            kernel: setup.kernel.clone(),
            docker: opts.docker.clone(),
        };
        let backends: Vec<Box<dyn Backend>> = setup
            .kinds
            .iter()
            .map(|&k| backend::create(k, &host))
            .collect();
        let meta = RunMeta {
            schema_version: results::SCHEMA_VERSION,
            run_id: run_id.to_string(),
            started: started.to_string(),
            finished: None,
            status: RunStatus::Running,
            scenario: scenario.into(),
            runs: setup.runs,
            warmup: setup.warmup,
            timeout_s: setup.timeout.as_secs_f64(),
            environment,
            backends: backends.iter().map(|b| probe(b.as_ref())).collect(),
            load: scenario
                .load
                .as_ref()
                .map(|l| crate::load::http::describe(l, &client_cpus, &placement_note)),
            order: Some(setup.order.as_str().to_string()),
            seed: (setup.order == RunOrder::Interleaved).then_some(setup.seed),
            cgroup_state: Some(setup.cgroup_state.as_str().to_string()),
        };
        let record = Record {
            meta,
            meta_path: dir.join(results::META_FILE),
            backends,
            placement,
            client_cpus,
        };
        record.write()?;
        Ok(record)
    }

    pub(super) fn write(&self) -> Result<(), CompareError> {
        Ok(self.meta.write(&self.meta_path)?)
    }

    /// Launches planned: warm-up and measured runs of every available backend.
    pub(super) fn planned_runs(&self, setup: &Setup) -> u64 {
        let available = self
            .meta
            .backends
            .iter()
            .filter(|i| i.availability == Availability::Available)
            .count() as u64;
        available * u64::from(setup.runs + setup.warmup)
    }

    /// cvm's own threads pinned to the load client's CPUs, when the run is placed.
    pub(super) fn host_pin(&self) -> Option<HostPin> {
        self.placement
            .as_ref()
            .ok()
            .and_then(|p| HostPin::to(&p.client))
    }

    /// Records how every backend's runs ended, and the run's status; returns the status.
    pub(super) fn close(
        &mut self,
        lanes: &[Lane],
        interrupted: bool,
    ) -> Result<RunStatus, CompareError> {
        let mut any_failed = self.meta.backends.iter().any(|i| i.error.is_some());
        for lane in lanes {
            match &lane.end {
                BackendEnd::AllMeasured => {}
                BackendEnd::SomeFailed => any_failed = true,
                BackendEnd::GaveUp(note) => {
                    any_failed = true;
                    self.meta.backends[lane.index].error = Some(note.clone());
                }
            }
        }
        self.meta.status = if interrupted {
            RunStatus::Interrupted
        } else if any_failed {
            RunStatus::Failed
        } else {
            RunStatus::Done
        };
        self.meta.finished =
            Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string());
        record_accelerators(&mut self.meta);
        if let (Some(load), Some(now)) = (
            self.meta.environment.load.as_mut(),
            crate::measure::fingerprint::load_average(),
        ) {
            load.end = now;
        }
        self.write()?;
        Ok(self.meta.status)
    }
}

/// A backend as the run starts: its stack and whether it can run here (said on stderr if not).
fn probe(b: &dyn Backend) -> BackendInfo {
    let availability = b.availability();
    if let Availability::Unavailable { reason, hint } = &availability {
        eprintln!(
            "cvm: backend {} is unavailable: {reason} ({hint})",
            b.kind()
        );
    }
    BackendInfo {
        backend: b.kind().to_string(),
        stack: b.stack(),
        availability,
        error: None,
        config: Default::default(),
    }
}

fn placement_note(p: &Placement) -> String {
    format!(
        "instance on CPU(s) {} (its cgroup's cpuset: every process, QEMU's threads included), \
         load client on CPU(s) {} (with cvm's own work: launch, readiness probe, teardown)",
        placement::cpu_list(&p.instance),
        placement::cpu_list(&p.client)
    )
}

/// Adds the accelerator each VM backend ran under to the host fingerprint.
fn record_accelerators(meta: &mut RunMeta) {
    let used: Vec<String> = meta
        .backends
        .iter()
        .filter_map(|b| b.accelerator().map(|a| format!("{}: {a}", b.backend)))
        .collect();
    if !used.is_empty() {
        let f = &mut meta.environment.fingerprint;
        f.accelerator = format!("{}; {}", f.accelerator, used.join(", "));
    }
}
