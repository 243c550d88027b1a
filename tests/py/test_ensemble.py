"""Replicated ensembles as processes (tests/py/ensemble.py): election, replication, sessions
moving between servers, leader failover under load, follower sync by DIFF, SNAP and TRUNC,
observers, rolling restarts, and quorum loss — each against Apache ZooKeeper 3.8 (the oracle,
org.apache.zookeeper.server.quorum.QuorumPeerMain) and against zkd, from the same zoo.cfg lines.

The zkd variants are skipped while `zkd serve` refuses a config with server.N lines ("... not
supported yet ..."); ZKD_ENSEMBLES=1 (the default once ensembles land) turns that refusal into a
failure under ZKD_REQUIRE_ALL=1. Timings (failover) are printed: run with -s to see them.
"""
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import pytest
from kazoo.exceptions import ConnectionLoss, NodeExistsError, OperationTimeoutError
from kazoo.protocol.states import KazooState

import ensemble as E
from opcodes import rawzk
from conftest import require, require_all

# Ensembles are a supported zkd feature: a zkd that refuses them fails under ZKD_REQUIRE_ALL=1.
# The coordinator flips this default to "1" when ensembles land.
ENSEMBLES_SUPPORTED = os.environ.get("ZKD_ENSEMBLES", "0") == "1"

# Whatever a connection loss leaves undecided is retried; nothing else is an acceptable failure.
RETRYABLE = (ConnectionLoss, OperationTimeoutError)

_refusal = {}


def zkd_refusal():
    if "r" not in _refusal:
        _refusal["r"] = E.zkd_ensemble_refusal()
    return _refusal["r"]


def require_kind(kind):
    if kind == "oracle":
        require(shutil.which("java") and os.path.exists("/usr/share/java/zookeeper.jar"),
                "java and Apache ZooKeeper 3.8 (/usr/share/java/zookeeper.jar) for the oracle ensemble")
        return
    require(os.path.exists(E.ZKD_BIN), "the zkd binary at %s (ZKD_BIN)" % E.ZKD_BIN)
    r = zkd_refusal()
    if r is not None and "not supported yet" in r[1]:
        why = "zkd refuses ensembles in this build (zkd serve exited %d: %s)" % (r[0], r[1].strip())
        if require_all() and ENSEMBLES_SUPPORTED:
            pytest.fail(why + " — ZKD_ENSEMBLES=1 says ensembles are supported")
        pytest.skip(why)


class Ensembles:
    """The ensembles a test made; closed after it, kept (with their logs) if it failed."""

    def __init__(self, kind):
        self.kind = kind
        self.made = []
        self.failed = False

    def __call__(self, voters=3, observers=0, extra_cfg=None, name="ens"):
        e = E.Ensemble(self.kind, voters, observers, extra_cfg, name)
        self.made.append(e)
        return e

    def failure_report(self):
        self.failed = True
        return "\n".join(e.report() for e in self.made) or "no ensemble was made"

    def close(self):
        for e in self.made:
            e.close(keep=self.failed)


@pytest.fixture(params=["oracle", "zkd"])
def ens(request):
    require_kind(request.param)
    es = Ensembles(request.param)
    yield es
    es.close()


def assert_stays(cond, seconds, what):
    """cond() holds at every poll for `seconds` (a property that must not change, polled)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert cond(), "no longer true: %s" % what
        time.sleep(0.05)


def write_fails(e, sids, timeout=3.0):
    """True if a new session on these servers cannot write within `timeout` s."""
    from kazoo.client import KazooClient
    c = KazooClient(hosts=e.hosts(sids), timeout=timeout, connection_retry=None, command_retry=None)
    try:
        c.start(timeout=timeout)
    except Exception:
        return True
    try:
        c.create_async("/must-not-commit-%f" % time.time(), b"x").get(timeout=timeout)
        return False
    except Exception:
        return True
    finally:
        try:
            c.stop()
            c.close()
        except Exception:
            pass


class Load(threading.Thread):
    """One client writing znodes with unique paths and reading back its own acknowledged ones.

    retry=True: an operation that fails with a connection loss is retried until it is decided
    (a create retried after a loss may find its own znode: that is its acknowledgement).
    retry=False: a write lost with the connection is counted as undecided, and the next one goes.
    Any other error is recorded as a failure. `acked` holds (path, data, time sent, time acked).
    pace_s: a pause before each write (a steady load rather than the most the machine can do)."""

    def __init__(self, client, name, retry, reads=True, pace_s=0.0):
        super().__init__(daemon=True)
        self.pace_s = pace_s
        self.c = client
        self.name_ = name
        self.retry = retry
        self.reads = reads
        self.acked = []
        self.undecided = []
        self.failures = []
        self.retries = 0
        self.reads_done = 0
        self.stopping = threading.Event()
        self.rng = random.Random(name)

    def _retrying(self, fn):
        """fn() until it is not lost with a connection (30 s at most)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return fn()
            except RETRYABLE:
                self.retries += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _create(self, path, data):
        """True once acknowledged; False if lost with a connection (retry=False only)."""
        if not self.retry:
            try:
                self.c.create(path, data)
                return True
            except RETRYABLE:
                self.undecided.append(path)
                time.sleep(0.02)
                return False
        attempts = [0]

        def create():
            attempts[0] += 1
            try:
                self.c.create(path, data)
            except NodeExistsError:
                if attempts[0] == 1:
                    raise
                # A retry after a connection loss finds the first attempt's znode: acknowledged.
                got, _ = self.c.get(path)
                if got != data:
                    raise AssertionError("%s holds %r, not %r" % (path, got, data))

        self._retrying(create)
        return True

    def _read_own(self):
        p, d, _, _ = self.rng.choice(self.acked)
        try:
            got, _ = self._retrying(lambda: self.c.get(p)) if self.retry else self.c.get(p)
        except RETRYABLE:
            if self.retry:
                raise
            return
        if got != d:
            self.failures.append(("read", p, got, d))
        self.reads_done += 1

    def run(self):
        i = 0
        try:
            self._retrying(lambda: self.c.ensure_path("/load/%s" % self.name_))
            while not self.stopping.is_set():
                path = "/load/%s/w%06d" % (self.name_, i)
                data = b"%s-%d" % (self.name_.encode(), i)
                i += 1
                if self.pace_s:
                    self.stopping.wait(self.pace_s)
                sent = time.monotonic()
                if not self._create(path, data):
                    continue
                self.acked.append((path, data, sent, time.monotonic()))
                if self.reads:
                    self._read_own()
        except Exception as e:
            self.failures.append((i, repr(e)))

    def stop(self):
        self.stopping.set()
        self.join(60)
        assert not self.is_alive(), "load %s did not stop" % self.name_


def check_acked(e, loads, sids=None):
    """Every acknowledged write of these loads is on every one of these servers (default: the
    running ones), with its data."""
    sids = sids if sids is not None else e.running()
    for s in sids:
        c = e.client([s])
        c.sync("/load")
        for ld in loads:
            have = set(c.get_children("/load/%s" % ld.name_))
            missing = [p for p, _, _, _ in ld.acked if p.rsplit("/", 1)[1] not in have]
            assert not missing, "n%d lost %d acknowledged writes of %s, e.g. %s" % (
                s, len(missing), ld.name_, missing[:5])
            for p, d, _, _ in ld.acked[:: max(1, len(ld.acked) // 50)]:
                assert c.get(p)[0] == d, p
        e.drop_client(c)


# --- 1. three servers: one leader; every write everywhere; a session moves


def test_three_servers_elect_one_leader_and_every_write_is_seen_everywhere(ens):
    e = ens(3)
    ld = e.start()
    modes = e.modes()
    assert sorted(modes.values()) == ["follower", "follower", "leader"], modes
    assert modes[ld] == "leader"
    m = e.node(ld).mntr()
    assert m.get("zk_server_state") == "leader", m.get("zk_server_state")
    assert m.get("zk_synced_followers") == "2", m.get("zk_synced_followers")
    for s in e.followers():
        assert e.node(s).mntr().get("zk_server_state") == "follower"
    clients = {s: e.client([s]) for s in e.sids}
    for s, c in clients.items():
        c.ensure_path("/rep")
        c.create("/rep/from-n%d" % s, b"written on n%d" % s)
        c.set("/rep", b"last set by n%d" % s)
    for s, c in clients.items():
        c.sync("/rep")
        assert sorted(c.get_children("/rep")) == ["from-n%d" % x for x in sorted(e.sids)], s
        for x in e.sids:
            assert c.get("/rep/from-n%d" % x)[0] == b"written on n%d" % x
        data, st = c.get("/rep")
        assert (data, st.version) == (b"last set by n%d" % e.sids[-1], len(e.sids)), (s, data, st)
    e.assert_trees_identical()


SESSION_OWNER = r"""
import sys, time
from kazoo.client import KazooClient
c = KazooClient(hosts=sys.argv[1], timeout=10)
c.start(timeout=20)
c.create("/moved/eph", b"mine", ephemeral=True, makepath=True)
sid, pw = c.client_id
print("%d %s" % (sid, pw.hex()), flush=True)
time.sleep(600)
"""


def raw_resume(e, sid_, session_id, passwd, last_zxid):
    """A raw client resuming a session on server sid_ (which refuses a client that has seen a
    newer zxid than it has applied: retried until it has caught up)."""
    def attempt():
        try:
            return rawzk.Client("127.0.0.1", e.node(sid_).client_port, session_id=session_id,
                                passwd=passwd, last_zxid=last_zxid)
        except (rawzk.ConnectionClosed, OSError):
            return None
    return e.wait_until(attempt, 15, "n%d takes session 0x%x back" % (sid_, session_id))


def test_a_session_moves_between_servers_with_its_ephemerals_and_watches(ens):
    e = ens(3)
    ld = e.start()
    f1, f2 = e.followers()
    # A session made on f1 by a process that then dies (-9: no closeSession), resumed on f2 by
    # id and password (kazoo's client_id).
    owner = subprocess.Popen([sys.executable, "-c", SESSION_OWNER, e.hosts([f1])],
                             stdout=subprocess.PIPE, text=True)
    try:
        sid_hex = owner.stdout.readline().split()
        assert len(sid_hex) == 2, "the session owner printed no client id (exit %s)" % owner.poll()
        sid, pw = int(sid_hex[0]), bytes.fromhex(sid_hex[1])
    finally:
        owner.kill()
        owner.wait()
    moved = e.client([f2], client_id=(sid, pw))
    assert moved.client_id[0] == sid, "the session was not resumed on n%d" % f2
    for s in e.sids:
        c = e.client([s])
        c.sync("/moved")
        st = c.exists("/moved/eph")
        assert st is not None and st.ephemeralOwner == sid, (s, st)
        e.drop_client(c)
    # The same kazoo client moves again: its connect string becomes the leader's and f2 stops.
    states = []
    moved.add_listener(states.append)
    moved.set_hosts(e.hosts([ld]))
    e.stop(f2)
    e.wait_until(lambda: KazooState.SUSPENDED in states and states[-1] == KazooState.CONNECTED, 30,
                 "the session reconnected, to the leader")
    assert KazooState.LOST not in states, states
    assert moved.client_id[0] == sid
    moved.create("/moved/eph2", b"made on the leader", ephemeral=True)
    e.start_node(f2)
    for s in e.sids:
        c = e.client([s])
        c.sync("/moved")
        for p in ("/moved/eph", "/moved/eph2"):
            st = c.exists(p)
            assert st is not None and st.ephemeralOwner == sid, (s, p, st)
        e.drop_client(c)

    # Watches move with a session: a client reconnecting elsewhere presents its watches and the
    # last zxid it saw (SetWatches, as the Java and C clients do; kazoo does not), and gets the
    # events of changes made meanwhile and after. A raw client, since kazoo drops its watches.
    writer = e.client([ld])
    writer.create("/w/data", b"0", makepath=True)
    writer.create("/w/kids")
    r = rawzk.Client("127.0.0.1", e.node(f1).client_port)
    assert r.create("/w/raw-eph", b"", flags=rawzk.EPHEMERAL)[0] == rawzk.OK
    assert r.sync("/w")[0] == rawzk.OK
    assert r.get_data("/w/data", watch=True)[0] == rawzk.OK
    assert r.get_children("/w/kids", watch=True)[0] == rawzk.OK
    assert r.exists("/w/absent", watch=True)[0] == rawzk.NONODE
    r.close_socket()
    writer.set("/w/data", b"changed while away")
    r2 = raw_resume(e, f2, r.session_id, r.passwd, r.last_zxid)
    assert r2.session_id == r.session_id
    assert r2.set_watches(r.last_zxid, data=["/w/data"], exist=["/w/absent"], child=["/w/kids"])[0] == rawzk.OK
    writer.create("/w/kids/k")
    writer.create("/w/absent")
    events = []

    def three_events():
        try:
            events.extend(ev.tup() for ev in r2.wait_event(0.2))
        except TimeoutError:
            pass
        return len(events) >= 3

    e.wait_until(three_events, 15, "the moved watches fired (have %s)" % events)
    sync_connected, created, changed, children = 3, 1, 3, 4
    assert sorted(events) == sorted([(changed, sync_connected, "/w/data"),
                                     (children, sync_connected, "/w/kids"),
                                     (created, sync_connected, "/w/absent")]), events
    # Both sessions end: their ephemerals go, everywhere.
    assert r2.close() == rawzk.OK
    e.drop_client(moved)
    for s in e.sids:
        c = e.client([s])
        c.sync("/")
        for p in ("/moved/eph", "/moved/eph2", "/w/raw-eph"):
            assert c.exists(p) is None, "n%d still has %s of a closed session" % (s, p)
        e.drop_client(c)
    e.assert_trees_identical()


# --- 2. the leader killed under load


def test_leader_killed_under_write_load_fails_over_without_losing_acknowledged_writes(ens):
    e = ens(3)
    ld = e.start()
    fs = e.followers()
    # One writer whose server is a follower, one whose server is the leader (it must move).
    loads = [Load(e.client(hosts=e.hosts([fs[0], fs[1], ld])), "via-follower", retry=False),
             Load(e.client(hosts=e.hosts([ld] + fs)), "via-leader", retry=False)]
    for ld_ in loads:
        ld_.start()
    e.wait_until(lambda: all(len(x.acked) >= 30 for x in loads), 20, "both writers have 30 acks")
    t_kill = time.monotonic()
    e.kill(ld)
    new = e.wait_until(lambda: e.formed(fs), 30, "the survivors elect a leader", step=0.02)
    t_leader = time.monotonic()
    e.wait_until(lambda: any(a[2] > t_kill for x in loads for a in x.acked), 30,
                 "a write sent after the kill is acknowledged", step=0.01)
    t_write = min(a[3] for x in loads for a in x.acked if a[2] > t_kill)
    counts = [len(x.acked) for x in loads]
    e.wait_until(lambda: all(len(x.acked) >= n + 30 for x, n in zip(loads, counts)), 30,
                 "both writers go on")
    for x in loads:
        x.stop()
    print("\n[%s] leader n%d killed: new leader n%d after %.0f ms, first write acknowledged after %.0f ms; "
          "%d writes acknowledged, %d undecided (lost with a connection)" % (
              e.kind, ld, new, 1000 * (t_leader - t_kill), 1000 * (t_write - t_kill),
              sum(len(x.acked) for x in loads), sum(len(x.undecided) for x in loads)))
    assert new in fs
    for x in loads:
        assert not x.failures, (x.name_, x.failures[:5])
    check_acked(e, loads)
    # The old leader comes back as a follower and has every acknowledged write too.
    e.start_node(ld)
    assert e.formed() == new and e.node(ld).mode() == "follower"
    check_acked(e, loads, [ld])
    e.assert_trees_identical()


# --- 3. a restarted follower catches up by DIFF, SNAP and TRUNC


def test_a_restarted_follower_catches_up_by_diff_snap_and_trunc(ens):
    # syncLimit 20 (4 s): the TRUNC case needs the leader to go on leading for a while after its
    # followers stopped answering (with 5 it has one second).
    e = ens(3, extra_cfg={"syncLimit": "20"})
    e.start()
    w = e.client()
    f1, f2 = e.followers()
    # DIFF: fewer transactions missed than the leader keeps in its committed log.
    _, d = e.behind_and_back(f1, w, "/diff", 50)
    assert d == (1, 0), "a follower 50 txns behind: (diff, snap) counted %s" % (d,)
    # SNAP: more missed than commitLogCount, beyond what the leader will read from its log.
    _, d = e.behind_and_back(f1, w, "/snap", E.COMMIT_LOG_COUNT + 100)
    assert d == (0, 1), "a follower %d txns behind: (diff, snap) counted %s" % (E.COMMIT_LOG_COUNT + 100, d)
    # SNAP: an empty dataDir (zxid 0).
    _, d = e.behind_and_back(f2, w, "/wiped", 10, wipe=True)
    assert d == (0, 1), "a wiped follower: (diff, snap) counted %s" % (d,)
    e.assert_trees_identical()
    e.drop_client(w)
    # TRUNC: the old leader logged transactions nobody else has.
    r = e.make_trunc()
    old = r["old_leader"]
    assert set(r["markers"]) <= {p for _, _, p in r["old_logged"]}
    assert r["delta"] == (1, 0), "the old leader came back with (diff, snap) counted %s" % (r["delta"],)
    # TRUNC removed them from the old leader's log, not just from its tree.
    left = {p for _, _, p in e.node(old).logged()} & set(r["markers"])
    assert not left, "n%d still logs %s after TRUNC" % (old, sorted(left))
    tree = e.assert_trees_identical()
    assert not set(r["markers"]) & set(tree), "an uncommitted marker was committed"
    print("\n[%s] TRUNC built with %d fillers, %.0f ms from stopping the followers to killing n%d%s" % (
        e.kind, r["fillers"], 1000 * r["pause_to_kill_s"], old,
        "" if r["aborted"] else " (without ss -K)"))
    # Everyone writes on.
    c = e.client()
    c.create("/after-trunc", b"ok")
    e.drop_client(c)
    e.assert_trees_identical()


# --- 4. an observer


def test_an_observer_serves_reads_forwards_writes_and_does_not_vote(ens):
    e = ens(2, observers=1)
    ld = e.start()
    obs = 3
    modes = e.modes()
    assert modes[obs] == "observer" and sorted(modes.values()) == ["follower", "leader", "observer"], modes
    m = e.node(ld).mntr()
    assert (m.get("zk_synced_followers"), m.get("zk_synced_observers")) == ("1", "1"), m
    on_obs = e.client([obs])
    on_voter = e.client([ld])
    on_obs.create("/obs-write", b"through the observer")
    on_voter.sync("/obs-write")
    assert on_voter.get("/obs-write")[0] == b"through the observer"
    on_voter.create("/voter-write", b"through the leader")
    on_obs.sync("/voter-write")
    assert on_obs.get("/voter-write")[0] == b"through the leader"
    e.assert_trees_identical()
    e.drop_client(on_obs)
    e.drop_client(on_voter)
    # Two voters and an observer: without the follower there is no quorum, observer or not.
    follower = [s for s, v in modes.items() if v == "follower"][0]
    e.kill(follower)
    left = [ld, obs]
    e.wait_until(lambda: all(e.node(s).mode() is None for s in left), 15,
                 "the leader and the observer stop serving")
    assert_stays(lambda: all(e.node(s).mode() is None for s in left), 2.0,
                 "a leader and an observer do not form a quorum")
    assert write_fails(e, left), "a write succeeded without a quorum of voters"
    e.start_node(follower)
    c = e.client([obs])
    c.sync("/")
    assert c.get("/obs-write")[0] == b"through the observer"
    c.create("/after", b"x")
    e.drop_client(c)
    e.assert_trees_identical()


# --- 5. rolling restart under load


def test_rolling_restart_under_load_loses_nothing(ens):
    e = ens(3)
    e.start()
    loads = []
    for s in e.sids:
        order = [s] + [x for x in e.sids if x != s]
        loads.append(Load(e.client(hosts=e.hosts(order)), "on-n%d" % s, retry=True, pace_s=0.01))
    for x in loads:
        x.start()
    e.wait_until(lambda: all(len(x.acked) >= 20 for x in loads), 20, "every client has 20 acks")
    # Followers first, the leader last: each server is stopped, started, and serves again, and
    # every client makes progress, before the next one goes.
    ld = e.leader()
    for s in [x for x in e.sids if x != ld] + [ld]:
        e.stop(s)
        e.start_node(s)
        counts = [len(x.acked) for x in loads]
        e.wait_until(lambda: all(len(x.acked) >= n + 20 for x, n in zip(loads, counts))
                     or any(x.failures for x in loads), 30, "every client goes on after n%d's restart" % s)
        assert not any(x.failures for x in loads), [(x.name_, x.failures[:3]) for x in loads if x.failures]
    for x in loads:
        x.stop()
    for x in loads:
        assert not x.failures, (x.name_, x.failures[:5])
    print("\n[%s] rolling restart: %d writes and %d reads acknowledged, %d retries after connection loss" % (
        e.kind, sum(len(x.acked) for x in loads), sum(x.reads_done for x in loads),
        sum(x.retries for x in loads)))
    check_acked(e, loads)
    e.assert_trees_identical()


# --- 6. five servers: two may fail, not three


def test_five_servers_survive_two_failures_not_three(ens):
    e = ens(5)
    ld = e.start()
    fs = e.followers()
    c = e.client()
    c.create("/five", b"before")
    e.kill(fs[0])
    e.kill(fs[1])
    left = [s for s in e.sids if s not in fs[:2]]
    assert e.wait_formed(sids=left) == ld
    c2 = e.client(left)
    c2.create("/five/three-left", b"x")
    for s in left:
        c3 = e.client([s])
        c3.sync("/five")
        assert c3.exists("/five/three-left") is not None, s
        e.drop_client(c3)
    e.kill(fs[2])
    left = [s for s in left if s != fs[2]]
    e.wait_until(lambda: all(e.node(s).mode() is None for s in left), 15,
                 "two of five servers stop serving")
    assert_stays(lambda: all(e.node(s).mode() is None for s in left), 2.0,
                 "two of five servers do not form a quorum")
    assert write_fails(e, left), "a write succeeded on two of five servers"
    # One back: three of five serve again, with everything acknowledged before.
    e.start_node(fs[2])
    e.drop_client(c)
    e.drop_client(c2)
    c = e.client(left + [fs[2]])
    c.sync("/five")
    assert c.get("/five")[0] == b"before" and c.exists("/five/three-left") is not None
    c.create("/five/again", b"x")
    e.drop_client(c)
    e.assert_trees_identical()
