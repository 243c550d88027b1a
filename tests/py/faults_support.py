"""What tests/py/test_faults.py runs its ensembles on: zkd processes (one per server, each with
its own data dir, zoo.cfg and log), on loopback or in network namespaces of the test's own
(`NetLab`), and the client-side checks they share (a write through one node, a whole tree read
after a sync, the role a node's log says it serves in).

Ports. In a `NetLab` every node has a network namespace of its own, so the well-known ports
(2181/2888/3888) are free by construction. On loopback the election and quorum ports must be in
every node's zoo.cfg before any node starts: they are picked by binding port 0, released just
before the nodes start, and the whole ensemble is started again on new ports if a node reports
that its port was taken meanwhile. Client ports are always the kernel's choice (clientPort=0,
read back with --port-file) except in a NetLab.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ZKD_BIN, read_port_file, require

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "opcodes"))
import rawzk  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SERVING = re.compile(r"serving clients as (\w+) in epoch (\d+)|stopped serving clients: (.*)")
# zkd's exit status when its election listener cannot bind (ZooKeeper's UNABLE_TO_BIND_QUORUM_PORT).
EXIT_UNABLE_TO_BIND = 14


def wait_for(cond, timeout, what, step=0.02):
    """Polls cond() until it returns something true, and returns that; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.1f s waiting until %s" % (timeout, what))
        time.sleep(step)


def run(*cmd, check=True):
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), (p.stderr or p.stdout).strip()))
    return p


# ---- network namespaces ------------------------------------------------------------------------

def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale_namespaces():
    """Deletes what a killed earlier run left behind (names carry the pid of their test process)."""
    p = run("ip", "netns", "list", check=False)
    for line in p.stdout.splitlines():
        m = re.match(r"zkdf(\d+)-\S+", line.strip())
        if m and not _pid_alive(int(m.group(1))):
            run("ip", "netns", "del", m.group(0), check=False)
            run("ip", "link", "del", "zf%sr" % m.group(1), check=False)


class NetLab:
    """Network namespaces of the test's own: a hub namespace with a bridge; one namespace per
    node, each with a veth into the hub and the address 10.77.X.<sid>/24; a veth from the root
    namespace into the hub with 10.77.X.254, so clients here reach every node's client port.
    `blackhole` addresses live in a namespace of their own that drops every packet it receives
    (TCP connects to them hang, as to a powered-off machine). Partitions are iptables DROP rules
    on INPUT, at both ends, that spare the root namespace's address: the servers lose each other,
    the test's clients keep their view of every node. Everything is deleted by close()."""

    def __init__(self, sids, blackhole=()):
        for tool in ("ip", "iptables"):
            require(shutil.which(tool) is not None, "%s (network namespaces)" % tool)
        require(os.geteuid() == 0, "root (network namespaces)")
        sweep_stale_namespaces()
        self.tag = "zkdf%d" % os.getpid()
        self.hub = self.tag + "-hub"
        self.root_if = "zf%dr" % os.getpid()
        self.sids = list(sids)
        self.made = []
        self.subnet = self._free_subnet()
        try:
            self._build(blackhole)
        except Exception as e:
            self.close()
            require(False, "network namespaces with a bridge and iptables: %s" % e)

    def _free_subnet(self):
        used = run("ip", "-4", "addr").stdout + run("ip", "-4", "route").stdout
        start = os.getpid() % 250
        for k in range(250):
            x = (start + k) % 250 + 1
            if "10.77.%d." % x not in used:
                return "10.77.%d" % x
        raise RuntimeError("no free 10.77.X.0/24 subnet")

    def ip(self, sid):
        return "%s.%d" % (self.subnet, sid)

    @property
    def root_ip(self):
        return self.ip(254)

    def ns(self, sid):
        return "%s-n%d" % (self.tag, sid)

    def _netns(self, name):
        run("ip", "netns", "add", name)
        self.made.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def _build(self, blackhole):
        self._netns(self.hub)
        run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.hub, "link", "set", "br0", "up")
        run("ip", "link", "add", self.root_if, "type", "veth", "peer", "name", "up0", "netns", self.hub)
        run("ip", "-n", self.hub, "link", "set", "up0", "master", "br0", "up")
        run("ip", "addr", "add", self.root_ip + "/24", "dev", self.root_if)
        run("ip", "link", "set", self.root_if, "up")
        ends = [(self.ns(s), [self.ip(s)]) for s in self.sids]
        if blackhole:
            ends.append((self.tag + "-bh", [self.ip(s) for s in blackhole]))
        for i, (name, addrs) in enumerate(ends):
            self._netns(name)
            hub_end = "v%d" % i
            run("ip", "-n", self.hub, "link", "add", hub_end, "type", "veth", "peer", "name", "eth0",
                "netns", name)
            run("ip", "-n", self.hub, "link", "set", hub_end, "master", "br0", "up")
            for a in addrs:
                run("ip", "-n", name, "addr", "add", a + "/24", "dev", "eth0")
            run("ip", "-n", name, "link", "set", "eth0", "up")
            # iptables must work here (the partitions need it).
            self.iptables(name, "-L", "-n")
        if blackhole:
            self.iptables(self.tag + "-bh", "-P", "INPUT", "DROP")

    def iptables(self, ns, *args):
        return run("ip", "netns", "exec", ns, "iptables", "-w", *args)

    def isolate(self, sid):
        """Cuts `sid` off from every other server (both ways); the root namespace still reaches it."""
        me = self.ip(sid)
        self.iptables(self.ns(sid), "-A", "INPUT", "-s", self.root_ip, "-j", "ACCEPT")
        self.iptables(self.ns(sid), "-A", "INPUT", "-s", self.subnet + ".0/24", "-j", "DROP")
        for s in self.sids:
            if s != sid:
                self.iptables(self.ns(s), "-A", "INPUT", "-s", me, "-j", "DROP")

    def heal(self):
        for s in self.sids:
            self.iptables(self.ns(s), "-F", "INPUT")

    def close(self):
        for name in reversed(self.made):
            run("ip", "netns", "del", name, check=False)
        self.made = []
        run("ip", "link", "del", self.root_if, check=False)


# ---- zkd processes -----------------------------------------------------------------------------

class Node:
    """One zkd server: dataDir (with myid), zoo.cfg and a log file under `base/n<sid>`."""

    def __init__(self, base, sid, ns=None):
        self.sid = sid
        self.ns = ns
        self.dir = os.path.join(base, "n%d" % sid)
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data, exist_ok=True)
        with open(os.path.join(self.data, "myid"), "w") as f:
            f.write("%d\n" % sid)
        self.cfg_path = os.path.join(self.dir, "zoo.cfg")
        self.log_path = os.path.join(self.dir, "server.log")
        self.port_file = os.path.join(self.dir, "zkd.port")
        self.proc = None
        self.host = "127.0.0.1"
        self.port = None
        self.started_at = None

    def write_config(self, settings, servers):
        with open(self.cfg_path, "w") as f:
            for k, v in settings.items():
                f.write("%s=%s\n" % (k, v))
            f.write("dataDir=%s\n" % self.data)
            for line in servers:
                f.write(line + "\n")

    def spawn(self):
        """Starts zkd; does not wait (see wait_port)."""
        assert self.proc is None or self.proc.poll() is not None, "node %d runs already" % self.sid
        try:
            os.unlink(self.port_file)
        except FileNotFoundError:
            pass
        self.port = None
        cmd = [ZKD_BIN, "serve", "--config", self.cfg_path, "--port-file", self.port_file]
        if self.ns:
            cmd = ["ip", "netns", "exec", self.ns] + cmd
        log = open(self.log_path, "ab")
        env = dict(os.environ, NO_COLOR="1")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def wait_port(self, timeout=30):
        """The client port, once zkd has bound it; None if zkd exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = read_port_file(self.port_file)
            if p is not None:
                self.port = p
                return p
            if self.proc.poll() is not None:
                return None
            time.sleep(0.01)
        raise RuntimeError("node %d bound no client port within %d s; log %s"
                           % (self.sid, timeout, self.log_path))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return ANSI.sub("", f.read().decode(errors="replace"))
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def log_since(self, mark):
        """Log text written after byte offset `mark` (see log_size)."""
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return ANSI.sub("", f.read().decode(errors="replace"))

    def role(self, since=0):
        """The role the log says this node serves clients in ('Leader', 'Follower', ...), None
        if it does not serve (never started serving, or stopped since), looking only at what
        was logged after byte `since`."""
        if not self.alive():
            return None
        role = None
        for m in SERVING.finditer(self.log_since(since)):
            role = m.group(1)
        return role

    def epoch(self):
        e = None
        for m in SERVING.finditer(self.log()):
            if m.group(2):
                e = int(m.group(2))
        return e

    def client(self, timeout_ms=10000, io_timeout=5.0, **kw):
        return rawzk.Client(self.host, self.port, timeout_ms=timeout_ms, io_timeout=io_timeout, **kw)


class Ensemble:
    """`sids` zkd servers forming one ensemble, on loopback or in a NetLab."""

    def __init__(self, base, sids, lab=None, tick_ms=200, init_limit=10, sync_limit=5, extra=None,
                 config_sids=None):
        self.base = base
        self.sids = list(sids)
        self.lab = lab
        self.tick_ms, self.init_limit, self.sync_limit = tick_ms, init_limit, sync_limit
        self.extra = extra or {}
        self.config_sids = list(config_sids or sids)
        self.nodes = {s: Node(base, s, lab.ns(s) if lab else None) for s in self.sids}
        self.addrs = {}

    @property
    def sync_ms(self):
        return self.tick_ms * self.sync_limit

    def settings(self):
        s = {
            "tickTime": self.tick_ms, "initLimit": self.init_limit, "syncLimit": self.sync_limit,
            "maxClientCnxns": 0, "admin.enableServer": "false", "4lw.commands.whitelist": "*",
            "clientPort": 2181 if self.lab else 0,
        }
        if not self.lab:
            s["clientPortAddress"] = "127.0.0.1"
        s.update(self.extra)
        return s

    def server_lines(self, sids):
        return ["server.%d=%s:%d:%d" % (s, *self.addrs[s]) for s in sids]

    def write_config(self, sid, config_sids=None):
        self.nodes[sid].write_config(self.settings(), self.server_lines(config_sids or self.config_sids))

    def _pick_addresses(self):
        """Loopback: two ports per configured server from the kernel, held until released()."""
        held = []
        for s in self.config_sids:
            if self.lab:
                self.addrs[s] = (self.lab.ip(s), 2888, 3888)
                continue
            ports = []
            for _ in range(2):
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                held.append(sock)
                ports.append(sock.getsockname()[1])
            self.addrs[s] = ("127.0.0.1", ports[0], ports[1])
        return held

    def start(self, wait=True, timeout=30):
        for attempt in range(3):
            held = self._pick_addresses()
            for s in self.sids:
                self.write_config(s)
            # Released just before the servers bind them.
            for h in held:
                h.close()
            for s in self.sids:
                self.nodes[s].spawn()
            if self._ports_bound(timeout):
                break
            for n in self.nodes.values():
                n.kill9()
        else:
            raise RuntimeError("the ensemble's ports were taken by other processes 3 times")
        if wait:
            self.wait_serving(timeout)

    def _ports_bound(self, timeout):
        for n in self.nodes.values():
            if self.lab:
                n.host = self.lab.ip(n.sid)
            if n.wait_port(timeout) is None:
                if n.proc.returncode == EXIT_UNABLE_TO_BIND or "Address already in use" in n.log():
                    return False
                raise RuntimeError("node %d exited (%s) during start-up; log %s:\n%s"
                                   % (n.sid, n.proc.returncode, n.log_path, n.log()[-3000:]))
        return True

    def restart(self, sid, config_sids=None):
        """Starts a stopped node again (with another server list if given); returns once its
        client port is bound."""
        n = self.nodes[sid]
        if config_sids is not None:
            self.write_config(sid, config_sids)
        n.spawn()
        if n.wait_port() is None:
            raise RuntimeError("node %d exited (%s) on restart; log:\n%s"
                               % (sid, n.proc.returncode, n.log()[-3000:]))

    def wait_serving(self, timeout=30, sids=None):
        """Until a write through each of `sids` (default: every running node) is acknowledged."""
        for s in sids or [s for s in self.sids if self.nodes[s].alive()]:
            wait_for(lambda s=s: try_write(self.nodes[s]), timeout, "node %d serves writes" % s, step=0.05)

    def wait_leader(self, timeout=20, exclude=()):
        def leader():
            return next((s for s in self.sids if s not in exclude and self.nodes[s].role() == "Leader"), None)
        return wait_for(leader, timeout, "a leader")

    def close(self):
        for n in self.nodes.values():
            n.kill9()


def try_write(node, path="/faults-probe", timeout=2.0):
    """True if a setData (or create) through `node` is acknowledged; False on any failure."""
    if not node.alive() or node.port is None:
        return False
    try:
        c = node.client(timeout_ms=4000, io_timeout=timeout)
    except (rawzk.ConnectionClosed, OSError, ValueError, rawzk.ZkError):
        return False
    try:
        err, _ = c.set_data(path, b"p")
        if err == rawzk.NONODE:
            err, _ = c.create(path, b"p")
            if err == rawzk.NODEEXISTS:
                err = rawzk.OK
        return err == rawzk.OK
    except (rawzk.ConnectionClosed, OSError, ValueError):
        return False
    finally:
        c.close_socket()


def refuses_clients(node, timeout=2.0):
    """True if `node` closes a new client connection without a session (it does not serve)."""
    try:
        c = node.client(timeout_ms=4000, io_timeout=timeout)
    except (rawzk.ConnectionClosed, ConnectionRefusedError, ConnectionResetError):
        return True
    except OSError:
        return False
    c.close_socket()
    return False


def tree(node, timeout=10.0, skip=("/zookeeper",)):
    """Every znode under / (but `skip`) through `node`, after a sync: path -> (data, czxid,
    mzxid, pzxid, version, cversion, ephemeralOwner)."""
    c = node.client(io_timeout=timeout)
    try:
        err, _ = c.sync("/")
        assert err == rawzk.OK, "sync through node %d: %d" % (node.sid, err)
        out = {}
        todo = ["/"]
        while todo:
            p = todo.pop()
            if p in skip:
                continue
            err, r = c.get_data(p)
            assert err == rawzk.OK, "getData %s through node %d: %d" % (p, node.sid, err)
            data, st = r
            out[p] = (data, st.czxid, st.mzxid, st.pzxid, st.version, st.cversion, st.ephemeralOwner)
            err, kids = c.get_children(p)
            assert err == rawzk.OK
            todo.extend((p.rstrip("/") + "/" + k) for k in kids)
        return out
    finally:
        c.close_socket()
