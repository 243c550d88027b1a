//! The `acceptedEpoch` and `currentEpoch` files in the data dir, as Apache ZooKeeper writes
//! them: the epoch in decimal, written to a temporary file, fsynced and renamed over the old
//! one (`QuorumPeer.writeLongToFile` with an `AtomicFileOutputStream`), so a crash leaves the old
//! value or the new one, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

pub const ACCEPTED_EPOCH: &str = "acceptedEpoch";
pub const CURRENT_EPOCH: &str = "currentEpoch";

/// Reads an epoch file; None if it does not exist.
pub fn read(dir: &Path, name: &str) -> Result<Option<u32>, String> {
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

/// Writes an epoch file durably (temporary file, fsync, rename, fsync of the directory).
pub fn write(dir: &Path, name: &str, epoch: u32) -> std::io::Result<()> {
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
    fn round_trip_and_bad_contents() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path(), CURRENT_EPOCH), Ok(None));
        write(d.path(), CURRENT_EPOCH, 7).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join(CURRENT_EPOCH)).unwrap(), "7");
        assert_eq!(read(d.path(), CURRENT_EPOCH), Ok(Some(7)));
        write(d.path(), CURRENT_EPOCH, 8).unwrap();
        assert_eq!(read(d.path(), CURRENT_EPOCH), Ok(Some(8)));
        assert!(!d.path().join("currentEpoch.tmp").exists());
        std::fs::write(d.path().join(ACCEPTED_EPOCH), "x\n").unwrap();
        assert!(read(d.path(), ACCEPTED_EPOCH).unwrap_err().contains("not a number"));
        std::fs::write(d.path().join(ACCEPTED_EPOCH), "-1").unwrap();
        assert!(read(d.path(), ACCEPTED_EPOCH).unwrap_err().contains("not an epoch"));
        std::fs::write(d.path().join(ACCEPTED_EPOCH), "12\n").unwrap();
        assert_eq!(read(d.path(), ACCEPTED_EPOCH), Ok(Some(12)));
    }
}
