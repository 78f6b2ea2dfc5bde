#!/usr/bin/env bash
# CI fuzz smoke: builds the cargo-fuzz targets and runs each for SECONDS (default 20)
# from the committed corpus and seeds, on one core. New inputs go to a temporary directory, so
# the committed corpus is left as it is. Fails on any crash, timeout or out-of-memory; the
# failing input is left in fuzz/artifacts/<target>/. Needs cargo-fuzz (installed if missing)
# and g++; runs on stable Rust (see scripts/fuzz.sh). The long run is scripts/fuzz.sh.
#
#   scripts/fuzz-smoke.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
seeds_of() { case "$1" in report) echo seeds/samples ;; *) echo "seeds/$1" ;; esac; }

cargo fuzz build
for t in $(cargo fuzz list); do
    mkdir -p "$scratch/$t"
    echo "== fuzz smoke: $t for ${seconds}s"
    if ! cargo fuzz run "$t" "$scratch/$t" "corpus/$t" "$(seeds_of "$t")" -- \
        -max_total_time="$seconds" -timeout=60 -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log"
        echo "fuzz smoke: $t failed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    echo "$t: $(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$t.log" | tail -n1) executions, no crash"
done
