#!/usr/bin/env python3
"""perf/ensemble.py — a 3-node zkd ensemble beside a 3-node Apache ZooKeeper 3.8 ensemble.

Both ensembles run on this machine's loopback with the same zoo.cfg settings (tickTime,
initLimit, syncLimit, fsync on, data on the same filesystem). They alternate: while one is
measured, every process of the other is stopped with SIGSTOP, so it cannot steal a core. The load
generator (`zkd bench`) spreads its sessions over the three nodes, so reads are served by all
of them and writes go through the leader. REPS repetitions of each workload, each kind in turn.

Failover: a kazoo client writes continuously (one setData at a time, connection retries every
10 ms); the leader is killed with SIGKILL; the figure is the time from the kill to the first write
acknowledged after it (election, sync, the client's reconnect and its retried write included).
Each kill is followed by a restart of the killed node and a wait until the ensemble is whole.

Prints a table and, with --results-md, rewrites the "Ensembles: side by side" section of
perf/RESULTS.md. Ports are fixed per kind (perf runs on a quiet machine; tests never do this).

    python3 perf/ensemble.py [--reps 3] [--duration 10] [--workloads read,write] [--tick 500]
                             [--failovers 5] [--zkd target/release/zkd] [--results-md perf/RESULTS.md]
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZK_CLASSPATH = "/usr/share/java/*:/etc/zookeeper/conf"


def log(*a):
    print("[ensemble]", *a, file=sys.stderr, flush=True)


class Ensemble:
    def __init__(self, kind, base_port, args):
        self.kind, self.args = kind, args
        self.dir = os.path.join(args.data, kind)
        self.client = [base_port + i for i in (1, 2, 3)]
        self.quorum = [base_port + 10 + i for i in (1, 2, 3)]
        self.election = [base_port + 20 + i for i in (1, 2, 3)]
        self.procs = {}

    def cfg(self, i):
        d = os.path.join(self.dir, "n%d" % i)
        lines = [
            "tickTime=%d" % self.args.tick, "initLimit=10", "syncLimit=5", "dataDir=" + d,
            "clientPort=%d" % self.client[i - 1], "maxClientCnxns=0", "forceSync=yes",
            "admin.enableServer=false", "4lw.commands.whitelist=*",
        ]
        for j in (1, 2, 3):
            lines.append("server.%d=127.0.0.1:%d:%d" % (j, self.quorum[j - 1], self.election[j - 1]))
        return d, "\n".join(lines) + "\n"

    def setup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        for i in (1, 2, 3):
            d, text = self.cfg(i)
            os.makedirs(d)
            with open(os.path.join(d, "myid"), "w") as f:
                f.write("%d\n" % i)
            with open(os.path.join(d, "zoo.cfg"), "w") as f:
                f.write(text)

    def start(self, i):
        d = os.path.join(self.dir, "n%d" % i)
        out = open(os.path.join(d, "server.log"), "ab")
        if self.kind == "zk":
            cmd = ["java", "-Xms256m", "-Xmx1g", "-Dzookeeper.admin.enableServer=false", "-cp", ZK_CLASSPATH,
                   "org.apache.zookeeper.server.quorum.QuorumPeerMain", os.path.join(d, "zoo.cfg")]
        else:
            cmd = [self.args.zkd, "serve", "--config", os.path.join(d, "zoo.cfg")]
        self.procs[i] = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)

    def start_all(self):
        for i in (1, 2, 3):
            self.start(i)

    def hosts(self, nodes=(1, 2, 3)):
        return ",".join("127.0.0.1:%d" % self.client[i - 1] for i in nodes)

    def signal_all(self, sig):
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, sig)

    def stop(self):
        self.signal_all(signal.SIGCONT)
        self.signal_all(signal.SIGKILL)
        for p in self.procs.values():
            p.wait()
        self.procs = {}

    def writable(self, i, timeout):
        """A write through node i succeeds (the node serves and the ensemble has a quorum)."""
        from kazoo.client import KazooClient
        c = KazooClient(hosts=self.hosts([i]), timeout=5)
        try:
            c.start(timeout=timeout)
            c.ensure_path("/perf-ready")
            c.set("/perf-ready", b"x")
            return True
        except Exception:
            return False
        finally:
            try:
                c.stop()
                c.close()
            except Exception:
                pass

    def wait_whole(self, deadline_s=60):
        end = time.time() + deadline_s
        for i in (1, 2, 3):
            while not self.writable(i, 5):
                if time.time() > end:
                    raise SystemExit("%s node %d does not serve within %d s (see %s)" % (self.kind, i, deadline_s, self.dir))
                time.sleep(0.2)

    def leader(self):
        """The node whose four-letter `srvr` says leader; for a build without it, the one `mntr`
        reports leading, else None."""
        for i in (1, 2, 3):
            try:
                with socket.create_connection(("127.0.0.1", self.client[i - 1]), timeout=2) as s:
                    s.sendall(b"srvr")
                    data = b""
                    while True:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                if b"Mode: leader" in data:
                    return i
            except OSError:
                pass
        if self.kind == "zkd":
            # Builds whose `srvr` does not tell: the node whose log last says it leads.
            for i in (1, 2, 3):
                try:
                    with open(os.path.join(self.dir, "n%d" % i, "server.log"), errors="replace") as f:
                        states = [l for l in f if "Peer state changed:" in l]
                except OSError:
                    continue
                if states and "Peer state changed: leading" in states[-1] and self.procs[i].poll() is None:
                    return i
        return None


def bench(args, ens, workload, rep):
    raw = os.path.join(args.out, "%s-%s-%d" % (ens.kind, workload, rep))
    cmd = args.bench + ["--servers", ens.hosts(), "--workload", workload, "--duration", str(args.duration),
                        "--warmup", "2", "--sessions", "16", "--depth", "8", "--value-size", "100",
                        "--no-progress", "--json", "--hgrm", raw + ".hgrm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        log("bench failed:", " ".join(cmd), r.stderr[-2000:])
        return None
    with open(raw + ".json", "w") as f:
        f.write(r.stdout)
    return json.loads(r.stdout)


def failover(args, ens):
    """Seconds from SIGKILL of the leader to the first write acknowledged after it."""
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry
    leader = ens.leader()
    if leader is None:
        log("%s: no node reports Mode: leader; cannot measure failover" % ens.kind)
        return None
    retry = dict(max_tries=-1, delay=0.01, backoff=1, max_delay=0.01)
    c = KazooClient(hosts=ens.hosts(), timeout=4, connection_retry=retry, command_retry=retry)
    c.start(timeout=20)
    c.ensure_path("/perf-failover")
    for _ in range(50):
        c.set("/perf-failover", b"warm")
    kill_at = time.monotonic()
    os.killpg(ens.procs[leader].pid, signal.SIGKILL)
    ens.procs[leader].wait()
    first_ok = None
    deadline = kill_at + 30
    while time.monotonic() < deadline:
        try:
            c.retry(c.set, "/perf-failover", b"after")
            first_ok = time.monotonic()
            break
        except Exception:
            time.sleep(0.005)
    c.stop()
    c.close()
    ens.start(leader)
    ens.wait_whole()
    return None if first_ok is None else first_ok - kill_at


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--workloads", default="read,write")
    ap.add_argument("--tick", type=int, default=500)
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--zkd", default=os.path.join(ROOT, "target/release/zkd"))
    ap.add_argument("--data", default=os.path.join(ROOT, "perf/.data-ensemble"))
    ap.add_argument("--out", default=os.path.join(ROOT, "perf/results/ensemble"))
    ap.add_argument("--results-md", default=None)
    args = ap.parse_args()
    args.bench = [args.zkd, "bench"]
    os.makedirs(args.out, exist_ok=True)
    kinds = [Ensemble("zk", 24100, args), Ensemble("zkd", 24200, args)]
    results = {}
    fails = {}
    try:
        for e in kinds:
            e.setup()
            e.start_all()
        for e in kinds:
            e.wait_whole()
        for e in kinds:
            e.signal_all(signal.SIGSTOP)
        for rep in range(args.reps):
            for w in args.workloads.split(","):
                for e in kinds:
                    e.signal_all(signal.SIGCONT)
                    e.wait_whole()
                    r = bench(args, e, w, rep)
                    e.signal_all(signal.SIGSTOP)
                    if r:
                        results.setdefault((e.kind, w), []).append(r)
                        log("%s %s rep %d: %.0f ops/s p99 %.2f ms" % (e.kind, w, rep, r["ops_per_s"], r["latency_us"]["p99"] / 1000))
        for n in range(args.failovers):
            for e in kinds:
                e.signal_all(signal.SIGCONT)
                e.wait_whole()
                t = failover(args, e)
                e.signal_all(signal.SIGSTOP)
                log("%s failover %d: %s" % (e.kind, n, "none within 30 s" if t is None else "%.0f ms" % (t * 1000)))
                if t is not None:
                    fails.setdefault(e.kind, []).append(t * 1000)
    finally:
        for e in kinds:
            e.stop()

    def med(kind, w, key):
        rs = results.get((kind, w), [])
        return statistics.median(key(r) for r in rs) if rs else None

    lines = ["| workload | ZK ops/s | zkd ops/s | zkd/ZK | ZK p99 ms | zkd p99 ms | zkd/ZK p99 |", "|---|---|---|---|---|---|---|"]
    for w in args.workloads.split(","):
        zo, do = med("zk", w, lambda r: r["ops_per_s"]), med("zkd", w, lambda r: r["ops_per_s"])
        zp, dp = med("zk", w, lambda r: r["latency_us"]["p99"] / 1000), med("zkd", w, lambda r: r["latency_us"]["p99"] / 1000)
        ratio = lambda a, b: "%.2f" % (a / b) if a and b else "-"
        f = lambda v, fmt: fmt % v if v is not None else "-"
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (w, f(zo, "%.0f"), f(do, "%.0f"), ratio(do, zo), f(zp, "%.2f"), f(dp, "%.2f"), ratio(dp, zp)))
    fl = ["", "| failover (kill -9 of the leader → first acknowledged write) | median ms | each ms |", "|---|---|---|"]
    for k, name in (("zk", "Apache ZooKeeper 3.8"), ("zkd", "zkd")):
        v = fails.get(k, [])
        fl.append("| %s | %s | %s |" % (name, "%.0f" % statistics.median(v) if v else "-", ", ".join("%.0f" % x for x in v)))
    table = "\n".join(lines + fl)
    print(table)
    if args.results_md:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        section = ("## Ensembles: side by side\n\n"
                   "`python3 perf/ensemble.py --reps %d --duration %d --tick %d --failovers %d`, %s: a 3-node zkd ensemble and a 3-node "
                   "Apache ZooKeeper 3.8 ensemble on this machine's loopback, same zoo.cfg (tickTime=%d, initLimit=10, syncLimit=5, "
                   "fsync on), alternating (the idle ensemble SIGSTOPped); `zkd bench` with 16 sessions × 8 deep spread over the "
                   "three nodes, 100-byte values; medians of the repetitions.\n\n%s\n"
                   % (args.reps, args.duration, args.tick, args.failovers, stamp, args.tick, table))
        text = open(args.results_md).read() if os.path.exists(args.results_md) else ""
        m = re.search(r"^## Ensembles: side by side\n.*?(?=^## |\Z)", text, re.S | re.M)
        text = text[:m.start()] + section + "\n" + text[m.end():] if m else text.rstrip() + "\n\n" + section
        with open(args.results_md, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
