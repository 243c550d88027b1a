//! `pwrite` into the preallocated file, then `fdatasync`.

use super::backend::{open_log_file, Backend};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(super) struct Pwrite {
    file: File,
}

impl Backend for Pwrite {
    const BUFFERED: bool = true;

    fn open(path: &Path) -> io::Result<File> {
        open_log_file(path, false)
    }

    fn start(file: File, header: &[u8], size_bytes: u64) -> io::Result<(Self, u64)> {
        file.write_all_at(header, 0)?;
        Ok((Pwrite { file }, size_bytes))
    }

    fn file(&self) -> &File {
        &self.file
    }

    fn write(&mut self, at: u64, group: &[u8]) -> io::Result<()> {
        self.file.write_all_at(group, at)
    }

    fn unwrite(&mut self, at: u64, len: usize) -> io::Result<()> {
        self.file.write_all_at(&vec![0u8; len], at)
    }

    fn sync(&mut self, _from: u64, _to: u64) -> io::Result<()> {
        self.file.sync_data()
    }
}
