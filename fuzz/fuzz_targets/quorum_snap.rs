//! The snapshot a leader streams after SNAP (`quorum::wire::SnapStreamDecoder`: sessions, ACL
//! cache, nodes, "/" and the "BenWasHere" signature), read an item at a time from whatever the
//! socket delivered, as a learner reads it. Cutting the stream differently must give the same
//! items; a whole stream must encode back to one that reads the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::proto::jute::Writer;
use zkd::quorum::wire::{encode_snap_end, encode_snap_head, encode_snap_node, SnapItem, SnapStreamDecoder};
use zkd_fuzz::Cuts;

/// Items of `bytes` delivered in reads of the sizes `cuts` gives (None: all at once); whether
/// the stream ended (End) and the bytes it took.
fn read_items(bytes: &[u8], max: usize, mut cuts: Option<Cuts>) -> (Vec<SnapItem>, bool, usize) {
    let mut d = SnapStreamDecoder::new(max);
    let mut out = Vec::new();
    let (mut start, mut end) = (0, 0);
    while !d.is_done() {
        match d.next(&bytes[start..end]) {
            Ok(Some((item, n))) => {
                assert!(n > 0 && n <= end - start);
                out.push(item);
                start += n;
            }
            Ok(None) if end < bytes.len() => {
                end = (end + cuts.as_mut().map_or(bytes.len(), Cuts::next_len)).min(bytes.len());
            }
            Ok(None) | Err(_) => return (out, false, start),
        }
    }
    (out, true, start)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let max = if ctl & 1 != 0 { (ctl >> 1) as usize } else { 1 << 20 };
    let whole = read_items(rest, max, None);
    assert_eq!(
        whole,
        read_items(rest, max, Some(Cuts::new(ctl as u64))),
        "items depend on how the stream was cut"
    );
    let (items, done, _) = whole;
    if !done {
        return;
    }
    let mut sessions = Vec::new();
    let mut acls = Vec::new();
    let mut w = Writer::new();
    for item in &items {
        match item {
            SnapItem::Session { id, timeout_ms } => sessions.push((*id, *timeout_ms)),
            SnapItem::Acl { id, acls: a } => acls.push((*id, a.clone())),
            SnapItem::Node(_) | SnapItem::End => {}
        }
    }
    encode_snap_head(&mut w, &sessions, &acls);
    for item in &items {
        if let SnapItem::Node(n) = item {
            encode_snap_node(&mut w, n);
        }
    }
    encode_snap_end(&mut w);
    let (again, done, used) = read_items(&w.buf, usize::MAX, None);
    assert!(done && used == w.buf.len(), "the re-encoded stream does not end where it should");
    assert_eq!(again, items, "decode(encode(stream)) differs");
});
