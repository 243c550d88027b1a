use super::scan::stat_from_bytes;
use super::*;
use crate::proto::jute::Record;
use crate::proto::records::Id;
use crate::txnlog::format::DEFAULT_MAX_TXN_BYTES;

#[allow(clippy::type_complexity)]
pub(crate) fn sample() -> (Vec<(i64, i32)>, Vec<(i64, Vec<Acl>)>, Vec<SnapshotNode>) {
    let world = Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } };
    let st = |z: i64| StatPersisted {
        czxid: z,
        mzxid: z,
        pzxid: z,
        ctime: z * 1000,
        mtime: z * 1000,
        ..Default::default()
    };
    let node = |p: &str, d: Option<&[u8]>, acl: i64, z: i64| SnapshotNode {
        path: p.into(),
        data: d.map(|d| d.to_vec()),
        acl_id: acl,
        stat: st(z),
    };
    (
        vec![(0x1000025699f0000, 10000), (0x1000025699f0001, 30000)],
        vec![(1, vec![world])],
        vec![
            node("", Some(b""), -1, 0),
            node("/a", Some(b"hello"), 1, 2),
            node("/a/b", None, 1, 3),
            node("/zookeeper", Some(b""), -1, 0),
        ],
    )
}

#[test]
fn round_trip_all_compressions_with_and_without_digest() {
    let (s, a, n) = sample();
    for c in [Compression::None, Compression::Gzip, Compression::Snappy] {
        for d in [None, Some(ZxidDigest { zxid: 3, digest_version: 2, digest: 12345 })] {
            let bytes = write_snapshot(Vec::new(), c, SNAP_DBID, &s, &a, &n, d).unwrap();
            let snap = read_snapshot_all(&bytes[..], c, DEFAULT_MAX_TXN_BYTES).unwrap();
            assert_eq!(snap.nodes, n);
            assert_eq!(snap.meta.sessions, s);
            assert_eq!(snap.meta.acl_cache, a);
            assert_eq!(snap.meta.digest, d);
            assert_eq!(snap.meta.header.dbid, -1);
            assert_eq!(snap.meta.node_count, 4);
            if c == Compression::None {
                // Ends like SnapStream.isValidCheckedStream expects: int 1, '/'.
                assert_eq!(&bytes[bytes.len() - 5..], b"\0\0\0\x01/");
            }
        }
    }
}

#[test]
fn every_truncation_and_every_bit_flip_is_an_error() {
    let (s, a, n) = sample();
    let d = Some(ZxidDigest { zxid: 3, digest_version: 2, digest: 12345 });
    let bytes = write_snapshot(Vec::new(), Compression::None, SNAP_DBID, &s, &a, &n, d).unwrap();
    // Cutting right after the first seal leaves a valid pre-3.6 snapshot: every other cut fails.
    let first_seal_end = bytes.len() - 20 - 13;
    for cut in 0..bytes.len() {
        let r = read_snapshot_all(&bytes[..cut], Compression::None, DEFAULT_MAX_TXN_BYTES);
        if cut == first_seal_end {
            assert_eq!(r.unwrap().meta.digest, None);
        } else {
            assert!(r.is_err(), "cut at {cut} accepted");
        }
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x04;
        assert!(read_snapshot_all(&b[..], Compression::None, DEFAULT_MAX_TXN_BYTES).is_err(), "flip at {i}");
    }
}

#[test]
fn stat_fast_decoder_matches_jute() {
    let st = StatPersisted {
        czxid: 1,
        mzxid: -2,
        ctime: 3 << 40,
        mtime: 4,
        version: -5,
        cversion: 6,
        aversion: i32::MIN,
        ephemeral_owner: i64::MIN + 7,
        pzxid: 8,
    };
    let b = st.to_bytes();
    assert_eq!(stat_from_bytes(b.as_slice().try_into().unwrap()), st);
}

/// The mapped scan accepts exactly what the stream reader accepts, with the same nodes.
#[test]
fn scan_matches_read_on_every_truncation_and_bit_flip() {
    let (s, a, n) = sample();
    let d = Some(ZxidDigest { zxid: 3, digest_version: 2, digest: 12345 });
    let bytes = write_snapshot(Vec::new(), Compression::None, SNAP_DBID, &s, &a, &n, d).unwrap();
    let scan = |b: &[u8]| {
        let mut spans = Vec::new();
        scan_snapshot(b, DEFAULT_MAX_TXN_BYTES, |sp, path| {
            assert_eq!(sp.node(b).unwrap().0, path);
            spans.push(sp);
            Ok(())
        })
        .map(|m| (m, spans))
    };
    let (meta, spans) = scan(&bytes).unwrap();
    let read = read_snapshot_all(&bytes[..], Compression::None, DEFAULT_MAX_TXN_BYTES).unwrap();
    assert_eq!(meta, read.meta);
    let nodes: Vec<SnapshotNode> = spans
        .iter()
        .map(|sp| {
            let (path, data, acl_id, stat) = sp.node(&bytes).unwrap();
            assert_eq!(sp.ephemeral_owner(&bytes), Some(stat.ephemeral_owner));
            SnapshotNode { path: path.into(), data: data.map(<[u8]>::to_vec), acl_id, stat }
        })
        .collect();
    assert_eq!(nodes, n);
    for cut in 0..bytes.len() {
        let r = read_snapshot_all(&bytes[..cut], Compression::None, DEFAULT_MAX_TXN_BYTES);
        assert_eq!(scan(&bytes[..cut]).is_ok(), r.is_ok(), "cut at {cut}");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x04;
        assert!(scan(&b).is_err(), "flip at {i}");
    }
}

#[test]
fn hostile_lengths_and_orphans() {
    let mut b = Vec::new();
    b.extend_from_slice(b"ZKSN\0\0\0\x02");
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    let mut big = b.clone();
    big.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(
        read_snapshot_all(&big[..], Compression::None, 1024),
        Err(SnapshotError::BadLength { .. })
    ));
    let mut orphan = b.clone();
    orphan.extend_from_slice(&4i32.to_be_bytes());
    orphan.extend_from_slice(b"/x/y");
    assert!(matches!(
        read_snapshot_all(&orphan[..], Compression::None, 1024),
        Err(SnapshotError::Orphan { .. })
    ));
    assert!(matches!(
        read_snapshot_all(&b"ZKLG"[..], Compression::None, 1024),
        Err(SnapshotError::Truncated { .. })
    ));
}
