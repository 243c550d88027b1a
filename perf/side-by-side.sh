#!/usr/bin/env bash
# perf/side-by-side.sh — Apache ZooKeeper 3.8 (Debian package) vs zkd, same workloads, same disk.
#
# Both servers run standalone with fsync on, data on the same filesystem, pinned to SERVER_CPU
# (the one not being measured is stopped with SIGSTOP meanwhile, so it cannot steal the core);
# the load generator (`zkd bench`) is pinned to LOAD_CPU. For each repetition, each workload runs
# against ZooKeeper then zkd (alternating), REPS times; the table shows medians and zkd/ZK ratios,
# the ratio of each back-to-back pair, and the CPU steal the host showed meanwhile.
# Writes perf/results/{zk,zkd}-WORKLOAD.hgrm (the median run), perf/results/WORKLOAD.svg (both
# on one chart) and updates the side-by-side section of perf/RESULTS.md.
#
# If zkd is not built or does not answer, the script says so and measures ZooKeeper alone.
#
# Ensemble mode: `perf/side-by-side.sh --ensemble [perf/ensemble.py options]` runs a 3-node zkd
# ensemble beside a 3-node ZooKeeper 3.8 ensemble instead (same settings, fsync on, alternating
# runs, failover after kill -9 of the leader) and updates the "Ensembles: side by side" section
# of perf/RESULTS.md; see perf/ensemble.py for its options.
#
# Environment knobs (defaults in brackets):
#   BENCH        load generator command ["target/release/zkd bench", else "target/release/zkd-tools bench"]
#   ZKD_BIN      zkd binary [target/release/zkd]          ONLY  zk|zkd|both [both]
#   WORKLOADS    ["read write mixed create-delete connect-storm"]
#   DURATION [10] WARMUP [2] REPS [3] SESSIONS [16] DEPTH [8] VALUE_SIZE [100]
#   DATA_DIR     where both servers keep data [perf/.data]  ZK_PORT [21910] ZKD_PORT [21911]
#   LOAD_CPU [0] SERVER_CPU [1]
#   OUT          hgrm/svg/raw results [perf/results]   RESULTS_MD  file whose section is rewritten [perf/RESULTS.md]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${1:-}" == "--ensemble" ]]; then
  shift
  exec python3 "$ROOT/perf/ensemble.py" --zkd "${ZKD_BIN:-$ROOT/target/release/zkd}" \
    --results-md "${RESULTS_MD:-$ROOT/perf/RESULTS.md}" "$@"
fi
OUT=${OUT:-$ROOT/perf/results}
RESULTS_MD=${RESULTS_MD:-$ROOT/perf/RESULTS.md}
RAW=$OUT/raw
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPS=${REPS:-3}
SESSIONS=${SESSIONS:-16}
DEPTH=${DEPTH:-8}
VALUE_SIZE=${VALUE_SIZE:-100}
WORKLOADS=${WORKLOADS:-"read write mixed create-delete connect-storm"}
DATA_DIR=${DATA_DIR:-$ROOT/perf/.data}
ZK_PORT=${ZK_PORT:-21910}
ZKD_PORT=${ZKD_PORT:-21911}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
ONLY=${ONLY:-both}
ZKD_BIN=${ZKD_BIN:-$ROOT/target/release/zkd}

log() { echo "[side-by-side] $*" >&2; }

if [[ -z "${BENCH:-}" ]]; then
  if [[ -x $ROOT/target/release/zkd ]] && "$ROOT/target/release/zkd" bench --help >/dev/null 2>&1; then
    BENCH="$ROOT/target/release/zkd bench"
  elif [[ -x $ROOT/target/release/zkd-tools ]]; then
    BENCH="$ROOT/target/release/zkd-tools bench"
  else
    log "no load generator: build it first (cargo build --release), or set BENCH='path/to/zkd bench'"
    exit 2
  fi
fi
read -r -a BENCH_CMD <<<"$BENCH"

PIN_LOAD=()
PIN_SERVER=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
  PIN_LOAD=(taskset -c "$LOAD_CPU")
  PIN_SERVER=(taskset -c "$SERVER_CPU")
else
  log "taskset unavailable or fewer than 2 CPUs: not pinning"
fi

mkdir -p "$OUT" "$RAW" "$DATA_DIR"
STARTED_PIDS=()
cleanup() {
  for p in "${STARTED_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
    kill -CONT "$p" 2>/dev/null || true # a stopped server acts on the TERM once continued
  done
  for p in "${STARTED_PIDS[@]}"; do
    wait "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

# A server is ready when a 1-session connect-storm completes at least one handshake.
wait_ready() { # addr seconds
  local addr=$1 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if "${BENCH_CMD[@]}" --servers "$addr" --workload connect-storm --sessions 1 --warmup 0 --duration 0.2 \
      --no-progress --json 2>/dev/null | grep -q '"ops_ok": [1-9]'; then
      return 0
    fi
    sleep 0.5
  done
  return 1
}

# A connect storm leaves tens of thousands of TIME_WAIT sockets on loopback for 60 s; they slow
# the next run's port search in connect() (measured: zkd 6.7-8.2k sessions/s right after a ZooKeeper
# storm, 10.1-10.3k once they had drained). So each storm starts with them gone, whoever ran before.
wait_time_wait_drained() {
  local deadline=$((SECONDS + 75))
  command -v ss >/dev/null || return 0
  while ((SECONDS < deadline)) && (($(ss -Htan state time-wait | wc -l) > 500)); do
    sleep 2
  done
}

# ---- Apache ZooKeeper 3.8 ----
ZK_AVAILABLE=no
ZK_WHY=""
start_zk() {
  local dir=$DATA_DIR/zk
  rm -rf "$dir" && mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<EOF
tickTime=2000
dataDir=$dir/data
clientPort=$ZK_PORT
maxClientCnxns=0
forceSync=yes
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr
EOF
  if ! command -v java >/dev/null || [[ ! -f /usr/share/java/zookeeper.jar ]]; then
    ZK_WHY="java or /usr/share/java/zookeeper.jar missing (apt-get install zookeeper)"
    return 1
  fi
  "${PIN_SERVER[@]}" java -Xms512m -Xmx2g -Dzookeeper.admin.enableServer=false \
    -cp "/usr/share/java/*:/etc/zookeeper/conf" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" \
    >"$dir/server.log" 2>&1 &
  ZK_PID=$!
  STARTED_PIDS+=($ZK_PID)
  if wait_ready "127.0.0.1:$ZK_PORT" 40; then
    ZK_AVAILABLE=yes
  else
    ZK_WHY="did not answer on port $ZK_PORT within 40 s (see $dir/server.log)"
    return 1
  fi
}

# ---- zkd ----
ZKD_AVAILABLE=no
ZKD_WHY=""
start_zkd() {
  local dir=$DATA_DIR/zkd
  rm -rf "$dir" && mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<EOF
tickTime=2000
dataDir=$dir/data
clientPort=$ZKD_PORT
maxClientCnxns=0
forceSync=yes
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr
EOF
  if [[ ! -x $ZKD_BIN ]]; then
    ZKD_WHY="$ZKD_BIN is not built (cargo build --release)"
    return 1
  fi
  "${PIN_SERVER[@]}" "$ZKD_BIN" serve --config "$dir/zoo.cfg" >"$dir/server.log" 2>&1 &
  local pid=$!
  ZKD_PID=$pid
  STARTED_PIDS+=($pid)
  if wait_ready "127.0.0.1:$ZKD_PORT" 20; then
    ZKD_AVAILABLE=yes
  else
    ZKD_WHY="did not answer on port $ZKD_PORT within 20 s: $(tail -n 3 "$dir/server.log" 2>/dev/null | tr '\n' ' ')"
    kill "$pid" 2>/dev/null || true
    return 1
  fi
}

[[ $ONLY != zkd ]] && { start_zk || log "ZooKeeper unavailable: $ZK_WHY"; }
[[ $ONLY != zk ]] && { start_zkd || log "zkd unavailable: $ZKD_WHY"; }
[[ $ONLY == zk ]] && ZKD_WHY="not run (ONLY=zk)"
[[ $ZK_AVAILABLE == no && $ZKD_AVAILABLE == no ]] && { log "no server to measure"; exit 1; }

SERVERS=()
[[ $ZK_AVAILABLE == yes ]] && SERVERS+=(zk)
[[ $ZKD_AVAILABLE == yes ]] && SERVERS+=(zkd)
log "measuring: ${SERVERS[*]}; workloads: $WORKLOADS; $REPS reps x (${WARMUP}+${DURATION}) s"

# Steal time (the hypervisor running someone else on our vCPUs) over a run, in percent: on a
# shared host it is what makes one repetition differ from the next.
cpu_ticks() { awk '/^cpu / {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
steal_pct() { # "steal0 total0" "steal1 total1"
  echo "$1 $2" | awk '{ d = $4 - $2; printf "%.1f\n", (d > 0 ? ($3 - $1) * 100 / d : 0) }'
}

rm -f "$RAW"/*.json "$RAW"/*.hgrm "$RAW"/*.steal
for rep in $(seq 1 "$REPS"); do
  for w in $WORKLOADS; do
    for s in "${SERVERS[@]}"; do
      port=$ZK_PORT
      [[ $s == zkd ]] && port=$ZKD_PORT
      log "rep $rep/$REPS $w on $s"
      # The other server shares the core: stopped while this one is measured, so its leftover
      # work (a JVM's GC and JIT, a snapshot, a log spare) does not land in this run.
      other=""
      [[ $s == zkd && -n ${ZK_PID:-} ]] && other=$ZK_PID
      [[ $s == zk && -n ${ZKD_PID:-} ]] && other=$ZKD_PID
      [[ -n $other ]] && kill -STOP "$other" 2>/dev/null
      [[ $w == connect-storm ]] && wait_time_wait_drained
      t0=$(cpu_ticks)
      "${PIN_LOAD[@]}" "${BENCH_CMD[@]}" --servers "127.0.0.1:$port" --workload "$w" --sessions "$SESSIONS" \
        --depth "$DEPTH" --value-size "$VALUE_SIZE" --warmup "$WARMUP" --duration "$DURATION" --no-progress \
        --json --hgrm "$RAW/$s-$w-$rep.hgrm" >"$RAW/$s-$w-$rep.json" 2>"$RAW/$s-$w-$rep.txt" ||
        log "bench failed: $s $w rep $rep (see $RAW/$s-$w-$rep.txt)"
      steal_pct "$t0" "$(cpu_ticks)" >"$RAW/$s-$w-$rep.steal"
      [[ -n $other ]] && kill -CONT "$other" 2>/dev/null
    done
  done
done

# ---- medians, table, hgrm + plots, RESULTS.md ----
DISK_DESC=$(df -T "$DATA_DIR" | awk 'NR==2 {print $1 " (" $2 ")"}')
DEV=$(df "$DATA_DIR" | awk 'NR==2 {print $1}' | sed 's#/dev/##; s#[0-9]*$##')
if [[ -r /sys/block/$DEV/queue/rotational ]]; then
  rot=$(cat "/sys/block/$DEV/queue/rotational")
  model=$(cat "/sys/block/$DEV/device/model" 2>/dev/null | xargs || true)
  DISK_DESC="$DISK_DESC, $([[ $rot == 1 ]] && echo "rotational per kernel" || echo "non-rotational per kernel")${model:+, $model}"
fi
export ROOT OUT RAW RESULTS_MD REPS WORKLOADS SESSIONS DEPTH VALUE_SIZE DURATION WARMUP ZK_AVAILABLE ZKD_AVAILABLE ZK_WHY ZKD_WHY DISK_DESC
export CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
export NPROC="$(nproc)" KERNEL="$(uname -r)" PINNING="${PIN_LOAD[*]:-none} / ${PIN_SERVER[*]:-none}"
export ZK_VERSION="$(ls /usr/share/java/zookeeper-3*.jar 2>/dev/null | head -1 | sed 's#.*/zookeeper-##; s#\.jar##')"
python3 "$ROOT/perf/summarize.py"

for w in $WORKLOADS; do
  args=()
  if [[ -f $OUT/zk-$w.hgrm ]]; then
    args=(--replot "$OUT/zk-$w.hgrm" --label "ZooKeeper ${ZK_VERSION:-3.8}")
    [[ -f $OUT/zkd-$w.hgrm ]] && args+=(--compare "$OUT/zkd-$w.hgrm" --compare-label zkd)
  elif [[ -f $OUT/zkd-$w.hgrm ]]; then
    args=(--replot "$OUT/zkd-$w.hgrm" --label zkd)
  fi
  ((${#args[@]})) && { "${BENCH_CMD[@]}" "${args[@]}" --plot "$OUT/$w.svg" || log "plot failed for $w"; }
done
log "done: $OUT, $RESULTS_MD"
