//! Scenarios: what to run, how to tell it is ready, with which resources, how often, and on which
//! backends. Built-ins live in `scenarios/*.toml` and are embedded in the binary; any path to a
//! TOML file works too. Parsing rejects unknown keys and bad values with `file:line:col`. A suite
//! (`suite`) names several scenarios run as one comparison.

mod load;
mod model;
mod suite;

pub use load::{builtin_names, builtins, load, parse, ScenarioError};
pub use model::{
    AppClient, AppCommand, AppSpec, BackendKind, ClientSide, DensitySpec, ImageSpec, IoStorage,
    IsolationSpec, LoadKind, LoadSpec, NetworkMode, Readiness, Resources, Scenario, SeccompProfile,
    SecuritySpec, StartMode, StartSpec, VmSettings, Workload, AGGRESSOR_IO_MIB,
};
pub use suite::{builtin_suites, find_suite, parse_suite, Suite, SuiteError, REFERENCES};
