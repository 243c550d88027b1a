//! Every byte format of Apache ZooKeeper 3.8's quorum protocol, encoded and decoded without I/O.
//!
//! ```text
//! election port (QuorumCnxManager), one TCP connection per pair of servers
//!   handshake      protocol version i64 (-65536 V1, -65535 V2) | sid i64 | len i32 (1..=2048)
//!                  | "host:port" (V2: several joined by '|')                    [handshake]
//!                  or, before 3.5: sid i64 alone (a non-negative first long)
//!   then frames    len i32 (1..=512 KiB) | payload                              [election]
//!   notification   state i32 | leader i64 | zxid i64 | electionEpoch i64 | peerEpoch i64
//!                  | version i32 (2) | configLength i32 | config (QuorumVerifier text)
//!                  older: 28 bytes (no peerEpoch), 40 bytes (peerEpoch, version ignored)
//! quorum port (Leader/LearnerHandler/Learner): QuorumPacket jute records, no outer length
//!   QuorumPacket   type i32 | zxid i64 | data buffer | authinfo vector<Id>      [packet]
//!   data by type   FOLLOWERINFO/OBSERVERINFO: LearnerInfo; LEADERINFO: i32 protocol version;
//!                  ACKEPOCH: i32 current epoch; NEWLEADER: config text; PING: touch table
//!                  (learner); REVALIDATE: session/timeout (learner), session/valid (leader);
//!                  REQUEST: session, cxid, type, request bytes; PROPOSAL/INFORM: txn;
//!                  COMMITANDACTIVATE: i64 leader; INFORMANDACTIVATE: i64 leader | txn [zab]
//!   after SNAP     sessions | ACL cache | nodes | "/" | "BenWasHere"            [snap]
//! config text      server.N=host:qport:eport:role;clientHost:clientPort ... version=hex [verifier]
//! ```
//!
//! Decoders never trust a length: each is checked against its bound before anything is allocated,
//! and bad bytes are a [`WireError`] naming the field, the value and the bound. Stream decoders
//! ([`decode_handshake`], [`decode_frame`], [`decode_packet`], [`SnapStreamDecoder`]) return
//! `Ok(None)` while a message is incomplete, so a driver can feed them what its socket delivers.

mod election;
mod handshake;
mod packet;
mod snap;
mod verifier;
mod zab;

#[cfg(test)]
mod golden;

pub use election::{decode_frame, decode_notification, encode_frame, encode_notification};
pub use handshake::{decode_handshake, Handshake, HandshakeVersion, HostPort};
pub use packet::{decode_packet, encode_packet, encode_packet_into, packet_data_max, AUTHINFO_COUNT_MAX};
pub use snap::{
    encode_snap_end, encode_snap_head, encode_snap_node, encode_snap_node_ref, SnapItem, SnapNode,
    SnapStreamDecoder,
};
pub use verifier::{QuorumView, ServerAddr, ServerSpec};
pub use zab::{LeaderMessage, LearnerInfo, LearnerMessage, Touch};

use thiserror::Error;

/// `QuorumCnxManager.PACKETMAXSIZE`: the largest election frame a 3.8 server reads.
pub const ELECTION_FRAME_MAX: usize = 512 * 1024;
/// `QuorumCnxManager.maxBuffer`: the largest address string in a handshake.
pub const HANDSHAKE_ADDR_MAX: usize = 2048;
/// `QuorumCnxManager.PROTOCOL_VERSION_V1` (3.5+): one election address in the handshake.
pub const PROTOCOL_VERSION_V1: i64 = -65536;
/// `QuorumCnxManager.PROTOCOL_VERSION_V2` (3.6+, multiAddress enabled): addresses joined by '|'.
pub const PROTOCOL_VERSION_V2: i64 = -65535;
/// `Notification.CURRENTVERSION`: the notification form that carries the sender's config.
pub const NOTIFICATION_VERSION: i32 = 0x2;
/// The ZAB protocol version learners and leaders announce (`0x10000`, "ZAB 1.0").
pub const ZAB_PROTOCOL_VERSION: i32 = 0x10000;
/// The string a leader writes after the snapshot that follows SNAP.
pub const SNAP_SIGNATURE: &str = "BenWasHere";

/// Bad bytes from a peer: what field, what value, what bound. Costs the connection (or, for an
/// election frame, the message), never the process.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// A complete message (a frame's payload, a packet's data) ended inside a field.
    #[error("{what}: truncated at offset {offset}: needed {needed} bytes, {left} left")]
    Truncated { what: &'static str, offset: usize, needed: usize, left: usize },
    /// A length or count field outside its bound.
    #[error("{what}: length {len} out of bounds {min}..={max}")]
    Length { what: &'static str, len: i64, min: i64, max: i64 },
    /// A field whose value the format does not allow.
    #[error("{what}: invalid value {value}")]
    Value { what: &'static str, value: i64 },
    /// Text (an address, a config line) that does not parse.
    #[error("{what}: {reason}: {text:?}")]
    Text { what: &'static str, reason: &'static str, text: String },
    /// Bytes after a message whose length is fixed.
    #[error("{what}: {len} trailing bytes")]
    Trailing { what: &'static str, len: usize },
    /// A quorum packet whose type the sender's side never sends (or zkd does not speak).
    #[error("{what}: packet type {typ} ({name}) unexpected", name = crate::quorum::packet_type::name(*typ))]
    PacketType { what: &'static str, typ: i32 },
}

pub type Result<T> = std::result::Result<T, WireError>;

/// Why a read of a field stopped: the input ended (a stream decoder waits for more; a decoder of
/// a whole message reports [`WireError::Truncated`]) or a field is bad.
pub(crate) enum Stop {
    More { offset: usize, needed: usize, left: usize },
    Bad(WireError),
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Stop {
        Stop::Bad(e)
    }
}

/// A stream decoder's result: Ok(None) while the input is short.
pub(crate) fn incremental<T>(r: std::result::Result<T, Stop>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Stop::More { .. }) => Ok(None),
        Err(Stop::Bad(e)) => Err(e),
    }
}

/// A whole-message decoder's result: the input ending inside a field is an error.
pub(crate) fn whole<T>(what: &'static str, r: std::result::Result<T, Stop>) -> Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(Stop::More { offset, needed, left }) => Err(WireError::Truncated { what, offset, needed, left }),
        Err(Stop::Bad(e)) => Err(e),
    }
}

/// A big-endian cursor whose reads stop with [`Stop::More`] at the end of the input.
pub(crate) struct Cur<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cur<'a> {
    pub fn new(buf: &'a [u8]) -> Cur<'a> {
        Cur { buf, pos: 0 }
    }
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], Stop> {
        if n > self.left() {
            return Err(Stop::More { offset: self.pos, needed: n, left: self.left() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> std::result::Result<u8, Stop> {
        Ok(self.take(1)?[0])
    }
    pub fn i32(&mut self) -> std::result::Result<i32, Stop> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn i64(&mut self) -> std::result::Result<i64, Stop> {
        let b = self.take(8)?;
        Ok(i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
    /// A length field: -1 (null) when `nullable`, else `min..=max`; anything else is an error
    /// at once, before the bytes it announces are waited for or allocated.
    pub fn len(
        &mut self,
        what: &'static str,
        nullable: bool,
        min: usize,
        max: usize,
    ) -> std::result::Result<Option<usize>, Stop> {
        let v = self.i32()?;
        if v == -1 && nullable {
            return Ok(None);
        }
        if v < 0 || (v as usize) < min || v as usize > max {
            let min = if nullable { -1 } else { min as i64 };
            return Err(WireError::Length { what, len: v as i64, min, max: max as i64 }.into());
        }
        Ok(Some(v as usize))
    }
    /// A jute `ustring` of at most `max` bytes (null reads as empty, as ZooKeeper's readers
    /// tolerate it), UTF-8.
    pub fn string(&mut self, what: &'static str, max: usize) -> std::result::Result<&'a str, Stop> {
        let n = self.len(what, true, 0, max)?.unwrap_or(0);
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| {
            Stop::Bad(WireError::Text {
                what,
                reason: "not UTF-8",
                text: String::from_utf8_lossy(b).into_owned(),
            })
        })
    }
}
