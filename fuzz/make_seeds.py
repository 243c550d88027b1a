#!/usr/bin/env python3
"""Builds the seed corpora that come from files already in the repository: the data-dir files
Apache ZooKeeper 3.8 wrote (tests/fixtures/zk38), the quorum messages captured from a Java 3.8
ensemble (tests/fixtures/quorum), and zoo.cfg/myid texts. Each seed is one target's input with
its control bytes first (see each target in fuzz_targets/). Client seeds come from
capture_clients.py instead.

Run from anywhere: `python3 fuzz/make_seeds.py`. Rewrites the files it writes, nothing else.
"""

import gzip
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*path):
    with open(os.path.join(FIX, *path), "rb") as f:
        return f.read()


def hexfile(name):
    text = open(os.path.join(FIX, "quorum", name)).read()
    return bytes.fromhex("".join(l.strip() for l in text.splitlines() if not l.startswith("#")))


def strip_padding(b, keep=24):
    """A preallocated log without most of its zero padding."""
    end = len(b.rstrip(b"\0"))
    return b[:min(len(b), end + keep)]


def log_entries(b):
    """The txn bytes of each entry of a log file."""
    out, at = [], 16
    while at + 12 <= len(b):
        n = struct.unpack(">i", b[at + 8:at + 12])[0]
        if n <= 0 or at + 13 + n > len(b):
            break
        out.append(b[at + 12:at + 12 + n])
        at += 13 + n
    return out


def snapshot_body(b):
    """An uncompressed snapshot's sections from after the header to the nodes' "/" end marker,
    and the digest after the first seal (None when absent)."""
    at = 16

    def i32():
        nonlocal at
        v = struct.unpack(">i", b[at:at + 4])[0]
        at += 4
        return v

    def skip_buf():
        nonlocal at
        n = i32()
        s = b[at:at + max(n, 0)]
        at += max(n, 0)
        return s

    n = i32()
    at += 12 * n
    for _ in range(i32()):
        at += 8
        for _ in range(i32()):
            at += 4
            skip_buf()
            skip_buf()
    while True:
        if skip_buf() == b"/":
            break
        skip_buf()
        at += 8 + 60
    end = at
    digest = b[end + 13:end + 33] if len(b) >= end + 33 else None
    return b[16:end], digest


def main():
    # Transaction logs, the txns in them, and recovery over them.
    for name in ["log.1", "log.e"]:
        log = strip_padding(read("zk38", name))
        write("txnlog", name, b"\x80\x00\x00" + log)
        write("txnlog_recovery", name, b"\x10\x00\x00\x00" + log)
        write("txnlog_recovery", name + "-after-snap-3", b"\x10\x00\x03\x00" + log)
        records = b"".join(struct.pack(">H", len(t)) + t for t in log_entries(log))
        write("txn", name, records)
    # Snapshots: raw, compressed, and as the bodies the harness seals.
    for name in ["snapshot.0", "snapshot.d"]:
        snap = read("zk38", name)
        write("snapshot", name, b"\x00" + snap)
        body, digest = snapshot_body(snap)
        write("snapshot", name + "-body", b"\x08" + body)
        if digest:
            write("snapshot", name + "-body-digest", b"\x06" + digest + body)
        write("snapshot_load", name + "-body", b"\x00" + body)
        write("snapshot_load", name, b"\x01" + snap)
    write("snapshot", "snapshot.10.gz", b"\x02" + read("zk38", "snapshot.10.gz"))
    write("snapshot", "snapshot.10.snappy", b"\x04" + read("zk38", "snapshot.10.snappy"))
    body, _ = snapshot_body(gzip.decompress(read("zk38", "snapshot.10.gz")))
    write("snapshot", "snapshot.10-body", b"\x08" + body)
    write("snapshot_load", "snapshot.10-body", b"\x20" + body)
    # The quorum protocol.
    names = sorted(os.listdir(os.path.join(FIX, "quorum")))
    for name in names:
        if not name.endswith(".hex"):
            continue
        b, stem = hexfile(name), name[:-4]
        if stem.startswith("handshake"):
            write("quorum_handshake", stem, b)
        elif stem.startswith("notification"):
            write("quorum_election", stem + "-frame", b"\x01" + b)
            write("quorum_election", stem, b"\x00" + b[4:])
            write("quorum_view", stem, b[4 + 44:])
        else:
            write("quorum_packet", stem, b"\x00" + b)
            if stem == "leader-SNAP-stream":
                write("quorum_snap", stem, b"\x00" + b[20:])
    frames = b"".join(hexfile(n) for n in names if n.startswith("notification"))
    write("quorum_election", "three-frames", b"\x01" + frames)
    write("quorum_view", "multi-address", b"server.1=127.0.0.1:2888:3888:participant\n"
          b"server.2=10.0.0.2:2888:3888|10.0.1.2:2888:3888:participant;0.0.0.0:2181\n"
          b"server.4=[::1]:2888:3888:observer\nversion=100000000")
    # zoo.cfg and myid.
    write("zoo_cfg", "debian", b"# The number of milliseconds of each tick\ntickTime=2000\ninitLimit=10\n"
          b"syncLimit=5\ndataDir=/var/lib/zookeeper\nclientPort=2181\n#autopurge.purgeInterval=1\n")
    write("zoo_cfg", "everything", b"tickTime=200\ndataDir=/d\ndataLogDir=/l\nclientPort=0\n"
          b"clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nminSessionTimeout=100\nmaxSessionTimeout=9000\n"
          b"jute.maxbuffer=4096\n4lw.commands.whitelist=ruok, srvr,mntr\nextendedTypesEnabled=true\n"
          b"zookeeper.DigestAuthenticationProvider.superDigest=super:abc=\nskipACL=yes\n"
          b"snapshot.compression.method=snappy\nautopurge.snapRetainCount=3\nautopurge.purgeInterval=1\n"
          b"admin.enableServer=false\nadmin.serverPort=8081\nmetricsProvider.className="
          b"org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\nmetricsProvider.httpPort=7001\n"
          b"zkd.log.level=debug\nstandaloneEnabled=true\nserver.1=127.0.0.1:2888:3888;2181\n")
    write("zoo_cfg", "ensemble", b"tickTime=2000\ndataDir=/d\nclientPort=2181\ninitLimit=5\nsyncLimit=2\n"
          b"server.1=zk1:2888:3888\nserver.2=zk2:2888:3888:participant\nserver.3=[::1]:2888:3888:observer;0.0.0.0:2181\n")
    write("zoo_cfg", "tls", b"dataDir=/d\nclientPort=2181\nsecureClientPort=2281\n"
          b"serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n"
          b"ssl.keyStore.location=/k\nauthProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n")
    write("zoo_cfg", "syntax", b"! comment\n  key : value \\\n   continued\nkey2 value2\n\tdataDir\t=\t/d\n"
          b"clientPort:2181\n")
    write("zoo_cfg", "myid", b"3\n")


if __name__ == "__main__":
    main()
