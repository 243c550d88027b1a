#!/usr/bin/env bash
# perf/ab.sh — one zkd binary against another (before/after a change), same workloads, alternating.
#
# Each repetition runs every workload against A then B (B then A on even repetitions), each on a
# fresh data directory with fsync on; the server is pinned to SERVER_CPU, the load generator to
# LOAD_CPU. Prints one line per run (workload, label, ops/s, reads the server ordered behind its
# session's writes) and the medians.
#
#   A=path/to/zkd-before B=path/to/zkd-after perf/ab.sh
#   WORKLOADS ["read write mixed"] REPS [3] DURATION [8] SESSIONS [16] DEPTH [8] PORT [21955]
#   BENCH [B's "bench" subcommand] LOAD_CPU [0] SERVER_CPU [1] DATA_DIR [perf/.data-ab]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${A:?set A to the first zkd binary}" "${B:?set B to the second zkd binary}"
BENCH=${BENCH:-$B bench}
WORKLOADS=${WORKLOADS:-"read write mixed"}
REPS=${REPS:-3}
DURATION=${DURATION:-8}
SESSIONS=${SESSIONS:-16}
DEPTH=${DEPTH:-8}
PORT=${PORT:-21955}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
DATA_DIR=${DATA_DIR:-$ROOT/perf/.data-ab}
read -r -a BENCH_CMD <<<"$BENCH"
RESULTS=$(mktemp)

run_one() { # binary label workload
  local bin=$1 label=$2 wl=$3
  local dir=$DATA_DIR/$label
  rm -rf "$dir" && mkdir -p "$dir/data"
  printf 'tickTime=2000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n' \
    "$dir/data" "$PORT" >"$dir/zoo.cfg"
  taskset -c "$SERVER_CPU" "$bin" serve --config "$dir/zoo.cfg" 2>"$dir/log" &
  local pid=$! ready=no
  for _ in $(seq 1 200); do
    if [[ $(echo ruok | nc -q1 127.0.0.1 "$PORT" 2>/dev/null) == imok ]]; then ready=yes; break; fi
    sleep 0.1
  done
  [[ $ready == yes ]] || { echo "$label did not start (see $dir/log)" >&2; kill $pid; exit 1; }
  local extra=()
  [[ $wl == mixed ]] && extra=(--read-pct 90)
  local ops
  ops=$(taskset -c "$LOAD_CPU" "${BENCH_CMD[@]}" --servers "127.0.0.1:$PORT" --workload "$wl" "${extra[@]}" \
    --sessions "$SESSIONS" --depth "$DEPTH" --duration "$DURATION" --warmup 2 --no-progress --json 2>/dev/null |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_s"]))')
  local ordered
  ordered=$(echo mntr | nc -q1 127.0.0.1 "$PORT" | awk '/zkd_reads_ordered_behind_writes/ {print $2}')
  kill $pid; wait $pid 2>/dev/null || true
  echo "$wl $label $ops ${ordered:--}" | tee -a "$RESULTS"
}

for rep in $(seq 1 "$REPS"); do
  for wl in $WORKLOADS; do
    if ((rep % 2)); then run_one "$A" A "$wl"; run_one "$B" B "$wl"
    else run_one "$B" B "$wl"; run_one "$A" A "$wl"; fi
  done
done
echo "medians (ops/s):"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for wl in dict.fromkeys(r[0] for r in rows):
    a = statistics.median(int(r[2]) for r in rows if r[0] == wl and r[1] == "A")
    b = statistics.median(int(r[2]) for r in rows if r[0] == wl and r[1] == "B")
    print(f"  {wl:8} A {a:>9.0f}  B {b:>9.0f}  B/A {b / a:.3f}")
PY
