"""Faults of a zkd ensemble, as processes: real partitions in network namespaces, the two seed
outages (ZOOKEEPER-2186's dead election listener; a 5-server config with two blackholed servers
meeting a 3-server config), and sessions whose expiry and moves cross nodes. (The zxid counter
rollover, ZOOKEEPER-1277, is tests/zxid_rollover.rs: its data dir is written with the library.)

Every wait has a deadline; no test sleeps and then asserts. Ensembles run with tickTime=200,
syncLimit=5 (a silent peer is given up after 1 s) unless a test says otherwise. The namespace
tests need root, iproute2 and iptables: without them they are skipped, and fail under
ZKD_REQUIRE_ALL=1 (tests/run-all.sh).

    ZKD_BIN=$CARGO_TARGET_DIR/release/zkd python3 -m pytest -q tests/py/test_faults.py
"""
import contextlib
import datetime
import re
import socket
import struct
import time

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from faults_support import Ensemble, NetLab, rawzk, refuses_clients, tree, try_write, wait_for

OK = rawzk.OK


@contextlib.contextmanager
def running(ensemble, lab=None):
    """Kills the ensemble's processes and deletes the namespaces whatever happens; on failure
    prints the end of every node's log (pytest shows it with the failure)."""
    try:
        yield ensemble
    except BaseException:
        for s, n in ensemble.nodes.items():
            print("==== node %d (%s) ====\n%s" % (s, n.log_path, n.log()[-6000:]))
        raise
    finally:
        ensemble.close()
        if lab is not None:
            lab.close()


def wait_closed(c, deadline, what):
    """Waits until the server closes client `c`'s connection; returns when. A reply (to a write
    sent before) or a notification is a failure: the server must answer nothing more."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail("%s: the connection is still open" % what)
        c.sock.settimeout(left)
        try:
            rep = c.read_reply()
        except rawzk.ConnectionClosed:
            return time.monotonic()
        except ConnectionError:
            return time.monotonic()
        except socket.timeout:
            continue
        got = "a notification" if rep is None else "xid %d err %d" % (rep.xid, rep.err)
        pytest.fail("%s: the server answered %s" % (what, got))


def reads_until_closed(c, path, deadline, what):
    """Reads `path` through `c` until the server closes the connection; returns when."""
    while time.monotonic() < deadline:
        try:
            err, _ = c.get_data(path)
            assert err == OK, "%s: read failed with %d before the connection closed" % (what, err)
        except (rawzk.ConnectionClosed, ConnectionError):
            return time.monotonic()
        time.sleep(0.02)
    pytest.fail("%s: reads were still served" % what)


def all_trees_equal(e, sids, timeout=20):
    """Every node in `sids` holds the same tree (each read after a sync); returns it."""
    def same():
        try:
            trees = {s: tree(e.nodes[s]) for s in sids}
        except (rawzk.ConnectionClosed, OSError):
            return None
        first = trees[sids[0]]
        return first if all(t == first for t in trees.values()) else None
    return wait_for(same, timeout, "nodes %s hold the same tree" % sids, step=0.1)


def write_through(node, path, data, timeout=10):
    """Creates `path` through `node`, retrying connection losses until the deadline."""
    def attempt():
        try:
            c = node.client(io_timeout=3)
        except (rawzk.ConnectionClosed, OSError):
            return False
        try:
            err, _ = c.create(path, data)
            return err in (OK, rawzk.NODEEXISTS)
        except (rawzk.ConnectionClosed, OSError):
            return False
        finally:
            c.close_socket()
    wait_for(attempt, timeout, "%s is written through node %d" % (path, node.sid), step=0.05)


# ---- 1. partitions -----------------------------------------------------------------------------

def test_isolated_leader_and_follower_stop_serving_and_catch_up(tmp_path):
    lab = NetLab([1, 2, 3])
    e = Ensemble(str(tmp_path), [1, 2, 3], lab=lab)
    with running(e, lab):
        e.start()
        old = e.wait_leader()
        old_epoch = e.nodes[old].epoch()
        majority = [s for s in e.sids if s != old]
        writer = e.nodes[old].client()
        assert writer.create("/part", b"before")[0] == OK
        reader = e.nodes[old].client()
        marks = {s: e.nodes[s].log_size() for s in e.sids}
        # Until the leader notices it lost its quorum (syncLimit ticks without acks) it may still
        # answer reads; then it closes every client connection. A write sent after the cut is
        # never acknowledged: no quorum can ack it.
        slack = 1.5
        t0 = time.monotonic()
        lab.isolate(old)
        writer.send(rawzk.SET_DATA, rawzk.body_set_data("/part", b"lost", -1))
        deadline = t0 + e.sync_ms / 1000 + slack
        t_write = wait_closed(writer, deadline, "the isolated leader's writing client")
        t_read = reads_until_closed(reader, "/part", deadline, "the isolated leader's reading client")
        print("isolated leader closed its clients %.0f ms (writer) and %.0f ms (reader) after the cut"
              % ((t_write - t0) * 1000, (t_read - t0) * 1000))
        assert t_write - t0 >= (e.sync_ms - e.tick_ms) / 1000, "stepped down before syncLimit ticks"
        assert refuses_clients(e.nodes[old]), "the isolated old leader took a new client"
        assert "stopped serving clients" in e.nodes[old].log_since(marks[old])

        # The majority elects a leader of a newer epoch and serves writes through both nodes.
        new = e.wait_leader(timeout=15, exclude=(old,))
        assert new in majority and e.nodes[new].epoch() > old_epoch
        e.wait_serving(timeout=15, sids=majority)
        print("majority serves %.0f ms after the cut" % ((time.monotonic() - t0) * 1000))
        for i in range(5):
            write_through(e.nodes[majority[i % 2]], "/part/during-%d" % i, b"%d" % i)
        assert refuses_clients(e.nodes[old]), "the isolated old leader serves beside the new one"

        # Heal: the old leader follows the new one and catches up; its unacknowledged write is
        # gone everywhere.
        t1 = time.monotonic()
        lab.heal()
        wait_for(lambda: e.nodes[old].role(marks[old]) == "Follower", 30, "the old leader follows")
        print("old leader follows %.0f ms after the heal" % ((time.monotonic() - t1) * 1000))
        t = all_trees_equal(e, e.sids)
        assert t["/part"][0] == b"before", "the write sent to the isolated leader was applied"
        assert all("/part/during-%d" % i in t for i in range(5))

        # Now a follower: it stops serving after syncLimit ticks without its leader; the others
        # go on; after the heal it catches up.
        leader = e.wait_leader()
        f = next(s for s in e.sids if s != leader)
        other = next(s for s in e.sids if s not in (leader, f))
        client = e.nodes[f].client()
        marks = {s: e.nodes[s].log_size() for s in e.sids}
        t0 = time.monotonic()
        lab.isolate(f)
        t_read = reads_until_closed(client, "/part", t0 + e.sync_ms / 1000 + slack,
                                    "the isolated follower's client")
        print("isolated follower closed its client %.0f ms after the cut" % ((t_read - t0) * 1000))
        assert refuses_clients(e.nodes[f]), "the isolated follower took a new client"
        for i in range(3):
            write_through(e.nodes[leader if i % 2 else other], "/part/without-%d" % i, b"%d" % i)
        assert e.nodes[leader].role() == "Leader", "the leader kept its quorum and must not step down"
        lab.heal()
        wait_for(lambda: e.nodes[f].role(marks[f]) == "Follower", 30, "the isolated follower follows again")
        t = all_trees_equal(e, e.sids)
        assert all("/part/without-%d" % i in t for i in range(3))


# ---- 2. seed 000: bad bytes on the election port ------------------------------------------------

def v1_handshake(sid, address):
    return struct.pack(">qqi", -65536, sid, len(address)) + address


def send_raw(addr, data):
    s = socket.create_connection(addr, timeout=10)
    s.sendall(data)
    return s


def closed_by_peer(s, timeout=10):
    """True once the other end closed `s` (EOF or reset) within `timeout`."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(4096):
                return True
    except ConnectionError:
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def test_bad_election_bytes_cost_one_connection_and_the_listener_lives(tmp_path):
    e = Ensemble(str(tmp_path), [1, 2, 3])
    with running(e):
        e.start()
        # Node 1 is attacked: the lowest sid, so every other server's election connection to it
        # goes through its listener (the higher sid keeps the connection it dials).
        target = e.nodes[1]
        host, _, eport = e.addrs[1]
        prefix = struct.pack(">qq", -65536, 99)
        cases = [
            ("address length 2^31-1", prefix + struct.pack(">i", 2**31 - 1) + b"127.0.0.1:1"),
            ("negative address length", prefix + struct.pack(">i", -7)),
            ("garbage", bytes((i * 2654435761 >> 13) & 0xff | 0x80 for i in range(300))),
            ("frame length 2^31-1 after a valid handshake",
             v1_handshake(99, b"127.0.0.1:1") + struct.pack(">i", 2**31 - 1)),
        ]
        for what, data in cases:
            s = send_raw((host, eport), data)
            me = "%s:%d" % s.getsockname()
            assert closed_by_peer(s), "%s: node 1 kept the connection open" % what
            mine = re.compile(re.escape(me) + r"(?!\d)")
            lines = wait_for(lambda: [l for l in target.log().splitlines() if mine.search(l)], 10,
                             "node 1 logs the bad connection from %s" % me)
            assert len(lines) == 1, "%s: one log line per bad connection, got %s" % (what, lines)
            assert " WARN " in lines[0], lines[0]
            if what.startswith("frame"):
                assert str(2**31 - 1) in lines[0], lines[0]
        assert target.alive()
        # (A learner's connect to a leader not yet listening may end in an ERROR line while the
        # ensemble forms, as in ZooKeeper; nothing of the election connections may.)
        errors = [l for l in target.log().splitlines()
                  if " ERROR " in l and ("quorum::peers" in l or "listener" in l)]
        assert errors == [], "the election listener reported an error: %s" % errors

        # The listener lives: with node 2 down, node 3 (killed and restarted) can rejoin only
        # through node 1's listener.
        e.nodes[2].kill9()
        e.wait_serving(timeout=20, sids=[1, 3])
        e.nodes[3].kill9()
        mark = e.nodes[3].log_size()
        t0 = time.monotonic()
        e.restart(3)
        e.wait_serving(timeout=20, sids=[1, 3])
        print("node 3 rejoined %.0f ms after its restart" % ((time.monotonic() - t0) * 1000))
        assert "Election connection with server 1 is up (we connected)" in e.nodes[3].log_since(mark)
        e.restart(2)
        e.wait_serving(timeout=20)
        all_trees_equal(e, e.sids)


# ---- 3. seed 001: a 5-server config with two servers blackholed, then a 3-server config ----------

MISMATCH = re.compile(r" WARN .*server (\d+) runs with servers ([\d, ()a-z]+) "
                      r"but this server runs with ([\d, ()a-z]+);")


def first_write(e, sids, deadline):
    """Tries a write through each of `sids` in turn until one is acknowledged; returns when."""
    while time.monotonic() < deadline:
        for s in sids:
            if try_write(e.nodes[s], timeout=1.0):
                return time.monotonic()
        time.sleep(0.005)
    return None


def restart_and_time(e, sid, config_sids, bound_s, what):
    """Restarts `sid` with `config_sids`, and returns how long the ensemble took to serve a write
    again, counted from the restart (the spawn of the new process); fails past `bound_s`. The
    message says how much of it the new process took to listen on its election port (its own
    start-up, which CPU contention stretches)."""
    mark = e.nodes[sid].log_size()
    wall0, t0 = time.time(), time.monotonic()
    e.restart(sid, config_sids)
    t = first_write(e, e.sids, t0 + max(bound_s, 10))
    assert t is not None, "%s: the ensemble does not serve 10 s after the restart" % what
    took = t - t0
    m = re.search(r"^(\S+)Z .*accepting election connections", e.nodes[sid].log_since(mark), re.M)
    listening = "?"
    if m is not None:
        at = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
        listening = "%.0f" % ((at - wall0) * 1000)
    said = "%s: serving %.0f ms after the restart (its election listener was up after %s ms)" % (
        what, took * 1000, listening)
    print(said)
    assert took <= bound_s, "%s; the bound is %.0f ms" % (said, bound_s * 1000)
    return took


def stop_and_wait_for_the_others(e, sid):
    """Kills `sid` and waits until every other node stopped serving (no quorum is left in its
    view), so that what a restart is timed against is the election, not the detection."""
    marks = {s: e.nodes[s].log_size() for s in e.sids}
    e.nodes[sid].kill9()
    for s in e.sids:
        if s != sid:
            wait_for(lambda s=s: "stopped serving clients" in e.nodes[s].log_since(marks[s]), 10,
                     "node %d stops serving without node %d" % (s, sid))


def test_blackholed_servers_and_a_config_mismatch_do_not_stall_the_election(tmp_path):
    lab = NetLab([1, 2, 3], blackhole=[4, 5])
    e = Ensemble(str(tmp_path), [1, 2, 3], lab=lab, config_sids=[1, 2, 3, 4, 5])
    with running(e, lab):
        t0 = time.monotonic()
        e.start()
        took = time.monotonic() - t0
        print("5-server config, 4 and 5 blackholed: serving %.0f ms after the start" % (took * 1000))
        # A connect to a blackholed server takes cnxTimeout (5 s) to fail; had a vote to a
        # reachable server waited behind it (the seed's single send queue), no quorum could form
        # sooner.
        assert took < 4, "the ensemble formed only %.1f s after the start" % took
        # Servers 4 and 5 are long gone in the seed: every node has given up connecting to them.
        for s in e.sids:
            for gone in (4, 5):
                wait_for(lambda s=s, gone=gone: "Cannot open channel to %d" % gone in e.nodes[s].log(), 10,
                         "node %d finds server %d unreachable" % (s, gone))
        leader = e.wait_leader()
        f = next(s for s in e.sids if s != leader)
        # The follower is restarted with servers 1-3 only, once the others stopped serving (two
        # of five voters left: no quorum), as in the seed's outage.
        stop_and_wait_for_the_others(e, f)
        mark_f = e.nodes[f].log_size()
        restart_and_time(e, f, [1, 2, 3], 0.5, "node %d restarted with servers 1-3" % f)

        # One WARN per peer with the other list, naming both lists and the peer's sid.
        others = sorted(s for s in e.sids if s != f)
        found = wait_for(lambda: [m.groups() for m in MISMATCH.finditer(e.nodes[f].log_since(mark_f))]
                         if len(MISMATCH.findall(e.nodes[f].log_since(mark_f))) >= len(others) else None,
                         10, "node %d reports the other server lists" % f)
        assert sorted(int(g[0]) for g in found) == others, found
        for sid, theirs, ours in found:
            assert (theirs, ours) == ("1, 2, 3, 4, 5", "1, 2, 3"), found

        # Finish the change as the seed's authors learned to: the other follower, then the
        # leader, each restarted with servers 1-3; each time the ensemble serves again at once.
        leader = e.wait_leader()
        for s in [x for x in e.sids if x not in (f, leader)] + [leader]:
            stop_and_wait_for_the_others(e, s)
            restart_and_time(e, s, [1, 2, 3], 0.5, "node %d restarted with servers 1-3" % s)

        # Node f reported each peer's other list once, however many elections followed.
        found = [m.groups() for m in MISMATCH.finditer(e.nodes[f].log_since(mark_f))]
        assert sorted(int(g[0]) for g in found) == others, "one WARN per peer: %s" % found

        # Every node runs with servers 1-3: kill the leader; the survivors re-elect and serve.
        e.wait_serving(timeout=10)
        leader = e.wait_leader()
        survivors = [s for s in e.sids if s != leader]
        t0 = time.monotonic()
        e.nodes[leader].kill9()
        t = first_write(e, survivors, t0 + 15)
        assert t is not None, "the survivors do not serve 15 s after the leader was killed"
        print("survivors serve %.0f ms after the leader was killed" % ((t - t0) * 1000))
        assert e.wait_leader(exclude=(leader,)) in survivors
        all_trees_equal(e, survivors)


# ---- 5. sessions across nodes -------------------------------------------------------------------

def kazoo(node, **kw):
    c = KazooClient(hosts="127.0.0.1:%d" % node.port, **kw)
    c.start(timeout=15)
    return c


def test_session_expiry_is_decided_by_the_leader_and_sessions_move(tmp_path):
    e = Ensemble(str(tmp_path), [1, 2, 3])
    with running(e):
        e.start()
        leader = e.wait_leader()
        a, b = [s for s in e.sids if s != leader]
        timeout_ms = 2000
        admin = kazoo(e.nodes[leader])
        try:
            admin.ensure_path("/s")
            # A session kept alive by pings to follower A: its touches must reach the leader.
            alive = kazoo(e.nodes[a], timeout=timeout_ms / 1000)
            alive.create("/s/alive", ephemeral=True)
            # A session on follower A whose client vanishes without closing it.
            gone = e.nodes[a].client(timeout_ms=timeout_ms)
            assert gone.create("/s/gone", b"", flags=rawzk.EPHEMERAL)[0] == OK
            t0 = time.monotonic()
            gone.close_socket()
            for s in e.sids:
                assert tree(e.nodes[s]).get("/s/gone") is not None, "node %d lost the ephemeral at once" % s
            # Expiry (the leader's decision) removes the ephemeral from every node.
            for s in e.sids:
                wait_for(lambda s=s: "/s/gone" not in tree(e.nodes[s]), timeout_ms / 1000 + 5,
                         "the expired session's ephemeral is gone from node %d" % s)
            took = time.monotonic() - t0
            print("the session expired %.0f ms after its client vanished (timeout %d ms)"
                  % (took * 1000, timeout_ms))
            assert took >= timeout_ms / 1000 * 0.9, "expired before its timeout"
            # The pinging session was created first: had its touches not reached the leader, it
            # would have expired no later than the vanished one.
            assert alive.state == KazooState.CONNECTED
            for s in e.sids:
                assert "/s/alive" in tree(e.nodes[s]), "node %d: the live session's ephemeral is gone" % s
            alive.stop()
            alive.close()
            for s in e.sids:
                wait_for(lambda s=s: "/s/alive" not in tree(e.nodes[s]), 5,
                         "a closed session's ephemeral is gone from node %d" % s)

            # A session resumed on B from its client_id (session id and password) keeps its
            # ephemeral and lives on past its timeout.
            first = e.nodes[a].client(timeout_ms=timeout_ms)
            assert first.create("/s/resumed", b"", flags=rawzk.EPHEMERAL)[0] == OK
            sid, passwd = first.session_id, first.passwd
            first.close_socket()
            resumed = kazoo(e.nodes[b], timeout=timeout_ms / 1000, client_id=(sid, passwd))
            assert resumed.client_id[0] == sid
            assert resumed.exists("/s/resumed").ephemeralOwner == sid
            # It lives on past its timeout: a session created after it and abandoned expires first.
            probe = e.nodes[b].client(timeout_ms=timeout_ms)
            assert probe.create("/s/probe", b"", flags=rawzk.EPHEMERAL)[0] == OK
            probe.close_socket()
            for s in e.sids:
                wait_for(lambda s=s: "/s/probe" not in tree(e.nodes[s]), timeout_ms / 1000 + 5,
                         "the abandoned probe session expires on node %d" % s)
            for s in e.sids:
                owner = tree(e.nodes[s])["/s/resumed"][6]
                assert owner == sid, "node %d: the resumed session lost its ephemeral" % s
            resumed.stop()
            resumed.close()

            # Clients whose server dies move to the next with their session (kazoo: its client_id):
            # the session keeps its ephemeral, and a watch set on A, set again on B as ZooKeeper's
            # Java client does when it reconnects (SetWatches with the last zxid it saw; kazoo
            # drops its watches on a disconnect instead), fires there when another client changes
            # the node.
            admin.create("/s/watched", b"v0")
            mover = KazooClient(hosts="127.0.0.1:%d,127.0.0.1:%d" % (e.nodes[a].port, e.nodes[b].port),
                                randomize_hosts=False, timeout=timeout_ms / 1000)
            mover.start(timeout=15)
            mover.create("/s/mover", ephemeral=True)
            before = mover.client_id
            assert cons_has(e.nodes[a], before[0]), "the kazoo client is not connected to A"
            watcher = e.nodes[a].client(timeout_ms=4000)
            assert watcher.get_data("/s/watched", watch=True)[0] == OK
            e.nodes[a].kill9()
            wait_for(lambda: mover.state == KazooState.CONNECTED and cons_has(e.nodes[b], before[0]), 15,
                     "the kazoo client reconnects to B")
            assert mover.client_id == before, "the session moved, it was not replaced"
            assert admin.exists("/s/mover").ephemeralOwner == before[0]
            moved = rawzk.Client("127.0.0.1", e.nodes[b].port, timeout_ms=4000, session_id=watcher.session_id,
                                 passwd=watcher.passwd, last_zxid=watcher.last_zxid)
            assert moved.session_id == watcher.session_id
            assert moved.set_watches(watcher.last_zxid, data=["/s/watched"])[0] == OK
            assert moved.drain_events() == [], "a watch fired before the node changed"
            admin.set("/s/watched", b"v1")
            assert moved.wait_event(10) == [rawzk.Event(3, 3, "/s/watched")], "NodeDataChanged on B"
            assert moved.close() == OK
            mover.stop()
            mover.close()
            live = [s for s in e.sids if s != a]
            for s in live:
                wait_for(lambda s=s: "/s/mover" not in tree(e.nodes[s]), 5,
                         "the closed session's ephemeral is gone from node %d" % s)
        finally:
            admin.stop()
            admin.close()


def cons_has(node, session_id):
    """True if `cons` on `node` lists a connection of `session_id`."""
    try:
        out = rawzk.four_letter(node.host, node.port, "cons", timeout=2)
    except OSError:
        return False
    return ("sid=0x%x" % session_id) in out
