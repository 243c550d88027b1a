//! A transaction log file as recovery reads it: `txnlog::format::LogReader` (header, entries,
//! where and why it stopped) and `find_valid_entry_after` (is the damage a torn tail or a corrupt
//! middle). Entries must tile the file from its header to the stop; every entry's txn must encode
//! back to an entry that reads the same; a valid entry found after damage must parse.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::txnlog::format::{
    encode_txn_entry, FileHeader, LogReader, Stop, DEFAULT_MAX_TXN_BYTES, FILE_HEADER_LEN_BYTES,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (ctl, rest) = data.split_at(3);
    // A small bound on entries now and then; a valid header in front unless asked not to.
    let max = if ctl[0] & 1 != 0 { (ctl[0] >> 1) as usize * 8 } else { DEFAULT_MAX_TXN_BYTES };
    let mut file = Vec::with_capacity(rest.len() + FILE_HEADER_LEN_BYTES);
    if ctl[0] & 0x80 == 0 {
        FileHeader::txnlog().encode(&mut file);
    }
    file.extend_from_slice(rest);
    let Ok(mut r) = LogReader::new(&file, max) else { return };
    let mut at = FILE_HEADER_LEN_BYTES as u64;
    let mut last_zxid = i64::MIN;
    for e in r.by_ref() {
        assert_eq!(e.offset, at, "entries do not tile the file");
        at += e.len_bytes as u64;
        last_zxid = e.txn.hdr.zxid;
        let mut again = Vec::new();
        let n = encode_txn_entry(&e.txn, &mut again);
        assert_eq!(n, again.len());
        let back = LogReader::parse_entry_at(&again, 0, usize::MAX)
            .unwrap_or_else(|s| panic!("{:?} re-encoded does not read back: {s:?}", e.txn));
        assert_eq!(back.txn, e.txn, "decode(encode(txn)) differs");
    }
    assert_eq!(r.position(), at);
    let stop = r.stop().clone();
    assert_eq!(stop.offset(), Some(at), "{stop:?}");
    assert!(at <= file.len() as u64);
    if let Stop::End { .. } = stop {
        assert_eq!(at, file.len() as u64);
    }
    // From the damage (or from any place the input names), the next valid entry.
    let from = match stop {
        Stop::Damaged { offset, .. } => offset as usize,
        _ => u16::from_be_bytes([ctl[1], ctl[2]]) as usize,
    };
    let min_zxid = if ctl[1] & 1 != 0 { last_zxid } else { i64::MIN };
    if let Some(o) = LogReader::find_valid_entry_after(&file, from, min_zxid, max) {
        assert!(o as usize > from);
        let e = LogReader::parse_entry_at(&file, o as usize, max)
            .unwrap_or_else(|s| panic!("the valid entry found at {o} does not parse: {s:?}"));
        assert!(e.txn.hdr.zxid > min_zxid);
    }
});
