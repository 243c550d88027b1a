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
//!   further append until the caller sends [`LogHandle::resume`]. The caller (sequencer) is
//!   expected to fail the rejected requests, not apply them, rewind its next zxid to
//!   `last_durable_zxid + 1`, keep serving reads, and call `resume()` when it wants to try writes
//!   again. Since the channel is FIFO, everything sent before `resume()` is rejected, so the log
//!   never has a hole.

use super::format::{encode_txn_entry, log_file_name, FileHeader, FILE_HEADER_LEN_BYTES};
use crate::proto::txn::LoggedTxn;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use hdrhistogram::Histogram;
use memmap2::MmapMut;
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
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

/// The unit of `O_DIRECT` writes: offsets, lengths and buffer addresses are multiples of it
/// (4 KiB covers both 512-byte and 4 KiB logical block sizes).
const PAGE: usize = 4096;

/// One page-aligned page: a `Vec<Page>` is a page-aligned buffer for `O_DIRECT`.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

const ZERO_PAGE: Page = Page([0; PAGE]);

/// The bytes of `pages`, as one slice.
fn page_bytes(pages: &mut [Page]) -> &mut [u8] {
    // SAFETY: `Page` is a plain byte array with no padding (size == PAGE), so `len` pages are
    // exactly `len * PAGE` initialised bytes, borrowed mutably for the slice's lifetime.
    unsafe { std::slice::from_raw_parts_mut(pages.as_mut_ptr().cast::<u8>(), pages.len() * PAGE) }
}

/// `pages` resized to hold `head`, then `body`, then zeros up to `len` rounded up to a page;
/// returns those bytes (what one `O_DIRECT` write sends).
fn compose_pages<'a>(pages: &'a mut Vec<Page>, head: &[u8], body: &[u8], len: usize) -> &'a mut [u8] {
    debug_assert!(len >= head.len() + body.len());
    pages.clear();
    pages.resize(len.div_ceil(PAGE).max(1), ZERO_PAGE);
    let out = page_bytes(pages);
    out[..head.len()].copy_from_slice(head);
    out[head.len()..head.len() + body.len()].copy_from_slice(body);
    out
}

fn round_up_page(n: u64) -> u64 {
    n.div_ceil(PAGE as u64) * PAGE as u64
}

/// Opens (creating and truncating) a log file for writing, with `O_DIRECT` when `direct`.
fn open_log_file(path: &Path, direct: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

/// Whether `O_DIRECT` page writes work in `dir` (tmpfs and some FUSE filesystems refuse them).
fn direct_io_works(dir: &Path) -> bool {
    let probe = dir.join(".zkd-direct-probe");
    let ok = open_log_file(&probe, true)
        .and_then(|f| {
            let mut page = vec![ZERO_PAGE];
            f.write_all_at(page_bytes(&mut page), 0)
        })
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
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

/// Smallest spare file.
const SPARE_MIN_BYTES: u64 = 4 << 20;

/// Spares are only prepared while the disk has this many times `pre_alloc_size_bytes` free, so
/// the spare never takes the space the current log needs.
const SPARE_FREE_SPACE_FACTOR: u64 = 4;

/// A spare is written in steps of this size, with a pause after each (so at most
/// `SPARE_STEP_BYTES / SPARE_STEP_PAUSE` = 64 MB/s), unless told to hurry.
const SPARE_STEP_BYTES: usize = 256 << 10;
const SPARE_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(4);

/// A spare being prepared: its thread, and the flag that makes it skip the pauses.
struct Spare {
    join: JoinHandle<io::Result<File>>,
    hurry: Arc<AtomicBool>,
}

/// Lowers the calling thread's CPU priority to the minimum (nice 19): background work that must
/// not take the core from the shards, the sequencer or the log writer.
pub(crate) fn lower_thread_priority() {
    // SAFETY: plain syscalls on the calling thread; failure only leaves the priority unchanged.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// Creates `path` as `size` bytes of zeros, synced, paced unless `hurry` is set. Removes it
/// again on failure. With `direct`, the file is opened `O_DIRECT` (the log writer keeps that
/// descriptor) and `size` must be a multiple of `PAGE`.
fn prepare_spare(path: &Path, size: u64, hurry: &AtomicBool, direct: bool) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    debug_assert!(!direct || size.is_multiple_of(PAGE as u64), "O_DIRECT spare of {size} bytes");
    lower_thread_priority();
    let res = (|| {
        let file = open_log_file(path, direct)?;
        let mut pages = vec![ZERO_PAGE; SPARE_STEP_BYTES / PAGE];
        let zeros = page_bytes(&mut pages);
        let zeros = &zeros[..SPARE_STEP_BYTES.min(size as usize)];
        let mut at = 0;
        while at < size {
            let n = zeros.len().min((size - at) as usize);
            file.write_all_at(&zeros[..n], at)?;
            if !direct {
                // Start this step's writeback now, so the final sync has little left to flush.
                // SAFETY: a valid fd and range; the call only schedules writeback.
                unsafe {
                    libc::sync_file_range(file.as_raw_fd(), at as i64, n as i64, libc::SYNC_FILE_RANGE_WRITE);
                }
            }
            at += n as u64;
            if !hurry.load(Ordering::Relaxed) {
                std::thread::sleep(SPARE_STEP_PAUSE);
            }
        }
        file.sync_data()?;
        Ok(file)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(path);
    }
    res
}

/// Free bytes on the filesystem holding `dir` (None if unknown).
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
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

/// A txn shared between the sequencer (which applies it once durable) and the writer (which
/// encodes it): no copy of its path and data per write.
pub type SharedTxn = Arc<LoggedTxn>;

enum Cmd {
    Append(Vec<SharedTxn>),
    Roll,
    RollSoon,
    Resume,
    Shutdown,
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
            if opts.write_path == WritePath::Direct && !direct_io_works(&dir) {
                tracing::info!(
                    dir = %dir.display(),
                    "this filesystem refuses O_DIRECT: the transaction log uses buffered pwrite + fdatasync"
                );
                opts.write_path = WritePath::Pwrite;
            }
            let mut w = Worker {
                dir,
                opts,
                current: None,
                buf: Vec::new(),
                pages: Vec::new(),
                buf_first_zxid: None,
                buf_last_zxid: 0,
                buf_txns: 0,
                last_written_zxid: None,
                last_durable_zxid: None,
                unsynced_bytes: 0,
                unsynced_txns: 0,
                no_space: false,
                spare: None,
                last_file_bytes: None,
                roll_wanted: false,
                stats: st,
                on_durable,
                on_error,
            };
            w.start_spare();
            w.run(rx);
            w.discard_spare();
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
    /// Whether the queue has no room: a caller that must not block (the sequencer) then holds
    /// its next command back. With one producer, "not full" means the next send cannot wait.
    pub fn is_full(&self) -> bool {
        self.tx.is_full()
    }
    fn send_ctl(&self, c: Cmd) -> Result<(), AppendError> {
        // Control commands wait for room: they are rare and must not be lost.
        self.tx.send(c).map_err(|_| AppendError::Stopped(Vec::new()))
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

impl Drop for LogHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

struct ActiveFile {
    path: PathBuf,
    file: File,
    map: Option<MmapMut>,
    /// End of the data written (next entry goes here).
    pos_bytes: u64,
    /// Bytes preallocated (file length).
    size_bytes: u64,
    /// Start of the region written since the last sync.
    dirty_from_bytes: u64,
    /// `WritePath::Direct`: the bytes of the last, partial page (from its start to `pos_bytes`),
    /// written again in front of the next group.
    tail: Vec<u8>,
}

struct Worker {
    dir: PathBuf,
    opts: LogOptions,
    current: Option<ActiveFile>,
    /// Encoded entries of the group not yet written.
    buf: Vec<u8>,
    /// `WritePath::Direct`: the page-aligned buffer a group is composed in.
    pages: Vec<Page>,
    buf_first_zxid: Option<i64>,
    buf_last_zxid: i64,
    buf_txns: u64,
    last_written_zxid: Option<i64>,
    last_durable_zxid: Option<i64>,
    unsynced_bytes: u64,
    /// Txns written since the last sync.
    unsynced_txns: u64,
    no_space: bool,
    /// The next file, being prepared (or ready) on a helper thread.
    spare: Option<Spare>,
    /// Bytes the last closed file held (sizes the next spare).
    last_file_bytes: Option<u64>,
    /// A `roll_soon` waits for the spare.
    roll_wanted: bool,
    stats: Arc<Mutex<LogStats>>,
    on_durable: OnDurable,
    on_error: OnError,
}

/// Fatal or not: stops the group.
enum Failed {
    Fatal(LogWriteError),
    NoSpace(io::Error, PathBuf),
}

fn is_enospc(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

impl Worker {
    fn run(&mut self, rx: Receiver<Cmd>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            let mut group_bytes = 0usize;
            while group_bytes < self.opts.group_max_bytes {
                match rx.try_recv() {
                    Ok(c) => {
                        if let Cmd::Append(t) = &c {
                            group_bytes += t.len() * 64;
                        }
                        let stop = matches!(c, Cmd::Shutdown);
                        group.push(c);
                        if stop {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            let mut shutdown = false;
            let mut result = Ok(());
            if self.roll_wanted && self.spare.as_ref().is_none_or(|h| h.join.is_finished()) {
                self.roll_wanted = false;
                result = self.roll();
            }
            for cmd in group {
                if result.is_err() {
                    break;
                }
                result = match cmd {
                    Cmd::Append(txns) => self.stage(txns),
                    Cmd::Roll => {
                        self.roll_wanted = false;
                        self.roll()
                    }
                    Cmd::RollSoon => {
                        self.roll_wanted = true;
                        Ok(())
                    }
                    Cmd::Resume => {
                        self.no_space = false;
                        Ok(())
                    }
                    Cmd::Shutdown => {
                        shutdown = true;
                        break;
                    }
                };
            }
            if result.is_ok() {
                result = self.flush_and_sync();
            }
            match result {
                Ok(()) => {}
                Err(Failed::Fatal(e)) => {
                    tracing::error!("{e}");
                    (self.on_error)(e);
                    return;
                }
                Err(Failed::NoSpace(source, path)) => match self.reject_after_enospc(source, path) {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!("{e}");
                        (self.on_error)(e);
                        return;
                    }
                },
            }
            if shutdown {
                return;
            }
        }
        // All handles dropped: everything received has been written and synced.
    }

    /// Encodes a batch into the group buffer, rolling first if the size limit says so.
    fn stage(&mut self, txns: Vec<SharedTxn>) -> Result<(), Failed> {
        if self.no_space {
            let (first, last) = (txns[0].hdr.zxid, txns[txns.len() - 1].hdr.zxid);
            let path = self.current.as_ref().map(|f| f.path.clone()).unwrap_or_else(|| self.dir.clone());
            (self.on_error)(LogWriteError::NoSpace {
                path,
                last_durable_zxid: self.last_durable_zxid.unwrap_or(0),
                first_rejected_zxid: first,
                last_rejected_zxid: last,
                source: io::Error::from_raw_os_error(libc::ENOSPC),
            });
            return Ok(());
        }
        if let Some(limit) = self.opts.log_size_limit_bytes {
            // Bytes the current file holds once the pending group is written (ZooKeeper rolls
            // before appending once the file exceeds `txnLogSizeLimit`).
            let written = self.current.as_ref().map_or(0, |f| f.pos_bytes);
            let pending = self.buf.len() as u64;
            let header = if self.current.is_none() && pending > 0 { FILE_HEADER_LEN_BYTES as u64 } else { 0 };
            if written + header + pending >= limit {
                self.roll()?;
            }
        }
        for t in &txns {
            if let Some(prev) = self.buf_first_zxid.map(|_| self.buf_last_zxid).or(self.last_written_zxid) {
                debug_assert!(t.hdr.zxid > prev, "zxids must ascend: 0x{:x} after 0x{prev:x}", t.hdr.zxid);
            }
            encode_txn_entry(t, &mut self.buf);
            self.buf_first_zxid.get_or_insert(t.hdr.zxid);
            self.buf_last_zxid = t.hdr.zxid;
            self.buf_txns += 1;
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), Failed> {
        self.flush_and_sync()?;
        if let Some(f) = self.current.take() {
            tracing::info!(file = %f.path.display(), bytes = f.pos_bytes, "rolled transaction log");
            self.last_file_bytes = Some(f.pos_bytes);
        }
        Ok(())
    }

    /// Writes the group buffer (opening/extending the file as needed), syncs once, reports.
    fn flush_and_sync(&mut self) -> Result<(), Failed> {
        self.write_buf()?;
        if self.unsynced_bytes > 0 {
            if self.opts.force_sync {
                self.sync()?;
            } else {
                self.unsynced_bytes = 0;
                self.unsynced_txns = 0;
                if let Some(f) = &mut self.current {
                    f.dirty_from_bytes = f.pos_bytes;
                }
            }
            if self.last_written_zxid > self.last_durable_zxid {
                self.last_durable_zxid = self.last_written_zxid;
                (self.on_durable)(self.last_written_zxid.expect("written"));
            }
        }
        Ok(())
    }

    /// Starts preparing the next file unless one is under way or the disk is too full for it.
    fn start_spare(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let max = self.opts.pre_alloc_size_bytes;
        let direct = self.opts.write_path == WritePath::Direct;
        let mut size = self
            .last_file_bytes
            .map_or(max, |b| (b.saturating_mul(5) / 4).clamp(SPARE_MIN_BYTES.min(max), max));
        if direct {
            size = round_up_page(size);
        }
        if free_bytes(&self.dir).is_some_and(|free| free < size.saturating_mul(SPARE_FREE_SPACE_FACTOR)) {
            return;
        }
        let path = self.dir.join(SPARE_NAME);
        let hurry = Arc::new(AtomicBool::new(false));
        let flag = hurry.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-prealloc", self.opts.thread_name))
            .spawn(move || prepare_spare(&path, size, &flag, direct));
        match spawned {
            Ok(join) => self.spare = Some(Spare { join, hurry }),
            Err(e) => tracing::warn!("cannot start the log preallocation thread: {e}"),
        }
    }

    /// Takes the prepared spare (waiting for it if it is still being written).
    fn take_spare(&mut self) -> Option<File> {
        let h = self.spare.take()?;
        h.hurry.store(true, Ordering::Relaxed);
        match h.join.join() {
            Ok(Ok(f)) => Some(f),
            Ok(Err(e)) => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    "could not preallocate the next transaction log ({e}); zero-filling inline"
                );
                None
            }
            Err(_) => None,
        }
    }

    fn discard_spare(&mut self) {
        if let Some(h) = self.spare.take() {
            h.hurry.store(true, Ordering::Relaxed);
            let _ = h.join.join();
        }
    }

    fn open_new(&mut self, first_zxid: i64) -> Result<(), Failed> {
        let path = self.dir.join(log_file_name(first_zxid));
        let fatal = |op, path: &Path, source| {
            Failed::Fatal(LogWriteError::Fatal { op, path: path.to_owned(), source })
        };
        // A file of this name can only hold txns >= first_zxid, which recovery did not accept
        // (or it would not be our next zxid): replacing it is safe.
        let spare = self.take_spare().and_then(|f| {
            let len = f.metadata().ok()?.len();
            match std::fs::rename(self.dir.join(SPARE_NAME), &path) {
                Ok(()) => Some((f, len)),
                Err(e) => {
                    tracing::warn!("cannot take the preallocated log file: {e}");
                    None
                }
            }
        });
        let direct = self.opts.write_path == WritePath::Direct;
        let (file, mut size_bytes) = match spare {
            Some(x) => x,
            None => {
                let f = open_log_file(&path, direct).map_err(|e| {
                    if is_enospc(&e) {
                        Failed::NoSpace(e, path.clone())
                    } else {
                        fatal("create", &path, e)
                    }
                })?;
                (f, 0)
            }
        };
        let hdr = FileHeader::txnlog().to_bytes();
        let res = if direct {
            // The header's page, whole; the bytes after the header stay in `tail`.
            let page = compose_pages(&mut self.pages, &hdr, &[], PAGE);
            size_bytes = size_bytes.max(PAGE as u64);
            file.write_all_at(page, 0)
        } else {
            file.write_all_at(&hdr, 0)
        };
        res.map_err(|e| {
            if is_enospc(&e) {
                Failed::NoSpace(e, path.clone())
            } else {
                fatal("write header", &path, e)
            }
        })?;
        // Make the new name durable.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fatal("fsync directory", &self.dir, e))?;
        self.current = Some(ActiveFile {
            path,
            file,
            map: None,
            pos_bytes: FILE_HEADER_LEN_BYTES as u64,
            size_bytes: size_bytes.max(FILE_HEADER_LEN_BYTES as u64),
            dirty_from_bytes: 0,
            tail: if direct { hdr.to_vec() } else { Vec::new() },
        });
        self.stats.lock().files_created += 1;
        if size_bytes > 0 && self.opts.write_path == WritePath::Mmap {
            self.map_current()?;
        }
        // The header's sync rides on the first group's sync.
        self.start_spare();
        Ok(())
    }

    fn map_current(&mut self) -> Result<(), Failed> {
        let f = self.current.as_mut().expect("open file");
        f.map = None;
        // SAFETY: the mapping covers exactly the file's preallocated length; only this thread
        // writes the file while the log is active, and nobody truncates it under us.
        let map = unsafe { MmapMut::map_mut(&f.file) }.map_err(|e| {
            Failed::Fatal(LogWriteError::Fatal { op: "mmap", path: f.path.clone(), source: e })
        })?;
        f.map = Some(map);
        Ok(())
    }

    /// Extends the file with zeros so that `end` plus 4 KiB fits (ZooKeeper pads when
    /// `position + 4096 >= currentSize`), in `pre_alloc_size_bytes` steps.
    fn ensure_capacity(&mut self, end: u64) -> Result<(), Failed> {
        let direct = self.opts.write_path == WritePath::Direct;
        // O_DIRECT extends in whole pages (and the file's size stays a multiple of PAGE).
        let step = if direct {
            round_up_page(self.opts.pre_alloc_size_bytes)
        } else {
            self.opts.pre_alloc_size_bytes
        };
        let use_map = self.opts.write_path == WritePath::Mmap;
        let f = self.current.as_mut().expect("open file");
        if end + 4096 < f.size_bytes {
            return Ok(());
        }
        debug_assert!(
            !direct || f.size_bytes.is_multiple_of(PAGE as u64),
            "O_DIRECT file of {} bytes",
            f.size_bytes
        );
        let new_size = (end + 4096).div_ceil(step) * step;
        let mut pages = vec![ZERO_PAGE; (1 << 20) / PAGE];
        let zeros = page_bytes(&mut pages);
        let zeros = &zeros[..(1 << 20).min((new_size - f.size_bytes) as usize)];
        let mut at = f.size_bytes;
        while at < new_size {
            let n = zeros.len().min((new_size - at) as usize);
            if let Err(e) = f.file.write_all_at(&zeros[..n], at) {
                if is_enospc(&e) {
                    // Give the space back; nothing of the group was written yet.
                    let _ = f.file.set_len(f.size_bytes);
                    return Err(Failed::NoSpace(e, f.path.clone()));
                }
                return Err(Failed::Fatal(LogWriteError::Fatal {
                    op: "preallocate",
                    path: f.path.clone(),
                    source: e,
                }));
            }
            at += n as u64;
        }
        f.size_bytes = new_size;
        if use_map {
            self.map_current()?;
        }
        Ok(())
    }

    fn write_buf(&mut self) -> Result<(), Failed> {
        let Some(first_zxid) = self.buf_first_zxid else { return Ok(()) };
        let len = self.buf.len() as u64;
        // A full file rolls to the prepared spare rather than growing inline (the group starts
        // at `first_zxid`, so it can open the next file). Everything before it is synced
        // (each group syncs), or sync is off.
        let full = self.current.as_ref().is_some_and(|f| f.pos_bytes + len + 4096 >= f.size_bytes);
        let fits_fresh = len + FILE_HEADER_LEN_BYTES as u64 + 4096 < self.opts.pre_alloc_size_bytes;
        if full && fits_fresh && self.spare.is_some() {
            let f = self.current.take().expect("checked");
            self.last_file_bytes = Some(f.pos_bytes);
            debug_assert!(!self.opts.force_sync || f.dirty_from_bytes == f.pos_bytes, "rolled unsynced data");
            tracing::debug!(file = %f.path.display(), bytes = f.pos_bytes, "log file full, rolling to the preallocated next file");
        }
        if self.current.is_none() {
            self.open_new(first_zxid)?;
        }
        let start = self.current.as_ref().expect("open").pos_bytes;
        self.ensure_capacity(start + len)?;
        let direct = self.opts.write_path == WritePath::Direct;
        let f = self.current.as_mut().expect("open");
        let res = match &mut f.map {
            Some(map) => {
                map[start as usize..(start + len) as usize].copy_from_slice(&self.buf);
                Ok(())
            }
            None if direct => {
                // [tail of the last page | the group | zeros to the page end], from the last
                // page's start. The tail's bytes are already durable and rewritten unchanged,
                // so a torn write of that page leaves them intact.
                let page_start = start - f.tail.len() as u64;
                debug_assert_eq!(page_start % PAGE as u64, 0, "tail does not end at pos");
                let used = f.tail.len() + self.buf.len();
                let out = compose_pages(&mut self.pages, &f.tail, &self.buf, used);
                let res = f.file.write_all_at(out, page_start);
                if res.is_ok() {
                    f.tail.clear();
                    f.tail.extend_from_slice(&out[used / PAGE * PAGE..used]);
                }
                res
            }
            None => f.file.write_all_at(&self.buf, start),
        };
        if let Err(e) = res {
            if is_enospc(&e) {
                // Leave nothing of the failed group behind: zero what may have landed.
                let res = if direct {
                    // The pages it covered, as they were: the old tail, then zeros.
                    let page_start = start - f.tail.len() as u64;
                    let out = compose_pages(&mut self.pages, &f.tail, &[], f.tail.len() + len as usize);
                    f.file.write_all_at(out, page_start)
                } else {
                    f.file.write_all_at(&vec![0u8; len as usize], start)
                };
                res.and_then(|_| f.file.sync_data()).map_err(|e2| {
                    Failed::Fatal(LogWriteError::Fatal {
                        op: "zero after ENOSPC",
                        path: f.path.clone(),
                        source: e2,
                    })
                })?;
                return Err(Failed::NoSpace(e, f.path.clone()));
            }
            return Err(Failed::Fatal(LogWriteError::Fatal { op: "write", path: f.path.clone(), source: e }));
        }
        f.pos_bytes = start + len;
        self.unsynced_bytes += len;
        self.unsynced_txns += self.buf_txns;
        self.last_written_zxid = Some(self.buf_last_zxid);
        {
            let mut s = self.stats.lock();
            s.txns_written += self.buf_txns;
            s.bytes_written += len;
        }
        self.buf.clear();
        self.buf_first_zxid = None;
        self.buf_txns = 0;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Failed> {
        let f = self.current.as_mut().expect("sync needs an open file");
        let t0 = Instant::now();
        let res = match &f.map {
            Some(map) => {
                let from = f.dirty_from_bytes as usize;
                map.flush_range(from, f.pos_bytes as usize - from)
            }
            None => f.file.sync_data(),
        };
        let took = t0.elapsed();
        res.map_err(|e| {
            Failed::Fatal(LogWriteError::Fatal { op: "fsync", path: f.path.clone(), source: e })
        })?;
        let took_ms = took.as_millis() as u64;
        if took_ms > self.opts.fsync_warning_threshold_ms {
            tracing::warn!(
                bytes_synced = self.unsynced_bytes,
                "fsync-ing the write ahead log in {} took {}ms which will adversely effect operation latency. \
                 File size is {} bytes. See the ZooKeeper troubleshooting guide ({} bytes written in this sync)",
                self.opts.thread_name,
                took_ms,
                f.size_bytes,
                self.unsynced_bytes
            );
        }
        f.dirty_from_bytes = f.pos_bytes;
        self.unsynced_bytes = 0;
        let txns = std::mem::take(&mut self.unsynced_txns);
        let mut s = self.stats.lock();
        s.syncs += 1;
        s.fsync_us.saturating_record(took.as_micros().max(1) as u64);
        s.sync_batch_txns.saturating_record(txns.max(1));
        Ok(())
    }

    /// After ENOSPC: drop the unwritten group, tell the caller, refuse until `resume()`.
    fn reject_after_enospc(&mut self, source: io::Error, path: PathBuf) -> Result<(), LogWriteError> {
        let first = self.buf_first_zxid.unwrap_or(self.buf_last_zxid);
        let last = self.buf_last_zxid;
        self.buf.clear();
        self.buf_first_zxid = None;
        self.buf_txns = 0;
        self.no_space = true;
        // A file created for this group that holds nothing is left as a header-only file; the
        // next append (with the same or a later first zxid) replaces or follows it.
        tracing::error!(file = %path.display(), "no space left on device; refusing writes until resumed");
        (self.on_error)(LogWriteError::NoSpace {
            path,
            last_durable_zxid: self.last_durable_zxid.unwrap_or(0),
            first_rejected_zxid: first,
            last_rejected_zxid: last,
            source,
        });
        Ok(())
    }
}
