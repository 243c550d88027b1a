"""A replicated ensemble of zkd or Apache ZooKeeper 3.8 (the oracle) servers on loopback, started
as separate processes from the same zoo.cfg lines (`server.N=host:quorumPort:electionPort[:observer]
;clientAddress:clientPort` and a `myid` file in each dataDir), for process-level tests.

Ports: every port of every server (client, quorum, election) is a PortHold (tests/py/ports.py),
held for the ensemble's whole life, so that each server finds its own and its peers' ports in
zoo.cfg before anything starts, and a restarted server comes back on the same ports. Both
servers bind beside the hold because they set SO_REUSEADDR on all three listeners (ZooKeeper's
NIOServerCnxnFactory, QuorumCnxManager's listener and Leader's learner socket; zkd's client
listener and its election listener). zkd also gets --port-file (it must report the held port).

Timing: tickTime=200 ms, initLimit=10, syncLimit=5 for both kinds (`TIMING`), so a dead leader is
noticed within about a second and a new one elected within a few.

Logs: each server writes to <dir>/n<sid>/server.log (the oracle through slf4j-simple, which the
classpath puts first: the Debian package's default binding is slf4j-nop, which logs nothing).
`report()` names the directory and shows the end of every log; a failed test keeps the directory.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import PortHold  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZKD_BIN = os.environ.get("ZKD_BIN", os.path.join(ROOT, "target", "release", "zkd"))
# slf4j-simple first: SLF4J 1.7 binds to the first StaticLoggerBinder on the class path.
ZK_CLASSPATH = os.environ.get(
    "ZK_ENSEMBLE_CLASSPATH", "/usr/share/java/slf4j-simple.jar:/usr/share/java/*:/etc/zookeeper/conf")

TIMING = {"tickTime": "200", "initLimit": "10", "syncLimit": "5"}
# zookeeper.commitLogCount: committed proposals the leader keeps in memory to DIFF a follower.
# ZooKeeper raises anything below 500 to 500 (ZKDatabase), so 500 is the smallest that means
# what it says.
COMMIT_LOG_COUNT = 500

BASE_CFG = {
    **TIMING,
    "minSessionTimeout": "400",
    "maxSessionTimeout": "30000",
    "maxClientCnxns": "0",
    "4lw.commands.whitelist": "*",
    "admin.enableServer": "false",
    "commitLogCount": str(COMMIT_LOG_COUNT),
    # Off: ZooKeeper's leader may DIFF a learner older than its committed log from its on-disk
    # log (when the logs after the learner's zxid are small next to the last snapshot; in
    # practice whenever that zxid is in the current log file). zkd's leader has no such path: a
    # learner older than the committed log gets a SNAP. With the factor negative, ZooKeeper
    # decides the same way, so both kinds can be held to one table.
    "snapshotSizeFactor": "-1",
    # Keep every snapshot and log: a failed test's data dirs stay readable.
    "autopurge.purgeInterval": "0",
}

START_TIMEOUT_S = float(os.environ.get("ZKD_ENSEMBLE_START_TIMEOUT", "45"))

SERVING_MODES = ("leader", "follower", "observer")


class EnsembleError(AssertionError):
    pass


def four_letter(port, word, timeout=2.0):
    """The answer to a four-letter word, or '' if the server is not there (or is paused)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(word.encode())
            out = b""
            while True:
                b = s.recv(65536)
                if not b:
                    return out.decode(errors="replace")
                out += b
    except OSError:
        return ""


def parse_srvr(text):
    """(mode, zxid) from `srvr`: mode is leader|follower|observer|standalone, or None when the
    server answers without serving (electing, syncing) or not at all."""
    mode = zxid = None
    for line in text.splitlines():
        if line.startswith("Mode: "):
            mode = line[6:].strip()
        elif line.startswith("Zxid: "):
            zxid = int(line[6:].strip(), 16)
    return mode, zxid


def parse_mntr(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("\t")
        if sep:
            out[k.strip()] = v.strip()
    return out


def wait_until(cond, timeout, what, step=0.05):
    """Polls cond() until it returns something true, and returns that; raises EnsembleError
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise EnsembleError("timed out after %.1fs waiting until %s" % (timeout, what))
        time.sleep(step)


# --- ZooKeeper's transaction log format (version-2/log.<zxid>), read back to see what a server
# --- has logged; zkd writes the same format.

TXNLOG_MAGIC = struct.unpack(">i", b"ZKLG")[0]
CREATE_TYPES = (1, 15, 19, 21)  # create, create2, createContainer, createTTL: CreateTxn-like


def read_txnlog(path):
    """[(zxid, type, created path or None)] of one log file, up to its first incomplete entry
    (a ZooKeeper log is preallocated with zeros: a zero length ends it)."""
    out = []
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) < 16 or struct.unpack(">i", head[:4])[0] != TXNLOG_MAGIC:
            return out
        while True:
            h = f.read(12)
            if len(h) < 12:
                return out
            (n,) = struct.unpack(">i", h[8:])
            if n < 32 or n > 64 << 20:
                return out
            txn = f.read(n + 1)
            if len(txn) < n + 1:
                return out
            zxid, _time, typ = struct.unpack(">qqi", txn[12:32])
            created = None
            if typ in CREATE_TYPES and n >= 36:
                (plen,) = struct.unpack(">i", txn[32:36])
                if 0 <= plen <= n - 36:
                    created = txn[36:36 + plen].decode(errors="replace")
            out.append((zxid, typ, created))


def logged_txns(data_dir):
    """Every transaction in the logs of a dataDir (version-2/log.*), in file order."""
    d = os.path.join(data_dir, "version-2")
    try:
        names = sorted((n for n in os.listdir(d) if n.startswith("log.")), key=lambda n: int(n[4:], 16))
    except (OSError, ValueError):
        return []
    out = []
    for n in names:
        out.extend(read_txnlog(os.path.join(d, n)))
    return out


def tcp_queues(local_port, remote=False):
    """{remote port: (tx_queue, rx_queue)} of the established TCP sockets with this local port
    (remote=True: {local port: (tx_queue, rx_queue)} of those with this remote port), from
    /proc/net/tcp and tcp6 (Java's sockets are IPv6 ones)."""
    out = {}
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            p = line.split()
            if len(p) < 5 or p[3] != "01":  # ESTABLISHED
                continue
            mine, theirs = int(p[1].rsplit(":", 1)[1], 16), int(p[2].rsplit(":", 1)[1], 16)
            if remote:
                mine, theirs = theirs, mine
            if mine != local_port:
                continue
            tx, rx = (int(x, 16) for x in p[4].split(":"))
            out[theirs] = (tx, rx)
    return out


def _ss_kill(local_port):
    r = subprocess.run(["ss", "-K", "-tn", "state", "established", "( sport = :%d )" % local_port],
                       capture_output=True, text=True)
    return r.returncode == 0


def socket_destroy_works():
    """Whether `ss -K` aborts a socket here (root, CONFIG_INET_DIAG_DESTROY): tried on a
    connection of our own."""
    try:
        with socket.socket() as lst:
            lst.bind(("127.0.0.1", 0))
            lst.listen()
            port = lst.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port)):
                s, _ = lst.accept()
                with s:
                    if not _ss_kill(port):
                        return False
                    try:
                        s.send(b"x")
                    except OSError:
                        return True
                    return False
    except OSError:
        return False


def destroy_sockets(local_port):
    """Aborts (RST, unsent data dropped) every established TCP socket with this local port, if
    `ss -K` works here. True if it did."""
    return socket_destroy_works() and _ss_kill(local_port)


class Node:
    """One server of an ensemble: its ports (held), its dataDir with myid, its process."""

    def __init__(self, ens, sid, observer, kind):
        self.ens = ens
        self.sid = sid
        self.kind = kind
        self.observer = observer
        self.holds = [PortHold(), PortHold(), PortHold()]
        self.client_port, self.quorum_port, self.election_port = (h.port for h in self.holds)
        self.dir = os.path.join(ens.dir, "n%d" % sid)
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir)
        self.write_myid()
        self.cfg_path = os.path.join(self.dir, "zoo.cfg")
        self.log_path = os.path.join(self.dir, "server.log")
        self.port_file = os.path.join(self.dir, "zkd.port")
        self.proc = None
        self.log = None
        self.paused = False

    def write_myid(self):
        with open(os.path.join(self.data_dir, "myid"), "w") as f:
            f.write("%d\n" % self.sid)

    def server_line(self):
        role = ":observer" if self.observer else ""
        return "server.%d=127.0.0.1:%d:%d%s;127.0.0.1:%d" % (
            self.sid, self.quorum_port, self.election_port, role, self.client_port)

    @property
    def hostport(self):
        return "127.0.0.1:%d" % self.client_port

    def command(self):
        if self.kind == "zkd":
            return [ZKD_BIN, "serve", "--config", self.cfg_path, "--port-file", self.port_file]
        return ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m",
                "-Dzookeeper.admin.enableServer=false",
                # System properties ZooKeeper also takes from zoo.cfg (QuorumPeerConfig sets
                # "zookeeper." + key for keys it does not know); given both ways, to be sure.
                "-Dzookeeper.commitLogCount=%d" % COMMIT_LOG_COUNT,
                "-Dzookeeper.snapshotSizeFactor=%s" % self.ens.cfg["snapshotSizeFactor"],
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
                "-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.quorum.QuorumPeerMain", self.cfg_path]

    def start(self):
        assert not self.alive(), "n%d is already running" % self.sid
        if self.kind == "zkd" and not os.path.exists(ZKD_BIN):
            raise EnsembleError("zkd binary not found at %s (set ZKD_BIN or build it)" % ZKD_BIN)
        self.log = open(self.log_path, "ab")
        self.log.write(b"===== harness: starting n%d (%s) at %s\n" % (
            self.sid, self.kind.encode(), time.strftime("%H:%M:%S").encode()))
        self.log.flush()
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.paused = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _reap(self):
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def stop(self, timeout=15.0):
        """SIGTERM (a clean stop), then SIGKILL if it has not exited within `timeout` s."""
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)
        self._reap()

    def kill(self):
        """SIGKILL: no chance to close sessions or sockets cleanly."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait(10)
        self.paused = False
        self._reap()

    def pause(self):
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self._signal(signal.SIGCONT)
        self.paused = False

    def wipe(self):
        """Removes the node's snapshots and logs (it must be stopped); myid stays."""
        assert not self.alive()
        shutil.rmtree(self.data_dir)
        os.makedirs(self.data_dir)
        self.write_myid()

    def srvr(self):
        if not self.alive() or self.paused:
            return None, None
        return parse_srvr(four_letter(self.client_port, "srvr"))

    def mode(self):
        return self.srvr()[0]

    def mntr(self):
        if not self.alive() or self.paused:
            return {}
        return parse_mntr(four_letter(self.client_port, "mntr"))

    def logged(self):
        return logged_txns(self.data_dir)

    def tail_log(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""


def _kind(k):
    k = "oracle" if k == "java" else k
    assert k in ("zkd", "oracle"), k
    return k


class Ensemble:
    """`voters` participants and `observers` observers, server ids 1..voters+observers (observers
    last), of one kind ('zkd' or 'oracle'), or of the kinds `kinds` gives per server ({sid: kind}
    or a list in sid order; 'java' is a synonym of 'oracle') in a mixed ensemble, where
    `set_kind` changes a stopped server's kind (the same zoo.cfg, myid and dataDir: a rolling
    migration). Nothing runs until start()."""

    def __init__(self, kind, voters=3, observers=0, extra_cfg=None, name="ens", kinds=None):
        assert kind in ("zkd", "oracle", "mixed"), kind
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="zkd-%s-%s-" % (name, kind))
        self.nodes = {}
        n = voters + observers
        if kinds is None:
            assert kind != "mixed", "a mixed ensemble needs kinds="
            kinds = [kind] * n
        if isinstance(kinds, dict):
            kinds = [kinds[s] for s in range(1, n + 1)]
        assert len(kinds) == n, kinds
        for sid in range(1, n + 1):
            self.nodes[sid] = Node(self, sid, observer=sid > voters, kind=_kind(kinds[sid - 1]))
        self.cfg = dict(BASE_CFG)
        self.cfg.update(extra_cfg or {})
        self.clients = []
        for n in self.nodes.values():
            cfg = dict(self.cfg)
            cfg["dataDir"] = n.data_dir
            cfg["clientPort"] = str(n.client_port)
            cfg["clientPortAddress"] = "127.0.0.1"
            if n.observer:
                cfg["peerType"] = "observer"
            with open(n.cfg_path, "w") as f:
                for k, v in cfg.items():
                    f.write("%s=%s\n" % (k, v))
                for m in self.nodes.values():
                    f.write(m.server_line() + "\n")

    # --- membership and state

    def set_kind(self, sid, kind):
        """Makes stopped server `sid` run as `kind` from its next start, on the same files."""
        n = self.nodes[sid]
        assert not n.alive(), "n%d runs: stop it before it changes kind" % sid
        n.kind = _kind(kind)

    def kinds(self):
        return {s: n.kind for s, n in self.nodes.items()}

    def node(self, sid):
        return self.nodes[sid]

    @property
    def sids(self):
        return list(self.nodes)

    @property
    def voters(self):
        return [s for s, n in self.nodes.items() if not n.observer]

    def running(self):
        """The sids of the servers that run and are not paused."""
        return [s for s, n in self.nodes.items() if n.alive() and not n.paused]

    def hosts(self, sids=None):
        """A connect string of these servers (default: all), in this order."""
        return ",".join(self.nodes[s].hostport for s in (sids if sids is not None else self.sids))

    def modes(self, sids=None):
        return {s: self.nodes[s].mode() for s in (sids if sids is not None else self.running())}

    def wait_until(self, cond, timeout, what, step=0.05):
        try:
            return wait_until(cond, timeout, what, step)
        except EnsembleError as e:
            raise EnsembleError("%s; modes now %s" % (e, self.modes())) from None

    # --- processes

    def start(self, sids=None, timeout=START_TIMEOUT_S):
        """Starts these servers (default: all) together and waits until every running server
        serves under one leader."""
        for s in sids if sids is not None else self.sids:
            self.nodes[s].start()
        return self.wait_formed(timeout)

    def start_node(self, sid, timeout=START_TIMEOUT_S):
        self.nodes[sid].start()
        return self.wait_formed(timeout)

    def stop(self, sid):
        self.nodes[sid].stop()

    def kill(self, sid):
        self.nodes[sid].kill()

    def pause(self, sid):
        self.nodes[sid].pause()

    def resume(self, sid):
        self.nodes[sid].resume()

    def _check_alive(self, sids):
        for s in sids:
            n = self.nodes[s]
            if n.proc is not None and n.proc.poll() is not None:
                raise EnsembleError("n%d exited with %s; log:\n%s" % (s, n.proc.returncode, n.tail_log()))

    def formed(self, sids=None):
        """The leader's sid if every one of these servers (default: the running ones) serves and
        exactly one of them leads; else None."""
        sids = sids if sids is not None else self.running()
        self._check_alive(sids)
        m = self.modes(sids)
        standalone = [s for s, v in m.items() if v == "standalone"]
        if standalone:
            # Never right for a member of an ensemble: fail now rather than at the deadline.
            raise EnsembleError("servers %s answer srvr with Mode: standalone although their zoo.cfg describes "
                                "an ensemble (modes %s)" % (standalone, m))
        if any(v not in SERVING_MODES for v in m.values()):
            return None
        leaders = [s for s, v in m.items() if v == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def wait_formed(self, timeout=START_TIMEOUT_S, sids=None):
        """Waits until formed(); returns the leader's sid."""
        return self.wait_until(lambda: self.formed(sids), timeout,
                               "servers %s serve under one leader" % (sids or self.running()))

    def leader(self, timeout=START_TIMEOUT_S):
        return self.wait_formed(timeout)

    def followers(self):
        return [s for s, m in self.modes().items() if m == "follower"]

    def synced(self):
        """The leader's sid if formed() and every running server has applied the same last zxid
        (with no writes in flight: the state right after a sync)."""
        ld = self.formed()
        if ld is None:
            return None
        zx = {self.nodes[s].srvr()[1] for s in self.running()}
        return ld if len(zx) == 1 and None not in zx else None

    def wait_synced(self, timeout=START_TIMEOUT_S):
        return self.wait_until(self.synced, timeout, "every running server has the leader's last zxid")

    # --- clients

    def client(self, sids=None, hosts=None, timeout=10.0, start_timeout=20.0, **kw):
        """A started KazooClient on these servers (default: all), in the given order (not
        shuffled); closed by close()."""
        from kazoo.client import KazooClient
        c = KazooClient(hosts=hosts or self.hosts(sids), timeout=timeout, randomize_hosts=False, **kw)
        self.clients.append(c)
        c.start(timeout=start_timeout)
        return c

    def tree(self, sid):
        """{path: (data, stat fields)} of every znode, read from server `sid` alone after a sync
        (level by level, each level's reads pipelined)."""
        c = self.client([sid])
        try:
            c.sync("/")
            out = {}
            level = ["/"]
            while level:
                gets = [(p, c.get_async(p), c.get_children_async(p)) for p in level]
                level = []
                for p, g, ch in gets:
                    data, st = g.get(timeout=30)
                    # ephemeralOwner: session ids, equal on every server of one ensemble.
                    out[p] = (data, st.czxid, st.mzxid, st.pzxid, st.version, st.cversion, st.aversion,
                              st.ephemeralOwner, st.numChildren)
                    level.extend(p.rstrip("/") + "/" + x for x in ch.get(timeout=30))
            return out
        finally:
            self.drop_client(c)

    def assert_trees_identical(self, sids=None):
        """Reads every znode from each server (default: the running ones) and asserts that all
        trees are identical; returns the tree."""
        sids = sids if sids is not None else self.running()
        trees = {s: self.tree(s) for s in sids}
        first = trees[sids[0]]
        for s in sids[1:]:
            t = trees[s]
            if t != first:
                only_a = sorted(set(first) - set(t))[:10]
                only_b = sorted(set(t) - set(first))[:10]
                diff = sorted(p for p in set(first) & set(t) if first[p] != t[p])[:10]
                raise EnsembleError("n%d and n%d differ: only on n%d %s, only on n%d %s, different %s" % (
                    sids[0], s, sids[0], only_a, s, only_b,
                    [(p, first[p][1:], t[p][1:]) for p in diff]))
        return first

    def drop_client(self, c):
        try:
            c.stop()
            c.close()
        except Exception:
            pass
        if c in self.clients:
            self.clients.remove(c)

    # --- sync kinds

    def sync_counts(self, sid):
        """(diff_count, snap_count) from the `mntr` of leader `sid`: how many learners it synced
        with DIFF (or TRUNC: ZooKeeper counts both as diff) and with SNAP."""
        m = self.nodes[sid].mntr()
        return int(m.get("zk_diff_count", -1)), int(m.get("zk_snap_count", -1))

    def write(self, client, prefix, n, size=16):
        """n creates under `prefix` (made if missing), pipelined; returns their paths."""
        client.ensure_path(prefix)
        paths = ["%s/t%06d" % (prefix, i) for i in range(n)]
        data = b"x" * size
        for a in [client.create_async(p, data) for p in paths]:
            a.get(timeout=30)
        return paths

    def behind_and_back(self, sid, writer, prefix, n, wipe=False):
        """Stops follower `sid`, writes `n` transactions on the others, optionally wipes its
        dataDir, restarts it and waits until it has caught up. Returns the leader's sid and the
        change of the leader's (diff_count, snap_count) across the restart.

        n < commitLogCount: the leader DIFFs from its committed log. n > commitLogCount: the
        leader sends a SNAP (its on-disk log sync is off, see snapshotSizeFactor). A wiped
        follower (zxid 0) gets a SNAP whatever n is."""
        ld = self.wait_synced()
        assert sid != ld, "behind_and_back takes a follower"
        self.stop(sid)
        self.write(writer, prefix, n)
        if wipe:
            self.nodes[sid].wipe()
        before = self.sync_counts(ld)
        self.nodes[sid].start()
        assert self.wait_synced() == ld, "the leader changed while a follower restarted"
        after = self.sync_counts(ld)
        return ld, (after[0] - before[0], after[1] - before[1])

    def make_trunc(self, prefix="/trunc", markers=3, filler_size=256 * 1024, max_fillers=64,
                   new_epoch_writes=0, settle_fillers=4, wipe_old_leader=False):
        """Leaves the leader with transactions no other server has, and brings it back so that
        the new leader must TRUNC it (3 voters, no observers).

        The followers are stopped (SIGSTOP); the leader, still leading for syncLimit ticks, is
        given creates of `filler_size` bytes until its connections to both followers are stuck
        (the follower's receive window is full: the leader's send queue holds bytes that stay
        put); then `markers` creates under `prefix`, which it logs but cannot send; once they
        are in its transaction log, its connections to the followers are aborted where `ss -K`
        works (so that the kernel drops their unsent bytes rather than deliver them after the
        close; without it the markers were never delivered either, in practice: they wait in
        the leader's own queue behind the stuck socket) and it is killed (-9). The followers
        resume, elect a new leader from what they have (checked: no marker in their logs), and
        the old leader is restarted at once (before any transaction of the new epoch, which
        would make the leader send a SNAP instead: ZooKeeper never TRUNCs across an epoch).

        new_epoch_writes > 0: that many creates under `prefix` through the new leader before the
        old one returns: then the old leader's last zxid and the new leader's next txn are of
        different epochs, and the new leader sends a SNAP rather than a TRUNC.
        wipe_old_leader: the old leader comes back with an empty dataDir (a SNAP, taken before
        the new epoch's first txn unless new_epoch_writes).

        Returns a dict: old and new leader, the marker paths, the new leader's (diff_count,
        snap_count) change across the old leader's return, and what the old leader had logged."""
        ld = self.wait_synced()
        assert len(self.nodes) == 3 and not any(n.observer for n in self.nodes.values())
        fs = [s for s in self.sids if s != ld]
        lnode = self.nodes[ld]
        w = self.client([ld])
        w.ensure_path(prefix)
        self.wait_synced()
        filler = b"f" * filler_size
        for s in fs:
            self.pause(s)
        try:
            t_pause = time.monotonic()

            def queues():
                q = tcp_queues(lnode.quorum_port)
                return q if len(q) == len(fs) and all(tx > 0 for tx, _ in q.values()) else None

            pending, n = [], 0
            while True:
                if n >= max_fillers:
                    raise EnsembleError("the leader's connections to the followers never filled "
                                        "up after %d fillers: %s" % (n, tcp_queues(lnode.quorum_port)))
                pending.append(w.create_async("%s/fill%03d" % (prefix, n), filler))
                n += 1
                q1 = queues()
                if q1 is None:
                    continue
                time.sleep(0.1)
                q2 = queues()
                # The followers read nothing: a send queue that is not empty and has not shrunk
                # is a closed window, and whatever the leader queues after it stays on its side.
                if q2 is not None and q2.keys() == q1.keys() and all(q2[k][0] >= q1[k][0] for k in q1):
                    break
            # A send queue that looked stuck may have been slow delivery (a busy machine), or a
            # stopped receiver's kernel may still open its window a little (when it compacts its
            # receive queue): a few more fillers take that room, and the followers' receive
            # queues must then stay put (everything after stays on the leader's side).
            for _ in range(settle_fillers):
                pending.append(w.create_async("%s/fill%03d" % (prefix, n), filler))
                n += 1

            def received():
                r = tcp_queues(lnode.quorum_port, remote=True)
                return sorted(rx for _, rx in r.values()) if len(r) == len(fs) else None

            seen = [received()]

            def settled():
                seen.append(received())
                return len(seen) >= 4 and seen[-1] is not None and seen[-4:] == [seen[-1]] * 4 \
                    and queues() is not None

            self.wait_until(settled, 3, "the followers' receive queues stay put (%s)" % seen[-3:], step=0.1)
            marker_paths = ["%s/marker%d" % (prefix, i) for i in range(markers)]
            for p in marker_paths:
                pending.append(w.create_async(p, b"uncommitted"))
            self.wait_until(
                lambda: set(marker_paths) <= {p for _, _, p in lnode.logged()},
                5, "the leader has logged the markers")
            old_logged = lnode.logged()
            aborted = destroy_sockets(lnode.quorum_port)
            self.kill(ld)
            t_kill = time.monotonic()
        finally:
            for s in fs:
                self.resume(s)
        self.drop_client(w)
        new = self.wait_formed(sids=fs)
        for s in fs:
            logged = {p for _, _, p in self.nodes[s].logged()}
            if logged & set(marker_paths):
                raise EnsembleError("follower n%d got a marker: the TRUNC construction failed" % s)
        # The other follower has synced with the new leader: count from here.
        self.wait_until(lambda: int(self.nodes[new].mntr().get("zk_synced_followers", -1)) == 1,
                        10, "the new leader has its follower synced")
        if new_epoch_writes:
            w = self.client([new])
            for i in range(new_epoch_writes):
                w.create("%s/new-epoch%d" % (prefix, i), b"")
            self.drop_client(w)
        if wipe_old_leader:
            self.nodes[ld].wipe()
        before = self.sync_counts(new)
        self.nodes[ld].start()
        self.wait_formed()
        assert self.formed() == new
        self.wait_until(lambda: int(self.nodes[new].mntr().get("zk_synced_followers", -1)) == 2,
                        10, "the new leader has both followers synced")
        after = self.sync_counts(new)
        return {
            "old_leader": ld, "new_leader": new, "markers": marker_paths, "fillers": n,
            "old_logged": old_logged, "pause_to_kill_s": t_kill - t_pause, "aborted": aborted,
            "delta": (after[0] - before[0], after[1] - before[1]),
        }

    # --- teardown and diagnostics

    def report(self, tail=2500):
        out = ["ensemble logs in %s (kind %s)" % (self.dir, self.kind)]
        for s, n in self.nodes.items():
            out.append("--- n%d (%s %s) %s, ports client %d quorum %d election %d, tail of %s:" % (
                s, n.kind, "observer" if n.observer else "voter", "running" if n.alive() else "stopped",
                n.client_port, n.quorum_port, n.election_port, n.log_path))
            out.append(n.tail_log(tail))
        return "\n".join(out)

    def close(self, keep=False):
        for c in list(self.clients):
            self.drop_client(c)
        for n in self.nodes.values():
            if n.paused:
                n.resume()
            n.kill() if keep else n.stop(timeout=5)
            for h in n.holds:
                h.close()
        if not keep and os.environ.get("ZKD_KEEP_TMP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


def zkd_ensemble_refusal(timeout=15.0):
    """Runs `zkd serve` once on a 3-server config (server 1, its peers absent). Returns None if
    it starts (it accepts ensembles), else (exit code, what it printed)."""
    d = tempfile.mkdtemp(prefix="zkd-ensemble-probe-")
    holds = [PortHold() for _ in range(9)]
    try:
        data = os.path.join(d, "data")
        os.makedirs(data)
        with open(os.path.join(data, "myid"), "w") as f:
            f.write("1\n")
        cfg = os.path.join(d, "zoo.cfg")
        with open(cfg, "w") as f:
            for k, v in BASE_CFG.items():
                f.write("%s=%s\n" % (k, v))
            f.write("dataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n" % (data, holds[0].port))
            for i in range(3):
                c, q, e = (h.port for h in holds[3 * i:3 * i + 3])
                f.write("server.%d=127.0.0.1:%d:%d;127.0.0.1:%d\n" % (i + 1, q, e, c))
        p = subprocess.Popen([ZKD_BIN, "serve", "--config", cfg, "--port-file", os.path.join(d, "port")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if p.poll() is not None:
                return p.returncode, p.stdout.read().decode(errors="replace")
            if four_letter(holds[0].port, "ruok", 0.5) == "imok":
                break
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)
        return None
    finally:
        for h in holds:
            h.close()
        shutil.rmtree(d, ignore_errors=True)
