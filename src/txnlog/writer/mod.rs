//! The log writer thread: group commit into ZooKeeper-format log files.
//!
//! One plain std thread owns the current log file. It blocks for the first command, then drains
//! everything else that arrived (in particular, everything that queued up while the previous sync
//! ran), writes it with one write, and makes it durable with ONE sync; only then does it call
//! `on_durable(last_zxid)`. N appends therefore cost at most N syncs and usually far fewer.
//!
//! Files are `pre_alloc_size_bytes` of real zeros (zero-filled preallocation then pwrite, or
//! O_DIRECT page writes, + fdatasync measured fastest on this platform; fallocate alone was slower, and a sparse file as
//! ZooKeeper makes it needs block allocation and metadata on every sync). Readers stop at the
//! zeros (an entry of length 0 is ZooKeeper's EOF). Zeroing 64 MiB and syncing it costs ~100 ms,
//! so it never happens on the write path: a helper thread prepares the NEXT file (`SPARE_NAME`,
//! zero-filled and synced) while the current one fills, and a full file rolls to it (a log may
//! be split into any number of files; ZooKeeper reads them in zxid order). Only when no spare
//! could be made (e.g. the disk is nearly full) does the writer zero-fill inline.
//!
//! The spare is sized to 5/4 of what the previous file held (at least `SPARE_MIN_BYTES`, at most
//! `pre_alloc_size_bytes`): the log rolls after every snapshot, i.e. every ~snapCount txns, and
//! at 100k writes/s writing a full 64 MiB of zeros per roll was ~85 MB/s of disk traffic that
//! showed in the log's own fsync tail. (fallocate instead of zeros syncs 10x slower here, see
//! `zkd fsync-test`.) The spare is written at the lowest CPU priority, in 256 KiB steps whose
//! writeback starts at once (`sync_file_range`), paced to at most 64 MB/s, so neither its CPU
//! nor its disk traffic lands in the write path's latency: a log fdatasync queues behind at most
//! one small step. (One final 30 MiB flush used to show as 15-30 ms in p99.9; 1 MiB steps with
//! 0.5 ms pauses kept the disk busy for the whole spare, and the ~15 log syncs meanwhile took
//! 3-4 ms instead of 0.2.) The roll after a snapshot waits until the spare is ready
//! (`roll_soon`); the current file keeps taking appends meanwhile. A writer that must have the
//! spare now (its file is full) tells it to hurry: the rest is written without pauses.
//!
//! Failure policy:
//! - A failed fsync/fdatasync/msync, or a failed write other than ENOSPC, is FATAL: the writer
//!   reports [`LogWriteError::Fatal`] through `on_error` once and stops; no completion is ever
//!   called again. After a failed fsync the kernel may have dropped the dirty pages and cleared the
//!   error, so the page cache can no longer be trusted to match the disk (the reasoning of
//!   tikv/raft-engine and PostgreSQL's "fsyncgate"): the caller must stop the node loudly.
//! - ENOSPC while preallocating or writing is NOT fatal. Nothing of the failed group is left on
//!   disk: a failed extension is cut back with `set_len`, and a failed write inside the
//!   preallocated region is overwritten with zeros (already-allocated blocks need no new space)
//!   and synced (if THAT fails, it is fatal). The writer reports [`LogWriteError::NoSpace`] with
//!   the last durable zxid and the rejected zxid range, then rejects (reports NoSpace for) every
//!   further append until the caller sends [`LogHandle::resume`]. The caller (replica) is
//!   expected to fail the rejected requests, not apply them, rewind its next zxid to
//!   `last_durable_zxid + 1`, keep serving reads, and call `resume()` when it wants to try writes
//!   again. Since the channel is FIFO, everything sent before `resume()` is rejected, so the log
//!   never has a hole.
//!
//! Modules: this one is the API (options, errors, stats, the handle); `worker` is the group-commit
//! thread, generic over `backend::Backend`, the way a group reaches the file and is made
//! durable, with one implementation per [`WritePath`] (`direct`, `pwrite`, `mmap`); `spare`
//! prepares the next file.

mod backend;
mod direct;
mod mmap;
mod pwrite;
mod spare;
mod worker;

use crate::proto::txn::LoggedTxn;
use crate::txnlog::truncate::{TruncateError, TruncateMode, TruncateReport};
use crossbeam_channel::{Sender, TrySendError};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use thiserror::Error;

/// How entries reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// `pwrite` into the preallocated file, then `fdatasync`.
    Pwrite,
    /// memcpy into a shared mapping of the preallocated file, then `msync(MS_SYNC)`.
    Mmap,
    /// Whole 4 KiB pages written with `O_DIRECT` into the zero-filled preallocated file (the
    /// last partial page is kept in memory and written again with the next group), then
    /// `fdatasync`, which then has no page cache to write back and only flushes the device.
    /// The spare is zero-filled with `O_DIRECT` too, so its 64 MiB never pass through the page
    /// cache. Falls back to `Pwrite` where the filesystem refuses `O_DIRECT` (tmpfs).
    Direct,
}

/// The default write path: O_DIRECT page writes, falling back to pwrite where the filesystem
/// refuses them. Measured with `benches/txnlog_append.rs` on this machine (2 vCPU VM, virtio
/// disk, 100-byte setData txns), median of two runs:
///   one txn per group:  pwrite+fdatasync fsync p50 ~170 us, append->durable p50 ~200 us, ~4000 txn/s;
///                       mmap+msync       fsync p50 ~220 us, append->durable p50 ~270 us, ~3300 txn/s
///   bursts of 64:       pwrite ~78k txn/s, mmap ~66k txn/s.
/// Direct against pwrite in the server (setData, 16 sessions x 8, one core; 2026-11-23): the
/// same throughput within this machine's noise (4 alternating pairs: 167k vs 169k/s), fsync
/// p50 65 us instead of 150-180 us (the data now moves in the write; the sync only flushes),
/// and the spare's zero-fill takes 2.6% of the core instead of 4.2% (no page cache).
/// pwrite and direct keep page faults and SIGBUS hazards off the log thread.
pub const DEFAULT_WRITE_PATH: WritePath = WritePath::Direct;

#[derive(Debug, Clone)]
pub struct LogOptions {
    /// `preAllocSize` (ZooKeeper: 64 MiB, `zookeeper.preAllocSize` in KiB).
    pub pre_alloc_size_bytes: u64,
    /// `forceSync`: false skips every sync (durability is then the OS's business).
    pub force_sync: bool,
    /// `fsync.warningthresholdms` (ZooKeeper default 1000).
    pub fsync_warning_threshold_ms: u64,
    pub write_path: WritePath,
    /// `zookeeper.txnLogSizeLimitInKb`: roll to a new file once the current one holds this much
    /// (None: no limit, as ZooKeeper's default).
    pub log_size_limit_bytes: Option<u64>,
    /// Bound of the command queue; `append` fails with `Full` beyond it.
    pub queue_max_batches: usize,
    /// A group stops draining the queue once it holds this many bytes.
    pub group_max_bytes: usize,
    /// Name of the writer thread (appears in the slow-fsync warning).
    pub thread_name: String,
    /// Pin the writer thread to this core id.
    pub pin_to_core: Option<usize>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            pre_alloc_size_bytes: 64 * 1024 * 1024,
            force_sync: true,
            fsync_warning_threshold_ms: 1000,
            write_path: DEFAULT_WRITE_PATH,
            log_size_limit_bytes: None,
            queue_max_batches: 4096,
            group_max_bytes: 16 * 1024 * 1024,
            thread_name: "zkd-txnlog".into(),
            pin_to_core: None,
        }
    }
}

/// The preallocated next log file, renamed to `log.<zxid>` when it is taken. The name does not
/// start with `log.`, so neither zkd's nor ZooKeeper's recovery ever reads it.
pub const SPARE_NAME: &str = ".zkd-next-log";

/// Lowers the calling thread's CPU priority to the minimum (nice 19): background work that must
/// not take the core from the shards, the replica or the log writer.
pub(crate) fn lower_thread_priority() {
    // SAFETY: plain syscalls on the calling thread; failure only leaves the priority unchanged.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// What the writer reports through `on_error`.
#[derive(Debug, Error)]
pub enum LogWriteError {
    #[error("FATAL: {op} of transaction log {path} failed: {source}; the page cache can no longer be trusted, the server must stop")]
    Fatal { op: &'static str, path: PathBuf, source: io::Error },
    #[error("no space left on device writing {path}: txns 0x{first_rejected_zxid:x}..=0x{last_rejected_zxid:x} were NOT logged (last durable zxid 0x{last_durable_zxid:x}); writes are refused until resume()")]
    NoSpace {
        path: PathBuf,
        last_durable_zxid: i64,
        first_rejected_zxid: i64,
        last_rejected_zxid: i64,
        source: io::Error,
    },
}

/// Why `append`/`roll` could not hand work to the writer. The txns are returned.
#[derive(Debug, Error)]
pub enum AppendError {
    #[error("transaction log queue is full ({0} batches)")]
    Full(usize, Vec<SharedTxn>),
    #[error("transaction log writer has stopped")]
    Stopped(Vec<SharedTxn>),
}

/// Counters and the fsync latency histogram (microseconds).
#[derive(Debug, Clone)]
pub struct LogStats {
    pub syncs: u64,
    pub txns_written: u64,
    pub bytes_written: u64,
    pub files_created: u64,
    pub fsync_us: Histogram<u64>,
    /// Txns made durable by each sync (ZooKeeper's `sync_processor_batch_size`).
    pub sync_batch_txns: Histogram<u64>,
}

impl LogStats {
    fn new() -> Self {
        LogStats {
            syncs: 0,
            txns_written: 0,
            bytes_written: 0,
            files_created: 0,
            fsync_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            sync_batch_txns: Histogram::new_with_bounds(1, 10_000_000, 2).expect("valid bounds"),
        }
    }
}

/// A txn shared between the replica (which applies it once durable) and the writer (which
/// encodes it): no copy of its path and data per write.
pub type SharedTxn = Arc<LoggedTxn>;

enum Cmd {
    Append(Vec<SharedTxn>),
    Roll,
    RollSoon,
    Resume,
    Truncate(TruncateCmd),
    Shutdown,
}

/// Remove every txn after `zxid` (see [`LogTruncator`]); the result goes to `reply`.
struct TruncateCmd {
    zxid: i64,
    mode: TruncateMode,
    max_txn_bytes: usize,
    reply: Sender<Result<TruncateReport, TruncateError>>,
}

pub type OnDurable = Box<dyn FnMut(i64) + Send>;
pub type OnError = Box<dyn FnMut(LogWriteError) + Send>;

pub struct LogWriter;

/// The caller's end of the writer thread.
pub struct LogHandle {
    tx: Sender<Cmd>,
    join: Option<JoinHandle<()>>,
    stats: Arc<Mutex<LogStats>>,
    queue_max_batches: usize,
}

impl LogWriter {
    /// Starts the writer thread on `dir` (the `version-2` directory; created if missing). The
    /// first append opens `log.<its first zxid>`.
    pub fn start(
        dir: PathBuf,
        opts: LogOptions,
        on_durable: OnDurable,
        on_error: OnError,
    ) -> io::Result<LogHandle> {
        assert!(opts.pre_alloc_size_bytes > 0, "pre_alloc_size_bytes must be positive");
        assert!(opts.queue_max_batches > 0);
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = crossbeam_channel::bounded(opts.queue_max_batches);
        let stats = Arc::new(Mutex::new(LogStats::new()));
        let queue_max_batches = opts.queue_max_batches;
        let st = stats.clone();
        let join = std::thread::Builder::new().name(opts.thread_name.clone()).spawn(move || {
            if let Some(id) = opts.pin_to_core {
                if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                    tracing::warn!(core = id, "could not pin the transaction log writer thread");
                }
            }
            let mut opts = opts;
            if opts.write_path == WritePath::Direct && !direct::works_in(&dir) {
                tracing::info!(
                    dir = %dir.display(),
                    "this filesystem refuses O_DIRECT: the transaction log uses buffered pwrite + fdatasync"
                );
                opts.write_path = WritePath::Pwrite;
            }
            match opts.write_path {
                WritePath::Direct => worker::run::<direct::Direct>(dir, opts, st, on_durable, on_error, rx),
                WritePath::Pwrite => worker::run::<pwrite::Pwrite>(dir, opts, st, on_durable, on_error, rx),
                WritePath::Mmap => worker::run::<mmap::Mmap>(dir, opts, st, on_durable, on_error, rx),
            }
        })?;
        Ok(LogHandle { tx, join: Some(join), stats, queue_max_batches })
    }
}

impl LogHandle {
    /// Queues a batch (zxids ascending, continuing the previous batch). Never blocks.
    pub fn append(&self, txns: Vec<LoggedTxn>) -> Result<(), AppendError> {
        self.append_shared(txns.into_iter().map(Arc::new).collect())
    }
    /// As `append`, for txns the caller keeps too.
    pub fn append_shared(&self, txns: Vec<SharedTxn>) -> Result<(), AppendError> {
        if txns.is_empty() {
            return Ok(());
        }
        self.tx.try_send(Cmd::Append(txns)).map_err(|e| match e {
            TrySendError::Full(Cmd::Append(t)) => AppendError::Full(self.queue_max_batches, t),
            TrySendError::Disconnected(Cmd::Append(t)) => AppendError::Stopped(t),
            _ => unreachable!(),
        })
    }
    /// Closes the current file after everything queued before it; the next append starts a new
    /// `log.<zxid>` (ZooKeeper rolls after each snapshot).
    pub fn roll(&self) -> Result<(), AppendError> {
        self.send_ctl(Cmd::Roll)
    }
    /// As `roll`, but if the next file is still being prepared, the current one keeps taking
    /// appends until it is ready (the roll after a snapshot: it never waits on the zero-fill).
    pub fn roll_soon(&self) -> Result<(), AppendError> {
        self.send_ctl(Cmd::RollSoon)
    }
    /// Accepts appends again after a [`LogWriteError::NoSpace`].
    pub fn resume(&self) -> Result<(), AppendError> {
        self.send_ctl(Cmd::Resume)
    }
    /// Whether the queue has no room: a caller that must not block (the replica) then holds
    /// its next command back. With one producer, "not full" means the next send cannot wait.
    pub fn is_full(&self) -> bool {
        self.tx.is_full()
    }
    fn send_ctl(&self, c: Cmd) -> Result<(), AppendError> {
        // Control commands wait for room: they are rare and must not be lost.
        self.tx.send(c).map_err(|_| AppendError::Stopped(Vec::new()))
    }
    /// A handle that truncates the log through this writer (see [`LogTruncator`]).
    pub fn truncator(&self, max_txn_bytes: usize) -> LogTruncator {
        LogTruncator { tx: self.tx.clone(), max_txn_bytes }
    }
    /// The live counters and fsync histogram (for the metrics endpoints).
    pub fn stats_handle(&self) -> Arc<Mutex<LogStats>> {
        self.stats.clone()
    }
    /// A copy of the counters and the fsync histogram.
    pub fn stats(&self) -> LogStats {
        self.stats.lock().clone()
    }
    /// Writes and syncs everything queued, then stops the thread and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }
    fn stop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(j) = self.join.take() {
            if j.join().is_err() {
                tracing::error!("transaction log writer thread panicked");
            }
        }
    }
}

/// Truncates the log through the writer thread, which owns the current file: a learner's TRUNC
/// and the clean-up after its SNAP (`crate::txnlog::truncate`). Cheap to clone and `Send`.
#[derive(Clone)]
pub struct LogTruncator {
    tx: Sender<Cmd>,
    max_txn_bytes: usize,
}

impl LogTruncator {
    /// Queued after everything sent to the writer before it: the writer writes and syncs those,
    /// closes its file, removes every txn after `zxid` (durably) and answers; the next append
    /// starts a new file. Blocks until then: call it where blocking is fine (a blocking pool),
    /// never on an executor thread.
    pub fn truncate(&self, zxid: i64, mode: TruncateMode) -> Result<TruncateReport, TruncateError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let cmd = TruncateCmd { zxid, mode, max_txn_bytes: self.max_txn_bytes, reply };
        self.tx.send(Cmd::Truncate(cmd)).map_err(|_| TruncateError::Stopped)?;
        answer.recv().map_err(|_| TruncateError::Stopped)?
    }
}

impl Drop for LogHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
