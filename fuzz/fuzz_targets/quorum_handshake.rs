//! The first bytes of an election connection (`quorum::wire::decode_handshake`: a pre-3.5 sid,
//! or protocol version, sid and the caller's addresses), read incrementally as the election
//! listener reads them. What decodes must encode back to bytes that decode the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::quorum::wire::{decode_handshake, Handshake};
use zkd_fuzz::check_incremental;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((h, _))) = check_incremental(data, decode_handshake) else { return };
    let _ = h.sid();
    if let Handshake::Initial { addrs, .. } = &h {
        assert!(!addrs.is_empty());
        for a in addrs {
            let _ = a.is_wildcard();
        }
    }
    let bytes = h.encode().unwrap_or_else(|e| panic!("{h:?} decoded but does not encode: {e}"));
    assert_eq!(decode_handshake(&bytes), Ok(Some((h, bytes.len()))), "decode(encode(handshake)) differs");
});
