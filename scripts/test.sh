#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu host as root: installs what the tests need, builds
# both binaries, then runs every unit and integration test of the workspace. Tests that need the
# real host (root, QEMU, runc, chromium) skip with a message unless CVM_REQUIRE_HOST=1, in which
# case a missing prerequisite fails them (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
# Opt-in until the minimal kernel reaches ready (see the README): cvm's minimal guest kernel,
# built once per configuration hash and source version (a build already in the cache is
# reused, so only a changed assets/kernel/minimal.config or a new linux-source pays the build),
# then the VM tests again with it ($CVM_KERNEL is --kernel's default, so their `vm` runs as
# `vm-minimal`).
if [[ "${CVM_TEST_MINIMAL_KERNEL:-}" == 1 ]]; then
  cargo run -q --bin cvm -- kernel build
  CVM_KERNEL=minimal cargo test --no-fail-fast --test vm
  CVM_KERNEL=minimal cargo test --no-fail-fast --test faults_backends -- vm
fi
# Fuzz smoke: each cargo-fuzz target for 20 s from the committed corpus (stable Rust through
# RUSTC_BOOTSTRAP=1; needs g++ from build-essential). The corpus replay itself already ran above,
# in `cargo test` (tests/fuzz_corpus.rs). The long run is scripts/fuzz.sh.
scripts/fuzz-smoke.sh 20
