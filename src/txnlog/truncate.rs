//! Removing every logged txn after a zxid, across log files, as ZooKeeper's
//! `FileTxnLog.truncate` does for a learner that the leader tells to TRUNC (it logged txns the
//! new leader does not have), and as a learner must after a SNAP (the snapshot replaces what it
//! logged beyond the snapshot's zxid).
//!
//! | # | what is found (files ascending by their first zxid)                 | decision                    |
//! |---|----------------------------------------------------------------------|-----------------------------|
//! | 1 | no log file                                                          | TRUNC: refuse (ZooKeeper: "No log files found to truncate!"); after a snapshot: nothing to do |
//! | 2 | TRUNC to a zxid before the oldest file's first zxid − 1              | refuse: the txns in between are in no log (purged), nothing is changed |
//! | 3 | a file whose first zxid is after the target                          | remove it                   |
//! | 4 | the last file starting at or before the target: an entry after it    | cut the file before that entry |
//! | 5 | that file ends (cleanly or in zero padding) with entries up to it    | keep it as it is            |
//! | 6 | that file is damaged before any entry after the target               | cut the torn tail there (nothing in it was acknowledged), warn |
//! | 7 | that file's header is unusable (not all zeros)                       | refuse                      |
//!
//! Unlike ZooKeeper, whose iterator stops on the first txn at or after the target and keeps it,
//! a target between two logged zxids keeps exactly the txns up to it.
//!
//! Durability: later files are removed newest first and the directory synced before the cut is
//! made and synced, so a crash at any point leaves a log that is a prefix of the old one (the
//! leader then sends TRUNC again), never one with a hole.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::format::{zxid_from_name, LogReader, Stop, LOG_FILE_PREFIX};

/// Which rule set a truncation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncateMode {
    /// The leader's TRUNC: refuse when the log cannot show the state at the target (rows 1, 2).
    Trunc,
    /// After a snapshot at the target was received: whatever was logged beyond it goes, and
    /// nothing before it matters.
    AfterSnapshot,
}

#[derive(Debug, Error)]
pub enum TruncateError {
    #[error("No log files found to truncate to 0x{zxid:x} in {dir}! This could happen if you still have snapshots from an old setup or log files were deleted accidentally or dataLogDir was changed in zoo.cfg.")]
    NoLogs { dir: PathBuf, zxid: i64 },
    #[error("cannot truncate the log to 0x{zxid:x}: the oldest log file, {file}, starts at 0x{first:x} (the txns in between were purged)")]
    BeforeOldest { zxid: i64, file: PathBuf, first: i64 },
    #[error("cannot truncate {file}: its header is unusable: {reason}")]
    BadHeader { file: PathBuf, reason: super::format::HeaderError },
    #[error("I/O error truncating the log ({path}): {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the transaction log writer has stopped")]
    Stopped,
}

/// What a truncation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TruncateReport {
    /// The file cut, and the length it kept.
    pub cut: Option<(PathBuf, u64)>,
    /// Files removed (newest first).
    pub removed: Vec<PathBuf>,
    /// A torn tail found before the target (row 6).
    pub warnings: Vec<String>,
}

/// The pure decision over the log files' bytes, ascending by first zxid (`(first zxid, path,
/// bytes)`); nothing is changed.
pub fn plan_truncation<B: AsRef<[u8]>>(
    dir: &Path,
    files: &[(i64, PathBuf, B)],
    zxid: i64,
    max_txn_bytes: usize,
    mode: TruncateMode,
) -> Result<TruncateReport, TruncateError> {
    let mut plan = TruncateReport::default();
    let Some((first, oldest, _)) = files.first() else {
        return match mode {
            TruncateMode::Trunc => Err(TruncateError::NoLogs { dir: dir.to_owned(), zxid }),
            TruncateMode::AfterSnapshot => Ok(plan),
        };
    };
    if mode == TruncateMode::Trunc && zxid < first.saturating_sub(1) {
        return Err(TruncateError::BeforeOldest { zxid, file: oldest.clone(), first: *first });
    }
    assert!(files.windows(2).all(|w| w[0].0 < w[1].0), "log files must be sorted by their first zxid");
    for (start, path, _) in files.iter().rev() {
        if *start > zxid {
            plan.removed.push(path.clone());
        }
    }
    // Only the last file starting at or before the target can hold txns after it: the files
    // before it end where the next one starts.
    let Some((_, path, bytes)) = files.iter().rev().find(|f| f.0 <= zxid) else { return Ok(plan) };
    let bytes = bytes.as_ref();
    let mut r = match LogReader::new(bytes, max_txn_bytes) {
        Ok(r) => r,
        // Created (preallocated) but never written: nothing in it.
        Err(_) if bytes.iter().all(|&b| b == 0) => return Ok(plan),
        Err(reason) => return Err(TruncateError::BadHeader { file: path.clone(), reason }),
    };
    for e in r.by_ref() {
        if e.txn.hdr.zxid > zxid {
            plan.cut = Some((path.clone(), e.offset));
            return Ok(plan);
        }
    }
    if let Stop::Damaged { offset, damage } = r.stop() {
        plan.warnings.push(format!(
            "cutting the torn tail of {} at offset {offset} ({damage}) while truncating to 0x{zxid:x}",
            path.display()
        ));
        plan.cut = Some((path.clone(), *offset));
    }
    Ok(plan)
}

/// Log files (`log.<hex>`) in `dir`, ascending by first zxid.
fn list_logs(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut v = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e?;
                if let Some(z) = zxid_from_name(&e.file_name().to_string_lossy(), LOG_FILE_PREFIX) {
                    v.push((z, e.path()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    v.sort();
    Ok(v)
}

/// A log file's bytes, mapped (a preallocated file is mostly zeros the reader never reaches).
enum Bytes {
    Mapped(memmap2::Mmap),
    Empty,
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Empty => &[],
        }
    }
}

fn map(path: &Path) -> io::Result<Bytes> {
    let f = std::fs::File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(Bytes::Empty);
    }
    // SAFETY: the caller owns the log directory (the writer closed its file, or does not run);
    // the mapping is dropped before any file is changed.
    let m = unsafe { memmap2::Mmap::map(&f) }?;
    Ok(Bytes::Mapped(m))
}

/// Removes every txn after `zxid` from the log files in `dir` (a `version-2` directory), durably
/// before returning (see the module docs for the rules and the order). Blocking: run it where
/// blocking is fine (the writer thread, start-up, a blocking pool).
pub fn truncate_logs(
    dir: &Path,
    zxid: i64,
    max_txn_bytes: usize,
    mode: TruncateMode,
) -> Result<TruncateReport, TruncateError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TruncateError::Io { path, source }
    };
    let files = list_logs(dir).map_err(io_err(dir))?;
    let mut mapped = Vec::with_capacity(files.len());
    for (z, p) in files {
        // Only the file to cut is read; the others are judged by name.
        let bytes = if z <= zxid { map(&p).map_err(io_err(&p))? } else { Bytes::Empty };
        mapped.push((z, p, bytes));
    }
    let plan = plan_truncation(dir, &mapped, zxid, max_txn_bytes, mode)?;
    drop(mapped);
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    for p in &plan.removed {
        std::fs::remove_file(p).map_err(io_err(p))?;
    }
    if !plan.removed.is_empty() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    }
    if let Some((p, len)) = &plan.cut {
        let f = std::fs::OpenOptions::new().write(true).open(p).map_err(io_err(p))?;
        f.set_len(*len).and_then(|_| f.sync_all()).map_err(io_err(p))?;
    }
    tracing::info!(
        "truncated the transaction log in {} to 0x{zxid:x}: {} file(s) removed{}",
        dir.display(),
        plan.removed.len(),
        plan.cut.as_ref().map_or(String::new(), |(p, l)| format!(", {} cut at {l} bytes", p.display()))
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::txn::LoggedTxn;
    use crate::proto::{OpCode, SetDataTxn, TxnBody, TxnHeader};
    use crate::txnlog::format::{encode_txn_entry, log_file_name, FileHeader};

    fn txn(zxid: i64) -> LoggedTxn {
        LoggedTxn {
            hdr: TxnHeader { client_id: 1, cxid: 1, zxid, time: 1, txn_type: OpCode::SetData as i32 },
            body: TxnBody::SetData(SetDataTxn { path: "/a".into(), data: Some(vec![1; 10]), version: 1 }),
            digest: None,
        }
    }

    /// A log file holding these zxids, then zero padding.
    fn file(zxids: impl IntoIterator<Item = i64>) -> Vec<u8> {
        let mut b = Vec::new();
        FileHeader::txnlog().encode(&mut b);
        for z in zxids {
            encode_txn_entry(&txn(z), &mut b);
        }
        b.resize(b.len() + 512, 0);
        b
    }

    fn read_zxids(dir: &Path) -> Vec<(String, Vec<i64>)> {
        list_logs(dir)
            .unwrap()
            .into_iter()
            .map(|(_, p)| {
                let b = std::fs::read(&p).unwrap();
                let z = LogReader::new(&b, 1 << 20).unwrap().map(|e| e.txn.hdr.zxid).collect();
                (p.file_name().unwrap().to_string_lossy().into_owned(), z)
            })
            .collect()
    }

    fn dir_with(files: &[(i64, Vec<u8>)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (z, b) in files {
            std::fs::write(d.path().join(log_file_name(*z)), b).unwrap();
        }
        d
    }

    #[test]
    fn cuts_across_file_boundaries() {
        let d = dir_with(&[(1, file(1..=10)), (11, file(11..=20)), (21, file(21..=30))]);
        let r = truncate_logs(d.path(), 15, 1 << 20, TruncateMode::Trunc).unwrap();
        assert_eq!(r.removed, vec![d.path().join("log.15")]);
        assert_eq!(
            read_zxids(d.path()),
            vec![("log.1".into(), (1..=10).collect()), ("log.b".into(), (11..=15).collect())]
        );
        // The cut file ends right after 15: no padding, no partial entry.
        let b = std::fs::read(d.path().join("log.b")).unwrap();
        assert_eq!(r.cut, Some((d.path().join("log.b"), b.len() as u64)));
    }

    #[test]
    fn a_target_at_a_file_end_or_between_zxids_keeps_exactly_what_is_before() {
        let d = dir_with(&[(1, file(1..=10)), (11, file([11, 12, 20]))]);
        // 10 is the last txn of log.1: log.b goes entirely, log.1 stays as it was.
        let r = truncate_logs(d.path(), 10, 1 << 20, TruncateMode::Trunc).unwrap();
        assert_eq!((r.removed.len(), r.cut), (1, None));
        assert_eq!(read_zxids(d.path()), vec![("log.1".into(), (1..=10).collect())]);

        let d = dir_with(&[(1, file(1..=10)), (11, file([11, 12, 20]))]);
        truncate_logs(d.path(), 15, 1 << 20, TruncateMode::Trunc).unwrap();
        assert_eq!(read_zxids(d.path())[1], ("log.b".into(), vec![11, 12]));
    }

    #[test]
    fn refusals_change_nothing() {
        let e = tempfile::tempdir().unwrap();
        assert!(matches!(
            truncate_logs(e.path(), 5, 1 << 20, TruncateMode::Trunc),
            Err(TruncateError::NoLogs { .. })
        ));
        assert_eq!(
            truncate_logs(e.path(), 5, 1 << 20, TruncateMode::AfterSnapshot).unwrap(),
            Default::default()
        );

        let d = dir_with(&[(11, file(11..=20)), (21, file(21..=30))]);
        let before = read_zxids(d.path());
        let err = truncate_logs(d.path(), 9, 1 << 20, TruncateMode::Trunc).unwrap_err();
        assert!(matches!(err, TruncateError::BeforeOldest { zxid: 9, first: 11, .. }), "{err}");
        assert_eq!(read_zxids(d.path()), before, "a refusal changes nothing");
        // The oldest file's first zxid − 1 is fine: every logged txn goes.
        let r = truncate_logs(d.path(), 10, 1 << 20, TruncateMode::Trunc).unwrap();
        assert_eq!(r.removed, vec![d.path().join("log.15"), d.path().join("log.b")]);
        assert!(read_zxids(d.path()).is_empty());

        // After a snapshot, anything goes.
        let d = dir_with(&[(11, file(11..=20))]);
        truncate_logs(d.path(), 3, 1 << 20, TruncateMode::AfterSnapshot).unwrap();
        assert!(read_zxids(d.path()).is_empty());
    }

    #[test]
    fn a_torn_tail_before_the_target_is_cut() {
        let mut b = file(1..=5);
        let end = {
            let mut r = LogReader::new(&b, 1 << 20).unwrap();
            r.by_ref().count();
            r.position() as usize
        };
        b[end..end + 12].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 40]);
        let d = dir_with(&[(1, b)]);
        let r = truncate_logs(d.path(), 8, 1 << 20, TruncateMode::Trunc).unwrap();
        assert_eq!(r.cut, Some((d.path().join("log.1"), end as u64)));
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(read_zxids(d.path()), vec![("log.1".into(), (1..=5).collect())]);
    }

    #[test]
    fn an_unusable_header_is_refused_and_a_zeroed_file_is_empty() {
        let d = dir_with(&[(1, file(1..=5)), (6, vec![7; 64])]);
        assert!(matches!(
            truncate_logs(d.path(), 7, 1 << 20, TruncateMode::Trunc),
            Err(TruncateError::BadHeader { .. })
        ));
        let d = dir_with(&[(1, file(1..=5)), (6, vec![0; 64])]);
        let r = truncate_logs(d.path(), 7, 1 << 20, TruncateMode::Trunc).unwrap();
        assert_eq!(r, TruncateReport::default());
    }
}
