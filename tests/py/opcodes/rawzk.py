"""A tiny, exact ZooKeeper (jute) client over a plain socket.

It exists so tests can exercise every opcode and compare exact error codes, reply-header zxids and
Stat fields, which kazoo hides or does not support (TTL, container, addWatch, getEphemerals, whoAmI,
getAllChildrenNumber, setWatches2, standalone check ...).

Everything is synchronous: `call()` sends one request and reads frames until the reply with the
same xid arrives; watch notifications read on the way are appended to `self.events`.
"""

import socket
import struct
import time

# ---- opcodes -------------------------------------------------------------------------------------
NOTIFICATION = 0
CREATE = 1
DELETE = 2
EXISTS = 3
GET_DATA = 4
SET_DATA = 5
GET_ACL = 6
SET_ACL = 7
GET_CHILDREN = 8
SYNC = 9
PING = 11
GET_CHILDREN2 = 12
CHECK = 13
MULTI = 14
CREATE2 = 15
RECONFIG = 16
CHECK_WATCHES = 17
REMOVE_WATCHES = 18
CREATE_CONTAINER = 19
DELETE_CONTAINER = 20
CREATE_TTL = 21
MULTI_READ = 22
AUTH = 100
SET_WATCHES = 101
SASL = 102
GET_EPHEMERALS = 103
GET_ALL_CHILDREN_NUMBER = 104
SET_WATCHES2 = 105
ADD_WATCH = 106
WHO_AM_I = 107
CREATE_SESSION = -10
CLOSE_SESSION = -11
ERROR = -1

# ---- error codes ---------------------------------------------------------------------------------
OK = 0
SYSTEMERROR = -1
RUNTIMEINCONSISTENCY = -2
CONNECTIONLOSS = -4
MARSHALLINGERROR = -5
UNIMPLEMENTED = -6
BADARGUMENTS = -8
UNKNOWNSESSION = -12
APIERROR = -100
NONODE = -101
NOAUTH = -102
BADVERSION = -103
NOCHILDRENFOREPHEMERALS = -108
NODEEXISTS = -110
NOTEMPTY = -111
SESSIONEXPIRED = -112
INVALIDACL = -114
AUTHFAILED = -115
NOWATCHER = -121
QUOTAEXCEEDED = -125
THROTTLED = -127

# ---- create modes --------------------------------------------------------------------------------
PERSISTENT = 0
EPHEMERAL = 1
PERSISTENT_SEQUENTIAL = 2
EPHEMERAL_SEQUENTIAL = 3
CONTAINER = 4
PERSISTENT_WITH_TTL = 5
PERSISTENT_SEQUENTIAL_WITH_TTL = 6

# ---- event types / states ------------------------------------------------------------------------
EV_NONE = -1
EV_CREATED = 1
EV_DELETED = 2
EV_DATA_CHANGED = 3
EV_CHILDREN_CHANGED = 4
EV_DATA_WATCH_REMOVED = 5
EV_CHILD_WATCH_REMOVED = 6
EV_PERSISTENT_WATCH_REMOVED = 7
STATE_SYNC_CONNECTED = 3

# watcher types for checkWatches / removeWatches
WT_CHILDREN = 1
WT_DATA = 2
WT_ANY = 3
WT_PERSISTENT = 4
WT_PERSISTENT_RECURSIVE = 5

# addWatch modes
AW_PERSISTENT = 0
AW_PERSISTENT_RECURSIVE = 1

# perms
READ, WRITE, CREATE_P, DELETE_P, ADMIN = 1, 2, 4, 8, 16
ALL = 31

XID_NOTIFICATION = -1
XID_PING = -2
XID_AUTH = -4
XID_SET_WATCHES = -8

OPEN_ACL_UNSAFE = [(ALL, "world", "anyone")]
READ_ACL_UNSAFE = [(READ, "world", "anyone")]
CREATOR_ALL_ACL = [(ALL, "auth", "")]


class ZkError(Exception):
    def __init__(self, code, op=None):
        super().__init__(f"zk error {code} (op {op})")
        self.code = code


class ConnectionClosed(Exception):
    pass


# ---- jute encoding -------------------------------------------------------------------------------
class W:
    def __init__(self):
        self.parts = []

    def int(self, v):
        self.parts.append(struct.pack(">i", v))
        return self

    def long(self, v):
        self.parts.append(struct.pack(">q", v))
        return self

    def bool(self, v):
        self.parts.append(b"\x01" if v else b"\x00")
        return self

    def buf(self, b):
        if b is None:
            return self.int(-1)
        self.int(len(b))
        self.parts.append(bytes(b))
        return self

    def str(self, s):
        return self.buf(None if s is None else s.encode())

    def strs(self, lst):
        if lst is None:
            return self.int(-1)
        self.int(len(lst))
        for s in lst:
            self.str(s)
        return self

    def acls(self, acl):
        if acl is None:
            return self.int(-1)
        self.int(len(acl))
        for perms, scheme, ident in acl:
            self.int(perms).str(scheme).str(ident)
        return self

    def bytes(self):
        return b"".join(self.parts)


class R:
    def __init__(self, data):
        self.d = data
        self.o = 0

    def _take(self, n):
        if self.o + n > len(self.d):
            raise ValueError(f"short read: want {n} at {self.o}, have {len(self.d)}")
        b = self.d[self.o:self.o + n]
        self.o += n
        return b

    def int(self):
        return struct.unpack(">i", self._take(4))[0]

    def long(self):
        return struct.unpack(">q", self._take(8))[0]

    def bool(self):
        return self._take(1) != b"\x00"

    def buf(self):
        n = self.int()
        if n < 0:
            return None
        return self._take(n)

    def str(self):
        b = self.buf()
        return None if b is None else b.decode()

    def strs(self):
        n = self.int()
        if n < 0:
            return None
        return [self.str() for _ in range(n)]

    def stat(self):
        return Stat(*[f() for f in (self.long, self.long, self.long, self.long, self.int, self.int,
                                     self.int, self.long, self.int, self.int, self.long)])

    def acls(self):
        n = self.int()
        if n < 0:
            return None
        return [(self.int(), self.str(), self.str()) for _ in range(n)]

    def remaining(self):
        return len(self.d) - self.o


class Stat:
    FIELDS = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
              "ephemeralOwner", "dataLength", "numChildren", "pzxid")

    def __init__(self, *vals):
        for k, v in zip(self.FIELDS, vals):
            setattr(self, k, v)

    def as_dict(self, skip_times=True):
        return {k: getattr(self, k) for k in self.FIELDS
                if not (skip_times and k in ("ctime", "mtime"))}

    def __repr__(self):
        return "Stat(" + ", ".join(f"{k}={getattr(self, k)}" for k in self.FIELDS) + ")"

    def __eq__(self, other):
        return isinstance(other, Stat) and self.as_dict(False) == other.as_dict(False)


class Event:
    def __init__(self, type_, state, path):
        self.type, self.state, self.path = type_, state, path

    def tup(self):
        return (self.type, self.state, self.path)

    def __repr__(self):
        return f"Event(type={self.type}, state={self.state}, path={self.path!r})"

    def __eq__(self, other):
        return isinstance(other, Event) and self.tup() == other.tup()


class Reply:
    """One reply: xid, zxid and err from the header, and the still-unparsed body."""

    def __init__(self, xid, zxid, err, body):
        self.xid, self.zxid, self.err, self.body = xid, zxid, err, body

    def r(self):
        return R(self.body)


# ---- request bodies ------------------------------------------------------------------------------
def body_create(path, data=b"", acl=OPEN_ACL_UNSAFE, flags=PERSISTENT, ttl=None):
    w = W().str(path).buf(data).acls(acl).int(flags)
    if ttl is not None:
        w.long(ttl)
    return w.bytes()


def body_path_version(path, version):
    return W().str(path).int(version).bytes()


def body_path_watch(path, watch):
    return W().str(path).bool(watch).bytes()


def body_set_data(path, data, version):
    return W().str(path).buf(data).int(version).bytes()


def body_path(path):
    return W().str(path).bytes()


def body_set_acl(path, acl, version):
    return W().str(path).acls(acl).int(version).bytes()


def body_path_int(path, v):
    return W().str(path).int(v).bytes()


def encode_multi(ops):
    """ops: list of (opcode, body_bytes). Encodes a MultiOperationRecord."""
    w = W()
    for op, body in ops:
        w.int(op).bool(False).int(-1)
        w.parts.append(body)
    w.int(-1).bool(True).int(-1)
    return w.bytes()


def decode_multi(body):
    """Returns a list of (type, err_or_0, parsed) for each result of a multi/multiRead reply."""
    r = R(body)
    out = []
    while True:
        typ = r.int()
        done = r.bool()
        err = r.int()
        if done:
            break
        if typ == ERROR:
            out.append((ERROR, r.int(), None))
        elif typ == CREATE:
            out.append((CREATE, 0, r.str()))
        elif typ == CREATE2:
            out.append((CREATE2, 0, (r.str(), r.stat())))
        elif typ in (DELETE, CHECK):
            out.append((typ, 0, None))
        elif typ == SET_DATA:
            out.append((SET_DATA, 0, r.stat()))
        elif typ == GET_CHILDREN:
            out.append((GET_CHILDREN, 0, r.strs()))
        elif typ == GET_DATA:
            out.append((GET_DATA, 0, (r.buf(), r.stat())))
        else:
            raise ValueError(f"unknown multi result type {typ} err {err}")
    return out


# ---- connection ----------------------------------------------------------------------------------
class Client:
    def __init__(self, host, port, timeout_ms=10000, session_id=0, passwd=b"\x00" * 16,
                 last_zxid=0, io_timeout=10.0, read_only=False, connect=True):
        self.host, self.port = host, port
        self.sock = None
        self.xid = 0
        self.events = []
        self.last_zxid = last_zxid
        self.io_timeout = io_timeout
        self.session_id = None
        self.passwd = None
        self.negotiated_timeout = None
        self.closed = False
        if connect:
            self.connect(timeout_ms, session_id, passwd, last_zxid, read_only)

    # -- framing --
    def open_socket(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=self.io_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_frame(self, payload):
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def _recv_exact(self, n):
        chunks = []
        while n > 0:
            try:
                c = self.sock.recv(n)
            except (ConnectionResetError, BrokenPipeError) as e:
                self.closed = True
                raise ConnectionClosed(str(e))
            if not c:
                self.closed = True
                raise ConnectionClosed("EOF")
            chunks.append(c)
            n -= len(c)
        return b"".join(chunks)

    def recv_frame(self):
        n = struct.unpack(">i", self._recv_exact(4))[0]
        if n < 0 or n > 64 * 1024 * 1024:
            raise ValueError(f"bad frame length {n}")
        return self._recv_exact(n)

    def connect(self, timeout_ms=10000, session_id=0, passwd=b"\x00" * 16, last_zxid=0,
                read_only=False):
        self.open_socket()
        self.send_frame(W().int(0).long(last_zxid).int(timeout_ms).long(session_id).buf(passwd)
                        .bool(read_only).bytes())
        r = R(self.recv_frame())
        self.protocol_version = r.int()
        self.negotiated_timeout = r.int()
        self.session_id = r.long()
        self.passwd = r.buf()
        self.read_only = r.bool() if r.remaining() else None
        if self.negotiated_timeout <= 0:
            raise ZkError(SESSIONEXPIRED, CREATE_SESSION)
        return self

    def close_socket(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.closed = True

    # -- generic request --
    def next_xid(self):
        self.xid += 1
        return self.xid

    def send(self, op, body=b"", xid=None):
        if xid is None:
            xid = self.next_xid()
        self.send_frame(W().int(xid).int(op).bytes() + body)
        return xid

    def read_reply(self):
        """Reads one frame; notifications go to self.events and return None."""
        r = R(self.recv_frame())
        xid, zxid, err = r.int(), r.long(), r.int()
        if xid == XID_NOTIFICATION:
            self.events.append(Event(r.int(), r.int(), r.str()))
            return None
        if zxid > 0:
            self.last_zxid = max(self.last_zxid, zxid)
        return Reply(xid, zxid, err, r.d[r.o:])

    def call(self, op, body=b"", xid=None):
        """Sends a request and returns its Reply (err not raised)."""
        xid = self.send(op, body, xid)
        while True:
            rep = self.read_reply()
            if rep is None:
                continue
            if rep.xid != xid:
                raise AssertionError(f"reply xid {rep.xid} != request xid {xid} (err {rep.err})")
            return rep

    def check(self, op, body=b""):
        rep = self.call(op, body)
        if rep.err != OK:
            raise ZkError(rep.err, op)
        return rep

    def drain_events(self):
        ev, self.events = self.events, []
        return ev

    def wait_event(self, timeout=5.0):
        """Blocks until at least one notification is queued; returns and clears the queue."""
        deadline = time.time() + timeout
        while not self.events:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no watch event")
            self.sock.settimeout(left)
            try:
                rep = self.read_reply()
            finally:
                self.sock.settimeout(self.io_timeout)
            if rep is not None:
                raise AssertionError(f"unexpected reply xid {rep.xid} while waiting for event")
        return self.drain_events()

    # -- operations; each returns (err, result) --
    def create(self, path, data=b"", acl=OPEN_ACL_UNSAFE, flags=PERSISTENT):
        rep = self.call(CREATE, body_create(path, data, acl, flags))
        return rep.err, (rep.r().str() if rep.err == OK else None)

    def create2(self, path, data=b"", acl=OPEN_ACL_UNSAFE, flags=PERSISTENT):
        rep = self.call(CREATE2, body_create(path, data, acl, flags))
        if rep.err != OK:
            return rep.err, None
        r = rep.r()
        return OK, (r.str(), r.stat())

    def create_container(self, path, data=b"", acl=OPEN_ACL_UNSAFE):
        rep = self.call(CREATE_CONTAINER, body_create(path, data, acl, CONTAINER))
        if rep.err != OK:
            return rep.err, None
        r = rep.r()
        return OK, (r.str(), r.stat())

    def create_ttl(self, path, data=b"", ttl=1000, acl=OPEN_ACL_UNSAFE, flags=PERSISTENT_WITH_TTL):
        rep = self.call(CREATE_TTL, body_create(path, data, acl, flags, ttl))
        if rep.err != OK:
            return rep.err, None
        r = rep.r()
        return OK, (r.str(), r.stat())

    def delete(self, path, version=-1):
        return self.call(DELETE, body_path_version(path, version)).err, None

    def exists(self, path, watch=False):
        rep = self.call(EXISTS, body_path_watch(path, watch))
        return rep.err, (rep.r().stat() if rep.err == OK else None)

    def get_data(self, path, watch=False):
        rep = self.call(GET_DATA, body_path_watch(path, watch))
        if rep.err != OK:
            return rep.err, None
        r = rep.r()
        return OK, (r.buf(), r.stat())

    def set_data(self, path, data, version=-1):
        rep = self.call(SET_DATA, body_set_data(path, data, version))
        return rep.err, (rep.r().stat() if rep.err == OK else None)

    def get_acl(self, path):
        rep = self.call(GET_ACL, body_path(path))
        if rep.err != OK:
            return rep.err, None
        r = rep.r()
        return OK, (r.acls(), r.stat())

    def set_acl(self, path, acl, version=-1):
        rep = self.call(SET_ACL, body_set_acl(path, acl, version))
        return rep.err, (rep.r().stat() if rep.err == OK else None)

    def get_children(self, path, watch=False):
        rep = self.call(GET_CHILDREN, body_path_watch(path, watch))
        return rep.err, (rep.r().strs() if rep.err == OK else None)

    def get_children2(self, path, watch=False):
        rep = self.call(GET_CHILDREN2, body_path_watch(path, watch))
        if rep.err != OK:
            return rep.err, None
        r = rep.r()
        return OK, (r.strs(), r.stat())

    def get_all_children_number(self, path):
        rep = self.call(GET_ALL_CHILDREN_NUMBER, body_path(path))
        return rep.err, (rep.r().int() if rep.err == OK else None)

    def get_ephemerals(self, prefix="/"):
        rep = self.call(GET_EPHEMERALS, body_path(prefix))
        return rep.err, (rep.r().strs() if rep.err == OK else None)

    def sync(self, path):
        rep = self.call(SYNC, body_path(path))
        return rep.err, (rep.r().str() if rep.err == OK else None)

    def check_version(self, path, version):
        return self.call(CHECK, body_path_version(path, version)).err, None

    def multi(self, ops, op=MULTI):
        rep = self.call(op, encode_multi(ops))
        results = decode_multi(rep.body) if rep.body else []
        return rep.err, results

    def multi_read(self, ops):
        return self.multi(ops, MULTI_READ)

    def add_auth(self, scheme, auth):
        """Sends an auth packet (xid -4). Returns the reply error code (0 or AUTHFAILED)."""
        rep = self.call(AUTH, W().int(0).str(scheme).buf(auth).bytes(), xid=XID_AUTH)
        return rep.err, None

    def set_watches(self, rel_zxid, data=(), exist=(), child=()):
        body = W().long(rel_zxid).strs(list(data)).strs(list(exist)).strs(list(child)).bytes()
        return self.call(SET_WATCHES, body, xid=XID_SET_WATCHES).err, None

    def set_watches2(self, rel_zxid, data=(), exist=(), child=(), persistent=(), recursive=()):
        body = (W().long(rel_zxid).strs(list(data)).strs(list(exist)).strs(list(child))
                .strs(list(persistent)).strs(list(recursive)).bytes())
        return self.call(SET_WATCHES2, body, xid=XID_SET_WATCHES).err, None

    def add_watch(self, path, mode):
        return self.call(ADD_WATCH, body_path_int(path, mode)).err, None

    def remove_watches(self, path, wtype):
        return self.call(REMOVE_WATCHES, body_path_int(path, wtype)).err, None

    def check_watches(self, path, wtype):
        return self.call(CHECK_WATCHES, body_path_int(path, wtype)).err, None

    def who_am_i(self):
        rep = self.call(WHO_AM_I)
        if rep.err != OK:
            return rep.err, None
        r = rep.r()
        n = r.int()
        return OK, [(r.str(), r.str()) for _ in range(max(n, 0))]

    def ping(self):
        rep = self.call(PING, xid=XID_PING)
        return rep.err, None

    def close(self):
        """closeSession; returns the reply error code and closes the socket."""
        if self.sock is None:
            return None
        try:
            rep = self.call(CLOSE_SESSION)
            err = rep.err
        except (ConnectionClosed, OSError):
            err = None
        self.close_socket()
        return err


def four_letter(host, port, cmd, timeout=5.0):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd.encode())
        out = []
        while True:
            try:
                c = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not c:
                break
            out.append(c)
    return b"".join(out).decode(errors="replace")
