//! The database on disk: recovery at start-up (newest valid snapshot + log replay into the tree)
//! and fuzzy snapshots while serving. ZooKeeper's `ZKDatabase` + `FileTxnSnapLog`, with zkd's
//! formats identical to ZooKeeper's so either server can start on the other's data directory.
//! `recovery` decides what to start from (snapshot + logs, as a decision table).

pub mod recovery;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::proto::{OpCode, TxnBody};
use crate::snapshot::format::{
    scan_snapshot, write_snapshot_file, Compression, NodeSpan, SnapshotMeta, SnapshotNode, ZxidDigest,
};
use crate::tree::digest;
use crate::tree::quota::QUOTA_ROOT;
use crate::tree::{DataTree, LoadNode, LoadShares, LoadTally, Preorder, WatchSink, WatcherId};
use recovery::{recover, RecoveryOptions};

/// ZooKeeper keeps its files in a `version-2` subdirectory of dataDir / dataLogDir.
pub fn version_dir(dir: &Path) -> PathBuf {
    dir.join("version-2")
}

struct NoWatches;
impl WatchSink for NoWatches {
    fn deliver(
        &mut self,
        _: WatcherId,
        _: crate::proto::EventType,
        _: &str,
        _: &Arc<Vec<crate::proto::Acl>>,
    ) {
    }
}

/// What start-up rebuilt.
pub struct Loaded {
    pub tree: DataTree,
    /// Live sessions with their timeouts (ms).
    pub sessions: Vec<(i64, i32)>,
    pub last_zxid: i64,
    pub snapshot_zxid: i64,
    pub txns_replayed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Recovery(#[from] recovery::RecoveryError),
    #[error("cannot write the initial snapshot in {dir}: {source}")]
    InitialSnapshot { dir: PathBuf, source: std::io::Error },
    #[error("snapshot {path} could not be loaded into the tree: {reason}")]
    Load { path: PathBuf, reason: String },
}

/// A snapshot loaded straight into a tree.
struct Streamed {
    zxid: i64,
    path: PathBuf,
    tree: DataTree,
    sessions: Vec<(i64, i32)>,
    digest: Option<ZxidDigest>,
}

/// Nodes handed from the snapshot reader to the tree builders per message.
const LOAD_BATCH_NODES: usize = 4096;

/// Threads building the tree from a mapped snapshot (see `DataTree::load_insert`). Two, for the
/// two cores of the machines this is tuned on: the scan and the log planning are light next to
/// the build.
const BUILDERS: usize = 2;

/// The newest valid snapshot, streamed into a tree while it is read (see [`stream_snapshot`]).
/// A snapshot that fails (truncated, bad checksum, orphan node) is skipped with one warning and
/// the next older one is tried, as ZooKeeper's FileSnap does. `list`: newest first.
fn stream_newest_snapshot(
    dir: &Path,
    list: Vec<(i64, PathBuf)>,
    max_txn_bytes: usize,
) -> Result<Option<Streamed>, LoadError> {
    use crate::snapshot::recovery::MAX_SNAPSHOT_CANDIDATES;
    use recovery::RecoveryError;
    let found = list.len();
    let mut skipped = Vec::new();
    for (zxid, path) in list.into_iter().take(MAX_SNAPSHOT_CANDIDATES) {
        match stream_snapshot(&path, zxid, max_txn_bytes) {
            Ok(s) => {
                tracing::info!(file = %path.display(), "read snapshot");
                return Ok(Some(s));
            }
            Err(reason) => {
                tracing::warn!("skipping snapshot {}: {reason}; trying an older one", path.display());
                skipped.push((path, reason));
            }
        }
    }
    if found > 0 {
        return Err(RecoveryError::NoValidSnapshot { dir: dir.to_owned(), reasons: skipped }.into());
    }
    Ok(None)
}

/// Loads one snapshot into a new tree. An uncompressed one is mapped: this thread scans it
/// (lengths, UTF-8, Adler32), then [`BUILDERS`] threads build the tree straight from the mapped
/// bytes, each owning a share of the stripes. A compressed one is
/// decompressed and parsed on a reader thread while this one builds.
fn stream_snapshot(path: &Path, zxid: i64, max_txn_bytes: usize) -> Result<Streamed, String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let c = Compression::from_file_name(&name);
    crate::snapshot::recovery::quick_check(path, c)?;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let (tree, sessions, digest) = match c {
        Compression::None => {
            // SAFETY: snapshots are written under a `.tmp` name and renamed once complete, and
            // nothing writes them after; one truncated under the mapping by another process would
            // fault, as it would corrupt the database anyway.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| format!("cannot map: {e}"))?;
            let _ = map.advise(memmap2::Advice::Sequential);
            let (tree, meta, tally) = build_mapped(&map, max_txn_bytes)?;
            finish_snapshot_load(tree, meta, tally, zxid)?
        }
        _ => {
            let (tree, meta, tally) = build_streamed(f, c, max_txn_bytes)?;
            finish_snapshot_load(tree, meta, tally, zxid)?
        }
    };
    Ok(Streamed { zxid, path: path.to_owned(), tree, sessions, digest })
}

/// An uncompressed snapshot's bytes (a mapped file) loaded into a new tree as of `zxid`, as
/// start-up loads one: scanned and checked, then built on [`BUILDERS`] threads. The tree and
/// the snapshot's sessions; a snapshot that does not load is an error naming why.
pub fn load_snapshot_bytes(
    bytes: &[u8],
    zxid: i64,
    max_txn_bytes: usize,
) -> Result<(DataTree, Vec<(i64, i32)>), String> {
    let (tree, meta, tally) = build_mapped(bytes, max_txn_bytes)?;
    finish_snapshot_load(tree, meta, tally, zxid).map(|(t, s, _)| (t, s))
}

/// A snapshot stream (any compression) loaded into a new tree as of `zxid`: parsed on a reader
/// thread while this one builds.
pub fn load_snapshot_stream<R: std::io::Read + Send + 'static>(
    input: R,
    c: Compression,
    zxid: i64,
    max_txn_bytes: usize,
) -> Result<(DataTree, Vec<(i64, i32)>), String> {
    let (tree, meta, tally) = build_streamed(input, c, max_txn_bytes)?;
    finish_snapshot_load(tree, meta, tally, zxid).map(|(t, s, _)| (t, s))
}

/// A loaded snapshot: the tree, its sessions and its digest section.
type LoadedSnapshot = (DataTree, Vec<(i64, i32)>, Option<ZxidDigest>);

fn finish_snapshot_load(
    tree: DataTree,
    meta: SnapshotMeta,
    tally: LoadTally,
    zxid: i64,
) -> Result<LoadedSnapshot, String> {
    tree.acl_cache_import(&meta.acl_cache);
    tree.load_tally(&tally);
    tree.finish_load(zxid)?;
    Ok((tree, meta.sessions, meta.digest))
}

/// The digest a loaded snapshot holds, while it waits to be compared with the tree's once the
/// replay reaches its zxid (ZooKeeper's `digestFromLoadedSnapshot`). A fuzzy snapshot's digest
/// is of the tree after a later txn than the one the file is named after.
struct PendingDigest(Option<ZxidDigest>);

impl PendingDigest {
    /// `DataTree.deserializeZxidDigest`: none when digests are off, the snapshot has none (older
    /// than 3.6, or written before any txn: zxid 0), or it is older than the snapshot itself.
    fn new(d: Option<ZxidDigest>, snapshot_zxid: i64) -> PendingDigest {
        let keep = d.filter(|d| digest::enabled() && d.zxid > 0 && d.zxid >= snapshot_zxid);
        if let Some(d) = keep {
            tracing::info!(
                "The digest in the snapshot has digest version of {}, with zxid as 0x{:x}, and digest value as {}",
                d.digest_version,
                d.zxid,
                d.digest
            );
        }
        PendingDigest(keep)
    }

    /// `DataTree.compareSnapshotDigests` after the tree reached `zxid`.
    fn reached(&mut self, zxid: i64, tree: &DataTree) {
        let Some(d) = self.0 else { return };
        if zxid == d.zxid {
            if d.digest_version != digest::DIGEST_VERSION {
                tracing::info!(
                    "Digest version changed, local: {}, new: {}, skip comparing digest now.",
                    d.digest_version,
                    digest::DIGEST_VERSION
                );
            } else if digest::check("snapshot", zxid, d.digest, tree.digest()) {
                tracing::info!("snapshot digest at zxid 0x{zxid:x} matches the tree: {}", d.digest);
            }
            self.0 = None;
        } else if zxid > d.zxid {
            tracing::info!("The txn 0x{:x} of snapshot digest does not exist.", d.zxid);
            self.0 = None;
        }
    }

    /// `DataTree.compareDigest`: a txn's own digest, once the snapshot's was compared.
    fn txn(&self, t: &crate::proto::txn::LoggedTxn, tree: &DataTree) {
        if self.0.is_some() || !digest::enabled() {
            return;
        }
        if let Some(d) = &t.digest {
            if d.version == digest::DIGEST_VERSION {
                digest::check("txn", t.hdr.zxid, d.tree_digest, tree.digest());
            }
        }
    }
}

type Built = (DataTree, SnapshotMeta, LoadTally);

/// The smallest node in a snapshot: path length and a 2-byte path, data length, ACL id, stat.
const MIN_NODE_BYTES: usize = 4 + 2 + 4 + 8 + 60;

fn build_mapped(bytes: &[u8], max_txn_bytes: usize) -> Result<Built, String> {
    // First the whole scan and its checks (~60 ms for 1M nodes, while the logs are planned on
    // the other core): a bad snapshot is refused before any building, the builders' shares of
    // the stripes are chosen knowing the whole tree's shape, and each builder then only visits
    // the nodes it inserts or links. The few nodes with ephemeral/container/TTL owners or under
    // the quota root get their bookkeeping here after, in stream order.
    // An upper bound (the smallest node takes 78 bytes): the vector never moves, and the pages
    // beyond what is used are never touched.
    let mut spans = Vec::with_capacity(bytes.len() / MIN_NODE_BYTES + 1);
    let mut extras = Vec::new();
    let mut shares = LoadShares::new();
    let mut order = Preorder::new();
    let meta = scan_snapshot(bytes, max_txn_bytes, |span, path| {
        let i = u32::try_from(spans.len()).map_err(|_| "more than 2^32 nodes".to_string())?;
        let slot = shares.count(path);
        let parent = order.parent(i, path);
        if span.ephemeral_owner(bytes) != Some(0) || path.starts_with(QUOTA_ROOT) {
            extras.push(spans.len());
        }
        spans.push((span, slot, parent));
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    let decode = |sp: &NodeSpan| sp.node(bytes).ok_or("a scanned node does not decode".to_string());
    if !order.holds() {
        // Valid for ZooKeeper as long as parents come first; rare enough to load node by node.
        tracing::info!("snapshot nodes are not in preorder: loading them on one thread");
        let tree = DataTree::new_empty();
        let mut tally = LoadTally::default();
        for (sp, _, _) in &spans {
            let (path, data, acl, stat) = decode(sp)?;
            tree.load_node_counted(LoadNode { path, data, acl, stat }, &mut tally)?;
        }
        return Ok((tree, meta, tally));
    }
    shares.split(BUILDERS);
    let tree = DataTree::new_empty();
    let made: Vec<AtomicUsize> = (0..spans.len()).map(|_| AtomicUsize::new(0)).collect();
    // Phase 1: each builder inserts the nodes of its stripes; phase 2 (after all are joined):
    // each links the children of the nodes in its stripes, in stream order.
    let inserted = on_builders(|part| {
        let mut tally = LoadTally::default();
        let mut bad = None;
        let nodes = spans
            .iter()
            .enumerate()
            .filter(|(_, (_, slot, _))| shares.owns_node(part, *slot))
            .map_while(|(i, (sp, slot, _))| match decode(sp) {
                Ok((path, data, acl, stat)) => Some((i as u32, LoadNode { path, data, acl, stat }, *slot)),
                Err(e) => {
                    bad = Some(e);
                    None
                }
            });
        tree.load_insert(part, &shares, nodes, &made, &mut tally)?;
        bad.map_or(Ok(tally), Err)
    });
    let mut tally = LoadTally::default();
    for t in inserted {
        tally.merge(t?);
    }
    let linked = on_builders(|part| {
        let links = spans
            .iter()
            .enumerate()
            .filter(|(_, (_, slot, parent))| *parent != u32::MAX && shares.owns_parent(part, *slot))
            .map(|(i, (_, slot, parent))| (i as u32, *parent, *slot));
        tree.load_link(part, &shares, links, &made);
        Ok(())
    });
    for l in linked {
        l?;
    }
    for i in extras {
        let (path, _, _, stat) = decode(&spans[i].0)?;
        tree.load_extras(path, stat.ephemeral_owner);
    }
    Ok((tree, meta, tally))
}

/// Runs `build(part)` for every part of [`BUILDERS`], part 0 on this thread.
fn on_builders<T: Send>(build: impl Fn(usize) -> Result<T, String> + Sync) -> Vec<Result<T, String>> {
    std::thread::scope(|s| {
        let build = &build;
        let others: Vec<_> = (1..BUILDERS)
            .map(|part| {
                std::thread::Builder::new()
                    .name(format!("zkd-load-{part}"))
                    .spawn_scoped(s, move || build(part))
            })
            .collect();
        let mut built = vec![build(0)];
        for h in others {
            built.push(match h {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(e) => Err(format!("cannot start a tree builder: {e}")),
            });
        }
        built
    })
}

fn build_streamed<R: std::io::Read + Send + 'static>(
    f: R,
    c: Compression,
    max_txn_bytes: usize,
) -> Result<Built, String> {
    use crate::snapshot::format::read_snapshot;
    let (tx, rx) = crossbeam_channel::bounded::<Vec<SnapshotNode>>(64);
    let reader = std::thread::Builder::new()
        .name("zkd-snapshot-read".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(LOAD_BATCH_NODES);
            let meta = read_snapshot(f, c, max_txn_bytes, |n| {
                batch.push(n);
                if batch.len() == LOAD_BATCH_NODES {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(LOAD_BATCH_NODES));
                    tx.send(full).map_err(|_| "the tree builder stopped".to_string())?;
                }
                Ok(())
            });
            if meta.is_ok() && !batch.is_empty() {
                let _ = tx.send(batch);
            }
            meta
        })
        .map_err(|e| format!("cannot start the snapshot reader: {e}"))?;
    let tree = DataTree::new_empty();
    let mut tally = LoadTally::default();
    let mut build_err = None;
    for batch in rx {
        if build_err.is_some() {
            continue; // drain, so the reader can finish
        }
        for n in batch {
            let node = LoadNode { path: &n.path, data: n.data.as_deref(), acl: n.acl_id, stat: n.stat };
            if let Err(e) = tree.load_node_counted(node, &mut tally) {
                build_err = Some(e);
                break;
            }
        }
    }
    let meta =
        reader.join().map_err(|_| "the snapshot reader panicked".to_string())?.map_err(|e| e.to_string())?;
    if let Some(e) = build_err {
        return Err(e);
    }
    Ok((tree, meta, tally))
}

/// Recovers the tree and sessions from `data_dir` / `data_log_dir`: the newest valid snapshot
/// streams into a tree while another thread reads, checks and plans the logs after it (the
/// plan is redone if an older snapshot had to be used), then the plan's truncations are made
/// and its txns replayed.
pub fn load(
    data_dir: &Path,
    data_log_dir: &Path,
    max_txn_bytes: usize,
    trust_empty: bool,
) -> Result<Loaded, LoadError> {
    use recovery::{apply_actions, RecoveryError};
    let started = Instant::now();
    let snap_dir = version_dir(data_dir);
    let log_dir = version_dir(data_log_dir);
    let list = crate::snapshot::recovery::list_snapshots(&snap_dir)
        .map_err(|source| RecoveryError::Io { path: snap_dir.clone(), source })?;
    let opts = |loaded_snapshot: Option<(i64, PathBuf)>| RecoveryOptions {
        max_txn_bytes,
        trust_empty_snapshot: trust_empty,
        // Nothing is changed on disk before the snapshot to start from is known.
        apply: false,
        loaded_snapshot,
    };
    let guess = list.first().cloned();
    let (streamed, planned) = std::thread::scope(|s| {
        let planner = std::thread::Builder::new().name("zkd-log-plan".into()).spawn_scoped(s, || {
            let t = Instant::now();
            (recover(&snap_dir, &log_dir, &opts(guess.clone())), t.elapsed().as_millis())
        });
        let streamed = stream_newest_snapshot(&snap_dir, list, max_txn_bytes);
        let snapshot_ms = started.elapsed().as_millis();
        let planned = match planner {
            Ok(h) => Some(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
            Err(e) => {
                tracing::warn!("cannot start the log planner thread ({e}): planning after the snapshot");
                None
            }
        };
        ((streamed, snapshot_ms), planned)
    });
    let (streamed, snapshot_ms) = streamed;
    let streamed = streamed?;
    let loaded = streamed.as_ref().map(|s| (s.zxid, s.path.clone()));
    let (rec, logs_ms) = match planned {
        Some((rec, ms)) if loaded.as_ref().map(|l| l.0) == guess.as_ref().map(|g| g.0) => (rec?, ms),
        _ => {
            // The newest snapshot was not usable: plan again after the one loaded.
            let t = Instant::now();
            (recover(&snap_dir, &log_dir, &opts(loaded))?, t.elapsed().as_millis())
        }
    };
    apply_actions(&log_dir, &rec.actions)?;
    let read_ms = started.elapsed().as_millis();
    for w in &rec.warnings {
        tracing::warn!("recovery: {w}");
    }
    for a in &rec.actions {
        tracing::warn!("recovery: {a:?}");
    }
    let mut sessions: std::collections::BTreeMap<i64, i32> = Default::default();
    let (tree, snapshot_zxid, mut pending) = match streamed {
        None => (DataTree::new(), 0, PendingDigest(None)),
        Some(s) => {
            sessions.extend(s.sessions.iter().copied());
            let mut pending = PendingDigest::new(s.digest, s.zxid);
            pending.reached(s.zxid, &s.tree);
            (s.tree, s.zxid, pending)
        }
    };
    let built_ms = started.elapsed().as_millis();
    let mut sink = NoWatches;
    let txns_replayed = rec.txns.len();
    for t in &rec.txns {
        // Txns already reflected in a fuzzy snapshot fail harmlessly (NodeExists, NoNode), as
        // in ZooKeeper's replay.
        let _ = tree.apply(&t.hdr, &t.body, &mut sink);
        pending.reached(t.hdr.zxid, &tree);
        pending.txn(t, &tree);
        match &t.body {
            TxnBody::CreateSession(c) => {
                sessions.insert(t.hdr.client_id, c.time_out);
            }
            TxnBody::CloseSession(_) => {
                sessions.remove(&t.hdr.client_id);
            }
            _ if t.hdr.txn_type == OpCode::CloseSession as i32 => {
                sessions.remove(&t.hdr.client_id);
            }
            _ => {}
        }
    }
    if rec.fresh {
        // As ZooKeeper does on a fresh dataDir: snapshot.0 of the initial tree, so that the
        // directory is valid for either server from the first write on.
        write_snapshot(&tree, &snap_dir, 0, &[], Compression::None)
            .map_err(|source| LoadError::InitialSnapshot { dir: snap_dir.clone(), source })?;
    }
    let last_zxid = rec.last_zxid.max(tree.last_processed_zxid());
    tracing::info!(
        "loaded database in {} ms (snapshot read into the tree {snapshot_ms} ms; logs read and checked {logs_ms} ms, alongside; {} ms more until replay; replay {} ms): {} znodes, {} sessions, {} txns replayed, last zxid 0x{:x}",
        started.elapsed().as_millis(),
        read_ms.saturating_sub(snapshot_ms),
        started.elapsed().as_millis() - built_ms,
        tree.node_count(),
        sessions.len(),
        txns_replayed,
        last_zxid
    );
    Ok(Loaded { tree, sessions: sessions.into_iter().collect(), last_zxid, snapshot_zxid, txns_replayed })
}

/// Writes a (fuzzy) snapshot of `tree` named after `zxid`.
pub fn write_snapshot(
    tree: &DataTree,
    snap_dir: &Path,
    zxid: i64,
    sessions: &[(i64, i32)],
    compression: Compression,
) -> std::io::Result<PathBuf> {
    let replaced = tree.replacements();
    let acl = tree.acl_cache_export();
    let mut nodes = Vec::with_capacity(tree.node_count());
    tree.for_each_node(|path, data, acl_id, stat| {
        nodes.push(SnapshotNode {
            path: path.to_owned(),
            data: data.map(|d| d.to_vec()),
            acl_id,
            stat: stat.clone(),
        });
    });
    if tree.replacements() != replaced {
        // A learner installed the leader's snapshot (or reloaded) meanwhile: what was read
        // mixes two trees and would be named after the old one's zxid.
        return Err(std::io::Error::other(format!(
            "the tree was replaced while snapshot 0x{zxid:x} was read: not written"
        )));
    }
    write_snapshot_file(snap_dir, zxid, compression, sessions, &acl, nodes, snapshot_digest(tree))
}

/// The digest section a snapshot of `tree` ends with, read after its nodes (`DataTree.serializeZxidDigest`):
/// the digest after the last applied txn, all zeros before any txn; none when digests are off.
pub fn snapshot_digest(tree: &DataTree) -> Option<ZxidDigest> {
    if !digest::enabled() {
        return None;
    }
    let d = tree.last_zxid_digest().unwrap_or_default();
    Some(ZxidDigest { zxid: d.zxid, digest_version: digest::DIGEST_VERSION, digest: d.digest as i64 })
}

/// Removes the snapshots of states after `zxid`, newest first, then syncs the directory. After a
/// TRUNC or a SNAP to `zxid` such a snapshot holds txns the log no longer has, and recovery would
/// start from it. (ZooKeeper leaves them: its learners only snapshot what they applied, and a
/// learner applies only committed txns. A zkd learner whose role ends applies what it logged,
/// as ZooKeeper's `fastForwardDataBase` does, and may snapshot that.)
pub fn remove_snapshots_after(snap_dir: &Path, zxid: i64) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for (z, p) in crate::snapshot::recovery::list_snapshots(snap_dir)? {
        if z > zxid {
            std::fs::remove_file(&p)?;
            removed.push(p);
        }
    }
    if !removed.is_empty() {
        std::fs::File::open(snap_dir)?.sync_all()?;
        tracing::warn!("removed {} snapshot(s) newer than 0x{zxid:x}: {removed:?}", removed.len());
    }
    Ok(removed)
}

/// What [`reload_into`] rebuilt.
pub struct Reloaded {
    /// Live sessions with their timeouts (ms), as at start-up.
    pub sessions: Vec<(i64, i32)>,
    pub last_zxid: i64,
    pub snapshot_zxid: i64,
    pub txns_replayed: usize,
    /// The tree's previous contents, to be dropped where freeing them stalls no one.
    pub old: DataTree,
}

/// Rebuilds the database from disk exactly as start-up does ([`load`]: the newest valid
/// snapshot and the logs after it) and makes `tree` that state in place (the shards keep their
/// `Arc`; see `DataTree::replace_with`). ZooKeeper's learner does this after a TRUNC
/// (`ZKDatabase.truncateLog`: clear, truncate, `loadDataBase`). Blocking (reads every file and
/// builds on threads of its own): call it from a blocking pool, never on an executor thread.
pub fn reload_into(
    tree: &DataTree,
    data_dir: &Path,
    data_log_dir: &Path,
    max_txn_bytes: usize,
    trust_empty: bool,
) -> Result<Reloaded, LoadError> {
    let l = load(data_dir, data_log_dir, max_txn_bytes, trust_empty)?;
    let old = tree.replace_with(l.tree);
    Ok(Reloaded {
        sessions: l.sessions,
        last_zxid: l.last_zxid,
        snapshot_zxid: l.snapshot_zxid,
        txns_replayed: l.txns_replayed,
        old,
    })
}

/// Takes snapshots off the write path, one at a time, on their own thread.
pub struct Snapshotter {
    pub snap_dir: PathBuf,
    pub compression: Compression,
    busy: Arc<AtomicBool>,
}

impl Snapshotter {
    pub fn new(data_dir: &Path, compression: Compression) -> Self {
        Snapshotter { snap_dir: version_dir(data_dir), compression, busy: Arc::new(AtomicBool::new(false)) }
    }

    /// Starts a snapshot unless one is running (ZooKeeper: "Too busy to snap, skipping").
    pub fn start(&self, tree: Arc<DataTree>, zxid: i64, sessions: Vec<(i64, i32)>) -> bool {
        if self.busy.swap(true, Ordering::AcqRel) {
            tracing::warn!("Too busy to snap, skipping");
            return false;
        }
        let busy = self.busy.clone();
        let dir = self.snap_dir.clone();
        let compression = self.compression;
        let spawned = std::thread::Builder::new().name("zkd-snapshot".into()).spawn(move || {
            let t = Instant::now();
            match write_snapshot(&tree, &dir, zxid, &sessions, compression) {
                Ok(p) => tracing::info!("snapshot {} written in {} ms", p.display(), t.elapsed().as_millis()),
                Err(e) => tracing::error!("snapshot 0x{zxid:x} in {} failed: {e}", dir.display()),
            }
            busy.store(false, Ordering::Release);
        });
        if spawned.is_err() {
            self.busy.store(false, Ordering::Release);
            return false;
        }
        true
    }
}

/// ZooKeeper's `PurgeTxnLog.purge`: keeps the newest `retain` snapshots (at least 3) and the logs
/// needed to recover from the oldest of them — the log that holds its zxid and every later one —
/// and deletes older snapshots and logs. Returns the files removed.
pub fn purge(data_dir: &Path, data_log_dir: &Path, retain: usize) -> std::io::Result<Vec<PathBuf>> {
    let retain = retain.max(3);
    let snap_dir = version_dir(data_dir);
    let log_dir = version_dir(data_log_dir);
    let snaps = crate::snapshot::recovery::list_snapshots(&snap_dir)?; // newest first
    let mut removed = Vec::new();
    if snaps.len() < retain {
        return Ok(removed);
    }
    let least = snaps[retain - 1].0;
    let mut logs = recovery::list_logs(&log_dir)?;
    logs.sort_by_key(|(z, _)| *z);
    // The newest log starting at or before `least` may hold txns after it: keep it.
    let keep_from = logs.iter().filter(|(z, _)| *z <= least).map(|(z, _)| *z).max().unwrap_or(least);
    for (z, p) in &snaps[retain..] {
        assert!(*z <= least, "purging snapshot 0x{z:x}, newer than the oldest kept 0x{least:x}");
        std::fs::remove_file(p)?;
        removed.push(p.clone());
    }
    for (z, p) in logs {
        if z < keep_from {
            std::fs::remove_file(&p)?;
            removed.push(p);
        }
    }
    Ok(removed)
}

/// `autopurge.purgeInterval` (hours): purges in the background, like ZooKeeper's
/// DatadirCleanupManager.
pub fn start_autopurge(data_dir: PathBuf, data_log_dir: PathBuf, retain: usize, interval_hours: u32) {
    if interval_hours == 0 {
        return;
    }
    let every = std::time::Duration::from_secs(interval_hours as u64 * 3600);
    let _ = std::thread::Builder::new().name("zkd-purge".into()).spawn(move || loop {
        std::thread::sleep(every);
        match purge(&data_dir, &data_log_dir, retain) {
            Ok(r) => tracing::info!("autopurge removed {} old snapshot/log files", r.len()),
            Err(e) => tracing::warn!("autopurge of {} failed: {e}", data_dir.display()),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::*;
    use crate::tree::acl_cache::open_acl_unsafe;

    /// Found by fuzz/fuzz_targets/snapshot_load.rs: the mapped loader took `//x` as a child "x"
    /// of the root (stored at another path than "/x"), which the stream loader refused as an
    /// orphan; and both took `x`, with no '/', as a child of the root. Both refuse them now.
    #[test]
    fn both_loaders_refuse_a_malformed_path() {
        let node =
            |path: &str| SnapshotNode { path: path.into(), data: None, acl_id: -1, stat: Default::default() };
        for bad in ["//x", "x", "/a/", "/a//b"] {
            let nodes = [node(""), node("/a"), node(bad)];
            let bytes = crate::snapshot::format::write_snapshot(
                Vec::new(),
                Compression::None,
                -1,
                &[],
                &[],
                &nodes,
                None,
            )
            .unwrap();
            let mapped = load_snapshot_bytes(&bytes, 1, 1 << 20).err().expect("mapped loader refuses");
            assert!(mapped.contains("malformed path"), "{bad}: {mapped}");
            let streamed = load_snapshot_stream(std::io::Cursor::new(bytes), Compression::None, 1, 1 << 20);
            assert!(streamed.is_err(), "{bad}: the stream loader takes it");
        }
    }

    /// Txns making a tree with what a load must carry over: one parent with many children,
    /// nesting, null and empty data, two sessions' ephemerals, a container, a TTL node, a quota.
    fn sample_txns() -> Vec<LoggedTxn> {
        let acl = open_acl_unsafe();
        let mut out = Vec::new();
        let mut push = |client_id: i64, ty: OpCode, body: TxnBody| {
            let zxid = out.len() as i64 + 1;
            let hdr = TxnHeader { client_id, cxid: 1, zxid, time: zxid * 1000, txn_type: ty as i32 };
            out.push(LoggedTxn { hdr, body, digest: None });
        };
        let create = |path: String, data: Option<&[u8]>, ephemeral: bool| {
            TxnBody::Create(CreateTxn {
                path,
                data: data.map(<[u8]>::to_vec),
                acl: acl.clone(),
                ephemeral,
                parent_c_version: -1,
            })
        };
        push(1, OpCode::Create, create("/flat".into(), None, false));
        for i in 0..700 {
            push(1, OpCode::Create, create(format!("/flat/c{i}"), Some(b"v"), false));
        }
        for i in 0..40 {
            push(1, OpCode::Create, create(format!("/d{i}"), Some(b""), false));
            push(1, OpCode::Create, create(format!("/d{i}/e"), Some(b"x"), false));
            push(1, OpCode::Create, create(format!("/d{i}/e/f{i}"), None, false));
        }
        for (s, n) in [(0x51, 30), (0x52, 25)] {
            for i in 0..n {
                push(s, OpCode::Create, create(format!("/d{i}/eph-{s:x}-{i}"), Some(b"e"), true));
            }
        }
        let body = TxnBody::CreateContainer(CreateContainerTxn {
            path: "/box".into(),
            data: None,
            acl: acl.clone(),
            parent_c_version: -1,
        });
        push(1, OpCode::CreateContainer, body);
        let body = TxnBody::CreateTtl(CreateTtlTxn {
            path: "/ttl".into(),
            data: Some(b"t".to_vec()),
            acl: acl.clone(),
            parent_c_version: -1,
            ttl: 5,
        });
        push(1, OpCode::CreateTtl, body);
        push(1, OpCode::Create, create("/zookeeper/quota/d1".into(), None, false));
        push(
            1,
            OpCode::Create,
            create("/zookeeper/quota/d1/zookeeper_limits".into(), Some(b"count=5,bytes=-1"), false),
        );
        push(
            1,
            OpCode::Create,
            create("/zookeeper/quota/d1/zookeeper_stats".into(), Some(b"count=3,bytes=2"), false),
        );
        for i in 0..50 {
            push(
                1,
                OpCode::SetData,
                TxnBody::SetData(SetDataTxn {
                    path: format!("/flat/c{i}"),
                    data: Some(vec![b'w'; i]),
                    version: -1,
                }),
            );
            push(1, OpCode::Delete, TxnBody::Delete(DeleteTxn { path: format!("/flat/c{}", 600 + i) }));
        }
        out
    }

    fn tree_of(txns: &[LoggedTxn]) -> DataTree {
        let t = DataTree::new();
        for x in txns {
            t.apply(&x.hdr, &x.body, &mut NoWatches);
        }
        t
    }

    /// Everything observable about a tree that a load rebuilds, children in ZooKeeper's order.
    fn dump(t: &DataTree) -> String {
        let mut out = String::new();
        t.for_each_node(|p, d, acl, st| out.push_str(&format!("{p} {d:?} {acl} {st:?}\n")));
        // A loaded tree's ephemerals iterate in snapshot order (as ZooKeeper's after a load),
        // not creation order: compared as sets here, and in order between loads.
        let mut eph = t.ephemerals_by_session();
        eph.iter_mut().for_each(|(_, v)| v.sort());
        out.push_str(&format!(
            "{:?} {} {} {:?} {:?} {:?}",
            eph,
            t.node_count(),
            t.approximate_data_size(),
            t.acl_cache_export(),
            t.quota_for("/d1/e"),
            t.containers_and_ttls_to_delete(i64::MAX / 2, true),
        ));
        out
    }

    /// Equal dumps, or the first differing line.
    fn same(got: &str, want: &str, what: &str) {
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "{what}: line {i}");
        }
        assert_eq!(got.lines().count(), want.lines().count(), "{what}");
    }

    #[test]
    fn loading_a_snapshot_rebuilds_the_same_tree_mapped_or_compressed() {
        let txns = sample_txns();
        let tree = tree_of(&txns);
        let last = txns.last().unwrap().hdr.zxid;
        let mut ephemerals = Vec::new();
        for c in [Compression::None, Compression::Gzip, Compression::Snappy] {
            let d = tempfile::tempdir().unwrap();
            write_snapshot(&tree, &version_dir(d.path()), last, &[(0x51, 4000)], c).unwrap();
            let loaded = load(d.path(), d.path(), 1 << 20, false).unwrap();
            same(&dump(&loaded.tree), &dump(&tree), &format!("{c:?}"));
            assert_eq!((loaded.snapshot_zxid, loaded.last_zxid, loaded.txns_replayed), (last, last, 0));
            assert_eq!(loaded.sessions, vec![(0x51, 4000)]);
            ephemerals.push(loaded.tree.ephemerals_by_session());
        }
        assert!(
            ephemerals.windows(2).all(|w| w[0] == w[1]),
            "mapped and streamed loads differ: {ephemerals:?}"
        );
    }

    #[test]
    fn a_snapshot_with_an_orphan_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let v2 = version_dir(d.path());
        let node =
            |p: &str| SnapshotNode { path: p.into(), data: None, acl_id: -1, stat: Default::default() };
        let nodes = ["", "/zookeeper", "/a", "/a/b", "/x/y", "/a/c"].map(node);
        write_snapshot_file(&v2, 5, Compression::None, &[], &[], &nodes, None).unwrap();
        let err = load(d.path(), d.path(), 1 << 20, false).err().expect("an orphan is refused").to_string();
        assert!(err.contains("node /x/y appears before its parent"), "{err}");
    }

    /// Valid for ZooKeeper (every parent before its children) though not in preorder: loaded on
    /// one thread, to the same tree; duplicates and late parents are refused on either path.
    #[test]
    fn snapshot_order_other_than_preorder_loads_and_bad_orders_are_refused() {
        let node = |p: &str| SnapshotNode {
            path: p.into(),
            data: Some(p.as_bytes().to_vec()),
            acl_id: -1,
            stat: Default::default(),
        };
        let load_nodes = |paths: &[&str]| {
            let d = tempfile::tempdir().unwrap();
            let nodes: Vec<_> = paths.iter().map(|p| node(p)).collect();
            write_snapshot_file(&version_dir(d.path()), 5, Compression::None, &[], &[], &nodes, None)
                .unwrap();
            load(d.path(), d.path(), 1 << 20, false).map_err(|e| e.to_string())
        };
        let pre = load_nodes(&["", "/zookeeper", "/a", "/a/x", "/a/x/q", "/b", "/b/y"]).unwrap();
        let other = load_nodes(&["", "/zookeeper", "/a", "/b", "/a/x", "/b/y", "/a/x/q"]).unwrap();
        for t in [&pre.tree, &other.tree] {
            assert_eq!(t.node_count(), 7);
            assert_eq!(t.get_children("/a", None).unwrap().0, vec!["x".to_string()]);
            assert_eq!(t.get_children("/a/x", None).unwrap().0, vec!["q".to_string()]);
            assert_eq!(t.get_children("/b", None).unwrap().0, vec!["y".to_string()]);
            assert_eq!(t.get_data("/a/x/q", None).unwrap().0.as_deref(), Some(&b"/a/x/q"[..]));
        }
        let err = load_nodes(&["", "/zookeeper", "/a", "/a"]).err().expect("a duplicate is refused");
        assert!(err.contains("node /a appears twice"), "{err}");
        let err =
            load_nodes(&["", "/zookeeper", "/b", "/a/x", "/a"]).err().expect("a late parent is refused");
        assert!(err.contains("node /a/x appears before its parent"), "{err}");
    }

    #[test]
    fn a_corrupt_newest_snapshot_falls_back_and_the_logs_are_planned_again() {
        use crate::txnlog::format::{encode_txn_entry, log_file_name, FileHeader};
        let txns = sample_txns();
        let k = 300;
        let d = tempfile::tempdir().unwrap();
        let v2 = version_dir(d.path());
        std::fs::create_dir_all(&v2).unwrap();
        let mut log = Vec::new();
        FileHeader::txnlog().encode(&mut log);
        for t in &txns {
            encode_txn_entry(t, &mut log);
        }
        log.resize(log.len() + 4096, 0); // preallocation
        std::fs::write(v2.join(log_file_name(1)), &log).unwrap();
        write_snapshot(&tree_of(&txns[..k]), &v2, k as i64, &[], Compression::None).unwrap();
        let full = tree_of(&txns);
        let last = txns.last().unwrap().hdr.zxid;
        let newest = write_snapshot(&full, &v2, last, &[], Compression::None).unwrap();
        // Same length, so the quick check passes: only the checksum catches it.
        let mut b = std::fs::read(&newest).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
        std::fs::write(&newest, &b).unwrap();
        let loaded = load(d.path(), d.path(), 1 << 20, false).unwrap();
        assert_eq!(loaded.snapshot_zxid, k as i64);
        assert_eq!(loaded.txns_replayed, txns.len() - k);
        assert_eq!(loaded.last_zxid, last);
        same(&dump(&loaded.tree), &dump(&full), "after fallback");
    }

    #[test]
    fn purge_keeps_newest_snapshots_and_the_logs_they_need() {
        let d = tempfile::tempdir().unwrap();
        let v = version_dir(d.path());
        std::fs::create_dir_all(&v).unwrap();
        for z in [0x1, 0x10, 0x20, 0x30, 0x40] {
            std::fs::write(v.join(format!("snapshot.{z:x}")), b"x").unwrap();
        }
        for z in [0x1, 0x8, 0x15, 0x25, 0x41] {
            std::fs::write(v.join(format!("log.{z:x}")), b"x").unwrap();
        }
        let removed = purge(d.path(), d.path(), 3).unwrap();
        let mut names: Vec<String> =
            removed.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        names.sort();
        // Oldest retained snapshot is 0x20; log.15 holds txns after it and stays.
        assert_eq!(names, vec!["log.1", "log.8", "snapshot.1", "snapshot.10"]);
        assert!(v.join("log.15").exists() && v.join("snapshot.20").exists());
    }
}
