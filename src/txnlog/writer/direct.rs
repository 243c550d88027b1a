//! Whole 4 KiB pages written with `O_DIRECT` into the zero-filled preallocated file, then
//! `fdatasync` (which then has no page cache to write back and only flushes the device). The last
//! partial page is kept in memory and written again, unchanged, in front of the next group.
//! Also the page-aligned buffers every zero-fill uses (a file opened `O_DIRECT` takes no other).

use super::backend::{open_log_file, Backend};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The unit of `O_DIRECT` writes: offsets, lengths and buffer addresses are multiples of it
/// (4 KiB covers both 512-byte and 4 KiB logical block sizes).
pub(super) const PAGE: usize = 4096;

/// One page-aligned page: a `Vec<Page>` is a page-aligned buffer for `O_DIRECT`.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
pub(super) struct Page([u8; PAGE]);

pub(super) const ZERO_PAGE: Page = Page([0; PAGE]);

/// The bytes of `pages`, as one slice.
pub(super) fn page_bytes(pages: &mut [Page]) -> &mut [u8] {
    // SAFETY: `Page` is a plain byte array with no padding (size == PAGE), so `len` pages are
    // exactly `len * PAGE` initialised bytes, borrowed mutably for the slice's lifetime.
    unsafe { std::slice::from_raw_parts_mut(pages.as_mut_ptr().cast::<u8>(), pages.len() * PAGE) }
}

/// `pages` resized to hold `head`, then `body`, then zeros up to `len` rounded up to a page;
/// returns those bytes (what one `O_DIRECT` write sends).
fn compose_pages<'a>(pages: &'a mut Vec<Page>, head: &[u8], body: &[u8], len: usize) -> &'a mut [u8] {
    assert!(len >= head.len() + body.len(), "{len} bytes cannot hold {} + {}", head.len(), body.len());
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

/// Whether `O_DIRECT` page writes work in `dir` (tmpfs and some FUSE filesystems refuse them).
pub(super) fn works_in(dir: &Path) -> bool {
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

pub(super) struct Direct {
    file: File,
    /// The page-aligned buffer a group is composed in.
    pages: Vec<Page>,
    /// The bytes of the last, partial page (from its start to the end of the data), written
    /// again in front of the next group.
    tail: Vec<u8>,
}

impl Backend for Direct {
    const BUFFERED: bool = false;

    fn open(path: &Path) -> io::Result<File> {
        open_log_file(path, true)
    }

    /// O_DIRECT extends in whole pages (and the file's size stays a multiple of PAGE).
    fn round_size(n: u64) -> u64 {
        round_up_page(n)
    }

    fn start(file: File, header: &[u8], size_bytes: u64) -> io::Result<(Self, u64)> {
        // The header's page, whole; the bytes after the header stay in `tail`.
        let mut pages = Vec::new();
        let page = compose_pages(&mut pages, header, &[], PAGE);
        file.write_all_at(page, 0)?;
        Ok((Direct { file, pages, tail: header.to_vec() }, size_bytes.max(PAGE as u64)))
    }

    fn file(&self) -> &File {
        &self.file
    }

    fn write(&mut self, at: u64, group: &[u8]) -> io::Result<()> {
        // [tail of the last page | the group | zeros to the page end], from the last page's
        // start. The tail's bytes are already durable and rewritten unchanged, so a torn write
        // of that page leaves them intact.
        let page_start = at - self.tail.len() as u64;
        assert_eq!(page_start % PAGE as u64, 0, "tail does not end at pos");
        let used = self.tail.len() + group.len();
        let out = compose_pages(&mut self.pages, &self.tail, group, used);
        self.file.write_all_at(out, page_start)?;
        self.tail.clear();
        self.tail.extend_from_slice(&out[used / PAGE * PAGE..used]);
        Ok(())
    }

    fn unwrite(&mut self, at: u64, len: usize) -> io::Result<()> {
        // The pages the group covered, as they were: the old tail, then zeros.
        let page_start = at - self.tail.len() as u64;
        let out = compose_pages(&mut self.pages, &self.tail, &[], self.tail.len() + len);
        self.file.write_all_at(out, page_start)
    }

    fn sync(&mut self, _from: u64, _to: u64) -> io::Result<()> {
        self.file.sync_data()
    }
}
