//! The instance's memory once it is ready and idle, by the one resident-process rule: the PSS
//! of what stays resident for it (`Instance::host_pids`), a VM's split into the guest RAM QEMU
//! maps and QEMU's own (itself split into what it needs whatever the guest, TCG's translation
//! cache and its copies of the kernel and initramfs), the supervisor it counts (its part of
//! the PSS, or one measured apart and added), the guest's own account, host-wide daemons apart,
//! and the memory its cgroup is charged.

use std::time::{Duration, Instant};

use cvm_proto::metric::Metric;

use super::runner::Runner;
use crate::backend::{Instance, Supervisor};
use crate::measure::startup;
use crate::results::{Phase, ResultsError};
use crate::usage::memory;

/// How long to wait for the guest's own memory report after the host's sample.
const GUEST_MEMORY_WAIT: Duration = Duration::from_secs(2);

impl Runner<'_> {
    pub(super) fn record_idle_memory(
        &mut self,
        instance: &dyn Instance,
        timeline: &mut startup::Timeline,
        iteration: u32,
        phase: Phase,
    ) -> Result<(), ResultsError> {
        let pids = instance.host_pids();
        let sampled_at = Instant::now();
        let supervisor = instance.supervisor();
        let pss = match instance.vmm_layout() {
            None => memory::pss_total(&pids) + supervisor.apart(),
            Some(layout) => {
                let split = pids
                    .iter()
                    .filter_map(|&p| memory::vmm_split(p, &layout))
                    .fold(memory::VmmSplit::default(), memory::VmmSplit::plus);
                if split.total > 0 {
                    for (metric, bytes) in [
                        (Metric::MemoryVmm, split.vmm()),
                        (Metric::MemoryVmmBase, split.own()),
                        (Metric::MemoryVmmTcg, split.translation_cache),
                        (Metric::MemoryVmmBoot, split.boot_images),
                        (Metric::MemoryGuestRam, split.guest_ram),
                    ] {
                        self.sample(iteration, phase, metric, bytes as f64)?;
                    }
                }
                split.total
            }
        };
        let supervisor_pss = match &supervisor {
            Supervisor::None => None,
            Supervisor::Pids(p) => Some(memory::pss_total(p)),
            Supervisor::Apart(bytes) => Some(*bytes),
        };
        if let Some(bytes) = supervisor_pss {
            self.sample(iteration, phase, Metric::MemorySupervisor, bytes as f64)?;
        }
        let daemons = instance.daemon_pids();
        if !daemons.is_empty() {
            let pss = memory::pss_total(&daemons);
            self.sample(iteration, phase, Metric::MemoryDaemon, pss as f64)?;
        }
        if instance.reports_guest_memory() {
            // The guest reports every quarter second; a few periods cover a slow console.
            if let Some(used) =
                startup::guest_memory_after(instance, timeline, sampled_at, GUEST_MEMORY_WAIT)
            {
                self.sample(iteration, phase, Metric::MemoryGuestUsed, used as f64)?;
            }
        }
        if pss > 0 {
            // memory_overhead is derived from these in the summary, against native's median
            // over the whole run (results::summary).
            self.sample(iteration, phase, Metric::MemoryPss, pss as f64)?;
        }
        if let Some(bytes) = instance
            .memory_cgroup()
            .and_then(|d| crate::backend::cgroup::memory_charged(&d))
        {
            self.sample(iteration, phase, Metric::MemoryCgroup, bytes as f64)?;
        }
        Ok(())
    }
}
