//! The first step of a comparison: what was asked, resolved and checked before anything is built
//! or measured, so that bad input (a scenario, a backend name, a kernel, a baseline, an io store
//! that would measure the wrong thing) is refused at once rather than once per backend later.

use std::path::Path;
use std::time::Duration;

use super::cgroup_state::CgroupState;
use super::{CompareError, CompareOptions, RunOrder};
use crate::backend::io_dir::IoStore;
use crate::backend::vm::KernelChoice;
use crate::backend::BackendConfig;
use crate::results::{self, RunMeta};
use crate::scenario::{self, BackendKind, Scenario, StartMode};

/// Everything a comparison runs with, resolved from its options and its scenario.
pub(super) struct Setup {
    pub(super) scenario: Scenario,
    pub(super) kernel: KernelChoice,
    /// The backends to run, each once, native listed first.
    pub(super) kinds: Vec<BackendKind>,
    pub(super) runs: u32,
    pub(super) warmup: u32,
    pub(super) timeout: Duration,
    pub(super) order: RunOrder,
    pub(super) seed: u64,
    /// The cgroup migration lock's state at every launch.
    pub(super) cgroup_state: CgroupState,
    /// The io store's configuration, recorded with every backend (empty without io).
    pub(super) io_config: BackendConfig,
}

impl Setup {
    pub(super) fn resolve(opts: &CompareOptions) -> Result<Setup, CompareError> {
        let scenario = scenario::load(&opts.scenario)?;
        let kernel = kernel_choice(opts.kernel.as_deref(), &scenario);
        let kinds = resolve_backends(opts.backends.as_deref(), &scenario, &kernel)?;
        check_kernel(&kernel, &kinds)?;
        if let Some(base) = &opts.baseline {
            check_baseline(base, &scenario.name)?;
        }
        // An io run measuring memory instead of a disk (or the reverse) would be mislabelled.
        let io_config = IoStore::for_scenario(&scenario)?
            .map(|store| store.config())
            .unwrap_or_default();
        Ok(Setup {
            runs: opts.runs.unwrap_or(*scenario.runs.get_ref()),
            warmup: opts.warmup.unwrap_or(scenario.warmup),
            timeout: Duration::from_secs_f64(opts.timeout.unwrap_or(*scenario.timeout_s.get_ref())),
            order: opts.order,
            seed: opts.seed.unwrap_or_else(|| fastrand::u64(..)),
            // A cold start is cold in every respect unless asked otherwise.
            cgroup_state: opts.cgroup_state.unwrap_or(match scenario.start.mode {
                StartMode::Cold => CgroupState::Cold,
                StartMode::Warm => CgroupState::Warm,
            }),
            scenario,
            kernel,
            kinds,
            io_config,
        })
    }
}

/// The baseline is a results directory of the same scenario.
fn check_baseline(base: &Path, scenario: &str) -> Result<(), CompareError> {
    let meta = RunMeta::read(&base.join(results::META_FILE)).map_err(|source| {
        CompareError::BaselineUnreadable {
            path: base.to_path_buf(),
            source,
        }
    })?;
    if meta.scenario.name != scenario {
        return Err(CompareError::BaselineScenario {
            path: base.to_path_buf(),
            base: meta.scenario.name,
            scenario: scenario.to_string(),
        });
    }
    Ok(())
}

/// `--kernel` (or `$CVM_KERNEL`), else the scenario's `[vm] kernel`, else the distro kernel.
fn kernel_choice(asked: Option<&str>, scenario: &Scenario) -> KernelChoice {
    asked
        .or(scenario.vm.kernel.as_deref())
        .map(KernelChoice::parse)
        .unwrap_or_default()
}

/// The backends to run, each once, native listed first. With the minimal kernel chosen, `vm` runs
/// as `vm-minimal`: the label says which kernel its figures are for.
fn resolve_backends(
    asked: Option<&[String]>,
    scenario: &Scenario,
    kernel: &KernelChoice,
) -> Result<Vec<BackendKind>, CompareError> {
    let names: Vec<String> = match asked {
        Some(list) => list.to_vec(),
        None => scenario
            .backends
            .get_ref()
            .iter()
            .map(|s| s.get_ref().clone())
            .collect(),
    };
    let mut kinds = Vec::new();
    for name in names.iter().filter(|n| !n.trim().is_empty()) {
        let mut kind: BackendKind = name.parse().map_err(CompareError::Backends)?;
        if kind == BackendKind::Vm && *kernel == KernelChoice::Minimal {
            kind = BackendKind::VmMinimal;
        }
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    // Native is listed first, the column every report reads the others against (the
    // interleaved order still gives it a random place in each round).
    kinds.sort_by_key(|k| *k != BackendKind::Native);
    if kinds.is_empty() {
        return Err(CompareError::Backends(format!(
            "no backends given; valid backends: {}",
            BackendKind::valid_names()
        )));
    }
    Ok(kinds)
}

/// A `--kernel` that is missing or not a bzImage is bad input, found before anything is built or
/// measured: the VM backends could only fail later with the same cause, once per backend.
fn check_kernel(kernel: &KernelChoice, kinds: &[BackendKind]) -> Result<(), CompareError> {
    let Some(path) = kernel.path() else {
        return Ok(());
    };
    let boots_it = kinds.iter().any(|k| {
        matches!(
            k,
            BackendKind::Vm | BackendKind::VmClassic | BackendKind::VmUser
        )
    });
    if !boots_it {
        return Ok(());
    }
    crate::backend::vm::kernel::Kernel::load(path)
        .map(drop)
        .map_err(|source| CompareError::Kernel {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::vm::accel::AccelChoice;

    fn options(scenario: &str, cgroup_state: Option<CgroupState>) -> CompareOptions {
        CompareOptions {
            scenario: scenario.into(),
            backends: Some(vec!["native".into()]),
            runs: None,
            warmup: None,
            timeout: None,
            output: None,
            baseline: None,
            no_progress: true,
            accel: AccelChoice::Auto,
            kernel: None,
            docker: Default::default(),
            order: RunOrder::Interleaved,
            seed: Some(1),
            cgroup_state,
        }
    }

    #[test]
    fn the_cgroup_state_is_warm_unless_the_start_is_cold_or_asked() {
        let state = |s, asked| Setup::resolve(&options(s, asked)).unwrap().cgroup_state;
        assert_eq!(state("startup", None), CgroupState::Warm);
        assert_eq!(state("startup-cold", None), CgroupState::Cold);
        assert_eq!(state("startup", Some(CgroupState::Cold)), CgroupState::Cold);
        assert_eq!(
            state("startup-cold", Some(CgroupState::Warm)),
            CgroupState::Warm
        );
    }
}
