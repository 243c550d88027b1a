//! What the fuzz targets share: a deterministic splitter that cuts one input into the reads a
//! socket could deliver, and the round-trip checks that several targets make on the records
//! they decode. Every target is a `fuzz_targets/<name>.rs`; `tests/fuzz.sh` runs them all.

use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::ops::Request;
use zkd::proto::{ConnectRequest, RequestHeader};

/// Sizes of successive reads, drawn from `seed` (xorshift): mostly small, sometimes large, so
/// that fields and length prefixes get cut at every place.
pub struct Cuts {
    state: u64,
}

impl Cuts {
    pub fn new(seed: u64) -> Cuts {
        Cuts { state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 }
    }
    /// The next read size, at least 1.
    pub fn next_len(&mut self) -> usize {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        match x % 8 {
            0..=3 => 1 + (x >> 8) as usize % 4,
            4..=6 => 1 + (x >> 8) as usize % 64,
            _ => 1 + (x >> 8) as usize % 4096,
        }
    }
}

/// A request body as a client sends it, decoded the way a shard does, and checked to encode
/// back to a body that decodes to the same request.
pub fn check_request(opcode: i32, body: &[u8]) {
    let Ok(req) = Request::decode(opcode, body) else { return };
    let _ = req.is_write();
    let mut w = Writer::new();
    req.encode(&mut w);
    let again = Request::decode(req.opcode().code(), &w.buf)
        .unwrap_or_else(|e| panic!("{req:?} encodes to bytes that do not decode: {e}"));
    assert_eq!(again, req, "decode(encode(request)) differs");
}

/// A ConnectRequest as a shard reads the first packet of a connection, round-tripped.
pub fn check_connect(body: &[u8]) {
    let Ok(c) = ConnectRequest::decode_handshake(body) else { return };
    let bytes = c.to_bytes();
    assert_eq!(ConnectRequest::decode_handshake(&bytes).as_ref(), Ok(&c));
    // The form without the readOnly byte (clients before 3.4) reads as readOnly false.
    let short = &bytes[..bytes.len() - 1];
    let old = ConnectRequest::decode_handshake(short).expect("the pre-3.4 form decodes");
    assert_eq!(old, ConnectRequest { read_only: false, ..c });
}

/// A packet of an established session: the RequestHeader, then the body by opcode.
pub fn check_session_packet(body: &[u8]) {
    let mut r = Reader::new(body);
    let Ok(hdr) = RequestHeader::decode(&mut r) else { return };
    check_request(hdr.op_type, r.rest());
}

/// A watch sink that drops every event (the targets check decoding and applying, not delivery).
pub struct NoWatches;

impl zkd::tree::WatchSink for NoWatches {
    fn deliver(
        &mut self,
        _: zkd::tree::WatcherId,
        _: zkd::proto::EventType,
        _: &str,
        _: &std::sync::Arc<Vec<zkd::proto::Acl>>,
    ) {
    }
}

/// Cuts `data` into records of `[len u16 BE][len bytes]` (the last one takes what is left).
pub fn records(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let n = (u16::from_be_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
        out.push(&data[2..2 + n]);
        data = &data[2 + n..];
    }
    out
}

/// A snapshot file around `body` (sessions, ACL cache, nodes and their "/" end marker, as the
/// input gives them): ZooKeeper's header in front, then the seal over everything before it,
/// and, when `digest` is given, the digest and its seal. So the checksum never stands between
/// the fuzzer and the parsers behind it.
pub fn sealed_snapshot(body: &[u8], digest: Option<(i64, i32, i64)>) -> Vec<u8> {
    use zkd::txnlog::format::{adler32, FileHeader, FORMAT_VERSION, SNAP_MAGIC};
    let mut f = Vec::with_capacity(body.len() + 64);
    FileHeader { magic: SNAP_MAGIC, version: FORMAT_VERSION, dbid: zkd::snapshot::SNAP_DBID }.encode(&mut f);
    f.extend_from_slice(body);
    let seal = |f: &mut Vec<u8>| {
        let sum = adler32(f) as i64;
        f.extend_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&1i32.to_be_bytes());
        f.push(b'/');
    };
    seal(&mut f);
    if let Some((zxid, version, digest)) = digest {
        f.extend_from_slice(&zxid.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&digest.to_be_bytes());
        seal(&mut f);
    }
    f
}

/// `bytes` as a gzip stream (`snapshot.<zxid>.gz`).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// `bytes` in snappy-java's stream framing (`snapshot.<zxid>.snappy`): its 16-byte header, then
/// (length, raw snappy block) per 32 KiB.
pub fn snappy_java(bytes: &[u8]) -> Vec<u8> {
    let mut out = zkd::snapshot::format::SNAPPY_JAVA_HEADER.to_vec();
    for block in bytes.chunks(32 * 1024) {
        let c = snap::raw::Encoder::new().compress_vec(block).expect("a block under 4 GiB");
        out.extend_from_slice(&(c.len() as i32).to_be_bytes());
        out.extend_from_slice(&c);
    }
    out
}

/// Checks a stream decoder's contract on `buf` (`Ok(None)` while the message is incomplete):
/// a whole message of n bytes reads as incomplete from every shorter prefix (only a few are
/// tried on long inputs), and as the same message with bytes after it; an error stays an error
/// (or incomplete) on prefixes. Returns what the whole buffer decodes to.
pub fn check_incremental<T: PartialEq + std::fmt::Debug, E: std::fmt::Debug>(
    buf: &[u8],
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>,
) -> Result<Option<(T, usize)>, E> {
    let whole = decode(buf);
    let prefixes = |n: usize| -> Vec<usize> {
        if n <= 256 {
            (0..n).collect()
        } else {
            vec![0, 1, 4, 8, 12, n / 3, n / 2, n - 8, n - 1]
        }
    };
    match &whole {
        Ok(Some((msg, n))) => {
            assert!(*n <= buf.len() && *n > 0, "consumed {n} of {}", buf.len());
            for k in prefixes(*n) {
                match decode(&buf[..k]) {
                    Ok(None) => {}
                    other => panic!("prefix of {k} of a {n}-byte message decodes to {other:?}"),
                }
            }
            match decode(&buf[..*n]) {
                Ok(Some((m, n2))) => assert!(&m == msg && n2 == *n, "the message alone reads differently"),
                other => panic!("the message alone decodes to {other:?}"),
            }
        }
        Ok(None) => {
            for k in prefixes(buf.len()) {
                assert!(matches!(decode(&buf[..k]), Ok(None)), "prefix {k} of an incomplete message");
            }
        }
        Err(_) => {
            for k in prefixes(buf.len()) {
                assert!(!matches!(decode(&buf[..k]), Ok(Some(_))), "prefix {k} of a bad message decodes");
            }
        }
    }
    whole
}

/// The tree is one tree: every node reached from the root is at `parent/name` and is listed by
/// its parent under `name`, its Stat counts the children it lists, and the node count is the
/// number of nodes reached.
pub fn check_tree(tree: &zkd::tree::DataTree) {
    let mut paths = Vec::new();
    tree.for_each_node(|p, _, _, _| paths.push(if p.is_empty() { "/".to_owned() } else { p.to_owned() }));
    assert_eq!(paths.len(), tree.node_count(), "nodes reachable from the root vs the node count");
    for p in &paths {
        let (children, stat) =
            tree.get_children(p, None).unwrap_or_else(|e| panic!("{p} is reached but not read: {e}"));
        assert_eq!(stat.num_children as usize, children.len(), "{p}'s Stat and its children");
        for c in children {
            assert!(!c.is_empty() && !c.contains('/'), "{p} lists a child named {c:?}");
            let child = if p == "/" { format!("/{c}") } else { format!("{p}/{c}") };
            assert!(tree.exists(&child, None).is_some(), "{p} lists {c:?}, but {child} does not exist");
        }
    }
}
