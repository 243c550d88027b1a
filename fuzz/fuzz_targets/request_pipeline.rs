//! Client requests from two sessions through what the server does with them after decoding:
//! writes prepped (`request::Prep`: validation, ACLs, sequential names, multi) into txns while
//! earlier ones are still in flight, then applied to the tree in order (`tree::DataTree::apply`)
//! and answered (`request::encode_reply`); reads run at once against the tree
//! (`request::read::execute`); sessions closed and containers swept as the replica does.
//! Checks: no panic; every txn prep makes reads back from its log encoding; a txn that prep
//! accepted applies without an error (prep and apply agree, in flight or not); the tree stays
//! one tree (`check_tree`).
#![no_main]
use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use zkd::proto::jute::Writer;
use zkd::proto::ops::Request;
use zkd::proto::{ErrorCode, Id, LoggedTxn, OpCode, TxnBody, TxnHeader};
use zkd::request::read::{execute, ReadCtx};
use zkd::request::{encode_reply, Prep, WriteCtx};
use zkd::tree::{DataTree, WatcherId};
use zkd_fuzz::{check_tree, records, NoWatches};

/// Client opcodes the request target knows (by index).
const OPCODES: &[i32] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 101, 103, 104, 105, 106, 107, -11,
];
const SESSIONS: [i64; 2] = [0x100, 0x200];

fuzz_target!(|data: &[u8]| {
    let tree = DataTree::new();
    let mut prep = Prep::new();
    let digest = Id { scheme: "digest".into(), id: zkd::request::acl::digest_id("fuzz:secret") };
    let ip = Id { scheme: "ip".into(), id: "127.0.0.1".into() };
    let auths = [vec![digest, ip.clone()], vec![ip]];
    let mut in_flight: VecDeque<(TxnHeader, TxnBody)> = VecDeque::new();
    let mut closed = [false; 2];
    let mut zxid = 1i64;
    let mut now_ms = 1_700_000_000_000i64;
    let apply_all = |in_flight: &mut VecDeque<(TxnHeader, TxnBody)>, prep: &mut Prep| {
        while let Some((hdr, body)) = in_flight.pop_front() {
            let r = tree.apply(&hdr, &body, &mut NoWatches);
            if hdr.txn_type != OpCode::Error as i32 && !matches!(body, TxnBody::Multi(_)) {
                assert_eq!(r.err, ErrorCode::Ok, "prep accepted {body:?}, apply refused it");
            }
            prep.applied(hdr.zxid);
            let mut w = Writer::new();
            let _ = encode_reply(hdr.txn_type, matches!(body, TxnBody::Multi(_)), &r, &mut w);
        }
    };
    for rec in records(data) {
        let Some((&kind, rest)) = rec.split_first() else { continue };
        let s = (kind >> 4) as usize % 2;
        match kind % 8 {
            // Apply everything in flight.
            0 => apply_all(&mut in_flight, &mut prep),
            // The session closes (or expires): its ephemerals go.
            1 => {
                if !closed[s] {
                    closed[s] = true;
                    in_flight.push_back(prep.prep_close_session(&tree, SESSIONS[s], 0, zxid, now_ms));
                    zxid += 1;
                }
            }
            // Time passes; the container/TTL sweep runs on what is applied.
            2 => {
                now_ms += 1000 * rest.first().copied().unwrap_or(1) as i64;
                for path in tree.containers_and_ttls_to_delete(now_ms, true) {
                    in_flight.push_back(prep.prep_delete_container(&tree, &path, zxid, now_ms));
                    zxid += 1;
                }
            }
            // A request of session s.
            _ => {
                let Some((&sel, body)) = rest.split_first() else { continue };
                let opcode = OPCODES[sel as usize % OPCODES.len()];
                let Ok(req) = Request::decode(opcode, body) else { continue };
                if closed[s] {
                    continue;
                }
                if matches!(req, Request::CloseSession) {
                    closed[s] = true;
                    in_flight.push_back(prep.prep_close_session(&tree, SESSIONS[s], 1, zxid, now_ms));
                    zxid += 1;
                } else if req.is_write() {
                    let ctx = WriteCtx {
                        session_id: SESSIONS[s],
                        cxid: zxid as i32,
                        opcode,
                        auth: &auths[s],
                        super_digest: None,
                        skip_acl: false,
                        extended_types_enabled: true,
                    };
                    let (hdr, body) = prep.prep(&tree, &ctx, req, zxid, now_ms);
                    let logged = LoggedTxn { hdr, body, digest: None };
                    let back = LoggedTxn::from_bytes(&logged.to_bytes())
                        .unwrap_or_else(|e| panic!("{logged:?} does not read back from the log: {e}"));
                    assert_eq!(back, logged, "the log changes a prepped txn");
                    in_flight.push_back((logged.hdr, logged.body));
                    zxid += 1;
                } else {
                    let ctx = ReadCtx {
                        session: SESSIONS[s],
                        auth: &auths[s],
                        watcher: WatcherId { shard: 0, conn: s as u64 },
                        skip_acl: false,
                    };
                    let _ = execute(&tree, &ctx, 1, &req, &mut NoWatches);
                }
            }
        }
    }
    apply_all(&mut in_flight, &mut prep);
    check_tree(&tree);
});
