//! Transactions as the log, recovery and a follower read them (`proto::LoggedTxn::from_bytes`:
//! header, body by type, optional digest), then applied to a data tree in order, as recovery's
//! replay and a learner's commits apply them (`tree::DataTree::apply`), and answered
//! (`request::encode_reply`). A txn's bytes come from disk or from the leader: nothing in
//! them may panic the server. Every decoded txn must encode back to itself, and its
//! `encoded_len` must be its encoding's length.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::proto::jute::Writer;
use zkd::proto::{LoggedTxn, OpCode, TxnBody};
use zkd::tree::DataTree;
use zkd_fuzz::{check_tree, records, NoWatches};

fuzz_target!(|data: &[u8]| {
    let tree = DataTree::new();
    for bytes in records(data) {
        let Ok(t) = LoggedTxn::from_bytes(bytes) else { continue };
        let enc = t.to_bytes();
        assert_eq!(t.body.encoded_len(), t.body.to_bytes().len());
        let back =
            LoggedTxn::from_bytes(&enc).unwrap_or_else(|e| panic!("{t:?} encodes to bytes that fail: {e}"));
        assert_eq!(back, t, "decode(encode(txn)) differs");
        let r = tree.apply(&t.hdr, &t.body, &mut NoWatches);
        let mut w = Writer::new();
        let multi = matches!(t.body, TxnBody::Multi(_)) || t.hdr.txn_type == OpCode::Multi as i32;
        let _ = zkd::request::encode_reply(t.hdr.txn_type, multi, &r, &mut w);
    }
    check_tree(&tree);
});
