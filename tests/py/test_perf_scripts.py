"""perf/side-by-side.sh, run as the README says, in miniature: both servers start, every
workload runs against each, and the rewritten section holds a row per workload with the
ratio, the ratio of each back-to-back pair and the steal line. Measures nothing: speed lives in
perf/RESULTS.md, not in tests."""
import os
import re
import shutil
import subprocess
import tempfile

from conftest import ROOT, ZKD_BIN, PortHold, require

SCRIPT = os.path.join(ROOT, "perf", "side-by-side.sh")


def have_zookeeper():
    return shutil.which("java") and os.path.exists("/usr/share/java/zookeeper.jar")


def test_side_by_side_runs_both_servers_and_writes_the_table():
    require(have_zookeeper(), "Apache ZooKeeper (Debian package zookeeper) not installed")
    work = tempfile.mkdtemp(prefix="zkd-sbs-")
    # The script starts both servers on ports it is given; they are held (conftest.PortHold)
    # for the whole run, and both servers bind beside the holding sockets (SO_REUSEADDR).
    holds = [PortHold(), PortHold()]
    try:
        results_md = os.path.join(work, "RESULTS.md")
        with open(results_md, "w") as f:
            f.write("# Performance results\n\nkept above\n\n<!-- side-by-side:begin -->\nold\n"
                    "<!-- side-by-side:end -->\n\nkept below\n")
        env = dict(os.environ)
        env.update({
            "ZKD_BIN": ZKD_BIN,
            "BENCH": ZKD_BIN + " bench",
            "WORKLOADS": "read write",
            "REPS": "2",
            "DURATION": "0.5",
            "WARMUP": "0",
            "SESSIONS": "2",
            "DEPTH": "2",
            "DATA_DIR": os.path.join(work, "data"),
            "OUT": os.path.join(work, "out"),
            "RESULTS_MD": results_md,
            "ZK_PORT": str(holds[0].port),
            "ZKD_PORT": str(holds[1].port),
        })
        p = subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        text = open(results_md).read()
        assert "kept above" in text and "kept below" in text and "\nold\n" not in text
        assert "## Side by side: ZooKeeper vs zkd" in text
        assert re.search(r"CPU steal during the runs \(from /proc/stat\): median [0-9.]+%, max [0-9.]+%", text)
        for w in ("read", "write"):
            row = re.search(r"^\| %s \| (\d+) \| (\d+) \| ([0-9.]+) \| ([0-9.]+) \(([0-9.]+) / ([0-9.]+)\) \|" % w,
                            text, re.M)
            assert row, "no row for %s in:\n%s" % (w, text)
            zk_ops, zkd_ops = int(row.group(1)), int(row.group(2))
            assert zk_ops > 0 and zkd_ops > 0
            assert abs(float(row.group(3)) - zkd_ops / zk_ops) < 0.01
            for server in ("zk", "zkd"):
                assert os.path.getsize(os.path.join(work, "out", "%s-%s.hgrm" % (server, w))) > 0
                for rep in (1, 2):
                    steal = open(os.path.join(work, "out", "raw", "%s-%s-%d.steal" % (server, w, rep))).read()
                    assert 0.0 <= float(steal) <= 100.0
            assert open(os.path.join(work, "out", "%s.svg" % w)).read().lstrip().startswith("<svg")
        assert "errors (all reps)" not in p.stdout, p.stdout
    finally:
        for h in holds:
            h.close()
        shutil.rmtree(work, ignore_errors=True)
