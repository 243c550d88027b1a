//! The data carried inside QuorumPackets that ZAB itself reads or writes (the packet's own
//! framing is `quorum::wire`'s). All big-endian, as Java's `DataOutputStream`/jute write them.
//! Decoders take untrusted bytes: every shortfall is an error, never a panic or an allocation
//! larger than the input.

use crate::proto::jute::{Reader, Writer};
use crate::quorum::Sid;

use super::PacketError;

fn bad(what: &'static str, e: impl std::fmt::Display) -> PacketError {
    PacketError::Payload { what, detail: e.to_string() }
}

/// FOLLOWERINFO/OBSERVERINFO data: the jute record `LearnerInfo` (sid, protocol version,
/// config version). ZooKeeper accepts shorter forms from old learners: 8 bytes (sid only) or 12
/// (sid and version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerInfo {
    pub sid: Sid,
    pub protocol_version: i32,
    pub config_version: i64,
}

impl LearnerInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(20);
        w.i64(self.sid);
        w.i32(self.protocol_version);
        w.i64(self.config_version);
        w.into_inner()
    }

    pub fn decode(data: &[u8]) -> Result<LearnerInfo, PacketError> {
        let mut r = Reader::new(data);
        let sid = r.i64().map_err(|e| bad("LearnerInfo", e))?;
        let protocol_version =
            if r.remaining() >= 4 { r.i32().map_err(|e| bad("LearnerInfo", e))? } else { 0 };
        let config_version =
            if r.remaining() >= 8 { r.i64().map_err(|e| bad("LearnerInfo", e))? } else { 0 };
        Ok(LearnerInfo { sid, protocol_version, config_version })
    }
}

/// LEADERINFO and ACKEPOCH data: one int (the protocol version; the learner's current epoch or
/// −1).
pub fn encode_int(v: i32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_int(what: &'static str, data: Option<&[u8]>) -> Result<i32, PacketError> {
    let data = data.ok_or_else(|| bad(what, "no data"))?;
    Reader::new(data).i32().map_err(|e| bad(what, e))
}

/// A learner's PING reply: (session id, timeout) pairs, 12 bytes each, until the data ends.
pub fn encode_touches(sessions: impl ExactSizeIterator<Item = (i64, i32)>) -> Vec<u8> {
    let mut w = Writer::with_capacity(sessions.len() * 12);
    for (s, t) in sessions {
        w.i64(s);
        w.i32(t);
    }
    w.into_inner()
}

pub fn decode_touches(data: Option<&[u8]>) -> Result<Vec<(i64, i32)>, PacketError> {
    let data = data.unwrap_or(&[]);
    if !data.len().is_multiple_of(12) {
        return Err(bad(
            "PING",
            format!("{} bytes is not a whole number of (session, timeout) pairs", data.len()),
        ));
    }
    let mut r = Reader::new(data);
    let mut out = Vec::with_capacity(data.len() / 12);
    while r.remaining() > 0 {
        let s = r.i64().map_err(|e| bad("PING", e))?;
        let t = r.i32().map_err(|e| bad("PING", e))?;
        out.push((s, t));
    }
    Ok(out)
}

/// REVALIDATE from a learner: session id and timeout.
pub fn encode_revalidate(session: i64, timeout: i32) -> Vec<u8> {
    let mut w = Writer::with_capacity(12);
    w.i64(session);
    w.i32(timeout);
    w.into_inner()
}

pub fn decode_revalidate(data: Option<&[u8]>) -> Result<(i64, i32), PacketError> {
    let mut r = Reader::new(data.unwrap_or(&[]));
    let s = r.i64().map_err(|e| bad("REVALIDATE", e))?;
    let t = r.i32().map_err(|e| bad("REVALIDATE", e))?;
    Ok((s, t))
}

/// REVALIDATE from the leader: session id and whether it is valid (Java's `writeBoolean`).
pub fn encode_revalidated(session: i64, valid: bool) -> Vec<u8> {
    let mut w = Writer::with_capacity(9);
    w.i64(session);
    w.buf.push(valid as u8);
    w.into_inner()
}

pub fn decode_revalidated(data: Option<&[u8]>) -> Result<(i64, bool), PacketError> {
    let mut r = Reader::new(data.unwrap_or(&[]));
    let s = r.i64().map_err(|e| bad("REVALIDATE", e))?;
    let v = r.bool().map_err(|e| bad("REVALIDATE", e))?;
    Ok((s, v))
}

/// REQUEST data: session id, cxid, op type, then the request record's bytes.
pub fn encode_request(session: i64, cxid: i32, typ: i32, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(16 + body.len());
    w.i64(session);
    w.i32(cxid);
    w.i32(typ);
    w.buf.extend_from_slice(body);
    w.into_inner()
}

/// Returns (session, cxid, type, body).
pub fn decode_request(data: Option<&[u8]>) -> Result<(i64, i32, i32, &[u8]), PacketError> {
    let mut r = Reader::new(data.unwrap_or(&[]));
    let s = r.i64().map_err(|e| bad("REQUEST", e))?;
    let c = r.i32().map_err(|e| bad("REQUEST", e))?;
    let t = r.i32().map_err(|e| bad("REQUEST", e))?;
    Ok((s, c, t, r.rest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learner_info_round_trips_and_accepts_short_forms() {
        let li = LearnerInfo { sid: 3, protocol_version: 0x10000, config_version: 7 };
        assert_eq!(li.encode().len(), 20);
        assert_eq!(LearnerInfo::decode(&li.encode()).unwrap(), li);
        assert_eq!(LearnerInfo::decode(&li.encode()[..12]).unwrap().config_version, 0);
        assert_eq!(LearnerInfo::decode(&li.encode()[..8]).unwrap().protocol_version, 0);
        assert!(LearnerInfo::decode(&li.encode()[..7]).is_err());
    }

    #[test]
    fn touches_must_be_whole_pairs() {
        let d = encode_touches([(1i64, 30000i32), (2, 4000)].into_iter());
        assert_eq!(decode_touches(Some(&d)).unwrap(), vec![(1, 30000), (2, 4000)]);
        assert_eq!(decode_touches(None).unwrap(), vec![]);
        assert!(decode_touches(Some(&d[..13])).is_err());
    }

    #[test]
    fn request_and_revalidate_bounds() {
        let d = encode_request(9, 4, 1, b"xyz");
        assert_eq!(decode_request(Some(&d)).unwrap(), (9, 4, 1, &b"xyz"[..]));
        assert!(decode_request(Some(&d[..15])).is_err());
        assert_eq!(decode_revalidate(Some(&encode_revalidate(5, 3000))).unwrap(), (5, 3000));
        assert!(decode_revalidate(Some(&[0; 11])).is_err());
        assert_eq!(decode_revalidated(Some(&encode_revalidated(5, true))).unwrap(), (5, true));
        assert!(decode_revalidated(Some(&[0; 8])).is_err());
        assert!(decode_int("ACKEPOCH", None).is_err());
        assert_eq!(decode_int("ACKEPOCH", Some(&encode_int(-1))).unwrap(), -1);
    }
}
