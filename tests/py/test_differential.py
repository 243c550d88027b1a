"""Differential test: seeded random operation sequences run against zkd AND Apache ZooKeeper 3.8
(the oracle), step by step, comparing every reply (error, data, children in order, every Stat field
except ctime/mtime — zxids must match exactly since both start empty) and every watch event each
session received, in order.

ZKD_DIFF_SEED=N reproduces one seed; ZKD_DIFF_OPS=N sets the length; ZKD_DIFF_SEEDS=N how many.
On failure the seed and the op index are printed.
"""
import os
import random
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.security import make_digest_acl, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE

from conftest import Server

SESSIONS = 3
PATHS = ["/d", "/d/a", "/d/b", "/d/a/x", "/d/a/y", "/d/b/z", "/e", "/e/q"]


class Side:
    """One server with its sessions and the events each session received."""

    def __init__(self, server):
        self.server = server
        self.clients = [None] * SESSIONS
        self.events = [[] for _ in range(SESSIONS)]
        self.session_index = {}
        self.lock = threading.Lock()
        for i in range(SESSIONS):
            self.open(i)

    def open(self, i):
        c = KazooClient(hosts=self.server.hosts, timeout=10)
        c.start(timeout=15)
        self.clients[i] = c
        self.session_index[c.client_id[0]] = i

    def close(self, i):
        self.clients[i].stop()
        self.clients[i].close()
        self.open(i)

    def watcher(self, i):
        def cb(ev):
            with self.lock:
                self.events[i].append((ev.type, ev.path))
        return cb

    def norm_stat(self, st):
        if st is None:
            return None
        owner = st.ephemeralOwner
        if owner:
            owner = "session-%s" % self.session_index.get(owner, "?")
        return (st.czxid, st.mzxid, st.pzxid, st.version, st.cversion, st.aversion, owner,
                st.dataLength, st.numChildren)

    def run(self, op):
        kind, i, args = op
        c = self.clients[i]
        try:
            if kind == "create":
                path, data, mode = args
                r = c.create(path, data, ephemeral=mode in ("e", "es"), sequence=mode in ("s", "es"),
                             makepath=False, include_data=True)
                return ("ok", r[0], self.norm_stat(r[1]))
            if kind == "set":
                path, data, version = args
                return ("ok", self.norm_stat(c.set(path, data, version=version)))
            if kind == "delete":
                path, version = args
                c.delete(path, version=version)
                return ("ok",)
            if kind == "get":
                path, watch = args
                data, st = c.get(path, watch=self.watcher(i) if watch else None)
                return ("ok", data, self.norm_stat(st))
            if kind == "children":
                path, watch = args
                ch, st = c.get_children(path, watch=self.watcher(i) if watch else None, include_data=True)
                return ("ok", list(ch), self.norm_stat(st))
            if kind == "exists":
                path, watch = args
                return ("ok", self.norm_stat(c.exists(path, watch=self.watcher(i) if watch else None)))
            if kind == "multi":
                t = c.transaction()
                for sub in args:
                    if sub[0] == "create":
                        t.create(sub[1], sub[2])
                    elif sub[0] == "delete":
                        t.delete(sub[1], version=sub[2])
                    elif sub[0] == "set":
                        t.set_data(sub[1], sub[2], version=sub[3])
                    else:
                        t.check(sub[1], sub[2])
                res = t.commit()
                return ("ok", [type(x).__name__ if isinstance(x, Exception) else
                               (self.norm_stat(x) if hasattr(x, "czxid") else x) for x in res])
            if kind == "setacl":
                path, acl, version = args
                return ("ok", self.norm_stat(c.set_acls(path, acl, version=version)))
            if kind == "getacl":
                acl, st = c.get_acls(args[0])
                return ("ok", [(a.perms, a.id.scheme, a.id.id) for a in acl], self.norm_stat(st))
            if kind == "auth":
                c.add_auth("digest", args[0])
                return ("ok",)
            if kind == "sync":
                c.sync(args[0])
                return ("ok",)
            if kind == "close":
                self.close(i)
                return ("ok",)
        except KazooException as e:
            return ("error", type(e).__name__)
        raise AssertionError("unknown op %r" % (op,))

    def stop(self):
        for c in self.clients:
            try:
                c.stop()
                c.close()
            except Exception:
                pass


def gen_op(rng):
    i = rng.randrange(SESSIONS)
    path = rng.choice(PATHS)
    version = rng.choice([-1, -1, 0, 1, 2])
    data = rng.choice([b"", b"v", b"value-%d" % rng.randrange(100)])
    k = rng.random()
    if k < 0.22:
        return ("create", i, (path if rng.random() < 0.8 else path + "/s-", data, rng.choice(["p", "p", "e", "s", "es"])))
    if k < 0.34:
        return ("set", i, (path, data, version))
    if k < 0.44:
        return ("delete", i, (path, version))
    if k < 0.54:
        return ("get", i, (path, rng.random() < 0.5))
    if k < 0.64:
        return ("children", i, (path, rng.random() < 0.5))
    if k < 0.72:
        return ("exists", i, (path, rng.random() < 0.5))
    if k < 0.82:
        subs = []
        for _ in range(rng.randrange(1, 4)):
            p = rng.choice(PATHS)
            subs.append(rng.choice([("create", p, b"m"), ("delete", p, -1), ("set", p, b"s", -1), ("check", p, 0)]))
        return ("multi", i, subs)
    if k < 0.86:
        acl = rng.choice([OPEN_ACL_UNSAFE, READ_ACL_UNSAFE,
                          [make_digest_acl("alice", "pw", all=True)],
                          [make_digest_acl("alice", "pw", read=True), make_digest_acl("bob", "pw", all=True)]])
        return ("setacl", i, (path, acl, rng.choice([-1, 0, 1])))
    if k < 0.90:
        return ("getacl", i, (path,))
    if k < 0.93:
        return ("auth", i, (rng.choice(["alice:pw", "bob:pw"]),))
    if k < 0.96:
        return ("sync", i, (path,))
    return ("close", i, ())


def seeds():
    if "ZKD_DIFF_SEED" in os.environ:
        return [int(os.environ["ZKD_DIFF_SEED"])]
    n = int(os.environ.get("ZKD_DIFF_SEEDS", "3"))
    return [1000 + s for s in range(n)]


@pytest.mark.parametrize("seed", seeds())
def test_zkd_matches_zookeeper(seed):
    ops = int(os.environ.get("ZKD_DIFF_OPS", "300"))
    zkd = Server(os.environ.get("ZKD_DIFF_LEFT", "zkd"))
    ora = Server("oracle")
    left, right = Side(zkd), Side(ora)
    try:
        rng = random.Random(seed)
        for n in range(ops):
            op = gen_op(rng)
            a = left.run(op)
            b = right.run(op)
            assert a == b, "seed %d op %d %r:\n zkd:    %r\n oracle: %r" % (seed, n, op, a, b)
            if op[0] in ("set", "delete", "create", "multi", "close"):
                # Let events reach every session before comparing them.
                for side in (left, right):
                    for c in side.clients:
                        c.exists("/")
        time.sleep(0.5)
        for i in range(SESSIONS):
            assert left.events[i] == right.events[i], "seed %d: events of session %d differ:\n zkd:    %r\n oracle: %r" % (
                seed, i, left.events[i], right.events[i])
    finally:
        left.stop()
        right.stop()
        zkd.stop()
        ora.stop()
