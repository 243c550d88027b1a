#!/usr/bin/env bash
# perf/startup.sh — how long `zkd serve` takes to serve clients on a big data directory.
#
# Builds (once, kept in $DATA) two data directories as a server killed -9 leaves them: a snapshot
# of 1M znodes of 100 bytes plus the log before it (100k creates) and a log tail of 90k txns to
# replay (creates, setData, deletes; examples/startup_datadir.rs), logs zero-padded to 64 MiB:
#   p100 — the znodes under 100 parents;   flat — all under one parent.
# Then, RUNS times per shape, copies the pristine directory (so every run replays the same tail),
# spawns `zkd serve` and times spawn -> the first `srvr` answer on the client port (a connection
# made while the database loads waits in the listen backlog and is answered once shards run),
# kills the server with -9, and prints each run's "loaded database" line (per-phase times) and
# the median.
#
# Environment knobs (defaults in brackets):
#   RUNS [5]  SHAPES ["p100 flat"]  NODES [1000000]  TAIL [90000]  PORT [21931]
#   DATA      where the data directories are kept [target/startup-data]
#   ZKD_BIN   [target/release/zkd]   REBUILD=1 regenerates the data directories
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
SHAPES=${SHAPES:-"p100 flat"}
NODES=${NODES:-1000000}
TAIL=${TAIL:-90000}
PORT=${PORT:-21931}
DATA=${DATA:-$ROOT/target/startup-data}
ZKD_BIN=${ZKD_BIN:-$ROOT/target/release/zkd}
GEN=$ROOT/target/release/examples/startup_datadir

log() { echo "[startup] $*" >&2; }

if [[ ! -x $ZKD_BIN || ! -x $GEN ]]; then
  log "building zkd and the data-dir generator (release)"
  (cd "$ROOT" && cargo build --release --bin zkd --example startup_datadir)
fi

mkdir -p "$DATA"
for shape in $SHAPES; do
  case $shape in
    p100) parents=100 ;;
    flat) parents=1 ;;
    *) log "unknown shape $shape (p100|flat)"; exit 2 ;;
  esac
  pristine=$DATA/$shape-$NODES-$TAIL
  if [[ ${REBUILD:-0} == 1 ]]; then rm -rf "$pristine"; fi
  if [[ ! -d $pristine ]]; then
    log "writing $pristine"
    "$GEN" "$pristine.tmp" "$parents" "$NODES" "$TAIL"
    mv "$pristine.tmp" "$pristine"
  fi
done

python3 - "$ZKD_BIN" "$DATA" "$PORT" "$RUNS" "$NODES" "$TAIL" $SHAPES <<'EOF'
import os, re, shutil, signal, socket, statistics, subprocess, sys, time

zkd, data, port, runs, nodes, tail = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
shapes = sys.argv[7:]

def srvr_ok():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05) as s:
            s.settimeout(30)
            s.sendall(b"srvr")
            out = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                out += b
            return b"Zookeeper version" in out
    except OSError:
        return False

summary = []
for shape in shapes:
    pristine = os.path.join(data, f"{shape}-{nodes}-{tail}")
    run_dir = os.path.join(data, f"run-{shape}")
    times, lines = [], []
    for r in range(runs):
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(pristine, os.path.join(run_dir, "data"))
        cfg = os.path.join(run_dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(f"tickTime=2000\ndataDir={run_dir}/data\nclientPort={port}\nadmin.enableServer=false\n")
        errlog = open(os.path.join(run_dir, "zkd.log"), "w")
        t0 = time.monotonic()
        p = subprocess.Popen([zkd, "serve", "--config", cfg], stdout=errlog, stderr=subprocess.STDOUT)
        ok = False
        while time.monotonic() - t0 < 60 and p.poll() is None:
            if srvr_ok():
                ok = True
                break
            time.sleep(0.002)
        elapsed = time.monotonic() - t0
        p.send_signal(signal.SIGKILL)
        p.wait()
        errlog.close()
        text = open(os.path.join(run_dir, "zkd.log")).read()
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        m = re.search(r"loaded database in .*", text)
        if not ok:
            print(f"{shape} run {r+1}: zkd did not serve (exit {p.returncode}); log:\n{text}")
            sys.exit(1)
        times.append(elapsed)
        print(f"{shape} run {r+1}: serving after {elapsed*1000:.0f} ms; {m.group(0) if m else '(no load line)'}", flush=True)
        time.sleep(0.3)  # let the killed server's io_uring sockets go
    shutil.rmtree(run_dir, ignore_errors=True)
    summary.append((shape, statistics.median(times), min(times), max(times)))
for shape, med, lo, hi in summary:
    print(f"{shape}: spawn -> srvr answered, median {med*1000:.0f} ms (min {lo*1000:.0f}, max {hi*1000:.0f}) over {runs} runs")
EOF
