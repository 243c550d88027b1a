#!/usr/bin/env bash
# Builds every libFuzzer target in fuzz/ (cargo-fuzz) and runs each for a fixed time, one
# after the other; fails if any target finds a crash, a panic, a timeout or runs out of memory.
#
#   tests/fuzz.sh                              # the suite's short run: 15 s per target
#   ZKD_FUZZ_SECONDS=3600 tests/fuzz.sh        # the long run: an hour per target
#   ZKD_FUZZ_TARGETS="txn peer" tests/fuzz.sh  # some targets only
#
# Toolchain: cargo-fuzz passes -Z flags to rustc (-Zsanitizer=address and the coverage passes),
# which only a nightly compiler accepts, or a stable one with RUSTC_BOOTSTRAP=1. This script uses
# the stable toolchain the rest of zkd is built and tested with, with RUSTC_BOOTSTRAP=1 (checked:
# cargo-fuzz 0.13 builds and runs every target with ASan that way), so the fuzzed code is compiled
# by the same compiler as the tested code and nothing else needs installing.
# ZKD_FUZZ_TOOLCHAIN=nightly uses `cargo +nightly fuzz` instead and fails if nightly is not
# installed. cargo-fuzz is installed (cargo install) when missing; if that fails, so does this.
#
# Corpora: new inputs go to fuzz/corpus-work/<target> (not in git; kept between runs, so long
# runs build on earlier ones), the committed seeds (fuzz/corpus/<target>, from real captures) are
# read too. A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
# `fuzz/target/x86_64-unknown-linux-gnu/release/<target> <file>` and minimise it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz tmin -a <target> <file>` (in fuzz/).
#
# Each target's executions (libFuzzer's final stats) go to fuzz/last-run.md (ZKD_FUZZ_REPORT).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${ZKD_FUZZ_SECONDS:-15}
report=${ZKD_FUZZ_REPORT:-$root/fuzz/last-run.md}
toolchain=${ZKD_FUZZ_TOOLCHAIN:-stable}
# cargo-fuzz's own target directory (fuzz/target), whatever the caller's CARGO_TARGET_DIR says.
unset CARGO_TARGET_DIR

if [ "$toolchain" = nightly ]; then
  if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: ZKD_FUZZ_TOOLCHAIN=nightly, but no nightly toolchain is installed (rustup toolchain install nightly)" >&2
    exit 1
  fi
  cargo_fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  cargo_fuzz=(cargo fuzz)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz || { echo "fuzz: cannot install cargo-fuzz" >&2; exit 1; }
fi

targets=${ZKD_FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^zkd-fuzz$')}

echo "== building the fuzz targets (cargo-fuzz, ASan, debug assertions on)"
(cd fuzz && nice -n 10 "${cargo_fuzz[@]}" build --debug-assertions)
bin_dir=$root/fuzz/target/x86_64-unknown-linux-gnu/release

{
  echo "# Fuzz run, $(date -u '+%Y-%m-%d %H:%M UTC'), ${seconds} s per target"
  echo
  echo "| target | executions | exec/s | corpus inputs | result |"
  echo "|---|---:|---:|---:|---|"
} >"$report"

failed=()
for t in $targets; do
  [ -x "$bin_dir/$t" ] || { echo "fuzz: no binary for target $t" >&2; exit 1; }
  work=$root/fuzz/corpus-work/$t
  artifacts=$root/fuzz/artifacts/$t
  mkdir -p "$work" "$artifacts" "$root/fuzz/corpus/$t"
  log=$root/fuzz/artifacts/$t.log
  echo "== $t (${seconds} s)"
  set +e
  # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: 2 GiB is a leak or a bomb.
  nice -n 10 "$bin_dir/$t" "$work" "$root/fuzz/corpus/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$work" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc): $(grep -m1 -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY' "$log" || echo 'see log')"
    failed+=("$t")
    echo "   $result"
    echo "   input: $(ls -t "$artifacts" | head -1 | sed "s|^|$artifacts/|"); log: $log"
  fi
  echo "   ${execs:-?} executions (${rate:-?}/s), corpus $corpus"
  echo "| $t | ${execs:-?} | ${rate:-?} | $corpus | $result |" >>"$report"
done

echo "== fuzz summary (also in $report)"
cat "$report"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
