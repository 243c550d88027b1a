//! The parser of a snapshot stream, uncompressed or not: every node decoded and handed out in
//! order, parents checked, seals verified.

use super::sections::{read_prefix, read_tail, In};
use super::snappy::SnappyJavaReader;
use super::{Compression, Snapshot, SnapshotError, SnapshotMeta, SnapshotNode};
use crate::txnlog::format::DEFAULT_MAX_TXN_BYTES;
use std::io::{BufReader, Read};

/// The keys are already hashes: identity hashing.
#[derive(Default, Clone, Copy)]
struct BuildU64;
impl std::hash::BuildHasher for BuildU64 {
    type Hasher = U64Hasher;
    fn build_hasher(&self) -> U64Hasher {
        U64Hasher(0)
    }
}
struct U64Hasher(u64);
impl std::hash::Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = self.0.rotate_left(8) ^ x as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Reads a whole snapshot from an uncompressed-or-not stream, handing each node to `on_node` as
/// it is read (preorder, root first with path `""`), and verifies the seal(s). Every length is
/// bounded by `max_buffer_bytes` (ZooKeeper: `jute.maxbuffer`) before allocating.
pub fn read_snapshot<R: Read>(
    input: R,
    compression: Compression,
    max_buffer_bytes: usize,
    mut on_node: impl FnMut(SnapshotNode) -> Result<(), String>,
) -> Result<SnapshotMeta, SnapshotError> {
    let r: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(BufReader::with_capacity(1 << 16, input)),
        Compression::Gzip => Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(input))),
        Compression::Snappy => Box::new(SnappyJavaReader::new(input)),
    };
    let mut i = In { r, sum: simd_adler32::Adler32::new(), offset: 0, max_buffer_bytes };
    let (header, sessions, acl_cache) = read_prefix(&mut i)?;
    let mut node_count = 0u64;
    // Hashes of the paths seen so far, to check parents exist (DataTree.deserialize refuses
    // orphans). Hashes, not strings: 1M path copies cost ~30% of loading a snapshot. A collision
    // could only let an orphan through here; the tree's own insert still refuses it.
    let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
    let mut known: std::collections::HashSet<u64, BuildU64> = Default::default();
    loop {
        let offset = i.offset;
        let path = i.string("node path")?;
        if path == "/" {
            break;
        }
        if !path.is_empty() {
            let parent = &path[..path.rfind('/').unwrap_or(0)];
            if !known.contains(&hasher.hash_one(parent)) {
                return Err(SnapshotError::Orphan { offset, path });
            }
        }
        let data = i.opt_buffer("node data")?;
        let acl_id = i.i64("node acl")?;
        let stat = i.stat()?;
        known.insert(hasher.hash_one(path.as_str()));
        node_count += 1;
        on_node(SnapshotNode { path, data, acl_id, stat }).map_err(SnapshotError::Rejected)?;
    }
    let digest = read_tail(&mut i)?;
    Ok(SnapshotMeta { header, sessions, acl_cache, node_count, digest })
}

/// Reads a whole snapshot into memory.
pub fn read_snapshot_all<R: Read>(
    input: R,
    compression: Compression,
    max_buffer_bytes: usize,
) -> Result<Snapshot, SnapshotError> {
    let mut nodes = Vec::new();
    let meta = read_snapshot(input, compression, max_buffer_bytes, |n| {
        nodes.push(n);
        Ok(())
    })?;
    Ok(Snapshot { meta, nodes })
}

/// Reads `path`, taking the compression from its name.
pub fn read_snapshot_file(path: &std::path::Path) -> Result<Snapshot, SnapshotError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let f = std::fs::File::open(path)?;
    read_snapshot_all(f, Compression::from_file_name(name), DEFAULT_MAX_TXN_BYTES)
}
