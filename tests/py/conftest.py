"""Fixtures: a fresh zkd (or Apache ZooKeeper 3.8, the oracle) per test module, on free ports
(zkd binds port 0 and reports the port; ZooKeeper gets a held port, see PortHold).

ZKD_BIN: the zkd binary (default target/release/zkd). ZKD_TARGET=oracle runs the zkd-facing tests
against Apache ZooKeeper instead — they must pass there too, which proves they encode ZooKeeper's
behaviour rather than zkd's.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from ports import PortHold, listened_on_by_another, read_port_file  # noqa: F401 (re-exported)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZKD_BIN = os.environ.get("ZKD_BIN", os.path.join(ROOT, "target", "release", "zkd"))
ZK_CLASSPATH = "/usr/share/java/*:/etc/zookeeper/conf"


def require_all():
    """True in CI (CI set) and under tests/run-all.sh (ZKD_REQUIRE_ALL=1): a test whose
    prerequisite is missing fails there instead of being skipped."""
    return os.environ.get("CI", "") not in ("", "0", "false") or os.environ.get("ZKD_REQUIRE_ALL") == "1"


def require(ok, what):
    """A prerequisite of the calling test: without it the test is reported as skipped (never as
    passed), and fails where every test must run (see require_all)."""
    if not ok:
        if require_all():
            pytest.fail("prerequisite missing: %s (CI / ZKD_REQUIRE_ALL=1: every test must run)" % what)
        pytest.skip(what)


def wait_until(cond, timeout, what, step=0.05):
    """Polls cond() until it is true; fails naming `what` if it is not within `timeout` s."""
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            pytest.fail("timed out after %.1fs waiting until %s" % (timeout, what))
        time.sleep(step)


def four_letter(port, word, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(word.encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out.decode()
            out += b


class Server:
    """zkd on a port the kernel picks (clientPort=0, read back with --port-file), or Apache
    ZooKeeper on a held port (PortHold)."""

    def __init__(self, kind, extra=None):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="zkd-test-%s-" % kind)
        self.hold = None
        self.log = None
        self.proc = None
        for attempt in range(3):
            if self._start(extra):
                return
            # ZooKeeper could not bind its held port: another process bound that port number.
            self.hold.close()
        raise RuntimeError("%s: its port was taken by another process 3 times" % kind)

    def _start(self, extra):
        if self.kind == "zkd":
            self.port = None
            client_port = 0
        else:
            self.hold = PortHold()
            self.port = client_port = self.hold.port
        cfg = {
            "tickTime": "500",
            "dataDir": os.path.join(self.dir, "data"),
            "clientPort": str(client_port),
            "clientPortAddress": "127.0.0.1",
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
            "maxClientCnxns": "0",
            "extendedTypesEnabled": "true",
            "znode.container.checkIntervalMs": "500",
        }
        cfg.update(extra or {})
        self.cfg_path = os.path.join(self.dir, "zoo.cfg")
        with open(self.cfg_path, "w") as f:
            for k, v in cfg.items():
                f.write("%s=%s\n" % (k, v))
        if self.log:
            self.log.close()
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        port_file = os.path.join(self.dir, "zkd.port")
        if self.kind == "zkd":
            cmd = [ZKD_BIN, "serve", "--config", self.cfg_path, "--port-file", port_file]
        else:
            cmd = ["java", "-Xmx256m", "-Dzookeeper.admin.enableServer=false",
                   "-Dzookeeper.extendedTypesEnabled=true",
                   "-Dznode.container.checkIntervalMs=500",
                   "-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.ZooKeeperServerMain", self.cfg_path]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                # The Debian oracle logs nothing (slf4j-nop): a port someone else listens on is
                # how a lost bind shows.
                if self.kind == "oracle" and listened_on_by_another(self.port):
                    return False
                raise RuntimeError("%s exited early (%s); log in %s" % (self.kind, self.proc.returncode, self.dir))
            if self.port is None:
                self.port = read_port_file(port_file)
            if self.port is not None:
                try:
                    if four_letter(self.port, "ruok", 1.0) == "imok":
                        return True
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("%s did not start on port %s" % (self.kind, self.port))

    @property
    def hosts(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.hold:
            self.hold.close()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A fixture value with a failure_report() method (tests/py/ensemble.py's ensembles) adds
    its report (where its logs are, their last lines) to a failed test's output."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for v in getattr(item, "funcargs", {}).values():
            report = getattr(v, "failure_report", None)
            if callable(report):
                rep.sections.append(("failure report", report()))


def target_kind():
    return os.environ.get("ZKD_TARGET", "zkd")


@pytest.fixture(scope="module")
def server():
    s = Server(target_kind())
    yield s
    s.stop()


@pytest.fixture(scope="module")
def oracle():
    s = Server("oracle")
    yield s
    s.stop()


@pytest.fixture
def zk(server):
    from kazoo.client import KazooClient
    c = KazooClient(hosts=server.hosts, timeout=10)
    c.start(timeout=15)
    yield c
    try:
        c.stop()
        c.close()
    except Exception:
        pass
