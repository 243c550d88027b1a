"""TLS between ensemble members (sslQuorum, ssl.quorum.*): zkd ensembles, and ensembles that mix
zkd and Apache ZooKeeper 3.8 servers, with the same zoo.cfg keys.

Every member gets a certificate signed by one CA, for 127.0.0.1 and localhost, usable both as a
TLS server and a TLS client (each member accepts and opens quorum connections), in PKCS12
stores that both kinds read (ZooKeeper's `ssl.quorum.keyStore.type=PKCS12`).

Mixed ensembles are made here, not in ensemble.py: a zkd Ensemble whose chosen nodes get the
oracle's command line (`java_node`).
"""
import datetime
import ipaddress
import os
import socket
import struct
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import certs  # noqa: E402
import ensemble as E  # noqa: E402

PASSWORD = "quorumpw"
REQUIRE_ALL = os.environ.get("ZKD_REQUIRE_ALL") == "1"


def member_cert(ca, cn):
    """A member's certificate: TLS server and client, for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(certs.name((NameOID.COMMON_NAME, cn)))
            .issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca.key, hashes.SHA256()))
    return certs.Issued(cert, key)


def write_stores(dir, ca, cn):
    """(key store, trust store) PKCS12 files for a member named `cn`, trusting `ca`."""
    os.makedirs(dir, exist_ok=True)
    m = member_cert(ca, cn)
    ks = certs.write(os.path.join(dir, "%s.p12" % cn.replace(" ", "_")),
                     pkcs12.serialize_key_and_certificates(
                         b"member", m.key, m.cert, None,
                         serialization.BestAvailableEncryption(PASSWORD.encode())))
    ts = certs.write(os.path.join(dir, "trust-%s.p12" % cn.replace(" ", "_")),
                     pkcs12.serialize_java_truststore(
                         [pkcs12.PKCS12Certificate(ca.cert, b"ca")],
                         serialization.BestAvailableEncryption(PASSWORD.encode())))
    return ks, ts


def tls_cfg(ks, ts):
    return {
        "sslQuorum": "true",
        "ssl.quorum.keyStore.location": ks,
        "ssl.quorum.keyStore.password": PASSWORD,
        "ssl.quorum.keyStore.type": "PKCS12",
        "ssl.quorum.trustStore.location": ts,
        "ssl.quorum.trustStore.password": PASSWORD,
        "ssl.quorum.trustStore.type": "PKCS12",
    }


def set_node_cfg(node, extra):
    """Sets (or replaces) zoo.cfg keys of one node."""
    with open(node.cfg_path) as f:
        lines = [ln for ln in f.read().splitlines() if ln.split("=", 1)[0] not in extra]
    lines[0:0] = ["%s=%s" % kv for kv in extra.items()]
    with open(node.cfg_path, "w") as f:
        f.write("\n".join(lines) + "\n")


def java_node(node, jvm_flags=()):
    """Makes `node` of a zkd Ensemble start Apache ZooKeeper 3.8, as ensemble.py starts the
    oracle."""
    def command():
        return ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m",
                "-Dzookeeper.admin.enableServer=false",
                "-Dzookeeper.commitLogCount=%d" % E.COMMIT_LOG_COUNT,
                "-Dzookeeper.snapshotSizeFactor=-1",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
                *jvm_flags,
                "-cp", E.ZK_CLASSPATH, "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                node.cfg_path]
    node.command = command


def have_java():
    import shutil
    return shutil.which("java") is not None and os.path.isdir("/usr/share/java")


@pytest.fixture
def pki(tmp_path):
    ca = certs.make_ca("zkd quorum CA")
    return ca, str(tmp_path / "pki")


def make(pki, name, voters=3, extra=None):
    ca, dir = pki
    ks, ts = write_stores(dir, ca, "zkd member")
    cfg = tls_cfg(ks, ts)
    cfg.update(extra or {})
    return E.Ensemble("zkd", voters=voters, extra_cfg=cfg, name=name)


def check_replicates(ens, prefix, n=20):
    """Writes through one client; then every serving member, read alone after a sync, has them
    all with the same zxids. (Only the written znodes are compared: ZooKeeper and zkd differ in
    the stats of /zookeeper/config, which no client writes.)"""
    c = ens.client(sids=ens.running())
    paths = ens.write(c, prefix, n)
    ens.drop_client(c)
    seen = {}
    for s in ens.running():
        if ens.node(s).mode() not in E.SERVING_MODES:
            continue
        r = ens.client([s])
        try:
            r.sync(prefix)
            seen[s] = {p: r.get(p)[1].mzxid for p in paths}
        finally:
            ens.drop_client(r)
    first = next(iter(seen.values()))
    assert len(seen) >= 2 and all(v == first for v in seen.values()), seen


def plain_handshake_is_dropped(node):
    """A plaintext election handshake to a TLS-only member: the connection is dropped (and the
    member logs it); True when it was."""
    s = socket.create_connection(("127.0.0.1", node.election_port), timeout=5)
    try:
        addr = b"127.0.0.1:1"
        s.sendall(struct.pack(">qqi", -65536, 99, len(addr)) + addr)
        s.settimeout(5)
        try:
            data = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            return True
        # A TLS server answers plaintext with an alert record (0x15), or closes.
        return data == b"" or data[:1] == b"\x15"
    finally:
        s.close()


def test_zkd_ensemble_over_quorum_tls_forms_replicates_and_survives_a_leader_kill(pki):
    ens = make(pki, "qtls")
    try:
        ens.start()
        for s in ens.sids:
            assert "quorum connections open with TLS" in ens.node(s).tail_log(200000), s
        check_replicates(ens, "/tls-a")
        # The listeners speak TLS only: a plaintext handshake is dropped with one line.
        ld = ens.leader()
        assert plain_handshake_is_dropped(ens.node(ld))
        ens.wait_until(lambda: "TLS handshake failed" in ens.node(ld).tail_log(200000), 10,
                       "the leader logs the plaintext connection it dropped")
        ens.kill(ld)
        ens.wait_formed(sids=[s for s in ens.sids if s != ld])
        check_replicates(ens, "/tls-b")
        ens.node(ld).start()
        ens.wait_synced()
        check_replicates(ens, "/tls-c")
        ens.assert_trees_identical()  # zkd alone: whole trees are equal
    except Exception:
        print(ens.report())
        raise
    finally:
        ens.close()


def test_a_member_with_a_certificate_from_another_ca_is_kept_out(pki):
    ens = make(pki, "qtls-ca")
    try:
        # Node 3's certificate comes from another CA; it trusts the right one, so only the
        # others' checks keep it out.
        ca, dir = pki
        other = certs.make_ca("rogue CA")
        ks, _ = write_stores(os.path.join(dir, "rogue"), other, "rogue member")
        _, ts = write_stores(os.path.join(dir, "rogue-trust"), ca, "unused")
        set_node_cfg(ens.node(3), tls_cfg(ks, ts))
        ens.start(sids=[1, 2])
        ens.node(3).start()
        logs = lambda: ens.node(1).tail_log(400000) + ens.node(2).tail_log(400000)  # noqa: E731
        ens.wait_until(lambda: 'the certificate of "CN=rogue member" is refused' in logs(), 20,
                       "a member logs that it refused CN=rogue member's certificate")
        assert ens.node(3).mode() not in ("leader", "follower"), ens.node(3).mode()
        check_replicates(ens, "/ca", n=5)
        assert ens.node(3).mode() not in ("leader", "follower")
    except Exception:
        print(ens.report())
        raise
    finally:
        ens.close()


@pytest.mark.parametrize("java_sids", [[1, 2], [3]], ids=["2java-1zkd", "1java-2zkd"])
def test_mixed_ensemble_with_java_over_quorum_tls(pki, java_sids):
    if not have_java():
        if REQUIRE_ALL:
            pytest.fail("java (Apache ZooKeeper 3.8) is not installed")
        pytest.skip("java is not installed")
    ens = make(pki, "qtls-mixed")
    try:
        for s in java_sids:
            java_node(ens.node(s))
        ens.start()
        check_replicates(ens, "/mixed-a")
        # Whoever leads, a follower of the other kind went through TLS to it.
        ld = ens.leader()
        ens.kill(ld)
        ens.wait_formed(sids=[s for s in ens.sids if s != ld])
        check_replicates(ens, "/mixed-b")
        ens.node(ld).start()
        ens.wait_synced()
        check_replicates(ens, "/mixed-c")
    except Exception:
        print(ens.report())
        raise
    finally:
        ens.close()


def test_port_unification_upgrades_an_ensemble_to_tls_node_by_node(pki):
    """The rolling upgrade: every member accepts TLS and plain TCP (portUnification=true) and
    opens plain connections; then one by one each restarts with sslQuorum=true; the ensemble
    serves throughout."""
    ens = make(pki, "qtls-unify", extra={"sslQuorum": "false", "portUnification": "true"})
    try:
        ens.start()
        for s in ens.sids:
            assert "quorum connections open in plain TCP" in ens.node(s).tail_log(200000), s
        check_replicates(ens, "/unify-0", n=5)
        for s in ens.sids:
            ens.stop(s)
            set_node_cfg(ens.node(s), {"sslQuorum": "true"})
            ens.node(s).start()
            # Every member serving again (a restarted leader starts a new epoch; a learner synced
            # by SNAP then reports the epoch's first zxid until the next write, one synced by DIFF
            # its last txn's): the write below brings every member to the same zxid.
            ens.wait_formed()
            assert "quorum connections open with TLS" in ens.node(s).tail_log(200000), s
            check_replicates(ens, "/unify-%d" % s, n=5)
        ens.assert_trees_identical()
    except Exception:
        print(ens.report())
        raise
    finally:
        ens.close()


def presented_cn(port, ca_pem, crt, key):
    """The CN of the certificate a member shows a new TLS connection to `port`."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ca_pem)
    ctx.load_cert_chain(crt, key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as s:
            der = s.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_reload_cert_files_new_connections_use_the_new_certificate(pki):
    """sslQuorumReloadCertFiles=true: the key store file is replaced; new quorum connections
    (a probe's, and a restarted member's) get the new certificate, without a restart."""
    ens = make(pki, "qtls-reload", extra={"sslQuorumReloadCertFiles": "true"})
    try:
        ca, dir = pki
        probe = member_cert(ca, "probe")
        crt = certs.write(os.path.join(dir, "probe.crt"), probe.cert_pem())
        key = certs.write(os.path.join(dir, "probe.key"), probe.key_pem())
        ca_pem = certs.write(os.path.join(dir, "ca.pem"), ca.cert_pem())
        ens.start()
        port = ens.node(1).election_port
        assert presented_cn(port, ca_pem, crt, key) == "zkd member"
        # The same path, a new certificate (written aside, then renamed over the old file).
        new_ks, _ = write_stores(os.path.join(dir, "renewed"), ca, "zkd member renewed")
        os.replace(new_ks, os.path.join(dir, "zkd_member.p12"))
        ens.wait_until(lambda: presented_cn(port, ca_pem, crt, key) == "zkd member renewed", 15,
                       "n1 shows the renewed certificate to a new connection")
        # Members reconnect with it: a follower restarted joins again.
        f = next(s for s in ens.sids if s != ens.leader())
        ens.stop(f)
        ens.node(f).start()
        ens.wait_formed()
        check_replicates(ens, "/reload", n=5)
    except Exception:
        print(ens.report())
        raise
    finally:
        ens.close()
