"""Fixtures: servers (zkd or the Apache ZooKeeper 3.8 oracle), raw and kazoo clients.

Env:
  ZKD_TARGET=zkd|oracle|ensemble
                          what the `server` fixture (and `make_server`) start; default zkd.
                          ensemble: the shared server is a 3-node zkd ensemble, and each test
                          talks to the next node in turn (leader or follower), so the whole
                          suite runs with clients on different nodes; `make_server` stays zkd.
  ZKD_BIN=path            the zkd binary; default target/release/zkd.
  ZKD_DIFF_REF=oracle|zkd the differential test's second server (default oracle; set ZKD_TARGET=oracle
                          too to run ZK-vs-ZK).
"""

import itertools
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rawzk  # noqa: E402
from servers import Server  # noqa: E402

TARGET = os.environ.get("ZKD_TARGET", "zkd")
assert TARGET in ("zkd", "oracle", "ensemble"), f"ZKD_TARGET must be zkd, oracle or ensemble, not {TARGET!r}"
# What a fresh server (`make_server`) is: one process, even when the shared one is an ensemble.
FRESH_KIND = "zkd" if TARGET == "ensemble" else TARGET

_counter = itertools.count()


def pytest_report_header(config):
    return f"zkd tests: ZKD_TARGET={TARGET}"


@pytest.fixture(scope="session")
def oracle():
    s = Server("oracle", name="oracle")
    yield s
    s.cleanup()


@pytest.fixture(scope="session")
def server(request):
    """The shared server under test for the session (per-test isolation via `root`)."""
    if TARGET == "oracle":
        yield request.getfixturevalue("oracle")
        return
    if TARGET == "ensemble":
        s = EnsembleTarget()
        yield s
        s.cleanup()
        return
    s = Server("zkd", name="shared")
    yield s
    s.cleanup()


class EnsembleTarget:
    """The shared server as a 3-node zkd ensemble: `host`/`port` name one node, and `next_node()`
    moves to the next one (every test starts on a new node, see `_rotate_node`). A test's own
    clients all reach the same node, so the session guarantees ZooKeeper gives one client (and
    the tests rely on: read your writes, FIFO order) are what is checked, on leader and
    followers alike."""

    kind = "zkd"

    def __init__(self):
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from ensemble import Ensemble  # tests/py/ensemble.py
        from servers import DEFAULT_CFG

        self.host = "127.0.0.1"
        self.ens = Ensemble("zkd", voters=3, extra_cfg=dict(DEFAULT_CFG), name="opcodes")
        self.ens.start()
        self.sid = self.ens.sids[0]
        self.visited = set()

    def next_node(self):
        sids = self.ens.sids
        self.sid = sids[(sids.index(self.sid) + 1) % len(sids)]
        self.visited.add(self.ens.node(self.sid).mode())

    @property
    def port(self):
        return self.ens.node(self.sid).client_port

    @property
    def hostport(self):
        return f"{self.host}:{self.port}"

    def alive(self):
        return all(self.ens.node(s).alive() for s in self.ens.sids)

    def tail_log(self, n=4000):
        return self.ens.node(self.sid).tail_log(n)

    def cleanup(self):
        # Run on every node's client port in turn: the suite must have met a leader and a
        # follower, or it did not test what it claims to.
        self.ens.close()
        assert {"leader", "follower"} <= self.visited, f"the suite ran on {self.visited} only"


@pytest.fixture(autouse=True)
def _rotate_node(request):
    """Under ZKD_TARGET=ensemble, each test that uses the shared server starts on the next node."""
    if TARGET == "ensemble" and "server" in request.fixturenames:
        request.getfixturevalue("server").next_node()
    yield


@pytest.fixture
def make_server():
    """Factory for a fresh server with extra zoo.cfg keys; killed at teardown."""
    started = []

    def make(kind=None, **cfg):
        s = Server(kind or FRESH_KIND, {k.replace("__", "."): v for k, v in cfg.items()}, name="fresh")
        started.append(s)
        return s

    yield make
    for s in started:
        s.cleanup()


@pytest.fixture
def raw(server):
    """Factory: raw(srv=None, **kw) -> connected rawzk.Client; all closed at teardown."""
    clients = []

    def make(srv=None, **kw):
        srv = srv or server
        c = rawzk.Client(srv.host, srv.port, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        try:
            if not c.closed:
                c.close()
        except Exception:
            pass
        c.close_socket()


@pytest.fixture
def root(server, request):
    """A unique, freshly created persistent path for this test on the shared server."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    path = f"/t{next(_counter)}_{name}"
    c = rawzk.Client(server.host, server.port)
    try:
        err, _ = c.create(path)
        assert err == rawzk.OK, f"creating test root {path}: {err}"
    finally:
        c.close()
    return path


@pytest.fixture
def kazoo(server):
    """Factory: kazoo(srv=None, **kw) -> started KazooClient; stopped at teardown."""
    from kazoo.client import KazooClient

    clients = []

    def make(srv=None, **kw):
        srv = srv or server
        kw.setdefault("timeout", 10.0)
        c = KazooClient(hosts=srv.hostport, **kw)
        c.start(timeout=15)
        clients.append(c)
        return c

    yield make
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass


TEST_TIMEOUT_S = int(os.environ.get("ZKD_TEST_TIMEOUT", "120"))


@pytest.fixture(autouse=True)
def _bounded_test_time():
    """Every test is bounded: SIGALRM raises in the main thread after TEST_TIMEOUT_S."""
    import signal

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded {TEST_TIMEOUT_S}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
