//! The client port's byte stream as a shard reads it: `FrameBuf` framing (lengths bounded by
//! jute.maxbuffer, a four-letter word first), the ConnectRequest of the first packet, then
//! RequestHeader + request body by opcode. The same bytes cut into different reads must give
//! the same frames; every request decoded must encode back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::proto::frame::{is_four_letter_word, Frame, FrameBuf, FrameError};
use zkd_fuzz::{check_connect, check_session_packet, Cuts};

/// Frames of `bytes` read in pieces of the sizes `cuts` gives (None: all at once).
fn frames(bytes: &[u8], max: usize, mut cuts: Option<Cuts>) -> (Vec<Frame>, Option<FrameError>) {
    let mut fb = FrameBuf::new();
    let mut first = true;
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let want = cuts.as_mut().map_or(bytes.len() - at, Cuts::next_len).min(bytes.len() - at);
        let spare = fb.spare(want);
        let spare_len = spare.len();
        spare[..want].copy_from_slice(&bytes[at..at + want]);
        fb.filled(spare_len, want);
        at += want;
        loop {
            match fb.next_frame(max, &mut first) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, bytes)) = data.split_first() else { return };
    // A small jute.maxbuffer now and then, so that the bound is crossed often.
    let max = if ctl & 0x80 != 0 { (ctl & 0x7f) as usize } else { 1 << 20 };
    let whole = frames(bytes, max, None);
    let cut = frames(bytes, max, Some(Cuts::new(ctl as u64)));
    assert_eq!(whole, cut, "framing depends on how the bytes were cut");
    let (frames, err) = whole;
    if let Some(FrameError::BadLength { len, max: m }) = err {
        assert!(len < 0 || len as usize > m);
    }
    let mut packets = 0;
    for f in frames {
        match f {
            Frame::FourLetter(w) => {
                assert!(is_four_letter_word(w));
                assert_eq!(packets, 0, "a four-letter word after the first packet");
            }
            Frame::Packet(body) => {
                assert!(body.len() <= max);
                if packets == 0 {
                    check_connect(&body);
                } else {
                    check_session_packet(&body);
                }
                packets += 1;
            }
        }
    }
});
