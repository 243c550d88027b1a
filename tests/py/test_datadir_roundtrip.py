"""Data directory round trip, through the servers themselves: Apache ZooKeeper 3.8 writes a data
dir (thousands of znodes: persistent, sequential, containers, ephemerals of a live session,
digest/ip/read-only ACLs, updates and deletes, several snapshots and logs), zkd starts on it and
serves exactly the same tree (every byte of data, every Stat field, every ACL, children in the
same order); zkd then writes more, and ZooKeeper starts on zkd's directory and serves exactly
what zkd served."""
import os
import signal
import subprocess
import sys
import tempfile
import time

from kazoo.client import KazooClient
from kazoo.protocol.serialization import Create2
from kazoo.security import make_digest_acl, ACL, Id, OPEN_ACL_UNSAFE, Permissions

from conftest import ZKD_BIN, ZK_CLASSPATH, PortHold, four_letter

AUTH = ("digest", "u:p")


class CreateContainer(Create2):
    """kazoo has no container API; the request is create2's with opcode 19 and flags 4."""
    type = 19


def create_container(c, path, data):
    r = c.handler.async_result()
    c._call(CreateContainer(path, data, OPEN_ACL_UNSAFE, 4), r)
    return r.get()


def start(kind, cfg_path, port, log_path):
    log = open(log_path, "a")
    if kind == "zkd":
        cmd = [ZKD_BIN, "serve", "--config", cfg_path]
    else:
        cmd = ["java", "-Xmx512m", "-Dzookeeper.admin.enableServer=false",
               "-Dzookeeper.extendedTypesEnabled=true",
               "-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg_path]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while True:
        assert p.poll() is None, "%s exited during start-up; see %s" % (kind, log_path)
        try:
            if four_letter(port, "ruok", 1.0) == "imok":
                return p
        except OSError:
            pass
        if time.time() > deadline:
            p.kill()
            raise AssertionError("%s did not answer ruok within 60 s; see %s" % (kind, log_path))
        time.sleep(0.1)


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def client(port):
    c = KazooClient(hosts="127.0.0.1:%d" % port, timeout=20, auth_data=[AUTH])
    c.start(timeout=30)
    # ZooKeeper may open its port before the database is loaded: wait for a served read.
    deadline = time.time() + 30
    while True:
        try:
            c.get("/zookeeper")
            return c
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def dump(port):
    """Every znode: data, all Stat fields, ACL, children in the server's order."""
    c = client(port)
    out = {}
    stack = ["/"]
    while stack:
        p = stack.pop()
        data, st = c.get(p)
        acl, _ = c.get_acls(p)
        kids = c.get_children(p)
        out[p] = (data, tuple(st), sorted((a.perms, a.id.scheme, a.id.id) for a in acl), kids)
        for k in kids:
            stack.append(("/" if p == "/" else p + "/") + k)
    c.stop()
    c.close()
    return out


def populate_zookeeper(port):
    c = client(port)
    for d in range(40):
        c.create("/d%d" % d, b"dir-%d" % d)
        for i in range(60):
            c.create("/d%d/n%d" % (d, i), os.urandom(i * 7 % 300))
        for i in range(0, 60, 7):
            c.set("/d%d/n%d" % (d, i), b"updated")
            c.set("/d%d/n%d" % (d, i), b"updated twice")
        for i in range(3, 60, 11):
            c.delete("/d%d/n%d" % (d, i))
    c.create("/seq", b"")
    for i in range(200):
        c.create("/seq/s-", b"%d" % i, sequence=True)
    for i in range(5):
        create_container(c, "/cont%d" % i, b"c")
        for j in range(4):
            c.create("/cont%d/k%d" % (i, j), b"")
        c.delete("/cont%d/k0" % i)
    c.create("/acl", b"")
    c.create("/acl/digest", b"secret", acl=[make_digest_acl("u", "p", all=True)])
    c.create("/acl/read", b"read-only", acl=[ACL(Permissions.READ, Id("world", "anyone"))])
    c.create("/acl/ip", b"ip", acl=[ACL(Permissions.ALL, Id("ip", "127.0.0.1"))])
    c.set_acls("/d0", [ACL(Permissions.ALL, Id("world", "anyone")), make_digest_acl("u", "p", read=True)])
    c.stop()
    c.close()
    # Ephemerals of a session that is still alive when the server stops (its owner is killed).
    owner = subprocess.Popen([sys.executable, "-c", """
import sys, time
from kazoo.client import KazooClient
c = KazooClient(hosts='127.0.0.1:%d', timeout=30)
c.start(timeout=30)
c.ensure_path('/eph')
for i in range(20):
    c.create('/eph/e%%d' %% i, b'e', ephemeral=True)
c.create('/eph/es-', b'', ephemeral=True, sequence=True)
print('ready', flush=True)
time.sleep(600)
""" % port], stdout=subprocess.PIPE)
    assert owner.stdout.readline().strip() == b"ready"
    return owner


def more_writes(port):
    c = client(port)
    for d in range(40, 50):
        c.create("/d%d" % d, b"from zkd")
        for i in range(20):
            c.create("/d%d/n%d" % (d, i), b"x" * i)
    for i in range(100):
        c.create("/seq/s-", b"zkd", sequence=True)
    c.set("/d1/n1", b"set by zkd")
    c.delete("/d2/n2")
    c.create("/cont0/fromzkd", b"")
    c.stop()
    c.close()


def assert_same(a, b, what):
    assert a.keys() == b.keys(), "%s: paths differ: only in first %s, only in second %s" % (
        what, sorted(a.keys() - b.keys())[:10], sorted(b.keys() - a.keys())[:10])
    for p in a:
        assert a[p] == b[p], "%s: %s differs:\n  %r\n  %r" % (what, p, a[p], b[p])


def test_zookeeper_to_zkd_and_back():
    d = tempfile.mkdtemp(prefix="zkd-roundtrip-")
    # The three servers take turns on one port (the same zoo.cfg): held for the whole test, so
    # that it cannot be taken while no server listens on it; see conftest.PortHold.
    hold = PortHold()
    port = hold.port
    cfg = os.path.join(d, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write("tickTime=2000\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
                "snapCount=400\n4lw.commands.whitelist=*\nadmin.enableServer=false\n"
                "maxClientCnxns=0\nextendedTypesEnabled=true\n" % (os.path.join(d, "data"), port))
    log = os.path.join(d, "servers.log")
    zk = start("oracle", cfg, port, log)
    owner = None
    try:
        owner = populate_zookeeper(port)
        owner.kill()  # the session lives on (30 s timeout) with its ephemerals
        owner.wait()
        before = dump(port)
        assert len(before) > 2000, len(before)
        assert len(before["/eph"][3]) == 21
        stop(zk)
        files = os.listdir(os.path.join(d, "data", "version-2"))
        assert sum(f.startswith("snapshot.") for f in files) >= 2, files
        assert sum(f.startswith("log.") for f in files) >= 2, files

        z = start("zkd", cfg, port, log)
        try:
            assert_same(before, dump(port), "ZooKeeper's data dir served by zkd")
            more_writes(port)
            after = dump(port)
        finally:
            stop(z)

        zk = start("oracle", cfg, port, log)
        assert_same(after, dump(port), "zkd's data dir served by ZooKeeper")
    finally:
        if owner and owner.poll() is None:
            owner.kill()
        stop(zk)
        hold.close()
