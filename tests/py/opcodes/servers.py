"""Start/stop zkd or Apache ZooKeeper 3.8 (the oracle) on a free port in a temp dataDir.

Both get the same zoo.cfg. Some ZooKeeper knobs are Java system properties rather than zoo.cfg keys
(znode.container.checkIntervalMs, jute.maxbuffer, the super digest); for the oracle they are also
passed as -D flags so that both servers see the same settings.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ports import PortHold, read_port_file  # noqa: E402 (tests/py/ports.py)

def _repo_root():
    d = os.path.dirname(os.path.abspath(__file__))
    while not os.path.exists(os.path.join(d, "Cargo.toml")) and d != "/":
        d = os.path.dirname(d)
    return d


REPO = _repo_root()
ZKD_BIN = os.environ.get("ZKD_BIN", os.path.join(REPO, "target", "release", "zkd"))
ZK_CLASSPATH = os.environ.get("ZK_CLASSPATH", "/usr/share/java/*:/etc/zookeeper/conf")

# super:secret
SUPER_USER = "super"
SUPER_PASSWORD = "secret"
SUPER_DIGEST = "super:lK75jTNcA+U9vtVEw5vB51mj/w4="

# zoo.cfg keys that the JVM only reads as system properties: key -> system property name.
SYSPROP_KEYS = {
    "znode.container.checkIntervalMs": "znode.container.checkIntervalMs",
    "znode.container.maxPerMinute": "znode.container.maxPerMinute",
    "jute.maxbuffer": "jute.maxbuffer",
    "zookeeper.DigestAuthenticationProvider.superDigest":
        "zookeeper.DigestAuthenticationProvider.superDigest",
}

DEFAULT_CFG = {
    "tickTime": "200",
    "minSessionTimeout": "400",
    "maxSessionTimeout": "30000",
    "maxClientCnxns": "0",
    "4lw.commands.whitelist": "*",
    "extendedTypesEnabled": "true",
    "admin.enableServer": "false",
    "znode.container.checkIntervalMs": "200",
    "zookeeper.DigestAuthenticationProvider.superDigest": SUPER_DIGEST,
}

START_TIMEOUT_S = float(os.environ.get("ZKD_START_TIMEOUT", "30"))


def four_letter(port, cmd=b"ruok", timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(cmd)
            data = b""
            while True:
                c = s.recv(64)
                if not c:
                    break
                data += c
            return data
    except OSError:
        return b""


def serving(port):
    """True once the server answers ruok and srvr reports a mode (ZooKeeper answers ruok before
    its database is loaded, and closes client connections until then)."""
    return four_letter(port, b"ruok") == b"imok" and b"Mode: " in four_letter(port, b"srvr")


class Server:
    """One server process. kind is 'zkd' or 'oracle'."""

    def __init__(self, kind, extra_cfg=None, name="zk"):
        assert kind in ("zkd", "oracle"), kind
        self.kind = kind
        self.host = "127.0.0.1"
        # zkd: clientPort=0, the port read back from --port-file at each start; the oracle: a
        # held port (PortHold) for the server's lifetime.
        self.hold = PortHold() if kind == "oracle" else None
        self.port = self.hold.port if self.hold else None
        self.tmp = tempfile.mkdtemp(prefix=f"{name}-{kind}-")
        self.data_dir = os.path.join(self.tmp, "data")
        os.makedirs(self.data_dir)
        self.cfg = dict(DEFAULT_CFG)
        self.cfg.update(extra_cfg or {})
        self.cfg["dataDir"] = self.data_dir
        self.cfg["clientPort"] = str(self.port or 0)
        self.cfg_path = os.path.join(self.tmp, "zoo.cfg")
        with open(self.cfg_path, "w") as f:
            for k, v in self.cfg.items():
                f.write(f"{k}={v}\n")
        self.log_path = os.path.join(self.tmp, "server.log")
        self.port_file = os.path.join(self.tmp, "zkd.port")
        self.proc = None
        self.start()

    @property
    def hostport(self):
        return f"{self.host}:{self.port}"

    def command(self):
        if self.kind == "zkd":
            return [ZKD_BIN, "serve", "--config", self.cfg_path, "--port-file", self.port_file]
        jvm = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx512m",
               "-Dzookeeper.admin.enableServer=false"]
        for k, prop in SYSPROP_KEYS.items():
            if k in self.cfg:
                jvm.append(f"-D{prop}={self.cfg[k]}")
        return jvm + ["-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.ZooKeeperServerMain",
                      self.cfg_path]

    def start(self):
        cmd = self.command()
        if self.kind == "zkd" and not os.path.exists(ZKD_BIN):
            raise RuntimeError(f"zkd binary not found at {ZKD_BIN} (set ZKD_BIN or build it)")
        self.log = open(self.log_path, "ab")
        if self.kind == "zkd":
            # A restart gets a new port from the kernel: not the previous run's file.
            if os.path.exists(self.port_file):
                os.remove(self.port_file)
            self.port = None
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} during start; "
                                   f"log:\n{self.tail_log()}")
            if self.port is None:
                self.port = read_port_file(self.port_file)
            if self.port is not None and serving(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer ruok within {START_TIMEOUT_S}s; "
                           f"log:\n{self.tail_log()}")

    def tail_log(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0, keep_port=False):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.proc = None
        self.log.close()
        if self.hold and not keep_port:
            self.hold.close()
            self.hold = None

    def restart(self):
        """The oracle comes back on its (held) port; zkd on a new one (self.port changes)."""
        self.stop(keep_port=True)
        self.start()

    def cleanup(self):
        self.stop()
        if self.hold:
            self.hold.close()
            self.hold = None
        if os.environ.get("ZKD_KEEP_TMP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)
