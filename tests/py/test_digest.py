"""Tree digests (`zookeeper.digest.enabled`) against Apache ZooKeeper 3.8, the oracle.

ZooKeeper, digest on by default, runs a workload (creates, sets, deletes, ephemerals removed by a
closeSession, sequentials, ACLs, a multi, a container); its log records carry the tree digest
after each txn. zkd replays that log and compares every txn's digest with its own tree's, and its
`hash` (the digest after every 128th zxid) must equal ZooKeeper's. ZooKeeper restarted writes a
snapshot whose ZxidDigest zkd loads and checks; a snapshot whose digest was altered (seals
recomputed) is counted as one mismatch. The other way, ZooKeeper loads a snapshot zkd wrote and
finds its digest matching (and, altered, one mismatch).
"""

import os
import shutil
import struct
import tempfile
import time
import zlib

from kazoo.security import make_digest_acl, ACL, Id, Permissions

from conftest import PortHold, four_letter
from test_datadir_roundtrip import start, stop, client, create_container


def cfg_file(d, data, port, snap_count):
    path = os.path.join(d, "zoo-%s.cfg" % os.path.basename(data))
    with open(path, "w") as f:
        f.write("tickTime=2000\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
                "snapCount=%d\n4lw.commands.whitelist=*\nadmin.enableServer=false\n"
                "maxClientCnxns=0\nextendedTypesEnabled=true\n" % (data, port, snap_count))
    return path


def workload(port):
    c = client(port)
    c.create("/app", b"root")
    for i in range(60):
        c.create("/app/n%d" % i, os.urandom(i * 5 % 200))
    for i in range(0, 60, 3):
        c.set("/app/n%d" % i, b"v2")
    for i in range(1, 60, 7):
        c.delete("/app/n%d" % i)
    c.create("/seq", b"")
    for i in range(80):
        c.create("/seq/s-", b"%d" % i, sequence=True)
    c.create("/acl", b"")
    c.create("/acl/d", b"secret", acl=[make_digest_acl("u", "p", all=True)])
    c.set_acls("/acl", [ACL(Permissions.READ, Id("world", "anyone"))])
    c.set("/", b"root data")
    t = c.transaction()
    t.create("/multi", b"m")
    t.create("/multi/a", b"a")
    t.set_data("/app", b"via multi")
    t.commit()
    create_container(c, "/cont", b"c")
    c.create("/cont/k", b"")
    c.set("/zookeeper", b"")  # /zookeeper itself counts; its subtree does not
    eph = client(port)
    for i in range(10):
        eph.create("/app/e%d" % i, b"eph", ephemeral=True)
    eph.stop()  # closeSession deletes them
    eph.close()
    for i in range(300):
        c.set("/app/n%d" % (i % 5 * 3), b"%d" % i)
    c.stop()
    c.close()


def mntr(port):
    out = {}
    for line in four_letter(port, "mntr").splitlines():
        k, _, v = line.partition("\t")
        out[k] = v
    return out


def hash_lines(port):
    return [line for line in four_letter(port, "hash").splitlines() if line.strip()]


def newest_snapshot(data):
    v2 = os.path.join(data, "version-2")
    snaps = [f for f in os.listdir(v2) if f.startswith("snapshot.") and not f.endswith(".tmp")]
    return os.path.join(v2, max(snaps, key=lambda f: int(f.split(".")[1], 16)))


def snapshot_digest(path):
    """(zxid, version, digest) of an uncompressed snapshot's ZxidDigest section (its last 33
    bytes: zxid i64, version i32, digest i64, then the seal: checksum i64 and the string "/")."""
    b = open(path, "rb").read()
    tail = b[-33:]
    assert tail[-5:] == b"\x00\x00\x00\x01/", "no seal after the digest"
    return struct.unpack(">qiq", tail[:20])


def alter_snapshot_digest(path):
    """Adds 1 to the stored digest and recomputes the second seal (Adler32 of every byte before
    it), so the file stays valid and only the digest is wrong."""
    b = bytearray(open(path, "rb").read())
    at = len(b) - 33 + 12
    (d,) = struct.unpack(">q", bytes(b[at:at + 8]))
    b[at:at + 8] = struct.pack(">q", d + 1)
    seal_at = len(b) - 13
    b[seal_at:seal_at + 8] = struct.pack(">q", zlib.adler32(bytes(b[:seal_at])))
    open(path, "wb").write(bytes(b))


def read_log(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_mntr(port, key, deadline_s=10):
    deadline = time.time() + deadline_s
    while True:
        m = mntr(port)
        if key in m or time.time() > deadline:
            return m
        time.sleep(0.1)


def test_digests_match_zookeeper():
    d = tempfile.mkdtemp(prefix="zkd-digest-")
    hold = PortHold()
    port = hold.port
    java_data = os.path.join(d, "java")
    cfg = cfg_file(d, java_data, port, 100000)
    try:
        # 1. ZooKeeper's log: every txn carries the digest after it.
        zk = start("oracle", cfg, port, os.path.join(d, "java.log"))
        try:
            workload(port)
            java_hash = hash_lines(port)
            last_zxid = int(four_letter(port, "srvr").split("Zxid: ")[1].split()[0], 16)
        finally:
            stop(zk)
        assert len(java_hash) >= 2, java_hash

        # 2. zkd replays it (snapshot.0 has no digest to wait for): each txn's digest is
        # compared with zkd's tree, and zkd's history equals ZooKeeper's.
        replay = os.path.join(d, "replay")
        shutil.copytree(java_data, replay)
        zlog = os.path.join(d, "zkd-replay.log")
        z = start("zkd", cfg_file(d, replay, port, 100000), port, zlog)
        try:
            assert hash_lines(port) == java_hash
            assert mntr(port)["zk_digest_mismatches_count"] == "0"
        finally:
            stop(z)
        assert "Digests are not matching" not in read_log(zlog)

        # 3. ZooKeeper restarted snapshots the replayed tree with its digest; zkd loads it and
        # compares at once (the digest's zxid is the snapshot's).
        zk = start("oracle", cfg, port, os.path.join(d, "java.log"))
        try:
            # ruok answers before the database is loaded: wait for a served read, then for the
            # snapshot ZooKeeper takes once loaded.
            c = client(port)
            c.stop()
            c.close()
            deadline = time.time() + 30
            while not newest_snapshot(java_data).endswith(".%x" % last_zxid):
                assert time.time() < deadline, os.listdir(os.path.join(java_data, "version-2"))
                time.sleep(0.1)
        finally:
            stop(zk)
        snap = newest_snapshot(java_data)
        zxid, version, digest = snapshot_digest(snap)
        assert (zxid, version) == (last_zxid, 2), (hex(zxid), version, snap)
        loaded = os.path.join(d, "loaded")
        shutil.copytree(java_data, loaded)
        zlog = os.path.join(d, "zkd-loaded.log")
        z = start("zkd", cfg_file(d, loaded, port, 100000), port, zlog)
        try:
            assert mntr(port)["zk_digest_mismatches_count"] == "0"
        finally:
            stop(z)
        text = read_log(zlog)
        assert "snapshot digest at zxid 0x%x matches the tree: %d" % (zxid, digest) in text, text[-3000:]

        # 4. The same snapshot with its digest altered: one mismatch, one warning naming both.
        bad = os.path.join(d, "bad")
        shutil.copytree(java_data, bad)
        alter_snapshot_digest(newest_snapshot(bad))
        zlog = os.path.join(d, "zkd-bad.log")
        z = start("zkd", cfg_file(d, bad, port, 100000), port, zlog)
        try:
            assert mntr(port)["zk_digest_mismatches_count"] == "1"
        finally:
            stop(z)
        warn = [line for line in read_log(zlog).splitlines() if "Digests are not matching" in line]
        assert len(warn) == 1, warn
        assert "0x%x" % zxid in warn[0] and "recorded %d" % (digest + 1) in warn[0], warn[0]

        # 5. zkd writes snapshots with their digest (snapCount=20: several while it serves);
        # ZooKeeper loads the newest, replays zkd's log after it, and finds the digest matching.
        zkd_data = os.path.join(d, "zkd-written")
        shutil.copytree(java_data, zkd_data)
        zcfg = cfg_file(d, zkd_data, port, 20)
        z = start("zkd", zcfg, port, os.path.join(d, "zkd-written.log"))
        try:
            c = client(port)
            for i in range(120):
                c.create("/w%d" % i, b"x" * i)
                c.set("/app/n0", b"%d" % i)
            c.stop()
            c.close()
        finally:
            stop(z)
        snap = newest_snapshot(zkd_data)
        zxid, version, _ = snapshot_digest(snap)
        assert version == 2 and zxid >= int(snap.rsplit(".", 1)[1], 16), (hex(zxid), snap)
        jlog = os.path.join(d, "java-reads-zkd.log")
        zk = start("oracle", zcfg, port, jlog)
        try:
            c = client(port)  # served: loaded, replayed and compared
            assert len([k for k in c.get_children("/") if k.startswith("w")]) == 120
            c.stop()
            c.close()
            assert mntr(port)["zk_digest_mismatches_count"] == "0"
        finally:
            stop(zk)
        # ZooKeeper logs nowhere here; that it compared is shown by the same files with the
        # digest altered: one mismatch.
        zkd_bad = os.path.join(d, "zkd-written-bad")
        shutil.copytree(zkd_data, zkd_bad)
        alter_snapshot_digest(newest_snapshot(zkd_bad))
        zk = start("oracle", cfg_file(d, zkd_bad, port, 20), port, jlog)
        try:
            client(port).stop()
            assert mntr(port)["zk_digest_mismatches_count"] == "1"
        finally:
            stop(zk)
    finally:
        hold.close()
        shutil.rmtree(d, ignore_errors=True)


def test_zkd_ensemble_logs_proposes_and_checks_txn_digests():
    """A zkd leader computes each txn's digest at prep time and logs and proposes it; followers
    compare it with their tree after applying (none may mismatch), every member's log carries
    the digests, and every member lists the same `hash` history."""
    import json
    import subprocess
    import ensemble as E
    from conftest import ZKD_BIN
    e = E.Ensemble("zkd", 3, 0, None, "digest")
    ok = False
    try:
        e.start()
        c = e.client()
        eph = e.client()
        c.create("/e", b"")
        for i in range(20):
            eph.create("/e/x%d" % i, b"eph", ephemeral=True)
        for i in range(150):
            c.create("/k%d" % i, b"v" * (i % 40))
            c.set("/k%d" % (i // 2), b"w%d" % i)
        for i in range(0, 150, 3):
            c.delete("/k%d" % i)
        t = c.transaction()
        t.create("/m", b"")
        t.set_data("/e", b"m")
        t.commit()
        eph.stop()  # closeSession of the ephemerals
        eph.close()
        for s in e.sids:
            cs = e.client([s])
            cs.sync("/")
            cs.stop()
            cs.close()
        e.wait_until(lambda: len({e.node(s).srvr()[1] for s in e.sids}) == 1, 20, "the same zxid everywhere")
        zxids = {s: e.node(s).srvr()[1] for s in e.sids}
        hashes = {s: [l for l in four_letter(e.node(s).client_port, "hash").splitlines() if l]
                  for s in e.sids}
        assert len(set(map(tuple, hashes.values()))) == 1, hashes
        assert len(next(iter(hashes.values()))) >= 2, hashes
        for s in e.sids:
            assert e.node(s).mntr()["zk_digest_mismatches_count"] == "0", s
        c.stop()
        c.close()
        for s in e.sids:
            v2 = os.path.join(e.node(s).data_dir, "version-2")
            logs = sorted(f for f in os.listdir(v2) if f.startswith("log."))
            out = subprocess.run([ZKD_BIN, "txnlog", "dump", "--json", os.path.join(v2, logs[-1])],
                                 capture_output=True, text=True, check=True).stdout
            txns = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
            txns = [t for t in txns if "zxid" in t]
            assert len(txns) > 300, (s, len(txns), zxids)
            assert all(t["digest"] and t["digest"]["version"] == 2 for t in txns), (s, txns[:3])
        ok = True
    finally:
        e.close(keep=not ok)
