#!/usr/bin/env python3
"""Medians of side-by-side.sh runs: prints the table, keeps the median run's .hgrm per
server/workload, and rewrites the side-by-side section of perf/RESULTS.md. Inputs come from the
environment set by side-by-side.sh and from perf/results/raw/*.json."""
import datetime
import json
import os
import shutil
import statistics

env = os.environ
ROOT, OUT, RAW = env["ROOT"], env["OUT"], env["RAW"]
REPS = int(env["REPS"])
WORKLOADS = env["WORKLOADS"].split()
SERVERS = [s for s, ok in (("zk", env["ZK_AVAILABLE"]), ("zkd", env["ZKD_AVAILABLE"])) if ok == "yes"]
BEGIN, END = "<!-- side-by-side:begin -->", "<!-- side-by-side:end -->"


steals = []  # percent, one per run that recorded it (side-by-side.sh writes RUN.steal)


def load(server, w):
    runs = []
    for rep in range(1, REPS + 1):
        p = f"{RAW}/{server}-{w}-{rep}"
        try:
            with open(p + ".json") as f:
                runs.append((rep, json.load(f)))
        except (OSError, ValueError):
            pass
        try:
            with open(p + ".steal") as f:
                steals.append(float(f.read().strip()))
        except (OSError, ValueError):
            pass
    return runs


def med(runs, key):
    vals = [key(r) for _, r in runs]
    return statistics.median(vals) if vals else None


results = {}
for w in WORKLOADS:
    for s in SERVERS:
        runs = load(s, w)
        if not runs:
            continue
        ordered = sorted(runs, key=lambda x: x[1]["ops_per_s"])
        mid_rep = ordered[len(ordered) // 2][0]
        shutil.copyfile(f"{RAW}/{s}-{w}-{mid_rep}.hgrm", f"{OUT}/{s}-{w}.hgrm")
        errors = {}
        for _, r in runs:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        results[(s, w)] = {
            "runs": len(runs),
            "by_rep": {rep: r["ops_per_s"] for rep, r in runs},
            "ops": med(runs, lambda r: r["ops_per_s"]),
            "p50": med(runs, lambda r: r["latency_us"]["p50"]) / 1000,
            "p99": med(runs, lambda r: r["latency_us"]["p99"]) / 1000,
            "p999": med(runs, lambda r: r["latency_us"]["p99_9"]) / 1000,
            "max": med(runs, lambda r: r["latency_us"]["max"]) / 1000,
            "errors": errors,
        }


def fmt_ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"


def paired(z, d):
    """zkd/ZK per repetition (each pair ran back to back): on a host whose speed drifts within
    minutes, the median of these is steadier than the ratio of the two medians."""
    if not z or not d:
        return "-"
    ratios = [d["by_rep"][k] / z["by_rep"][k] for k in sorted(z["by_rep"]) if k in d["by_rep"] and z["by_rep"][k]]
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f} ({' / '.join(f'{x:.1f}' for x in ratios)})"


lines = []
head = "| workload | ZK ops/s | zkd ops/s | zkd/ZK ops | zkd/ZK per rep: median (each) | ZK p50 ms | zkd p50 ms | ZK p99 ms | zkd p99 ms | zkd/ZK p99 | ZK p99.9 ms | zkd p99.9 ms |"
lines.append(head)
lines.append("|" + "---|" * (head.count("|") - 1))
for w in WORKLOADS:
    z, d = results.get(("zk", w)), results.get(("zkd", w))
    g = lambda r, k, f="{:.0f}": f.format(r[k]) if r else "-"
    lines.append(
        f"| {w} | {g(z, 'ops')} | {g(d, 'ops')} | {fmt_ratio(d and d['ops'], z and z['ops'])} | {paired(z, d)} "
        f"| {g(z, 'p50', '{:.3f}')} | {g(d, 'p50', '{:.3f}')} | {g(z, 'p99', '{:.3f}')} | {g(d, 'p99', '{:.3f}')} "
        f"| {fmt_ratio(d and d['p99'], z and z['p99'])} | {g(z, 'p999', '{:.3f}')} | {g(d, 'p999', '{:.3f}')} |"
    )
table = "\n".join(lines)

steal_item = ""
if steals:
    steal_item = (f"\n- CPU steal during the runs (from /proc/stat): median {statistics.median(steals):.1f}%, "
                  f"max {max(steals):.1f}%")
errs = []
for (s, w), r in sorted(results.items()):
    if r["errors"]:
        errs.append(f"- {s} {w}: " + ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())))
print(table)
if errs:
    print("errors (all reps):\n" + "\n".join(errs))

zkd_note = "measured" if env["ZKD_AVAILABLE"] == "yes" else f"**unavailable** ({env.get('ZKD_WHY') or 'not run'})"
zk_note = "measured" if env["ZK_AVAILABLE"] == "yes" else f"**unavailable** ({env.get('ZK_WHY') or 'not run'})"
title = "ZooKeeper vs zkd" if env["ZKD_AVAILABLE"] == "yes" else "ZooKeeper 3.8 BASELINE ONLY (zkd not measured)"
section = f"""{BEGIN}
## Side by side: {title}

Run {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `perf/side-by-side.sh`.

- Machine: {env['NPROC']} CPUs, {env['CPU_MODEL']}; kernel {env['KERNEL']}; data disk {env['DISK_DESC']}
- Pinning (load generator / server): {env['PINNING']}; the server not being measured is stopped (SIGSTOP) during the other's run
- Apache ZooKeeper {env.get('ZK_VERSION') or '3.8'} (Debian package, standalone, forceSync=yes): {zk_note}
- zkd (`zkd serve --config`, same zoo.cfg settings, same disk): {zkd_note}
- Load: `zkd bench`, {env['SESSIONS']} sessions x {env['DEPTH']} outstanding, {env['VALUE_SIZE']}-byte values,
  closed loop, {env['WARMUP']} s warm-up + {env['DURATION']} s measured; medians of {REPS} alternating runs
  ("per rep": each repetition's zkd/ZK, the two measured back to back).
  connect-storm: each session connects, handshakes and closes in a loop (latency = handshake).
- Latency: milliseconds, from request written to reply read, as the client sees it.{steal_item}
- Files: `perf/results/{{zk,zkd}}-WORKLOAD.hgrm` (median run), `perf/results/WORKLOAD.svg`.

{table}
"""
if errs:
    section += "\nErrors (all runs):\n" + "\n".join(errs) + "\n"
section += END + "\n"

path = env.get("RESULTS_MD") or f"{ROOT}/perf/RESULTS.md"
try:
    with open(path) as f:
        text = f.read()
except OSError:
    text = "# Performance results\n\n"
if BEGIN in text and END in text:
    a, rest = text.split(BEGIN, 1)
    _, b = rest.split(END, 1)
    text = a + section.rstrip("\n") + b
else:
    text = text.rstrip("\n") + "\n\n" + section
with open(path, "w") as f:
    f.write(text)
