#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (Apache
# ZooKeeper 3.8 as the oracle, its C client, kazoo, pytest, zktop), builds, runs the Rust tests
# and the Python suite against zkd (and the oracle where a test compares), then every fuzz target
# for a short time (tests/fuzz.sh, cargo-fuzz; it installs cargo-fuzz if missing). Every test runs:
# ZKD_REQUIRE_ALL=1 turns a missing prerequisite into a failure (never a pass or a quiet skip),
# and the Rust tests that need root or Java are run with --include-ignored. Prints what passed,
# failed and was skipped in each suite; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/share/zookeeper/bin/zkCli.sh ] || need_apt+=(zookeeper)
[ -x /usr/lib/zookeeper/bin/cli_mt ] || need_apt+=(zookeeper-bin)
command -v java >/dev/null || need_apt+=(default-jre-headless)
command -v nc >/dev/null || need_apt+=(netcat-openbsd)
# tests/py/test_curator.py compiles tests/java/CuratorOrder.java (javac) against the Curator 5.4 jars.
command -v javac >/dev/null || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/curator-recipes.jar ] || need_apt+=(libcurator-recipes-java)
# mkfs.ext4: the full-disk test of O_DIRECT log writes runs on a loop-mounted ext4 image.
command -v mkfs.ext4 >/dev/null || need_apt+=(e2fsprogs)
# losetup: tests/lincheck.rs gives each node a loop-mounted ext4 of its own (disk faults).
command -v losetup >/dev/null || need_apt+=(mount)
# zktop: a real four-letter-word consumer (tests/py/test_ops.py).
command -v zktop >/dev/null || need_apt+=(zktop)
# iptables: partitions and blackholed peers in network namespaces (tests/peers.rs, test_faults.py).
command -v iptables >/dev/null || need_apt+=(iptables)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# pure-sasl: kazoo's SASL (DIGEST-MD5); cryptography: the TLS tests' certificates.
python3 -c 'import kazoo, pytest, prometheus_client, puresasl, cryptography' 2>/dev/null || python3 -m pip install -q kazoo pytest prometheus_client pure-sasl cryptography

export ZKD_REQUIRE_ALL=1

echo "== building"
cargo build --release --bins
export ZKD_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/zkd"

logs=$(mktemp -d /tmp/zkd-run-all.XXXXXX)
set +e
echo "== cargo test --include-ignored (the tests that need root, Java or mkfs.ext4 run too, and fail without them)"
cargo test --release --no-fail-fast -- --include-ignored 2>&1 | tee "$logs/cargo-test.log"
rust_rc=${PIPESTATUS[0]}

echo "== python suite (kazoo, zkCli.sh, cli_mt, differential vs Apache ZooKeeper 3.8)"
python3 -m pytest -q -rs --junitxml="$logs/pytest.xml" tests/py
py_rc=$?
echo "== the opcode suite again, on a 3-node zkd ensemble (each test on the next node)"
ZKD_TARGET=ensemble python3 -m pytest -q -rs --junitxml="$logs/pytest-ensemble.xml" tests/py/opcodes
ens_rc=$?
[ "$py_rc" -eq 0 ] && py_rc=$ens_rc

echo "== fuzz smoke run (tests/fuzz.sh: every libFuzzer target for ${ZKD_FUZZ_SECONDS:-15} s; fails on any crash)"
bash tests/fuzz.sh 2>&1 | tee "$logs/fuzz.log"
fuzz_rc=${PIPESTATUS[0]}
set -e

# libtest: "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 3 filtered out; ..."
rust_counts=$(grep -E '^test result:' "$logs/cargo-test.log" |
  awk '{p+=$4; f+=$6; i+=$8} END {printf "%d passed, %d failed, %d ignored", p, f, i}')
py_counts=$(python3 - "$logs/pytest.xml" "$logs/pytest-ensemble.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
suites = []
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print("no report (%s)" % e)
        sys.exit()
    suites += [root] if root.tag == "testsuite" else list(root)
n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
print("%d passed, %d failed, %d errors, %d skipped" % (
    n["tests"] - n["failures"] - n["errors"] - n["skipped"], n["failures"], n["errors"], n["skipped"]))
EOF
)
echo "== summary"
echo "rust:   $rust_counts (exit $rust_rc)"
echo "python: $py_counts (exit $py_rc)"
echo "fuzz:   $(grep -c '| ok |' fuzz/last-run.md 2>/dev/null || true) targets ok (exit $fuzz_rc; fuzz/last-run.md)"
echo "logs:   $logs"
[ "$rust_rc" -eq 0 ] && [ "$py_rc" -eq 0 ] && [ "$fuzz_rc" -eq 0 ]
