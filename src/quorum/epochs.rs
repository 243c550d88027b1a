//! The `acceptedEpoch` and `currentEpoch` files, as Apache ZooKeeper 3.8 writes them: in the
//! snapshot directory (`dataDir/version-2`, where `QuorumPeer` reads and writes them beside the
//! snapshots), the epoch in decimal, written to a temporary file, fsynced and renamed over the
//! old one (`QuorumPeer.writeLongToFile` with an `AtomicFileOutputStream`), so a crash leaves
//! the old value or the new one, never a torn one.
//!
//! Earlier zkd releases kept them in `dataDir` itself: `read` falls back to that place when the
//! snapshot directory has none, and `write` writes the snapshot directory only, so a data dir
//! moves to the shared layout at its first election and a ZooKeeper server started on it
//! afterwards finds the epochs zkd last wrote.

use std::io::Write;
use std::path::{Path, PathBuf};

pub const ACCEPTED_EPOCH: &str = "acceptedEpoch";
pub const CURRENT_EPOCH: &str = "currentEpoch";

/// The snapshot directory of a data dir, where the epoch files live.
pub fn snap_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("version-2")
}

/// Reads an epoch file of the data dir `data_dir` (its snapshot directory's, else the one an
/// earlier zkd left in `data_dir`); None if neither exists.
pub fn read(data_dir: &Path, name: &str) -> Result<Option<u32>, String> {
    match read_in(&snap_dir(data_dir), name)? {
        Some(v) => Ok(Some(v)),
        None => read_in(data_dir, name),
    }
}

fn read_in(dir: &Path, name: &str) -> Result<Option<u32>, String> {
    let p = dir.join(name);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    let t = text.trim();
    // ZooKeeper writes a long; an epoch is the high half of a zxid, so it fits 32 bits.
    let v: i64 = t.parse().map_err(|_| format!("{} holds {t:?}, not a number", p.display()))?;
    u32::try_from(v)
        .map(Some)
        .map_err(|_| format!("{} holds {v}, not an epoch (0..=4294967295)", p.display()))
}

/// Writes an epoch file of the data dir `data_dir` into its snapshot directory durably
/// (temporary file, fsync, rename, fsync of the directory).
pub fn write(data_dir: &Path, name: &str, epoch: u32) -> std::io::Result<()> {
    let dir = snap_dir(data_dir);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir)?;
        std::fs::File::open(data_dir)?.sync_all()?;
    }
    let p: PathBuf = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(epoch.to_string().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &p)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_dir_first_then_the_old_place() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(CURRENT_EPOCH), "3").unwrap();
        assert_eq!(read(d.path(), CURRENT_EPOCH), Ok(Some(3)), "an earlier zkd's file is read");
        write(d.path(), CURRENT_EPOCH, 4).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("version-2").join(CURRENT_EPOCH)).unwrap(), "4");
        assert_eq!(read(d.path(), CURRENT_EPOCH), Ok(Some(4)), "the snapshot dir's wins");
        assert_eq!(std::fs::read_to_string(d.path().join(CURRENT_EPOCH)).unwrap(), "3", "left alone");
    }

    #[test]
    fn round_trip_and_bad_contents() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path(), CURRENT_EPOCH), Ok(None));
        write(d.path(), CURRENT_EPOCH, 7).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("version-2").join(CURRENT_EPOCH)).unwrap(), "7");
        assert_eq!(read(d.path(), CURRENT_EPOCH), Ok(Some(7)));
        write(d.path(), CURRENT_EPOCH, 8).unwrap();
        assert_eq!(read(d.path(), CURRENT_EPOCH), Ok(Some(8)));
        let v2 = d.path().join("version-2");
        assert!(!v2.join("currentEpoch.tmp").exists());
        std::fs::write(v2.join(ACCEPTED_EPOCH), "x\n").unwrap();
        assert!(read(d.path(), ACCEPTED_EPOCH).unwrap_err().contains("not a number"));
        std::fs::write(v2.join(ACCEPTED_EPOCH), "-1").unwrap();
        assert!(read(d.path(), ACCEPTED_EPOCH).unwrap_err().contains("not an epoch"));
        std::fs::write(v2.join(ACCEPTED_EPOCH), "12\n").unwrap();
        assert_eq!(read(d.path(), ACCEPTED_EPOCH), Ok(Some(12)));
    }
}
