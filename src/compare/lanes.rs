//! Every backend prepared before any is measured (the slow, cacheable work: bundles, images,
//! kernels, a private daemon), so that the measured runs of all backends can be interleaved; and
//! the figures a backend has once per run (its disk layers, a daemon's start), recorded before
//! its first launch.

use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::ProgressBar;

use super::order::{BackendEnd, Lane, Shared};
use super::record::Record;
use super::setup::Setup;
use super::CompareError;
use crate::backend::Availability;
use crate::image::Image;
use crate::results::{Phase, ResultsError, SampleRow, SampleWriter};
use crate::usage::disk::{self, DISK_SHARED_KEY};

impl Record {
    /// Prepares every available backend; one that fails to prepare is recorded as failed (its
    /// error in `run.json`) and left out of the runs.
    pub(super) fn prepare(
        &mut self,
        setup: &Setup,
        image: &Image,
        interrupted: &AtomicBool,
        progress: &ProgressBar,
    ) -> Result<Vec<Lane>, CompareError> {
        let per_backend = u64::from(setup.runs + setup.warmup);
        // What an open loop's idle CPUs do, recorded where the scenario has one.
        let open_loop_idle = setup.scenario.load.as_ref().and_then(|l| {
            let sweep = l.rates.as_ref().is_some_and(|r| !r.get_ref().is_empty());
            (l.rate.is_some() || sweep).then(crate::load::idle::describe)
        });
        let mut lanes = Vec::new();
        for index in 0..self.backends.len() {
            let available = self.meta.backends[index].availability == Availability::Available;
            if !available || interrupted.load(Ordering::SeqCst) {
                continue;
            }
            let b = &self.backends[index];
            progress.set_message(format!("{}: preparing", b.kind()));
            let prepared = match b.prepare(&setup.scenario, image) {
                Ok(p) => p,
                Err(e) => {
                    let msg = format!("{:#}", anyhow::Error::new(e));
                    progress.suspend(|| {
                        eprintln!("cvm: backend {} failed to prepare: {msg}", b.kind())
                    });
                    self.meta.backends[index].error = Some(msg);
                    self.write()?;
                    progress.inc(per_backend);
                    continue;
                }
            };
            let footprint = disk::footprint(
                &prepared.disk_layers(),
                &prepared.disk_packed(),
                &prepared.disk_cache(),
            );
            let info = &mut self.meta.backends[index];
            info.config = prepared.config();
            if !footprint.per_layer.is_empty() {
                info.config
                    .insert(DISK_SHARED_KEY.into(), footprint.shared_summary());
            }
            info.config.extend(setup.io_config.clone());
            info.config
                .extend(super::isolation::config_facts(b.kind(), &setup.scenario));
            info.config.insert(
                super::cgroup_state::CONFIG_KEY.into(),
                setup.cgroup_state.as_str().into(),
            );
            if let Some(describe) = &open_loop_idle {
                info.config
                    .insert(crate::load::idle::CONFIG_KEY.into(), describe.clone());
            }
            let template = row_template(&self.meta, index, setup);
            self.write()?;
            lanes.push(Lane {
                index,
                kind: b.kind(),
                template,
                prepared,
                consecutive: 0,
                first_launch: image.fresh(),
                footprint,
                end: BackendEnd::AllMeasured,
                _tracked: super::interrupt::track(format!(
                    "what the {} backend prepared",
                    b.kind()
                )),
            });
        }
        Ok(lanes)
    }
}

impl Lane {
    /// Bytes on disk per layer, and the backend's host-wide figures (a private daemon's start):
    /// once per run, before the first launch.
    pub(super) fn record_once_figures(
        &mut self,
        shared: &Shared,
        writer: &mut SampleWriter,
    ) -> Result<(), ResultsError> {
        let footprint = self.footprint.clone();
        let host_figures = self.prepared.host_figures();
        let mut runner = self.runner(shared, writer);
        runner.record_disk(&footprint)?;
        runner.record_host_figures(&host_figures)
    }
}

/// The columns every sample of the backend at `index` shares.
fn row_template(meta: &crate::results::RunMeta, index: usize, setup: &Setup) -> SampleRow {
    let env = &meta.environment;
    let info = &meta.backends[index];
    SampleRow {
        run_id: meta.run_id.clone(),
        scenario: setup.scenario.name.clone(),
        backend: info.backend.clone(),
        iteration: 0,
        phase: Phase::Measure,
        metric: String::new(),
        value: 0.0,
        unit: String::new(),
        host: env.host.clone(),
        kernel: env.kernel.clone(),
        cpu_model: env.cpu_model.clone(),
        ncpu: env.ncpu,
        mem_total: env.mem_total,
        accel: info.accelerator().unwrap_or_default().to_string(),
        qemu_version: env
            .tools
            .get("qemu")
            .map(|v| crate::tools::version_number(v))
            .unwrap_or_default(),
        cvm_version: env.cvm_version.clone(),
        git_sha: env.git_sha.clone(),
        config: info
            .config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";"),
        note: String::new(),
    }
}
