//! The guest's kernel modules: the distribution kernel has the NIC and disk drivers as modules,
//! so the initramfs carries the `.ko` files the guest needs, with their dependencies, in the
//! order `modules.dep` says they load. The guest has no modprobe: init loads them in that order.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("cannot read {path} (is the kernel's module tree installed?)")]
    ModulesDep {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the guest needs kernel module {name}, which /lib/modules/{release} does not have")]
    ModuleMissing { name: String, release: String },
}

/// The `.ko` files for `names` and everything they depend on, dependencies first, each once,
/// from `modules.dep` in `dir`. Modules built into the kernel (`modules.builtin`) need nothing.
pub(super) fn resolve_modules(
    dir: &Path,
    release: &str,
    names: &[&str],
) -> Result<Vec<PathBuf>, ModulesError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let dep_path = dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path).map_err(|source| ModulesError::ModulesDep {
        path: dep_path,
        source,
    })?;
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let order = modules_in_load_order(&text, &builtin, names).map_err(|name| {
        ModulesError::ModuleMissing {
            name,
            release: release.to_string(),
        }
    })?;
    Ok(order.into_iter().map(|rel| dir.join(rel)).collect())
}

/// The pure part of [`resolve_modules`]: relative `.ko` paths in load order, or the name of a
/// module that is neither in `modules.dep` nor built in.
pub(super) fn modules_in_load_order(
    dep: &str,
    builtin: &str,
    names: &[&str],
) -> Result<Vec<String>, String> {
    let module_name = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        let stem = file.split(".ko").next().unwrap_or(file);
        stem.replace('-', "_")
    };
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let list = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(module_name(path), (path.to_string(), list));
    }
    let builtin: Vec<String> = builtin.lines().map(module_name).collect();
    let mut order: Vec<String> = Vec::new();
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        builtin: &[String],
        order: &mut Vec<String>,
        module_name: &dyn Fn(&str) -> String,
    ) -> Result<(), String> {
        let Some((path, list)) = deps.get(name) else {
            return if builtin.iter().any(|b| b == name) {
                Ok(())
            } else {
                Err(name.to_string())
            };
        };
        if order.contains(path) {
            return Ok(());
        }
        for d in list {
            visit(&module_name(d), deps, builtin, order, module_name)?;
        }
        if !order.contains(path) {
            order.push(path.clone());
        }
        Ok(())
    }
    for n in names {
        visit(
            &n.replace('-', "_"),
            &deps,
            &builtin,
            &mut order,
            &module_name,
        )?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
";

    #[test]
    fn modules_come_in_dependency_order_each_once() {
        let order = modules_in_load_order(DEP, "", &["virtio_mmio", "virtio_net"]).unwrap();
        let names: Vec<&str> = order
            .iter()
            .map(|p| p.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "virtio_ring.ko",
                "virtio.ko",
                "virtio_mmio.ko",
                "failover.ko",
                "net_failover.ko",
                "virtio_net.ko"
            ]
        );
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("failover.ko") < pos("net_failover.ko"));
        assert!(pos("net_failover.ko") < pos("virtio_net.ko"));
        assert!(pos("virtio_ring.ko") < pos("virtio.ko"));
        assert!(pos("virtio.ko") < pos("virtio_mmio.ko"));
        assert_eq!(names.len(), 6);
    }

    #[test]
    fn builtin_modules_need_nothing_and_unknown_ones_are_named() {
        let builtin = "kernel/drivers/virtio/virtio_blk.ko\n";
        assert_eq!(
            modules_in_load_order(DEP, builtin, &["virtio_blk"]).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            modules_in_load_order(DEP, "", &["nope"]).unwrap_err(),
            "nope"
        );
    }
}
