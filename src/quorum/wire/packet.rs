//! `QuorumPacket` (zookeeper.jute) on the leader/learner connection: jute records back to back,
//! with no outer length, so the decoder is incremental.

#[cfg(test)]
use super::WireError;
use super::{incremental, Cur, Result, Stop};
use crate::proto::jute::Writer;
use crate::proto::Id;
use crate::quorum::QuorumPacket;

/// The most authinfo entries a packet may carry. ZooKeeper sets no limit (a REQUEST carries the
/// client's auth ids, one per `addauth` plus its IP); 1,024 is far above any real client.
pub const AUTHINFO_COUNT_MAX: usize = 1024;

/// The bound ZooKeeper 3.8 puts on a buffer it reads from a peer (`BinaryInputArchive`):
/// jute.maxbuffer plus `zookeeper.jute.maxbuffer.extrasize`, which defaults to jute.maxbuffer
/// (and is at least 1,024), capped at `i32::MAX`.
pub fn packet_data_max(jute_max_buffer: usize) -> usize {
    jute_max_buffer.saturating_add(jute_max_buffer.max(1024)).min(i32::MAX as usize)
}

/// The bytes of a packet: `type i32 | zxid i64 | data buffer (-1: null) | authinfo vector<Id>
/// (-1: null)`.
pub fn encode_packet(p: &QuorumPacket) -> Vec<u8> {
    let auth_len: usize = p.authinfo.iter().flatten().map(|id| 8 + id.scheme.len() + id.id.len()).sum();
    let mut w = Writer::with_capacity(20 + p.data.as_ref().map_or(0, Vec::len) + auth_len);
    encode_packet_into(p, &mut w);
    w.into_inner()
}

/// [`encode_packet`] appending to a writer (a driver batching packets into one buffer).
pub fn encode_packet_into(p: &QuorumPacket, w: &mut Writer) {
    w.i32(p.typ);
    w.i64(p.zxid);
    w.opt_buffer(p.data.as_deref());
    match &p.authinfo {
        None => w.i32(-1),
        Some(ids) => w.vec(ids, |w, id| {
            w.string(&id.scheme);
            w.string(&id.id);
        }),
    }
}

/// Reads one packet from the start of `buf`: Ok(None) until it is whole, then the packet and the
/// bytes it took. Errors as soon as a length is out of bounds, before the bytes it announces are
/// awaited: data longer than `max_data` (see [`packet_data_max`]), more than
/// [`AUTHINFO_COUNT_MAX`] authinfo entries, an authinfo string longer than `max_data`, or
/// authinfo strings summing to more than `max_data`. Negative lengths other than -1 (null) are
/// errors.
pub fn decode_packet(buf: &[u8], max_data: usize) -> Result<Option<(QuorumPacket, usize)>> {
    let mut c = Cur::new(buf);
    incremental(read(&mut c, max_data).map(|p| (p, c.pos)))
}

fn read(c: &mut Cur<'_>, max_data: usize) -> std::result::Result<QuorumPacket, Stop> {
    let typ = c.i32()?;
    let zxid = c.i64()?;
    let data = match c.len("packet data", true, 0, max_data)? {
        None => None,
        Some(n) => Some(c.take(n)?.to_vec()),
    };
    let authinfo = match c.len("packet authinfo count", true, 0, AUTHINFO_COUNT_MAX)? {
        None => None,
        Some(n) => {
            // Allocation is bounded by the count's bound; the strings by max_data in total.
            let mut ids = Vec::with_capacity(n);
            let mut budget = max_data;
            for _ in 0..n {
                let scheme = c.string("packet authinfo scheme", budget)?;
                budget -= scheme.len();
                let id = c.string("packet authinfo id", budget)?;
                budget -= id.len();
                ids.push(Id { scheme: scheme.to_owned(), id: id.to_owned() });
            }
            Some(ids)
        }
    };
    Ok(QuorumPacket { typ, zxid, data, authinfo })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::packet_type as t;
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;

    fn id(s: &str, i: &str) -> Id {
        Id { scheme: s.into(), id: i.into() }
    }

    #[test]
    fn layout_with_nulls() {
        let p = QuorumPacket { typ: t::UPTODATE, zxid: -1, data: None, authinfo: None };
        let b = encode_packet(&p);
        let mut want = 12i32.to_be_bytes().to_vec();
        want.extend_from_slice(&(-1i64).to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(b, want);
        assert_eq!(decode_packet(&b, MAX).unwrap(), Some((p, 20)));
    }

    #[test]
    fn empty_and_null_stay_distinct() {
        let p = QuorumPacket { typ: t::PING, zxid: 1, data: Some(vec![]), authinfo: Some(vec![]) };
        let b = encode_packet(&p);
        assert_eq!(&b[12..], &[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_packet(&b, MAX).unwrap().unwrap().0, p);
    }

    #[test]
    fn bad_lengths_fail_before_their_bytes_arrive() {
        let head = |data_len: i32| {
            let mut b = t::REQUEST.to_be_bytes().to_vec();
            b.extend_from_slice(&(-1i64).to_be_bytes());
            b.extend_from_slice(&data_len.to_be_bytes());
            b
        };
        for bad in [-2, i32::MIN, 101, i32::MAX] {
            assert_eq!(
                decode_packet(&head(bad), 100),
                Err(WireError::Length { what: "packet data", len: bad as i64, min: -1, max: 100 })
            );
        }
        assert_eq!(decode_packet(&head(100), 100).unwrap(), None, "in bounds: wait for the bytes");

        let auth = |count: i32| {
            let mut b = head(-1);
            b.extend_from_slice(&count.to_be_bytes());
            b
        };
        for bad in [-2, 1025, i32::MAX] {
            assert!(matches!(
                decode_packet(&auth(bad), 100),
                Err(WireError::Length { what: "packet authinfo count", .. })
            ));
        }
        assert_eq!(decode_packet(&auth(1024), 100).unwrap(), None);

        // The strings share one budget of max_data bytes.
        let mut b = auth(2);
        b.extend_from_slice(&60i32.to_be_bytes());
        b.extend_from_slice(&[b'a'; 60]);
        b.extend_from_slice(&41i32.to_be_bytes());
        assert!(matches!(
            decode_packet(&b, 100),
            Err(WireError::Length { what: "packet authinfo id", max: 40, .. })
        ));
    }

    #[test]
    fn non_utf8_authinfo_is_an_error() {
        let p = QuorumPacket { typ: t::REQUEST, zxid: -1, data: None, authinfo: Some(vec![id("ip", "x")]) };
        let mut b = encode_packet(&p);
        let last = b.len() - 1;
        b[last] = 0xff;
        assert!(matches!(decode_packet(&b, MAX), Err(WireError::Text { .. })));
    }

    #[test]
    fn data_max_follows_jute() {
        assert_eq!(packet_data_max(0xfffff), 2 * 0xfffff);
        assert_eq!(packet_data_max(10), 1034);
        assert_eq!(packet_data_max(usize::MAX), i32::MAX as usize);
    }

    fn arb_packet() -> impl Strategy<Value = QuorumPacket> {
        (
            1..20i32,
            any::<i64>(),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..100)),
            prop::option::of(prop::collection::vec(("[a-z]{0,8}", "\\PC{0,12}"), 0..4)),
        )
            .prop_map(|(typ, zxid, data, auth)| QuorumPacket {
                typ,
                zxid,
                data,
                authinfo: auth.map(|v| v.into_iter().map(|(s, i)| Id { scheme: s, id: i }).collect()),
            })
    }

    proptest! {
        #[test]
        fn round_trip_and_truncations_wait(p in arb_packet(), q in arb_packet()) {
            let mut b = encode_packet(&p);
            let first = b.len();
            prop_assert_eq!(decode_packet(&b, MAX).unwrap(), Some((p.clone(), first)));
            for n in 0..first {
                prop_assert_eq!(decode_packet(&b[..n], MAX).unwrap(), None);
            }
            // A stream: the second packet follows the first.
            b.extend_from_slice(&encode_packet(&q));
            let (got, used) = decode_packet(&b, MAX).unwrap().unwrap();
            prop_assert_eq!((got, used), (p, first));
            prop_assert_eq!(decode_packet(&b[used..], MAX).unwrap().unwrap().0, q);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_packet(&b, 64);
        }
    }
}
