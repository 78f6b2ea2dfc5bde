//! The instances beside the victim, each prepared once per backend from the victim's scenario
//! with only its workload changed: an aggressor per kind, the audit, the containment attempts.
//! They keep the victim's resources and its `[load]` (which places every instance of the run on
//! the same CPUs), get no network (nothing reaches them from outside), and are ready when they
//! say so (`CVM:ready`). The io aggressor writes where the io applet would, so every backend
//! gives it a disk by the io scenario's rule.

use cvm_proto::applet::Applet;
use cvm_proto::isolation::{Aggressor, AggressorArgs, AuditArgs, ContainArgs, Probe};
use toml::Spanned;

use super::host::HostFacts;
use crate::backend::{Backend, Prepared};
use crate::image::Image;
use crate::scenario::{BackendKind, IsolationSpec, NetworkMode, Readiness, Scenario, Workload};

/// How much longer than the victim's load phase an aggressor runs: it starts counting at its
/// own ready, and must outlast the phase it disturbs.
pub(super) const AGGRESSOR_MARGIN_S: f64 = 1.0;

/// Why native never runs the containment attempts.
pub(super) const NATIVE_SKIP: &str = "skipped: never run on the bare host (native isolates \
    nothing: root there has every capability, no namespace and no filter, so every attempt \
    would succeed against the host itself)";

/// Every prepared role of one backend.
pub(super) struct Roles {
    pub aggressors: Vec<(Aggressor, Box<dyn Prepared>)>,
    pub audit: Option<Box<dyn Prepared>>,
    pub contain: Option<Box<dyn Prepared>>,
}

/// The victim's scenario running `applet` with `args` instead.
pub(super) fn role_scenario(victim: &Scenario, applet: Applet, args: Vec<String>) -> Scenario {
    let mut s = victim.clone();
    s.workload = Workload {
        applet: Some(Spanned::new(0..0, applet.name().to_string())),
        command: None,
        args,
        exits: None,
        io_dir: None,
        io_mib: victim.workload.io_mib.clone(),
    };
    s.readiness = Readiness::Marker;
    s.resources.network = NetworkMode::None;
    s.isolation = None;
    s
}

/// Whether `kind` runs the containment attempts; the reason when it does not.
pub(super) fn containment_allowed(kind: BackendKind) -> Result<(), &'static str> {
    match kind {
        BackendKind::Native => Err(NATIVE_SKIP),
        _ => Ok(()),
    }
}

/// The scenarios of every role `spec` asks for on `kind`.
pub(super) fn scenarios(
    victim: &Scenario,
    spec: &IsolationSpec,
    kind: BackendKind,
    facts: &HostFacts,
) -> Vec<(Role, Scenario)> {
    let memory_mib = *victim.resources.memory_mib.get_ref();
    let duration = victim
        .load
        .as_ref()
        .map_or(3.0, |l| *l.duration_s.get_ref());
    let mut out: Vec<(Role, Scenario)> = spec
        .aggressor_kinds()
        .into_iter()
        .map(|a| {
            let args = AggressorArgs {
                kind: a,
                seconds: duration + AGGRESSOR_MARGIN_S,
                dir: "/tmp".into(),
                mib: facts.memory_working_set_mib(memory_mib),
            };
            let s = role_scenario(victim, Applet::Aggressor, args.to_args());
            (Role::Aggressor(a), s)
        })
        .collect();
    if spec.audit {
        let args = AuditArgs {
            host_boot_id: facts.boot_id.clone(),
            host_release: facts.release.clone(),
            host_namespaces: facts.namespaces.clone(),
        };
        out.push((
            Role::Audit,
            role_scenario(victim, Applet::Audit, args.to_args()),
        ));
    }
    if spec.containment && containment_allowed(kind).is_ok() {
        out.push((Role::Contain, contain_scenario(victim, facts, None)));
    }
    out
}

/// The containment instance's scenario, its attempts starting at `from` (all of them: `None`).
pub(super) fn contain_scenario(
    victim: &Scenario,
    facts: &HostFacts,
    from: Option<Probe>,
) -> Scenario {
    let args = ContainArgs {
        host_boot_id: facts.boot_id.clone(),
        host_pid: std::process::id(),
        host_disk: facts.disk,
        host_fstype: facts.fstype.clone(),
        memory_mib: *victim.resources.memory_mib.get_ref(),
        pids: victim.resources.pids.as_ref().map_or(128, |p| *p.get_ref()),
        from,
    };
    role_scenario(victim, Applet::Contain, args.to_args())
}

/// What an instance beside the victim is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Aggressor(Aggressor),
    Audit,
    Contain,
}

/// Prepares every role; the first failure ends it, naming the role.
pub(super) fn prepare(
    victim: &Scenario,
    spec: &IsolationSpec,
    kind: BackendKind,
    backend: &dyn Backend,
    image: &Image,
    facts: &HostFacts,
) -> Result<Roles, String> {
    let mut roles = Roles {
        aggressors: Vec::new(),
        audit: None,
        contain: None,
    };
    for (role, scenario) in scenarios(victim, spec, kind, facts) {
        let prepared = backend
            .prepare(&scenario, image)
            .map_err(|e| format!("preparing {role:?}: {:#}", anyhow::Error::new(e)))?;
        match role {
            Role::Aggressor(a) => roles.aggressors.push((a, prepared)),
            Role::Audit => roles.audit = Some(prepared),
            Role::Contain => roles.contain = Some(prepared),
        }
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn victim() -> Scenario {
        crate::scenario::load("isolation").unwrap()
    }

    #[test]
    fn native_never_gets_the_containment_attempts() {
        let v = victim();
        let spec = v.isolation.clone().unwrap();
        let facts = HostFacts::collect();
        let roles = |k| -> Vec<Role> {
            scenarios(&v, &spec, k, &facts)
                .into_iter()
                .map(|(r, _)| r)
                .collect()
        };
        assert!(!roles(BackendKind::Native).contains(&Role::Contain));
        assert!(roles(BackendKind::Native).contains(&Role::Audit));
        for k in [
            BackendKind::Container,
            BackendKind::Gvisor,
            BackendKind::Docker,
            BackendKind::Vm,
        ] {
            assert!(roles(k).contains(&Role::Contain), "{k}");
        }
        assert!(containment_allowed(BackendKind::Native)
            .unwrap_err()
            .contains("bare host"));
    }

    #[test]
    fn roles_keep_the_victims_limits_and_cpus_and_change_only_the_workload() {
        let v = victim();
        let spec = v.isolation.clone().unwrap();
        let facts = HostFacts::collect();
        for (role, s) in scenarios(&v, &spec, BackendKind::Runc, &facts) {
            assert_eq!(
                crate::backend::limits(&s),
                crate::backend::limits(&v),
                "{role:?}"
            );
            assert_eq!(s.readiness, Readiness::Marker);
            assert!(
                s.workload.runs_to_completion() == (role != Role::Audit),
                "{role:?}"
            );
            let io = s.workload.io_target().is_some();
            assert_eq!(io, role == Role::Aggressor(Aggressor::Io), "{role:?}");
        }
    }
}
