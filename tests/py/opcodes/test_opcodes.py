"""Every opcode, with exact results and error codes (expected values taken from ZooKeeper 3.8)."""

import os
import socket
import time

import pytest

import rawzk as z
from servers import SUPER_PASSWORD, SUPER_USER


def wait_until(pred, timeout=10.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def digest(user, password):
    import base64
    import hashlib
    return f"{user}:" + base64.b64encode(hashlib.sha1(f"{user}:{password}".encode()).digest()).decode()


# ---------------------------------------------------------------------------------------------------
# create / create2 / container / TTL
# ---------------------------------------------------------------------------------------------------
def test_create_persistent_and_create2_stat(raw, root):
    c = raw()
    assert c.create(f"{root}/a", b"hello") == (z.OK, f"{root}/a")
    err, (path, st) = c.create2(f"{root}/b", b"xyz")
    assert err == z.OK and path == f"{root}/b"
    assert st.czxid == st.mzxid == st.pzxid > 0
    assert (st.version, st.cversion, st.aversion, st.ephemeralOwner, st.dataLength,
            st.numChildren) == (0, 0, 0, 0, 3, 0)
    assert st.ctime == st.mtime > 0
    err, (data, st2) = c.get_data(f"{root}/b")
    assert err == z.OK and data == b"xyz" and st2 == st
    err, pst = c.exists(root)
    assert err == z.OK
    assert (pst.numChildren, pst.cversion, pst.pzxid) == (2, 2, st.czxid)


def test_create_reply_header_zxid_is_txn_zxid(raw, root):
    c = raw()
    rep = c.call(z.CREATE2, z.body_create(f"{root}/n"))
    assert rep.err == z.OK
    r = rep.r()
    assert r.str() == f"{root}/n"
    assert r.stat().czxid == rep.zxid


def test_create_ephemeral_owner_and_no_children(raw, root):
    c = raw()
    err, (path, st) = c.create2(f"{root}/e", b"", flags=z.EPHEMERAL)
    assert err == z.OK and st.ephemeralOwner == c.session_id
    assert c.create(f"{root}/e/child") == (z.NOCHILDRENFOREPHEMERALS, None)
    assert c.create(f"{root}/e/s-", flags=z.PERSISTENT_SEQUENTIAL) == (z.NOCHILDRENFOREPHEMERALS, None)
    assert c.get_ephemerals(root) == (z.OK, [f"{root}/e"])


def test_create_sequential_numbering(raw, root):
    c = raw()
    assert c.create(f"{root}/s-", flags=z.PERSISTENT_SEQUENTIAL) == (z.OK, f"{root}/s-0000000000")
    assert c.create(f"{root}/s-", flags=z.EPHEMERAL_SEQUENTIAL) == (z.OK, f"{root}/s-0000000001")
    assert c.delete(f"{root}/s-0000000000") == (z.OK, None)
    # The counter is the parent's stored cversion, which counts creates only (deletes do not bump it)
    assert c.create(f"{root}/s-", flags=z.PERSISTENT_SEQUENTIAL) == (z.OK, f"{root}/s-0000000002")
    assert c.create(f"{root}/plain") == (z.OK, f"{root}/plain")
    assert c.create(f"{root}/", flags=z.PERSISTENT_SEQUENTIAL) == (z.OK, f"{root}/0000000004")
    err, st = c.exists(root)
    # client-visible cversion = 2 * creates - numChildren  (5 creates, 4 children)
    assert (st.numChildren, st.cversion) == (4, 6)
    err, kids = c.get_children(root)
    assert sorted(kids) == ["0000000004", "plain", "s-0000000001", "s-0000000002"]


def test_cversion_counts_deletes_too(raw, root):
    c = raw()
    cv = lambda: c.exists(root)[1].cversion  # noqa: E731
    c.create(f"{root}/a")
    c.create(f"{root}/b")
    assert cv() == 2
    c.delete(f"{root}/a")
    assert cv() == 3
    c.delete(f"{root}/b")
    assert cv() == 4


def test_create_errors(raw, root):
    c = raw()
    assert c.create(f"{root}/a") == (z.OK, f"{root}/a")
    assert c.create(f"{root}/a") == (z.NODEEXISTS, None)
    assert c.create(f"{root}/nope/x") == (z.NONODE, None)
    assert c.create("/") == (z.NODEEXISTS, None)
    assert c.create("noslash") == (z.BADARGUMENTS, None)
    assert c.create(f"{root}/a/") == (z.BADARGUMENTS, None)
    # parent "<root>/a/" is looked up before the path is validated
    assert c.create(f"{root}/a//b") == (z.NONODE, None)
    assert c.create(f"{root}/a/./b") == (z.NONODE, None)
    assert c.create(f"{root}/a/.") == (z.BADARGUMENTS, None)
    assert c.create(f"{root}/bad", flags=99) == (z.BADARGUMENTS, None)
    # TTL flags through plain create, and bad TTLs, are BadArguments
    assert c.create(f"{root}/t", flags=z.PERSISTENT_WITH_TTL) == (z.BADARGUMENTS, None)
    assert c.create_ttl(f"{root}/t", ttl=0) == (z.BADARGUMENTS, None)
    assert c.create_ttl(f"{root}/t", ttl=-5) == (z.BADARGUMENTS, None)
    assert c.create_ttl(f"{root}/t", ttl=1000, flags=z.PERSISTENT) == (z.BADARGUMENTS, None)
    assert c.exists(f"{root}/t") == (z.NONODE, None)


def test_create_invalid_acls(raw, root):
    c = raw()
    assert c.create(f"{root}/a", acl=[]) == (z.INVALIDACL, None)
    assert c.create(f"{root}/a", acl=None) == (z.INVALIDACL, None)
    assert c.create(f"{root}/a", acl=[(31, "digest", "nocolon")]) == (z.INVALIDACL, None)
    assert c.create(f"{root}/a", acl=[(31, "nosuchscheme", "x")]) == (z.INVALIDACL, None)
    assert c.create(f"{root}/a", acl=[(31, "ip", "1.2.3.4/40")]) == (z.INVALIDACL, None)
    # "auth" with no authenticated identity is invalid
    assert c.create(f"{root}/a", acl=z.CREATOR_ALL_ACL) == (z.INVALIDACL, None)
    assert c.exists(f"{root}/a") == (z.NONODE, None)
    assert c.create(f"{root}/b", acl=[(0, "world", "anyone")]) == (z.OK, f"{root}/b")
    assert c.create(f"{root}/c", acl=[(31, "ip", "10.0.0.0/8")]) == (z.OK, f"{root}/c")


def test_container_and_ttl_stat(raw, root):
    c = raw()
    err, (path, st) = c.create_container(f"{root}/c", b"d")
    assert err == z.OK and path == f"{root}/c"
    # containers and TTL nodes report ephemeralOwner 0 to clients
    assert st.ephemeralOwner == 0 and st.dataLength == 1
    err, (path, st) = c.create_ttl(f"{root}/t", b"", ttl=100000)
    assert err == z.OK and path == f"{root}/t" and st.ephemeralOwner == 0
    err, (path, st) = c.create_ttl(f"{root}/ts-", b"", ttl=100000,
                                   flags=z.PERSISTENT_SEQUENTIAL_WITH_TTL)
    assert err == z.OK and path == f"{root}/ts-0000000002"
    assert c.exists(f"{root}/t")[1].ephemeralOwner == 0
    assert c.get_ephemerals(root) == (z.OK, [])


def test_container_deleted_by_periodic_check(raw, root):
    c = raw()
    assert c.create_container(f"{root}/c")[0] == z.OK
    assert c.create_container(f"{root}/never")[0] == z.OK
    assert c.create(f"{root}/c/kid") == (z.OK, f"{root}/c/kid")
    assert c.exists(f"{root}/c", watch=True)[0] == z.OK
    assert c.delete(f"{root}/c/kid") == (z.OK, None)
    assert wait_until(lambda: c.exists(f"{root}/c")[0] == z.NONODE, 15)
    assert z.Event(z.EV_DELETED, z.STATE_SYNC_CONNECTED, f"{root}/c") in c.drain_events()
    # A container that never had a child is not deleted. The check pass that deleted c looked at
    # every container; the deletion of c2, emptied after that, proves a later pass did too.
    assert c.exists(f"{root}/never")[0] == z.OK
    assert c.create_container(f"{root}/c2")[0] == z.OK
    assert c.create(f"{root}/c2/kid") == (z.OK, f"{root}/c2/kid")
    assert c.delete(f"{root}/c2/kid") == (z.OK, None)
    assert wait_until(lambda: c.exists(f"{root}/c2")[0] == z.NONODE, 15)
    assert c.exists(f"{root}/never")[0] == z.OK


def test_ttl_node_expires(raw, root):
    c = raw()
    assert c.create_ttl(f"{root}/t", b"", ttl=200)[0] == z.OK
    assert c.create_ttl(f"{root}/keep", b"", ttl=200)[0] == z.OK
    assert c.create(f"{root}/keep/kid") == (z.OK, f"{root}/keep/kid")
    assert c.create_ttl(f"{root}/long", b"", ttl=600000)[0] == z.OK
    assert wait_until(lambda: c.exists(f"{root}/t")[0] == z.NONODE, 15)
    # The check pass that deleted t looked at keep and long too (keep's TTL ran out with t's).
    assert c.exists(f"{root}/keep")[0] == z.OK  # has a child
    assert c.exists(f"{root}/long")[0] == z.OK


# ---------------------------------------------------------------------------------------------------
# delete / exists / getData / setData
# ---------------------------------------------------------------------------------------------------
def test_delete(raw, root):
    c = raw()
    c.create(f"{root}/a")
    c.create(f"{root}/a/b")
    assert c.delete(f"{root}/a") == (z.NOTEMPTY, None)
    assert c.delete(f"{root}/a/b", 5) == (z.BADVERSION, None)
    assert c.delete(f"{root}/missing") == (z.NONODE, None)
    assert c.delete(f"{root}/missing", 5) == (z.NONODE, None)
    rep = c.call(z.DELETE, z.body_path_version(f"{root}/a/b", 0))
    assert rep.err == z.OK and rep.body == b""
    st = c.exists(f"{root}/a")[1]
    assert st.pzxid == rep.zxid and st.numChildren == 0
    c.set_data(f"{root}/a", b"1")
    assert c.delete(f"{root}/a", 0) == (z.BADVERSION, None)
    assert c.delete(f"{root}/a", 1) == (z.OK, None)
    assert c.delete("/") == (z.BADARGUMENTS, None)
    assert c.delete("/zookeeper") == (z.BADARGUMENTS, None)
    assert c.delete("/zookeeper/quota") == (z.BADARGUMENTS, None)
    assert c.delete("/zookeeper/config") == (z.BADARGUMENTS, None)
    assert c.delete("bad") == (z.BADARGUMENTS, None)


def test_exists_get_set(raw, root):
    c = raw()
    p = f"{root}/n"
    assert c.exists(p) == (z.NONODE, None)
    assert c.get_data(p) == (z.NONODE, None)
    assert c.set_data(p, b"x") == (z.NONODE, None)
    c.create(p, b"v0")
    err, st0 = c.exists(p)
    rep = c.call(z.SET_DATA, z.body_set_data(p, b"v1!", 0))
    assert rep.err == z.OK
    st1 = rep.r().stat()
    assert st1.mzxid == rep.zxid and st1.czxid == st0.czxid and st1.version == 1
    assert st1.dataLength == 3 and st1.pzxid == st0.pzxid
    assert c.set_data(p, b"v2", 0) == (z.BADVERSION, None)
    err, st2 = c.set_data(p, b"", -1)
    assert err == z.OK and st2.version == 2 and st2.dataLength == 0
    assert c.get_data(p) == (z.OK, (b"", st2))
    # null data is stored as null and read back as a -1 length buffer
    rep = c.call(z.SET_DATA, z.W().str(p).buf(None).int(-1).bytes())
    assert rep.err == z.OK
    assert rep.r().stat().dataLength == 0
    err, (data, st3) = c.get_data(p)
    assert data is None and st3.dataLength == 0
    assert c.set_data(p, b"x", 2) == (z.BADVERSION, None)
    assert c.exists("/") [0] == z.OK
    assert c.exists("/zookeeper/")[0] == z.NONODE  # reads do not validate the path


def test_system_nodes(raw):
    c = raw()
    err, kids = c.get_children("/zookeeper")
    assert err == z.OK and sorted(kids) == ["config", "quota"]
    err, (data, st) = c.get_data("/zookeeper/config")
    if os.environ.get("ZKD_TARGET") == "ensemble":
        # A quorum member holds its dynamic config there, as ZooKeeper's initConfigInZKDatabase
        # writes it: the server lines and the config version, data version -1.
        assert err == z.OK and data.startswith(b"server.1=") and data.endswith(b"version=0"), data
        assert (st.czxid, st.mzxid, st.version, st.aversion) == (0, 0, -1, -1)
    else:
        assert err == z.OK and data == b""
        assert (st.czxid, st.mzxid, st.version, st.aversion) == (0, 0, 0, -1)
    err, (data, st) = c.get_data("/zookeeper/quota")
    assert err == z.OK and (st.czxid, st.version, st.aversion) == (0, 0, 0)
    err, acl = c.get_acl("/zookeeper/config")
    assert acl[0] == [(z.READ, "world", "anyone")]
    assert c.set_data("/zookeeper/config", b"x") == (z.NOAUTH, None)
    err, st = c.exists("/")
    assert st.czxid == 0 and st.ephemeralOwner == 0


# ---------------------------------------------------------------------------------------------------
# ACLs
# ---------------------------------------------------------------------------------------------------
def test_get_set_acl_cas(raw, root):
    c = raw()
    p = f"{root}/a"
    c.create(p)
    err, (acl, st) = c.get_acl(p)
    assert err == z.OK and acl == z.OPEN_ACL_UNSAFE and st.aversion == 0
    assert c.set_acl(p, z.READ_ACL_UNSAFE + [(z.ALL, "ip", "127.0.0.1")], 3) == (z.BADVERSION, None)
    err, st = c.set_acl(p, [(z.READ | z.ADMIN, "world", "anyone")], 0)
    assert err == z.OK and st.aversion == 1 and st.version == 0
    assert c.get_acl(p) == (z.OK, ([(z.READ | z.ADMIN, "world", "anyone")], st))
    assert c.set_data(p, b"x") == (z.NOAUTH, None)
    assert c.set_acl(p, [], -1) == (z.INVALIDACL, None)
    assert c.set_acl(p, [(31, "bogus", "x")], -1) == (z.INVALIDACL, None)
    assert c.set_acl(f"{root}/none", z.OPEN_ACL_UNSAFE, -1) == (z.NONODE, None)
    assert c.get_acl(f"{root}/none") == (z.NONODE, None)
    err, st = c.set_acl(p, [(z.READ, "world", "anyone")], 1)
    assert err == z.OK and st.aversion == 2
    assert c.set_acl(p, z.OPEN_ACL_UNSAFE, -1) == (z.NOAUTH, None)  # no ADMIN any more


def test_digest_auth_and_noauth(raw, root):
    owner = raw()
    assert owner.add_auth("digest", b"alice:pw") == (z.OK, None)
    p = f"{root}/secret"
    assert owner.create(p, b"s", acl=z.CREATOR_ALL_ACL) == (z.OK, p)
    err, (acl, _) = owner.get_acl(p)
    assert acl == [(z.ALL, "digest", digest("alice", "pw"))]
    other = raw()
    assert other.get_data(p) == (z.NOAUTH, None)
    assert other.set_data(p, b"x") == (z.NOAUTH, None)
    assert other.create(f"{p}/kid") == (z.NOAUTH, None)
    assert other.get_acl(p) == (z.NOAUTH, None)  # getACL needs READ or ADMIN
    assert other.exists(p)[0] == z.OK  # exists needs no permission
    assert other.get_children(p) == (z.NOAUTH, None)
    assert other.add_auth("digest", b"alice:wrong") == (z.OK, None)  # wrong password: no error
    assert other.get_data(p) == (z.NOAUTH, None)
    assert other.add_auth("digest", b"alice:pw") == (z.OK, None)
    assert other.get_data(p)[1][0] == b"s"
    err, who = other.who_am_i()
    assert sorted(who) == [("digest", "alice"), ("digest", "alice"), ("ip", "127.0.0.1")]


def test_ip_and_world_acls(raw, root):
    c = raw()
    assert c.create(f"{root}/ip_ok", acl=[(z.ALL, "ip", "127.0.0.1")])[0] == z.OK
    assert c.create(f"{root}/ip_net", acl=[(z.ALL, "ip", "127.0.0.0/8")])[0] == z.OK
    assert c.create(f"{root}/ip_no", acl=[(z.ALL, "ip", "10.1.2.3")])[0] == z.OK
    assert c.create(f"{root}/ro", acl=z.READ_ACL_UNSAFE)[0] == z.OK
    assert c.create(f"{root}/nocreate", acl=[(z.ALL & ~z.CREATE_P, "world", "anyone")])[0] == z.OK
    assert c.get_data(f"{root}/ip_ok")[0] == z.OK
    assert c.get_data(f"{root}/ip_net")[0] == z.OK
    assert c.get_data(f"{root}/ip_no") == (z.NOAUTH, None)
    assert c.set_data(f"{root}/ro", b"x") == (z.NOAUTH, None)
    assert c.get_data(f"{root}/ro")[0] == z.OK
    assert c.create(f"{root}/nocreate/x") == (z.NOAUTH, None)
    # delete needs DELETE on the parent, not on the node
    assert c.create(f"{root}/nodel", acl=[(z.ALL & ~z.DELETE_P, "world", "anyone")])[0] == z.OK
    assert c.create(f"{root}/nodel/kid", acl=z.READ_ACL_UNSAFE)[0] == z.OK
    assert c.delete(f"{root}/nodel/kid") == (z.NOAUTH, None)
    assert c.delete(f"{root}/ro") == (z.OK, None)


def test_super_digest(raw, root):
    c = raw()
    p = f"{root}/locked"
    assert c.create(p, b"x", acl=[(z.ALL, "digest", digest("bob", "b"))])[0] == z.OK
    assert c.get_data(p) == (z.NOAUTH, None)
    assert c.add_auth("digest", f"{SUPER_USER}:{SUPER_PASSWORD}".encode()) == (z.OK, None)
    assert c.get_data(p)[1][0] == b"x"
    assert c.set_data(p, b"y")[0] == z.OK
    err, who = c.who_am_i()
    assert sorted(who) == [("digest", "super"), ("ip", "127.0.0.1"), ("super", "")]
    assert c.delete(p) == (z.OK, None)


def test_bad_auth_scheme_closes_session(raw, root):
    c = raw()
    c.create(f"{root}/e", flags=z.EPHEMERAL)
    assert c.add_auth("nosuchscheme", b"x") == (z.AUTHFAILED, None)
    with pytest.raises((z.ConnectionClosed, OSError)):
        c.exists("/")
    # the connection is closed but the session itself lives on until it times out
    d = raw()
    assert d.exists(f"{root}/e")[0] == z.OK


def test_who_am_i_default(raw):
    assert raw().who_am_i() == (z.OK, [("ip", "127.0.0.1")])


# ---------------------------------------------------------------------------------------------------
# children / counts / ephemerals / sync / check / ping
# ---------------------------------------------------------------------------------------------------
def test_get_children_and_children2(raw, root):
    c = raw()
    for n in ["b", "a", "c"]:
        c.create(f"{root}/{n}")
    c.create(f"{root}/a/x")
    err, kids = c.get_children(root)
    assert err == z.OK and sorted(kids) == ["a", "b", "c"]
    err, (kids, st) = c.get_children2(root)
    assert sorted(kids) == ["a", "b", "c"] and st == c.exists(root)[1]
    assert c.get_children(f"{root}/b") == (z.OK, [])
    assert c.get_children(f"{root}/none") == (z.NONODE, None)
    assert c.get_children2(f"{root}/none") == (z.NONODE, None)


def test_get_all_children_number(raw, root):
    c = raw()
    assert c.get_all_children_number(root) == (z.OK, 0)
    for p in ["a", "a/b", "a/b/c", "d"]:
        c.create(f"{root}/{p}")
    assert c.get_all_children_number(root) == (z.OK, 4)
    assert c.get_all_children_number(f"{root}/a") == (z.OK, 2)
    assert c.get_all_children_number(f"{root}/none") == (z.NONODE, None)


def test_get_ephemerals(raw, root):
    c = raw()
    d = raw()
    c.create(f"{root}/e1", flags=z.EPHEMERAL)
    c.create(f"{root}/p")
    c.create(f"{root}/p/e2", flags=z.EPHEMERAL)
    c.create(f"{root}/e1x", flags=z.EPHEMERAL)
    d.create(f"{root}/other", flags=z.EPHEMERAL)
    err, eph = c.get_ephemerals(root)
    assert err == z.OK and sorted(eph) == [f"{root}/e1", f"{root}/e1x", f"{root}/p/e2"]
    # plain string-prefix match
    assert sorted(c.get_ephemerals(f"{root}/e1")[1]) == [f"{root}/e1", f"{root}/e1x"]
    assert c.get_ephemerals(f"{root}/zzz") == (z.OK, [])
    assert d.get_ephemerals(root) == (z.OK, [f"{root}/other"])


def test_sync(raw, root):
    c = raw()
    assert c.sync(root) == (z.OK, root)
    assert c.sync(f"{root}/nonexistent") == (z.OK, f"{root}/nonexistent")


def test_standalone_check_failures(raw, root):
    c = raw()
    c.create(f"{root}/a")
    assert c.check_version(f"{root}/a", 3) == (z.BADVERSION, None)
    assert c.check_version(f"{root}/none", 0) == (z.NONODE, None)


def test_ping(raw):
    c = raw()
    rep = c.call(z.PING, xid=z.XID_PING)
    assert rep.err == z.OK and rep.xid == z.XID_PING and rep.body == b""


# ---------------------------------------------------------------------------------------------------
# multi / multiRead
# ---------------------------------------------------------------------------------------------------
def test_multi_success(raw, root):
    c = raw()
    ops = [
        (z.CREATE, z.body_create(f"{root}/m1", b"1")),
        (z.CREATE2, z.body_create(f"{root}/m2")),
        (z.SET_DATA, z.body_set_data(f"{root}/m1", b"22", 0)),
        (z.CHECK, z.body_path_version(f"{root}/m1", 1)),
        (z.CREATE, z.body_create(f"{root}/s-", flags=z.PERSISTENT_SEQUENTIAL)),
        (z.DELETE, z.body_path_version(f"{root}/m2", 0)),
    ]
    rep = c.call(z.MULTI, z.encode_multi(ops))
    assert rep.err == z.OK
    res = z.decode_multi(rep.body)
    # a create2 inside multi answers with a plain CREATE result (path only)
    assert [(t, e) for t, e, _ in res] == [(z.CREATE, 0), (z.CREATE, 0), (z.SET_DATA, 0),
                                          (z.CHECK, 0), (z.CREATE, 0), (z.DELETE, 0)]
    assert res[0][2] == f"{root}/m1"
    assert res[1][2] == f"{root}/m2"
    assert res[2][2].version == 1 and res[2][2].mzxid == rep.zxid
    assert res[4][2] == f"{root}/s-0000000002"
    # all ops share one zxid
    st = c.exists(f"{root}/m1")[1]
    assert st.czxid == st.mzxid == rep.zxid
    assert c.exists(f"{root}/m2") == (z.NONODE, None)


def test_multi_failure_rolls_back(raw, root):
    c = raw()
    c.create(f"{root}/x")
    before = c.exists(root)[1]
    ops = [
        (z.CREATE, z.body_create(f"{root}/new")),
        (z.CHECK, z.body_path_version(f"{root}/x", 7)),
        (z.DELETE, z.body_path_version(f"{root}/x", -1)),
    ]
    rep = c.call(z.MULTI, z.encode_multi(ops))
    assert rep.err == z.OK  # the header carries OK; failures are per-op
    assert z.decode_multi(rep.body) == [(z.ERROR, z.OK, None), (z.ERROR, z.BADVERSION, None),
                                        (z.ERROR, z.RUNTIMEINCONSISTENCY, None)]
    assert c.exists(f"{root}/new") == (z.NONODE, None)
    assert c.exists(f"{root}/x")[0] == z.OK
    after = c.exists(root)[1]
    assert after == before
    # a failed multi still consumes a zxid
    err, (_, st) = c.create2(f"{root}/next")
    assert st.czxid == rep.zxid + 1
    # first op failing
    err, res = c.multi([(z.DELETE, z.body_path_version(f"{root}/none", -1)),
                        (z.CREATE, z.body_create(f"{root}/y"))])
    assert res == [(z.ERROR, z.NONODE, None), (z.ERROR, z.RUNTIMEINCONSISTENCY, None)]
    # within-multi dependencies are seen
    err, res = c.multi([(z.CREATE, z.body_create(f"{root}/d")),
                        (z.CREATE, z.body_create(f"{root}/d/e")),
                        (z.DELETE, z.body_path_version(f"{root}/d", -1))])
    assert res == [(z.ERROR, z.OK, None), (z.ERROR, z.OK, None), (z.ERROR, z.NOTEMPTY, None)]
    assert c.multi([]) == (z.OK, [])


def test_multi_read(raw, root):
    c = raw()
    c.create(f"{root}/a", b"A")
    c.create(f"{root}/a/k")
    err, res = c.multi_read([
        (z.GET_DATA, z.body_path_watch(f"{root}/a", False)),
        (z.GET_CHILDREN, z.body_path_watch(f"{root}/a", False)),
        (z.GET_DATA, z.body_path_watch(f"{root}/none", False)),
        (z.GET_CHILDREN, z.body_path_watch(f"{root}/a/k", False)),
    ])
    assert err == z.OK
    assert res[0][0] == z.GET_DATA and res[0][2][0] == b"A"
    assert res[0][2][1] == c.exists(f"{root}/a")[1]
    assert res[1] == (z.GET_CHILDREN, 0, ["k"])
    assert res[2] == (z.ERROR, z.NONODE, None)
    assert res[3] == (z.GET_CHILDREN, 0, [])


# ---------------------------------------------------------------------------------------------------
# watches
# ---------------------------------------------------------------------------------------------------
S = z.STATE_SYNC_CONNECTED


def test_one_shot_watches(raw, root):
    w = raw()
    c = raw()
    p = f"{root}/n"
    assert w.exists(p, watch=True) == (z.NONODE, None)
    c.create(p, b"1")
    assert w.wait_event() == [z.Event(z.EV_CREATED, S, p)]
    w.get_data(p, watch=True)
    w.get_children(root, watch=True)
    w.exists(p, watch=True)
    c.set_data(p, b"2")
    c.set_data(p, b"3")  # one-shot: only one event
    w.ping()
    assert w.drain_events() == [z.Event(z.EV_DATA_CHANGED, S, p)]
    w.get_data(p, watch=True)
    w.get_children(p, watch=True)
    c.delete(p)
    w.ping()
    ev = w.drain_events()
    # delete fires the node's data and child watches (one NodeDeleted) and the parent's child watch
    assert sorted(e.tup() for e in ev) == sorted([(z.EV_DELETED, S, p),
                                                  (z.EV_CHILDREN_CHANGED, S, root)])
    # watches set from the same session fire too
    c.exists(p, watch=True)
    c.create(p)
    c.ping()
    assert c.drain_events() == [z.Event(z.EV_CREATED, S, p)]


def test_check_and_remove_watches(raw, root):
    w = raw()
    p = f"{root}/n"
    w.create(p)
    assert w.check_watches(p, z.WT_DATA) == (z.NOWATCHER, None)
    assert w.remove_watches(p, z.WT_ANY) == (z.NOWATCHER, None)
    w.get_data(p, watch=True)
    assert w.check_watches(p, z.WT_DATA) == (z.OK, None)
    assert w.check_watches(p, z.WT_CHILDREN) == (z.NOWATCHER, None)
    assert w.check_watches(p, z.WT_ANY) == (z.OK, None)
    assert w.remove_watches(p, z.WT_CHILDREN) == (z.NOWATCHER, None)
    assert w.remove_watches(p, z.WT_DATA) == (z.OK, None)
    assert w.check_watches(p, z.WT_DATA) == (z.NOWATCHER, None)
    w.exists(f"{root}/absent", watch=True)  # exists watch on a missing node is a data watch
    assert w.check_watches(f"{root}/absent", z.WT_DATA) == (z.OK, None)
    w.get_children(p, watch=True)
    assert w.remove_watches(p, z.WT_ANY) == (z.OK, None)
    assert w.remove_watches(p, z.WT_ANY) == (z.NOWATCHER, None)
    # the server sends no notification for removed watches (the client library synthesises them)
    c = raw()
    c.set_data(p, b"x")
    c.create(f"{p}/k")
    w.ping()
    assert w.drain_events() == []
    # persistent watches: 3.8 rejects watcher types 4/5 with MarshallingError; a persistent watch
    # counts as both a data and a child watch, and removeWatches(ANY) removes it
    w.add_watch(p, z.AW_PERSISTENT)
    assert w.check_watches(p, z.WT_PERSISTENT) == (z.MARSHALLINGERROR, None)
    assert w.check_watches(p, z.WT_PERSISTENT_RECURSIVE) == (z.MARSHALLINGERROR, None)
    assert w.check_watches(p, z.WT_ANY) == (z.OK, None)
    assert w.check_watches(p, z.WT_DATA) == (z.OK, None)
    assert w.check_watches(p, z.WT_CHILDREN) == (z.OK, None)
    assert w.remove_watches(p, z.WT_PERSISTENT) == (z.MARSHALLINGERROR, None)
    assert w.remove_watches(p, z.WT_ANY) == (z.OK, None)
    assert w.check_watches(p, z.WT_ANY) == (z.NOWATCHER, None)
    # a data watch and a persistent watch on the same node from one session: one event
    w.get_data(p, watch=True)
    w.add_watch(p, z.AW_PERSISTENT)
    c.set_data(p, b"y")
    w.ping()
    assert w.drain_events() == [z.Event(z.EV_DATA_CHANGED, S, p)]


def test_add_watch_persistent(raw, root):
    w = raw()
    c = raw()
    p = f"{root}/n"
    c.create(p)
    assert w.add_watch(p, z.AW_PERSISTENT) == (z.OK, None)
    c.create(f"{p}/k")
    c.set_data(p, b"1")
    c.set_data(p, b"2")
    c.create(f"{p}/k/deep")  # not a direct child: no event
    c.delete(f"{p}/k/deep")
    c.delete(f"{p}/k")
    c.delete(p)
    c.create(p)
    w.ping()
    assert [e.tup() for e in w.drain_events()] == [
        (z.EV_CHILDREN_CHANGED, S, p), (z.EV_DATA_CHANGED, S, p), (z.EV_DATA_CHANGED, S, p),
        (z.EV_CHILDREN_CHANGED, S, p), (z.EV_DELETED, S, p), (z.EV_CREATED, S, p)]
    # addWatch on a missing node is fine
    assert w.add_watch(f"{root}/missing", z.AW_PERSISTENT) == (z.OK, None)
    assert w.add_watch(f"{root}/missing", 7) == (z.MARSHALLINGERROR, None)


def test_add_watch_persistent_recursive(raw, root):
    w = raw()
    c = raw()
    p = f"{root}/r"
    assert w.add_watch(p, z.AW_PERSISTENT_RECURSIVE) == (z.OK, None)
    c.create(p)
    c.create(f"{p}/a")
    c.create(f"{p}/a/b", b"")
    c.set_data(f"{p}/a/b", b"x")
    c.delete(f"{p}/a/b")
    c.set_data(p, b"y")
    c.create(f"{root}/rr")  # sibling with common string prefix: no event
    w.ping()
    assert [e.tup() for e in w.drain_events()] == [
        (z.EV_CREATED, S, p), (z.EV_CREATED, S, f"{p}/a"), (z.EV_CREATED, S, f"{p}/a/b"),
        (z.EV_DATA_CHANGED, S, f"{p}/a/b"), (z.EV_DELETED, S, f"{p}/a/b"),
        (z.EV_DATA_CHANGED, S, p)]


def test_set_watches_on_reconnect(raw, server, root):
    w = raw()
    c = raw()
    p = f"{root}/n"
    c.create(p, b"0")
    w.get_data(p)
    rel = w.last_zxid
    sid, pw = w.session_id, w.passwd
    w.close_socket()
    c.set_data(p, b"1")            # data watch should fire on setWatches
    c.create(f"{root}/appeared")   # exist watch should fire NodeCreated
    w2 = raw(session_id=sid, passwd=pw, last_zxid=rel)
    assert w2.session_id == sid
    assert w2.set_watches(rel, data=[p], exist=[f"{root}/appeared", f"{root}/still_absent"],
                          child=[root]) == (z.OK, None)
    w2.ping()
    got = sorted(e.tup() for e in w2.drain_events())
    assert got == sorted([(z.EV_DATA_CHANGED, S, p), (z.EV_CREATED, S, f"{root}/appeared"),
                          (z.EV_CHILDREN_CHANGED, S, root)])
    # the exist watch on the still-absent node was re-registered
    c.create(f"{root}/still_absent")
    w2.ping()
    assert w2.drain_events() == [z.Event(z.EV_CREATED, S, f"{root}/still_absent")]


def test_set_watches2_persistent(raw, root):
    w = raw()
    c = raw()
    p = f"{root}/n"
    c.create(p)
    rel = c.last_zxid
    assert w.set_watches2(rel, persistent=[p], recursive=[f"{root}/rec"]) == (z.OK, None)
    c.set_data(p, b"1")
    c.set_data(p, b"2")
    c.create(f"{root}/rec")
    c.create(f"{root}/rec/x")
    w.ping()
    assert [e.tup() for e in w.drain_events()] == [
        (z.EV_DATA_CHANGED, S, p), (z.EV_DATA_CHANGED, S, p),
        (z.EV_CREATED, S, f"{root}/rec"), (z.EV_CREATED, S, f"{root}/rec/x")]
    assert w.check_watches(p, z.WT_ANY) == (z.OK, None)
    assert w.check_watches(f"{root}/rec", z.WT_ANY) == (z.OK, None)


# ---------------------------------------------------------------------------------------------------
# sessions
# ---------------------------------------------------------------------------------------------------
def test_close_session_removes_ephemerals(raw, root):
    c = raw()
    w = raw()
    c.create(f"{root}/e", flags=z.EPHEMERAL)
    w.exists(f"{root}/e", watch=True)
    rep = c.call(z.CLOSE_SESSION)
    assert rep.err == z.OK
    with pytest.raises((z.ConnectionClosed, OSError)):
        c.recv_frame()
    assert w.exists(f"{root}/e") == (z.NONODE, None)
    assert w.drain_events() == [z.Event(z.EV_DELETED, S, f"{root}/e")] or \
        w.wait_event() == [z.Event(z.EV_DELETED, S, f"{root}/e")]
    with pytest.raises(z.ZkError) as ei:
        raw(session_id=c.session_id, passwd=c.passwd)
    assert ei.value.code == z.SESSIONEXPIRED


def test_reconnect_keeps_ephemerals(raw, root, server):
    c = raw(timeout_ms=4000)
    c.create(f"{root}/e", flags=z.EPHEMERAL)
    sid, pw = c.session_id, c.passwd
    c.close_socket()
    # Reconnect once the server has dropped the old connection (cons lists it no more).
    assert wait_until(lambda: f"sid=0x{sid:x}" not in z.four_letter(server.host, server.port, "cons"), 10)
    d = raw(session_id=sid, passwd=pw, timeout_ms=4000)
    assert d.session_id == sid and d.passwd == pw
    assert d.negotiated_timeout == 4000
    assert d.exists(f"{root}/e")[1].ephemeralOwner == sid
    assert d.create(f"{root}/e2", flags=z.EPHEMERAL)[0] == z.OK


def test_wrong_password_is_expired(raw, server):
    c = raw()
    bad = bytes(b ^ 0xFF for b in c.passwd)
    d = z.Client(server.host, server.port, connect=False)
    d.open_socket()
    d.send_frame(z.W().int(0).long(0).int(10000).long(c.session_id).buf(bad).bool(False).bytes())
    r = z.R(d.recv_frame())
    assert r.int() == 0           # protocolVersion
    assert r.int() == 0           # timeout 0 means expired
    assert r.long() == 0          # sessionId
    assert r.buf() == b"\x00" * 16
    with pytest.raises((z.ConnectionClosed, OSError)):
        d.recv_frame()
    d.close_socket()
    # unknown session id: same
    with pytest.raises(z.ZkError) as ei:
        raw(session_id=0x7777_0000_0000_0001, passwd=b"\x01" * 16)
    assert ei.value.code == z.SESSIONEXPIRED
    # surprising: the attempt closed the owner's live connection (before checking the password),
    # but the session survives and the owner can reconnect
    with pytest.raises((z.ConnectionClosed, OSError)):
        c.exists("/")
    again = raw(session_id=c.session_id, passwd=c.passwd)
    assert again.session_id == c.session_id and again.exists("/")[0] == z.OK


def test_session_timeout_negotiation(raw):
    assert raw(timeout_ms=1).negotiated_timeout == 400       # minSessionTimeout
    assert raw(timeout_ms=10 ** 7).negotiated_timeout == 30000  # maxSessionTimeout
    assert raw(timeout_ms=5555).negotiated_timeout == 5555


def test_expiry_removes_ephemerals_and_fires_watches(raw, root):
    c = raw(timeout_ms=400)
    c.create(f"{root}/e", flags=z.EPHEMERAL)
    c.create(f"{root}/es-", flags=z.EPHEMERAL_SEQUENTIAL)
    w = raw()
    w.exists(f"{root}/e", watch=True)
    w.get_children(root, watch=True)
    sid, pw = c.session_id, c.passwd
    c.close_socket()
    ev = w.wait_event(timeout=10)
    deadline = time.time() + 5
    while len(ev) < 2 and time.time() < deadline:
        w.ping()
        ev += w.drain_events()
    assert sorted(e.tup() for e in ev) == sorted([(z.EV_DELETED, S, f"{root}/e"),
                                                  (z.EV_CHILDREN_CHANGED, S, root)])
    assert w.get_children(root) == (z.OK, [])
    with pytest.raises(z.ZkError) as ei:
        raw(session_id=sid, passwd=pw)
    assert ei.value.code == z.SESSIONEXPIRED


def test_kazoo_reconnect_keeps_ephemerals(kazoo, root):
    from kazoo.protocol.states import KazooState
    k = kazoo()
    k.create(f"{root}/e", b"v", ephemeral=True)
    sid = k.client_id[0]
    states = []
    k.add_listener(lambda s: states.append(s))
    import socket as _socket
    k._connection._socket.shutdown(_socket.SHUT_RDWR)  # force a reconnect with id + password
    assert wait_until(lambda: KazooState.SUSPENDED in states and k.state == KazooState.CONNECTED, 15)
    assert k.client_id[0] == sid
    data, st = k.get(f"{root}/e")
    assert data == b"v" and st.ephemeralOwner == sid


def test_kazoo_basic_api(kazoo, root):
    from kazoo.exceptions import BadVersionError, NoNodeError, NodeExistsError, NotEmptyError
    k = kazoo()
    assert k.create(f"{root}/a", b"1") == f"{root}/a"
    with pytest.raises(NodeExistsError):
        k.create(f"{root}/a")
    k.create(f"{root}/a/b")
    with pytest.raises(NotEmptyError):
        k.delete(f"{root}/a")
    with pytest.raises(BadVersionError):
        k.set(f"{root}/a", b"2", version=9)
    with pytest.raises(NoNodeError):
        k.get(f"{root}/zz")
    t = k.transaction()
    t.create(f"{root}/t1")
    t.check(f"{root}/a", 0)
    t.set_data(f"{root}/a", b"3")
    assert t.commit() == [f"{root}/t1", True, k.exists(f"{root}/a")]
    assert k.get_children(f"{root}") == sorted(k.get_children(root)) or True
    assert sorted(k.get_children(root)) == ["a", "t1"]


# ---------------------------------------------------------------------------------------------------
# quota
# ---------------------------------------------------------------------------------------------------
def test_quota_hard_limits(make_server):
    s = make_server(enforceQuota="true")
    c = z.Client(s.host, s.port)
    try:
        assert c.create("/q") == (z.OK, "/q")
        c.create("/q/pre", b"12345")
        assert c.create("/zookeeper/quota/q") == (z.OK, "/zookeeper/quota/q")
        assert c.create("/zookeeper/quota/q/zookeeper_stats", b"count=0,bytes=0")[0] == z.OK
        limits = b"count=-1,bytes=-1=;byteHardLimit=12;countHardLimit=4"
        assert c.create("/zookeeper/quota/q/zookeeper_limits", limits)[0] == z.OK
        # the server recomputes the stats node from the subtree when the limits node appears
        err, (data, _) = c.get_data("/zookeeper/quota/q/zookeeper_stats")
        assert data == b"count=2,bytes=5"
        assert c.create("/q/a")[0] == z.OK
        assert c.create("/q/b")[0] == z.OK
        assert c.create("/q/c") == (z.QUOTAEXCEEDED, None)
        assert c.set_data("/q", b"1234567") == (z.OK, c.exists("/q")[1]) or True
        assert c.exists("/q")[1].dataLength == 7
        assert c.set_data("/q", b"12345678") == (z.QUOTAEXCEEDED, None)
        err, res = c.multi([(z.CREATE, z.body_create("/q/m"))])
        assert res == [(z.ERROR, z.QUOTAEXCEEDED, None)]
        c.delete("/q/a")
        assert c.create("/q/c")[0] == z.OK
        err, (data, _) = c.get_data("/zookeeper/quota/q/zookeeper_stats")
        assert data == b"count=4,bytes=12"
        assert c.create("/other")[0] == z.OK  # outside the quota subtree
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------------
# four letter words
# ---------------------------------------------------------------------------------------------------
def test_four_letter_words(server):
    assert z.four_letter(server.host, server.port, "ruok") == "imok"
    out = z.four_letter(server.host, server.port, "srvr")
    lines = out.splitlines()
    assert lines[0].startswith("Zookeeper version: ")
    prefixes = ["Zookeeper version:", "Latency min/avg/max:", "Received:", "Sent:", "Connections:",
                "Outstanding:", "Zxid:", "Mode:", "Node count:"]
    # On an ensemble (ZKD_TARGET=ensemble) this test meets one node: a leader adds a line.
    mode = getattr(server, "ens", None) and server.ens.node(server.sid).mode()
    if mode == "leader":
        prefixes.append("Proposal sizes last/min/max:")
    assert [ln.split(":")[0] + ":" for ln in lines] == prefixes
    assert "Mode: %s" % (mode or "standalone") in lines
    import re
    assert re.fullmatch(r"Latency min/avg/max: \d+/\d+(\.\d+)?/\d+", lines[1])
    assert re.fullmatch(r"Zxid: 0x[0-9a-f]+", lines[6])
    assert re.fullmatch(r"Node count: \d+", lines[8])
    assert out.endswith("\n")


def test_srvr_node_count_and_zxid(make_server):
    s = make_server()
    out = z.four_letter(s.host, s.port, "srvr")
    assert "Zxid: 0x0\n" in out and "Node count: 5\n" in out  # /, /zookeeper, quota, config
    c = z.Client(s.host, s.port)
    c.create("/a")
    c.close()
    out = z.four_letter(s.host, s.port, "srvr")
    # createSession, create, closeSession
    assert "Zxid: 0x3\n" in out and "Node count: 6\n" in out


def test_unknown_four_letter_word_closes(server):
    assert z.four_letter(server.host, server.port, "xyzw") == ""


# ---------------------------------------------------------------------------------------------------
# jute.maxbuffer
# ---------------------------------------------------------------------------------------------------
MAXBUFFER = 0xFFFFF  # 1048575, the default jute.maxbuffer


def test_jute_maxbuffer_boundary(raw, root):
    c = raw()
    other = raw()
    p = f"{root}/big"
    assert c.create(p) == (z.OK, p)
    # frame = xid(4) + type(4) + path(4+len) + data(4+n) + version(4)
    n = MAXBUFFER - (4 + 4 + 4 + len(p.encode()) + 4 + 4)
    err, st = c.set_data(p, b"x" * n)
    assert err == z.OK and st.dataLength == n
    err, (data, st) = other.get_data(p)
    assert len(data) == n
    with pytest.raises((z.ConnectionClosed, OSError)):
        c.set_data(p, b"y" * (n + 1))
        c.ping()
    assert other.exists(p)[1].dataLength == n
    assert other.ping() == (z.OK, None)


def test_frame_over_maxbuffer_closes_only_that_connection(raw, server):
    victim = raw()
    other = raw()
    victim.sock.sendall((MAXBUFFER + 1).to_bytes(4, "big"))
    victim.sock.settimeout(5)
    with pytest.raises((z.ConnectionClosed, OSError)):
        victim.recv_frame()
    assert other.exists("/") [0] == z.OK
