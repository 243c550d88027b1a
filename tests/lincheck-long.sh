#!/usr/bin/env bash
# A long linearizability run: `zkd lincheck run` seed after seed, every fault kind (root; kill and
# pause only otherwise), zkd and then, with ORACLE=1, Apache ZooKeeper 3.8 on the same seeds.
# Stops at the first seed that fails and keeps its history and the nodes' logs.
#   ZKD_LINCHECK_SECS  seconds per seed (default 300)    ZKD_LINCHECK_SEEDS  how many (default 6)
#   ZKD_LINCHECK_SEED  first seed (default: from the clock)    CLIENTS (default 8)
#   NODES  nodes per run (default 1; 3 for an ensemble)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${ZKD_LINCHECK_SECS:-300}
seeds=${ZKD_LINCHECK_SEEDS:-6}
seed=${ZKD_LINCHECK_SEED:-$(date +%s)}
faults=kill,pause
[ "$(id -u)" -eq 0 ] && faults=all
cargo build --release --bins
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/zkd"
out=$(mktemp -d /tmp/zkd-lincheck-long.XXXXXX)
servers=zkd
[ "${ORACLE:-0}" = 1 ] && servers="zkd oracle"
for ((i = 0; i < seeds; i++)); do
  s=$((seed + i))
  for server in $servers; do
    echo "== seed $s on $server ($secs s, faults $faults)"
    f=$faults
    # Apache ZooKeeper exits on a full disk (the nemesis only frees it): no disk-full for it.
    [ "$server" = oracle ] && f=${faults/all/kill,pause,clock,fs-shutdown,slow-disk}
    if ! nice -n 10 "$bin" lincheck run --server "$server" --nodes "${NODES:-1}" --seed "$s" --duration "$secs" \
        --clients "${CLIENTS:-8}" --faults "$f" --out "$out/lincheck-$server-$s.jsonl"; then
      echo "== FAILED: seed $s on $server; history in $out/lincheck-$server-$s.jsonl"
      exit 1
    fi
    rm -f "$out/lincheck-$server-$s.jsonl"
  done
done
echo "== $seeds seeds of $secs s passed ($servers)"
