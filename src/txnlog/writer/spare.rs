//! The next log file, prepared on a helper thread while the current one fills: zero-filled at the
//! lowest CPU priority, paced, synced (see the `writer` module's notes).

use super::backend::Backend;
use super::direct::{page_bytes, PAGE, ZERO_PAGE};
use super::lower_thread_priority;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Smallest spare file.
pub(super) const SPARE_MIN_BYTES: u64 = 4 << 20;

/// Spares are only prepared while the disk has this many times `pre_alloc_size_bytes` free, so
/// the spare never takes the space the current log needs.
pub(super) const SPARE_FREE_SPACE_FACTOR: u64 = 4;

/// A spare is written in steps of this size, with a pause after each (so at most
/// `SPARE_STEP_BYTES / SPARE_STEP_PAUSE` = 64 MB/s), unless told to hurry.
const SPARE_STEP_BYTES: usize = 256 << 10;
const SPARE_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(4);

/// A spare being prepared: its thread, and the flag that makes it skip the pauses.
pub(super) struct Spare {
    pub(super) join: JoinHandle<io::Result<File>>,
    pub(super) hurry: Arc<AtomicBool>,
}

/// Creates `path` as `size` bytes of zeros, synced, paced unless `hurry` is set. Removes it
/// again on failure. The file is opened as `B` writes it (`O_DIRECT` for direct: the log writer
/// keeps that descriptor), and `size` must be a multiple of `B`'s unit (`PAGE` for direct).
pub(super) fn prepare<B: Backend>(path: &Path, size: u64, hurry: &AtomicBool) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    assert_eq!(B::round_size(size), size, "spare of {size} bytes is not in whole units of its write path");
    lower_thread_priority();
    let res = (|| {
        let file = B::open(path)?;
        let mut pages = vec![ZERO_PAGE; SPARE_STEP_BYTES / PAGE];
        let zeros = page_bytes(&mut pages);
        let zeros = &zeros[..SPARE_STEP_BYTES.min(size as usize)];
        let mut at = 0;
        while at < size {
            let n = zeros.len().min((size - at) as usize);
            file.write_all_at(&zeros[..n], at)?;
            if B::BUFFERED {
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
pub(super) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}
