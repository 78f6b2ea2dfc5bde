#!/usr/bin/env bash
# The whole test suite, on a fresh Debian/Ubuntu host as root: installs what the tests need, builds
# both binaries, then runs every unit and integration test of the workspace. Tests that need the
# real host (root, QEMU, runc, chromium) skip with a message unless CVM_REQUIRE_HOST=1, in which
# case a missing prerequisite fails them (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# A whole-suite run builds every target once: the incremental cache would only add ~1.7 GB of disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
# The VM tests again with cvm's minimal guest kernel ($CVM_KERNEL is --kernel's default, so
# their `vm` runs as `vm-minimal`). The kernel is built once per configuration hash and source
# version and kept in the cache: a build already there is reused, and its object directory is
# kept, so a changed assets/kernel/minimal.config recompiles only what it touches; only a first
# build (or a new linux-source) pays the full build: ~11 CPU-minutes (1,041 files at 9b6cd07), about 5½
# minutes on an idle 2-CPU host, far longer on a busy one (make runs at nice 19).
# CVM_TEST_MINIMAL_KERNEL: 1 builds it if needed and runs, 0 skips; unset, it runs when the
# build is cached, and CI (CVM_REQUIRE_HOST=1) builds it when it is not.
cvm=(cargo run -q --bin cvm --)
# The tests run cvm with a cache of their own; the kernel built once for the host is shared.
export CVM_MINIMAL_KERNEL_DIR=${CVM_MINIMAL_KERNEL_DIR:-/var/cache/cvm/kernels}
minimal=${CVM_TEST_MINIMAL_KERNEL:-}
if [[ -z "$minimal" ]]; then
  # (grep without -q reads all of it: an early exit would fail the pipeline under pipefail)
  if "${cvm[@]}" backends | grep -E '^vm-minimal +available' >/dev/null; then
    minimal=1
  elif [[ "${CVM_REQUIRE_HOST:-}" == 1 ]]; then
    minimal=1
  else
    echo "scripts/test.sh: the minimal guest kernel is not built; skipping the VM tests with it" \
      "(CVM_TEST_MINIMAL_KERNEL=1 builds it: about 11 CPU-minutes, ~6 minutes on 2 idle CPUs)" >&2
    minimal=0
  fi
fi
if [[ "$minimal" == 1 ]]; then
  "${cvm[@]}" kernel build
  CVM_KERNEL=minimal cargo test --no-fail-fast --test vm --test byo
  CVM_KERNEL=minimal cargo test --no-fail-fast --test disk -- vm_counts every_backend
  CVM_KERNEL=minimal cargo test --no-fail-fast --test measure --test readiness \
    --test faults_backends -- vm
fi
# Fuzz smoke: each cargo-fuzz target for 20 s from the committed corpus (stable Rust through
# RUSTC_BOOTSTRAP=1; needs g++ from build-essential). The corpus replay itself already ran above,
# in `cargo test` (tests/fuzz_corpus.rs). The long run is scripts/fuzz.sh.
scripts/fuzz-smoke.sh 20
