"""Fixtures: servers (zkd or the Apache ZooKeeper 3.8 oracle), raw and kazoo clients.

Env:
  ZKD_TARGET=zkd|oracle   what the `server` fixture (and `make_server`) start; default zkd.
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
assert TARGET in ("zkd", "oracle"), f"ZKD_TARGET must be zkd or oracle, not {TARGET!r}"

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
    s = Server("zkd", name="shared")
    yield s
    s.cleanup()


@pytest.fixture
def make_server():
    """Factory for a fresh server with extra zoo.cfg keys; killed at teardown."""
    started = []

    def make(kind=None, **cfg):
        s = Server(kind or TARGET, {k.replace("__", "."): v for k, v in cfg.items()}, name="fresh")
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
