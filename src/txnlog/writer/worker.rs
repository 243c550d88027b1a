//! The group-commit thread: blocks for the first command, drains what else arrived, writes the
//! group with one write through its [`Backend`] and makes it durable with one sync, then reports
//! `on_durable`. Rolls, the spare, and the failure policy (see the `writer` module) live here;
//! how bytes reach the file does not.

use super::backend::Backend;
use super::direct::{page_bytes, PAGE, ZERO_PAGE};
use super::spare::{self, free_bytes, Spare, SPARE_FREE_SPACE_FACTOR, SPARE_MIN_BYTES};
use super::{Cmd, LogOptions, LogStats, LogWriteError, OnDurable, OnError, SharedTxn, SPARE_NAME};
use crate::txnlog::format::{encode_txn_entry, log_file_name, FileHeader, FILE_HEADER_LEN_BYTES};
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Runs the writer on the calling thread until shutdown (or until every handle is dropped, or a
/// fatal error), writing through `B`.
pub(super) fn run<B: Backend>(
    dir: PathBuf,
    opts: LogOptions,
    stats: Arc<Mutex<LogStats>>,
    on_durable: OnDurable,
    on_error: OnError,
    rx: Receiver<Cmd>,
) {
    let mut w = Worker::<B> {
        dir,
        opts,
        current: None,
        buf: Vec::new(),
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
        stats,
        on_durable,
        on_error,
    };
    w.start_spare();
    w.run(rx);
    w.discard_spare();
}

struct ActiveFile<B> {
    path: PathBuf,
    /// The file, as its write path writes it.
    io: B,
    /// End of the data written (next entry goes here).
    pos_bytes: u64,
    /// Bytes preallocated (file length).
    size_bytes: u64,
    /// Start of the region written since the last sync.
    dirty_from_bytes: u64,
}

struct Worker<B> {
    dir: PathBuf,
    opts: LogOptions,
    current: Option<ActiveFile<B>>,
    /// Encoded entries of the group not yet written.
    buf: Vec<u8>,
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

impl<B: Backend> Worker<B> {
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
                    Cmd::Truncate(t) => self.truncate(t),
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
                assert!(t.hdr.zxid > prev, "zxids must ascend: 0x{:x} after 0x{prev:x}", t.hdr.zxid);
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

    /// Writes and syncs what came before, closes the current file, then truncates the files (a
    /// failure is answered to the caller, for whom it is fatal; the writer goes on).
    fn truncate(&mut self, t: super::TruncateCmd) -> Result<(), Failed> {
        self.flush_and_sync()?;
        if let Some(f) = self.current.take() {
            self.last_file_bytes = Some(f.pos_bytes);
        }
        let r = crate::txnlog::truncate::truncate_logs(&self.dir, t.zxid, t.max_txn_bytes, t.mode);
        if r.is_ok() {
            // The next append continues after the target (a new epoch's zxid, or the next
            // after a snapshot), in a new file.
            self.last_written_zxid = self.last_written_zxid.map(|z| z.min(t.zxid));
            self.last_durable_zxid = self.last_durable_zxid.map(|z| z.min(t.zxid));
        }
        let _ = t.reply.send(r);
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
        let size = B::round_size(
            self.last_file_bytes
                .map_or(max, |b| (b.saturating_mul(5) / 4).clamp(SPARE_MIN_BYTES.min(max), max)),
        );
        if free_bytes(&self.dir).is_some_and(|free| free < size.saturating_mul(SPARE_FREE_SPACE_FACTOR)) {
            return;
        }
        let path = self.dir.join(SPARE_NAME);
        let hurry = Arc::new(AtomicBool::new(false));
        let flag = hurry.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-prealloc", self.opts.thread_name))
            .spawn(move || spare::prepare::<B>(&path, size, &flag));
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
        let (file, size_bytes) = match spare {
            Some(x) => x,
            None => {
                let f = B::open(&path).map_err(|e| {
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
        let (io, size_bytes) = B::start(file, &hdr, size_bytes).map_err(|e| {
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
            io,
            pos_bytes: FILE_HEADER_LEN_BYTES as u64,
            size_bytes: size_bytes.max(FILE_HEADER_LEN_BYTES as u64),
            dirty_from_bytes: 0,
        });
        self.stats.lock().files_created += 1;
        if size_bytes > 0 {
            self.resized_current()?;
        }
        // The header's sync rides on the first group's sync.
        self.start_spare();
        Ok(())
    }

    /// Tells the write path the current file's preallocated length changed (mmap maps it anew:
    /// the one path for which this can fail).
    fn resized_current(&mut self) -> Result<(), Failed> {
        let f = self.current.as_mut().expect("open file");
        f.io.resized()
            .map_err(|e| Failed::Fatal(LogWriteError::Fatal { op: "mmap", path: f.path.clone(), source: e }))
    }

    /// Extends the file with zeros so that `end` plus 4 KiB fits (ZooKeeper pads when
    /// `position + 4096 >= currentSize`), in `pre_alloc_size_bytes` steps.
    fn ensure_capacity(&mut self, end: u64) -> Result<(), Failed> {
        // O_DIRECT extends in whole pages (and the file's size stays a multiple of PAGE).
        let step = B::round_size(self.opts.pre_alloc_size_bytes);
        let f = self.current.as_mut().expect("open file");
        if end + 4096 < f.size_bytes {
            return Ok(());
        }
        assert_eq!(
            B::round_size(f.size_bytes),
            f.size_bytes,
            "a file of {} bytes is not in whole units of its write path",
            f.size_bytes
        );
        let new_size = (end + 4096).div_ceil(step) * step;
        let mut pages = vec![ZERO_PAGE; (1 << 20) / PAGE];
        let zeros = page_bytes(&mut pages);
        let zeros = &zeros[..(1 << 20).min((new_size - f.size_bytes) as usize)];
        let mut at = f.size_bytes;
        while at < new_size {
            let n = zeros.len().min((new_size - at) as usize);
            if let Err(e) = f.io.file().write_all_at(&zeros[..n], at) {
                if is_enospc(&e) {
                    // Give the space back; nothing of the group was written yet.
                    let _ = f.io.file().set_len(f.size_bytes);
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
        self.resized_current()
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
            assert!(!self.opts.force_sync || f.dirty_from_bytes == f.pos_bytes, "rolled unsynced data");
            tracing::debug!(file = %f.path.display(), bytes = f.pos_bytes, "log file full, rolling to the preallocated next file");
        }
        if self.current.is_none() {
            self.open_new(first_zxid)?;
        }
        let start = self.current.as_ref().expect("open").pos_bytes;
        self.ensure_capacity(start + len)?;
        let f = self.current.as_mut().expect("open");
        if let Err(e) = f.io.write(start, &self.buf) {
            if is_enospc(&e) {
                // Leave nothing of the failed group behind: zero what may have landed.
                f.io.unwrite(start, len as usize).and_then(|_| f.io.file().sync_data()).map_err(|e2| {
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
        let res = f.io.sync(f.dirty_from_bytes, f.pos_bytes);
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
