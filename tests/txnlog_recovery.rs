//! Recovery, one test per row of the decision table in `src/db/recovery.rs`.

use std::path::{Path, PathBuf};
use zkd::db::recovery::{recover, LogAction, RecoveryError, RecoveryOptions};
use zkd::proto::records::*;
use zkd::proto::types::OpCode;
use zkd::proto::{LoggedTxn, TxnBody};
use zkd::snapshot::{write_snapshot_file, Compression, SnapshotNode};
use zkd::txnlog::format::{encode_txn_entry, log_file_name, FileHeader, FILE_HEADER_LEN_BYTES};

fn txn(zxid: i64) -> LoggedTxn {
    LoggedTxn {
        hdr: TxnHeader {
            client_id: 0x42,
            cxid: zxid as i32,
            zxid,
            time: 1000 + zxid,
            txn_type: OpCode::SetData as i32,
        },
        body: TxnBody::SetData(SetDataTxn { path: "/n".into(), data: Some(vec![zxid as u8; 7]), version: 0 }),
        digest: None,
    }
}

/// Writes log.<first> holding `zxids`, followed by `pad` zero bytes. Returns the path and the
/// offset of each entry.
fn write_log(dir: &Path, zxids: std::ops::RangeInclusive<i64>, pad: usize) -> (PathBuf, Vec<usize>) {
    let mut b = Vec::new();
    FileHeader::txnlog().encode(&mut b);
    let mut offs = Vec::new();
    let first = *zxids.start();
    for z in zxids {
        offs.push(b.len());
        encode_txn_entry(&txn(z), &mut b);
    }
    b.resize(b.len() + pad, 0);
    let p = dir.join(log_file_name(first));
    std::fs::write(&p, b).unwrap();
    (p, offs)
}

fn write_snap(dir: &Path, zxid: i64) -> PathBuf {
    let root =
        SnapshotNode { path: "".into(), data: Some(vec![]), acl_id: -1, stat: StatPersisted::default() };
    let n = SnapshotNode {
        path: "/n".into(),
        data: Some(vec![zxid as u8]),
        acl_id: -1,
        stat: StatPersisted { mzxid: zxid, ..Default::default() },
    };
    write_snapshot_file(dir, zxid, Compression::None, &[(0x42, 30000)], &[], [root, n], None).unwrap()
}

fn zxids(r: &zkd::db::recovery::Recovered) -> Vec<i64> {
    r.txns.iter().map(|t| t.hdr.zxid).collect()
}

fn rec(d: &Path) -> Result<zkd::db::recovery::Recovered, RecoveryError> {
    recover(d, d, &RecoveryOptions::default())
}

#[test]
fn row1_nothing_at_all_is_a_fresh_database() {
    let d = tempfile::tempdir().unwrap();
    let r = rec(d.path()).unwrap();
    assert!(r.fresh && r.snapshot.is_none() && r.txns.is_empty());
    assert_eq!(r.last_zxid, 0);
}

#[test]
fn row2_logs_without_snapshot_are_refused_unless_trusted() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 1..=3, 100);
    assert!(matches!(rec(d.path()), Err(RecoveryError::LogsWithoutSnapshot { .. })));
    let r =
        recover(d.path(), d.path(), &RecoveryOptions { trust_empty_snapshot: true, ..Default::default() })
            .unwrap();
    assert_eq!(zxids(&r), [1, 2, 3]);
    assert_eq!(r.last_zxid, 3);
    assert!(!r.fresh);
}

#[test]
fn row3_invalid_newest_snapshots_are_skipped_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    write_snap(d.path(), 2);
    // Newest: truncated. Next: a flipped bit (checksum). Then the good one at 2.
    let t = write_snap(d.path(), 9);
    let len = std::fs::metadata(&t).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&t).unwrap().set_len(len - 3).unwrap();
    let c = write_snap(d.path(), 5);
    let mut b = std::fs::read(&c).unwrap();
    b[30] ^= 1;
    std::fs::write(&c, b).unwrap();
    write_log(d.path(), 1..=6, 64);
    let r = rec(d.path()).unwrap();
    let s = r.snapshot.as_ref().unwrap();
    assert_eq!(s.zxid, 2);
    assert_eq!(zxids(&r), [3, 4, 5, 6]);
    assert_eq!(r.last_zxid, 6);
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("snapshot.9") && r.warnings[0].contains("truncated"), "{:?}", r.warnings);
    assert!(r.warnings[1].contains("snapshot.5") && r.warnings[1].contains("CRC"), "{:?}", r.warnings);
}

#[test]
fn row4_snapshots_but_none_valid_is_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("snapshot.3"), b"ZKSN").unwrap();
    assert!(
        matches!(rec(d.path()), Err(RecoveryError::NoValidSnapshot { reasons, .. }) if reasons.len() == 1)
    );
}

#[test]
fn row5_6_older_logs_ignored_and_txns_up_to_snapshot_skipped() {
    let d = tempfile::tempdir().unwrap();
    // log.1 is garbage after its header: it is never read because log.6 starts before snap 7.
    let (old, _) = write_log(d.path(), 1..=5, 0);
    let mut b = std::fs::read(&old).unwrap();
    b[FILE_HEADER_LEN_BYTES + 3] ^= 0xff;
    std::fs::write(&old, b).unwrap();
    write_log(d.path(), 6..=10, 4096);
    write_snap(d.path(), 7);
    let r = rec(d.path()).unwrap();
    assert_eq!(zxids(&r), [8, 9, 10]);
    assert_eq!(r.last_zxid, 10);
    assert!(r.actions.is_empty() && r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn row7_clean_end_and_padding_continue_into_next_file() {
    let d = tempfile::tempdir().unwrap();
    write_snap(d.path(), 0);
    write_log(d.path(), 1..=3, 0);
    write_log(d.path(), 4..=5, 1 << 16);
    let r = rec(d.path()).unwrap();
    assert_eq!(zxids(&r), [1, 2, 3, 4, 5]);
}

#[test]
fn row8_torn_tails_are_truncated() {
    // (a) partial last entry, (b) bad checksum on the last entry, (c) last entry zeroed midway.
    for case in ["partial", "checksum", "zeroed"] {
        let d = tempfile::tempdir().unwrap();
        write_snap(d.path(), 0);
        let (p, offs) = write_log(d.path(), 1..=4, 0);
        let mut b = std::fs::read(&p).unwrap();
        let last = offs[3];
        match case {
            "partial" => b.truncate(last + 20),
            "checksum" => b[last + 30] ^= 0x80,
            _ => {
                for x in &mut b[last + 16..] {
                    *x = 0
                }
                b.resize(b.len() + 500, 0);
            }
        }
        std::fs::write(&p, &b).unwrap();
        let r = rec(d.path()).unwrap();
        assert_eq!(zxids(&r), [1, 2, 3], "{case}");
        assert_eq!(r.last_zxid, 3);
        assert!(
            matches!(&r.actions[..], [LogAction::Truncate { offset, .. }] if *offset as usize == last),
            "{case}"
        );
        assert!(
            r.warnings[0].contains("truncating torn tail")
                && r.warnings[0].contains(&format!("offset {last}"))
        );
        assert_eq!(std::fs::metadata(&p).unwrap().len() as usize, last);
        // Idempotent: a second recovery finds a clean file.
        let again = rec(d.path()).unwrap();
        assert_eq!(zxids(&again), [1, 2, 3]);
        assert!(again.actions.is_empty());
    }
}

#[test]
fn row9_corruption_followed_by_valid_entries_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_snap(d.path(), 0);
    let (p, offs) = write_log(d.path(), 1..=4, 64);
    let mut b = std::fs::read(&p).unwrap();
    b[offs[1] + 25] ^= 0x01;
    std::fs::write(&p, &b).unwrap();
    match rec(d.path()) {
        Err(RecoveryError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, p);
            assert_eq!(offset as usize, offs[1]);
        }
        other => panic!("{other:?}"),
    }
    // Nothing was changed on disk.
    assert_eq!(std::fs::read(&p).unwrap(), b);
}

#[test]
fn row9_torn_file_followed_by_a_later_file_with_entries_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_snap(d.path(), 0);
    let (p, offs) = write_log(d.path(), 1..=3, 0);
    let mut b = std::fs::read(&p).unwrap();
    b.truncate(offs[2] + 5);
    std::fs::write(&p, &b).unwrap();
    write_log(d.path(), 4..=5, 0);
    assert!(
        matches!(rec(d.path()), Err(RecoveryError::Corrupt { offset, .. }) if offset as usize == offs[2])
    );
}

#[test]
fn row10_last_log_torn_at_creation_is_removed() {
    let d = tempfile::tempdir().unwrap();
    write_snap(d.path(), 0);
    write_log(d.path(), 1..=2, 0);
    let torn = d.path().join("log.3");
    std::fs::write(&torn, b"ZKLG\0\0").unwrap();
    let r = rec(d.path()).unwrap();
    assert_eq!(zxids(&r), [1, 2]);
    assert!(!torn.exists());
}

/// A roll put a zero-filled preallocated file in place, then kill -9 before its first group.
#[test]
fn row10b_last_log_all_zeros_is_removed_but_not_a_zero_header_with_data() {
    let d = tempfile::tempdir().unwrap();
    write_snap(d.path(), 0);
    write_log(d.path(), 1..=2, 0);
    let never_written = d.path().join("log.3");
    std::fs::write(&never_written, vec![0u8; 64 << 10]).unwrap();
    let r = rec(d.path()).unwrap();
    assert_eq!(zxids(&r), [1, 2]);
    assert!(!never_written.exists());
    // A zeroed header with bytes after it may hide acknowledged txns: refused.
    let mut b = vec![0u8; 64 << 10];
    b[4096] = 1;
    std::fs::write(d.path().join("log.3"), b).unwrap();
    assert!(matches!(rec(d.path()), Err(RecoveryError::BadLogHeader { .. })));
}

#[test]
fn row11_bad_magic_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_snap(d.path(), 0);
    let (p, _) = write_log(d.path(), 1..=2, 0);
    let mut b = std::fs::read(&p).unwrap();
    b[0] = b'X';
    std::fs::write(&p, b).unwrap();
    assert!(matches!(rec(d.path()), Err(RecoveryError::BadLogHeader { .. })));
}

#[test]
fn row12_zxids_going_backwards_are_refused() {
    let d = tempfile::tempdir().unwrap();
    write_snap(d.path(), 0);
    write_log(d.path(), 1..=5, 0);
    write_log(d.path(), 3..=4, 0); // log.3 overlaps log.1
    assert!(matches!(rec(d.path()), Err(RecoveryError::ZxidOrder { .. })));
}

#[test]
fn row13_gap_is_a_warning() {
    let d = tempfile::tempdir().unwrap();
    write_snap(d.path(), 0);
    write_log(d.path(), 1..=2, 0);
    write_log(d.path(), 5..=6, 0);
    let r = rec(d.path()).unwrap();
    assert_eq!(zxids(&r), [1, 2, 5, 6]);
    assert!(r.warnings.iter().any(|w| w.contains("gap")), "{:?}", r.warnings);
}

#[test]
fn zookeeper_data_dir_recovers() {
    // The fixtures are a real ZooKeeper 3.8 version-2 directory (with snapshots of each compression).
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zk38");
    let d = tempfile::tempdir().unwrap();
    for f in ["log.1", "log.e", "snapshot.0", "snapshot.d"] {
        std::fs::copy(src.join(f), d.path().join(f)).unwrap();
    }
    let r = rec(d.path()).unwrap();
    assert_eq!(r.snapshot.as_ref().unwrap().zxid, 0xd);
    assert_eq!(zxids(&r), [0xe, 0xf, 0x10]);
    assert_eq!(r.last_zxid, 0x10);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}
