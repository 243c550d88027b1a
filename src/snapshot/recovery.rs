//! Choosing the snapshot to start from: the newest VALID one (`FileSnap.deserialize` tries up to
//! 100 of the most recent). A truncated or checksum-failing snapshot is skipped with one warning
//! naming the file and the reason, and an older one is tried.

use super::format::{read_snapshot_all, Compression, Snapshot, SnapshotError};
use crate::txnlog::format::{zxid_from_name, SNAPSHOT_FILE_PREFIX};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// ZooKeeper's `findNValidSnapshots(100)`.
pub const MAX_SNAPSHOT_CANDIDATES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSnapshot {
    pub path: PathBuf,
    /// The zxid in the file name: everything up to it is in the snapshot (fuzzily: ZooKeeper
    /// replays from `zxid + 1`, and txns already reflected are idempotent on the tree).
    pub zxid: i64,
    pub snapshot: Snapshot,
}

#[derive(Debug, Default)]
pub struct SnapshotChoice {
    pub loaded: Option<LoadedSnapshot>,
    /// Snapshots tried and rejected, newest first, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// How many snapshot files were found at all.
    pub found: usize,
}

/// Snapshot files in `dir`, newest (highest zxid) first. `*.tmp` (an unfinished write) and
/// names that do not parse are ignored.
pub fn list_snapshots(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            continue;
        }
        if let Some(z) = zxid_from_name(&name, SNAPSHOT_FILE_PREFIX) {
            v.push((z, e.path()));
        }
    }
    v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    Ok(v)
}

/// `SnapStream.isValidCheckedStream`: an uncompressed snapshot is at least 10 bytes and ends
/// with the seal's "/" string (int 1, '/'). Compressed ones are only checked by reading them.
pub fn quick_check(path: &Path, c: Compression) -> Result<(), String> {
    if c != Compression::None {
        return Ok(());
    }
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len < 10 {
        return Err(format!("truncated: {len} bytes"));
    }
    let mut tail = [0u8; 5];
    f.seek(SeekFrom::Start(len - 5)).and_then(|_| f.read_exact(&mut tail)).map_err(|e| e.to_string())?;
    if tail != *b"\0\0\0\x01/" {
        return Err("truncated: does not end with the \"/\" seal".to_string());
    }
    Ok(())
}

/// Loads the newest snapshot in `dir` that reads completely with valid checksums.
pub fn newest_valid_snapshot(dir: &Path, max_buffer_bytes: usize) -> io::Result<SnapshotChoice> {
    let list = list_snapshots(dir)?;
    let mut choice = SnapshotChoice { found: list.len(), ..Default::default() };
    for (zxid, path) in list.into_iter().take(MAX_SNAPSHOT_CANDIDATES) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let c = Compression::from_file_name(&name);
        let res = quick_check(&path, c).and_then(|_| {
            let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            read_snapshot_all(f, c, max_buffer_bytes).map_err(|e: SnapshotError| e.to_string())
        });
        match res {
            Ok(snapshot) => {
                tracing::info!(file = %path.display(), "read snapshot");
                choice.loaded = Some(LoadedSnapshot { path, zxid, snapshot });
                break;
            }
            Err(reason) => {
                tracing::warn!("skipping snapshot {}: {reason}; trying an older one", path.display());
                choice.skipped.push((path, reason));
            }
        }
    }
    Ok(choice)
}
