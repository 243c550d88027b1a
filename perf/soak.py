#!/usr/bin/env python3
"""perf/soak.py — hours of mixed load on one zkd, with periodic faults, sampled into a CSV.

Clients (kazoo, one session each) run a mixed load on a small tree: create, setData, getData after
sync, exists, getChildren, delete, and multi. Every INTERVAL seconds a sample is written: the
server's RSS, open fds and threads (from /proc), ops done in the interval, latency percentiles of
those ops, connection-loss retries and failed ops. With --kill-every N the server is killed with
SIGKILL every N seconds and restarted on the same data dir and port (a power cut as the process
sees it; fsync is on). At the end every acknowledged create that was not deleted must exist, and
every acknowledged delete must be gone: a lost or invented znode fails the run.

Flat lines are the goal: RSS, fds and threads must not drift while the load is steady. The
summary compares the first and last quarter of the samples of the last server process.

    python3 perf/soak.py --minutes 60 [--clients 8] [--interval 5] [--kill-every 0]
                         [--zkd target/release/zkd] [--csv perf/soak-1node.csv] [--svg perf/soak-1node.svg]

Exit status 0 only if no op failed and no acknowledged write was lost.
"""
import argparse
import csv
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, NodeExistsError, NoNodeError, OperationTimeoutError, SessionExpiredError
from kazoo.retry import KazooRetry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ["t_s", "pid", "rss_kib", "fds", "threads", "ops", "ops_per_s", "p50_ms", "p99_ms", "p999_ms",
          "max_ms", "retries", "failed"]


def log(*a):
    print("[soak]", *a, file=sys.stderr, flush=True)


def proc_stats(pid):
    """(RSS KiB, open fds, threads) of a live process, from /proc."""
    rss = threads = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid)), threads


def ruok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"ruok")
            return s.recv(16) == b"imok"
    except OSError:
        return False


class Server:
    """One zkd; the first start binds port 0 and reads the port back, restarts reuse it."""

    def __init__(self, binary, workdir):
        self.binary, self.dir = binary, workdir
        self.port, self.proc, self.starts = 0, None, 0

    def start(self):
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write("tickTime=500\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
                    "maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n"
                    % (os.path.join(self.dir, "data"), self.port))
        port_file = os.path.join(self.dir, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        out = open(os.path.join(self.dir, "server.log"), "a")
        self.proc = subprocess.Popen([self.binary, "serve", "--config", cfg, "--port-file", port_file],
                                     stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("zkd exited during start (%s); log in %s" % (self.proc.returncode, self.dir))
            if self.port == 0 and os.path.exists(port_file):
                with open(port_file) as f:
                    text = f.read().strip()
                self.port = int(text) if text else 0
            if self.port and ruok(self.port):
                self.starts += 1
                return
            time.sleep(0.05)
        raise RuntimeError("zkd did not start within 60 s; log in %s" % self.dir)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat_ms, self.retries, self.failed, self.ops_total = [], 0, 0, 0
        self.errors = []

    def take(self):
        with self.lock:
            lat, r, f = self.lat_ms, self.retries, self.failed
            self.lat_ms, self.retries, self.failed = [], 0, 0
        return lat, r, f


PRESENT_MAX = 64


class Worker(threading.Thread):
    """One session. Writes are retried on connection loss; a create or delete whose outcome is
    unknown (the reply was lost) is resolved by reading, so the end check knows what must exist."""

    def __init__(self, idx, hosts, stats, stop, seed):
        super().__init__(daemon=True)
        self.idx, self.stats, self.stop_ev = idx, stats, stop
        self.rng = random.Random(seed)
        self.base = "/soak/c%d" % idx
        self.present, self.gone = set(), set()
        self.seq = 0
        self.zk = KazooClient(hosts=hosts, timeout=10,
                              connection_retry=KazooRetry(max_tries=-1, delay=0.02, max_delay=0.2))

    def call(self, fn, *a, **kw):
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                r = fn(*a, **kw)
                with self.stats.lock:
                    self.stats.lat_ms.append((time.monotonic() - t0) * 1000)
                    self.stats.ops_total += 1
                return r
            except (ConnectionLoss, OperationTimeoutError, SessionExpiredError):
                with self.stats.lock:
                    self.stats.retries += 1
                time.sleep(0.02)
        raise InterruptedError

    def op(self):
        r = self.rng.random()
        # The tree stays the same size (PRESENT_MAX per client at most), so what the samples show
        # is the server's drift, not a growing workload.
        if len(self.present) >= PRESENT_MAX and r < 0.25:
            r = 0.3  # a delete instead of a create
        if r < 0.25 or len(self.present) < 4:
            self.seq += 1
            path = "%s/n%d" % (self.base, self.seq)
            try:
                self.call(self.zk.create, path, b"v")
            except NodeExistsError:
                pass  # the first try was applied, its reply lost
            self.present.add(path)
        elif r < 0.45:
            path = self.rng.choice(sorted(self.present))
            try:
                self.call(self.zk.delete, path)
            except NoNodeError:
                pass  # the first try was applied
            self.present.discard(path)
            self.gone.add(path)
        elif r < 0.65:
            path = self.rng.choice(sorted(self.present))
            self.call(self.zk.set, path, os.urandom(self.rng.randint(1, 512)))
        elif r < 0.85:
            path = self.rng.choice(sorted(self.present))
            self.call(self.zk.sync, path)
            self.call(self.zk.get, path)
        elif r < 0.95:
            self.call(self.zk.get_children, self.base)
        else:
            path = self.rng.choice(sorted(self.present))

            def multi():
                # A transaction commits once: a retry builds a new one.
                t = self.zk.transaction()
                t.check(path, -1)
                t.set_data(path, b"multi")
                return t.commit()

            self.call(multi)

    def run(self):
        try:
            self.zk.start(timeout=60)
            self.call(self.zk.ensure_path, self.base)
            while not self.stop_ev.is_set():
                self.op()
        except InterruptedError:
            pass
        except Exception as e:  # noqa: BLE001 (any other error is a failed op, reported)
            with self.stats.lock:
                self.stats.failed += 1
                self.stats.errors.append("client %d: %r" % (self.idx, e))

    def verify(self):
        """Acknowledged creates exist, acknowledged deletes are gone."""
        # Every path lives under the client's own parent: one listing answers for all of them.
        here = {"%s/%s" % (self.base, c) for c in self.call(self.zk.get_children, self.base)}
        lost = [p for p in self.present if p not in here]
        invented = [p for p in self.gone if p in here]
        self.zk.stop()
        self.zk.close()
        return lost, invented


def pct(sorted_vals, q):
    if not sorted_vals:
        return 0.0
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def write_svg(rows, path):
    """Four small line charts (RSS, fds, threads, p99) over time, no plotting library needed."""
    series = [("rss_kib", "RSS (KiB)"), ("fds", "open fds"), ("threads", "threads"), ("p99_ms", "p99 latency (ms)")]
    w, h, pad = 720, 150, 40
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
             'font-size="11">' % (w, h * len(series))]
    t_max = max(float(r["t_s"]) for r in rows) or 1
    for i, (key, label) in enumerate(series):
        vals = [float(r[key]) for r in rows]
        top = max(vals) * 1.1 or 1
        y0 = i * h
        pts = " ".join("%.1f,%.1f" % (pad + (w - 2 * pad) * float(r["t_s"]) / t_max,
                                      y0 + h - pad / 2 - (h - pad) * float(r[key]) / top) for r in rows)
        parts.append('<text x="%d" y="%d">%s (0 to %.0f; %.0f s)</text>' % (pad, y0 + 14, label, top, t_max))
        parts.append('<polyline fill="none" stroke="steelblue" stroke-width="1.5" points="%s"/>' % pts)
        parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>' % (pad, y0 + h - pad / 2, w - pad,
                                                                               y0 + h - pad / 2))
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


def drift(rows, key):
    """Median of the last quarter over the median of the first quarter, in %."""
    n = len(rows) // 4
    if n == 0:
        return 0.0
    first = statistics.median(float(r[key]) for r in rows[:n])
    last = statistics.median(float(r[key]) for r in rows[-n:])
    return (last - first) * 100.0 / first if first else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--interval", type=float, default=5)
    ap.add_argument("--kill-every", type=float, default=0, help="SIGKILL and restart every N s (0: never)")
    ap.add_argument("--zkd", default=os.environ.get("ZKD_BIN", os.path.join(ROOT, "target", "release", "zkd")))
    ap.add_argument("--csv", default=None)
    ap.add_argument("--svg", default=None)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="zkd-soak-")
    server = Server(args.zkd, workdir)
    server.start()
    hosts = "127.0.0.1:%d" % server.port
    log("zkd on %s, data in %s; %d clients for %.1f min, kill -9 every %s s" %
        (hosts, workdir, args.clients, args.minutes, args.kill_every or "never"))
    stats, stop = Stats(), threading.Event()
    workers = [Worker(i, hosts, stats, stop, args.seed * 1000 + i) for i in range(args.clients)]
    for w in workers:
        w.start()
    rows, t_start = [], time.monotonic()
    end = t_start + args.minutes * 60
    next_kill = t_start + args.kill_every if args.kill_every else None
    kills = 0
    try:
        while time.monotonic() < end:
            time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
            now = time.monotonic()
            lat, retries, failed = stats.take()
            lat.sort()
            rss, fds, threads = proc_stats(server.proc.pid)
            row = {"t_s": "%.1f" % (now - t_start), "pid": server.proc.pid, "rss_kib": rss, "fds": fds,
                   "threads": threads, "ops": len(lat), "ops_per_s": "%.0f" % (len(lat) / args.interval),
                   "p50_ms": "%.2f" % pct(lat, 0.5), "p99_ms": "%.2f" % pct(lat, 0.99),
                   "p999_ms": "%.2f" % pct(lat, 0.999), "max_ms": "%.2f" % (lat[-1] if lat else 0),
                   "retries": retries, "failed": failed}
            rows.append(row)
            log(" ".join("%s=%s" % (k, row[k]) for k in FIELDS))
            if next_kill and now >= next_kill:
                server.kill9()
                kills += 1
                server.start()
                next_kill = time.monotonic() + args.kill_every
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    lost, invented = [], []
    for w in workers:
        w.stop_ev = threading.Event()  # verification may retry again
        a, b = w.verify()
        lost += a
        invented += b
    server.stop()
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=FIELDS)
            wr.writeheader()
            wr.writerows(rows)
    if args.svg and rows:
        write_svg(rows, args.svg)
    last_pid = rows[-1]["pid"] if rows else None
    tail = [r for r in rows if r["pid"] == last_pid]
    failed = sum(int(r["failed"]) for r in rows)
    summary = {
        "minutes": args.minutes, "ops": stats.ops_total, "kills": kills, "retries": sum(int(r["retries"]) for r in rows),
        "failed": failed, "lost": len(lost), "invented": len(invented),
        "rss_drift_pct": round(drift(tail, "rss_kib"), 1), "fds": (tail[0]["fds"], tail[-1]["fds"]) if tail else None,
        "threads": (tail[0]["threads"], tail[-1]["threads"]) if tail else None,
        "p99_ms_median": round(statistics.median(float(r["p99_ms"]) for r in rows), 2) if rows else None,
    }
    print("SOAK", " ".join("%s=%s" % kv for kv in summary.items()), flush=True)
    for e in stats.errors[:10]:
        log("error:", e)
    for p in (lost + invented)[:10]:
        log("lost" if p in lost else "invented", p)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if failed == 0 and not lost and not invented and rows else 1


if __name__ == "__main__":
    sys.exit(main())
