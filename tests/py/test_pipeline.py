"""Session order under pipelining (issue 15).

A ZooKeeper client may send many requests on one session without waiting for replies. ZooKeeper
processes a session's requests in the order they were sent (the "FIFO client order" guarantee of
the ZooKeeper programmer's guide): a read sees every earlier write of the same session and none of
its later ones, replies come back in request order, and a watch set by an earlier read fires before
the reply of the write that triggers it.

Three tests:

* test_single_session_order[zkd|oracle]: one raw connection pipelines ZKD_PIPE_OPS (default 2000)
  seeded random requests (setData, getData with and without watch, exists, getChildren(2),
  create/delete of children, sequential creates, multi, sync) without waiting, then reads every
  frame. A model of the tree (this session is the only writer) predicts every reply: error code,
  data, children, every Stat field but ctime/mtime, that reply-header zxids never go backwards and
  that a read's zxid is that of the write just before it, and the exact watch events and where they
  arrive in the stream. The oracle must pass this too, which shows that the model encodes
  ZooKeeper's behaviour.
* test_single_session_matches_oracle: the same request stream on zkd and on Apache ZooKeeper 3.8,
  both started empty, compared frame by frame (replies, reply zxids, errors, Stat fields except
  ctime/mtime, watch events and their positions).
* test_two_sessions_order[zkd|oracle]: one session pipelines writes while another pipelines reads
  and its own writes; per-session checks only (order, monotonic zxids, reads see the session's own
  earlier writes, and a read of the other session's node shows the write its reply zxid says).

ZKD_PIPE_SEED=N picks the seed (default 15), ZKD_PIPE_OPS=N the length. Failures print the seed.
"""
import os
import random
import struct
import sys
import threading
import time

import pytest

from conftest import Server  # noqa: E402  (tests/py/conftest.py; before opcodes/ is on the path)

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "opcodes"))
import rawzk as z  # noqa: E402

SEED = int(os.environ.get("ZKD_PIPE_SEED", "15"))
OPS = int(os.environ.get("ZKD_PIPE_OPS", "2000"))
IO_DEADLINE_S = 60.0
PER_KIND = 6

ROOT = "/pl"
KEY = ROOT + "/k"
SEQ_PARENT = ROOT + "/q"
CHILDREN = [ROOT + "/c%d" % j for j in range(6)]

READ_OPS = (z.GET_DATA, z.EXISTS, z.GET_CHILDREN, z.GET_CHILDREN2, z.SYNC)
WRITE_OPS = (z.CREATE, z.CREATE2, z.DELETE, z.SET_DATA, z.MULTI)

EV_NAMES = {z.EV_CREATED: "NodeCreated", z.EV_DELETED: "NodeDeleted",
            z.EV_DATA_CHANGED: "NodeDataChanged", z.EV_CHILDREN_CHANGED: "NodeChildrenChanged"}


def parent_of(path):
    p = path.rsplit("/", 1)[0]
    return p or "/"


def stat_tuple(st):
    """Every Stat field but ctime/mtime (wall clock, differs between any two runs)."""
    return (st.czxid, st.mzxid, st.version, st.cversion, st.aversion, st.ephemeralOwner,
            st.dataLength, st.numChildren, st.pzxid)


# ---- the request stream ----------------------------------------------------------------------------
class Req:
    __slots__ = ("xid", "op", "args", "body")

    def __init__(self, xid, op, args, body):
        self.xid, self.op, self.args, self.body = xid, op, args, body

    def __repr__(self):
        return "xid %d %s%r" % (self.xid, OP_NAMES.get(self.op, self.op), self.args)


OP_NAMES = {z.CREATE: "create", z.CREATE2: "create2", z.DELETE: "delete", z.EXISTS: "exists",
            z.GET_DATA: "getData", z.SET_DATA: "setData", z.GET_CHILDREN: "getChildren",
            z.GET_CHILDREN2: "getChildren2", z.SYNC: "sync", z.MULTI: "multi", z.CHECK: "check"}


def sub_body(sub):
    kind = sub[0]
    if kind == z.CREATE:
        return z.body_create(sub[1], sub[2], flags=sub[3])
    if kind == z.DELETE:
        return z.body_path_version(sub[1], sub[2])
    if kind == z.SET_DATA:
        return z.body_set_data(sub[1], sub[2], sub[3])
    if kind == z.CHECK:
        return z.body_path_version(sub[1], sub[2])
    raise AssertionError(sub)


def make_req(xid, op, args):
    if op in (z.CREATE, z.CREATE2):
        body = z.body_create(args[0], args[1], flags=args[2])
    elif op == z.DELETE:
        body = z.body_path_version(args[0], args[1])
    elif op == z.SET_DATA:
        body = z.body_set_data(args[0], args[1], args[2])
    elif op in (z.GET_DATA, z.EXISTS, z.GET_CHILDREN, z.GET_CHILDREN2):
        body = z.body_path_watch(args[0], args[1])
    elif op == z.SYNC:
        body = z.body_path(args[0])
    elif op == z.MULTI:
        body = z.encode_multi([(s[0], sub_body(s)) for s in args])
    else:
        raise AssertionError(op)
    return Req(xid, op, args, body)


def gen_single(seed, n):
    """The single-session stream: a fixed prologue creating the tree, then n seeded random ops.

    Half of the random ops are setData/getData of one node, so nearly every read has a write of
    the same session just before it (the pattern issue 15 is about). The generator runs the model
    as it goes (zxids do not matter to it) so that versioned ops and deletes of sequential nodes
    are right often enough to succeed, not only to fail."""
    rng = random.Random(seed)
    gm = Model()
    out = []
    xid = 0

    def add(op, *args):
        nonlocal xid
        xid += 1
        req = make_req(xid, op, args)
        out.append(req)
        expect(gm, req, 0)

    def version_of(path, right):
        n = gm.nodes.get(path)
        v = n.version if n is not None else 0
        return v if right else v + rng.choice([-1, 1, 2])

    add(z.CREATE, ROOT, b"root", z.PERSISTENT)
    add(z.CREATE2, KEY, b"init", z.PERSISTENT)
    add(z.CREATE, SEQ_PARENT, b"", z.PERSISTENT)
    for i in range(n):
        k = rng.random()
        if k < 0.26:
            add(z.SET_DATA, KEY, b"v%d" % i, -1)
        elif k < 0.50:
            add(z.GET_DATA, KEY, rng.random() < 0.25)
        elif k < 0.54:
            add(z.SET_DATA, KEY, b"w%d" % i, version_of(KEY, rng.random() < 0.6))
        elif k < 0.60:
            add(z.EXISTS, rng.choice([KEY] + CHILDREN), rng.random() < 0.3)
        elif k < 0.65:
            add(rng.choice([z.GET_CHILDREN, z.GET_CHILDREN2]), ROOT, rng.random() < 0.3)
        elif k < 0.71:
            add(rng.choice([z.CREATE, z.CREATE2]), rng.choice(CHILDREN), b"c%d" % i, z.PERSISTENT)
        elif k < 0.76:
            c = rng.choice(CHILDREN)
            add(z.DELETE, c, rng.choice([-1, -1, version_of(c, rng.random() < 0.5)]))
        elif k < 0.79:
            add(z.SET_DATA, rng.choice(CHILDREN), b"cv%d" % i, -1)
        elif k < 0.83:
            add(z.GET_DATA, rng.choice(CHILDREN), rng.random() < 0.3)
        elif k < 0.86:
            add(z.CREATE2, SEQ_PARENT + "/s-", b"", z.PERSISTENT_SEQUENTIAL)
        elif k < 0.88:
            # Sequential names follow from the parent's history, so the model knows them.
            kids = sorted(gm.nodes[SEQ_PARENT].children)
            name = rng.choice(kids) if kids and rng.random() < 0.8 else "s-%010d" % rng.randrange(1000)
            add(z.DELETE, SEQ_PARENT + "/" + name, -1)
        elif k < 0.90:
            add(z.GET_CHILDREN2, SEQ_PARENT, rng.random() < 0.3)
        elif k < 0.96:
            subs = []
            for _ in range(rng.randrange(1, 4)):
                c = rng.choice(CHILDREN)
                subs.append(rng.choice([
                    (z.SET_DATA, KEY, b"m%d" % i, -1),
                    (z.CHECK, KEY, version_of(KEY, rng.random() < 0.7)),
                    (z.CREATE, c, b"mc", z.PERSISTENT),
                    (z.DELETE, c, -1),
                    (z.SET_DATA, c, b"mcs", -1),
                ]))
            add(z.MULTI, *subs)
        else:
            add(z.SYNC, rng.choice([ROOT, KEY]))
    return out


# ---- sending and reading a pipelined stream ----------------------------------------------------------
def frame_of(req):
    payload = struct.pack(">ii", req.xid, req.op) + req.body
    return struct.pack(">i", len(payload)) + payload


def parse_reply(req, rep):
    """The reply body as plain comparable values (Stats as stat_tuple)."""
    if rep.err != z.OK and req.op != z.MULTI:
        return None
    r = rep.r()
    op = req.op
    if op == z.GET_DATA:
        return (r.buf(), stat_tuple(r.stat()))
    if op in (z.EXISTS, z.SET_DATA):
        return stat_tuple(r.stat())
    if op == z.GET_CHILDREN:
        return r.strs()
    if op == z.GET_CHILDREN2:
        return (r.strs(), stat_tuple(r.stat()))
    if op == z.CREATE or op == z.SYNC:
        return r.str()
    if op == z.CREATE2:
        return (r.str(), stat_tuple(r.stat()))
    if op == z.DELETE:
        return None
    if op == z.MULTI:
        if not rep.body:
            return None
        out = []
        for typ, err, val in z.decode_multi(rep.body):
            if typ == z.SET_DATA:
                val = stat_tuple(val)
            elif typ == z.CREATE2:
                val = (val[0], stat_tuple(val[1]))
            out.append((typ, err, val))
        return out
    raise AssertionError(op)


class Stream:
    """What one session received: frames in arrival order (replies and events) and its session id."""

    def __init__(self, session_id, frames, error=None):
        self.session_id = session_id
        self.frames = frames      # ("reply", xid, zxid, err, value) | ("event", type, state, path)
        self.error = error        # a string if the connection broke or the deadline passed

    def replies(self):
        return [f for f in self.frames if f[0] == "reply"]


def connect(host, port):
    """A raw session. Apache ZooKeeper answers ruok (what Server waits for) slightly before it
    accepts sessions and closes connections made in between, so retry until a deadline."""
    deadline = time.time() + 30
    while True:
        try:
            return z.Client(host, port, timeout_ms=10000, io_timeout=IO_DEADLINE_S)
        except (z.ConnectionClosed, OSError):
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def pipeline(host, port, reqs, start=None):
    """Connects, sends every request without waiting (from a thread, while this thread reads, so
    neither side's socket buffers can deadlock), reads until every request has its reply.
    `start`, if given, is called between connecting and sending (a barrier between sessions)."""
    c = connect(host, port)
    by_xid = {r.xid: r for r in reqs}
    frames = []
    send_err = []

    def sender():
        try:
            if start is not None:
                start()
            buf = []
            size = 0
            for r in reqs:
                f = frame_of(r)
                buf.append(f)
                size += len(f)
                if size >= 16384:
                    c.sock.sendall(b"".join(buf))
                    buf, size = [], 0
            if buf:
                c.sock.sendall(b"".join(buf))
        except OSError as e:
            send_err.append(repr(e))

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    deadline = time.time() + IO_DEADLINE_S
    got = 0
    error = None
    try:
        while got < len(reqs):
            left = deadline - time.time()
            if left <= 0:
                error = "deadline: %d of %d replies after %.0f s" % (got, len(reqs), IO_DEADLINE_S)
                break
            c.sock.settimeout(left)
            r = z.R(c.recv_frame())
            xid, zxid, err = r.int(), r.long(), r.int()
            if xid == z.XID_NOTIFICATION:
                frames.append(("event", r.int(), r.int(), r.str()))
                continue
            req = by_xid.get(xid)
            if req is None:
                frames.append(("reply", xid, zxid, err, ("unexpected xid",)))
                continue
            frames.append(("reply", xid, zxid, err, parse_reply(req, z.Reply(xid, zxid, err, r.d[r.o:]))))
            got += 1
    except (z.ConnectionClosed, OSError, ValueError) as e:
        error = "connection: %r after %d of %d replies" % (e, got, len(reqs))
    t.join(IO_DEADLINE_S)
    if send_err and error is None:
        error = "send: " + send_err[0]
    sid = c.session_id
    if error is None:
        c.sock.settimeout(10)
        c.close()
    else:
        c.close_socket()
    return Stream(sid, frames, error)


# ---- the model: what ZooKeeper answers when this session is the only writer ------------------------
class Node:
    """A znode. ZooKeeper 3.8 keeps, as the node's cversion, the number of children ever created
    under it; the sequential suffix is that number, and the cversion a Stat reports is
    2 * creates - numChildren, i.e. one per child create and one per child delete (measured on the
    oracle: after creating s-0000000000, s-0000000001 and deleting the first, exists() reports
    cversion 3 and the next sequential create is s-0000000002)."""

    def __init__(self, data, zxid):
        self.data = data
        self.czxid = self.mzxid = self.pzxid = zxid
        self.version = self.creates = 0
        self.children = set()

    def cversion(self):
        return 2 * self.creates - len(self.children)

    def stat(self):
        return (self.czxid, self.mzxid, self.version, self.cversion(), 0, 0, len(self.data),
                len(self.children), self.pzxid)

    def copy(self):
        n = Node(self.data, self.czxid)
        n.mzxid, n.pzxid, n.version, n.creates = self.mzxid, self.pzxid, self.version, self.creates
        n.children = set(self.children)
        return n


class Model:
    """The tree below ROOT plus this session's watches. "/" is only a parent here: its Stat is
    never read, so it is modelled without one."""

    def __init__(self):
        self.nodes = {}
        self.data_watches = set()   # getData(watch) on a node, exists(watch) on a node or a missing path
        self.child_watches = set()  # getChildren(watch)

    def exists(self, path):
        return path == "/" or path in self.nodes

    def children_of(self, path):
        if path == "/":
            return None
        return self.nodes[path].children

    # Each apply_* returns an error code; on OK it has changed the tree and appended the watch
    # events it fires to `events`, in ZooKeeper's order (see DataTree.createNode/deleteNode/setData
    # of ZooKeeper 3.8: data watches of the path, then child watches of the parent).
    def apply_create(self, path, data, flags, zxid, events):
        parent = parent_of(path)
        if not self.exists(parent):
            return z.NONODE, None
        if flags & 2:  # sequential: the suffix counts the parent's earlier child creates
            path = path + "%010d" % self.nodes[parent].creates
        if self.exists(path):
            return z.NODEEXISTS, None
        self.nodes[path] = Node(data, zxid)
        if parent != "/":
            p = self.nodes[parent]
            p.children.add(path.rsplit("/", 1)[1])
            p.creates += 1
            p.pzxid = zxid
        self.fire_data(path, z.EV_CREATED, events)
        self.fire_child(parent, z.EV_CHILDREN_CHANGED, events)
        return z.OK, path

    def apply_delete(self, path, version, zxid, events):
        if path not in self.nodes:
            return z.NONODE
        n = self.nodes[path]
        if version != -1 and version != n.version:
            return z.BADVERSION
        if n.children:
            return z.NOTEMPTY
        del self.nodes[path]
        parent = parent_of(path)
        if parent != "/":
            p = self.nodes[parent]
            p.children.discard(path.rsplit("/", 1)[1])
            p.pzxid = zxid
        # One NodeDeleted per watcher even if it held both a data and a child watch on the path.
        fired = path in self.data_watches or path in self.child_watches
        self.data_watches.discard(path)
        self.child_watches.discard(path)
        if fired:
            events.append((z.EV_DELETED, path))
        self.fire_child(parent, z.EV_CHILDREN_CHANGED, events)
        return z.OK

    def apply_set(self, path, data, version, zxid, events):
        if path not in self.nodes:
            return z.NONODE, None
        n = self.nodes[path]
        if version != -1 and version != n.version:
            return z.BADVERSION, None
        n.data = data
        n.version += 1
        n.mzxid = zxid
        self.fire_data(path, z.EV_DATA_CHANGED, events)
        return z.OK, n.stat()

    def fire_data(self, path, typ, events):
        if path in self.data_watches:
            self.data_watches.discard(path)
            events.append((typ, path))

    def fire_child(self, path, typ, events):
        if path in self.child_watches:
            self.child_watches.discard(path)
            events.append((typ, path))

    def snapshot(self):
        m = Model()
        m.nodes = {p: n.copy() for p, n in self.nodes.items()}
        m.data_watches = set(self.data_watches)
        m.child_watches = set(self.child_watches)
        return m


def expect(model, req, zxid):
    """Applies `req` to the model (writes take the reply's zxid as their txn zxid) and returns
    (err, value, events): the reply ZooKeeper sends and the watch events it sends just before."""
    op, a = req.op, req.args
    events = []
    if op == z.GET_DATA:
        if a[0] not in model.nodes:
            return z.NONODE, None, events
        if a[1]:
            model.data_watches.add(a[0])
        n = model.nodes[a[0]]
        return z.OK, (n.data, n.stat()), events
    if op == z.EXISTS:
        if a[1]:
            model.data_watches.add(a[0])
        if a[0] not in model.nodes:
            return z.NONODE, None, events
        return z.OK, model.nodes[a[0]].stat(), events
    if op in (z.GET_CHILDREN, z.GET_CHILDREN2):
        if a[0] not in model.nodes:
            return z.NONODE, None, events
        if a[1]:
            model.child_watches.add(a[0])
        n = model.nodes[a[0]]
        # The order of getChildren is unspecified; the model compares it as a set (the oracle
        # comparison compares the exact lists).
        kids = sorted(n.children)
        return z.OK, (kids if op == z.GET_CHILDREN else (kids, n.stat())), events
    if op == z.SYNC:
        return z.OK, a[0], events
    if op in (z.CREATE, z.CREATE2):
        err, path = model.apply_create(a[0], a[1], a[2], zxid, events)
        if err != z.OK:
            return err, None, events
        return z.OK, (path if op == z.CREATE else (path, model.nodes[path].stat())), events
    if op == z.DELETE:
        return model.apply_delete(a[0], a[1], zxid, events), None, events
    if op == z.SET_DATA:
        err, st = model.apply_set(a[0], a[1], a[2], zxid, events)
        return err, st, events
    if op == z.MULTI:
        # All or nothing, on a scratch copy. Results of a failed multi: OK for the ops before the
        # failing one, its error, RUNTIMEINCONSISTENCY after it; the header error stays OK.
        m = model.snapshot()
        results = []
        failed_at = None
        for i, s in enumerate(a):
            if s[0] == z.CREATE:
                err, path = m.apply_create(s[1], s[2], s[3], zxid, events)
                res = (z.CREATE, 0, path)
            elif s[0] == z.DELETE:
                err = m.apply_delete(s[1], s[2], zxid, events)
                res = (z.DELETE, 0, None)
            elif s[0] == z.SET_DATA:
                err, st = m.apply_set(s[1], s[2], s[3], zxid, events)
                res = (z.SET_DATA, 0, st)
            else:
                n = m.nodes.get(s[1])
                err = z.NONODE if n is None else (z.BADVERSION if n.version != s[2] else z.OK)
                res = (z.CHECK, 0, None)
            if err != z.OK:
                failed_at = (i, err)
                break
            results.append(res)
        if failed_at is None:
            model.nodes, model.data_watches, model.child_watches = m.nodes, m.data_watches, m.child_watches
            return z.OK, results, events
        i, err = failed_at
        res = ([(z.ERROR, z.OK, None)] * i + [(z.ERROR, err, None)]
               + [(z.ERROR, z.RUNTIMEINCONSISTENCY, None)] * (len(a) - i - 1))
        return z.OK, res, []
    raise AssertionError(op)


def normalize_children(op, value):
    if value is None:
        return None
    if op == z.GET_CHILDREN:
        return sorted(value)
    if op == z.GET_CHILDREN2:
        return (sorted(value[0]), value[1])
    return value


def check_single(stream, reqs, label):
    """Checks one server's single-session stream against the model. Returns a list of violations,
    each tagged with its kind."""
    bad = []
    if stream.error:
        bad.append(("io", stream.error))
    replies = stream.replies()
    by_xid = {}
    for f in replies:
        by_xid.setdefault(f[1], f)
    # 1. Replies in request (xid) order.
    order = [f[1] for f in replies]
    expected_order = [r.xid for r in reqs][:len(order)]
    if order != expected_order:
        n_out = sum(1 for a, b in zip(order, expected_order) if a != b)
        first = next(i for i, (a, b) in enumerate(zip(order + [None], expected_order + [None])) if a != b)
        bad.append(("order", "%d replies out of xid order; first at position %d: got xid %r, expected %r"
                    % (n_out, first, order[first] if first < len(order) else None,
                       expected_order[first] if first < len(expected_order) else None)))
    # 2. Reply zxids never go backwards (in arrival order).
    last = None
    for f in replies:
        if last is not None and f[2] < last[2]:
            bad.append(("zxid-backwards", "xid %d zxid %d after xid %d zxid %d" % (f[1], f[2], last[1], last[2])))
        last = f
    # 3. Every reply as the model predicts, the model stepping in request order; events checked by
    #    position when replies came in order (they must arrive just before the triggering write's
    #    reply), else as one sequence.
    events_before = {}
    pending = []
    for f in stream.frames:
        if f[0] == "event":
            pending.append((f[1], f[3]))
            if f[2] != z.STATE_SYNC_CONNECTED:
                bad.append(("event", "event %r with state %d" % (f, f[2])))
        else:
            events_before[f[1]] = pending
            pending = []
    trailing = pending
    model = Model()
    last_write_zxid = None
    all_expected_events = []
    for req in reqs:
        f = by_xid.get(req.xid)
        if f is None:
            bad.append(("missing", "no reply for %r" % req))
            continue
        _, xid, zxid, err, value = f
        is_write = req.op in WRITE_OPS
        exp_err, exp_value, exp_events = expect(model, req, zxid)
        all_expected_events.extend(exp_events)
        if is_write:
            if last_write_zxid is not None and zxid <= last_write_zxid:
                bad.append(("write-zxid", "%r: zxid %d not after the previous write's %d" % (req, zxid, last_write_zxid)))
            last_write_zxid = zxid
        elif last_write_zxid is not None and zxid != last_write_zxid:
            bad.append(("read-zxid", "%r: reply zxid %d, the session's previous write was zxid %d"
                        % (req, zxid, last_write_zxid)))
        if err != exp_err:
            bad.append(("err", "%r: err %d, expected %d" % (req, err, exp_err)))
            continue
        got = normalize_children(req.op, value)
        if got != exp_value:
            if req.op == z.GET_DATA and exp_value is not None and got is not None and got[0] != exp_value[0]:
                kind = "getData-value"
            else:
                kind = "value"
            bad.append((kind, "%r: got %r, expected %r" % (req, got, exp_value)))
        if order == expected_order:
            evs = events_before.get(req.xid, [])
            if evs != exp_events:
                bad.append(("event", "%r: events before its reply %r, expected %r"
                            % (req, [(EV_NAMES.get(t, t), p) for t, p in evs],
                               [(EV_NAMES.get(t, t), p) for t, p in exp_events])))
    got_events = [(f[1], f[3]) for f in stream.frames if f[0] == "event"]
    if order != expected_order and got_events != all_expected_events:
        bad.append(("event", "%d events, expected %d (sequences differ)" % (len(got_events), len(all_expected_events))))
    if trailing:
        bad.append(("event", "events after the last reply: %r" % trailing))
    return bad


def summarize(bad, label, seed):
    kinds = {}
    for k, _ in bad:
        kinds[k] = kinds.get(k, 0) + 1
    lines = ["%s, seed %d (ZKD_PIPE_SEED=%d reproduces): %d violations %r"
             % (label, seed, seed, len(bad), kinds)]
    for kind in kinds:
        of_kind = [m for k, m in bad if k == kind]
        lines += ["  [%s] %s" % (kind, m) for m in of_kind[:PER_KIND]]
        if len(of_kind) > PER_KIND:
            lines.append("  [%s] ... %d more" % (kind, len(of_kind) - PER_KIND))
    return "\n".join(lines)


# ---- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs():
    """Starts zkd and the oracle empty, runs the single-session stream on each first (so both see
    the same zxids), and keeps the servers for the two-session tests."""
    reqs = gen_single(SEED, OPS)
    out = {"reqs": reqs, "servers": {}, "streams": {}, "secs": {}}
    try:
        for kind in ("zkd", "oracle"):
            s = Server(kind)
            out["servers"][kind] = s
            t0 = time.time()
            out["streams"][kind] = pipeline("127.0.0.1", s.port, reqs)
            out["secs"][kind] = time.time() - t0
        yield out
    finally:
        for s in out["servers"].values():
            s.stop()


@pytest.mark.parametrize("kind", ["zkd", "oracle"])
def test_single_session_order(runs, kind):
    stream = runs["streams"][kind]
    bad = check_single(stream, runs["reqs"], kind)
    assert not bad, summarize(bad, "%s, one session, %d pipelined requests in %.1f s"
                              % (kind, len(runs["reqs"]), runs["secs"][kind]), SEED)


def describe_frame(f, by_xid):
    if f is None:
        return "(nothing)"
    if f[0] == "event":
        return "event %s %s state %d" % (EV_NAMES.get(f[1], f[1]), f[3], f[2])
    return "reply xid %d: zxid %d err %d %r" % (f[1], f[2], f[3], f[4])


def test_single_session_matches_oracle(runs):
    a, b = runs["streams"]["zkd"], runs["streams"]["oracle"]
    assert b.error is None, "oracle: %s (seed %d)" % (b.error, SEED)
    by_xid = {r.xid: r for r in runs["reqs"]}
    bad = []
    if a.error:
        bad.append(("io", a.error))
    # Replies by xid (independent of arrival order): zxid, err, value, children in order.
    ra = {f[1]: f for f in a.replies()}
    rb = {f[1]: f for f in b.replies()}
    for xid in sorted(rb):
        if ra.get(xid) != rb[xid]:
            bad.append(("reply", "%r:\n      zkd:    %s\n      oracle: %s"
                        % (by_xid.get(xid), describe_frame(ra.get(xid), by_xid),
                           describe_frame(rb[xid], by_xid))))
    # The whole stream in arrival order: events, their positions, reply order.
    fa, fb = a.frames, b.frames
    if fa != fb:
        i = next(i for i in range(max(len(fa), len(fb)))
                 if i >= len(fa) or i >= len(fb) or fa[i] != fb[i])
        ea = [f for f in fa if f[0] == "event"]
        eb = [f for f in fb if f[0] == "event"]
        bad.append(("stream", "frame streams differ (%d vs %d frames, %d vs %d events, events %s); "
                    "first difference at frame %d:\n      zkd:    %s\n      oracle: %s"
                    % (len(fa), len(fb), len(ea), len(eb), "equal" if ea == eb else "differ", i,
                       describe_frame(fa[i] if i < len(fa) else None, by_xid),
                       describe_frame(fb[i] if i < len(fb) else None, by_xid))))
    assert not bad, summarize(bad, "zkd vs oracle, one session, %d pipelined requests" % len(runs["reqs"]), SEED)


# ---- two sessions ------------------------------------------------------------------------------------
ROOT2 = "/pl2"
X = ROOT2 + "/x"   # written only by session A
Y = ROOT2 + "/y"   # written only by session B


def gen_two(seed, n):
    rng = random.Random(seed * 7919 + 1)
    a, b = [], []
    for i in range(n):
        k = rng.random()
        if k < 0.7:
            a.append((z.SET_DATA, (X, b"a%d" % i, -1)))
        elif k < 0.85:
            a.append((z.GET_DATA, (X, False)))
        else:
            c = ROOT2 + "/ac%d" % rng.randrange(3)
            a.append(rng.choice([(z.CREATE, (c, b"", z.PERSISTENT)), (z.DELETE, (c, -1))]))
        k = rng.random()
        if k < 0.45:
            b.append((z.GET_DATA, (X, rng.random() < 0.2)))
        elif k < 0.55:
            b.append((z.EXISTS, (X, False)))
        elif k < 0.75:
            b.append((z.SET_DATA, (Y, b"b%d" % i, -1)))
        else:
            b.append((z.GET_DATA, (Y, False)))
    mk = lambda ops: [make_req(i + 1, op, args) for i, (op, args) in enumerate(ops)]  # noqa: E731
    return mk(a), mk(b)


def check_two(sa, ra, sb, rb, init_zxid):
    """Per-session checks. A's writes to X give the history of X (zxid -> value); B reads X
    concurrently, so which value it sees is not fixed, but it must be the value X had at the
    reply's zxid, and B's reads of Y must see B's own latest earlier write."""
    bad = []
    for name, s, reqs in (("A", sa, ra), ("B", sb, rb)):
        if s.error:
            bad.append(("io", "%s: %s" % (name, s.error)))
        reps = s.replies()
        if [f[1] for f in reps] != [r.xid for r in reqs][:len(reps)]:
            bad.append(("order", "%s: replies out of xid order" % name))
        for p, q in zip(reps, reps[1:]):
            if q[2] < p[2]:
                bad.append(("zxid-backwards", "%s: xid %d zxid %d after xid %d zxid %d" % (name, q[1], q[2], p[1], p[2])))
    # History of X from A's successful setData replies: (zxid, version, value).
    hist = [(init_zxid[X], 0, b"x0")]
    a_by = {f[1]: f for f in sa.replies()}
    last_a = b"x0"
    for r in ra:
        f = a_by.get(r.xid)
        if f is None:
            continue
        if r.op == z.SET_DATA and f[3] == z.OK:
            st = f[4]
            if st[1] != f[2]:
                bad.append(("stat", "A %r: mzxid %d != reply zxid %d" % (r, st[1], f[2])))
            if st[2] != hist[-1][1] + 1:
                bad.append(("stat", "A %r: version %d, previous write made %d" % (r, st[2], hist[-1][1])))
            hist.append((f[2], st[2], r.args[1]))
            last_a = r.args[1]
        elif r.op == z.GET_DATA and f[3] == z.OK and f[4][0] != last_a:
            bad.append(("getData-value", "A %r: got %r, the session's last write was %r" % (r, f[4][0], last_a)))
    b_by = {f[1]: f for f in sb.replies()}
    last_b = (b"y0", 0)
    last_b_write_zxid = 0
    for r in rb:
        f = b_by.get(r.xid)
        if f is None:
            continue
        _, xid, zxid, err, val = f
        if err != z.OK:
            bad.append(("err", "B %r: err %d" % (r, err)))
            continue
        if r.op == z.SET_DATA:
            if val[2] != last_b[1] + 1:
                bad.append(("stat", "B %r: version %d after %d" % (r, val[2], last_b[1])))
            last_b = (r.args[1], val[2])
            last_b_write_zxid = zxid
            continue
        if zxid < last_b_write_zxid:
            bad.append(("read-zxid", "B %r: reply zxid %d before the session's own write at %d" % (r, zxid, last_b_write_zxid)))
        if r.args[0] == Y:
            if val[0] != last_b[0] or val[1][2] != last_b[1]:
                bad.append(("getData-value", "B %r: got %r version %d, the session's last write was %r version %d"
                            % (r, val[0], val[1][2], last_b[0], last_b[1])))
            continue
        st = val[1] if r.op == z.GET_DATA else val
        # X as of the reply's zxid: the last of A's writes at or before it.
        at = [h for h in hist if h[0] <= zxid]
        want = at[-1] if at else None
        if want is None or st[1] != want[0] or st[2] != want[1] or (r.op == z.GET_DATA and val[0] != want[2]):
            bad.append(("read-vs-zxid", "B %r: reply zxid %d, got mzxid %d version %d%s; X at that zxid: %r"
                        % (r, zxid, st[1], st[2], " value %r" % (val[0],) if r.op == z.GET_DATA else "", want)))
    return bad


def setup_two(srv):
    c = connect("127.0.0.1", srv.port)
    try:
        zx = {}
        for path, data in ((ROOT2, b""), (X, b"x0"), (Y, b"y0")):
            err, res = c.create2(path, data)
            assert err == z.OK, "setting up %s: err %d" % (path, err)
            zx[path] = res[1].czxid
        return zx
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["zkd", "oracle"])
def test_two_sessions_order(runs, kind):
    srv = runs["servers"][kind]
    init = setup_two(srv)
    ra, rb = gen_two(SEED, OPS // 2)
    barrier = threading.Barrier(2, timeout=IO_DEADLINE_S)
    res = {}

    def run(name, reqs):
        res[name] = pipeline("127.0.0.1", srv.port, reqs, start=barrier.wait)

    ts = [threading.Thread(target=run, args=(n, r), daemon=True) for n, r in (("A", ra), ("B", rb))]
    for t in ts:
        t.start()
    # Both connect, then both start sending at once (the barrier in pipeline()).
    for t in ts:
        t.join(IO_DEADLINE_S * 2)
    assert set(res) == {"A", "B"}, "%s: a session's pipeline did not finish (seed %d)" % (kind, SEED)
    bad = check_two(res["A"], ra, res["B"], rb, init)
    assert not bad, summarize(bad, "%s, two sessions, %d + %d pipelined requests" % (kind, len(ra), len(rb)), SEED)
