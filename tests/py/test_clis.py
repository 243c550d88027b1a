"""Drive the real Apache ZooKeeper 3.8 command-line clients against the server under test and
assert their exact output.

* zkCli.sh (the Java ZooKeeperMain): one JVM per test, commands fed on stdin (JLine is absent in
  the Debian package, so ZooKeeperMain reads stdin line by line and runs each command in turn).
  stdout and stderr go to one pipe; every println is a single write, so the merged order is the
  order the main thread printed in. Watch notifications are printed by the event thread
  ("\\nWATCHER::" / "\\nWatchedEvent ...") at arbitrary points, so they are cut out and checked
  as their own ordered list; SLF4J start-up noise is dropped.
* cli_mt (the C client shell): asynchronous, so it is driven one command at a time; after each
  command a "sync /" is sent and its completion ("[/]: rc = 0" / "\\tname = /") marks the end of
  that command's output (completions arrive in request order).

Values that legitimately vary between runs are matched by placeholders in the expected lines:
  {Z+n}  a zxid, 0x-prefixed hex: the first one seen fixes the base, every other must equal
         base+n ({z+n}: the same without "0x", as cli_mt prints it);
  {T}    a java.util.Date string (TZ=UTC) within a few minutes of now;
  {SID}  a session id in hex (non-zero, the same everywhere in one run);
  {N}    a decimal number (cli_mt's "time = N msec", a count).
Every other character must match exactly.

Run: ZKD_TARGET=oracle python3 -m pytest -q tests/py/test_clis.py   (Apache ZooKeeper)
     ZKD_BIN=target/debug/zkd python3 -m pytest -q tests/py/test_clis.py
"""
import datetime
import os
import re
import select
import subprocess
import time

import pytest

from conftest import require

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
CLI_MT = "/usr/lib/zookeeper/bin/cli_mt"


@pytest.fixture(autouse=True)
def _clis_installed():
    require(os.path.exists(ZKCLI) and os.path.exists(CLI_MT),
            "Apache ZooKeeper CLIs not installed (Debian packages zookeeper, zookeeper-bin)")

# digest of "u1:p1" = base64(sha1("u1:p1"))
U1_DIGEST = "fpT/y03U+EjItKZOSLGvjnJlyng="

ENV = dict(os.environ, TZ="UTC")


# ----------------------------------------------------------------------------- matching

TOKEN = re.compile(r"\{([Zz]\+\d+|T|SID|N)\}")
JAVA_DATE = r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d UTC \d{4}"
C_DATE = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}"


def match_lines(actual, expected, java_dates=True):
    """Exact line-by-line comparison with the placeholders described in the module docstring."""
    assert len(actual) == len(expected), _diff(actual, expected)
    base = None
    sid = None
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    for i, (a, e) in enumerate(zip(actual, expected)):
        parts = TOKEN.split(e)
        rx = ""
        kinds = []
        for j, p in enumerate(parts):
            if j % 2 == 0:
                rx += re.escape(p)
            else:
                kinds.append(p)
                if p.startswith("Z+"):
                    rx += "(0x[0-9a-f]+)"
                elif p.startswith("z+"):
                    rx += "([0-9a-f]+)"
                elif p == "T":
                    rx += "(%s)" % (JAVA_DATE if java_dates else C_DATE)
                elif p == "SID":
                    rx += "(0x[0-9a-f]+|[0-9a-f]+)"
                else:
                    rx += r"(-?\d+)"
        m = re.fullmatch(rx, a)
        assert m, "line %d: %r does not match %r\n%s" % (i, a, e, _diff(actual, expected))
        for k, v in zip(kinds, m.groups()):
            if k[:2] in ("Z+", "z+"):
                off = int(k[2:])
                z = int(v, 16)
                if base is None:
                    base = z - off
                assert z == base + off, "line %d: zxid %s, expected base+%d = %#x\n%s" % (
                    i, v, off, base + off, _diff(actual, expected))
            elif k == "T":
                fmt = "%a %b %d %H:%M:%S UTC %Y" if java_dates else "%a %b %d %H:%M:%S %Y"
                t = datetime.datetime.strptime(v if java_dates else re.sub(" +", " ", v),
                                               fmt if java_dates else "%a %b %d %H:%M:%S %Y")
                assert abs((t - now).total_seconds()) < 600, "line %d: time %r not near now" % (i, v)
            elif k == "SID":
                s = int(v[2:] if v.startswith("0x") else v, 16)
                assert s != 0, "line %d: zero session id" % i
                if sid is None:
                    sid = s
                assert s == sid, "line %d: session id %s differs from %#x" % (i, v, sid)


def _diff(actual, expected):
    out = ["--- expected / +++ actual"]
    n = max(len(actual), len(expected))
    for i in range(n):
        e = expected[i] if i < len(expected) else "<none>"
        a = actual[i] if i < len(actual) else "<none>"
        mark = " " if (TOKEN.search(e) or a == e) else "!"
        out.append("%s%3d  %-50s | %s" % (mark, i, e, a))
    return "\n".join(out)


# ----------------------------------------------------------------------------- zkCli.sh

WATCHER_BANNER = re.compile(r"\nWATCHER::\n")
WATCHED_EVENT = re.compile(r"\nWatchedEvent ([^\n]*)\n")


def zkcli(server, commands, timeout=60):
    """Runs one zkCli.sh JVM with `commands` (then quit) on stdin.
    Returns (output lines after the banner, watched events in order)."""
    inp = "".join(c + "\n" for c in commands) + "quit\n"
    p = subprocess.run([ZKCLI, "-server", server.hosts], input=inp, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout, env=ENV)
    out = p.stdout
    out = WATCHER_BANNER.sub("", out)
    events = WATCHED_EVENT.findall(out)
    out = WATCHED_EVENT.sub("", out)
    assert out.endswith("\n"), out
    lines = [ln for ln in out[:-1].split("\n") if not ln.startswith("SLF4J: ")]
    # the banner is fixed; everything after it is command output
    banner = ["Connecting to %s" % server.hosts, "Welcome to ZooKeeper!", "JLine support is disabled"]
    assert lines[:3] == banner, out
    body = lines[3:]
    assert p.returncode == 0, out
    return body, events


def stat_lines(czxid, mzxid, pzxid, cversion=0, version=0, aversion=0, owner="0x0",
               length=0, children=0):
    z = lambda n: "{Z+%d}" % n if isinstance(n, int) else n  # noqa: E731
    return [
        "cZxid = %s" % z(czxid),
        "ctime = {T}",
        "mZxid = %s" % z(mzxid),
        "mtime = {T}",
        "pZxid = %s" % z(pzxid),
        "cversion = %d" % cversion,
        "dataVersion = %d" % version,
        "aclVersion = %d" % aversion,
        "ephemeralOwner = %s" % owner,
        "dataLength = %d" % length,
        "numChildren = %d" % children,
    ]


def test_zkcli_crud_stat_and_errors(server):
    cmds = [
        "create /zc",                      # Z+0
        "create /zc/plain data1",          # Z+1
        "create -e /zc/eph edata",         # Z+2
        "create -s /zc/seq- s",            # Z+3  -> seq-0000000002 (cversion of /zc is 2)
        "create -s /zc/seq- s",            # Z+4  -> seq-0000000003
        "create -c /zc/cont",              # Z+5
        "create /zc/cont/child",           # Z+6
        "create /zc/plain dup",            # Z+7  (error txn: NodeExists)
        "create /zc/nope/x y",             # Z+8  (error txn: NoNode)
        "get /zc/plain",
        "get -s /zc/plain",
        "set /zc/plain data2",             # Z+9
        "set -s /zc/plain data33",         # Z+10
        "stat /zc/plain",
        "stat /zc/eph",
        "ls /zc",
        "ls -s /zc",
        "ls -R /zc",
        "stat /zc/nope",
        "get /zc/nope",
        "ls /zc/nope",
        "set /zc/nope x",                  # Z+11 (error txn)
        "delete /zc/nope",                 # Z+12 (error txn)
        "delete /zc",                      # Z+13 (error txn: NotEmpty)
        "set -v 7 /zc/plain v",            # Z+14 (error txn: BadVersion)
        "delete -v 7 /zc/plain",           # Z+15 (error txn: BadVersion)
        "getEphemerals",
        "getEphemerals /zc",
        "getEphemerals /nope",
        "getAllChildrenNumber /zc",
        "getAllChildrenNumber /zc/nope",
        "sync /zc",
        "get /zc/cont",
        "delete -v 2 /zc/plain",           # Z+16
        "stat /zc",
        "deleteall /zc/cont",              # Z+17 child, Z+18 cont
        "ls /zc",
        "deleteall /zc",                   # Z+19..Z+22 (eph, seq x2 - order by server), then /zc
        "ls /zc",
        "ls /",
    ]
    out, events = zkcli(server, cmds)
    owner = "{SID}"
    expected = (
        ["Created /zc", "Created /zc/plain", "Created /zc/eph", "Created /zc/seq-0000000002",
         "Created /zc/seq-0000000003", "Created /zc/cont", "Created /zc/cont/child",
         "Node already exists: /zc/plain", "Node does not exist: /zc/nope/x",
         "data1",
         "data1"] + stat_lines(1, 1, 1, length=5)
        + stat_lines(1, 10, 1, version=2, length=6)            # set -s
        + stat_lines(1, 10, 1, version=2, length=6)            # stat /zc/plain
        + stat_lines(2, 2, 2, owner=owner, length=5)           # stat /zc/eph
        + ["[cont, eph, plain, seq-0000000002, seq-0000000003]",
           "[cont, eph, plain, seq-0000000002, seq-0000000003]"]
        + stat_lines(0, 0, 5, cversion=5, children=5)
        + ["/zc", "/zc/cont", "/zc/eph", "/zc/plain", "/zc/seq-0000000002",
           "/zc/seq-0000000003", "/zc/cont/child",
           "Node does not exist: /zc/nope",
           "Node does not exist: /zc/nope",
           "Node does not exist: /zc/nope",
           "Node does not exist: /zc/nope",
           "Node does not exist: /zc/nope",
           "Node not empty: /zc",
           "version No is not valid : /zc/plain",
           "version No is not valid : /zc/plain",
           "[/zc/eph]",
           "[/zc/eph]",
           "[]",
           "6",
           "Node does not exist: /zc/nope",
           "Sync is OK",
           "null"]
        + stat_lines(0, 0, 16, cversion=6, children=4)
        + ["[eph, seq-0000000002, seq-0000000003]",
           "Node does not exist: /zc",
           "[zookeeper]"]
    )
    match_lines(out, expected)
    assert events == ["state:SyncConnected type:None path:null",
                      "state:Closed type:None path:null"]


def test_zkcli_watches(server):
    cmds = [
        "create /zw d",
        "get -w /zw",
        "ls -w /zw",
        "stat -w /zw/k",
        "set /zw d2",
        "create /zw/k",
        "delete /zw/k",
        "sync /zw",
        "delete /zw",
    ]
    out, events = zkcli(server, cmds)
    match_lines(out, ["Created /zw", "d", "[]", "Node does not exist: /zw/k", "Created /zw/k",
                      "Sync is OK"])
    assert events == [
        "state:SyncConnected type:None path:null",
        "state:SyncConnected type:NodeDataChanged path:/zw",
        "state:SyncConnected type:NodeCreated path:/zw/k",
        "state:SyncConnected type:NodeChildrenChanged path:/zw",
        "state:Closed type:None path:null",
    ]


def test_zkcli_acl_and_auth(server):
    cmds = [
        "whoami",
        "create /za",
        "getAcl /za",
        "create /za/sec secret",
        "setAcl /za/sec digest:u1:%s:cdrwa" % U1_DIGEST,
        "getAcl /za/sec",
        "get /za/sec",
        "set /za/sec y",
        "ls /za/sec",
        "create /za/sec/kid",
        "stat /za/sec",
        "setAcl /za/sec world:anyone:cdrwa",
        "deleteall /za",
        "create /za/ro x world:anyone:r",
        "get /za/ro",
        "set /za/ro y",
        "getAcl /za/ro",
        "create /za/ro/kid",
        "create /za/ip x ip:127.0.0.1:cdrwa",
        "getAcl /za/ip",
        "get /za/ip",
        "addauth digest u1:p1",
        "get -s /za/sec",
        "getAcl -s /za/sec",
        "set /za/sec y",
        "create /za/sec/kid",
        "setAcl -s /za/sec auth::cdrwa",
        "create /za/auth x auth::crwa",
        "getAcl /za/auth",
        "delete /za/auth",
        "setAcl /za/ro world:anyone:cdrwa",
        "deleteall /za",
        "ls /",
    ]
    out, _ = zkcli(server, cmds)
    sec = dict(czxid=1, mzxid=1, pzxid=1, aversion=1, length=6)   # "secret", after setAcl
    expected = [
        "Auth scheme: User",
        "ip: 127.0.0.1",
        "Created /za",                               # Z+0
        "'world,'anyone",
        ": cdrwa",
        "Created /za/sec",                           # Z+1; setAcl Z+2
        "Insufficient permission : /za/sec",         # getAcl (needs READ or ADMIN)
        "Insufficient permission : /za/sec",         # get
        "Insufficient permission : /za/sec",         # set: Z+3 (error txn)
        "Insufficient permission : /za/sec",         # ls
        "Insufficient permission : /za/sec/kid",     # create: Z+4 (error txn)
    ] + stat_lines(**sec) + [                        # stat needs no permission
        "Insufficient permission : /za/sec",         # setAcl: Z+5 (error txn)
        "Insufficient permission : /za/sec",         # deleteall cannot list /za/sec
        "Created /za/ro",                            # Z+6
        "x",
        "Insufficient permission : /za/ro",          # set: Z+7
        "'world,'anyone",
        ": r",
        "Insufficient permission : /za/ro/kid",      # Z+8
        "Created /za/ip",                            # Z+9
        "'ip,'127.0.0.1",
        ": cdrwa",
        "x",
        "secret",                                    # after addauth digest u1:p1
    ] + stat_lines(**sec) + [
        "'digest,'u1:%s" % U1_DIGEST,
        ": cdrwa",
    ] + stat_lines(**sec) + [                        # set: Z+10
        "Created /za/sec/kid",                       # Z+11; setAcl -s: Z+12
    ] + stat_lines(1, 10, 11, cversion=1, version=1, aversion=2, length=1, children=1) + [
        "Created /za/auth",
        "'digest,'u1:%s" % U1_DIGEST,
        ": crwa",
        "Insufficient permission : /za/ro",          # setAcl needs ADMIN
        "[zookeeper]",                               # deleteall /za succeeded
    ]
    match_lines(out, expected)


def test_zkcli_whoami_after_addauth(server):
    # Apache ZooKeeper keeps a connection's auth ids in a ConcurrentHashMap-backed set and lists
    # them in its iteration order: digest:u1 (bucket 10) before ip:127.0.0.1 (bucket 12).
    out, _ = zkcli(server, ["addauth digest u1:p1", "whoami", "getAllChildrenNumber /"])
    match_lines(out, ["Auth scheme: User", "digest: u1", "ip: 127.0.0.1", "{N}"])


# ----------------------------------------------------------------------------- cli_mt (C client)

SYNC_MARK = "[/]: rc = 0\n\tname = /\n"


class CliMt:
    """cli_mt driven one command at a time (see the module docstring)."""

    def __init__(self, server):
        self.p = subprocess.Popen([CLI_MT, server.hosts], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
        self.buf = b""
        self.read_until(re.compile(rb"Got a new session id: 0x[0-9a-f]+\n"))
        self.buf = b""

    def read_until(self, pattern, timeout=15):
        deadline = time.time() + timeout
        while True:
            m = pattern.search(self.buf) if hasattr(pattern, "search") else None
            if m is None and not hasattr(pattern, "search") and pattern in self.buf:
                i = self.buf.index(pattern)
                out, self.buf = self.buf[:i], self.buf[i + len(pattern):]
                return out
            if m is not None:
                out, self.buf = self.buf[:m.start()], self.buf[m.end():]
                return out
            left = deadline - time.time()
            assert left > 0, "cli_mt: timed out waiting for %r; got %r" % (pattern, self.buf)
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                assert chunk, "cli_mt exited; output so far %r" % self.buf
                self.buf += chunk

    def cmd(self, line):
        """Sends `line` then "sync /"; returns the lines printed in between."""
        self.p.stdin.write((line + "\nsync /\n").encode())
        self.p.stdin.flush()
        out = self.read_until(SYNC_MARK.encode()).decode()
        assert self.buf == b"", self.buf
        return out.split("\n")[:-1] if out else []

    def quit(self):
        self.p.stdin.write(b"quit\n")
        self.p.stdin.flush()
        out = self.p.communicate(timeout=15)[0].decode()
        assert self.p.returncode == 0
        return (self.buf.decode() + out).split("\n")[:-1]


def stat_c(czxid, mzxid, version=0):
    return ["\tctime = {T}", "\tczxid={z+%d}" % czxid, "\tmtime={T}", "\tmzxid={z+%d}" % mzxid,
            "\tversion=%x\taversion=0" % version, "\tephemeralOwner = 0"]


def get_c(path, value, czxid, mzxid, version=0):
    return ["time = {N} msec", "%s: rc = 0" % path, " value_len = %d" % len(value), value,
            "Stat:"] + stat_c(czxid, mzxid, version)


def test_cli_mt_commands(server):
    # cli_mt's create takes everything after "create " as the path and always stores "new";
    # exists is synchronous and prints only errors; get/ls/exists leave watches.
    steps = [
        ("create /cm", ["Creating [/cm] node (mode: 0)", "[/cm]: rc = 0", "\tname = /cm"]),  # z+0
        ("create /cm", ["Creating [/cm] node (mode: 0)", "[/cm]: rc = -110"]),               # z+1
        ("create /cm data", ["Creating [/cm data] node (mode: 0)", "[/cm data]: rc = 0",     # z+2
                             "\tname = /cm data"]),
        ("create /nope/x", ["Creating [/nope/x] node (mode: 0)", "[/nope/x]: rc = -101"]),   # z+3
        ("get /cm", get_c("/cm", "new", 0, 0)),
        ("exists /cm", []),
        ("set /cm v2", ["Watcher CHANGED_EVENT state = CONNECTED_STATE for path /cm",        # z+4
                        "/cm: rc = 0 Stat:"] + stat_c(0, 4, 1)),
        ("get /cm", get_c("/cm", "v2", 0, 4, 1)),
        ("get /cm data", get_c("/cm data", "new", 2, 2)),
        ("ls2 /cm", ["time = {N} msec", "/cm: rc = 0", "time = {N} msec"] + stat_c(0, 4, 1)),
        ("create +e /cm/e", ["Creating [/cm/e] node (mode: 1)",                              # z+5
                             "Watcher CHILD_EVENT state = CONNECTED_STATE for path /cm",
                             "[/cm/e]: rc = 0", "\tname = /cm/e"]),
        ("ls /cm", ["time = {N} msec", "/cm: rc = 0", "\te", "time = {N} msec"]),
        ("create +s /cm/s-", ["Creating [/cm/s-] node (mode: 2)",                            # z+6
                              "Watcher CHILD_EVENT state = CONNECTED_STATE for path /cm",
                              "[/cm/s-]: rc = 0", "\tname = /cm/s-0000000001"]),
        ("create2 /cm/c2", ["Creating [/cm/c2] node (mode: 0)", "[/cm/c2]: rc = 0",          # z+7
                            "\tname = /cm/c2"] + stat_c(7, 7)),
        ("delete /cm", ["/cm: rc = -111"]),
        ("exists /nope", ["Error -101 for /nope"]),
        ("get /nope", ["time = {N} msec", "/nope: rc = -101", "", "Stat:", "null"]),
        ("set /nope x", ["/nope: rc = -101 Stat:", "null"]),
        ("ls /nope", ["time = {N} msec", "/nope: rc = -101", "time = {N} msec"]),
        ("delete /cm/e", ["/cm/e: rc = 0"]),
        ("delete /cm/s-0000000001", ["/cm/s-0000000001: rc = 0"]),
        ("delete /cm/c2", ["/cm/c2: rc = 0"]),
        ("delete /cm", ["Watcher DELETED_EVENT state = CONNECTED_STATE for path /cm", "/cm: rc = 0"]),
        ("delete /cm data", ["Watcher DELETED_EVENT state = CONNECTED_STATE for path /cm data",
                             "/cm data: rc = 0"]),
        ("delete /cm", ["/cm: rc = -101"]),
        ("sync /zookeeper", ["[/zookeeper]: rc = 0", "\tname = /zookeeper"]),
        ("get nope", ["Path must start with /, found: nope"]),
    ]
    c = CliMt(server)
    actual, expected = [], []
    for line, exp in steps:
        out = c.cmd(line)
        actual += [">> " + line] + out
        expected += [">> " + line] + exp
    actual += c.quit()
    expected += ["Quitting..."]
    match_lines(actual, expected, java_dates=False)


def test_cli_mt_ls_children_order(server):
    # ZooKeeper lists children in its DataNode's HashSet iteration order, not sorted; cli_mt
    # prints them as received.
    c = CliMt(server)
    names = ["x", "a", "b", "zz", "q1", "m", "k"]
    for n in ["/co"] + ["/co/" + n for n in names]:
        assert c.cmd("create " + n)[1] == "[%s]: rc = 0" % n
    out = c.cmd("ls /co")
    top = c.cmd("ls /")
    for n in names:
        c.cmd("delete /co/" + n)
    c.cmd("delete /co")
    root = c.cmd("ls /zookeeper")
    c.quit()
    match_lines(out, ["time = {N} msec", "/co: rc = 0", "\tzz", "\tq1", "\ta", "\tb", "\tx", "\tk",
                      "\tm", "time = {N} msec"], java_dates=False)
    match_lines(top, ["time = {N} msec", "/: rc = 0", "\tzookeeper", "\tco", "time = {N} msec"],
                java_dates=False)
    match_lines(root, ["time = {N} msec", "/zookeeper: rc = 0", "\tconfig", "\tquota",
                       "time = {N} msec"], java_dates=False)
