//! The groups and layers of the stack diagram: which group a backend's column stands in, which
//! layers its stack has, what each layer is called on that backend, and which layer a startup
//! phase, a disk layer or a memory figure is charged to.

use crate::results::{BackendInfo, Stack};
use cvm_proto::metric::{Layer as DiskLayer, Phase};

/// Where a backend's column stands, left to right: the bare host, the containers, the sandboxes
/// (a user-space kernel between the container and the host), the virtual machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Native,
    Containers,
    Sandbox,
    Vms,
}

/// Backends whose container runs on a user-space kernel rather than on the host's: their
/// column stands in the sandbox group, with a Sentry in place of the container runtime.
const SANDBOX_BACKENDS: &[&str] = &["gvisor"];

impl Group {
    pub const ALL: [Group; 4] = [Group::Native, Group::Containers, Group::Sandbox, Group::Vms];

    pub fn of(info: &BackendInfo) -> Group {
        match info.stack {
            Stack::Native => Group::Native,
            Stack::Vm => Group::Vms,
            // A sandbox is recorded as a container stack (it runs an OCI bundle); any stack a
            // later results schema adds is drawn as a container until it has a group here.
            _ if SANDBOX_BACKENDS.contains(&info.backend.as_str()) => Group::Sandbox,
            _ => Group::Containers,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Group::Native => "Native",
            Group::Containers => "Containers",
            Group::Sandbox => "Sandbox",
            Group::Vms => "Virtual machines",
        }
    }

    /// The group's layers, top to bottom.
    pub fn layers(self) -> &'static [Layer] {
        use Layer::*;
        match self {
            Group::Native => &[App, Libs, HostOs, Infrastructure],
            Group::Containers => &[App, Libs, Runtime, HostOs, Infrastructure],
            Group::Sandbox => &[App, Libs, Sentry, HostOs, Infrastructure],
            Group::Vms => &[
                App,
                Libs,
                GuestOs,
                GuestFree,
                Hypervisor,
                HostOs,
                Infrastructure,
            ],
        }
    }

    /// The layer that isolates the workload, charged with its overhead over native (memory,
    /// and the disk of any layer this report does not know by name).
    pub fn isolation(self) -> Option<Layer> {
        match self {
            Group::Native => None,
            Group::Containers => Some(Layer::Runtime),
            Group::Sandbox => Some(Layer::Sentry),
            Group::Vms => Some(Layer::Hypervisor),
        }
    }
}

/// One layer of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    App,
    Libs,
    GuestOs,
    /// Guest RAM the guest has touched (so the host backs it) but holds free: memory only, a
    /// box of its own so that a VM's boxes add up to its PSS.
    GuestFree,
    Hypervisor,
    Runtime,
    /// gVisor's user-space kernel: the Sentry, with its gofer, in place of the host kernel's
    /// system-call surface.
    Sentry,
    HostOs,
    Infrastructure,
}

impl Layer {
    /// The layer's generic name (a backend's own name for it is [`Layer::label`]).
    pub fn name(self) -> &'static str {
        match self {
            Layer::App => "App",
            Layer::Libs => "Binaries/libraries",
            Layer::GuestOs => "Guest OS",
            Layer::GuestFree => "Guest RAM touched, free in the guest",
            Layer::Hypervisor => "Hypervisor",
            Layer::Runtime => "Container runtime",
            Layer::Sentry => "Sentry (user-space kernel)",
            Layer::HostOs => "Host OS",
            Layer::Infrastructure => "Infrastructure",
        }
    }

    /// The layer's name on `backend`'s column: what the runtime box holds on each container
    /// backend, since that is what differs between them.
    pub fn label(self, backend: &str) -> String {
        match (self, backend) {
            (Layer::Runtime, "docker") => "Docker Engine: dockerd, containerd, shim, runc".into(),
            (Layer::Runtime, "podman") => "Podman: podman, conmon, runc".into(),
            (Layer::Runtime, "container") => "Container runtime: cvm's own".into(),
            (Layer::Runtime, "runc" | "crun") => format!("Container runtime: {backend}"),
            (Layer::Hypervisor, _) => "Hypervisor: QEMU".into(),
            (Layer::Sentry, "gvisor") => "Sentry (user-space kernel): runsc".into(),
            (layer, _) => layer.name().into(),
        }
    }

    /// The disk layer this box's files are counted in (`disk.<layer>`), where it has one: the
    /// host OS and the infrastructure are not part of any backend's footprint. The Sentry box
    /// shows the runtime layer and, through [`Layer::takes_unknown_disk`], a layer of its own
    /// where the results have one.
    pub fn disk_layer(self) -> Option<DiskLayer> {
        Some(match self {
            Layer::App => DiskLayer::App,
            Layer::Libs => DiskLayer::Libs,
            Layer::GuestOs => DiskLayer::GuestOs,
            Layer::Hypervisor => DiskLayer::Hypervisor,
            Layer::Runtime | Layer::Sentry => DiskLayer::Runtime,
            Layer::GuestFree | Layer::HostOs | Layer::Infrastructure => return None,
        })
    }

    /// The layer's short name, for the colour table.
    pub fn key(self) -> &'static str {
        match self {
            Layer::Sentry => "sentry",
            Layer::GuestFree => "guest_free",
            Layer::HostOs => "host_os",
            Layer::Infrastructure => "infrastructure",
            other => other.disk_layer().map_or("other", DiskLayer::name),
        }
    }

    /// Whether a stack's bytes in a disk layer no box of its column shows go in this box: the
    /// isolation layer's, so that a new layer's files are shown, not dropped.
    pub fn takes_unknown_disk(self, group: Group) -> bool {
        group.isolation() == Some(self)
    }

    /// The layer whose work a startup phase measures (the module docs); `None` for a phase
    /// this group should not have.
    pub fn of_phase(group: Group, phase: &str) -> Option<Layer> {
        Some(match (group, Phase::from_name(phase)?) {
            // The host kernel's own work, on whichever stack it happens.
            (_, Phase::CgroupJoin) => Layer::HostOs,
            (Group::Vms, Phase::VmmStart) => Layer::Hypervisor,
            // `firmware` (from `cont` to kernel entry; on vm-classic mostly the bzImage
            // decompressing itself) is guest OS work, as the module docs count it.
            (Group::Vms, Phase::Firmware | Phase::Kernel | Phase::GuestInit) => Layer::GuestOs,
            (Group::Containers, Phase::Runtime) => Layer::Runtime,
            // runsc's create and start: the sandbox's Sentry and gofer come up in it.
            (Group::Sandbox, Phase::Runtime) => Layer::Sentry,
            // The workload's start to its readiness, and the first answer the probe gets.
            (_, Phase::WorkloadStart | Phase::Probe) => Layer::App,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Availability;

    fn info(name: &str, stack: Stack) -> BackendInfo {
        BackendInfo {
            backend: name.into(),
            stack,
            availability: Availability::Available,
            error: None,
            config: Default::default(),
        }
    }

    #[test]
    fn backends_fall_into_their_groups() {
        assert_eq!(Group::of(&info("native", Stack::Native)), Group::Native);
        assert_eq!(
            Group::of(&info("docker", Stack::Container)),
            Group::Containers
        );
        assert_eq!(Group::of(&info("gvisor", Stack::Container)), Group::Sandbox);
        assert_eq!(Group::of(&info("vm-user", Stack::Vm)), Group::Vms);
    }

    #[test]
    fn groups_have_the_classic_layers() {
        let names = |g: Group| g.layers().iter().map(|l| l.name()).collect::<Vec<_>>();
        assert_eq!(
            names(Group::Vms),
            [
                "App",
                "Binaries/libraries",
                "Guest OS",
                "Guest RAM touched, free in the guest",
                "Hypervisor",
                "Host OS",
                "Infrastructure"
            ]
        );
        assert_eq!(
            names(Group::Containers),
            [
                "App",
                "Binaries/libraries",
                "Container runtime",
                "Host OS",
                "Infrastructure"
            ]
        );
        assert_eq!(
            names(Group::Sandbox),
            [
                "App",
                "Binaries/libraries",
                "Sentry (user-space kernel)",
                "Host OS",
                "Infrastructure"
            ]
        );
        assert_eq!(
            names(Group::Native),
            ["App", "Binaries/libraries", "Host OS", "Infrastructure"]
        );
        assert_eq!(
            Layer::Runtime.label("docker"),
            "Docker Engine: dockerd, containerd, shim, runc"
        );
    }

    #[test]
    fn the_runtime_phase_goes_to_each_groups_isolation_layer() {
        assert_eq!(
            Layer::of_phase(Group::Containers, "runtime"),
            Some(Layer::Runtime)
        );
        assert_eq!(
            Layer::of_phase(Group::Sandbox, "runtime"),
            Some(Layer::Sentry)
        );
        assert_eq!(Layer::of_phase(Group::Native, "runtime"), None);
        assert_eq!(Layer::of_phase(Group::Vms, "kernel"), Some(Layer::GuestOs));
    }
}
