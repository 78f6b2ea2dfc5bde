//! The isolation boundary on a backend's column: the line the workload's system calls stop at,
//! drawn where the run measured isolation (its `audit_*` figures), with the audit's figure
//! beside it. A container's is the namespace and cgroup line above the shared host kernel; a
//! sandbox's is its Sentry, a user-space kernel in front of the host's; a VM's is the
//! hypervisor. Native has none: the workload talks to the host kernel directly.

use super::layers::{Group, Layer};
use crate::results::BackendSummary;
use cvm_proto::metric::Metric;

/// Where a column's boundary is drawn and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Boundary {
    /// The box the line is drawn above.
    pub above: Layer,
    pub label: String,
}

fn median(b: &BackendSummary, m: Metric) -> Option<f64> {
    b.metrics.get(m.name()).map(|s| s.stats.median)
}

/// The boundary of `b`'s column in `group`, where the run measured isolation.
pub fn boundary(group: Group, b: &BackendSummary) -> Option<Boundary> {
    let host = median(b, Metric::AuditHostSyscalls);
    let caps = median(b, Metric::AuditCapEffective);
    if host.is_none() && caps.is_none() {
        return None;
    }
    let host = host.map_or(String::new(), |n| format!("{n:.0} host syscalls"));
    let (above, what) = match group {
        Group::Native => return None,
        Group::Containers => (
            Layer::HostOs,
            format!(
                "namespaces + cgroups over the shared kernel; {host}{}",
                caps.map_or(String::new(), |c| format!(", {c:.0} caps"))
            ),
        ),
        Group::Sandbox => (
            Layer::Sentry,
            format!("the Sentry; its filter lets {host} through"),
        ),
        Group::Vms => (
            Layer::Hypervisor,
            format!(
                "the hypervisor; {}QEMU: {host}{}",
                median(b, Metric::AuditVmmDevices)
                    .map_or(String::new(), |d| format!("{d:.0} devices, ")),
                match median(b, Metric::AuditVmmSandbox) {
                    Some(v) if v >= 0.5 => ", -sandbox on",
                    Some(_) => ", no sandbox",
                    None => "",
                }
            ),
        ),
    };
    Some(Boundary {
        above,
        label: format!("isolation boundary: {what}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stack::columns::tests::backend;
    use crate::results::Stack;

    #[test]
    fn each_group_draws_its_boundary_where_isolation_was_measured() {
        let runc = backend(
            "runc",
            Stack::Container,
            &[
                ("audit_host_syscalls", "count", 381.0),
                ("audit_cap_effective", "count", 14.0),
            ],
        );
        let b = boundary(Group::Containers, &runc).unwrap();
        assert_eq!(b.above, Layer::HostOs);
        assert!(
            b.label.contains("381 host syscalls") && b.label.contains("14 caps"),
            "{}",
            b.label
        );
        let gvisor = backend(
            "gvisor",
            Stack::Container,
            &[("audit_host_syscalls", "count", 69.0)],
        );
        assert_eq!(
            boundary(Group::Sandbox, &gvisor).unwrap().above,
            Layer::Sentry
        );
        let vm = backend(
            "vm",
            Stack::Vm,
            &[
                ("audit_host_syscalls", "count", 360.0),
                ("audit_vmm_sandbox", "1", 1.0),
            ],
        );
        let b = boundary(Group::Vms, &vm).unwrap();
        assert_eq!(b.above, Layer::Hypervisor);
        assert!(b.label.contains("-sandbox on"), "{}", b.label);
        assert!(boundary(Group::Native, &runc).is_none());
        let startup_only = backend("runc", Stack::Container, &[("ready_latency", "s", 0.1)]);
        assert!(boundary(Group::Containers, &startup_only).is_none());
    }
}
