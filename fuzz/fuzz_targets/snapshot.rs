//! Snapshot files as start-up and `zkd snapshot dump` read them: the stream parser
//! (`snapshot::format::read_snapshot`, any compression) and the in-memory scanner of an
//! uncompressed file (`scan_snapshot`, what a mapped snapshot goes through). The two must agree
//! (the scanner leaves parents to the tree builder); gzip and snappy-java framings of the same
//! bytes must read the same; a snapshot read must write back to one that reads the same.
//! Most inputs are sealed by the harness (`sealed_snapshot`), so the checksum does not hide the
//! parsers behind it; some are taken raw, seal and all, and some go raw into the decompressors.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::snapshot::format::{read_snapshot_all, scan_snapshot, write_snapshot, Compression};
use zkd::snapshot::{SnapshotError, SnapshotNode};
use zkd::txnlog::format::DEFAULT_MAX_TXN_BYTES;
use zkd_fuzz::{gzip, sealed_snapshot, snappy_java};

fn check(file: &[u8], max: usize) {
    let read = read_snapshot_all(file, Compression::None, max);
    let mut scanned = Vec::new();
    let scan = scan_snapshot(file, max, |span, path| {
        let (p, data, acl_id, stat) = span.node(file).expect("a scanned node decodes");
        assert_eq!(p, path);
        scanned.push(SnapshotNode { path: p.to_owned(), data: data.map(<[u8]>::to_vec), acl_id, stat });
        Ok(())
    });
    match (&read, &scan) {
        (Ok(s), Ok(meta)) => {
            assert_eq!(&s.meta, meta, "scanner and stream parser disagree on the sections");
            assert_eq!(s.nodes, scanned, "scanner and stream parser disagree on the nodes");
        }
        (Ok(_), Err(e)) => panic!("the scanner refuses what the stream parser reads: {e}"),
        (Err(e), Ok(_)) => {
            assert!(
                matches!(e, SnapshotError::Orphan { .. }),
                "the stream parser refuses what the scanner reads: {e}"
            )
        }
        (Err(_), Err(_)) => {}
    }
    let Ok(s) = read else { return };
    for (c, bytes) in [(Compression::Gzip, gzip(file)), (Compression::Snappy, snappy_java(file))] {
        let other = read_snapshot_all(&bytes[..], c, max)
            .unwrap_or_else(|e| panic!("{c:?} of a snapshot that reads does not read: {e}"));
        assert_eq!(other, s, "{c:?} reads differently");
    }
    let m = &s.meta;
    let out = write_snapshot(
        Vec::new(),
        Compression::None,
        m.header.dbid,
        &m.sessions,
        &m.acl_cache,
        &s.nodes,
        m.digest,
    )
    .expect("writing to memory");
    let again = read_snapshot_all(&out[..], Compression::None, max.max(DEFAULT_MAX_TXN_BYTES))
        .unwrap_or_else(|e| panic!("a snapshot written from one read does not read: {e}"));
    assert_eq!(again, s, "read(write(snapshot)) differs");
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let max = if ctl & 1 != 0 { 64 } else { DEFAULT_MAX_TXN_BYTES };
    match (ctl >> 1) & 7 {
        // Raw, seal and all.
        0 => check(rest, max),
        // Raw into the decompressors: a bad stream is an error.
        1 => {
            let _ = read_snapshot_all(rest, Compression::Gzip, max);
        }
        2 => {
            let _ = read_snapshot_all(rest, Compression::Snappy, max);
        }
        3 if rest.len() >= 20 => {
            let (d, body) = rest.split_at(20);
            let digest = (
                i64::from_be_bytes(d[0..8].try_into().unwrap()),
                i32::from_be_bytes(d[8..12].try_into().unwrap()),
                i64::from_be_bytes(d[12..20].try_into().unwrap()),
            );
            check(&sealed_snapshot(body, Some(digest)), max)
        }
        _ => check(&sealed_snapshot(rest, None), max),
    }
});
