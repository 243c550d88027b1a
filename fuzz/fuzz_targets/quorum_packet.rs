//! The leader/learner connection (`quorum::wire::decode_packet`: QuorumPacket records back to
//! back, read incrementally, data bounded by jute.maxbuffer), each packet interpreted as the
//! side that receives it does (`LeaderMessage::from_packet` on a learner,
//! `LearnerMessage::from_packet` on the leader), and what they carry: a PROPOSAL's or INFORM's
//! txn (`LoggedTxn::from_bytes`), a REQUEST's client request (`Request::decode`), NEWLEADER's
//! config (`QuorumView::parse`). Packets and messages must encode back to themselves.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::proto::LoggedTxn;
use zkd::quorum::wire::{
    decode_packet, encode_packet, packet_data_max, LeaderMessage, LearnerMessage, QuorumView,
};
use zkd::quorum::QuorumPacket;
use zkd_fuzz::{check_incremental, check_request};

fn txn(bytes: &[u8]) {
    if let Ok(t) = LoggedTxn::from_bytes(bytes) {
        assert_eq!(LoggedTxn::from_bytes(&t.to_bytes()).as_ref(), Ok(&t));
    }
}

fn packet(p: &QuorumPacket) {
    let bytes = encode_packet(p);
    assert_eq!(
        decode_packet(&bytes, usize::MAX),
        Ok(Some((p.clone(), bytes.len()))),
        "decode(encode(packet))"
    );
    if let Ok(m) = LeaderMessage::from_packet(p.clone()) {
        let back = LeaderMessage::from_packet(m.to_packet());
        assert_eq!(back.as_ref(), Ok(&m), "leader message {m:?} does not survive its packet");
        match &m {
            LeaderMessage::Proposal { txn: t, .. } | LeaderMessage::Inform { txn: t, .. } => txn(t),
            LeaderMessage::InformAndActivate { txn: t, .. } => txn(t),
            LeaderMessage::NewLeader { config: Some(c), .. } => {
                let _ = QuorumView::parse(c);
            }
            _ => {}
        }
    }
    if let Ok(m) = LearnerMessage::from_packet(p.clone()) {
        let back = LearnerMessage::from_packet(m.to_packet());
        assert_eq!(back.as_ref(), Ok(&m), "learner message {m:?} does not survive its packet");
        if let LearnerMessage::Request { op, body, .. } = &m {
            check_request(*op, body);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    // A small jute.maxbuffer now and then, so that the bounds are crossed often.
    let max = if ctl & 1 != 0 { (ctl >> 1) as usize } else { packet_data_max(0xfffff) };
    let mut at = 0;
    while let Ok(Some((p, n))) = check_incremental(&rest[at..], |b| decode_packet(b, max)) {
        assert!(p.data.as_ref().is_none_or(|d| d.len() <= max));
        packet(&p);
        at += n;
    }
});
