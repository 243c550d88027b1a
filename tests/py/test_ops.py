"""The operations surface: every four-letter word and AdminServer command compared with Apache
ZooKeeper 3.8 (the oracle) by shape, mntr parsed as key<TAB>value, /metrics parsed by the
Prometheus client's own parser, zktop run against zkd, and the limits made visible:
maxClientCnxns per IP (one IP and across IPs), connection churn, jute.maxbuffer rejects,
globalOutstandingLimit back-pressure, runtime log level and the rolling log file.
"""
import json
import os
import pty
import re
import select
import shutil
import socket
import tempfile
import time
import urllib.request

import pytest
from kazoo.client import KazooClient

from conftest import PortHold, Server, four_letter, require, wait_until


def side_port(holds):
    """A port for an AdminServer or /metrics listener (zkd's and ZooKeeper's both set
    SO_REUSEADDR): held by a PortHold, appended to `holds`, until the caller closes it after the
    server stops. See conftest.PortHold for the race that remains."""
    h = PortHold()
    holds.append(h)
    return h.port


def close_all(holds):
    for h in holds:
        h.close()


def mntr_from(ip, port):
    """mntr over a connection from `ip` (another loopback address than the one a test fills up);
    {} while the server says it is not serving yet (ZooKeeper answers so while it starts)."""
    text = four_letter_from(ip, port, "mntr")
    if text.startswith("This ZooKeeper instance is not currently serving requests"):
        return {}
    return parse_mntr(text)


WORDS = ["conf", "cons", "crst", "dump", "envi", "ruok", "srst", "srvr", "stat",
         "wchs", "wchc", "wchp", "mntr", "isro", "dirs"]


def normalize(text):
    text = re.sub(r"3\.8\.0-[^,\n]*, built on [^\n]*", "VERSION", text)
    text = re.sub(r"\w{3} \w{3} \d\d \d\d:\d\d:\d\d \w+ \d{4}", "DATE", text)
    text = re.sub(r"/\d+\.\d+\.\d+\.\d+:\d+", "ADDR", text)
    text = re.sub(r"0x[0-9a-f]+", "HEX", text)
    text = re.sub(r"-?\d+(\.\d+)?(E-?\d+)?", "N", text)
    return text


def workload(port, ephemeral="/e1"):
    """Two sessions, an ephemeral, data and child watches: the same on both servers."""
    c1 = KazooClient(hosts="127.0.0.1:%d" % port, timeout=10)
    c1.start(timeout=15)
    c1.ensure_path("/a/b")
    c1.create(ephemeral, b"x", ephemeral=True)
    c1.get("/a", watch=lambda e: None)
    c1.get_children("/a", watch=lambda e: None)
    c1.exists("/a/b", watch=lambda e: None)
    c2 = KazooClient(hosts="127.0.0.1:%d" % port, timeout=10)
    c2.start(timeout=15)
    c2.get("/a", watch=lambda e: None)
    return [c1, c2]


def stop_all(clients):
    for c in clients:
        try:
            c.stop()
            c.close()
        except Exception:
            pass


def parse_mntr(text):
    out = {}
    for line in text.splitlines():
        k, v = line.split("\t")  # exactly one tab per line
        out[k] = v
    return out


def http_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.status, r.read().decode()


def read_log(server):
    server.log.flush()
    with open(os.path.join(server.dir, "server.log")) as f:
        return f.read()


@pytest.fixture(scope="module")
def pair():
    """zkd and the oracle, same config, AdminServer on, same workload."""
    servers = []
    holds = []
    try:
        for kind in ("zkd", "oracle"):
            servers.append(Server(kind, {"admin.enableServer": "true",
                                         "admin.serverPort": str(side_port(holds)),
                                         "maxClientCnxns": "60"}))
        clients = [workload(s.port) for s in servers]
        # The workload's replies came back, so its sessions, ephemeral and watches exist; the
        # tests compare them: both servers must show them (c1: data /a, child /a, exists /a/b;
        # c2: data /a).
        for s in servers:
            wait_until(lambda: [parse_mntr(four_letter(s.port, "mntr")).get(k) for k in
                                ("zk_global_sessions", "zk_ephemerals_count", "zk_watch_count")]
                       == ["2", "1", "4"], 10, "%s shows the workload's sessions and watches" % s.kind)
        yield servers[0], servers[1]
        for c in clients:
            stop_all(c)
    finally:
        for s in servers:
            s.stop()
        close_all(holds)


def admin_port(server):
    with open(server.cfg_path) as f:
        return int(re.search(r"admin.serverPort=(\d+)", f.read()).group(1))


def zk_part(cons_text):
    """ZooKeeper's part of `cons`: up to the first blank line. zkd may add its limits section
    after it."""
    head, sep, rest = cons_text.partition("\n\n")
    assert sep, cons_text
    assert rest == "" or rest.startswith("zkd limits"), rest
    return head + "\n\n"


def test_every_word_has_the_oracle_shape(pair):
    zkd, oracle = pair
    for w in WORDS:
        if w in ("crst", "srst"):
            continue  # resets: checked last, they change the others
        a = four_letter(zkd.port, w).replace(zkd.dir, "DIR")
        b = four_letter(oracle.port, w).replace(oracle.dir, "DIR")
        assert a, "zkd answered nothing to %s" % w
        if w in ("conf", "srvr", "isro", "ruok", "dirs", "wchs"):
            assert normalize(a) == normalize(b), (w, a, b)
        elif w in ("stat", "wchc", "wchp"):
            assert sorted(normalize(a).splitlines()) == sorted(normalize(b).splitlines()), (w, a, b)
        elif w == "cons":
            za, zb = zk_part(a), zk_part(b)
            assert sorted(normalize(za).splitlines()) == sorted(normalize(zb).splitlines()), (za, zb)
            # Full lines (with sid=...) for the two sessions, brief for the 4lw connection itself.
            assert len([l for l in za.splitlines() if ",sid=0x" in l]) == 2
        elif w == "dump":
            # Bucket grouping depends on timing; the kinds of lines must match.
            assert set(normalize(a).splitlines()) == set(normalize(b).splitlines()), (a, b)
            assert "\t/e1" in a.splitlines()
        elif w == "envi":
            ka = {l.split("=", 1)[0] for l in a.splitlines()[1:]}
            kb = {l.split("=", 1)[0] for l in b.splitlines()[1:]}
            assert a.startswith("Environment:\n") and kb <= ka, kb - ka
        elif w == "mntr":
            ma, mb = parse_mntr(a), parse_mntr(b)
            zk_keys = {k for k in ma if k.startswith("zk_")}
            assert zk_keys <= set(mb), "zkd invented zk_ keys: %s" % (zk_keys - set(mb))
            assert all(k.startswith("zk_") or k.startswith("zkd_") for k in ma)
            for k in ("zk_version", "zk_server_state", "zk_znode_count", "zk_watch_count",
                      "zk_ephemerals_count", "zk_approximate_data_size", "zk_open_file_descriptor_count",
                      "zk_max_file_descriptor_count", "zk_avg_latency", "zk_min_latency", "zk_max_latency",
                      "zk_packets_received", "zk_packets_sent", "zk_num_alive_connections",
                      "zk_outstanding_requests", "zk_global_sessions", "zk_uptime",
                      "zk_cnt_readlatency", "zk_p99_updatelatency", "zk_avg_fsynctime",
                      "zk_cnt_fsynctime", "zk_max_sync_processor_batch_size"):
                assert k in ma and k in mb, k
            # The writes above were logged: both servers synced at least once.
            for m in (ma, mb):
                assert int(m["zk_cnt_fsynctime"]) >= 1, m["zk_cnt_fsynctime"]
                assert int(m["zk_max_sync_processor_batch_size"]) >= 1
            assert int(ma["zkd_log_syncs"]) == int(ma["zk_cnt_fsynctime"])
            assert int(ma["zkd_log_txns_written"]) >= int(ma["zk_sum_sync_processor_batch_size"]) >= 1
            # The same tree and watches: the same values where they do not depend on timing.
            for k in ("zk_server_state", "zk_znode_count", "zk_watch_count", "zk_ephemerals_count",
                      "zk_global_sessions", "zk_outstanding_requests"):
                assert ma[k] == mb[k], (k, ma[k], mb[k])
            assert int(ma["zk_num_alive_connections"]) == int(mb["zk_num_alive_connections"]) == 3
    # The resets answer the same sentences and zero what ZooKeeper zeroes.
    for w in ("crst", "srst"):
        assert four_letter(zkd.port, w) == four_letter(oracle.port, w)
    srvr = four_letter(zkd.port, "srvr")
    assert re.search(r"^Received: [0-2]$", srvr, re.M), srvr


def test_whitelist_replies_like_zookeeper():
    servers = [Server(k, {"4lw.commands.whitelist": "ruok, mntr"}) for k in ("zkd", "oracle")]
    try:
        # `ruok` answers before ZooKeeper serves; wait until it does.
        for s in servers:
            deadline = time.time() + 20
            while "not currently serving" in four_letter(s.port, "srvr"):
                assert time.time() < deadline
                time.sleep(0.2)
        for w in ("stat", "cons", "wchc", "envi"):
            a, b = (four_letter(s.port, w) for s in servers)
            assert a == b == "%s is not executed because it is not in the whitelist.\n" % w
        for s in servers:
            assert four_letter(s.port, "srvr").startswith("Zookeeper version: ")  # always allowed
            assert "zk_znode_count" in parse_mntr(four_letter(s.port, "mntr"))
    finally:
        for s in servers:
            s.stop()


def test_admin_server_commands_have_the_oracle_shape(pair):
    zkd, oracle = pair
    za, oa = admin_port(zkd), admin_port(oracle)
    _, index = http_get(oa, "/commands")
    names = re.findall(r'href="/commands/(\w+)"', index)
    assert len(names) >= 24
    _, zindex = http_get(za, "/commands")
    assert set(names) <= set(re.findall(r'href="/commands/(\w+)"', zindex))
    for name in names + ["nosuch", "mntr", "cons"]:
        if name == "system_properties":
            continue  # JVM properties; zkd lists its environment instead
        sa, ta = http_get(za, "/commands/" + name)
        sb, tb = http_get(oa, "/commands/" + name)
        assert sa == sb == 200, name
        ja, jb = json.loads(ta), json.loads(tb)
        assert ja["command"] == jb["command"], name
        assert ja.get("error") == jb.get("error"), (name, ja.get("error"), jb.get("error"))
        if name == "monitor" or name == "mntr":
            extra = {k for k in ja if not k.startswith("zkd_")} - set(jb)
            assert not extra, extra
            continue
        missing = set(jb) - set(ja)
        assert not missing, (name, missing)
        if name in ("connections", "cons", "stats"):
            assert len(ja["connections"]) == len(jb["connections"]) == 2
            for ca, cb in zip(ja["connections"], jb["connections"]):
                assert set(ca) == set(cb), (name, set(ca) ^ set(cb))
        if name in ("watches", "watches_by_path", "watch_summary"):
            # Same watches: same structure modulo session ids.
            if name == "watch_summary":
                assert ja == jb
            elif name == "watches_by_path":
                assert {p: len(s) for p, s in ja["path_to_session_ids"].items()} == \
                       {p: len(s) for p, s in jb["path_to_session_ids"].items()}
            else:
                assert sorted(ja["session_id_to_watched_paths"].values()) == \
                       sorted(jb["session_id_to_watched_paths"].values())
    # Jackson's pretty printing, so line-oriented scrapers see the same layout.
    _, raw = http_get(za, "/commands/watch_summary")
    assert raw.startswith('{\n  "num_connections" : 2,\n')


def test_admin_server_disabled_and_log_level_at_runtime():
    holds = []
    port = side_port(holds)
    s = Server("zkd", {"admin.enableServer": "false", "admin.serverPort": str(port)})
    try:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        s.stop()
    port = side_port(holds)
    s = Server("zkd", {"admin.enableServer": "true", "admin.serverPort": str(port)})

    def closed_without_session():
        return int(parse_mntr(four_letter(s.port, "mntr"))["zkd_connections_closed_without_session"])

    def sessionless_close():
        """Opens and closes a connection without a session; returns the line zkd logs for it at
        debug ("Closed socket connection for client IP:PORT (no session established ...)")."""
        before = closed_without_session()
        c = socket.create_connection(("127.0.0.1", s.port))
        line = "client %s:%d (no session established" % c.getsockname()
        c.close()
        # zkd counts the close, then (same step of the connection's task) logs it at debug.
        wait_until(lambda: closed_without_session() == before + 1, 10, "zkd saw the close")
        return line

    try:
        _, t = http_get(port, "/commands/zkd_log_level")
        assert json.loads(t)["level"] == "info"
        # At info, a connection closed without a session leaves no line.
        at_info = sessionless_close()
        _, t = http_get(port, "/commands/zkd_log_level?level=debug")
        assert json.loads(t)["level"] == "debug" and json.loads(t)["error"] is None
        at_debug = sessionless_close()
        wait_until(lambda: at_debug in read_log(s), 10, "the debug line appears")
        assert at_info not in read_log(s)
        _, t = http_get(port, "/commands/zkd_log_level?level=nonsense[")
        assert json.loads(t)["error"]
    finally:
        s.stop()
        close_all(holds)


def test_rolling_log_file():
    logdir = os.path.join(tempfile.mkdtemp(prefix="zkd-logs-"), "logs")
    s = Server("zkd", {"zkd.log.dir": logdir, "zkd.log.rotation": "daily", "zkd.log.maxFiles": "2"})
    try:
        deadline = time.time() + 5
        while True:
            files = [f for f in os.listdir(logdir) if f.startswith("zkd")] if os.path.isdir(logdir) else []
            text = "".join(open(os.path.join(logdir, f)).read() for f in files)
            if "zkd serving clients" in text:
                break
            assert time.time() < deadline, files
            time.sleep(0.1)
        assert all(f.endswith(".log") for f in files)
    finally:
        s.stop()
        shutil.rmtree(os.path.dirname(logdir), ignore_errors=True)


def test_prometheus_metrics_parse_with_zookeeper_names():
    from prometheus_client.parser import text_string_to_metric_families
    holds = []
    mport = side_port(holds)
    s = Server("zkd", {
        "metricsProvider.className": "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
        "metricsProvider.httpPort": str(mport)})
    clients = []
    try:
        clients = workload(s.port)
        for i in range(20):
            clients[0].create("/p%d" % i, b"v")
            clients[0].get("/p%d" % i)
        status, text = http_get(mport, "/metrics")
        assert status == 200
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        for name in ("znode_count", "watch_count", "ephemerals_count", "approximate_data_size",
                     "num_alive_connections", "outstanding_requests", "packets_received", "packets_sent",
                     "avg_latency", "min_latency", "max_latency", "open_file_descriptor_count",
                     "max_file_descriptor_count", "global_sessions", "uptime"):
            assert fams[name].type == "gauge", name
        value = lambda n: fams[n].samples[0].value
        # /, /zookeeper{,/quota,/config}, /a, /a/b, /e1, /p*, and the root counted twice as
        # ZooKeeper counts it.
        assert value("znode_count") == 1 + 4 + 3 + 20
        assert value("num_alive_connections") == 2
        assert value("global_sessions") == 2
        for name in ("readlatency", "updatelatency"):
            f = fams[name]
            assert f.type == "summary"
            q = {s.labels.get("quantile") for s in f.samples if "quantile" in s.labels}
            assert q == {"0.5", "0.9", "0.99"}
            count = [s.value for s in f.samples if s.name == name + "_count"][0]
            assert count >= 20
        shards = fams["zkd_shard_connections"].samples
        assert len(shards) >= 1 and all("shard" in x.labels for x in shards)
        assert sum(x.value for x in shards) == 2
        assert fams["zkd_backpressure_pauses"].type == "counter"
        assert fams["zkd_request_latency_seconds"].type == "summary"
        # The log: ZooKeeper's fsynctime (ms) and batch size, zkd's counters and sync seconds.
        for name in ("fsynctime", "sync_processor_batch_size", "zkd_log_fsync_seconds"):
            f = fams[name]
            assert f.type == "summary", name
            count = [x.value for x in f.samples if x.name == name + "_count"][0]
            assert count >= 1, name
        assert fams["zkd_log_syncs"].type == "counter"
        assert fams["zkd_log_txns_written"].samples[0].value >= 20
    finally:
        stop_all(clients)
        s.stop()
        close_all(holds)


def test_zktop_reads_zkd():
    require(shutil.which("zktop") is not None, "zktop is not installed (apt-get install zktop)")
    s = Server("zkd")
    clients = []
    try:
        clients = workload(s.port)
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update(TERM="xterm", LINES="40", COLUMNS="160")
            os.execvp("zktop", ["zktop", "--servers", "127.0.0.1:%d" % s.port])
        out = b""

        def screen():
            text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[()][0-9A-Za-z]", " ", out.decode(errors="replace"))
            return re.sub(r"\s+", " ", text)

        # zktop counts the clients `stat` lists: two sessions and its own stat connection; the
        # server row: id, host, port, mode S(tandalone).
        row = re.compile(r"127\.0\.0\.1 %d S " % s.port)

        def drawn():
            t = screen()
            return "nodecount:8" in t and "sessions:3" in t and row.search(t)

        deadline = time.time() + 15
        while not drawn() and time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    break
        os.write(fd, b"q")
        # Give zktop a moment to quit on its own, then make sure it is gone.
        quit_by = time.time() + 2
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.time() > quit_by:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)
        assert "Unavailable" not in screen(), screen()
        assert drawn(), screen()
    finally:
        stop_all(clients)
        s.stop()


def open_from(src_ip, port, n):
    socks = []
    for _ in range(n):
        c = socket.socket()
        c.bind((src_ip, 0))
        c.connect(("127.0.0.1", port))
        socks.append(c)
    return socks


def is_refused(sock, timeout=3.0):
    """A refused connection is accepted and closed at once: reading gives EOF."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("kind", ["zkd", "oracle"])
def test_max_client_cnxns_from_one_ip(kind):
    s = Server(kind, {"maxClientCnxns": "60"})
    socks = []
    try:
        socks = open_from("127.0.0.1", s.port, 60)
        # All 60 accepted and counted before the extra ones arrive (+1: the mntr connection).
        wait_until(lambda: mntr_from("127.0.0.2", s.port).get("zk_num_alive_connections") == "61", 10,
                   "the 60 connections are open")
        extra = open_from("127.0.0.1", s.port, 3)
        assert all(is_refused(x) for x in extra)
        # The 60 stay open (a read would block), and another IP is still served.
        socks[0].settimeout(0.3)
        with pytest.raises(socket.timeout):
            socks[0].recv(1)
        other = open_from("127.0.0.2", s.port, 1)[0]
        other.sendall(b"ruok")
        assert other.recv(4) == b"imok"
        other.close()
        if kind == "zkd":
            # ZooKeeper's sentence (NIOServerCnxnFactory); the Debian oracle's classpath binds
            # slf4j-nop, so only zkd's log can be read here. The refusals were answered (EOF)
            # above, so they are logged and counted.
            sentence = "Too many connections from /127.0.0.1 - max is 60"
            wait_until(lambda: sentence in read_log(s), 10, "the refusal is logged")
            lines = [l for l in read_log(s).splitlines() if sentence in l]
            assert len(lines) == 1, "one line per IP per interval, not one per refusal: %s" % lines
            m = mntr_from("127.0.0.2", s.port)
            assert m["zk_connection_rejected"] == "3"
            assert m["zkd_connections_refused_max_cnxns"] == "3"
            assert m["zkd_top_ip_0"].startswith("127.0.0.1 refused=3")
            cons = four_letter_from("127.0.0.2", s.port, "cons")
            assert re.search(r"^ /127\.0\.0\.1\(open=60,connects=\d+,refused=3,", cons, re.M), cons
    finally:
        for x in socks:
            x.close()
        s.stop()


def four_letter_from(src_ip, port, word):
    c = open_from(src_ip, port, 1)[0]
    c.settimeout(5)
    c.sendall(word.encode())
    out = b""
    while True:
        b = c.recv(65536)
        if not b:
            break
        out += b
    c.close()
    return out.decode()


def test_max_client_cnxns_across_ips():
    s = Server("zkd", {"maxClientCnxns": "60"})
    socks = []
    try:
        for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            socks += open_from(ip, s.port, 60)
        wait_until(lambda: mntr_from("127.0.0.4", s.port).get("zk_num_alive_connections") == "181", 10,
                   "the 180 connections are open")
        for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            assert is_refused(open_from(ip, s.port, 1)[0]), ip
        m = mntr_from("127.0.0.4", s.port)
        assert m["zk_num_alive_connections"] == "181"  # 180 + the mntr connection itself
        assert m["zkd_connections_refused_max_cnxns"] == "3"
        for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            sentence = "Too many connections from /%s - max is 60" % ip
            wait_until(lambda: sentence in read_log(s), 10, "the refusal of %s is logged" % ip)
        cons = four_letter_from("127.0.0.4", s.port, "cons")
        for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            assert re.search(r"^ /%s\(open=60,connects=\d+,refused=1," % re.escape(ip), cons, re.M), cons
    finally:
        for x in socks:
            x.close()
        s.stop()


def test_churn_storm_is_detected_and_logged_once():
    holds = []
    aport = side_port(holds)
    s = Server("zkd", {"zkd.limits.churnThresholdPerSecond": "50", "zkd.limits.logIntervalMs": "60000",
                       "admin.enableServer": "true", "admin.serverPort": str(aport)})
    try:
        t0 = time.time()
        n = 0
        while n < 600:
            c = socket.socket()
            c.bind(("127.0.0.5", 0))
            c.connect(("127.0.0.1", s.port))
            c.close()
            n += 1
        elapsed = time.time() - t0
        # Every close seen (the churn line is logged on accept, before).
        wait_until(lambda: mntr_from("127.0.0.6", s.port).get("zkd_connections_closed_without_session") == "600",
                   10, "zkd saw the 600 closes")
        log = read_log(s)
        churn = [l for l in log.splitlines() if "Connection churn from /127.0.0.5" in l]
        assert len(churn) == 1, (elapsed, churn)
        assert "threshold 50/s" in churn[0]
        # No line per connection at the default level.
        assert len(log.splitlines()) < 30, log[-3000:]
        m = mntr_from("127.0.0.6", s.port)
        assert int(m["zkd_connections_closed_without_session"]) == 600
        assert m["zkd_top_ip_0"].startswith("127.0.0.5 ")
        cons = four_letter_from("127.0.0.6", s.port, "cons")
        line = [l for l in cons.splitlines() if l.startswith(" /127.0.0.5(")]
        assert line and "closed_without_session=600" in line[0], cons
        peak = int(re.search(r"peak_rate=(\d+)/s", line[0]).group(1))
        assert peak > 50, line
        _, t = http_get(aport, "/commands/zkd_limits")
        top = json.loads(t)["top_ips"][0]
        assert top["ip"] == "127.0.0.5" and top["closed_without_session"] == 600
    finally:
        s.stop()
        close_all(holds)


def test_maxbuffer_rejects_counted_per_ip():
    s = Server("zkd", {"jute.maxbuffer": "4096"})
    try:
        for _ in range(5):
            c = socket.socket()
            c.bind(("127.0.0.7", 0))
            c.connect(("127.0.0.1", s.port))
            c.sendall((100000).to_bytes(4, "big"))
            c.settimeout(3)
            try:
                assert c.recv(1) == b""
            except ConnectionResetError:
                pass
            c.close()
        # Each was closed by the server (EOF above): rejected, counted and logged before that.
        m = mntr_from("127.0.0.8", s.port)
        assert m["zk_large_requests_rejected"] == "5"
        assert m["zkd_maxbuffer_rejects"] == "5"
        cons = four_letter_from("127.0.0.8", s.port, "cons")
        assert re.search(r"^ /127\.0\.0\.7\(.*maxbuffer_rejected=5,", cons, re.M), cons
        lines = [l for l in read_log(s).splitlines() if "Closing connection from client 127.0.0.7" in l]
        assert len(lines) == 1, lines
    finally:
        s.stop()


def test_global_outstanding_limit_backpressure():
    s = Server("zkd", {"globalOutstandingLimit": "10"})
    c = KazooClient(hosts=s.hosts, timeout=20)
    try:
        c.start(timeout=15)
        before = parse_mntr(four_letter(s.port, "mntr"))
        assert before["zkd_global_outstanding_limit"] == "10"
        assert before["zkd_backpressure_pauses"] == "0"
        results = [c.create_async("/bp%05d" % i, b"x" * 100) for i in range(3000)]
        for r in results:
            r.get(timeout=60)  # every request still succeeds
        after = parse_mntr(four_letter(s.port, "mntr"))
        assert int(after["zkd_backpressure_pauses"]) > 0, after
        assert after["zkd_backpressure_active_shards"] == "0"  # resumed below the limit
        assert after["zk_outstanding_requests"] == "0"
        assert int(after["zk_cnt_updatelatency"]) >= 3000
    finally:
        c.stop()
        c.close()
        s.stop()
