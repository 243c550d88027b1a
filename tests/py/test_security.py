"""Security on the client port: TLS (kazoo with and without a client certificate, wrong CA,
expired certificate, PKCS12 and encrypted PEM stores, certificate rotation under load, port
unification, bad bytes on the TLS port), x509 ACLs, SASL DIGEST-MD5 (kazoo + pure-sasl) and
enforced authentication — the SASL and enforcement outcomes side by side with Apache ZooKeeper
3.8 configured with the same zoo.cfg and JAAS file. Certificates are made here (tests/py/certs.py).
"""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import (ZKD_BIN, ZK_CLASSPATH, PortHold, four_letter, read_port_file, require,
                      target_kind, wait_until)

try:
    import certs
    from cryptography.x509.oid import NameOID
    HAVE_CRYPTO = True
except ImportError:  # pragma: no cover - reported by require()
    HAVE_CRYPTO = False

try:
    import puresasl  # noqa: F401
    HAVE_PURESASL = True
except ImportError:
    HAVE_PURESASL = False

SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
JAAS = """Server {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_super="adminsecret"
       user_bob="bobsecret"
       user_alice="alicesecret";
};
"""


class Srv:
    """zkd (or the oracle) with a zoo.cfg, an optional JAAS file and an optional secure port
    (held with PortHold: ZooKeeper's secureClientPort=0 means "none", so it cannot be 0)."""

    def __init__(self, kind, cfg, jaas=None, secure=False):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="zkd-sec-%s-" % kind)
        self.hold = PortHold() if kind == "oracle" else None
        self.secure_hold = PortHold() if secure else None
        self.port = self.hold.port if self.hold else None
        self.secure_port = self.secure_hold.port if self.secure_hold else None
        full = {
            "tickTime": "500",
            "dataDir": os.path.join(self.dir, "data"),
            "clientPort": str(self.port or 0),
            "clientPortAddress": "127.0.0.1",
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
            "maxClientCnxns": "0",
        }
        if secure:
            full["secureClientPort"] = str(self.secure_port)
            full["secureClientPortAddress"] = "127.0.0.1"
            full["serverCnxnFactory"] = "org.apache.zookeeper.server.NettyServerCnxnFactory"
        full.update(cfg)
        self.cfg_path = os.path.join(self.dir, "zoo.cfg")
        with open(self.cfg_path, "w") as f:
            for k, v in full.items():
                f.write("%s=%s\n" % (k, v))
        env = dict(os.environ)
        jvm = ["java", "-Xmx256m", "-Dzookeeper.admin.enableServer=false"]
        if jaas is not None:
            jaas_path = os.path.join(self.dir, "jaas.conf")
            with open(jaas_path, "w") as f:
                f.write(jaas)
            env["SERVER_JVMFLAGS"] = "-Djava.security.auth.login.config=%s" % jaas_path
            jvm.append("-Djava.security.auth.login.config=%s" % jaas_path)
        self.log_path = os.path.join(self.dir, "server.log")
        self.log = open(self.log_path, "w")
        port_file = os.path.join(self.dir, "zkd.port")
        if kind == "zkd":
            cmd = [ZKD_BIN, "serve", "--config", self.cfg_path, "--port-file", port_file]
        else:
            cmd = jvm + ["-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.ZooKeeperServerMain", self.cfg_path]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s): %s" % (kind, self.proc.returncode, self.tail()))
            if self.port is None:
                self.port = read_port_file(port_file)
            try:
                # ZooKeeper answers ruok before its database is loaded (and closes client
                # connections until then): srvr reporting a mode is the real "serving".
                if (self.port is not None and four_letter(self.port, "ruok", 1.0) == "imok"
                        and "Mode: " in four_letter(self.port, "srvr", 1.0)):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("%s did not start: %s" % (kind, self.tail()))
            time.sleep(0.05)

    def tail(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    @property
    def hosts(self):
        return "127.0.0.1:%d" % self.port

    @property
    def secure_hosts(self):
        return "127.0.0.1:%d" % self.secure_port

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for h in (self.hold, self.secure_hold):
            if h:
                h.close()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def zkd_only(why):
    """These tests check zkd's own side (its logs, stores, reload) and run its TLS set-up; under
    ZKD_TARGET=oracle they do not apply (not a missing prerequisite)."""
    if target_kind() != "zkd":
        pytest.skip("zkd only: %s" % why)


def kazoo(hosts, **kw):
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry
    return KazooClient(hosts=hosts, timeout=10,
                       connection_retry=KazooRetry(max_tries=1), **kw)


def subject(*pairs):
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
            "CN": NameOID.COMMON_NAME, "E": NameOID.EMAIL_ADDRESS}
    return certs.name(*[(oids[k], v) for k, v in pairs])


@pytest.fixture(scope="module")
def pki():
    require(HAVE_CRYPTO, "the Python cryptography package (pip install cryptography)")
    d = tempfile.mkdtemp(prefix="zkd-pki-")
    p = certs.Pki(d)
    yield p
    shutil.rmtree(d, ignore_errors=True)


def tls_cfg(pki, **extra):
    cfg = {
        "ssl.keyStore.location": pki.server_pem,
        "ssl.trustStore.location": pki.ca_pem,
        "ssl.clientAuth": "want",
    }
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def tls_server(pki):
    zkd_only("TLS tests run against zkd (the Debian oracle has no netty TLS set-up here)")
    s = Srv("zkd", tls_cfg(pki, **{"X509AuthenticationProvider.superUser": "CN=root,O=zkd test"}), secure=True)
    yield s
    s.stop()


def tls_client(server, pki, cert=None, ca=None):
    kw = dict(use_ssl=True, ca=ca or pki.ca_pem, verify_certs=True)
    if cert:
        kw.update(certfile=cert[0], keyfile=cert[1])
    return kazoo(server.secure_hosts, **kw)


# --- TLS ------------------------------------------------------------------------------------

def test_kazoo_over_tls_with_and_without_a_client_certificate(tls_server, pki):
    from kazoo.exceptions import NoAuthError
    from kazoo.security import make_acl
    alice = pki.client("alice", subject(("C", "US"), ("O", "zkd test"), ("CN", "alice")))
    bob = pki.client("bob", subject(("C", "US"), ("O", "zkd test"), ("CN", "bob")))
    # Java's X500Principal.getName(): RDNs last to first.
    alice_id = "CN=alice,O=zkd test,C=US"
    zk = tls_client(tls_server, pki, cert=alice)
    zk.start(timeout=15)
    zk.create("/tls-alice", b"secret", acl=[make_acl("x509", alice_id, all=True)])
    assert zk.get("/tls-alice")[0] == b"secret"
    zk.stop()
    # Another certificate from the same CA: connected, but not alice.
    zk = tls_client(tls_server, pki, cert=bob)
    zk.start(timeout=15)
    with pytest.raises(NoAuthError):
        zk.get("/tls-alice")
    zk.stop()
    # No client certificate (clientAuth=want): connected, only world/ip rights.
    zk = tls_client(tls_server, pki)
    zk.start(timeout=15)
    assert zk.exists("/") is not None
    with pytest.raises(NoAuthError):
        zk.get("/tls-alice")
    zk.stop()
    # The x509 superUser passes every ACL.
    root = pki.client("root", subject(("O", "zkd test"), ("CN", "root")))
    zk = tls_client(tls_server, pki, cert=root)
    zk.start(timeout=15)
    assert zk.get("/tls-alice")[0] == b"secret"
    zk.stop()
    assert "Authenticated Id 'CN=alice,O=zkd test,C=US' for Scheme 'x509'" in tls_server.log_text()


def test_plain_port_still_serves_beside_the_secure_one(tls_server):
    zk = kazoo(tls_server.hosts)
    zk.start(timeout=15)
    assert zk.exists("/") is not None
    zk.stop()
    assert "secureClientPort=%d" % tls_server.secure_port in four_letter(tls_server.port, "conf")


def handshake(port, cafile, cert=None):
    """A raw TLS handshake (Python's ssl): None on success, else the error text."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                # TLS 1.3 reports a refused client certificate after the handshake, on read.
                s.sendall(b"\x00\x00\x00\x2c" + bytes(44))
                s.settimeout(10)
                data = s.recv(1)
                return None if data else "closed"
        except (ssl.SSLError, OSError) as e:
            return str(e)


def test_wrong_ca_and_expired_certificates_are_refused_with_one_line(pki):
    zkd_only("zkd's log lines")
    other = certs.make_ca("someone else's CA")
    wrong = pki.client("wrong-ca", subject(("CN", "mallory")), ca=other)
    import datetime
    expired = pki.client("expired", subject(("CN", "old")),
                         not_before=certs.NOW - datetime.timedelta(days=30),
                         not_after=certs.NOW - datetime.timedelta(days=1))
    good = pki.client("good", subject(("CN", "good")))
    s = Srv("zkd", tls_cfg(pki, **{"ssl.clientAuth": "need"}), secure=True)
    try:
        assert handshake(s.secure_port, pki.ca_pem, good) is None
        other_ca = certs.write(os.path.join(pki.dir, "other-ca.pem"), other.cert_pem())
        lines = []

        def refused(cafile, cert, reason):
            """One failed handshake: the client sees an error, the server logs exactly one line
            naming the peer and `reason` (each case waits for its line before the next)."""
            assert handshake(s.secure_port, cafile, cert) is not None
            wait_until(lambda: len(tls_lines()) > len(lines), 10, "the refusal is logged")
            new = tls_lines()[len(lines):]
            assert len(new) == 1, new
            assert "127.0.0.1:" in new[0] and re.search(reason, new[0]), (reason, new[0])
            lines.extend(new)

        def tls_lines():
            return [l for l in s.log_text().splitlines() if "TLS" in l and "handshake" in l]

        base = len(tls_lines())
        lines.extend(tls_lines())
        assert base == 0, lines
        # need: no certificate at all is refused.
        refused(pki.ca_pem, None, r"[Nn]o.*[Cc]ertificate|CertificateRequired")
        # A client trusting another CA refuses the server's certificate (its alert is logged).
        refused(other_ca, good, r"UnknownCA|alert")
        refused(pki.ca_pem, wrong, r"UnknownIssuer")
        refused(pki.ca_pem, expired, r"[Ee]xpired")
        assert handshake(s.secure_port, pki.ca_pem, good) is None
        assert len(tls_lines()) == 4
        # kazoo with the expired certificate does not get a session.
        zk = tls_client(s, pki, cert=expired)
        with pytest.raises(Exception):
            zk.start(timeout=5)
        zk.stop()
    finally:
        s.stop()


def test_pkcs12_and_encrypted_pem_stores(pki):
    zkd_only("zkd's store loading")
    for cfg in (
        {"ssl.keyStore.location": pki.server_p12("server.p12", "storepw"),
         "ssl.keyStore.password": "storepw",
         "ssl.trustStore.location": pki.trust_p12("trust.p12", "trustpw"),
         "ssl.trustStore.password": "trustpw"},
        {"ssl.keyStore.location": pki.server_pem_encrypted("server-enc.pem", "pempw"),
         "ssl.keyStore.password": "pempw", "ssl.keyStore.type": "PEM",
         "ssl.trustStore.location": pki.ca_pem},
    ):
        cfg["ssl.clientAuth"] = "need"
        s = Srv("zkd", cfg, secure=True)
        try:
            c = pki.client("p12client", subject(("CN", "p12")))
            zk = tls_client(s, pki, cert=c)
            zk.start(timeout=15)
            zk.create("/p12", b"x")
            zk.stop()
            # No password in anything the server shows or logs.
            shown = four_letter(s.port, "conf") + four_letter(s.port, "envi") + s.log_text()
            for secret in ("storepw", "trustpw", "pempw"):
                assert secret not in shown
        finally:
            s.stop()


def test_certificate_rotation_under_load(pki):
    """client.certReload=true: the key store is replaced while a client keeps writing; no
    request fails, the old connection keeps working, new connections get the new certificate."""
    zkd_only("zkd's reload")
    import datetime
    store = os.path.join(pki.dir, "rotating.pem")
    shutil.copy(pki.server_pem, store)
    s = Srv("zkd", tls_cfg(pki, **{"ssl.keyStore.location": store, "client.certReload": "true"}), secure=True)
    try:
        zk = tls_client(s, pki)
        zk.start(timeout=15)
        zk.ensure_path("/rot")
        errors, done = [], threading.Event()
        count = [0]

        def load():
            while not done.is_set():
                try:
                    zk.set("/rot", str(count[0]).encode())
                    zk.get("/rot")
                    count[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure fails the test
                    errors.append(repr(e))
                    return
        t = threading.Thread(target=load)
        t.start()
        wait_until(lambda: count[0] > 50, 20, "load runs")
        # A new server certificate from a new CA, written by rename (as certbot-style tools do).
        ca2 = certs.make_ca("rotated CA")
        server2 = certs.issue(ca2, subject(("CN", "localhost")), server=True,
                              not_after=certs.NOW + datetime.timedelta(days=30))
        ca2_pem = certs.write(os.path.join(pki.dir, "ca2.pem"), ca2.cert_pem())
        certs.write(store + ".tmp", server2.cert_pem() + server2.key_pem())
        os.rename(store + ".tmp", store)
        wait_until(lambda: handshake(s.secure_port, ca2_pem) is None, 20,
                   "new connections get the new certificate")
        assert handshake(s.secure_port, pki.ca_pem) is not None, "the old certificate is gone"
        seen = count[0]
        wait_until(lambda: count[0] > seen + 50, 20, "the old connection keeps working")
        done.set()
        t.join(10)
        assert errors == [], errors
        zk.stop()
    finally:
        s.stop()


def test_port_unification_serves_plain_and_tls_on_one_port(pki):
    zkd_only("zkd")
    s = Srv("zkd", tls_cfg(pki, **{"client.portUnification": "true"}))
    try:
        plain = kazoo(s.hosts)
        plain.start(timeout=15)
        plain.create("/unified", b"p")
        plain.stop()
        zk = kazoo(s.hosts, use_ssl=True, ca=pki.ca_pem, verify_certs=True)
        zk.start(timeout=15)
        assert zk.get("/unified")[0] == b"p"
        zk.stop()
        assert four_letter(s.port, "ruok") == "imok"
    finally:
        s.stop()


def test_bad_bytes_on_the_tls_port_cost_one_connection_and_one_line_each(tls_server, pki):
    import struct
    hello = bytes.fromhex("16030100") + b"\x02\x00" + bytes(10)  # a handshake record cut short
    cases = {
        "plaintext": struct.pack(">i", 44) + bytes(44),
        "truncated": hello[:20],
        "random": os.urandom(4096),
        "huge record": b"\x17\x03\x03\xff\xff" + bytes(64),
    }
    for what, data in cases.items():
        before = len(tls_server.log_text().splitlines())
        with socket.create_connection(("127.0.0.1", tls_server.secure_port), timeout=10) as c:
            c.sendall(data)
            if what == "truncated":
                c.shutdown(socket.SHUT_WR)
            c.settimeout(10)
            # The server answers with at most an alert, then closes.
            got = b""
            while True:
                b = c.recv(4096)
                if not b:
                    break
                got += b
                assert len(got) < 1024, what
        time.sleep(0.2)  # let a log line (if any) reach the file; the assertion bounds it
        new = tls_server.log_text().splitlines()[before:]
        assert len(new) <= 1, (what, new)
    zk = tls_client(tls_server, pki)
    zk.start(timeout=15)
    assert zk.exists("/") is not None
    zk.stop()


# --- SASL and enforced authentication, zkd vs Apache ZooKeeper 3.8 ---------------------------

def sasl_outcomes(kind):
    """What kazoo sees doing SASL against `kind`: the ACL outcomes for bob, alice and an
    anonymous session, the error for a wrong password."""
    from kazoo.exceptions import NoAuthError
    from kazoo.security import make_acl
    out = {}
    s = Srv(kind, {"authProvider.sasl": SASL_PROVIDER}, jaas=JAAS)
    try:
        def sasl(user, pw):
            return kazoo(s.hosts, sasl_options={"mechanism": "DIGEST-MD5", "username": user, "password": pw})
        bob = sasl("bob", "bobsecret")
        bob.start(timeout=15)
        bob.create("/bob", b"b", acl=[make_acl("sasl", "bob", all=True)])
        bob.create("/bob-read", b"r", acl=[make_acl("sasl", "bob", all=True),
                                             make_acl("sasl", "alice", read=True)])
        out["bob reads /bob"] = bob.get("/bob")[0]
        bob.stop()
        alice = sasl("alice", "alicesecret")
        alice.start(timeout=15)
        for path, op in (("/bob", "get"), ("/bob-read", "get"), ("/bob-read", "set")):
            try:
                if op == "get":
                    out["alice %s %s" % (op, path)] = alice.get(path)[0]
                else:
                    alice.set(path, b"x")
                    out["alice %s %s" % (op, path)] = "ok"
            except NoAuthError:
                out["alice %s %s" % (op, path)] = "NoAuth"
        alice.stop()
        anon = kazoo(s.hosts)
        anon.start(timeout=15)
        try:
            anon.get("/bob")
            out["anonymous get /bob"] = "ok"
        except NoAuthError:
            out["anonymous get /bob"] = "NoAuth"
        # An invalid sasl id in an ACL.
        try:
            anon.create("/bad-sasl-id", b"", acl=[make_acl("sasl", "a@b@c", all=True)])
            out["invalid sasl id"] = "ok"
        except Exception as e:  # noqa: BLE001
            out["invalid sasl id"] = type(e).__name__
        anon.stop()
        out["wrong password"] = failed_login(sasl("bob", "wrong"))
        out["unknown user"] = failed_login(sasl("eve", "x"))
    finally:
        s.stop()
    return out


def enforced_outcomes(kind, cfg):
    """Under enforced SASL: an authenticated session works; an anonymous one gets ZooKeeper's
    error on its first request (raw bytes: reply header xid/err) and its connection is closed."""
    import struct
    out = {}
    full = {"authProvider.sasl": SASL_PROVIDER}
    full.update(cfg)
    s = Srv(kind, full, jaas=JAAS)
    try:
        bob = kazoo(s.hosts, sasl_options={"mechanism": "DIGEST-MD5", "username": "bob", "password": "bobsecret"})
        bob.start(timeout=15)
        bob.create("/enforced", b"e")
        out["bob"] = bob.get("/enforced")[0]
        bob.stop()
        # A raw anonymous session: connect, then exists("/").
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
            connect = struct.pack(">iqiq", 0, 0, 10000, 0) + struct.pack(">i", 16) + bytes(16) + b"\x00"
            c.sendall(struct.pack(">i", len(connect)) + connect)
            n = struct.unpack(">i", recv_exact(c, 4))[0]
            recv_exact(c, n)
            path = b"/"
            req = struct.pack(">ii", 7, 3) + struct.pack(">i", len(path)) + path + b"\x00"
            c.sendall(struct.pack(">i", len(req)) + req)
            n = struct.unpack(">i", recv_exact(c, 4))[0]
            xid, zxid, err = struct.unpack(">iqi", recv_exact(c, n)[:16])
            out["anonymous request"] = (xid, zxid, err)
            if kind == "zkd":
                # ZooKeeper's Netty connections (the TLS-capable factory) close right after
                # this reply; its NIO connections only stop reading. zkd closes.
                c.settimeout(10)
                while c.recv(4096):
                    pass
        # kazoo's view of the same.
        anon = kazoo(s.hosts)
        try:
            anon.start(timeout=10)
            anon.get("/enforced")
            out["kazoo anonymous"] = "ok"
        except Exception as e:  # noqa: BLE001
            out["kazoo anonymous"] = type(e).__name__
        finally:
            anon.stop()
        out["wrong password"] = failed_login(
            kazoo(s.hosts, sasl_options={"mechanism": "DIGEST-MD5", "username": "bob", "password": "nope"}))
        if kind == "zkd":
            out["metrics"] = four_letter(s.port, "cons")
    finally:
        s.stop()
    return out


def failed_login(zk):
    """What kazoo reports for a SASL login that should fail: its state and the error of the
    start or of a first request (kazoo's start() may return while the server closes the
    connection for AUTH_FAILED). Which of kazoo's errors shows is a race inside kazoo (the close
    can come before or after kazoo counts itself connected: a start timeout, or ConnectionLoss on
    the request), so both are "refused"; any other error is named."""
    try:
        zk.start(timeout=10)
        zk.exists("/")
        return "connected"
    except Exception as e:  # noqa: BLE001
        name = type(e).__name__
        return "refused" if name in ("KazooTimeoutError", "ConnectionLoss", "AuthFailedError") else name
    finally:
        zk.stop()


def recv_exact(c, n):
    b = b""
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += x
    return b


def oracle_available():
    return shutil.which("java") is not None and os.path.isdir("/usr/share/zookeeper")


def test_sasl_digest_md5_matches_zookeeper():
    require(HAVE_PURESASL, "pure-sasl (pip install pure-sasl)")
    require(oracle_available(), "Apache ZooKeeper 3.8 (the oracle) and java")
    ours = sasl_outcomes("zkd")
    theirs = sasl_outcomes("oracle")
    assert ours == theirs
    assert ours["bob reads /bob"] == b"b" and ours["alice get /bob"] == "NoAuth"
    assert ours["wrong password"] != "connected"


@pytest.mark.parametrize("cfg", [
    # Without the zookeeper. prefix: ZooKeeper makes an unknown zoo.cfg key the system property
    # "zookeeper." + key, so a prefixed key would be zookeeper.zookeeper.* there (and ignored).
    {"sessionRequireClientSASLAuth": "true"},
    {"enforce.auth.enabled": "true", "enforce.auth.schemes": "sasl"},
])
def test_enforced_authentication_matches_zookeeper(cfg):
    require(HAVE_PURESASL, "pure-sasl (pip install pure-sasl)")
    require(oracle_available(), "Apache ZooKeeper 3.8 (the oracle) and java")
    ours = enforced_outcomes("zkd", cfg)
    metrics = ours.pop("metrics")
    theirs = enforced_outcomes("oracle", cfg)
    assert ours == theirs
    assert ours["anonymous request"] == (7, 0, -124), "SessionClosedRequireSaslAuth"
    # Counted per IP (cons, admin zkd_limits, Prometheus).
    assert re.search(r"unauthenticated=[1-9]", metrics), metrics
    assert re.search(r"auth_failures=[1-9]", metrics), metrics


def test_secrets_never_shown(pki):
    zkd_only("zkd's own surfaces")
    s = Srv("zkd", dict(tls_cfg(pki), **{
        "ssl.keyStore.password": "", "ssl.trustStore.password": "truststorepw9",
        "SASLAuthenticationProvider.superPassword": "superpw9", "authProvider.sasl": SASL_PROVIDER,
        "admin.enableServer": "true", "admin.serverAddress": "127.0.0.1", "admin.serverPort": "0"}),
        jaas=JAAS, secure=True)
    try:
        import json
        import urllib.request
        shown = "".join(four_letter(s.port, w) for w in ("conf", "envi", "srvr", "cons", "mntr"))
        m = re.search(r"AdminServer on http://([0-9.:]+)(/commands)", s.log_text())
        assert m, s.tail()
        for cmd in ("configuration", "environment", "initial_configuration", "connections"):
            with urllib.request.urlopen("http://%s/commands/%s" % (m.group(1), cmd), timeout=10) as r:
                shown += r.read().decode()
        icfg = json.loads(urllib.request.urlopen(
            "http://%s/commands/initial_configuration" % m.group(1), timeout=10).read())
        assert "ssl.trustStore.password=***" in icfg["initial_configuration"], icfg
        shown += s.log_text()
        for secret in ("truststorepw9", "superpw9", "bobsecret", "adminsecret"):
            assert secret not in shown, secret
    finally:
        s.stop()
