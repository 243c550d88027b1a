//! The snapshot file format of Apache ZooKeeper 3.8 (`FileSnap`, `SnapStream`, `SerializeUtils`,
//! `DataTree.serialize`, `ReferenceCountedACLCache.serialize`), on any `Read`/`Write`.
//!
//! ```text
//! (all after decompression; the Adler32 runs over every uncompressed byte from the start)
//! FileHeader   magic i32 "ZKSN" | version i32 2 | dbid i64 (-1)
//! sessions     count i32 | (id i64, timeout i32)*
//! acl cache    count i32 | (id i64, acls vector<ACL>)*
//! nodes        (path ustring, data buffer, acl i64, StatPersisted)*   preorder, root's path is ""
//!              "/"                                                    end of nodes
//! seal         checksum i64 | "/"
//! digest       zxid i64 | digest version i32 | digest i64             (3.6+, optional)
//! seal         checksum i64 | "/"                                     (only after a digest)
//! ```
//! `snapshot.compression.method`: none (name `snapshot.<zxid>`), gz (`.gz`, a gzip stream),
//! snappy (`.snappy`, snappy-java's `SnappyOutputStream` framing: 16-byte header, then
//! (length i32, raw snappy block)*).
//!
//! One module per concept: the types and errors here; `snappy` (snappy-java's stream framing),
//! `sections` (the checksummed field reader, and the sections before and after the nodes, which
//! both parsers share), `stream` (the parser of a stream, any compression), `scan` (the parser of
//! an uncompressed snapshot in memory, handing out spans) and `write` (the writer).

mod scan;
mod sections;
mod snappy;
mod stream;
mod write;

use crate::proto::records::{Acl, StatPersisted};
use crate::txnlog::format::FileHeader;
use std::io;
use thiserror::Error;

pub use scan::{scan_snapshot, NodeRef, NodeSpan};
pub use snappy::SNAPPY_JAVA_HEADER;
pub use stream::{read_snapshot, read_snapshot_all, read_snapshot_file};
pub use write::{write_snapshot, write_snapshot_file};

/// `FileSnap.dbId`: ZooKeeper writes -1 in snapshot headers.
pub const SNAP_DBID: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
}

impl Compression {
    /// `SnapStream.getStreamMode`: by file name suffix.
    pub fn from_file_name(name: &str) -> Compression {
        if name.ends_with(".gz") {
            Compression::Gzip
        } else if name.ends_with(".snappy") {
            Compression::Snappy
        } else {
            Compression::None
        }
    }
    /// `zookeeper.snapshot.compression.method`: "gz", "snappy", anything else is none.
    pub fn from_config(v: &str) -> Compression {
        match v {
            "gz" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            _ => Compression::None,
        }
    }
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Snappy => ".snappy",
        }
    }
}

/// One znode as a snapshot stores it. `path` is as stored: the root is `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotNode {
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub acl_id: i64,
    pub stat: StatPersisted,
}

/// `DataTree.ZxidDigest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZxidDigest {
    pub zxid: i64,
    pub digest_version: i32,
    pub digest: i64,
}

/// Everything in a snapshot except the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    pub header: FileHeader,
    pub sessions: Vec<(i64, i32)>,
    pub acl_cache: Vec<(i64, Vec<Acl>)>,
    pub node_count: u64,
    pub digest: Option<ZxidDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub nodes: Vec<SnapshotNode>,
}

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("truncated at offset {offset} while reading {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("invalid magic number 0x{magic:08x} (expected 0x5a4b534e \"ZKSN\")")]
    BadMagic { magic: i32 },
    #[error("unsupported snapshot version {version}")]
    BadVersion { version: i32 },
    #[error("invalid length {len} for {what} at offset {offset}")]
    BadLength { offset: u64, what: &'static str, len: i64 },
    #[error("invalid UTF-8 in {what} at offset {offset}")]
    BadUtf8 { offset: u64, what: &'static str },
    #[error("CRC corruption ({which} seal): stored {stored}, computed {computed}")]
    ChecksumMismatch { which: &'static str, stored: i64, computed: i64 },
    #[error("seal at offset {offset} ends with {found:?}, expected \"/\"")]
    BadSeal { offset: u64, found: String },
    #[error("node {path:?} at offset {offset} has no parent in the snapshot")]
    Orphan { offset: u64, path: String },
    #[error("bad compressed stream: {0}")]
    Compressed(String),
    #[error("{0}")]
    Rejected(String),
}

#[cfg(test)]
mod tests;
