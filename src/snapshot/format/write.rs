//! The snapshot writer (`FileSnap.serialize`), to a stream or crash-safely to a file.

use super::snappy::SnappyJavaWriter;
use super::{Compression, SnapshotNode, ZxidDigest, SNAP_DBID};
use crate::proto::jute::Record;
use crate::proto::records::Acl;
use crate::txnlog::format::{FORMAT_VERSION, SNAP_MAGIC};
use std::io::{self, BufWriter, Write};

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
            assert!(!first || n.path.is_empty(), "the root (path \"\") must come first");
            assert!(n.path != "/", "\"/\" marks the end of nodes; the root is \"\"");
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
