//! Election messages: the frame every message on an election connection travels in
//! (`QuorumCnxManager.SendWorker/RecvWorker`) and the notification inside it
//! (`FastLeaderElection.buildMsg` / `WorkerReceiver`).

use super::{incremental, whole, Cur, Result, Stop, WireError, ELECTION_FRAME_MAX};
use crate::proto::jute::Writer;
use crate::quorum::{epoch_of, Notification, PeerState, Vote};

/// The fixed part of a 3.5+ notification: state, 4 longs, version, config length.
const CURRENT_FIXED: usize = 4 + 4 * 8 + 4 + 4;

/// Frames an election message: `len i32 | payload`. Errors if the payload is empty or larger
/// than the 512 KiB a 3.8 receiver accepts (it would drop the connection).
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>> {
    if payload.is_empty() || payload.len() > ELECTION_FRAME_MAX {
        return Err(WireError::Length {
            what: "election frame",
            len: payload.len() as i64,
            min: 1,
            max: ELECTION_FRAME_MAX as i64,
        });
    }
    let mut w = Writer::with_capacity(4 + payload.len());
    w.buffer(payload);
    Ok(w.into_inner())
}

/// Reads one frame from the start of `buf`: Ok(None) until it is whole, then the payload and the
/// bytes it took. A length outside 1..=512 KiB is an error at once (ZooKeeper drops the
/// connection), before the payload is awaited.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>> {
    let mut c = Cur::new(buf);
    let r = (|| -> std::result::Result<&[u8], Stop> {
        let n = c.len("election frame", false, 1, ELECTION_FRAME_MAX)?.unwrap_or(0);
        c.take(n)
    })();
    incremental(r.map(|p| (p, c.pos)))
}

/// The 3.5+ notification (`buildMsg`): state, leader, zxid, electionEpoch, peerEpoch, version,
/// config length, config. A notification without config is written in the 40-byte form of
/// 3.4.6 (its version field, which 3.8 ignores in that form, carries `n.version`). The result
/// fits an election frame as long as the config is under 512 KiB - 44 bytes.
pub fn encode_notification(n: &Notification) -> Vec<u8> {
    let config = n.config.as_deref();
    let mut w = Writer::with_capacity(CURRENT_FIXED + config.map_or(0, <[u8]>::len));
    w.i32(n.state as i32);
    w.i64(n.vote.leader);
    w.i64(n.vote.zxid);
    w.i64(n.vote.election_epoch);
    w.i64(n.vote.peer_epoch);
    w.i32(n.version);
    if let Some(c) = config {
        // A receiver reads the config only when version > 1; writing one it would skip is a bug.
        assert!(n.version > 1, "a notification with a config has version > 1, not {}", n.version);
        w.buffer(c);
    }
    w.into_inner()
}

/// Reads a notification (a frame's payload) as ZooKeeper 3.8's `WorkerReceiver` does:
/// - fewer than 28 bytes: an error (3.8 logs and drops it);
/// - exactly 28 (before peer epochs): peer epoch taken from the zxid's epoch, version 0;
/// - exactly 40 (3.4.6): peer epoch read, the version field ignored (version 0), no config;
/// - otherwise: peer epoch and version read; when version > 1, a config length (bounded by what
///   is left) and the config follow. Bytes after that are ignored, as 3.8 ignores them.
///
/// A state outside 0..=3 is an error (3.8 drops such a notification from a voter).
pub fn decode_notification(b: &[u8]) -> Result<Notification> {
    const WHAT: &str = "notification";
    if b.len() < 28 {
        return Err(WireError::Length {
            what: WHAT,
            len: b.len() as i64,
            min: 28,
            max: ELECTION_FRAME_MAX as i64,
        });
    }
    let mut c = Cur::new(b);
    whole(
        WHAT,
        (|| {
            let state_raw = c.i32()?;
            let leader = c.i64()?;
            let zxid = c.i64()?;
            let election_epoch = c.i64()?;
            let (peer_epoch, version) = match b.len() {
                28 => (epoch_of(zxid) as i64, 0),
                40 => (c.i64()?, 0),
                _ => (c.i64()?, c.i32()?),
            };
            let config = if version > 1 {
                // Bounded by what follows the length field itself.
                let left = c.left().saturating_sub(4);
                let n = c.len("notification config", false, 0, left)?.unwrap_or(0);
                Some(c.take(n)?.to_vec())
            } else {
                None
            };
            let state = PeerState::from_i32(state_raw)
                .ok_or(WireError::Value { what: "notification state", value: state_raw as i64 })?;
            Ok(Notification {
                state,
                vote: Vote { leader, zxid, election_epoch, peer_epoch },
                version,
                config,
            })
        })(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(config: Option<&[u8]>, version: i32) -> Notification {
        Notification {
            state: PeerState::Looking,
            vote: Vote { leader: 3, zxid: 0x2_0000_0005, election_epoch: 4, peer_epoch: 2 },
            version,
            config: config.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn current_form_layout() {
        let cfg = b"server.1=127.0.0.1:2888:3888:participant\nversion=0";
        let b = encode_notification(&n(Some(cfg), 2));
        assert_eq!(b.len(), 44 + cfg.len());
        assert_eq!(&b[0..4], &0i32.to_be_bytes());
        assert_eq!(&b[4..12], &3i64.to_be_bytes());
        assert_eq!(&b[36..40], &2i32.to_be_bytes());
        assert_eq!(&b[40..44], &(cfg.len() as i32).to_be_bytes());
        assert_eq!(decode_notification(&b).unwrap(), n(Some(cfg), 2));
    }

    #[test]
    fn the_28_byte_form_takes_the_peer_epoch_from_the_zxid() {
        let b = encode_notification(&n(None, 0));
        let got = decode_notification(&b[..28]).unwrap();
        assert_eq!(got.vote.peer_epoch, 2, "epoch of zxid 0x2_0000_0005");
        assert_eq!((got.version, got.config), (0, None));
    }

    #[test]
    fn the_40_byte_form_ignores_its_version_field() {
        let b = encode_notification(&n(None, 1));
        assert_eq!(b.len(), 40);
        let got = decode_notification(&b).unwrap();
        assert_eq!((got.vote.peer_epoch, got.version, got.config), (2, 0, None));
    }

    #[test]
    fn in_between_lengths_follow_3_8() {
        let b = encode_notification(&n(Some(b"abc"), 2));
        // 29..=35 bytes and 36..=39 end inside peerEpoch / version: dropped.
        for len in (29..40).chain(41..44) {
            assert!(matches!(decode_notification(&b[..len]), Err(WireError::Truncated { .. })), "{len}");
        }
        // 44 bytes with version 1: read as the pre-reconfig form, the rest ignored.
        let mut v1 = encode_notification(&n(None, 1));
        v1.extend_from_slice(&[0xff; 8]);
        assert_eq!(decode_notification(&v1).unwrap(), Notification { version: 1, ..n(None, 1) });
    }

    #[test]
    fn config_length_is_bounded_by_the_frame() {
        let mut b = encode_notification(&n(Some(b"abc"), 2));
        for bad in [-1i32, 4, i32::MAX] {
            b[40..44].copy_from_slice(&bad.to_be_bytes());
            assert!(
                matches!(decode_notification(&b), Err(WireError::Length { what: "notification config", .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_state_is_an_error() {
        let mut b = encode_notification(&n(Some(b""), 2));
        b[0..4].copy_from_slice(&4i32.to_be_bytes());
        assert_eq!(decode_notification(&b), Err(WireError::Value { what: "notification state", value: 4 }));
    }

    #[test]
    fn frame_bounds() {
        assert_eq!(encode_frame(b"xy").unwrap(), vec![0, 0, 0, 2, b'x', b'y']);
        assert!(encode_frame(b"").is_err());
        assert!(encode_frame(&vec![0; ELECTION_FRAME_MAX + 1]).is_err());
        assert!(encode_frame(&vec![0; ELECTION_FRAME_MAX]).is_ok());
        for bad in [0i32, -1, i32::MIN, ELECTION_FRAME_MAX as i32 + 1, i32::MAX] {
            assert!(matches!(decode_frame(&bad.to_be_bytes()), Err(WireError::Length { .. })), "{bad}");
        }
        let f = encode_frame(b"abc").unwrap();
        for len in 0..f.len() {
            assert_eq!(decode_frame(&f[..len]).unwrap(), None);
        }
        let mut two = f.clone();
        two.extend_from_slice(&f);
        assert_eq!(decode_frame(&two).unwrap(), Some((&b"abc"[..], 7)));
    }

    fn arb_notification() -> impl Strategy<Value = Notification> {
        (0..4i32, any::<[i64; 4]>(), prop::option::of(prop::collection::vec(any::<u8>(), 0..200)), 2..100i32)
            .prop_map(|(s, [leader, zxid, election_epoch, peer_epoch], config, v)| Notification {
                state: PeerState::from_i32(s).unwrap(),
                vote: Vote { leader, zxid, election_epoch, peer_epoch },
                version: if config.is_some() { v } else { 0 },
                config,
            })
    }

    proptest! {
        #[test]
        fn round_trip(n in arb_notification()) {
            let b = encode_notification(&n);
            prop_assert_eq!(decode_notification(&b).unwrap(), n.clone());
            let f = encode_frame(&b).unwrap();
            prop_assert_eq!(decode_frame(&f).unwrap(), Some((&b[..], f.len())));
        }

        #[test]
        fn every_truncation_of_the_current_form_is_an_error(n in arb_notification()) {
            prop_assume!(n.config.is_some());
            let b = encode_notification(&n);
            for len in 0..b.len() {
                // A 28- or 40-byte prefix is a valid older form; every other prefix is an error.
                if len != 28 && len != 40 {
                    prop_assert!(decode_notification(&b[..len]).is_err(), "{}", len);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..120)) {
            let _ = decode_notification(&b);
            let _ = decode_frame(&b);
        }
    }
}
