//! The parser of an uncompressed snapshot held in memory (a mapped file): nodes handed out as
//! spans into its bytes, never copied.

use super::sections::{read_prefix, read_tail, In};
use super::{SnapshotError, SnapshotMeta};
use crate::proto::records::StatPersisted;

/// Where one node lies in an uncompressed snapshot's bytes (see [`scan_snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpan {
    /// Offset of the path's length field.
    pub at: usize,
    pub path_len: u32,
    /// -1: null data.
    pub data_len: i32,
}

/// A node borrowed from the snapshot's bytes: path (root `""`), data, ACL id, stat.
pub type NodeRef<'a> = (&'a str, Option<&'a [u8]>, i64, StatPersisted);

impl NodeSpan {
    /// The node's stat's ephemeralOwner in `bytes`.
    pub fn ephemeral_owner(&self, bytes: &[u8]) -> Option<i64> {
        let at = self.at + 4 + self.path_len as usize + 4 + self.data_len.max(0) as usize + 8 + 44;
        Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    }
    /// The node in `bytes` (the ones [`scan_snapshot`] found it in; None for other bytes).
    pub fn node<'a>(&self, bytes: &'a [u8]) -> Option<NodeRef<'a>> {
        let path_at = self.at + 4;
        let path_end = path_at + self.path_len as usize;
        let path = std::str::from_utf8(bytes.get(path_at..path_end)?).ok()?;
        let data_at = path_end + 4;
        let (data, acl_at) = match usize::try_from(self.data_len) {
            Ok(n) => (Some(bytes.get(data_at..data_at + n)?), data_at + n),
            Err(_) => (None, data_at),
        };
        let acl = i64::from_be_bytes(bytes.get(acl_at..acl_at + 8)?.try_into().ok()?);
        let b: &[u8; STAT_PERSISTED_BYTES] =
            bytes.get(acl_at + 8..acl_at + 8 + STAT_PERSISTED_BYTES)?.try_into().ok()?;
        Some((path, data, acl, stat_from_bytes(b)))
    }
}

/// `StatPersisted` on disk: 4 longs, 3 ints, 2 longs.
const STAT_PERSISTED_BYTES: usize = 60;

/// `StatPersisted` from its 60 bytes, without the generic jute reader's per-field bounds checks
/// (a tenth of a loader's time at 1M nodes).
pub(super) fn stat_from_bytes(b: &[u8; STAT_PERSISTED_BYTES]) -> StatPersisted {
    let l = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let i = |at: usize| i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    StatPersisted {
        czxid: l(0),
        mzxid: l(8),
        ctime: l(16),
        mtime: l(24),
        version: i(32),
        cversion: i(36),
        aversion: i(40),
        ephemeral_owner: l(44),
        pzxid: l(52),
    }
}

/// Scans an uncompressed snapshot held in memory (a mapped file) with the checks of
/// [`read_snapshot`] — every length bounded, paths UTF-8, both seals' Adler32 over every byte —
/// handing each node out as a span into `bytes` (with its path), never copying it. Parents are
/// NOT checked here: whoever builds the tree from the spans refuses orphans. Nodes are handed
/// out before the checksum that covers them is verified: a caller keeps nothing if this fails.
pub fn scan_snapshot<'a>(
    bytes: &'a [u8],
    max_buffer_bytes: usize,
    mut on_node: impl FnMut(NodeSpan, &'a str) -> Result<(), String>,
) -> Result<SnapshotMeta, SnapshotError> {
    /// The checksum is taken in slices of about this size, while they are still in cache.
    const SUM_CHUNK_BYTES: usize = 256 << 10;
    let mut i = In { r: bytes, sum: simd_adler32::Adler32::new(), offset: 0, max_buffer_bytes };
    let (header, sessions, acl_cache) = read_prefix(&mut i)?;
    let start = i.offset as usize;
    let be_i32 = |at: usize, what: &'static str| -> Result<i32, SnapshotError> {
        match bytes.get(at..at + 4) {
            Some(b) => Ok(i32::from_be_bytes(b.try_into().expect("4 bytes"))),
            None => Err(SnapshotError::Truncated { offset: at as u64, what }),
        }
    };
    let length = |at: usize, what: &'static str| -> Result<i32, SnapshotError> {
        let n = be_i32(at, what)?;
        if n < -1 || n as i64 > max_buffer_bytes as i64 {
            return Err(SnapshotError::BadLength { offset: at as u64, what, len: n as i64 });
        }
        Ok(n)
    };
    let mut pos = start;
    let mut summed = start;
    let mut node_count = 0u64;
    loop {
        let at = pos;
        // A null path (-1) reads as "" (the root), as `In::string` does.
        let path_len = length(at, "node path")?.max(0) as usize;
        let path_at = at + 4;
        let Some(path) = bytes.get(path_at..path_at + path_len) else {
            return Err(SnapshotError::Truncated { offset: path_at as u64, what: "node path" });
        };
        pos = path_at + path_len;
        if path == b"/" {
            break;
        }
        let Ok(path) = std::str::from_utf8(path) else {
            return Err(SnapshotError::BadUtf8 { offset: at as u64, what: "node path" });
        };
        let data_len = length(pos, "node data")?;
        pos += 4 + data_len.max(0) as usize;
        if pos + 8 + STAT_PERSISTED_BYTES > bytes.len() {
            let what = if pos > bytes.len() { "node data" } else { "node acl/statpersisted" };
            return Err(SnapshotError::Truncated { offset: pos.min(bytes.len()) as u64, what });
        }
        pos += 8 + STAT_PERSISTED_BYTES;
        node_count += 1;
        on_node(NodeSpan { at, path_len: path_len as u32, data_len }, path)
            .map_err(SnapshotError::Rejected)?;
        if pos - summed >= SUM_CHUNK_BYTES {
            i.sum.write(&bytes[summed..pos]);
            summed = pos;
        }
    }
    i.sum.write(&bytes[summed..pos]);
    i.r = &bytes[pos..];
    i.offset = pos as u64;
    let digest = read_tail(&mut i)?;
    Ok(SnapshotMeta { header, sessions, acl_cache, node_count, digest })
}
