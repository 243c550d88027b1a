//! memcpy into a shared mapping of the preallocated file, then `msync(MS_SYNC)` of the range
//! written since the last sync.

use super::backend::{open_log_file, Backend};
use memmap2::MmapMut;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(super) struct Mmap {
    file: File,
    /// The whole preallocated file, mapped once it has been preallocated (None before: a fresh
    /// file is mapped when it first grows; until then it is written and synced as by `pwrite`).
    map: Option<MmapMut>,
}

impl Backend for Mmap {
    const BUFFERED: bool = true;

    fn open(path: &Path) -> io::Result<File> {
        open_log_file(path, false)
    }

    fn start(file: File, header: &[u8], size_bytes: u64) -> io::Result<(Self, u64)> {
        file.write_all_at(header, 0)?;
        Ok((Mmap { file, map: None }, size_bytes))
    }

    fn file(&self) -> &File {
        &self.file
    }

    fn resized(&mut self) -> io::Result<()> {
        self.map = None;
        // SAFETY: the mapping covers exactly the file's preallocated length; only this thread
        // writes the file while the log is active, and nobody truncates it under us.
        self.map = Some(unsafe { MmapMut::map_mut(&self.file) }?);
        Ok(())
    }

    fn write(&mut self, at: u64, group: &[u8]) -> io::Result<()> {
        match &mut self.map {
            Some(map) => {
                map[at as usize..at as usize + group.len()].copy_from_slice(group);
                Ok(())
            }
            None => self.file.write_all_at(group, at),
        }
    }

    fn unwrite(&mut self, at: u64, len: usize) -> io::Result<()> {
        self.file.write_all_at(&vec![0u8; len], at)
    }

    fn sync(&mut self, from: u64, to: u64) -> io::Result<()> {
        match &self.map {
            Some(map) => map.flush_range(from as usize, to as usize - from as usize),
            None => self.file.sync_data(),
        }
    }
}
