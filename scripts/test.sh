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
