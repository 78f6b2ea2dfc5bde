#!/usr/bin/env bash
# The long fuzz run: every cargo-fuzz target in fuzz/ for SECONDS each (default 600),
# one after another, one libFuzzer process at a time (one core). Each target starts from its
# committed corpus (fuzz/corpus/<target>/) and the hand-written seeds (fuzz/seeds/), and adds
# what it finds to the corpus. A crash stops that target, leaves the input in
# fuzz/artifacts/<target>/ and makes the script fail; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-...   (in fuzz/)
# Prints each target's executions and crashes at the end; logs are in fuzz/artifacts/<target>.log.
#
#   scripts/fuzz.sh [SECONDS] [--cmin]
#
# --cmin: afterwards, shrink each corpus to the inputs that add coverage, as committed (about
# 1.4 MB for the three targets; see minimise below). TARGETS="scenario samples" limits the run to
# those targets.
#
# Stable Rust: cargo-fuzz builds with nightly-only flags (-Zsanitizer=address and friends), which
# the stable compiler accepts with RUSTC_BOOTSTRAP=1, set here; the sanitizer runtimes ship with
# the stable x86_64-unknown-linux-gnu standard library. libfuzzer-sys compiles libFuzzer with the
# system C++ compiler (g++). The root .cargo/config.toml's `+crt-static` (no sanitizer links
# statically) does not apply: cargo-fuzz sets RUSTFLAGS, which replaces configured rustflags.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600
cmin=0
for arg in "$@"; do
    case "$arg" in
        --cmin) cmin=1 ;;
        ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [--cmin]" >&2; exit 2 ;;
        *) seconds=$arg ;;
    esac
done

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
targets=${TARGETS:-$(cargo fuzz list)}
# Seeds per target: the report target reads samples files.
seeds_of() { case "$1" in report) echo seeds/samples ;; *) echo "seeds/$1" ;; esac; }

cargo fuzz build
mkdir -p artifacts
failed=0
summary=""
for t in $targets; do
    mkdir -p "corpus/$t"
    log="artifacts/$t.log"
    echo "== $t: fuzzing for ${seconds}s (log: fuzz/$log)"
    old=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
    rc=0
    # The first corpus directory receives new inputs; the seeds are only read.
    cargo fuzz run "$t" "corpus/$t" "$(seeds_of "$t")" -- \
        -max_total_time="$seconds" -timeout=60 -print_final_stats=1 >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    crashes=$(($(find "artifacts/$t" -type f 2>/dev/null | wc -l) - old))
    line="$t: ${execs:-?} executions in ${seconds}s, exit $rc, $crashes new crash/timeout/oom input(s) in fuzz/artifacts/$t/"
    echo "$line"
    summary+="$line"$'\n'
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        tail -n 40 "$log"
    fi
done

# Minimising: `cargo fuzz cmin` keeps every input that adds a feature, and libFuzzer's features
# count how often each edge ran, so it keeps many big files that only run loops more often (5 MB
# after the first 10-minute runs). So: cmin, keep the inputs up to a size per target, then add
# back only those bigger inputs that reach an edge the small ones do not (a merge with
# -use_counters=0, whose features are edges alone). Edge coverage is unchanged.
minimise() {
    local t=$1 max=$2 big
    big=$(mktemp -d)
    cargo fuzz cmin "$t" "corpus/$t" >"artifacts/$t.cmin.log" 2>&1
    find "corpus/$t" -type f -size +"${max}c" -exec mv -t "$big" {} +
    cargo fuzz run "$t" "corpus/$t" "$big" -- -merge=1 -use_counters=0 >>"artifacts/$t.cmin.log" 2>&1
    rm -rf "$big"
}
if [ "$cmin" -eq 1 ]; then
    for t in $targets; do
        echo "== $t: minimising corpus/$t"
        before=$(find "corpus/$t" -type f | wc -l)
        case "$t" in scenario) max=512 ;; *) max=2048 ;; esac
        minimise "$t" "$max"
        echo "$t: $before -> $(find "corpus/$t" -type f | wc -l) files," \
            "$(cat "corpus/$t"/* | wc -c) bytes"
    done
fi

echo
printf '%s' "$summary"
exit "$failed"
