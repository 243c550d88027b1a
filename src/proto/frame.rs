//! Length-prefixed framing of the client port, with ZooKeeper's bounds.
//!
//! A frame is a big-endian i32 length followed by that many bytes. A length < 0 or > the
//! configured `jute.maxbuffer` is a protocol error that costs exactly that connection (ZooKeeper:
//! "Len error"). Before a session is established, the first four bytes may instead be a four-letter
//! word (`ruok`, `srvr`, ...).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {len} is outside 0..={max} (jute.maxbuffer)")]
    BadLength { len: i32, max: usize },
}

/// What the first four bytes of a connection were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstWord {
    /// A frame of this length.
    Length(usize),
    /// A four-letter word command.
    FourLetter([u8; 4]),
}

/// All four-letter words of ZooKeeper 3.8 (the set `checkFourLetterWord` recognises).
pub const FOUR_LETTER_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro", "mntr", "ruok", "srst", "srvr",
    "stat", "stmk", "wchc", "wchp", "wchs",
];

pub fn is_four_letter_word(b: [u8; 4]) -> bool {
    FOUR_LETTER_WORDS.iter().any(|w| w.as_bytes() == b)
}

/// Interprets a length prefix. `first` is true for the first bytes of a connection.
pub fn read_length(b: [u8; 4], max: usize, first: bool) -> Result<FirstWord, FrameError> {
    if first && is_four_letter_word(b) {
        return Ok(FirstWord::FourLetter(b));
    }
    let len = i32::from_be_bytes(b);
    if len < 0 || len as usize > max {
        return Err(FrameError::BadLength { len, max });
    }
    Ok(FirstWord::Length(len as usize))
}

/// Incremental frame splitter over a byte buffer filled from a socket.
#[derive(Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
    start: usize,
}

impl FrameBuf {
    pub fn new() -> Self {
        Self::default()
    }
    /// Space to read into: returns a slice of at least `min` free bytes at the end.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        if self.buf.capacity() - len < min {
            self.buf.reserve(min);
        }
        let cap = self.buf.capacity();
        self.buf.resize(cap, 0);
        &mut self.buf[len..]
    }
    /// After `spare`, records how many bytes were actually read.
    pub fn filled(&mut self, spare_len: usize, n: usize) {
        let total = self.buf.len();
        self.buf.truncate(total - spare_len + n);
    }
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    pub fn consume(&mut self, n: usize) {
        assert!(self.start + n <= self.buf.len());
        self.start += n;
    }
    /// The next complete frame body, if buffered. Errors on a bad length.
    pub fn next_frame(&mut self, max: usize, first: &mut bool) -> Result<Option<Frame>, FrameError> {
        let p = self.pending();
        if p.len() < 4 {
            return Ok(None);
        }
        let word = read_length([p[0], p[1], p[2], p[3]], max, *first)?;
        match word {
            FirstWord::FourLetter(w) => {
                self.consume(4);
                Ok(Some(Frame::FourLetter(w)))
            }
            FirstWord::Length(n) => {
                if p.len() < 4 + n {
                    return Ok(None);
                }
                *first = false;
                let body = p[4..4 + n].to_vec();
                self.consume(4 + n);
                Ok(Some(Frame::Packet(body)))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    FourLetter([u8; 4]),
    Packet(Vec<u8>),
}

/// Prepends the length to an encoded packet.
pub fn frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(fb: &mut FrameBuf, bytes: &[u8]) {
        let s = fb.spare(bytes.len());
        let sl = s.len();
        s[..bytes.len()].copy_from_slice(bytes);
        fb.filled(sl, bytes.len());
    }

    #[test]
    fn splits_frames_across_reads() {
        let mut fb = FrameBuf::new();
        let mut first = true;
        let mut wire = Vec::new();
        frame(b"hello", &mut wire);
        frame(b"", &mut wire);
        feed(&mut fb, &wire[..3]);
        assert_eq!(fb.next_frame(100, &mut first).unwrap(), None);
        feed(&mut fb, &wire[3..]);
        assert_eq!(fb.next_frame(100, &mut first).unwrap(), Some(Frame::Packet(b"hello".to_vec())));
        assert_eq!(fb.next_frame(100, &mut first).unwrap(), Some(Frame::Packet(vec![])));
        assert_eq!(fb.next_frame(100, &mut first).unwrap(), None);
    }

    #[test]
    fn bounds_and_four_letter_words() {
        let mut first = true;
        assert_eq!(read_length(*b"ruok", 10, true).unwrap(), FirstWord::FourLetter(*b"ruok"));
        // After the first frame, "ruok" is just a (too large) length.
        assert!(read_length(*b"ruok", 10, false).is_err());
        assert!(read_length((-1i32).to_be_bytes(), 10, true).is_err());
        assert!(read_length(i32::MAX.to_be_bytes(), 1048575, true).is_err());
        let mut fb = FrameBuf::new();
        feed(&mut fb, &11i32.to_be_bytes());
        assert_eq!(fb.next_frame(10, &mut first), Err(FrameError::BadLength { len: 11, max: 10 }));
    }
}
