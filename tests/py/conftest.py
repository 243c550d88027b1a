"""Fixtures: a fresh zkd (or Apache ZooKeeper 3.8, the oracle) per test module, on free ports.

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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZKD_BIN = os.environ.get("ZKD_BIN", os.path.join(ROOT, "target", "release", "zkd"))
ZK_CLASSPATH = "/usr/share/java/*:/etc/zookeeper/conf"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


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
    def __init__(self, kind, extra=None):
        self.kind = kind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="zkd-test-%s-" % kind)
        cfg = {
            "tickTime": "500",
            "dataDir": os.path.join(self.dir, "data"),
            "clientPort": str(self.port),
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
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        if kind == "zkd":
            cmd = [ZKD_BIN, "serve", "--config", self.cfg_path]
        else:
            cmd = ["java", "-Xmx256m", "-Dzookeeper.admin.enableServer=false",
                   "-Dzookeeper.extendedTypesEnabled=true",
                   "-Dznode.container.checkIntervalMs=500",
                   "-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.ZooKeeperServerMain", self.cfg_path]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited early; log in %s" % (kind, self.dir))
            try:
                if four_letter(self.port, "ruok", 1.0) == "imok":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("%s did not start on port %d" % (kind, self.port))

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
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


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
