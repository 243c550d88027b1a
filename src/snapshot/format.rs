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

use crate::proto::jute::Record;
use crate::proto::records::{Acl, StatPersisted};
use crate::txnlog::format::{FileHeader, DEFAULT_MAX_TXN_BYTES, FORMAT_VERSION, SNAP_MAGIC};
use std::io::{self, BufReader, BufWriter, Read, Write};
use thiserror::Error;

/// `FileSnap.dbId`: ZooKeeper writes -1 in snapshot headers.
pub const SNAP_DBID: i64 = -1;
/// snappy-java's stream magic, then version 1 and compatible version 1.
pub const SNAPPY_JAVA_HEADER: [u8; 16] = *b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01";
/// snappy-java's default block size.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;
/// Largest compressed / uncompressed snappy block accepted.
const SNAPPY_BLOCK_MAX_BYTES: usize = 64 * 1024 * 1024;

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

fn eof_to_truncated(e: io::Error, offset: u64, what: &'static str) -> SnapshotError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        SnapshotError::Truncated { offset, what }
    } else if e.kind() == io::ErrorKind::InvalidData {
        SnapshotError::Compressed(e.to_string())
    } else {
        SnapshotError::Io(e)
    }
}

/// Reads jute fields from a stream, keeping the running Adler32 and the offset.
struct In<R> {
    r: R,
    sum: simd_adler32::Adler32,
    offset: u64,
    max_buffer_bytes: usize,
}

impl<R: Read> In<R> {
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<Vec<u8>, SnapshotError> {
        let mut v = vec![0u8; n];
        self.r.read_exact(&mut v).map_err(|e| eof_to_truncated(e, self.offset, what))?;
        self.sum.write(&v);
        self.offset += n as u64;
        Ok(v)
    }
    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SnapshotError> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| eof_to_truncated(e, self.offset, what))?;
        self.sum.write(&b);
        self.offset += N as u64;
        Ok(b)
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, SnapshotError> {
        Ok(i32::from_be_bytes(self.fixed::<4>(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, SnapshotError> {
        Ok(i64::from_be_bytes(self.fixed::<8>(what)?))
    }
    /// `buffer`: -1 is null; other lengths bounded by `max_buffer_bytes` before allocating.
    fn opt_buffer(&mut self, what: &'static str) -> Result<Option<Vec<u8>>, SnapshotError> {
        let offset = self.offset;
        let len = self.i32(what)?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || len as usize > self.max_buffer_bytes {
            return Err(SnapshotError::BadLength { offset, what, len: len as i64 });
        }
        Ok(Some(self.bytes(len as usize, what)?))
    }
    fn string(&mut self, what: &'static str) -> Result<String, SnapshotError> {
        let offset = self.offset;
        let b = self.opt_buffer(what)?.unwrap_or_default();
        String::from_utf8(b).map_err(|_| SnapshotError::BadUtf8 { offset, what })
    }
    /// A count that cannot be bounded by the input left (it is a stream): refuse negatives,
    /// and never preallocate more than a little.
    fn count(&mut self, what: &'static str) -> Result<usize, SnapshotError> {
        let offset = self.offset;
        let n = self.i32(what)?;
        if n < 0 {
            return Err(SnapshotError::BadLength { offset, what, len: n as i64 });
        }
        Ok(n as usize)
    }
    fn stat(&mut self) -> Result<StatPersisted, SnapshotError> {
        let b = self.fixed::<60>("statpersisted")?;
        Ok(StatPersisted::from_bytes(&b).expect("60 bytes are a StatPersisted"))
    }
    fn acl(&mut self) -> Result<Acl, SnapshotError> {
        let perms = self.i32("acl perms")?;
        let scheme = self.string("acl scheme")?;
        let id = self.string("acl id")?;
        Ok(Acl { perms, id: crate::proto::records::Id { scheme, id } })
    }
    /// `SnapStream.checkSealIntegrity`: the checksum so far, then the stored one and "/".
    fn seal(&mut self, which: &'static str) -> Result<(), SnapshotError> {
        let computed = self.sum.finish() as i64;
        let stored = self.i64("checksum")?;
        let offset = self.offset;
        let slash = self.string("seal path")?;
        if stored != computed {
            return Err(SnapshotError::ChecksumMismatch { which, stored, computed });
        }
        if slash != "/" {
            return Err(SnapshotError::BadSeal { offset, found: slash });
        }
        Ok(())
    }
}

/// snappy-java's `SnappyInputStream` framing.
struct SnappyJavaReader<R> {
    r: R,
    block: Vec<u8>,
    pos: usize,
    started: bool,
}

impl<R: Read> SnappyJavaReader<R> {
    fn new(r: R) -> Self {
        SnappyJavaReader { r, block: Vec::new(), pos: 0, started: false }
    }
    fn fill(&mut self) -> io::Result<bool> {
        if !self.started {
            let mut h = [0u8; 16];
            self.r.read_exact(&mut h)?;
            if h[..8] != SNAPPY_JAVA_HEADER[..8] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a snappy-java stream (bad magic)",
                ));
            }
            self.started = true;
        }
        let mut lb = [0u8; 4];
        // A clean end of stream is allowed only between blocks.
        let mut got = 0;
        while got < 4 {
            let n = self.r.read(&mut lb[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        let len = i32::from_be_bytes(lb);
        if len < 0 || len as usize > SNAPPY_BLOCK_MAX_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("snappy block length {len}")));
        }
        let mut c = vec![0u8; len as usize];
        self.r.read_exact(&mut c)?;
        let n = snap::raw::decompress_len(&c).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if n > SNAPPY_BLOCK_MAX_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("snappy block of {n} bytes")));
        }
        self.block = snap::raw::Decoder::new()
            .decompress_vec(&c)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for SnappyJavaReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// snappy-java's `SnappyOutputStream` framing.
struct SnappyJavaWriter<W: Write> {
    w: W,
    block: Vec<u8>,
    started: bool,
}

impl<W: Write> SnappyJavaWriter<W> {
    fn new(w: W) -> Self {
        SnappyJavaWriter { w, block: Vec::with_capacity(SNAPPY_BLOCK_BYTES), started: false }
    }
    fn emit(&mut self) -> io::Result<()> {
        if !self.started {
            self.w.write_all(&SNAPPY_JAVA_HEADER)?;
            self.started = true;
        }
        if self.block.is_empty() {
            return Ok(());
        }
        let c = snap::raw::Encoder::new().compress_vec(&self.block).map_err(io::Error::other)?;
        self.w.write_all(&(c.len() as i32).to_be_bytes())?;
        self.w.write_all(&c)?;
        self.block.clear();
        Ok(())
    }
    fn finish(mut self) -> io::Result<W> {
        self.emit()?;
        self.w.flush()?;
        Ok(self.w)
    }
}

impl<W: Write> Write for SnappyJavaWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = b.len().min(SNAPPY_BLOCK_BYTES - self.block.len());
        self.block.extend_from_slice(&b[..n]);
        if self.block.len() == SNAPPY_BLOCK_BYTES {
            self.emit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a whole snapshot from an uncompressed-or-not stream, handing each node to `on_node` as
/// it is read (preorder, root first with path `""`), and verifies the seal(s). Every length is
/// bounded by `max_buffer_bytes` (ZooKeeper: `jute.maxbuffer`) before allocating.
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

/// Header, sessions and ACL cache.
#[allow(clippy::type_complexity)]
fn read_prefix<R: Read>(
    i: &mut In<R>,
) -> Result<(FileHeader, Vec<(i64, i32)>, Vec<(i64, Vec<Acl>)>), SnapshotError> {
    let magic = i.i32("file header")?;
    let version = i.i32("file header")?;
    let dbid = i.i64("file header")?;
    if magic != SNAP_MAGIC {
        return Err(SnapshotError::BadMagic { magic });
    }
    if version != FORMAT_VERSION {
        return Err(SnapshotError::BadVersion { version });
    }
    let header = FileHeader { magic, version, dbid };

    let n = i.count("session count")?;
    let mut sessions = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let id = i.i64("session id")?;
        let timeout = i.i32("session timeout")?;
        sessions.push((id, timeout));
    }

    let n = i.count("acl cache size")?;
    let mut acl_cache = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let id = i.i64("acl cache id")?;
        let offset = i.offset;
        let m = i.i32("acl list")?;
        // ReferenceCountedACLCache.deserialize refuses a null list.
        if m < 0 {
            return Err(SnapshotError::BadLength { offset, what: "acl list", len: m as i64 });
        }
        let mut acls = Vec::with_capacity((m as usize).min(64));
        for _ in 0..m {
            acls.push(i.acl()?);
        }
        acl_cache.push((id, acls));
    }
    Ok((header, sessions, acl_cache))
}

/// After the nodes' end marker: the first seal, then the optional digest and its seal.
fn read_tail<R: Read>(i: &mut In<R>) -> Result<Option<ZxidDigest>, SnapshotError> {
    i.seal("first")?;
    // The digest: absent in pre-3.6 snapshots (clean end of stream here).
    let mut first = [0u8; 1];
    let digest = match i.r.read(&mut first) {
        Ok(0) => None,
        Ok(_) => {
            i.sum.write(&first);
            i.offset += 1;
            let rest = i.fixed::<7>("digest zxid")?;
            let mut z = [0u8; 8];
            z[0] = first[0];
            z[1..].copy_from_slice(&rest);
            let zxid = i64::from_be_bytes(z);
            let digest_version = i.i32("digest version")?;
            let digest = i.i64("digest")?;
            i.seal("digest")?;
            Some(ZxidDigest { zxid, digest_version, digest })
        }
        Err(e) => return Err(eof_to_truncated(e, i.offset, "digest")),
    };
    Ok(digest)
}

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
fn stat_from_bytes(b: &[u8; STAT_PERSISTED_BYTES]) -> StatPersisted {
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

/// Writes jute fields, keeping the running Adler32 of everything written.
struct Out<W: Write> {
    w: W,
    sum: simd_adler32::Adler32,
}

impl<W: Write> Out<W> {
    fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.sum.write(b);
        self.w.write_all(b)
    }
    fn i32(&mut self, v: i32) -> io::Result<()> {
        self.raw(&v.to_be_bytes())
    }
    fn i64(&mut self, v: i64) -> io::Result<()> {
        self.raw(&v.to_be_bytes())
    }
    fn opt_buffer(&mut self, b: Option<&[u8]>) -> io::Result<()> {
        match b {
            None => self.i32(-1),
            Some(b) => {
                self.i32(i32::try_from(b.len()).map_err(io::Error::other)?)?;
                self.raw(b)
            }
        }
    }
    fn string(&mut self, s: &str) -> io::Result<()> {
        self.opt_buffer(Some(s.as_bytes()))
    }
    fn seal(&mut self) -> io::Result<()> {
        let v = self.sum.finish() as i64;
        self.i64(v)?;
        self.string("/")
    }
}

/// Writes a snapshot to `out` (uncompressed bytes go through `compression`), as
/// `FileSnap.serialize`: header with `dbid` (ZooKeeper: [`SNAP_DBID`]), sessions, ACL cache,
/// nodes (preorder, root first with path `""`), `"/"`, seal, then the digest and a second seal if
/// given. Returns `out` after flushing (the caller syncs it).
pub fn write_snapshot<W: Write, N: std::borrow::Borrow<SnapshotNode>>(
    out: W,
    compression: Compression,
    dbid: i64,
    sessions: &[(i64, i32)],
    acl_cache: &[(i64, Vec<Acl>)],
    nodes: impl IntoIterator<Item = N>,
    digest: Option<ZxidDigest>,
) -> io::Result<W> {
    fn body<W: Write, N: std::borrow::Borrow<SnapshotNode>>(
        o: &mut Out<W>,
        dbid: i64,
        sessions: &[(i64, i32)],
        acl_cache: &[(i64, Vec<Acl>)],
        nodes: impl IntoIterator<Item = N>,
        digest: Option<ZxidDigest>,
    ) -> io::Result<()> {
        o.i32(SNAP_MAGIC)?;
        o.i32(FORMAT_VERSION)?;
        o.i64(dbid)?;
        o.i32(sessions.len() as i32)?;
        for &(id, timeout) in sessions {
            o.i64(id)?;
            o.i32(timeout)?;
        }
        o.i32(acl_cache.len() as i32)?;
        for (id, acls) in acl_cache {
            o.i64(*id)?;
            o.i32(acls.len() as i32)?;
            for a in acls {
                o.raw(&a.to_bytes())?;
            }
        }
        let mut first = true;
        for n in nodes {
            let n = n.borrow();
            debug_assert!(!first || n.path.is_empty(), "the root (path \"\") must come first");
            debug_assert!(n.path != "/", "\"/\" marks the end of nodes; the root is \"\"");
            first = false;
            o.string(&n.path)?;
            o.opt_buffer(n.data.as_deref())?;
            o.i64(n.acl_id)?;
            o.raw(&n.stat.to_bytes())?;
        }
        o.string("/")?;
        o.seal()?;
        if let Some(d) = digest {
            o.i64(d.zxid)?;
            o.i32(d.digest_version)?;
            o.i64(d.digest)?;
            o.seal()?;
        }
        Ok(())
    }
    match compression {
        Compression::None => {
            let mut o = Out { w: BufWriter::with_capacity(1 << 16, out), sum: simd_adler32::Adler32::new() };
            body(&mut o, dbid, sessions, acl_cache, nodes, digest)?;
            o.w.into_inner().map_err(|e| e.into_error())
        }
        Compression::Gzip => {
            let enc = flate2::write::GzEncoder::new(BufWriter::new(out), flate2::Compression::default());
            let mut o = Out { w: enc, sum: simd_adler32::Adler32::new() };
            body(&mut o, dbid, sessions, acl_cache, nodes, digest)?;
            o.w.finish()?.into_inner().map_err(|e| e.into_error())
        }
        Compression::Snappy => {
            let mut o =
                Out { w: SnappyJavaWriter::new(BufWriter::new(out)), sum: simd_adler32::Adler32::new() };
            body(&mut o, dbid, sessions, acl_cache, nodes, digest)?;
            o.w.finish()?.into_inner().map_err(|e| e.into_error())
        }
    }
}

/// Writes `snapshot.<zxid hex><suffix>` in `dir` crash-safely: to `<name>.tmp`, fsync, rename,
/// fsync the directory. Returns the final path.
#[allow(clippy::too_many_arguments)]
pub fn write_snapshot_file<N: std::borrow::Borrow<SnapshotNode>>(
    dir: &std::path::Path,
    zxid: i64,
    compression: Compression,
    sessions: &[(i64, i32)],
    acl_cache: &[(i64, Vec<Acl>)],
    nodes: impl IntoIterator<Item = N>,
    digest: Option<ZxidDigest>,
) -> io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = format!("{}{}", crate::txnlog::format::snapshot_file_name(zxid), compression.suffix());
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let f = std::fs::File::create(&tmp)?;
    let res = write_snapshot(f, compression, SNAP_DBID, sessions, acl_cache, nodes, digest)
        .and_then(|f| f.sync_all());
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::Id;

    #[allow(clippy::type_complexity)]
    pub(crate) fn sample() -> (Vec<(i64, i32)>, Vec<(i64, Vec<Acl>)>, Vec<SnapshotNode>) {
        let world = Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } };
        let st = |z: i64| StatPersisted {
            czxid: z,
            mzxid: z,
            pzxid: z,
            ctime: z * 1000,
            mtime: z * 1000,
            ..Default::default()
        };
        let node = |p: &str, d: Option<&[u8]>, acl: i64, z: i64| SnapshotNode {
            path: p.into(),
            data: d.map(|d| d.to_vec()),
            acl_id: acl,
            stat: st(z),
        };
        (
            vec![(0x1000025699f0000, 10000), (0x1000025699f0001, 30000)],
            vec![(1, vec![world])],
            vec![
                node("", Some(b""), -1, 0),
                node("/a", Some(b"hello"), 1, 2),
                node("/a/b", None, 1, 3),
                node("/zookeeper", Some(b""), -1, 0),
            ],
        )
    }

    #[test]
    fn round_trip_all_compressions_with_and_without_digest() {
        let (s, a, n) = sample();
        for c in [Compression::None, Compression::Gzip, Compression::Snappy] {
            for d in [None, Some(ZxidDigest { zxid: 3, digest_version: 2, digest: 12345 })] {
                let bytes = write_snapshot(Vec::new(), c, SNAP_DBID, &s, &a, &n, d).unwrap();
                let snap = read_snapshot_all(&bytes[..], c, DEFAULT_MAX_TXN_BYTES).unwrap();
                assert_eq!(snap.nodes, n);
                assert_eq!(snap.meta.sessions, s);
                assert_eq!(snap.meta.acl_cache, a);
                assert_eq!(snap.meta.digest, d);
                assert_eq!(snap.meta.header.dbid, -1);
                assert_eq!(snap.meta.node_count, 4);
                if c == Compression::None {
                    // Ends like SnapStream.isValidCheckedStream expects: int 1, '/'.
                    assert_eq!(&bytes[bytes.len() - 5..], b"\0\0\0\x01/");
                }
            }
        }
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_an_error() {
        let (s, a, n) = sample();
        let d = Some(ZxidDigest { zxid: 3, digest_version: 2, digest: 12345 });
        let bytes = write_snapshot(Vec::new(), Compression::None, SNAP_DBID, &s, &a, &n, d).unwrap();
        // Cutting right after the first seal leaves a valid pre-3.6 snapshot: every other cut fails.
        let first_seal_end = bytes.len() - 20 - 13;
        for cut in 0..bytes.len() {
            let r = read_snapshot_all(&bytes[..cut], Compression::None, DEFAULT_MAX_TXN_BYTES);
            if cut == first_seal_end {
                assert_eq!(r.unwrap().meta.digest, None);
            } else {
                assert!(r.is_err(), "cut at {cut} accepted");
            }
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x04;
            assert!(
                read_snapshot_all(&b[..], Compression::None, DEFAULT_MAX_TXN_BYTES).is_err(),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn stat_fast_decoder_matches_jute() {
        let st = StatPersisted {
            czxid: 1,
            mzxid: -2,
            ctime: 3 << 40,
            mtime: 4,
            version: -5,
            cversion: 6,
            aversion: i32::MIN,
            ephemeral_owner: i64::MIN + 7,
            pzxid: 8,
        };
        let b = st.to_bytes();
        assert_eq!(stat_from_bytes(b.as_slice().try_into().unwrap()), st);
    }

    /// The mapped scan accepts exactly what the stream reader accepts, with the same nodes.
    #[test]
    fn scan_matches_read_on_every_truncation_and_bit_flip() {
        let (s, a, n) = sample();
        let d = Some(ZxidDigest { zxid: 3, digest_version: 2, digest: 12345 });
        let bytes = write_snapshot(Vec::new(), Compression::None, SNAP_DBID, &s, &a, &n, d).unwrap();
        let scan = |b: &[u8]| {
            let mut spans = Vec::new();
            scan_snapshot(b, DEFAULT_MAX_TXN_BYTES, |sp, path| {
                assert_eq!(sp.node(b).unwrap().0, path);
                spans.push(sp);
                Ok(())
            })
            .map(|m| (m, spans))
        };
        let (meta, spans) = scan(&bytes).unwrap();
        let read = read_snapshot_all(&bytes[..], Compression::None, DEFAULT_MAX_TXN_BYTES).unwrap();
        assert_eq!(meta, read.meta);
        let nodes: Vec<SnapshotNode> = spans
            .iter()
            .map(|sp| {
                let (path, data, acl_id, stat) = sp.node(&bytes).unwrap();
                assert_eq!(sp.ephemeral_owner(&bytes), Some(stat.ephemeral_owner));
                SnapshotNode { path: path.into(), data: data.map(<[u8]>::to_vec), acl_id, stat }
            })
            .collect();
        assert_eq!(nodes, n);
        for cut in 0..bytes.len() {
            let r = read_snapshot_all(&bytes[..cut], Compression::None, DEFAULT_MAX_TXN_BYTES);
            assert_eq!(scan(&bytes[..cut]).is_ok(), r.is_ok(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x04;
            assert!(scan(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn hostile_lengths_and_orphans() {
        let mut b = Vec::new();
        b.extend_from_slice(b"ZKSN\0\0\0\x02");
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        let mut big = b.clone();
        big.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            read_snapshot_all(&big[..], Compression::None, 1024),
            Err(SnapshotError::BadLength { .. })
        ));
        let mut orphan = b.clone();
        orphan.extend_from_slice(&4i32.to_be_bytes());
        orphan.extend_from_slice(b"/x/y");
        assert!(matches!(
            read_snapshot_all(&orphan[..], Compression::None, 1024),
            Err(SnapshotError::Orphan { .. })
        ));
        assert!(matches!(
            read_snapshot_all(&b"ZKLG"[..], Compression::None, 1024),
            Err(SnapshotError::Truncated { .. })
        ));
    }
}
