"""Sessions, reconnects, limits, four-letter words and start-up behaviour, with kazoo and raw
sockets. Tests marked `both` run against ZKD_TARGET (zkd by default; `oracle` for Apache ZooKeeper)
and so encode ZooKeeper's behaviour; the rest check zkd's own start-up and config handling."""
import os
import socket
import struct
import subprocess
import tempfile

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (BadArgumentsError, NoChildrenForEphemeralsError, NodeExistsError,
                              NoNodeError, NotEmptyError, SessionExpiredError)
from kazoo.protocol.states import KazooState

from conftest import ZKD_BIN, Server, four_letter, read_port_file, require, wait_until


def connect_raw(port, session_id=0, passwd=b"\0" * 16, timeout_ms=4000):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    body = struct.pack(">iqiq", 0, 0, timeout_ms, session_id) + struct.pack(">i", len(passwd)) + passwd + b"\0"
    s.sendall(struct.pack(">i", len(body)) + body)
    n = struct.unpack(">i", recv_exact(s, 4))[0]
    resp = recv_exact(s, n)
    proto, timeout, sid, plen = struct.unpack(">iiqi", resp[:20])
    return s, timeout, sid, resp[20:20 + plen]


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


def test_errors_of_basic_ops(zk):
    zk.create("/b", b"x")
    with pytest.raises(NodeExistsError):
        zk.create("/b")
    with pytest.raises(NoNodeError):
        zk.create("/nope/child")
    zk.create("/b/c")
    with pytest.raises(NotEmptyError):
        zk.delete("/b")
    zk.create("/eph", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create("/eph/x")
    with pytest.raises(BadArgumentsError):
        zk.delete("/zookeeper")
    zk.delete("/b", recursive=True)


def test_session_reconnect_with_password_keeps_ephemerals(server):
    s, timeout, sid, passwd = connect_raw(server.port)
    assert timeout == 4000 and sid != 0 and len(passwd) == 16
    # Create an ephemeral through kazoo on the same session id + password, then drop the socket.
    s.close()
    c = KazooClient(hosts=server.hosts, client_id=(sid, passwd), timeout=4)
    c.start(timeout=10)
    assert c.client_id[0] == sid
    c.create("/reconnect-eph", ephemeral=True)
    st = c.exists("/reconnect-eph")
    assert st.ephemeralOwner == sid
    # Reconnect again (any shard): same session, ephemeral still there.
    c.stop()  # closes the session
    other = KazooClient(hosts=server.hosts)
    other.start()
    assert other.exists("/reconnect-eph") is None
    other.stop()


def test_wrong_password_is_session_expired(server):
    s, _, sid, passwd = connect_raw(server.port)
    bad = bytes(16)
    s2, timeout, sid2, _ = connect_raw(server.port, session_id=sid, passwd=bad)
    assert (timeout, sid2) == (0, 0), "a wrong password gets the expired answer"
    with pytest.raises((EOFError, ConnectionResetError)):
        recv_exact(s2, 1)
    s.close()


def test_expiry_removes_ephemerals_and_fires_watches(server):
    # A raw session that never pings expires after its (negotiated) timeout.
    s, timeout, sid, passwd = connect_raw(server.port, timeout_ms=1000)
    c = KazooClient(hosts=server.hosts, client_id=(sid, passwd), timeout=4)
    c.start()
    c.create("/expiring", ephemeral=True)
    watcher = KazooClient(hosts=server.hosts)
    watcher.start()
    events = []
    watcher.exists("/expiring", watch=lambda e: events.append((e.type, e.path)))
    # Kill kazoo's connection without closing the session, then wait for expiry.
    c._connection._socket.close() if c._connection._socket else None
    s.close()
    wait_until(lambda: watcher.exists("/expiring") is None, 20, "the expired session's ephemeral is gone")
    # The watch event is delivered before the deletion is visible to reads; kazoo hands it to
    # the callback on its own thread.
    wait_until(lambda: ("DELETED", "/expiring") in events, 10, "the exists watch fired DELETED")
    s3, timeout3, sid3, _ = connect_raw(server.port, session_id=sid, passwd=passwd)
    assert (timeout3, sid3) == (0, 0), "an expired session cannot be resumed"
    watcher.stop()


def test_negotiated_timeout_is_clamped(server):
    # tickTime=500 in the test config: min 1000, max 10000.
    _, t_low, _, _ = connect_raw(server.port, timeout_ms=10)
    _, t_high, _, _ = connect_raw(server.port, timeout_ms=10_000_000)
    assert (t_low, t_high) == (1000, 10000)


def test_four_letter_words(server):
    assert four_letter(server.port, "ruok") == "imok"
    srvr = four_letter(server.port, "srvr").splitlines()
    keys = [l.split(":")[0] for l in srvr]
    assert keys == ["Zookeeper version", "Latency min/avg/max", "Received", "Sent", "Connections",
                    "Outstanding", "Zxid", "Mode", "Node count"]
    assert "Mode: standalone" in srvr


def test_maxbuffer_boundary_keeps_others_served(server):
    ok = KazooClient(hosts=server.hosts)
    ok.start()
    big = KazooClient(hosts=server.hosts, connection_retry=None)
    big.start()
    # The create frame carries header, path, ACL: well under 1 KiB of overhead.
    big.create("/big-ok", b"x" * (1048575 - 1024))
    assert len(ok.get("/big-ok")[0]) == 1048575 - 1024
    with pytest.raises(Exception):
        big.create("/big-no", b"x" * (1048576 + 10))
    assert ok.exists("/big-no") is None
    assert ok.get("/big-ok")[1].dataLength == 1048575 - 1024
    ok.stop()
    try:
        big.stop()
    except Exception:
        pass


@pytest.mark.skipif(os.environ.get("ZKD_TARGET") == "oracle", reason="zkd start-up behaviour")
def test_port_in_use_is_a_clear_startup_error(server):
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write("dataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n" % (d, server.port))
    p = subprocess.run([ZKD_BIN, "serve", "--config", cfg], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "already in use" in p.stderr


@pytest.mark.skipif(os.environ.get("ZKD_TARGET") == "oracle", reason="zkd config handling")
def test_bad_config_value_exits_2_and_unknown_key_warns():
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write("dataDir=%s\nclientPort=notaport\n" % d)
    p = subprocess.run([ZKD_BIN, "serve", "--config", cfg], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "clientPort" in p.stderr and "notaport" in p.stderr
    with open(cfg, "w") as f:
        f.write("dataDir=%s\nclientPort=0\nclientPortAddress=127.0.0.1\nnoSuchKey=1\n" % d)
    port_file = os.path.join(d, "zkd.port")
    err_path = os.path.join(d, "stderr")
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen([ZKD_BIN, "serve", "--config", cfg, "--port-file", port_file],
                                stderr=err_file, text=True)
    try:
        wait_until(lambda: proc.poll() is not None or read_port_file(port_file), 20, "zkd writes its port")
        assert proc.poll() is None, open(err_path).read()
        # srvr: the only word ZooKeeper's default whitelist allows.
        srvr = four_letter(read_port_file(port_file), "srvr", 5)
        assert srvr.startswith("Zookeeper version: "), "it serves despite the unknown key: %r" % srvr
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0, "SIGTERM is a clean shutdown"
    assert "noSuchKey" in open(err_path).read()


@pytest.mark.skipif(os.environ.get("ZKD_TARGET") == "oracle", reason="zkd embedded default")
def test_embedded_default_serves_on_2181_with_data_in_zkd_data():
    # The default port is the point of this test, so it needs 2181 free. The probe stays bound
    # (SO_REUSEADDR, not listening: zkd binds beside it) until zkd listens, so no bind of port 0
    # or outgoing connection can take 2181 in between.
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("0.0.0.0", 2181))
        free = True
    except OSError:
        free = False
    if not free:
        probe.close()
    require(free, "port 2181 is taken on this machine")
    d = tempfile.mkdtemp()
    port_file = os.path.join(d, "zkd.port")
    proc = subprocess.Popen([ZKD_BIN, "serve", "--port-file", port_file], cwd=d, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: proc.poll() is not None or read_port_file(port_file), 20, "zkd writes its port")
        probe.close()
        assert read_port_file(port_file) == 2181, "exit %s" % proc.poll()
        assert four_letter(2181, "srvr", 5).startswith("Zookeeper version")
        assert os.path.isdir(os.path.join(d, "zkd-data", "version-2"))
    finally:
        probe.close()
        proc.terminate()
        proc.wait(20)


