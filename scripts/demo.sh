#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu host as root: installs cvm's packages, builds cvm
# (optimised), and runs `cvm compare --scenario web` with its defaults. The report lands in
# reports/<run-id>/, with reports/latest pointing to it. Extra arguments go to `cvm compare`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --workspace
exec ./target/x86_64-unknown-linux-gnu/release/cvm compare --scenario web "$@"
