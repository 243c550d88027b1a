"""The soak tool (perf/soak.py) in its short CI form: one zkd under mixed load from kazoo clients,
killed with SIGKILL and restarted twice; no op may fail and no acknowledged write may be lost or
invented. The long run (hours, plotted in the README) is the same script with --minutes."""
import os
import re
import subprocess
import sys

from conftest import ROOT, ZKD_BIN, require


def test_short_soak_with_kill9_loses_nothing(tmp_path):
    require(os.path.exists(ZKD_BIN), "zkd binary at %s" % ZKD_BIN)
    csv_path = tmp_path / "soak.csv"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "perf", "soak.py"), "--minutes", "0.5",
                        "--clients", "4", "--interval", "2", "--kill-every", "9", "--zkd", ZKD_BIN,
                        "--csv", str(csv_path), "--svg", str(tmp_path / "soak.svg")],
                       capture_output=True, text=True, timeout=240)
    m = re.search(r"^SOAK (.*)$", r.stdout, re.M)
    assert m, "no summary line\nstdout:\n%s\nstderr:\n%s" % (r.stdout, r.stderr[-4000:])
    summary = dict(kv.split("=", 1) for kv in re.findall(r"(\w+=\([^)]*\)|\w+=\S+)", m.group(1)))
    assert r.returncode == 0, "soak failed: %s\n%s" % (m.group(1), r.stderr[-4000:])
    assert int(summary["kills"]) >= 2, summary
    assert int(summary["ops"]) > 500, summary
    assert (summary["failed"], summary["lost"], summary["invented"]) == ("0", "0", "0"), summary
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("t_s,pid,rss_kib,fds,threads"), rows[0]
    assert len(rows) >= 10, rows
    # Three server processes were sampled (two kills, two restarts).
    assert len({line.split(",")[1] for line in rows[1:]}) >= 3, rows
