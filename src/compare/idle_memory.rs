//! The instance's memory once it is ready and idle, by the one resident-process rule: the PSS
//! of what stays resident for it (`Instance::host_pids`), a VM's split into QEMU's own and the
//! guest RAM it maps, the guest's own account, host-wide daemons apart, and the memory its cgroup
//! is charged.

use std::time::{Duration, Instant};

use cvm_proto::metric::Metric;

use super::runner::Runner;
use crate::backend::Instance;
use crate::measure::{memory, startup};
use crate::results::{Phase, ResultsError};

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
        let pss = match instance.guest_ram_mapping() {
            None => memory::pss_total(&pids),
            Some(mapping) => {
                let split = pids
                    .iter()
                    .filter_map(|&p| memory::pss_split(p, mapping))
                    .fold(memory::PssSplit::default(), |a, b| memory::PssSplit {
                        total: a.total + b.total,
                        in_mapping: a.in_mapping + b.in_mapping,
                    });
                if split.total > 0 {
                    let vmm = split.total - split.in_mapping;
                    self.sample(iteration, phase, Metric::MemoryVmm, vmm as f64)?;
                    let ram = split.in_mapping as f64;
                    self.sample(iteration, phase, Metric::MemoryGuestRam, ram)?;
                }
                split.total
            }
        };
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
