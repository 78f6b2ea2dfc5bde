//! CPU placement for a load phase: the instance and the load client on disjoint CPUs, so the
//! client never takes CPU time from the server it measures (and the server none from the
//! client). The instance — every process of it, QEMU's threads included — is confined by its
//! cgroup's cpuset; the client threads are pinned with `sched_setaffinity`.
//!
//! cvm's own work during the runs (launching, the readiness probe and watchers, teardown) is
//! host-side work like the client's and runs on the client's CPUs too ([`HostPin`]): on the
//! instance's CPU it competed with the server's start (one probe attempt thread every 250 µs,
//! a listen watch every 200 µs), which `startup`, with no probe, never had.
//!
//! The instance gets the first `vcpus` CPUs (at least one CPU is always left to the client), the
//! client the rest: on a 2-CPU host, the instance CPU 0 and the client CPU 1. Scenarios without
//! a load phase are not placed, and neither is anything on a host with one CPU or without a
//! cpuset controller; the run's record says which.

use crate::scenario::Scenario;
use cvm_runtime::cgroup;

/// Which CPUs the instance and the load client run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub instance: Vec<usize>,
    pub client: Vec<usize>,
}

impl Placement {
    /// Splits `ncpu` CPUs: the instance's `vcpus` first, the client the rest. `None` below 2 CPUs.
    pub fn split(ncpu: usize, vcpus: u32) -> Option<Placement> {
        if ncpu < 2 {
            return None;
        }
        let instance = (vcpus.max(1) as usize).min(ncpu - 1);
        Some(Placement {
            instance: (0..instance).collect(),
            client: (instance..ncpu).collect(),
        })
    }
}

/// The placement of `scenario`'s instances and load client on this host, or why there is none.
pub fn for_scenario(scenario: &Scenario) -> Result<Placement, &'static str> {
    if !scenario.has_host_client() {
        return Err("none (no load phase)");
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let placement = Placement::split(ncpu, *scenario.resources.vcpus.get_ref())
        .ok_or("none (one CPU: instance and client share it)")?;
    if !cgroup::cpuset_supported() {
        return Err("none (no cpuset cgroup controller on this host)");
    }
    Ok(placement)
}

/// The calling thread pinned to some CPUs until dropped, which restores its former set. Threads
/// it starts meanwhile inherit the set; a process it starts inherits it too, until it joins a
/// cgroup with a cpuset (every instance's does, which gives it the instance's CPUs).
pub struct HostPin {
    former: nix::sched::CpuSet,
}

impl HostPin {
    /// `None` (and nothing changed) when the set cannot be read or applied.
    pub fn to(cpus: &[usize]) -> Option<HostPin> {
        let me = nix::unistd::Pid::from_raw(0);
        let former = nix::sched::sched_getaffinity(me).ok()?;
        let mut set = nix::sched::CpuSet::new();
        for &cpu in cpus {
            set.set(cpu).ok()?;
        }
        nix::sched::sched_setaffinity(me, &set).ok()?;
        Some(HostPin { former })
    }
}

impl Drop for HostPin {
    fn drop(&mut self) {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.former);
    }
}

/// A cpuset list: "0", "0-3", "0-1,5".
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_pin_holds_the_thread_to_its_cpus_and_gives_them_back() {
        let me = nix::unistd::Pid::from_raw(0);
        let before = nix::sched::sched_getaffinity(me).unwrap();
        let Some(cpu) = (0..nix::sched::CpuSet::count()).find(|&c| before.is_set(c).unwrap())
        else {
            panic!("no CPU in the thread's set");
        };
        let pin = HostPin::to(&[cpu]).expect("pin to a CPU the thread may use");
        let pinned = nix::sched::sched_getaffinity(me).unwrap();
        let count = |s: &nix::sched::CpuSet| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| s.is_set(c).unwrap())
                .count()
        };
        assert_eq!(count(&pinned), 1);
        assert!(pinned.is_set(cpu).unwrap());
        // A thread started while pinned inherits the set.
        let inherited = std::thread::spawn(move || {
            count(&nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(inherited, 1);
        drop(pin);
        assert_eq!(
            count(&nix::sched::sched_getaffinity(me).unwrap()),
            count(&before)
        );
    }

    #[test]
    fn the_instance_gets_its_vcpus_and_the_client_the_rest() {
        assert_eq!(
            Placement::split(2, 1),
            Some(Placement {
                instance: vec![0],
                client: vec![1]
            })
        );
        let big = Placement::split(8, 2).unwrap();
        assert_eq!((big.instance, big.client), (vec![0, 1], (2..8).collect()));
        // More vCPUs than the host can spare: the client keeps one CPU.
        assert_eq!(Placement::split(2, 4).unwrap().client, vec![1]);
        assert_eq!(Placement::split(1, 1), None);
    }

    #[test]
    fn cpu_lists_use_ranges() {
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[3, 0, 1, 2]), "0-3");
        assert_eq!(cpu_list(&[0, 1, 5, 7, 8]), "0-1,5,7-8");
        assert_eq!(cpu_list(&[]), "");
    }
}
