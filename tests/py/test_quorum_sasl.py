"""Quorum SASL (quorum.auth.enableSasl=true, DIGEST-MD5 between ensemble members): zkd
ensembles, and ensembles that mix zkd and Apache ZooKeeper 3.8 servers, with the same zoo.cfg
keys and the same JAAS file (a QuorumServer section with user_NAME="password" entries, a
QuorumLearner section with username/password).

zkd reads the JAAS file from `zkd serve --jaas-config`; ZooKeeper from
-Djava.security.auth.login.config.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ensemble as E  # noqa: E402
from test_quorum_security import check_replicates, have_java, java_node, set_node_cfg  # noqa: E402

USER = "zkquorum"
PASSWORD = "quorum-s3cret-pw"
REQUIRE_ALL = os.environ.get("ZKD_REQUIRE_ALL") == "1"

REQUIRED = {
    "quorum.auth.enableSasl": "true",
    "quorum.auth.learnerRequireSasl": "true",
    "quorum.auth.serverRequireSasl": "true",
}

JAVA_OK = "Successfully completed the authentication using SASL"


def jaas_text(learner_password=PASSWORD):
    return (
        'QuorumServer {\n'
        '  org.apache.zookeeper.server.auth.DigestLoginModule required\n'
        '  user_%s="%s";\n'
        '};\n'
        'QuorumLearner {\n'
        '  org.apache.zookeeper.server.auth.DigestLoginModule required\n'
        '  username="%s"\n'
        '  password="%s";\n'
        '};\n' % (USER, PASSWORD, USER, learner_password))


def use_jaas(node, text, java=False):
    """Writes `node`'s JAAS file and makes it start with it: zkd, or Apache ZooKeeper when
    `java`."""
    path = os.path.join(os.path.dirname(node.cfg_path), "jaas-n%d.conf" % node.sid)
    with open(path, "w") as f:
        f.write(text)
    if not java:
        node.command = lambda: [E.ZKD_BIN, "serve", "--config", node.cfg_path,
                                "--port-file", node.port_file, "--jaas-config", path]
    else:
        java_node(node, jvm_flags=["-Djava.security.auth.login.config=%s" % path])


def make(name, extra=REQUIRED, java_sids=()):
    ens = E.Ensemble("zkd", voters=3, extra_cfg=dict(extra), name=name)
    for s in ens.sids:
        use_jaas(ens.node(s), jaas_text(), java=s in java_sids)
    return ens


def election_port_open(node):
    import socket
    try:
        socket.create_connection(("127.0.0.1", node.election_port), timeout=0.5).close()
        return True
    except OSError:
        return False


def log(ens, s):
    return ens.node(s).tail_log(400000)


def test_zkd_ensemble_with_quorum_sasl_required_forms_and_replicates():
    ens = make("qsasl")
    try:
        ens.start()
        check_replicates(ens, "/sasl-a")
        ld = ens.leader()
        for s in ens.sids:
            text = log(ens, s)
            assert "quorum SASL (DIGEST-MD5): joining as user %s" % USER in text, s
            # Election connections were authenticated on their accepting side...
            assert "authenticated the learner as %s" % USER in text, s
            assert PASSWORD not in text, "the password shows in n%d's log" % s
        # ...and every follower authenticated to the leader's quorum port.
        for s in ens.sids:
            if s != ld:
                assert "leader %d at" % ld in log(ens, s) and \
                    "quorum SASL authentication completed" in log(ens, s), s
        # Every follower's learner connection was authenticated by the leader.
        assert log(ens, ld).count("learner connection from") >= 2
        # A new leader, and the old one back as a follower: authenticated again.
        ens.kill(ld)
        ens.wait_formed(sids=[s for s in ens.sids if s != ld])
        check_replicates(ens, "/sasl-b")
        ens.node(ld).start()
        ens.wait_synced()
        check_replicates(ens, "/sasl-c")
        ens.assert_trees_identical()
    except Exception:
        print(ens.report())
        raise
    finally:
        ens.close()


def test_a_member_with_the_wrong_password_cannot_join():
    ens = make("qsasl-pw")
    try:
        use_jaas(ens.node(3), jaas_text(learner_password="not-the-password"))
        ens.start(sids=[1, 2])
        ens.node(3).start()
        ens.wait_until(
            lambda: "Mismatched response" in log(ens, 1) + log(ens, 2), 30,
            "a member logs that n3's digest response did not match")
        ens.wait_until(
            lambda: "quorum SASL authentication failed: the server answered ERROR" in log(ens, 3), 30,
            "n3 logs that the others refused its authentication")
        assert ens.node(3).mode() not in E.SERVING_MODES, ens.node(3).mode()
        check_replicates(ens, "/pw", n=5)
        assert ens.node(3).mode() not in E.SERVING_MODES, ens.node(3).mode()
        for s in ens.sids:
            assert "not-the-password" not in log(ens, s) and PASSWORD not in log(ens, s), s
    except Exception:
        print(ens.report())
        raise
    finally:
        ens.close()


@pytest.mark.parametrize("java_sids", [[1, 2], [3]], ids=["2java-1zkd", "1java-2zkd"])
def test_mixed_ensemble_with_java_over_quorum_sasl(java_sids):
    """The highest sid leads a fresh ensemble: zkd n3 leading Java followers, then Java n3
    leading zkd followers; a leader kill then moves leadership to the other kind."""
    if not have_java():
        if REQUIRE_ALL:
            pytest.fail("java (Apache ZooKeeper 3.8) is not installed")
        pytest.skip("java is not installed")
    ens = make("qsasl-mixed", java_sids=java_sids)
    try:
        # n3 starts first, so that the highest sid is there when the election starts and
        # leads (all zxids are equal), and every other member dials a listening n3.
        ens.node(3).start()
        ens.wait_until(lambda: election_port_open(ens.node(3)), 30, "n3 listens on its election port")
        ens.start(sids=[1, 2])
        assert ens.leader() == 3, ens.modes()
        check_replicates(ens, "/mixed-a")
        for s in java_sids:
            assert JAVA_OK in log(ens, s), "n%d (Java) logs no successful quorum SASL" % s
        # Java authenticated a zkd learner, and a Java learner authenticated to zkd.
        java_logs = "".join(log(ens, s) for s in java_sids)
        assert "SaslQuorumAuthServer - %s" % JAVA_OK in java_logs
        assert "SaslQuorumAuthLearner - %s" % JAVA_OK in java_logs
        assert "Successfully authenticated learner: authenticationID=%s" % USER in java_logs
        zkd_sids = [s for s in ens.sids if s not in java_sids]
        for s in zkd_sids:
            assert "authenticated the learner as %s" % USER in log(ens, s) or \
                "quorum SASL authentication completed" in log(ens, s), s
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


def test_rolling_upgrade_members_that_do_not_require_sasl_accept_one_without_it():
    """ZooKeeper's rolling upgrade: with enableSasl=true and both require keys false, members
    let through a member that does not authenticate; then that member turns SASL on (learner
    side required) and authenticates to them."""
    ens = make("qsasl-roll", extra={"quorum.auth.enableSasl": "true",
                                    "quorum.auth.learnerRequireSasl": "false",
                                    "quorum.auth.serverRequireSasl": "false"})
    try:
        # n3 has no quorum SASL at all (its JAAS file is then unused).
        with open(ens.node(3).cfg_path) as f:
            lines = [ln for ln in f.read().splitlines() if not ln.startswith("quorum.auth.")]
        with open(ens.node(3).cfg_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        ens.start()
        check_replicates(ens, "/roll-a", n=5)
        assert "quorum SASL" not in log(ens, 3)
        assert "quorum.auth.serverRequireSasl=false" in log(ens, 1) + log(ens, 2)
        # Step two: n3 authenticates as a learner; the others still accept either.
        ens.stop(3)
        set_node_cfg(ens.node(3), {"quorum.auth.enableSasl": "true",
                                   "quorum.auth.learnerRequireSasl": "true",
                                   "quorum.auth.serverRequireSasl": "false"})
        ens.node(3).start()
        ens.wait_formed()
        check_replicates(ens, "/roll-b", n=5)
        assert "quorum SASL authentication completed" in log(ens, 3)
        ens.assert_trees_identical()
    except Exception:
        print(ens.report())
        raise
    finally:
        ens.close()


@pytest.mark.parametrize("case", ["kerberos", "no-jaas", "no-learner-section"])
def test_what_zkd_cannot_do_stops_the_start_with_one_sentence(case):
    """Kerberos (GSSAPI) between members, and quorum SASL without its JAAS sections: exit 2
    with a sentence naming the key or section, never a silent start without authentication."""
    ens = make("qsasl-refuse")
    try:
        n = ens.node(1)
        if case == "kerberos":
            use_jaas(n, jaas_text().replace(
                'org.apache.zookeeper.server.auth.DigestLoginModule required\n  user_',
                'com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true '
                'keyTab="/etc/zk.keytab" principal="zkquorum/localhost@EXAMPLE.COM"\n  user_'))
            expect = ["quorum.auth.server.saslLoginContext=QuorumServer", "GSSAPI"]
        elif case == "no-jaas":
            n.command = lambda: [E.ZKD_BIN, "serve", "--config", n.cfg_path, "--port-file", n.port_file]
            expect = ["quorum.auth.enableSasl=true needs a JAAS file"]
        else:
            use_jaas(n, jaas_text().split("QuorumLearner")[0])
            expect = ["no 'QuorumLearner' section", "quorum.auth.learner.saslLoginContext=QuorumLearner"]
        n.start()
        ens.wait_until(lambda: not n.alive(), 20, "n1 exits")
        assert n.proc.returncode == 2, n.proc.returncode
        text = log(ens, 1)
        for e in expect:
            assert e in text, (e, text[-2000:])
        assert PASSWORD not in text
    finally:
        ens.close()
