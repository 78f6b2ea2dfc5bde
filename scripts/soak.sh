#!/usr/bin/env bash
# The long soak: 200 mixed launches of the container, runc and vm backends with faults
# injected at random from a seeded RNG — the workload crashing at start, never becoming ready
# (short timeout), SIGKILLed once ready, QEMU SIGKILLed once the guest is ready — with a leak
# audit after every launch and cvm's own RSS, descriptors and threads watched.
#
# It prints, at the end: launches (per backend), faults injected per kind, runs completed,
# leaked resources (must be 0) and cvm's RSS at start, once warm, and at the end; then PASS, or
# FAIL with the reasons (exit 1). The CI test tests/soak.rs runs a short one with the same driver
# (examples/soak.rs).
#
# Usage (as root, on a host set up by scripts/setup.sh):
#   scripts/soak.sh [--launches 200] [--seed N] [--vm-share 0.25] [--fault-rate 0.5]
#                   [--accel tcg|kvm|auto] [--backends container,runc,vm] [--quiet]
# Defaults: 200 launches, a quarter of them VMs (each a few seconds under TCG; 3 to 3.5 minutes
# in all on the reference host), half of them with a fault, seed 1, TCG.
set -euo pipefail
cd "$(dirname "$0")/.."
# Both binaries: the driver finds cvm-guest beside target/<triple>/debug/.
cargo build --quiet
cargo build --quiet --example soak
args=(--launches 200 --seed 1 --vm-share 0.25 --verbose)
exec cargo run --quiet --example soak -- "${args[@]}" "$@"
