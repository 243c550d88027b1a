#!/usr/bin/env bash
# Compiles tests/java/CuratorOrder.java against the Debian Curator 5.4 / ZooKeeper 3.8 jars (offline:
# libcurator-recipes-java, libzookeeper-java; javac from default-jdk-headless) and runs it.
#
#   run-curator-test.sh check                     exit 0 if javac, java and every jar are present,
#                                                 else print what is missing and exit 3
#   run-curator-test.sh build OUTDIR              compile into OUTDIR
#   run-curator-test.sh run OUTDIR CONNECT [SEED] run the compiled program against CONNECT
#   run-curator-test.sh CONNECT [SEED]            build into a temporary directory and run
#
# JAVA_JAR_DIR overrides /usr/share/java. The program's exit code is passed through (0 ok,
# 1 violations, 2 error).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
jar_dir="${JAVA_JAR_DIR:-/usr/share/java}"
# The Debian jars name their own dependencies (guava, zookeeper-jute, ...) in their manifests'
# Class-Path, so these are enough; slf4j-nop silences the logging.
jars=(curator-recipes curator-framework curator-client zookeeper zookeeper-jute guava slf4j-api slf4j-nop)
cp=""
missing=()
for j in "${jars[@]}"; do
  f="$jar_dir/$j.jar"
  [ -f "$f" ] || missing+=("$f")
  cp="${cp:+$cp:}$f"
done
command -v javac >/dev/null || missing+=(javac)
command -v java >/dev/null || missing+=(java)

check() {
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing: ${missing[*]}"
    exit 3
  fi
}

build() {
  check
  mkdir -p "$1"
  javac -nowarn -encoding UTF-8 -d "$1" -cp "$cp" "$here/CuratorOrder.java"
}

run() {
  check
  exec java -Xmx256m -XX:+UseSerialGC -cp "$1:$cp" CuratorOrder "${@:2}"
}

case "${1:-}" in
  check) check ;;
  build) build "$2" ;;
  run) run "$2" "${@:3}" ;;
  "") echo "usage: $0 check | build OUTDIR | run OUTDIR CONNECT [SEED] | CONNECT [SEED]" >&2; exit 2 ;;
  *)
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
    build "$out"
    # not exec: the trap removes the build directory afterwards
    check
    java -Xmx256m -XX:+UseSerialGC -cp "$out:$cp" CuratorOrder "$@"
    ;;
esac
