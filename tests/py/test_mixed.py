"""Mixed ensembles: zkd and Apache ZooKeeper 3.8 (the Debian package, QuorumPeerMain) as members
of ONE ensemble, started from the same zoo.cfg lines (tests/py/ensemble.py, `kinds=`), and the
rolling migration an operator does: each server in turn stopped and started as the other kind on
the same zoo.cfg, myid and dataDir, under kazoo writers and ZooKeeper's own zkCli.sh. And a
leader of one kind cut off with proposals nobody else has, brought back by a leader of the other
kind: TRUNC (or SNAP once the new epoch has txns), its proposals gone everywhere.

Which kind leads is forced by the election's tie-break: servers with equal epochs and zxids elect
the highest server id, so the kind of the highest voter leads a fresh ensemble; once a leader is
killed, the highest surviving voter leads (same zxids: nothing is in flight then).

Every ZooKeeper server's log must stay free of ERROR lines while nobody is killed, and free of
ZooKeeper's digest-mismatch lines throughout (but on a server that hit ZOOKEEPER-4394 first,
see below). Figures (sync counts, migration unavailability,
retries) are printed: run with -s to see them.
"""
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from kazoo.protocol.states import KazooState

import ensemble as E
from conftest import require
from opcodes import rawzk
from test_ensemble import SESSION_OWNER, Load, assert_stays, check_acked, raw_resume, require_kind

# ZooKeeper's DataTree.compareDigest and ZKDatabase log these when a digest disagrees.
DIGEST_MISMATCH = re.compile(r"[Dd]igests? (are not matching|mismatch)|digest mismatch", re.I)
# ERROR lines ZooKeeper logs when a peer goes away, whatever its kind (a Java peer stopped
# cleanly causes them too): a leader's LearnerHandler or its sender reading EOF or a reset
# (the learner exited with bytes unread) or its closed socket, a learner that cannot reach a
# leader that stopped, a client connection (a four-letter word) closed while answered.
# ZooKeeper 3.8.0's own bugs, seen between ZooKeeper servers alone in the migration: a learner
# hits ZOOKEEPER-4394 (an NPE in syncWithLeader when a COMMIT meets no pending proposal, logged
# at WARN) and its sync thread then dies of ZOOKEEPER-4409/4541 (an NPE on the closed leader
# socket, logged at ERROR). Tolerated (and counted) only on a server that logged the first.
# So is a digest mismatch on such a server: after ZOOKEEPER-4394 its SyncThread still logs the
# proposals of the failed sync, while the server registers again at the zxid it had before them;
# the next sync sends them again, it logs them twice ("Current zxid ... is <= ..."), applies them
# on a tree that has them already and its own digest check then disagrees (seen once, under the
# migration's load; the trees are compared znode by znode afterwards all the same).
ZK_4394 = re.compile(r'NullPointerException: Cannot read field "hdr" because "pif" is null')
ZK_4409 = re.compile(r'NullPointerException: Cannot invoke "java\.net\.Socket\.isClosed\(\)" because '
                     r'"this\.learner\.sock" is null')
PEER_GONE = re.compile(r"java\.io\.EOFException|SocketException: Connection reset|"
                       r"ConnectException: Connection refused|SocketException: Broken pipe|"
                       r"SocketException: Socket closed|ClosedChannelException")


class Made:
    """The ensembles a test made; closed after it, kept with their logs if it failed."""

    def __init__(self):
        self.es = []
        self.failed = False


@pytest.fixture
def made():
    require_kind("oracle")
    require_kind("zkd")
    m = Made()
    yield m
    for e in m.es:
        e.close(keep=m.failed)


def mixed(made, kinds, voters, name, extra_cfg=None):
    e = E.Ensemble("mixed", voters=voters, observers=len(kinds) - voters, kinds=kinds, name=name,
                   extra_cfg=extra_cfg)
    made.es.append(e)
    return e


class JavaLogs:
    """Reads what the ZooKeeper servers of an ensemble logged since the last mark."""

    def __init__(self, e):
        self.e = e
        self.offsets = {}
        self.known_bugs = 0
        self.known_bug_digests = 0
        self.mark()

    def mark(self):
        for s, n in self.e.nodes.items():
            self.offsets[s] = os.path.getsize(n.log_path) if os.path.exists(n.log_path) else 0

    def lines(self):
        out = []
        for s, n in self.e.nodes.items():
            if n.kind != "oracle" or not os.path.exists(n.log_path):
                continue
            with open(n.log_path, "rb") as f:
                f.seek(self.offsets.get(s, 0))
                out.extend("n%d: %s" % (s, x) for x in f.read().decode(errors="replace").splitlines())
        return out

    def check(self, errors=True):
        """No digest mismatch since the mark; and, if `errors`, no ERROR line but those of a
        peer going away (PEER_GONE, the exception on the next line). Returns how many of those
        there were."""
        lines = self.lines()
        bad = []
        gone = 0
        for i, x in enumerate(lines):
            if DIGEST_MISMATCH.search(x):
                node = x.split(":", 1)[0]
                if any(ZK_4394.search(y) for y in lines[:i] if y.startswith(node + ":")):
                    self.known_bug_digests += 1
                else:
                    bad.append(x)
            elif errors and " ERROR " in x:
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                node = x.split(":", 1)[0]
                if PEER_GONE.search(nxt):
                    gone += 1
                elif ZK_4409.search(nxt) and any(
                        ZK_4394.search(y) for y in lines[:i] if y.startswith(node + ":")):
                    self.known_bugs += 1
                else:
                    bad.append(x + " / " + nxt)
        assert not bad, "ZooKeeper logged:\n" + "\n".join(bad[:20])
        return gone


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def start_leader_first(e, sid):
    """Starts server `sid`, waits until it takes election connections, then starts the others,
    so that `sid` (the highest voter) is LOOKING when they look: they elect it. Started
    together, the servers of the kind that starts faster (zkd within milliseconds, a JVM in
    seconds) would elect among themselves first. Returns the leader."""
    e.node(sid).start()
    e.wait_until(lambda: listening(e.node(sid).election_port), 30, "n%d takes election connections" % sid)
    for s, n in e.nodes.items():
        if s != sid:
            n.start()
    return e.wait_formed()


def visible_everywhere(e, paths, sids=None):
    for s in sids if sids is not None else e.running():
        c = e.client([s])
        c.sync("/")
        missing = [p for p in paths if c.exists(p) is None]
        e.drop_client(c)
        assert not missing, "n%d (%s) lacks %s" % (s, e.node(s).kind, missing)


def move_session(e, origin, dest, then):
    """A session made on `origin` by a process that dies (-9), with an ephemeral: resumed on
    `dest` by id and password, then moved on to `then`; its ephemeral is everywhere throughout.
    Returns the session's kazoo client (on `then`)."""
    owner = subprocess.Popen([sys.executable, "-c", SESSION_OWNER, e.hosts([origin])],
                             stdout=subprocess.PIPE, text=True)
    try:
        words = owner.stdout.readline().split()
        assert len(words) == 2, "the session owner printed no client id (exit %s)" % owner.poll()
        sid, pw = int(words[0]), bytes.fromhex(words[1])
    finally:
        owner.kill()
        owner.wait()
    moved = e.client([dest], client_id=(sid, pw))
    assert moved.client_id[0] == sid, "the session was not resumed on n%d" % dest
    moved.create("/moved/eph-%d" % dest, b"", ephemeral=True)
    states = []
    moved.add_listener(states.append)
    moved.set_hosts(e.hosts([then]))
    # Drop the connections to dest (`ss -K`): kazoo reconnects to `then`, same session.
    if E.destroy_sockets(e.node(dest).client_port):
        e.wait_until(lambda: KazooState.SUSPENDED in states and states[-1] == KazooState.CONNECTED, 30,
                     "the session reconnected to n%d" % then)
        assert KazooState.LOST not in states, states
        assert moved.client_id[0] == sid
    for s in e.running():
        c = e.client([s])
        c.sync("/moved")
        for p in ("/moved/eph", "/moved/eph-%d" % dest):
            st = c.exists(p)
            assert st is not None and st.ephemeralOwner == sid, (s, p, st)
        e.drop_client(c)
    return moved


def watches_move(e, origin, dest, writer):
    """A raw client's watches set on `origin` come along to `dest` (SetWatches), and fire."""
    writer.ensure_path("/w/kids")
    writer.create("/w/data", b"0")
    r = rawzk.Client("127.0.0.1", e.node(origin).client_port)
    assert r.sync("/w")[0] == rawzk.OK
    assert r.get_data("/w/data", watch=True)[0] == rawzk.OK
    assert r.get_children("/w/kids", watch=True)[0] == rawzk.OK
    assert r.exists("/w/absent", watch=True)[0] == rawzk.NONODE
    r.close_socket()
    writer.set("/w/data", b"changed while away")
    r2 = raw_resume(e, dest, r.session_id, r.passwd, r.last_zxid)
    assert r2.session_id == r.session_id
    assert r2.set_watches(r.last_zxid, data=["/w/data"], exist=["/w/absent"], child=["/w/kids"])[0] == rawzk.OK
    writer.create("/w/kids/k")
    writer.create("/w/absent")
    events = []

    def three():
        try:
            events.extend(ev.tup() for ev in r2.wait_event(0.2))
        except TimeoutError:
            pass
        return len(events) >= 3

    e.wait_until(three, 15, "the moved watches fired (have %s)" % events)
    assert sorted(events) == sorted([(3, 3, "/w/data"), (4, 3, "/w/kids"), (1, 3, "/w/absent")]), events
    assert r2.close() == rawzk.OK


# kinds of servers 1..4 (4 is an observer): the highest voter, 3, leads a fresh ensemble.
LAYOUTS = {
    # zkd leads two ZooKeeper followers (a ZooKeeper majority) and a ZooKeeper observer.
    "zkd-leads": ["java", "java", "zkd", "java"],
    # ZooKeeper leads two zkd followers (a zkd majority) and a zkd observer.
    "java-leads": ["zkd", "zkd", "java", "zkd"],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_mixed_ensemble_replicates_syncs_moves_sessions_and_fails_over(made, layout):
    kinds = LAYOUTS[layout]
    e = mixed(made, kinds, voters=3, name=layout)
    logs = JavaLogs(e)
    made_ok = False
    try:
        ld = start_leader_first(e, 3)
        assert ld == 3 and e.node(ld).kind == E._kind(kinds[2]), (ld, e.modes())
        assert e.modes()[4] == "observer"
        lkind = e.node(ld).kind
        other = [s for s in (1, 2) if e.node(s).kind != lkind]
        same = [s for s in (1, 2) if e.node(s).kind == lkind]
        assert other and not same, kinds  # both followers are of the other kind

        # Writes through every server (learners forward them, and session creation, to the
        # leader of the other kind) are seen everywhere.
        clients = {s: e.client([s]) for s in e.sids}
        paths = []
        for s, c in clients.items():
            p = c.create("/m/from-n%d" % s, b"n%d" % s, makepath=True)
            c.set(p, b"again")
            c.create(p + "/child", b"")
            c.delete(p + "/child")
            tx = c.transaction()
            tx.create(p + "/multi", b"m")
            tx.set_data(p, b"multi")
            res = tx.commit()
            assert not any(isinstance(r, Exception) for r in res), (s, res)
            paths += [p, p + "/multi"]
        visible_everywhere(e, paths)
        e.wait_synced()
        e.assert_trees_identical()

        # Sessions on learners stay alive on touches forwarded to the other kind's leader.
        short = e.client([other[0]], timeout=1.5)
        short.create("/m/short-lived", b"", ephemeral=True)
        assert_stays(lambda: clients[ld].exists("/m/short-lived") is not None, 3.0,
                     "a session on n%d is kept alive by its touches" % other[0])
        e.drop_client(short)

        # A session moves between kinds (its ephemerals and, with SetWatches, its watches); a
        # learner takes it back with REVALIDATE at the other kind's leader.
        java = [s for s in e.sids if e.node(s).kind == "oracle"]
        zkd = [s for s in e.sids if e.node(s).kind == "zkd"]
        origin = java[0]
        dest = next(s for s in zkd if s != ld) if any(s != ld for s in zkd) else ld
        then = next(s for s in e.sids if s not in (origin, dest, ld) and s != 4) \
            if any(s not in (origin, dest, ld, 4) for s in e.sids) else origin
        moved = move_session(e, origin, dest, then)
        e.drop_client(moved)
        watches_move(e, origin=java[-1], dest=zkd[0], writer=clients[ld])
        e.wait_until(lambda: clients[ld].exists("/moved/eph") is None, 15,
                     "the moved session's ephemerals go with it")

        # A restarted follower of the other kind catches up by DIFF, then by SNAP (more than
        # commitLogCount behind: both kinds' leaders send a snapshot then, see ensemble.py).
        f = other[0]
        d_ld, delta = e.behind_and_back(f, clients[ld], "/diff", 50)
        assert d_ld == ld and delta == (1, 0), ("DIFF", delta)
        d_ld, delta = e.behind_and_back(f, clients[ld], "/snap", E.COMMIT_LOG_COUNT + 100)
        assert d_ld == ld and delta == (0, 1), ("SNAP", delta)
        # The observer (the other kind too) and a wiped follower: SNAP of the whole tree.
        d_ld, delta = e.behind_and_back(4, clients[ld], "/obs", 20, wipe=True)
        assert delta == (0, 1), ("observer SNAP", delta)
        print("\n[%s] leader n%d (%s): DIFF and SNAP to n%d (%s), SNAP to observer n4 (%s)" % (
            layout, ld, lkind, f, e.node(f).kind, e.node(4).kind))
        e.wait_synced()
        e.assert_trees_identical()
        logs.check(errors=True)

        # The leader is killed (-9): the others elect (server 2 leads: highest survivor) and
        # serve, and the old leader comes back as a follower of the other kind.
        for c in clients.values():
            e.drop_client(c)
        e.kill(ld)
        new = e.wait_formed(sids=[1, 2, 4])
        assert new == 2, (new, e.modes())
        after = []
        for s in (1, 2, 4):
            c = e.client([s])
            after.append(c.create("/m/after-kill-n%d" % s, b""))
            e.drop_client(c)
        visible_everywhere(e, after)
        e.start_node(ld)
        assert e.formed() == new
        e.wait_synced()
        visible_everywhere(e, after)
        e.assert_trees_identical()
        logs.check(errors=False)
        made_ok = True
    finally:
        if not made_ok:
            made.failed = True
            print(e.report())


# The old leader, n3 (the highest voter, so it leads a fresh ensemble), is of one kind and both
# other voters are of the other: whichever of them the survivors elect (the one with more of the
# old leader's unacknowledged proposals in its socket buffer, or else n2) is of the other kind.
TRUNC_LAYOUTS = {
    # A ZooKeeper leader is cut off with proposals nobody else has; a zkd leader TRUNCs it.
    "zkd-truncs-java": ["zkd", "zkd", "java"],
    # A zkd leader is cut off; a ZooKeeper leader TRUNCs it.
    "java-truncs-zkd": ["java", "java", "zkd"],
}
# What a learner logs about its sync with a leader: ZooKeeper's Learner.syncWithLeader, one line
# per kind of sync (the TRUNC one at WARN); zkd's replica once the log is cut and the tree rebuilt,
# and its snapshot loader.
SYNC_LINES = {
    "oracle": {"trunc": re.compile(r"Truncating log to get in sync with the leader 0x([0-9a-f]+)"),
               "other": re.compile(r"Getting a (?:diff|snapshot) from (?:the )?leader 0x([0-9a-f]+)")},
    "zkd": {"trunc": re.compile(r"log truncated to 0x([0-9a-f]+)"),
            "other": re.compile(r"Getting a snapshot from leader 0x([0-9a-f]+)")},
}
# ZooKeeper's leader logs what it decides a learner's sync from (LearnerHandler.syncFollower);
# its plain TRUNC ("peer newer than the committed log") has no line of its own at INFO.
JAVA_SYNCING = re.compile(r"Synchronizing with Learner sid: (\d+) maxCommittedLog=0x([0-9a-f]+).*"
                          r"peerLastZxid=0x([0-9a-f]+)")


def log_since(node, offset):
    with open(node.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


@pytest.mark.parametrize("then", ["trunc", "snap", "wiped"])
@pytest.mark.parametrize("layout", list(TRUNC_LAYOUTS))
def test_uncommitted_txns_of_an_old_leader_are_dropped_across_kinds(made, layout, then):
    """then=trunc: the old leader returns before the new epoch's first txn; the new leader
    TRUNCs it to the last txn they share. then=snap: it returns after new-epoch txns; both kinds
    of leader never TRUNC across an epoch and send a SNAP at their last txn instead.
    then=wiped: it returns with an empty dataDir before the new epoch's first txn: a SNAP at the
    new epoch's marker zxid (0x<epoch>00000000, both kinds' last processed zxid then), which the
    learner then holds as its last zxid; restarted after new txns, it gets a DIFF from that
    marker (both kinds' leaders DIFF a learner at a new-epoch marker inside their log)."""
    kinds = TRUNC_LAYOUTS[layout]
    # syncLimit 40 (8 s): the old leader must go on leading while make_trunc fills its
    # connections to the stopped followers (with 5 it has one second).
    e = mixed(made, kinds, voters=3, name="%s-%s" % (layout, then), extra_cfg={"syncLimit": "40"})
    logs = JavaLogs(e)
    ok = False
    try:
        ld = start_leader_first(e, 3)
        assert ld == 3, e.modes()
        old = e.node(3)
        c = e.client()
        before = e.write(c, "/before", 20)
        e.drop_client(c)
        e.wait_synced()
        offsets = {s: os.path.getsize(n.log_path) for s, n in e.nodes.items()}

        # The followers stop; the old leader logs markers it cannot send, is killed, and comes
        # back to the leader its followers elected.
        r = e.make_trunc(new_epoch_writes=5 if then == "snap" else 0, wipe_old_leader=then == "wiped")
        new = r["new_leader"]
        assert r["old_leader"] == 3 and e.node(new).kind != old.kind, (r["old_leader"], new, e.kinds())
        markers = set(r["markers"])
        assert markers <= {p for _, _, p in r["old_logged"]}, "the old leader never logged the markers"
        want = (1, 0) if then == "trunc" else (0, 1)
        assert r["delta"] == want, "the old leader's sync counted (diff, snap) %s, not %s" % (
            r["delta"], want)

        # The old leader's own log names its sync (and no other): a TRUNC to the last txn the
        # new leader has, which is the last one the old leader keeps; or a SNAP at the new
        # leader's last txn (its last processed zxid: both kinds send that).
        said = log_since(old, offsets[3])
        lines = SYNC_LINES[old.kind]
        truncs = [int(z, 16) for z in lines["trunc"].findall(said)]
        others = [int(z, 16) for z in lines["other"].findall(said)]
        new_last = max(z for z, _, _ in e.node(new).logged())
        if then == "trunc":
            assert len(truncs) == 1 and not others, (truncs, others, said[-3000:])
            assert truncs[0] == new_last, "TRUNC to 0x%x, the new leader's last txn is 0x%x" % (
                truncs[0], new_last)
            kept = old.logged()
            assert not {p for _, _, p in kept} & markers, "n3 still logs markers after TRUNC"
            assert max(z for z, _, _ in kept) == new_last, "n3 logs up to 0x%x after TRUNC to 0x%x" % (
                max(z for z, _, _ in kept), new_last)
            if e.node(new).kind == "oracle":
                seen = [(int(a), int(b, 16), int(p, 16)) for a, b, p in
                        JAVA_SYNCING.findall(log_since(e.node(new), offsets[new]))]
                assert (3, new_last, max(z for z, _, _ in r["old_logged"])) in seen, seen
        elif then == "snap":
            assert not truncs and others == [new_last], (truncs, others, new_last, said[-3000:])
            assert new_last >> 32 > max(z for z, _, _ in r["old_logged"]) >> 32
        else:
            marker = ((max(z for z, _, _ in r["old_logged"]) >> 32) + 1) << 32
            assert not truncs and others == [marker], (truncs, others, hex(marker), said[-3000:])
            # The learner is at the marker (`srvr`), as ZooKeeper's leader is (its startZkServer
            # sets its last processed zxid so). zkd's leader keeps showing its last txn there
            # until the epoch's first one; what it sends (SNAP, DIFF, TRUNC zxids) is the same.
            assert old.srvr()[1] == marker, (old.srvr(), hex(marker))
            if e.node(new).kind == "oracle":
                assert e.node(new).srvr()[1] == marker, (e.node(new).srvr(), hex(marker))
            # Back after new txns from its marker: a DIFF.
            e.stop(3)
            c = e.client([new])
            c.create("/after/while-n3-at-the-marker", b"", makepath=True)
            e.drop_client(c)
            before_counts = e.sync_counts(new)
            offsets[3] = os.path.getsize(old.log_path)
            e.start_node(3)
            e.wait_synced()
            after_counts = e.sync_counts(new)
            assert (after_counts[0] - before_counts[0], after_counts[1] - before_counts[1]) == (1, 0), (
                before_counts, after_counts)
            said = log_since(old, offsets[3])
            assert not lines["trunc"].findall(said) and "Getting a snapshot" not in said, said[-3000:]

        # Everyone writes on, and all three trees (data and stat of every znode) are one, without
        # the markers; the same after the old leader restarts from its own files.
        after = []
        for s in e.sids:
            c = e.client([s])
            after.append(c.create("/after/n%d" % s, b"n%d" % s, makepath=True))
            c.set("/before", b"set via n%d" % s)
            e.drop_client(c)
        visible_everywhere(e, before + after)
        e.wait_synced()
        tree = e.assert_trees_identical()
        assert not markers & set(tree), "an uncommitted marker was committed"
        e.stop(3)
        c = e.client([s for s in e.sids if s != 3])
        c.create("/after/while-n3-stopped", b"")
        e.drop_client(c)
        e.start_node(3)
        e.wait_synced()
        tree = e.assert_trees_identical()
        assert "/after/while-n3-stopped" in tree and not markers & set(tree)
        if then == "wiped":
            assert "/after/while-n3-at-the-marker" in tree
        logs.check(errors=False)
        print("\n[%s, %s] n3 (%s) logged %d markers alone (%d fillers); n%d (%s) synced it by %s at "
              "0x%x%s" % (
            layout, then, old.kind, len(markers), r["fillers"], new, e.node(new).kind,
            "TRUNC" if then == "trunc" else "SNAP", marker if then == "wiped" else new_last,
            "" if r["aborted"] else " (without ss -K)"))
        ok = True
    finally:
        if not ok:
            made.failed = True
            print(e.report())


ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"


class CliLoad(threading.Thread):
    """ZooKeeper's own command-line client as a writer: one long-lived zkCli.sh (one JVM, one
    session) fed commands on stdin, each create followed by a get of what it wrote. Shaped like
    test_ensemble.Load (name_, acked, failures, retries) so that migrate, longest_gap and
    check_acked take it along: its znodes are /load/<name>/wNNNNNN.

    zkCli.sh prints one line per command: for a create "Created <path>", or an error line, either
    "<error>: <path>" ("Node already exists: <path>", "Node does not exist: <path>") or
    "KeeperErrorCode = <error> for <path>"; for a get the data, or such an error line.
    A command answered with ConnectionLoss is sent again (a create then finding its znode with
    its data is acknowledged, as with Load's retries); any other error is a failure."""

    def __init__(self, e, name, pace_s=0.02, timeout_ms=10000):
        super().__init__(daemon=True)
        self.name_ = name
        self.pace_s = pace_s
        self.acked = []
        self.failures = []
        self.retries = 0
        self.reads_done = 0
        self.stopping = threading.Event()
        env = dict(os.environ, CLIENT_JVMFLAGS="-Xmx64m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        self.log_path = os.path.join(e.dir, "zkcli-%s.out" % name)
        self.proc = subprocess.Popen([ZKCLI, "-timeout", str(timeout_ms), "-server", e.hosts()],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True, env=env)
        self.lines = queue.Queue(maxsize=10000)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _ask(self, command, path, answers, timeout=25.0):
        """Sends `command` and returns the first line that answers it: a line in `answers`, or
        an error line for `path`."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        err = re.compile(r"^(?:KeeperErrorCode = (.*) for |(.*): )%s$" % re.escape(path))
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("zkCli.sh answered no %r within %.0f s" % (command, timeout))
            if line is None:
                raise AssertionError("zkCli.sh exited (%s) at %r" % (self.proc.poll(), command))
            if line in answers:
                return line, None
            m = err.match(line)
            if m:
                return line, m.group(1) or m.group(2)

    def _until_decided(self, command, path, answers):
        deadline = time.monotonic() + 30
        first = True
        while True:
            line, error = self._ask(command, path, answers)
            if error != "ConnectionLoss":
                return line, error, first
            self.retries += 1
            first = False
            if time.monotonic() > deadline:
                raise AssertionError("%r lost with the connection for 30 s" % command)
            time.sleep(0.05)

    def run(self):
        i = 0
        try:
            while True:
                line = self.lines.get(timeout=30)
                assert line is not None, "zkCli.sh exited (%s) before it connected" % self.proc.poll()
                if "state:SyncConnected" in line:
                    break
            line, error, _ = self._until_decided("create /load", "/load",
                                                 ("Created /load", "Node already exists: /load"))
            assert error is None, line
            line, error, _ = self._until_decided("create /load/%s" % self.name_, "/load/%s" % self.name_,
                                                 ("Created /load/%s" % self.name_,))
            assert error is None, line
            while not self.stopping.is_set():
                path = "/load/%s/w%06d" % (self.name_, i)
                data = "%s-%d" % (self.name_, i)
                i += 1
                self.stopping.wait(self.pace_s)
                sent = time.monotonic()
                line, error, first = self._until_decided(
                    "create %s %s" % (path, data), path, ("Created " + path, "Node already exists: " + path))
                if error is not None or (first and line.startswith("Node already")):
                    self.failures.append((path, line))
                    return
                # The get confirms the data (and decides a create retried after a loss).
                line, error, _ = self._until_decided("get " + path, path, (data,))
                if error is not None:
                    self.failures.append((path, "get: " + line))
                    return
                self.reads_done += 1
                self.acked.append((path, data.encode(), sent, time.monotonic()))
        except Exception as ex:
            self.failures.append((i, repr(ex)))

    def stop(self):
        self.stopping.set()
        self.join(60)
        assert not self.is_alive(), "zkCli.sh load %s did not stop" % self.name_
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def migrate(e, loads, sid, kind):
    """Stops server `sid`, starts it as `kind` on the same files, waits until the ensemble
    serves again with it and every load has made progress."""
    e.stop(sid)
    e.set_kind(sid, kind)
    t = time.monotonic()
    e.start_node(sid)
    back = time.monotonic() - t
    counts = [len(x.acked) for x in loads]
    e.wait_until(lambda: all(len(x.acked) >= n + 10 for x, n in zip(loads, counts))
                 or any(x.failures for x in loads), 30, "every client goes on after n%d's restart" % sid)
    assert not any(x.failures for x in loads), [(x.name_, x.failures[:3]) for x in loads if x.failures]
    return back


def longest_gap(loads):
    """The longest time (s) in which no write of any load was acknowledged, and the longest one
    client waited for one write."""
    acks = sorted(t for x in loads for _, _, _, t in x.acked)
    overall = max((b - a for a, b in zip(acks, acks[1:])), default=0.0)
    one = max((a - s for x in loads for _, _, s, a in x.acked), default=0.0)
    return overall, one


@pytest.mark.parametrize("observers", [0, 1])
def test_rolling_migration_java_to_zkd_and_back_under_load(made, observers):
    require(os.access(ZKCLI, os.X_OK), "ZooKeeper's %s (the Debian package)" % ZKCLI)
    e = mixed(made, ["java"] * (3 + observers), voters=3, name="migrate%d" % observers)
    logs = JavaLogs(e)
    ok = False
    cli = None
    try:
        e.start()
        loads = []
        for s in e.sids:
            order = [s] + [x for x in e.sids if x != s]
            loads.append(Load(e.client(hosts=e.hosts(order)), "on-n%d" % s, retry=True, pace_s=0.005))
        # ZooKeeper's zkCli.sh writes alongside (one JVM on the whole server list).
        cli = CliLoad(e, "zkcli")
        loads.append(cli)
        for x in loads:
            x.start()
        e.wait_until(lambda: all(len(x.acked) >= 20 for x in loads) or any(x.failures for x in loads), 30,
                     "every client has 20 acks")
        figures = []
        for kind in ("zkd", "oracle"):
            # Followers and observers first, the leader last, as an operator would.
            ld = e.leader()
            for s in [x for x in e.sids if x != ld] + [ld]:
                back = migrate(e, loads, s, kind)
                figures.append((s, kind, back))
            assert set(e.kinds().values()) == {kind}
            e.wait_formed()
        for x in loads:
            x.stop()
        for x in loads:
            assert not x.failures, (x.name_, x.failures[:5])
        overall, one = longest_gap(loads)
        print("\n[migration, %d observer(s)] %d writes and %d reads acknowledged (%d writes by zkCli.sh); "
              "%d retries after connection loss (%d by zkCli.sh), no other error; longest time without "
              "any ack %.2f s; longest single write %.2f s; restart-to-serving per step %s" % (
                  observers, sum(len(x.acked) for x in loads), sum(x.reads_done for x in loads),
                  len(cli.acked), sum(x.retries for x in loads), cli.retries, overall, one,
                  ", ".join("n%d->%s %.1fs" % (s, k, b) for s, k, b in figures)))
        e.wait_synced()
        check_acked(e, loads)
        e.assert_trees_identical()
        gone = logs.check(errors=True)
        print("[migration] ZooKeeper's ERROR lines for a peer going away: %d; ZOOKEEPER-4394 then "
              "4409 on a ZooKeeper learner: %d, and digest-mismatch lines after 4394: %d" % (
                  gone, logs.known_bugs, logs.known_bug_digests))
        ok = True
    finally:
        if cli is not None:
            cli.kill()
        if not ok:
            made.failed = True
            print(e.report())
            if cli is not None:
                print("zkCli.sh said (%s): ...%s" % (cli.log_path, open(cli.log_path).read()[-2000:]))


def test_a_zkd_leader_at_the_end_of_its_zxid_counter_hands_over_to_a_new_epoch_with_java_followers(made):
    """ZOOKEEPER-1277 in a mixed ensemble: a zkd leader whose counter nears 0xffffffff steps
    down instead of rolling into the epoch half, and the ensemble goes on in a new epoch with
    its ZooKeeper followers; epochs and zxids agree across kinds and nothing acknowledged is
    lost. (Every zkd epoch starts near the end here: `zkd.testing.epochCounterStart`, a key
    ZooKeeper takes as an unused system property; a ZooKeeper leader starts at 0.)"""
    e = mixed(made, ["java", "java", "zkd"], voters=3, name="rollover",
              extra_cfg={"zkd.testing.epochCounterStart": "0xfffffff0"})
    logs = JavaLogs(e)
    made_ok = False
    try:
        assert start_leader_first(e, 3) == 3
        c = e.client()
        acked = []
        deadline = time.time() + 60
        i = 0
        while len(acked) < 40:
            assert time.time() < deadline, "only %d writes acknowledged in 60 s" % len(acked)
            p = "/roll/n%03d" % i
            try:
                c.create(p, b"%d" % i, makepath=True)
                acked.append(p)
                i += 1
            except Exception as ex:  # connection loss while the leader hands over: retried
                if "NodeExists" in type(ex).__name__:
                    acked.append(p)
                    i += 1
                elif not any(k in type(ex).__name__ for k in ("ConnectionLoss", "SessionMoved",
                                                              "ConnectionClosed", "Timeout")):
                    raise
                time.sleep(0.05)
        e.wait_formed()
        e.wait_synced()
        visible_everywhere(e, acked)
        e.assert_trees_identical()
        # The ensemble moved to a later epoch, the same on every server, because the zkd leader
        # stepped down at the end of its counter (the next leader, of either kind, starts its
        # epoch afresh).
        zx = {s: e.node(s).srvr()[1] for s in e.sids}
        epochs = {s: z >> 32 for s, z in zx.items()}
        assert len(set(epochs.values())) == 1, zx
        assert min(epochs.values()) >= 2, zx
        assert "zxid lower 32 bits have rolled over" in e.node(3).tail_log(10 ** 7), \
            "the zkd leader did not step down at the end of its counter"
        logs.check(errors=False)
        made_ok = True
    finally:
        made.failed = not made_ok
