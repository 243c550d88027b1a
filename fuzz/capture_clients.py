#!/usr/bin/env python3
"""Captures real client bytes for the fuzz seed corpora.

Starts `zkd serve` on a temporary data dir (client port 0, AdminServer on port 0, every
four-letter word allowed), puts a relay in front of its client port and of its AdminServer
that records every byte each client sends, and drives them with real clients:

- kazoo: a session doing every kind of call it has (create with every mode, get/set/exists,
  children, ACLs, addauth digest, sync, multi, watches, reconfig-free admin calls), closed;
- Apache ZooKeeper's zkCli.sh (Debian package `zookeeper`): the same through its commands;
- four-letter words on raw sockets (`ruok`, `srvr`, `mntr`, a word that is none);
- the AdminServer through urllib (commands with and without queries, a missing page).

Then it writes the seeds (each file is one target's input, its control byte first; see the
targets in fuzz_targets/):

- corpus/client_stream/<client>-<n>: one connection's bytes (control byte 0);
- corpus/request/<client>-<n>-<i>: one request body (opcode selector, body), and the
  ConnectRequest (selector 255);
- corpus/admin_http/<client>-<n>: one HTTP request head (control byte 0), and four-letter words
  with a whitelist (control byte 1).

Run it from the repository root: `python3 fuzz/capture_clients.py [--zkd PATH]`. It needs kazoo
and /usr/share/zookeeper/bin/zkCli.sh; it rewrites the files it writes (names are stable, the
bytes carry session ids and times that change). Not part of the test suite.
"""

import argparse
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

# The request target's opcode selector: the index of the opcode in its table.
OPCODES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
           100, 101, 102, 103, 104, 105, 106, 107, -10, -11, -1]
CONNECT_SELECTOR = 255


class Relay:
    """Listens on 127.0.0.1:0, forwards each connection to `target`, records what clients send."""

    def __init__(self, target):
        self.target = target
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.streams = []  # one bytearray per accepted connection, in accept order
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = bytearray()
            with self.lock:
                self.streams.append(rec)
            threading.Thread(target=self._pump, args=(c, rec), daemon=True).start()

    def _pump(self, c, rec):
        try:
            s = socket.create_connection(self.target)
        except OSError:
            c.close()
            return
        peers = {c: s, s: c}
        try:
            while True:
                r, _, _ = select.select([c, s], [], [], 30)
                if not r:
                    return
                for x in r:
                    b = x.recv(65536)
                    if not b:
                        return
                    if x is c:
                        rec.extend(b)
                    peers[x].sendall(b)
        except OSError:
            return
        finally:
            c.close()
            s.close()

    def taken(self):
        """Waits until the relayed connections are quiet, then returns their bytes."""
        time.sleep(0.5)
        with self.lock:
            return [bytes(b) for b in self.streams if b]


def wait_for(what, cond, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    sys.exit("capture: timed out waiting for %s" % what)


def start_zkd(zkd, tmp):
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    cfg = os.path.join(tmp, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write("tickTime=2000\ndataDir=%s\nclientPort=0\n4lw.commands.whitelist=*\n"
                "admin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort=0\n"
                "extendedTypesEnabled=true\n" % data)
    port_file = os.path.join(tmp, "port")
    log = open(os.path.join(tmp, "zkd.log"), "w+")
    p = subprocess.Popen([zkd, "serve", "--config", cfg, "--port-file", port_file],
                         stdout=log, stderr=subprocess.STDOUT)
    port = int(wait_for("zkd's port file", lambda: os.path.exists(port_file) and open(port_file).read().strip()))

    def admin_port():
        log.seek(0)
        m = re.search(r"AdminServer on http://[0-9.]+:(\d+)", log.read())
        return m and int(m.group(1))
    return p, port, wait_for("the AdminServer's log line", admin_port)


def kazoo_session(port):
    from kazoo.client import KazooClient
    from kazoo.security import make_digest_acl, OPEN_ACL_UNSAFE
    zk = KazooClient(hosts="127.0.0.1:%d" % port, timeout=10)
    zk.start(timeout=10)
    zk.add_auth("digest", "fuzz:secret")
    zk.create("/k", b"v")
    zk.create("/k/seq-", b"", sequence=True)
    zk.create("/k/eph", b"e", ephemeral=True)
    zk.create("/k/acl", b"x", acl=[make_digest_acl("fuzz", "secret", all=True)])
    zk.get("/k", watch=lambda e: None)
    zk.exists("/k/none", watch=lambda e: None)
    zk.get_children("/k", watch=lambda e: None, include_data=True)
    zk.set("/k", b"v2")
    zk.get_acls("/k/acl")
    zk.set_acls("/k", OPEN_ACL_UNSAFE)
    zk.sync("/k")
    t = zk.transaction()
    t.create("/k/t1", b"1")
    t.check("/k", 1)
    t.set_data("/k/t1", b"2")
    t.delete("/k/t1")
    t.commit()
    zk.delete("/k", recursive=True)
    zk.stop()
    zk.close()


def zkcli_session(port):
    cmds = "\n".join([
        "create /cli data", "create -s /cli/s- x", "create -e /cli/e x", "create -c /cli/c x",
        "create -t 60000 /cli/ttl x", "ls -s /", "ls -R /cli", "get -s /cli", "set /cli more",
        "stat /cli", "getAcl /cli", "setAcl /cli world:anyone:crwda", "addauth digest u:p",
        "whoami", "sync /cli", "addWatch -m PERSISTENT_RECURSIVE /cli", "removewatches /cli",
        "getAllChildrenNumber /", "getEphemerals /", "config", "deleteall /cli", "quit", ""])
    subprocess.run(["/usr/share/zookeeper/bin/zkCli.sh", "-server", "127.0.0.1:%d" % port],
                   input=cmds.encode(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120, check=False)


def four_letter_words(port):
    for w in [b"ruok", b"srvr", b"mntr", b"wchs", b"abcd"]:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(w)
        try:
            s.recv(65536)
        except OSError:
            pass
        s.close()


def admin_requests(port):
    for path in ["/commands", "/commands/ruok", "/commands/mntr", "/commands/stat?x=1",
                 "/commands/zkd_log_level?level=info", "/commands/set_trace_mask?traceMask=0",
                 "/nope"]:
        try:
            urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10).read()
        except urllib.error.HTTPError:
            pass


def frames(stream):
    """Splits a client stream into (four-letter word | packet body) items."""
    out, at, first = [], 0, True
    while at + 4 <= len(stream):
        if first and stream[at:at + 4].isalpha():
            out.append(("4lw", stream[at:at + 4]))
            at += 4
            continue
        n = struct.unpack(">i", stream[at:at + 4])[0]
        if n < 0 or at + 4 + n > len(stream):
            break
        out.append(("packet", stream[at + 4:at + 4 + n]))
        first = False
        at += 4 + n
    return out


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def write_client_seeds(client, streams):
    for n, s in enumerate(streams):
        write("client_stream", "%s-%d" % (client, n), b"\x00" + s)
        packets = [b for kind, b in frames(s) if kind == "packet"]
        for i, body in enumerate(packets):
            if i == 0:
                write("request", "%s-%d-connect" % (client, n), bytes([CONNECT_SELECTOR]) + body)
                continue
            if len(body) < 8:
                continue
            op = struct.unpack(">i", body[4:8])[0]
            if op in OPCODES:
                write("request", "%s-%d-%d" % (client, n, i), bytes([OPCODES.index(op)]) + body[8:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zkd", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                                  "release", "zkd"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zkd-capture-") as tmp:
        p, port, admin = start_zkd(args.zkd, tmp)
        try:
            for client, drive in [("kazoo", kazoo_session), ("zkcli", zkcli_session),
                                  ("4lw", four_letter_words)]:
                relay = Relay(("127.0.0.1", port))
                drive(relay.port)
                write_client_seeds(client, relay.taken())
            relay = Relay(("127.0.0.1", admin))
            admin_requests(relay.port)
            for n, s in enumerate(relay.taken()):
                write("admin_http", "urllib-%d" % n, b"\x00" + s)
            for n, (word, wl) in enumerate([(b"ruok", b"srvr, ruok"), (b"mntr", b"*"), (b"stat", b""),
                                            (b"wchc", b"wchc,,wchp ")]):
                write("admin_http", "4lw-%d" % n, b"\x01" + word + wl)
        finally:
            p.terminate()
            p.wait(timeout=30)
    print("capture: seeds written under %s" % CORPUS)


if __name__ == "__main__":
    main()
