//! What a learner's synchronisation does to its storage: TRUNC (`Action::Truncate`: remove the
//! logged txns the new leader does not have, then rebuild the tree from disk) and installing the
//! snapshot a leader streamed after SNAP (`Action::LoadSnapshot`: make it the durable state and
//! the live tree). ZooKeeper's `ZKDatabase.truncateLog` and `Learner.syncWithLeader`'s SNAP
//! branch.
//!
//! Everything that touches files runs on glommio's blocking pool: the executor thread (the
//! replica core) never waits on a disk. Order on disk, so that a crash at any point leaves a
//! state recovery reads as one this server had (the leader then syncs it again), and a refused
//! TRUNC changes nothing:
//! 1. the log loses every txn after the target (through the log writer, after what it was sent);
//! 2. snapshots newer than the target go (they hold txns that went);
//! 3. TRUNC: the tree is rebuilt from the newest snapshot and the log, as at start-up;
//!    SNAP: the received snapshot, already written and synced under a temporary name, is renamed
//!    into place (`snapshot.<zxid>`) and the directory synced.
//!
//! Then the live tree is replaced in place (`DataTree::replace_with`). A failure from step 1 on
//! is fatal for the process (ZooKeeper exits when it cannot truncate): the disk may no longer
//! match the tree.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db;
use crate::tree::DataTree;
use crate::txnlog::{LogTruncator, TruncateMode};

/// Where a learner's durable state lives.
#[derive(Clone)]
pub struct Disk {
    /// `dataDir` (snapshots go to its `version-2`).
    pub data_dir: PathBuf,
    /// `dataLogDir` (the log's `version-2`).
    pub data_log_dir: PathBuf,
    /// The running log writer's truncation handle.
    pub log: LogTruncator,
    /// `jute.maxbuffer` + extra: entry bound when reading logs and snapshots back.
    pub max_txn_bytes: usize,
    /// `zookeeper.snapshot.trust.empty`, as at start-up.
    pub trust_empty: bool,
}

/// The live tree and, unless the server runs in memory, its disk.
#[derive(Clone)]
pub struct SyncStorage {
    tree: Arc<DataTree>,
    disk: Option<Disk>,
}

/// A storage step failed: the process must stop (see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot truncate the log to 0x{zxid:x}: {reason}")]
    Truncate { zxid: i64, reason: String },
    #[error("cannot reload the database after truncating to 0x{zxid:x}: {reason}")]
    Reload { zxid: i64, reason: String },
    #[error("cannot install the leader's snapshot 0x{zxid:x}: {reason}")]
    Install { zxid: i64, reason: String },
    #[error("TRUNC to 0x{zxid:x} on a server without a data directory (in-memory): nothing to rebuild from")]
    InMemory { zxid: i64 },
}

/// What TRUNC left: the state on disk, now also the live tree's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated {
    /// Live sessions (id, timeout ms), as a restart would find them: the replica's session
    /// tracker starts over from these.
    pub sessions: Vec<(i64, i32)>,
    /// The last zxid of the rebuilt state.
    pub last_zxid: i64,
}

/// A snapshot being received: written and synced under `<name>.tmp`, renamed by `install`.
pub(crate) struct SnapshotFile {
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    file: Option<std::fs::File>,
}

impl SnapshotFile {
    /// Appends bytes (on the blocking pool).
    pub(crate) async fn write(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        let mut f = self.file.take().ok_or_else(|| std::io::Error::other("snapshot file already closed"))?;
        let (f, r) = glommio::executor()
            .spawn_blocking(move || {
                let r = f.write_all(&bytes);
                (f, r)
            })
            .await;
        self.file = Some(f);
        r
    }

    /// Makes what was written durable (still under the temporary name).
    pub(crate) async fn sync(&mut self) -> std::io::Result<()> {
        let f = self.file.take().ok_or_else(|| std::io::Error::other("snapshot file already closed"))?;
        let (f, r) = glommio::executor()
            .spawn_blocking(move || {
                let r = f.sync_all();
                (f, r)
            })
            .await;
        self.file = Some(f);
        r
    }

    /// Drops an unfinished file (the load failed before anything durable changed).
    pub(crate) fn discard(mut self) {
        self.file = None;
        let tmp = std::mem::take(&mut self.tmp);
        glommio::spawn_local(async move {
            let _ = glommio::executor().spawn_blocking(move || std::fs::remove_file(tmp)).await;
        })
        .detach();
    }
}

fn blocking_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl SyncStorage {
    pub fn new(tree: Arc<DataTree>, disk: Option<Disk>) -> SyncStorage {
        SyncStorage { tree, disk }
    }

    /// The live tree (the one the shards read).
    pub fn tree(&self) -> &Arc<DataTree> {
        &self.tree
    }

    /// `Action::Truncate { zxid }`: removes every logged txn after `zxid` (refused, changing
    /// nothing, if the log cannot show the state at `zxid`: see `crate::txnlog::truncate`) and
    /// the snapshots newer than it, rebuilds the state from disk as start-up does, and makes the
    /// live tree that state. Any error is fatal.
    pub async fn truncate(&self, zxid: i64) -> Result<Truncated, StorageError> {
        let Some(disk) = self.disk.clone() else { return Err(StorageError::InMemory { zxid }) };
        let tree = self.tree.clone();
        let r = glommio::executor()
            .spawn_blocking(move || -> Result<Truncated, StorageError> {
                disk.log
                    .truncate(zxid, TruncateMode::Trunc)
                    .map_err(|e| StorageError::Truncate { zxid, reason: e.to_string() })?;
                let snap_dir = db::version_dir(&disk.data_dir);
                db::remove_snapshots_after(&snap_dir, zxid)
                    .map_err(|e| StorageError::Truncate { zxid, reason: e.to_string() })?;
                let r = db::reload_into(
                    &tree,
                    &disk.data_dir,
                    &disk.data_log_dir,
                    disk.max_txn_bytes,
                    disk.trust_empty,
                )
                .map_err(|e| StorageError::Reload { zxid, reason: e.to_string() })?;
                // The old contents are freed here, on the blocking pool.
                drop(r.old);
                Ok(Truncated { sessions: r.sessions, last_zxid: r.last_zxid })
            })
            .await?;
        tracing::info!("truncated to 0x{zxid:x}; the database is at 0x{:x}", r.last_zxid);
        Ok(r)
    }

    /// Starts the file a received snapshot is written to (None in memory). Not fatal on error:
    /// nothing durable changed yet.
    pub(crate) async fn begin_snapshot(&self, zxid: i64) -> std::io::Result<Option<SnapshotFile>> {
        let Some(disk) = &self.disk else { return Ok(None) };
        let dir = db::version_dir(&disk.data_dir);
        let name = crate::txnlog::format::snapshot_file_name(zxid);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        let (d, t) = (dir.clone(), tmp.clone());
        let file = glommio::executor()
            .spawn_blocking(move || {
                std::fs::create_dir_all(&d)?;
                std::fs::File::create(&t)
            })
            .await?;
        Ok(Some(SnapshotFile { tmp, path, dir, file: Some(file) }))
    }

    /// Makes a received snapshot at `zxid` the durable state (steps 1, 2, 3 of the module docs;
    /// `file` is complete and synced) and `tree` the live tree. Any error is fatal.
    pub(crate) async fn install(
        &self,
        zxid: i64,
        file: Option<SnapshotFile>,
        tree: DataTree,
    ) -> Result<(), StorageError> {
        if let (Some(disk), Some(mut file)) = (self.disk.clone(), file) {
            let fail = move |reason: String| StorageError::Install { zxid, reason };
            file.file = None;
            let (tmp, path, dir) = (file.tmp.clone(), file.path.clone(), file.dir.clone());
            glommio::executor()
                .spawn_blocking(move || -> Result<(), String> {
                    disk.log.truncate(zxid, TruncateMode::AfterSnapshot).map_err(blocking_err)?;
                    db::remove_snapshots_after(&dir, zxid).map_err(blocking_err)?;
                    std::fs::rename(&tmp, &path).map_err(blocking_err)?;
                    std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(blocking_err)?;
                    Ok(())
                })
                .await
                .map_err(fail)?;
            tracing::info!("snapshot 0x{zxid:x} from the leader is durable: {}", file.path.display());
        }
        let old = self.tree.replace_with(tree);
        // Freeing every node of the old tree is the blocking pool's work, not the core's.
        glommio::spawn_local(async move {
            glommio::executor().spawn_blocking(move || drop(old)).await;
        })
        .detach();
        Ok(())
    }
}

/// The path a received snapshot at `zxid` is installed under (for tests and operators).
pub fn snapshot_path(data_dir: &Path, zxid: i64) -> PathBuf {
    db::version_dir(data_dir).join(crate::txnlog::format::snapshot_file_name(zxid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::txn::LoggedTxn;
    use crate::proto::*;
    use crate::tree::{WatchSink, WatcherId};
    use crate::txnlog::{LogHandle, LogOptions, LogWriter};
    use std::time::Duration;

    struct NoWatches;
    impl WatchSink for NoWatches {
        fn deliver(&mut self, _: WatcherId, _: EventType, _: &str, _: &Arc<Vec<Acl>>) {}
    }

    /// Runs `f` on a glommio executor (the blocking pool is where the disk work goes).
    fn on_executor<T: Send + 'static>(
        f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
    ) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                glommio::spawn_local(async {
                    loop {
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                    }
                })
                .detach();
                f().await
            })
            .expect("start a glommio executor")
            .join()
            .expect("executor")
    }

    fn txn(zxid: i64, k: usize) -> LoggedTxn {
        let (ty, body) = if k.is_multiple_of(3) {
            (
                OpCode::Create,
                TxnBody::Create(CreateTxn {
                    path: format!("/n{k}"),
                    data: Some(vec![k as u8; 8]),
                    acl: crate::tree::acl_cache::open_acl_unsafe(),
                    ephemeral: false,
                    parent_c_version: -1,
                }),
            )
        } else if k % 3 == 1 {
            (OpCode::CreateSession, TxnBody::CreateSession(CreateSessionTxn { time_out: 1000 + k as i32 }))
        } else {
            (
                OpCode::SetData,
                TxnBody::SetData(SetDataTxn {
                    path: format!("/n{}", k - 2),
                    data: Some(vec![0xee; k]),
                    version: 1,
                }),
            )
        };
        LoggedTxn {
            hdr: TxnHeader { client_id: 0x500 + k as i64, cxid: 1, zxid, time: 7, txn_type: ty as i32 },
            body,
            digest: None,
        }
    }

    fn state(txns: &[LoggedTxn]) -> (Vec<String>, Vec<(i64, i32)>) {
        let t = DataTree::new();
        let mut sessions = std::collections::BTreeMap::new();
        for x in txns {
            t.apply(&x.hdr, &x.body, &mut NoWatches);
            if let TxnBody::CreateSession(c) = &x.body {
                sessions.insert(x.hdr.client_id, c.time_out);
            }
        }
        (dump(&t), sessions.into_iter().collect())
    }

    fn dump(t: &DataTree) -> Vec<String> {
        let mut out = Vec::new();
        t.for_each_node(|p, d, acl, st| out.push(format!("{p} {d:?} {acl} {st:?}")));
        out.sort();
        out
    }

    /// A log writer on `dir`, and a way to wait until it made `zxid` durable (test thread).
    fn writer(dir: &Path) -> (LogHandle, crossbeam_channel::Receiver<i64>) {
        let (tx, rx) = crossbeam_channel::bounded(1024);
        let opts = LogOptions { pre_alloc_size_bytes: 64 << 10, ..Default::default() };
        let h = LogWriter::start(
            db::version_dir(dir),
            opts,
            Box::new(move |z| {
                let _ = tx.try_send(z);
            }),
            Box::new(|e| panic!("log: {e}")),
        )
        .unwrap();
        (h, rx)
    }

    fn durable(rx: &crossbeam_channel::Receiver<i64>, zxid: i64) {
        loop {
            let z = rx.recv_timeout(Duration::from_secs(20)).expect("the log to become durable");
            if z >= zxid {
                return;
            }
        }
    }

    fn log_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(db::version_dir(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("log.") || n.starts_with("snapshot."))
            .collect();
        v.sort();
        v
    }

    /// TRUNC across log files: the txns after the target go from every file, a snapshot newer
    /// than it goes, the live tree is the state at the target, and the log goes on after it.
    #[test]
    fn truncate_across_log_files_then_reload_gives_the_truncated_state() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_owned();
        let fresh = db::load(&dir, &dir, 1 << 20, false).unwrap();
        assert_eq!(fresh.last_zxid, 0);
        let txns: Vec<LoggedTxn> = (1..=30).map(|k| txn(0x1_0000_0000 + k as i64, k)).collect();
        let (log, rx) = writer(&dir);
        for part in txns.chunks(10) {
            log.append(part.to_vec()).unwrap();
            log.roll().unwrap();
        }
        durable(&rx, txns[29].hdr.zxid);
        // A snapshot taken at txn 20 (the target is before it).
        let at20 = DataTree::new();
        for x in &txns[..20] {
            at20.apply(&x.hdr, &x.body, &mut NoWatches);
        }
        db::write_snapshot(
            &at20,
            &db::version_dir(&dir),
            txns[19].hdr.zxid,
            &[],
            crate::snapshot::Compression::None,
        )
        .unwrap();
        assert_eq!(
            log_names(&dir),
            vec!["log.100000001", "log.10000000b", "log.100000015", "snapshot.0", "snapshot.100000014"]
        );

        let live = Arc::new(DataTree::new());
        for x in &txns {
            live.apply(&x.hdr, &x.body, &mut NoWatches);
        }
        let disk = Disk {
            data_dir: dir.clone(),
            data_log_dir: dir.clone(),
            log: log.truncator(1 << 20),
            max_txn_bytes: 1 << 20,
            trust_empty: false,
        };
        let storage = SyncStorage::new(live.clone(), Some(disk.clone()));
        let target = txns[14].hdr.zxid;
        let got = on_executor(move || Box::pin(async move { storage.truncate(target).await }));
        let got = got.unwrap();
        let (want_tree, want_sessions) = state(&txns[..15]);
        assert_eq!(got, Truncated { sessions: want_sessions, last_zxid: target });
        assert_eq!(dump(&live), want_tree, "the live tree is the truncated state");
        assert_eq!(log_names(&dir), vec!["log.100000001", "log.10000000b", "snapshot.0"]);

        // The log goes on after the target, in a new file; a restart sees both.
        let more: Vec<LoggedTxn> = (31..=33).map(|k| txn(0x2_0000_0000 + k as i64, k)).collect();
        log.append(more.clone()).unwrap();
        durable(&rx, more[2].hdr.zxid);
        log.shutdown();
        let restarted = db::load(&dir, &dir, 1 << 20, false).unwrap();
        let mut all = txns[..15].to_vec();
        all.extend(more);
        assert_eq!(dump(&restarted.tree), state(&all).0);
        assert_eq!(restarted.last_zxid, 0x2_0000_0000 + 33);
    }

    /// TRUNC to before the oldest log (the txns in between were purged): refused, fatal for the
    /// caller, and nothing on disk or in the tree changes.
    #[test]
    fn truncate_before_the_oldest_log_is_refused_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_owned();
        let txns: Vec<LoggedTxn> = (1..=30).map(|k| txn(0x1_0000_0000 + k as i64, k)).collect();
        // The snapshot at txn 10 and the log from txn 11: txns 1..10 were purged.
        let at10 = DataTree::new();
        for x in &txns[..10] {
            at10.apply(&x.hdr, &x.body, &mut NoWatches);
        }
        db::write_snapshot(
            &at10,
            &db::version_dir(&dir),
            txns[9].hdr.zxid,
            &[],
            crate::snapshot::Compression::None,
        )
        .unwrap();
        let (log, rx) = writer(&dir);
        log.append(txns[10..].to_vec()).unwrap();
        durable(&rx, txns[29].hdr.zxid);
        let live = Arc::new(DataTree::new());
        for x in &txns {
            live.apply(&x.hdr, &x.body, &mut NoWatches);
        }
        let before = (dump(&live), log_names(&dir));
        let disk = Disk {
            data_dir: dir.clone(),
            data_log_dir: dir.clone(),
            log: log.truncator(1 << 20),
            max_txn_bytes: 1 << 20,
            trust_empty: false,
        };
        let storage = SyncStorage::new(live.clone(), Some(disk));
        let target = txns[4].hdr.zxid;
        let err = on_executor(move || Box::pin(async move { storage.truncate(target).await })).unwrap_err();
        assert!(matches!(err, StorageError::Truncate { .. }), "{err}");
        assert!(err.to_string().contains("oldest log file"), "{err}");
        assert_eq!((dump(&live), log_names(&dir)), before);
        log.shutdown();
    }
}
