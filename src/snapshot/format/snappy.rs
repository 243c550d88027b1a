//! snappy-java's stream framing (`SnappyInputStream` / `SnappyOutputStream`): a 16-byte header,
//! then (length i32, raw snappy block)*.

use std::io::{self, Read, Write};

/// snappy-java's stream magic, then version 1 and compatible version 1.
pub const SNAPPY_JAVA_HEADER: [u8; 16] = *b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01";
/// snappy-java's default block size.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;
/// Largest compressed / uncompressed snappy block accepted.
const SNAPPY_BLOCK_MAX_BYTES: usize = 64 * 1024 * 1024;

/// snappy-java's `SnappyInputStream` framing.
pub(super) struct SnappyJavaReader<R> {
    r: R,
    block: Vec<u8>,
    pos: usize,
    started: bool,
}

impl<R: Read> SnappyJavaReader<R> {
    pub(super) fn new(r: R) -> Self {
        SnappyJavaReader { r, block: Vec::new(), pos: 0, started: false }
    }
    fn fill(&mut self) -> io::Result<bool> {
        if !self.started {
            let mut h = [0u8; 16];
            self.r.read_exact(&mut h)?;
            if h[..8] != SNAPPY_JAVA_HEADER[..8] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a snappy-java stream (bad magic)",
                ));
            }
            self.started = true;
        }
        let mut lb = [0u8; 4];
        // A clean end of stream is allowed only between blocks.
        let mut got = 0;
        while got < 4 {
            let n = self.r.read(&mut lb[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        let len = i32::from_be_bytes(lb);
        if len < 0 || len as usize > SNAPPY_BLOCK_MAX_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("snappy block length {len}")));
        }
        let mut c = vec![0u8; len as usize];
        self.r.read_exact(&mut c)?;
        let n = snap::raw::decompress_len(&c).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if n > SNAPPY_BLOCK_MAX_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("snappy block of {n} bytes")));
        }
        self.block = snap::raw::Decoder::new()
            .decompress_vec(&c)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for SnappyJavaReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// snappy-java's `SnappyOutputStream` framing.
pub(super) struct SnappyJavaWriter<W: Write> {
    w: W,
    block: Vec<u8>,
    started: bool,
}

impl<W: Write> SnappyJavaWriter<W> {
    pub(super) fn new(w: W) -> Self {
        SnappyJavaWriter { w, block: Vec::with_capacity(SNAPPY_BLOCK_BYTES), started: false }
    }
    fn emit(&mut self) -> io::Result<()> {
        if !self.started {
            self.w.write_all(&SNAPPY_JAVA_HEADER)?;
            self.started = true;
        }
        if self.block.is_empty() {
            return Ok(());
        }
        let c = snap::raw::Encoder::new().compress_vec(&self.block).map_err(io::Error::other)?;
        self.w.write_all(&(c.len() as i32).to_be_bytes())?;
        self.w.write_all(&c)?;
        self.block.clear();
        Ok(())
    }
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.emit()?;
        self.w.flush()?;
        Ok(self.w)
    }
}

impl<W: Write> Write for SnappyJavaWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = b.len().min(SNAPPY_BLOCK_BYTES - self.block.len());
        self.block.extend_from_slice(&b[..n]);
        if self.block.len() == SNAPPY_BLOCK_BYTES {
            self.emit()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
