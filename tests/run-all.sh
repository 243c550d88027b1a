#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (Apache
# ZooKeeper 3.8 as the oracle, its C client, kazoo, pytest), builds, runs the Rust tests and the
# Python suite against zkd (and the oracle where a test compares). Exits non-zero on any failure.
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
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c 'import kazoo, pytest, prometheus_client' 2>/dev/null || python3 -m pip install -q kazoo pytest prometheus_client
# zktop (a real 4lw consumer) is optional: tests/py/test_ops.py skips its test without it.
command -v zktop >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq zktop >/dev/null 2>&1 || echo "zktop not installable; its test will be skipped"; }

echo "== building"
cargo build --release --bins
export ZKD_BIN="$PWD/target/release/zkd"

echo "== cargo test"
cargo test --release 2>&1 | tee /tmp/zkd-cargo-test.log
rust_summary=$(grep -E '^test result' /tmp/zkd-cargo-test.log | awk '{p+=$4; f+=$6} END {print p" passed, "f" failed"}')

echo "== python suite (kazoo, zkCli.sh, cli_mt, differential vs Apache ZooKeeper 3.8)"
set +e
python3 -m pytest -q tests/py
py_rc=$?
set -e
echo "rust: $rust_summary"
exit $py_rc
