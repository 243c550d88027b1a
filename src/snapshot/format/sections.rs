//! What both parsers share: a checksummed jute field reader, and the sections before the nodes
//! (header, sessions, ACL cache) and after them (seal, digest, seal).

use super::{SnapshotError, ZxidDigest};
use crate::proto::jute::Record;
use crate::proto::records::{Acl, StatPersisted};
use crate::txnlog::format::{FileHeader, FORMAT_VERSION, SNAP_MAGIC};
use std::io::{self, Read};

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
pub(super) struct In<R> {
    pub(super) r: R,
    pub(super) sum: simd_adler32::Adler32,
    pub(super) offset: u64,
    pub(super) max_buffer_bytes: usize,
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
    pub(super) fn i32(&mut self, what: &'static str) -> Result<i32, SnapshotError> {
        Ok(i32::from_be_bytes(self.fixed::<4>(what)?))
    }
    pub(super) fn i64(&mut self, what: &'static str) -> Result<i64, SnapshotError> {
        Ok(i64::from_be_bytes(self.fixed::<8>(what)?))
    }
    /// `buffer`: -1 is null; other lengths bounded by `max_buffer_bytes` before allocating.
    pub(super) fn opt_buffer(&mut self, what: &'static str) -> Result<Option<Vec<u8>>, SnapshotError> {
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
    pub(super) fn string(&mut self, what: &'static str) -> Result<String, SnapshotError> {
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
    pub(super) fn stat(&mut self) -> Result<StatPersisted, SnapshotError> {
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

/// Header, sessions and ACL cache.
#[allow(clippy::type_complexity)]
pub(super) fn read_prefix<R: Read>(
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
pub(super) fn read_tail<R: Read>(i: &mut In<R>) -> Result<Option<ZxidDigest>, SnapshotError> {
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
