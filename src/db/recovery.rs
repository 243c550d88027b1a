//! Recovery: snapshot + logs → the state to rebuild, as a decision table (TigerBeetle journal
//! style). [`plan_logs`] is pure (bytes in, decisions out); [`recover`] reads the directories,
//! applies the decided truncations and returns what the integrator feeds into the tree.
//!
//! | # | what is found                                                   | decision                          |
//! |---|-----------------------------------------------------------------|-----------------------------------|
//! | 1 | no snapshot, no log entries                                      | fresh empty database, zxid 0      |
//! | 2 | no snapshot, log entries                                         | refuse (`trust_empty_snapshot` replays all) |
//! | 3 | newest snapshot invalid (truncated, checksum, undecodable)      | warn naming file+reason, try older |
//! | 4 | snapshot files, none valid                                       | refuse, listing every reason      |
//! | 5 | log files starting before the log that holds snap zxid + 1       | ignored (ZooKeeper `getLogFiles`) |
//! | 6 | txns with zxid <= snapshot zxid                                  | skipped                           |
//! | 7 | a file ends cleanly (end of bytes or zero padding)               | go on with the next file          |
//! | 8 | damage (partial entry, bad length, bad checksum, no EOR, garbage) and nothing valid after it in this or any later file | truncate the file there, warn |
//! | 9 | damage followed by a valid entry (same file or a later one)      | refuse: names file and offset     |
//! |10 | last log file shorter than its 16-byte header                    | remove it, warn                   |
//! |10b| last log file all zeros, header included (a preallocated file put in place by a roll, killed before its first group was written: nothing in it was ever acknowledged) | remove it, warn |
//! |11 | a log header with a bad magic/version, or a short one not last   | refuse                            |
//! |12 | zxids not strictly ascending                                     | refuse                            |
//! |13 | a zxid gap (next zxid skips within an epoch)                     | warn                              |

use crate::proto::txn::LoggedTxn;
use crate::snapshot::recovery::{newest_valid_snapshot, LoadedSnapshot};
use crate::txnlog::format::{zxid_from_name, Damage, HeaderError, LogReader, Stop, LOG_FILE_PREFIX};
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    /// Entry length bound (`jute.maxbuffer` + extra).
    pub max_txn_bytes: usize,
    /// `zookeeper.snapshot.trust.empty`: replay logs when no snapshot exists.
    pub trust_empty_snapshot: bool,
    /// Carry out truncations/removals (false: only report them).
    pub apply: bool,
    /// The snapshot (zxid, file) the caller already loaded and validated itself (streaming it
    /// into a tree while parsing): recovery then only plans the logs after it, and the returned
    /// `LoadedSnapshot` carries no nodes.
    pub loaded_snapshot: Option<(i64, PathBuf)>,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            max_txn_bytes: crate::txnlog::format::DEFAULT_MAX_TXN_BYTES,
            loaded_snapshot: None,
            trust_empty_snapshot: false,
            apply: true,
        }
    }
}

#[derive(Debug, Error)]
pub enum RecoveryError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("transaction log {file} is corrupt at offset {offset} ({damage}) but a valid entry follows at {next_valid}; refusing to start (restore the file or remove it knowingly)")]
    Corrupt { file: PathBuf, offset: u64, damage: Damage, next_valid: String },
    #[error("transaction log {file} has an unusable header: {reason}")]
    BadLogHeader { file: PathBuf, reason: HeaderError },
    #[error("transaction log {file}: zxid 0x{zxid:x} at offset {offset} does not follow 0x{prev:x}")]
    ZxidOrder { file: PathBuf, offset: u64, zxid: i64, prev: i64 },
    #[error("No snapshot found, but there are log entries. Something is broken! (in {dir}; set zookeeper.snapshot.trust.empty to replay the logs alone)")]
    LogsWithoutSnapshot { dir: PathBuf },
    #[error("Not able to find valid snapshots in {dir}: {reasons:?}")]
    NoValidSnapshot { dir: PathBuf, reasons: Vec<(PathBuf, String)> },
}

/// A change recovery makes to the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAction {
    /// Cut a torn tail: the file keeps `offset` bytes.
    Truncate { file: PathBuf, offset: u64, damage: Damage },
    /// A log file torn while being created (shorter than its header).
    Remove { file: PathBuf, len_bytes: u64 },
}

/// What the pure planner decided about the logs.
#[derive(Debug, Default)]
pub struct LogPlan {
    pub txns: Vec<LoggedTxn>,
    /// Highest zxid seen in the logs (also those not replayed), or None.
    pub last_logged_zxid: Option<i64>,
    pub actions: Vec<LogAction>,
    pub warnings: Vec<String>,
}

/// The log files to read for a snapshot at `snap_zxid` (ZooKeeper `FileTxnLog.getLogFiles`): the
/// newest file starting at or before `snap_zxid`, and every later one; ascending.
pub fn select_log_files(mut files: Vec<(i64, PathBuf)>, snap_zxid: i64) -> Vec<(i64, PathBuf)> {
    files.sort();
    let start = files.iter().map(|f| f.0).filter(|&z| z <= snap_zxid).max().unwrap_or(i64::MIN);
    files.into_iter().filter(|f| f.0 >= start).collect()
}

/// Log files (`log.<hex>`) in `dir`, ascending by zxid.
pub fn list_logs(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
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

/// Does `buf` (a whole log file) hold at least one valid entry?
fn has_valid_entry(buf: &[u8], max_txn_bytes: usize) -> Option<u64> {
    let mut r = LogReader::new(buf, max_txn_bytes).ok()?;
    if let Some(e) = r.next() {
        return Some(e.offset);
    }
    if let Stop::Damaged { offset, .. } = r.stop() {
        return LogReader::find_valid_entry_after(buf, *offset as usize, i64::MIN, max_txn_bytes);
    }
    None
}

/// The pure decision over the selected log files' bytes (ascending). `snap_zxid`: txns up to it
/// are already in the snapshot.
pub fn plan_logs<B: AsRef<[u8]>>(
    files: &[(PathBuf, B)],
    snap_zxid: i64,
    max_txn_bytes: usize,
) -> Result<LogPlan, RecoveryError> {
    let mut plan = LogPlan::default();
    let mut prev: Option<i64> = None;
    for (i, (file, buf)) in files.iter().enumerate() {
        let buf = buf.as_ref();
        let is_last = i + 1 == files.len();
        let mut r = match LogReader::new(buf, max_txn_bytes) {
            Ok(r) => r,
            Err(HeaderError::Short { len_bytes }) if is_last => {
                let w = format!(
                    "removing log {} torn at creation ({len_bytes} bytes, no header)",
                    file.display()
                );
                tracing::warn!("{w}");
                plan.warnings.push(w);
                plan.actions.push(LogAction::Remove { file: file.clone(), len_bytes: len_bytes as u64 });
                continue;
            }
            // Every byte zero: a roll put a preallocated file in place and the node stopped before
            // the first group (header included) reached it. An acknowledged txn would have been
            // synced with its header, so nothing here was ever acknowledged. Any other byte could
            // be an acknowledged txn behind a damaged header: refuse (row 11).
            Err(_) if is_last && buf.iter().all(|&b| b == 0) => {
                let w = format!(
                    "removing log {} created but never written ({} zero bytes, no header)",
                    file.display(),
                    buf.len()
                );
                tracing::warn!("{w}");
                plan.warnings.push(w);
                plan.actions.push(LogAction::Remove { file: file.clone(), len_bytes: buf.len() as u64 });
                continue;
            }
            Err(reason) => return Err(RecoveryError::BadLogHeader { file: file.clone(), reason }),
        };
        for e in r.by_ref() {
            let z = e.txn.hdr.zxid;
            if let Some(p) = prev {
                if z <= p {
                    return Err(RecoveryError::ZxidOrder {
                        file: file.clone(),
                        offset: e.offset,
                        zxid: z,
                        prev: p,
                    });
                }
                if z > snap_zxid && z >> 32 == p >> 32 && z != p + 1 && p >= snap_zxid {
                    plan.warnings.push(format!(
                        "zxid gap in {}: 0x{z:x} follows 0x{p:x} at offset {}",
                        file.display(),
                        e.offset
                    ));
                }
            }
            prev = Some(z);
            if z > snap_zxid {
                plan.txns.push(e.txn);
            }
        }
        match r.stop().clone() {
            Stop::End { .. } | Stop::Padding { .. } => {}
            Stop::NotYet => unreachable!("reader ended without a stop"),
            Stop::Damaged { offset, damage } => {
                let after_here = LogReader::find_valid_entry_after(
                    buf,
                    offset as usize,
                    prev.unwrap_or(i64::MIN),
                    max_txn_bytes,
                )
                .map(|o| format!("offset {o} of {}", file.display()));
                let after_later = || {
                    files[i + 1..].iter().find_map(|(f, b)| {
                        has_valid_entry(b.as_ref(), max_txn_bytes)
                            .map(|o| format!("offset {o} of {}", f.display()))
                    })
                };
                if let Some(next_valid) = after_here.or_else(after_later) {
                    return Err(RecoveryError::Corrupt { file: file.clone(), offset, damage, next_valid });
                }
                let w = format!(
                    "truncating torn tail of transaction log {} at offset {offset}: {damage}",
                    file.display()
                );
                tracing::warn!("{w}");
                plan.warnings.push(w);
                plan.actions.push(LogAction::Truncate { file: file.clone(), offset, damage });
            }
        }
    }
    plan.last_logged_zxid = prev;
    if let (Some(first), true) = (plan.txns.first(), snap_zxid >= 0) {
        let z = first.hdr.zxid;
        if z != snap_zxid + 1 && z >> 32 == snap_zxid >> 32 {
            plan.warnings
                .push(format!("first logged txn after snapshot 0x{snap_zxid:x} is 0x{z:x}: zxids missing"));
        }
    }
    Ok(plan)
}

/// What the integrator feeds into the tree.
#[derive(Debug)]
pub struct Recovered {
    /// None for a fresh database (row 1) or `trust_empty_snapshot` (row 2).
    pub snapshot: Option<LoadedSnapshot>,
    /// Txns to apply on top of the snapshot, ascending.
    pub txns: Vec<LoggedTxn>,
    /// The last zxid after replay (snapshot zxid if nothing follows; 0 when fresh).
    pub last_zxid: i64,
    /// No snapshot and no logs: ZooKeeper then writes `snapshot.0` of the empty tree.
    pub fresh: bool,
    pub actions: Vec<LogAction>,
    pub warnings: Vec<String>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io { path: path.to_owned(), source }
}

/// Carries out the truncations and removals recovery decided (`RecoveryOptions::apply` does it
/// within [`recover`]; a caller that planned with `apply: false` does it once it commits to the
/// plan), then syncs the directory.
pub fn apply_actions(log_dir: &Path, actions: &[LogAction]) -> Result<(), RecoveryError> {
    for a in actions {
        match a {
            LogAction::Truncate { file, offset, .. } => {
                let f = std::fs::OpenOptions::new().write(true).open(file).map_err(io_err(file))?;
                f.set_len(*offset).and_then(|_| f.sync_all()).map_err(io_err(file))?;
            }
            LogAction::Remove { file, .. } => std::fs::remove_file(file).map_err(io_err(file))?,
        }
    }
    if !actions.is_empty() {
        std::fs::File::open(log_dir).and_then(|d| d.sync_all()).map_err(io_err(log_dir))?;
    }
    Ok(())
}

/// A log file's bytes, mapped: a log is preallocated (64 MiB of zeros by default) and the reader
/// stops at the first zero entry, so the padding is never read, where reading the file would
/// copy all of it. Empty files are not mapped.
enum LogBytes {
    Mapped(memmap2::Mmap),
    Empty,
}

impl LogBytes {
    fn open(p: &Path) -> io::Result<LogBytes> {
        let f = std::fs::File::open(p)?;
        if f.metadata()?.len() == 0 {
            return Ok(LogBytes::Empty);
        }
        // SAFETY: the mapping is read while recovery owns the log directory (the server has not
        // started its writer yet) and dropped before any truncation; a file truncated under it by
        // another process would fault, as it would corrupt the database anyway.
        let m = unsafe { memmap2::Mmap::map(&f) }?;
        let _ = m.advise(memmap2::Advice::Sequential);
        Ok(LogBytes::Mapped(m))
    }
}

impl AsRef<[u8]> for LogBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            LogBytes::Mapped(m) => m,
            LogBytes::Empty => &[],
        }
    }
}

/// Recovers from `snap_dir` and `log_dir` (the `version-2` directories; often the same).
pub fn recover(snap_dir: &Path, log_dir: &Path, opts: &RecoveryOptions) -> Result<Recovered, RecoveryError> {
    let choice = match &opts.loaded_snapshot {
        Some((zxid, path)) => crate::snapshot::recovery::SnapshotChoice {
            loaded: Some(LoadedSnapshot { path: path.clone(), zxid: *zxid, snapshot: Default::default() }),
            skipped: Vec::new(),
            found: 1,
        },
        None => newest_valid_snapshot(snap_dir, opts.max_txn_bytes).map_err(io_err(snap_dir))?,
    };
    let mut warnings: Vec<String> =
        choice.skipped.iter().map(|(p, r)| format!("skipped snapshot {}: {r}", p.display())).collect();
    let logs = list_logs(log_dir).map_err(io_err(log_dir))?;
    let snap_zxid = choice.loaded.as_ref().map(|s| s.zxid);
    if choice.found > 0 && choice.loaded.is_none() {
        return Err(RecoveryError::NoValidSnapshot { dir: snap_dir.to_owned(), reasons: choice.skipped });
    }
    let selected = select_log_files(logs, snap_zxid.unwrap_or(-1));
    let mut bufs = Vec::with_capacity(selected.len());
    for (_, p) in &selected {
        bufs.push((p.clone(), LogBytes::open(p).map_err(io_err(p))?));
    }
    let plan = plan_logs(&bufs, snap_zxid.unwrap_or(-1), opts.max_txn_bytes)?;
    drop(bufs);
    if snap_zxid.is_none() && plan.last_logged_zxid.is_some() && !opts.trust_empty_snapshot {
        return Err(RecoveryError::LogsWithoutSnapshot { dir: snap_dir.to_owned() });
    }
    if snap_zxid.is_none() && plan.last_logged_zxid.is_some() {
        warnings.push(
            "No snapshot found, but there are log entries. This should only be allowed during upgrading."
                .into(),
        );
    }
    if opts.apply {
        apply_actions(log_dir, &plan.actions)?;
    }
    warnings.extend(plan.warnings);
    let fresh = snap_zxid.is_none() && plan.last_logged_zxid.is_none();
    let last_zxid =
        plan.txns.last().map(|t| t.hdr.zxid).or(snap_zxid).unwrap_or(0).max(snap_zxid.unwrap_or(0));
    Ok(Recovered {
        snapshot: choice.loaded,
        txns: plan.txns,
        last_zxid,
        fresh,
        actions: plan.actions,
        warnings,
    })
}
