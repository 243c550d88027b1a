//! The one thing the three write paths do differently: how a group's bytes reach an open log file
//! and how they are made durable. The group-commit thread (`worker`) is generic over it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// An open log file as one write path writes it: the file, and what the path keeps with it (the
/// mapping for mmap, the last partial page for O_DIRECT). One implementation per
/// [`super::WritePath`]: [`super::direct::Direct`], [`super::pwrite::Pwrite`],
/// [`super::mmap::Mmap`].
pub(super) trait Backend: Sized + Send + 'static {
    /// Whether writes go through the page cache: the spare's zero-fill then starts each step's
    /// writeback as it goes, so that its final sync has little left to flush.
    const BUFFERED: bool;

    /// Opens (creating and truncating) a file as this path writes it: a log file or the spare.
    fn open(path: &Path) -> io::Result<File>;

    /// `n` rounded up to the unit this path writes in (file sizes stay multiples of it).
    fn round_size(n: u64) -> u64 {
        n
    }

    /// Starts a log file in `file` (fresh, or a preallocated spare of `size_bytes`): writes the
    /// file header at offset 0. Returns the open file and its preallocated size as this path
    /// sees it.
    fn start(file: File, header: &[u8], size_bytes: u64) -> io::Result<(Self, u64)>;

    /// The file itself (to preallocate into, and to sync after `unwrite`).
    fn file(&self) -> &File;

    /// The file's preallocated length changed (a spare was taken, or the file grew).
    fn resized(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Writes a group's bytes at `at`, the end of the data so far.
    fn write(&mut self, at: u64, group: &[u8]) -> io::Result<()>;

    /// After `write(at, group)` failed with `len = group.len()`: puts back what it may have
    /// changed (zeros; for O_DIRECT, the last page's earlier bytes then zeros). The caller syncs.
    fn unwrite(&mut self, at: u64, len: usize) -> io::Result<()>;

    /// Makes the bytes `from..to` (written since the last sync) durable.
    fn sync(&mut self, from: u64, to: u64) -> io::Result<()>;
}

/// Opens (creating and truncating) a log file for writing, with `O_DIRECT` when `direct`.
pub(super) fn open_log_file(path: &Path, direct: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}
