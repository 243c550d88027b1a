//! The snapshot a leader streams after a SNAP packet (`LearnerHandler`: `serializeSnapshot`, then
//! the signature; `Learner.syncWithLeader` reads it back):
//!
//! ```text
//! sessions   count i32 | (id i64, timeout i32)*
//! ACL cache  count i32 | (id i64, vector<ACL>)*
//! nodes      (path ustring, data buffer, acl i64, StatPersisted)*   preorder, the root's path ""
//!            "/"                                                    end of nodes
//! signature  "BenWasHere"
//! ```
//! Unlike a snapshot file there is no file header, checksum or digest. The stream can be far
//! larger than any buffer, so [`SnapStreamDecoder`] hands it out an item at a time.

use super::{incremental, Cur, Result, Stop, WireError, SNAP_SIGNATURE};
use crate::proto::jute::Writer;
use crate::proto::records::{Acl, StatPersisted};
use crate::proto::Id;

/// One node of the streamed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapNode {
    /// "" for the root, then "/a", "/a/b", ... parents before children.
    pub path: String,
    pub data: Option<Vec<u8>>,
    /// The node's key in the ACL cache (-1: open, unsafe).
    pub acl: i64,
    pub stat: StatPersisted,
}

/// One item of the stream, in stream order: sessions, ACL cache entries, nodes, then `End`
/// (after the end marker and the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapItem {
    Session { id: i64, timeout_ms: i32 },
    Acl { id: i64, acls: Vec<Acl> },
    Node(SnapNode),
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    SessionCount,
    Sessions(u32),
    AclCount,
    Acls(u32),
    Nodes,
    Done,
}

/// Reads the stream that follows SNAP, an item at a time; every length is bounded by
/// `max_buffer` (the leader's jute.maxbuffer plus slack, see `packet_data_max`).
#[derive(Debug, Clone)]
pub struct SnapStreamDecoder {
    phase: Phase,
    max_buffer: usize,
}

/// StatPersisted: 4 longs, 3 ints, 2 longs.
const STAT_BYTES: usize = 60;
/// The smallest ACL: perms i32 and two empty strings.
const ACL_MIN_BYTES: usize = 12;

impl SnapStreamDecoder {
    pub fn new(max_buffer: usize) -> SnapStreamDecoder {
        SnapStreamDecoder { phase: Phase::SessionCount, max_buffer }
    }

    /// True once `End` was returned.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The next item from the start of `buf` (the bytes after those already consumed):
    /// Ok(None) until it is whole, then the item and the bytes it took. After `End`, bytes
    /// belong to the packets that follow (NEWLEADER) and this returns an error.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<(SnapItem, usize)>> {
        let mut c = Cur::new(buf);
        let mut phase = self.phase;
        let r = step(&mut c, &mut phase, self.max_buffer);
        let out = incremental(r.map(|item| (item, c.pos)))?;
        if out.is_some() {
            // The phase moves only with a whole item, so a short buffer is read again from the
            // same place once more bytes arrived.
            self.phase = phase;
        }
        Ok(out)
    }
}

fn count(c: &mut Cur<'_>, what: &'static str) -> std::result::Result<u32, Stop> {
    Ok(c.len(what, false, 0, i32::MAX as usize)?.unwrap_or(0) as u32)
}

fn step(c: &mut Cur<'_>, phase: &mut Phase, max: usize) -> std::result::Result<SnapItem, Stop> {
    loop {
        match *phase {
            Phase::SessionCount => *phase = Phase::Sessions(count(c, "snapshot session count")?),
            Phase::Sessions(0) => *phase = Phase::AclCount,
            Phase::Sessions(n) => {
                let item = SnapItem::Session { id: c.i64()?, timeout_ms: c.i32()? };
                *phase = Phase::Sessions(n - 1);
                return Ok(item);
            }
            Phase::AclCount => *phase = Phase::Acls(count(c, "snapshot ACL cache count")?),
            Phase::Acls(0) => *phase = Phase::Nodes,
            Phase::Acls(n) => {
                let id = c.i64()?;
                let k = c.len("snapshot ACL list", false, 0, max / ACL_MIN_BYTES)?.unwrap_or(0);
                let mut acls = Vec::with_capacity(k.min(c.left() / ACL_MIN_BYTES));
                for _ in 0..k {
                    let perms = c.i32()?;
                    let scheme = c.string("snapshot ACL scheme", max)?.to_owned();
                    let id = c.string("snapshot ACL id", max)?.to_owned();
                    acls.push(Acl { perms, id: Id { scheme, id } });
                }
                *phase = Phase::Acls(n - 1);
                return Ok(SnapItem::Acl { id, acls });
            }
            Phase::Nodes => {
                let path = c.string("snapshot node path", max)?;
                if path == "/" {
                    let sig = c.string("snapshot signature", SNAP_SIGNATURE.len())?;
                    if sig != SNAP_SIGNATURE {
                        return Err(WireError::Text {
                            what: "snapshot signature",
                            reason: "is not BenWasHere",
                            text: sig.to_owned(),
                        }
                        .into());
                    }
                    *phase = Phase::Done;
                    return Ok(SnapItem::End);
                }
                let data = match c.len("snapshot node data", true, 0, max)? {
                    None => None,
                    Some(n) => Some(c.take(n)?.to_vec()),
                };
                let acl = c.i64()?;
                let s = c.take(STAT_BYTES)?;
                let mut sc = Cur::new(s);
                let stat = (|| -> std::result::Result<StatPersisted, Stop> {
                    Ok(StatPersisted {
                        czxid: sc.i64()?,
                        mzxid: sc.i64()?,
                        ctime: sc.i64()?,
                        mtime: sc.i64()?,
                        version: sc.i32()?,
                        cversion: sc.i32()?,
                        aversion: sc.i32()?,
                        ephemeral_owner: sc.i64()?,
                        pzxid: sc.i64()?,
                    })
                })()?;
                return Ok(SnapItem::Node(SnapNode { path: path.to_owned(), data, acl, stat }));
            }
            Phase::Done => {
                return Err(WireError::Trailing {
                    what: "snapshot stream after its signature",
                    len: c.left(),
                }
                .into())
            }
        }
    }
}

/// Writes the stream's sessions and ACL cache (what precedes the nodes).
pub fn encode_snap_head(w: &mut Writer, sessions: &[(i64, i32)], acls: &[(i64, Vec<Acl>)]) {
    w.i32(sessions.len() as i32);
    for (id, timeout) in sessions {
        w.i64(*id);
        w.i32(*timeout);
    }
    w.i32(acls.len() as i32);
    for (id, list) in acls {
        w.i64(*id);
        w.vec(list, |w, a| {
            w.i32(a.perms);
            w.string(&a.id.scheme);
            w.string(&a.id.id);
        });
    }
}

/// Writes one node.
pub fn encode_snap_node(w: &mut Writer, n: &SnapNode) {
    encode_snap_node_ref(w, &n.path, n.data.as_deref(), n.acl, &n.stat);
}

/// Writes one node from borrowed fields (a leader walking its tree copies nothing).
pub fn encode_snap_node_ref(w: &mut Writer, path: &str, data: Option<&[u8]>, acl: i64, s: &StatPersisted) {
    w.string(path);
    w.opt_buffer(data);
    w.i64(acl);
    w.i64(s.czxid);
    w.i64(s.mzxid);
    w.i64(s.ctime);
    w.i64(s.mtime);
    w.i32(s.version);
    w.i32(s.cversion);
    w.i32(s.aversion);
    w.i64(s.ephemeral_owner);
    w.i64(s.pzxid);
}

/// Writes the end of the nodes ("/") and the signature.
pub fn encode_snap_end(w: &mut Writer) {
    w.string("/");
    w.string(SNAP_SIGNATURE);
}

#[cfg(test)]
pub(crate) fn decode_all(b: &[u8], max: usize) -> Result<(Vec<SnapItem>, usize)> {
    let mut d = SnapStreamDecoder::new(max);
    let mut at = 0;
    let mut items = Vec::new();
    while !d.is_done() {
        match d.next(&b[at..])? {
            Some((item, n)) => {
                items.push(item);
                at += n;
            }
            None => {
                return Err(WireError::Truncated { what: "snapshot stream", offset: at, needed: 1, left: 0 })
            }
        }
    }
    Ok((items, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stat(z: i64) -> StatPersisted {
        StatPersisted {
            czxid: z,
            mzxid: z,
            ctime: 1,
            mtime: 2,
            version: 3,
            cversion: 4,
            aversion: 5,
            ephemeral_owner: 0,
            pzxid: z,
        }
    }

    fn sample() -> (Vec<u8>, Vec<SnapItem>) {
        let sessions = vec![(0x100, 4000), (0x101, 6000)];
        let acls = vec![(1, vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }])];
        let nodes = vec![
            SnapNode { path: "".into(), data: Some(vec![]), acl: -1, stat: stat(0) },
            SnapNode { path: "/a".into(), data: Some(b"hello".to_vec()), acl: 1, stat: stat(5) },
            SnapNode { path: "/a/b".into(), data: None, acl: -1, stat: stat(6) },
        ];
        let mut w = Writer::new();
        encode_snap_head(&mut w, &sessions, &acls);
        for n in &nodes {
            encode_snap_node(&mut w, n);
        }
        encode_snap_end(&mut w);
        let mut items: Vec<SnapItem> =
            sessions.iter().map(|&(id, timeout_ms)| SnapItem::Session { id, timeout_ms }).collect();
        items.extend(acls.into_iter().map(|(id, acls)| SnapItem::Acl { id, acls }));
        items.extend(nodes.into_iter().map(SnapItem::Node));
        items.push(SnapItem::End);
        (w.into_inner(), items)
    }

    #[test]
    fn stream_decodes_item_by_item() {
        let (b, items) = sample();
        assert_eq!(decode_all(&b, 1 << 20).unwrap(), (items, b.len()));
        assert!(b.ends_with(b"\0\0\0\x01/\0\0\0\x0aBenWasHere"));
    }

    #[test]
    fn every_truncation_waits_and_then_resumes() {
        let (b, items) = sample();
        // Feed the stream one more byte at a time: every prefix either yields whole items or
        // waits, and the items are the same as from the whole buffer.
        let mut d = SnapStreamDecoder::new(1 << 20);
        let (mut at, mut got) = (0, Vec::new());
        for end in 0..=b.len() {
            if d.is_done() {
                break;
            }
            while let Some((item, n)) = d.next(&b[at..end]).unwrap() {
                got.push(item);
                at += n;
                if d.is_done() {
                    break;
                }
            }
        }
        assert_eq!((got, at), (items, b.len()));
        assert!(d.next(&[0]).is_err(), "nothing after the signature");
    }

    #[test]
    fn bad_lengths_and_signature_are_errors() {
        let max = 100;
        let mut d = SnapStreamDecoder::new(max);
        assert!(matches!(d.next(&(-1i32).to_be_bytes()), Err(WireError::Length { .. })));

        // An empty head, then a node whose data is too long for max_buffer.
        let mut w = Writer::new();
        encode_snap_head(&mut w, &[], &[]);
        w.string("");
        w.i32(101);
        assert!(matches!(decode_all(&w.buf, max), Err(WireError::Length { what: "snapshot node data", .. })));

        let mut w = Writer::new();
        encode_snap_head(&mut w, &[], &[]);
        w.string("/");
        w.string("BenWasHerf");
        assert!(matches!(decode_all(&w.buf, max), Err(WireError::Text { what: "snapshot signature", .. })));

        let mut w = Writer::new();
        encode_snap_head(&mut w, &[], &[]);
        w.string("/");
        w.string("BenWasHere!");
        assert!(matches!(decode_all(&w.buf, max), Err(WireError::Length { what: "snapshot signature", .. })));

        // An ACL list longer than max_buffer could hold is refused before it is read.
        let mut w = Writer::new();
        encode_snap_head(&mut w, &[], &[]);
        let mut b = w.into_inner();
        b.truncate(4);
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1i64.to_be_bytes());
        b.extend_from_slice(&(i32::MAX).to_be_bytes());
        assert!(matches!(decode_all(&b, max), Err(WireError::Length { what: "snapshot ACL list", .. })));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_all(&b, 64);
        }

        #[test]
        fn random_trees_round_trip(
            sessions in prop::collection::vec((any::<i64>(), any::<i32>()), 0..5),
            nodes in prop::collection::vec(("/[a-z]{1,8}", prop::option::of(prop::collection::vec(any::<u8>(), 0..20)), any::<i64>()), 0..6),
        ) {
            let nodes: Vec<SnapNode> = nodes.into_iter().map(|(path, data, acl)| SnapNode { path, data, acl, stat: stat(acl) }).collect();
            let mut w = Writer::new();
            encode_snap_head(&mut w, &sessions, &[]);
            for n in &nodes { encode_snap_node(&mut w, n); }
            encode_snap_end(&mut w);
            let (items, used) = decode_all(&w.buf, 1 << 20).unwrap();
            prop_assert_eq!(used, w.buf.len());
            prop_assert_eq!(items.len(), sessions.len() + nodes.len() + 1);
        }
    }
}
