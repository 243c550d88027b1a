//! Election messages as the election port reads them: frames (`quorum::wire::decode_frame`,
//! incremental, 1..=512 KiB) carrying notifications (`decode_notification`: the 28- and 40-byte
//! forms of old servers, and the 3.5+ form with the sender's config text, which goes to
//! `QuorumView::parse` and the election's `ServerList::parse`). A notification that decodes
//! must encode back to one that decodes the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::quorum::election::ServerList;
use zkd::quorum::wire::{decode_frame, decode_notification, encode_frame, encode_notification, QuorumView};
use zkd_fuzz::check_incremental;

fn notification(payload: &[u8]) {
    let Ok(n) = decode_notification(payload) else { return };
    let bytes = encode_notification(&n);
    let again =
        decode_notification(&bytes).unwrap_or_else(|e| panic!("{n:?} encodes to bytes that fail: {e}"));
    // Without a config the 40-byte form is written, whose version field a receiver ignores.
    let want =
        if n.config.is_none() { zkd::quorum::Notification { version: 0, ..n.clone() } } else { n.clone() };
    assert_eq!(again, want, "decode(encode(notification)) differs");
    if let Some(c) = &n.config {
        let _ = QuorumView::parse(c);
        let _ = ServerList::parse(c);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    if ctl & 1 == 0 {
        // A notification on its own (the frame's payload).
        notification(rest);
        return;
    }
    // A stream of frames.
    let mut at = 0;
    while let Ok(Some((payload, n))) =
        check_incremental(&rest[at..], |b| decode_frame(b).map(|o| o.map(|(p, n)| (p.to_vec(), n))))
    {
        assert_eq!(encode_frame(&payload).as_deref(), Ok(&rest[at..at + n]));
        notification(&payload);
        at += n;
    }
});
