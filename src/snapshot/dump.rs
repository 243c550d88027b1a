//! `zkd snapshot dump FILE`: prints what ZooKeeper 3.8's `SnapshotFormatter [-d|-json] FILE`
//! prints. Nodes are printed in the snapshot's own order (preorder, as ZooKeeper wrote them), which
//! is the order ZooKeeper's formatter prints for files it wrote.

use super::format::{read_snapshot_all, Compression, Snapshot, SnapshotError, SnapshotNode};
use crate::txnlog::dump::java_date_to_string;
use crate::txnlog::format::{zxid_from_name, DEFAULT_MAX_TXN_BYTES, SNAPSHOT_FILE_PREFIX};
use base64::Engine;
use std::io::Write;
use std::path::Path;

/// Why a snapshot could not be printed (the same messages as `txnlog::dump::DumpError`'s).
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotDumpMode {
    /// `SnapshotFormatter FILE`
    Details,
    /// `SnapshotFormatter -d FILE`: data in base64 instead of its length.
    DetailsWithData,
    /// `SnapshotFormatter -json FILE`: the ncdu export format.
    Json,
}

/// Java `String.format("%#016x", v)`: "0x" then hex, zero-padded to 16 characters in all.
fn hex16(v: i64) -> String {
    format!("{v:#016x}")
}

/// Prints a snapshot file like `SnapshotFormatter` (`json`: the `-json` ncdu format).
pub fn dump_snapshot(path: &Path, json: bool, out: &mut impl Write) -> Result<(), DumpError> {
    dump_snapshot_with(path, if json { SnapshotDumpMode::Json } else { SnapshotDumpMode::Details }, out)
}

pub fn dump_snapshot_with(
    path: &Path,
    mode: SnapshotDumpMode,
    out: &mut impl Write,
) -> Result<(), DumpError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let f = std::fs::File::open(path)?;
    let snap = read_snapshot_all(f, Compression::from_file_name(&name), DEFAULT_MAX_TXN_BYTES)?;
    let file_zxid = zxid_from_name(&name, SNAPSHOT_FILE_PREFIX).unwrap_or(-1);
    match mode {
        SnapshotDumpMode::Json => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            out.write_all(snapshot_json(&snap, now_ms).as_bytes())?;
        }
        _ => out.write_all(
            snapshot_details(&snap, mode == SnapshotDumpMode::DetailsWithData, file_zxid).as_bytes(),
        )?,
    }
    Ok(())
}

/// Children of each node, in file order (index into `nodes`).
fn children(nodes: &[SnapshotNode]) -> Vec<Vec<usize>> {
    let mut index: ahash::AHashMap<&str, usize> = ahash::AHashMap::new();
    let mut kids = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if !n.path.is_empty() {
            let parent = &n.path[..n.path.rfind('/').unwrap_or(0)];
            if let Some(&p) = index.get(parent) {
                kids[p].push(i);
            }
        }
        index.insert(&n.path, i);
    }
    kids
}

/// The text `SnapshotFormatter` prints (without `-json`).
pub fn snapshot_details(snap: &Snapshot, with_data: bool, file_zxid: i64) -> String {
    let mut s = String::new();
    // ZooKeeper's DataTree holds the root under both "" and "/".
    s.push_str(&format!("ZNode Details (count={}):\n", snap.nodes.len() + 1));
    let kids = children(&snap.nodes);
    let mut max_zxid = i64::MIN;
    let mut stack = if snap.nodes.is_empty() { vec![] } else { vec![0usize] };
    while let Some(i) = stack.pop() {
        let n = &snap.nodes[i];
        let st = &n.stat;
        let name = if n.path.is_empty() { "/" } else { &n.path };
        s.push_str("----\n");
        s.push_str(name);
        s.push('\n');
        s.push_str(&format!("  cZxid = {}\n", hex16(st.czxid)));
        s.push_str(&format!("  ctime = {}\n", java_date_to_string(st.ctime)));
        s.push_str(&format!("  mZxid = {}\n", hex16(st.mzxid)));
        s.push_str(&format!("  mtime = {}\n", java_date_to_string(st.mtime)));
        s.push_str(&format!("  pZxid = {}\n", hex16(st.pzxid)));
        s.push_str(&format!("  cversion = {}\n", st.cversion));
        s.push_str(&format!("  dataVersion = {}\n", st.version));
        s.push_str(&format!("  aclVersion = {}\n", st.aversion));
        s.push_str(&format!("  ephemeralOwner = {}\n", hex16(st.ephemeral_owner)));
        if with_data {
            let d = n
                .data
                .as_deref()
                .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
                .unwrap_or_default();
            s.push_str(&format!("  data = {d}\n"));
        } else {
            s.push_str(&format!("  dataLength = {}\n", n.data.as_ref().map_or(0, |d| d.len())));
        }
        max_zxid = max_zxid.max(st.mzxid).max(st.pzxid);
        stack.extend(kids[i].iter().rev());
    }
    s.push_str("----\n");
    s.push_str("Session Details (sid, timeout, ephemeralCount):\n");
    for &(sid, timeout) in &snap.meta.sessions {
        let eph = snap.nodes.iter().filter(|n| n.stat.ephemeral_owner == sid).count();
        s.push_str(&format!("{}, {}, {}\n", hex16(sid), timeout, eph));
    }
    s.push_str(&format!("----\nLast zxid: 0x{:x}\n", file_zxid.max(max_zxid)));
    s
}

fn json_escape(v: &str) -> String {
    let q = serde_json::to_string(v).unwrap_or_default();
    q[1..q.len() - 1].to_string()
}

/// The `-json` (ncdu) text; `now_ms` is the "timestamp" field.
pub fn snapshot_json(snap: &Snapshot, now_ms: i64) -> String {
    let mut s = format!(
        "[1,0,{{\"progname\":\"SnapshotFormatter.java\",\"progver\":\"0.01\",\"timestamp\":{now_ms}}}"
    );
    if snap.nodes.is_empty() {
        s.push(']');
        return s;
    }
    let kids = children(&snap.nodes);
    let mut ino = 1000u64;
    fn node(s: &mut String, nodes: &[SnapshotNode], kids: &[Vec<usize>], i: usize, ino: &mut u64) {
        let n = &nodes[i];
        let name = if n.path.is_empty() { "/" } else { &n.path[n.path.rfind('/').unwrap_or(0) + 1..] };
        let len = n.data.as_ref().map_or(0, |d| d.len());
        *ino += 1;
        let rec = format!(
            "{{\"name\":\"{}\",\"asize\":{len},\"dsize\":{len},\"dev\":0,\"ino\":{}}}",
            json_escape(name),
            ino
        );
        s.push(',');
        if kids[i].is_empty() {
            s.push_str(&rec);
        } else {
            s.push('[');
            s.push_str(&rec);
            for &k in &kids[i] {
                node(s, nodes, kids, k, ino);
            }
            s.push(']');
        }
    }
    node(&mut s, &snap.nodes, &kids, 0, &mut ino);
    s.push(']');
    s
}
