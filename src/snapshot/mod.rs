//! Snapshots: Apache ZooKeeper 3.8's `snapshot.<zxid>[.gz|.snappy]` files.
//!
//! `format` (read/write on any stream, all three compressions, checksum seals, digest),
//! `recovery` (pick the newest valid snapshot), `dump` (what `SnapshotFormatter` prints).
//! Decoupled from the data tree: nodes travel as [`SnapshotNode`].

pub mod dump;
pub mod format;
pub mod recovery;

pub use format::{
    read_snapshot, read_snapshot_all, read_snapshot_file, write_snapshot, write_snapshot_file, Compression,
    Snapshot, SnapshotError, SnapshotMeta, SnapshotNode, ZxidDigest, SNAP_DBID,
};
