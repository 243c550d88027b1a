use super::*;
use crate::tree::{acl_cache::open_acl_unsafe, WatchSink, WatcherId};

struct NoSink;
impl WatchSink for NoSink {
    fn deliver(&mut self, _: WatcherId, _: EventType, _: &str, _: &Arc<Vec<Acl>>) {}
}

fn ctx(opcode: OpCode, auth: &[Id]) -> WriteCtx<'_> {
    WriteCtx {
        session_id: 7,
        cxid: 1,
        opcode: opcode as i32,
        auth,
        super_digest: None,
        skip_acl: false,
        extended_types_enabled: true,
    }
}

fn create(path: &str, flags: i32) -> Request {
    Request::Create(
        OpCode::Create,
        CreateRequest { path: path.into(), data: Some(vec![]), acl: open_acl_unsafe(), flags },
    )
}

fn err_of(b: &TxnBody) -> Option<i32> {
    match b {
        TxnBody::Error(e) => Some(e.err),
        _ => None,
    }
}

#[test]
fn pipelined_creates_see_each_other() {
    let tree = DataTree::new();
    let mut p = Prep::new();
    let c = ctx(OpCode::Create, &[]);
    let (_, b) = p.prep(&tree, &c, create("/a", 0), 1, 0);
    assert!(matches!(b, TxnBody::Create(_)));
    let (_, b) = p.prep(&tree, &c, create("/a/b", 0), 2, 0);
    assert!(matches!(b, TxnBody::Create(_)), "parent created by an unapplied txn");
    let (h, b) = p.prep(&tree, &c, create("/a", 0), 3, 0);
    assert_eq!((h.txn_type, err_of(&b)), (OpCode::Error as i32, Some(ErrorCode::NodeExists as i32)));
    let (_, b) = p.prep(&tree, &c, create("/a/s-", 2), 4, 0);
    match b {
        TxnBody::Create(t) => assert_eq!((t.path.as_str(), t.parent_c_version), ("/a/s-0000000001", 2)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_codes_in_zookeeper_order() {
    let tree = DataTree::new();
    let mut p = Prep::new();
    let c = ctx(OpCode::Create, &[]);
    let cases = [
        (create("a", 0), ErrorCode::BadArguments),
        (create("/x/y", 0), ErrorCode::NoNode),
        (create("/a/", 0), ErrorCode::NoNode),
        (create("/zookeeper", 0), ErrorCode::NodeExists),
        (create("/", 0), ErrorCode::NodeExists),
        (create("/a", 9), ErrorCode::BadArguments),
        (create("/a/.", 0), ErrorCode::NoNode),
        (Request::Delete(DeleteRequest { path: "/zookeeper".into(), version: -1 }), ErrorCode::BadArguments),
        (Request::Delete(DeleteRequest { path: "/nope".into(), version: -1 }), ErrorCode::NoNode),
        (
            Request::SetData(SetDataRequest { path: "/zookeeper".into(), data: None, version: 5 }),
            ErrorCode::BadVersion,
        ),
        (
            Request::SetData(SetDataRequest { path: "bad".into(), data: None, version: -1 }),
            ErrorCode::BadArguments,
        ),
        (
            Request::Delete(DeleteRequest { path: "/zookeeper/quota".into(), version: -1 }),
            ErrorCode::BadArguments,
        ),
    ];
    for (i, (req, want)) in cases.iter().enumerate() {
        let (_, b) = p.prep(&tree, &c, req.clone(), 10 + i as i64, 0);
        assert_eq!(err_of(&b), Some(*want as i32), "case {i}: {req:?}");
    }
    // NotEmpty, and ephemeral parents.
    let mut s = NoSink;
    for (z, req) in [(100, create("/p", 0)), (101, create("/p/c", 0)), (102, create("/e", 1))] {
        let (h, b) = p.prep(&tree, &c, req.clone(), z, 0);
        tree.apply(&h, &b, &mut s);
        p.applied(z);
    }
    let (_, b) = p.prep(&tree, &c, Request::Delete(DeleteRequest { path: "/p".into(), version: -1 }), 103, 0);
    assert_eq!(err_of(&b), Some(ErrorCode::NotEmpty as i32));
    let (_, b) = p.prep(&tree, &c, create("/e/x", 0), 104, 0);
    assert_eq!(err_of(&b), Some(ErrorCode::NoChildrenForEphemerals as i32));
}

#[test]
fn multi_failure_rolls_back_and_marks_ops() {
    let tree = DataTree::new();
    let mut p = Prep::new();
    let c = ctx(OpCode::Multi, &[]);
    let ops = vec![
        MultiOp::Create(
            OpCode::Create,
            CreateRequest { path: "/m".into(), data: None, acl: open_acl_unsafe(), flags: 0 },
        ),
        MultiOp::Delete(DeleteRequest { path: "/nope".into(), version: -1 }),
        MultiOp::SetData(SetDataRequest { path: "/m".into(), data: None, version: -1 }),
    ];
    let (h, b) = p.prep(&tree, &c, Request::Multi(ops), 1, 0);
    assert_eq!(h.txn_type, OpCode::Multi as i32);
    match b {
        TxnBody::Multi(v) => {
            let types: Vec<i32> = v.iter().map(|(t, _)| *t).collect();
            assert_eq!(types, vec![1, -1, -1]);
            assert_eq!(err_of(&v[1].1), Some(ErrorCode::NoNode as i32));
            assert_eq!(err_of(&v[2].1), Some(ErrorCode::RuntimeInconsistency as i32));
        }
        other => panic!("{other:?}"),
    }
    // The rolled-back create is not visible to the next request.
    let (_, b) = p.prep(
        &tree,
        &ctx(OpCode::SetData, &[]),
        Request::SetData(SetDataRequest { path: "/m".into(), data: None, version: -1 }),
        2,
        0,
    );
    assert_eq!(err_of(&b), Some(ErrorCode::NoNode as i32));
}

#[test]
fn ttl_and_acl_rules() {
    let tree = DataTree::new();
    let mut p = Prep::new();
    let mut c = ctx(OpCode::CreateTtl, &[]);
    let ttl = |ttl, flags| {
        Request::CreateTtl(CreateTtlRequest {
            path: "/t".into(),
            data: None,
            acl: open_acl_unsafe(),
            flags,
            ttl,
        })
    };
    assert_eq!(err_of(&p.prep(&tree, &c, ttl(0, 5), 1, 0).1), Some(ErrorCode::BadArguments as i32));
    assert_eq!(err_of(&p.prep(&tree, &c, ttl(100, 0), 2, 0).1), Some(ErrorCode::BadArguments as i32));
    assert!(matches!(p.prep(&tree, &c, ttl(100, 5), 3, 0).1, TxnBody::CreateTtl(_)));
    c.extended_types_enabled = false;
    assert_eq!(err_of(&p.prep(&tree, &c, ttl(100, 6), 4, 0).1), Some(ErrorCode::Unimplemented as i32));
    // An ACL that only alice may change.
    let alice = Id { scheme: "digest".into(), id: super::super::acl::digest_id("alice:pw") };
    let req = Request::Create(
        OpCode::Create,
        CreateRequest {
            path: "/private".into(),
            data: None,
            acl: vec![Acl { perms: perms::READ, id: alice.clone() }],
            flags: 0,
        },
    );
    let (h, b) = p.prep(&tree, &ctx(OpCode::Create, &[]), req.clone(), 5, 0);
    tree.apply(&h, &b, &mut NoSink);
    p.applied(5);
    let set = Request::SetData(SetDataRequest { path: "/private".into(), data: None, version: -1 });
    assert_eq!(
        err_of(&p.prep(&tree, &ctx(OpCode::SetData, &[]), set.clone(), 6, 0).1),
        Some(ErrorCode::NoAuth as i32)
    );
    let auth = [alice];
    assert_eq!(
        err_of(&p.prep(&tree, &ctx(OpCode::SetData, &auth), set.clone(), 7, 0).1),
        Some(ErrorCode::NoAuth as i32),
        "READ only"
    );
    let sup = [Id { scheme: "super".into(), id: String::new() }];
    assert!(matches!(p.prep(&tree, &ctx(OpCode::SetData, &sup), set.clone(), 8, 0).1, TxnBody::SetData(_)));
}

/// The straightforward `validatePath` port (a Vec of chars, indexed as Java does), kept as the
/// reference for the one-pass version.
fn validate_path_reference(path: &str) -> Result<(), ErrorCode> {
    let c: Vec<char> = path.chars().collect();
    if c.first() != Some(&'/') {
        return Err(ErrorCode::BadArguments);
    }
    if c.len() == 1 {
        return Ok(());
    }
    if c[c.len() - 1] == '/' {
        return Err(ErrorCode::BadArguments);
    }
    let mut last = '/';
    for i in 1..c.len() {
        let ch = c[i];
        let u = ch as u32;
        let invalid = ch == '\0'
            || (ch == '/' && last == '/')
            || (ch == '.' && last == '.' && c[i - 2] == '/' && (i + 1 == c.len() || c[i + 1] == '/'))
            || (ch == '.' && c[i - 1] == '/' && (i + 1 == c.len() || c[i + 1] == '/'))
            || (0x01..=0x1f).contains(&u)
            || (0x7f..=0x9f).contains(&u)
            || (0xd800..=0xf8ff).contains(&u)
            || u >= 0xfff0;
        if invalid {
            return Err(ErrorCode::BadArguments);
        }
        last = ch;
    }
    Ok(())
}

#[test]
fn validate_path_cases() {
    for ok in ["/", "/a", "/a/b", "/..a", "/a..", "/.a", "/a/.b/c", "/a/...", "/zookeeper"] {
        assert_eq!(validate_path(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "a",
        "//",
        "/a/",
        "/a//b",
        "/.",
        "/..",
        "/a/./b",
        "/a/../b",
        "/a/..",
        "/a\0",
        "/\u{1}",
        "/\u{ffff}",
    ] {
        assert_eq!(validate_path(bad), Err(ErrorCode::BadArguments), "{bad:?}");
    }
}

proptest::proptest! {
    #[test]
    fn validate_path_matches_the_reference(path in "[/a.\\x00\\x01\\u{e000}é]{0,8}") {
        proptest::prop_assert_eq!(validate_path(&path), validate_path_reference(&path), "{:?}", path);
    }

    #[test]
    fn fixup_acl_owned_matches_fixup_acl(
        picks in proptest::collection::vec(0usize..6, 0..5),
        authed in proptest::bool::ANY,
    ) {
        let pool = [
            Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } },
            Acl { perms: perms::READ, id: Id { scheme: "world".into(), id: "anyone".into() } },
            Acl { perms: perms::ALL, id: Id { scheme: "auth".into(), id: "".into() } },
            Acl { perms: perms::ALL, id: Id { scheme: "digest".into(), id: "u:x".into() } },
            Acl { perms: perms::ALL, id: Id { scheme: "ip".into(), id: "10.0.0.1".into() } },
            Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "nobody".into() } },
        ];
        let acl: Vec<Acl> = picks.iter().map(|&i| pool[i].clone()).collect();
        let ids = if authed { vec![Id { scheme: "digest".into(), id: "u:x".into() }] } else { vec![] };
        proptest::prop_assert_eq!(
            crate::request::acl::fixup_acl_owned(acl.clone(), &ids),
            fixup_acl(&acl, &ids)
        );
    }
}

/// Each txn's digest, computed at prep time while earlier txns are still in flight, is the
/// tree's digest once it is applied (ZooKeeper's precalculated digest): creates (plain,
/// ephemeral, sequential, container), setData, setACL, delete, a multi that fails (no change),
/// one that succeeds, a closeSession of ephemerals and a container deletion.
#[test]
fn digest_predicted_at_prep_is_the_tree_digest_after_apply() {
    let tree = DataTree::new();
    let mut p = Prep::new();
    let c = ctx(OpCode::Create, &[]);
    let set = |path: &str, data: &[u8]| {
        Request::SetData(SetDataRequest { path: path.into(), data: Some(data.to_vec()), version: -1 })
    };
    let del = |path: &str| Request::Delete(DeleteRequest { path: path.into(), version: -1 });
    let reqs: Vec<Request> = vec![
        create("/a", 0),
        create("/a/b", 0),
        create("/a/e", 1),
        create("/a/s-", 2),
        create("/a/s-", 2),
        set("/a/b", b"longer data than before"),
        set("/", b"root"),
        set("/zookeeper", b"z"),
        Request::SetAcl(SetAclRequest { path: "/a".into(), acl: open_acl_unsafe(), version: -1 }),
        del("/a/s-0000000003"),
        create("/nope/x", 0),
        Request::Multi(vec![
            MultiOp::Create(
                OpCode::Create,
                CreateRequest { path: "/m".into(), data: None, acl: open_acl_unsafe(), flags: 0 },
            ),
            MultiOp::Delete(DeleteRequest { path: "/missing".into(), version: -1 }),
        ]),
        Request::Multi(vec![
            MultiOp::Create(
                OpCode::Create,
                CreateRequest {
                    path: "/m".into(),
                    data: Some(b"m".to_vec()),
                    acl: open_acl_unsafe(),
                    flags: 0,
                },
            ),
            MultiOp::SetData(SetDataRequest { path: "/m".into(), data: None, version: 0 }),
        ]),
        Request::Create(
            OpCode::CreateContainer,
            CreateRequest { path: "/c".into(), data: None, acl: open_acl_unsafe(), flags: 4 },
        ),
        create("/c/k", 0),
        del("/c/k"),
    ];
    let mut expected = Vec::new();
    let mut txns = Vec::new();
    let mut zxid = 0;
    // Prep three ahead of the applies, so later preps see earlier txns only in the overlay.
    let mut reqs = reqs.into_iter();
    loop {
        while txns.len() < 3 {
            let Some(r) = reqs.next() else { break };
            zxid += 1;
            let opcode = match &r {
                Request::Multi(_) => OpCode::Multi,
                Request::SetData(_) => OpCode::SetData,
                Request::Delete(_) => OpCode::Delete,
                Request::SetAcl(_) => OpCode::SetAcl,
                Request::Create(op, _) => *op,
                _ => OpCode::Create,
            };
            let (h, b) = p.prep(&tree, &WriteCtx { opcode: opcode as i32, ..c }, r, zxid, 1000 + zxid);
            txns.push((h, b, p.digest(&tree)));
        }
        if txns.is_empty() {
            break;
        }
        let (h, b, d) = txns.remove(0);
        tree.apply(&h, &b, &mut NoSink);
        p.applied(h.zxid);
        expected.push((h.zxid, d, tree.digest()));
    }
    // The container's deletion and the ephemeral's closeSession, prepped together.
    zxid += 1;
    let (h1, b1) = p.prep_delete_container(&tree, "/c", zxid, 5000);
    let d1 = p.digest(&tree);
    zxid += 1;
    let (h2, b2) = p.prep_close_session(&tree, 7, 0, zxid, 5001);
    let d2 = p.digest(&tree);
    for (h, b, d) in [(h1, b1, d1), (h2, b2, d2)] {
        tree.apply(&h, &b, &mut NoSink);
        p.applied(h.zxid);
        expected.push((h.zxid, d, tree.digest()));
    }
    assert!(tree.meta("/a/e").is_none() && tree.meta("/c").is_none());
    for (z, predicted, actual) in &expected {
        assert_eq!(predicted, actual, "txn {z}");
    }
    assert_eq!(tree.digest(), tree.recompute_digest());
}
