//! Length-prefixed framing of the client port, with ZooKeeper's bounds.
//!
//! A frame is a big-endian i32 length followed by that many bytes. A length < 0 or > the
//! configured `jute.maxbuffer` is a protocol error that costs exactly that connection (ZooKeeper:
//! "Len error"). Before a session is established, the first four bytes may instead be a four-letter
//! word (`ruok`, `srvr`, ...).

use thiserror::Error;

use super::jute::{Record, Writer};
use super::ReplyHeader;

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

/// All four-letter words of ZooKeeper 3.8 (the set `checkFourLetterWord` recognises), then
/// zkd's own: `elec` (the election as this server sees it), a word ZooKeeper 3.8 and 3.9 do not
/// use, whose bytes as a length (1 701 602 659) are beyond any `jute.maxbuffer` a client could
/// need.
pub const FOUR_LETTER_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro", "mntr", "ruok", "srst", "srvr",
    "stat", "stmk", "wchc", "wchp", "wchs", "elec",
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
///
/// `buf` stays initialized up to its length, so handing out read space never re-zeroes it (it
/// did: a 16 KiB memset per socket read). Bytes `start..end` are received and unconsumed.
#[derive(Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// A buffer grown past this (by a large frame) is given back once it is drained.
const KEEP_BYTES: usize = 64 * 1024;

impl FrameBuf {
    pub fn new() -> Self {
        Self::default()
    }
    /// Space to read into: returns a slice of at least `min` free bytes at the end.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BYTES {
                self.buf = Vec::new();
            }
        } else if self.start > KEEP_BYTES && self.start * 2 > self.end {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < min {
            self.buf.resize(self.end + min, 0);
        }
        &mut self.buf[self.end..]
    }
    /// `n` bytes of the last `spare` slice (of `spare_len` bytes) were filled.
    pub fn filled(&mut self, spare_len: usize, n: usize) {
        assert_eq!(spare_len, self.buf.len() - self.end, "filled() must follow spare()");
        assert!(n <= spare_len);
        self.end += n;
    }
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    pub fn consume(&mut self, n: usize) {
        assert!(self.start + n <= self.end);
        self.start += n;
    }
    /// The next complete frame body, if buffered (a copy). Errors on a bad length.
    pub fn next_frame(&mut self, max: usize, first: &mut bool) -> Result<Option<Frame>, FrameError> {
        Ok(self.next_span(max, first)?.map(|f| match f {
            FrameSpan::FourLetter(w) => Frame::FourLetter(w),
            FrameSpan::Packet(r) => Frame::Packet(self.buf[r].to_vec()),
        }))
    }

    /// The next complete frame, consumed, its body left in place: read it with `body` before
    /// the next `spare` (the hot path: no copy, no allocation per request). Errors on a bad
    /// length.
    pub fn next_span(&mut self, max: usize, first: &mut bool) -> Result<Option<FrameSpan>, FrameError> {
        let p = self.pending();
        if p.len() < 4 {
            return Ok(None);
        }
        let word = read_length([p[0], p[1], p[2], p[3]], max, *first)?;
        match word {
            FirstWord::FourLetter(w) => {
                self.consume(4);
                Ok(Some(FrameSpan::FourLetter(w)))
            }
            FirstWord::Length(n) => {
                if p.len() < 4 + n {
                    return Ok(None);
                }
                *first = false;
                let at = self.start + 4;
                self.consume(4 + n);
                Ok(Some(FrameSpan::Packet(at..at + n)))
            }
        }
    }

    /// The bytes of a span `next_span` returned (valid until the next `spare`).
    pub fn body(&self, r: std::ops::Range<usize>) -> &[u8] {
        assert!(r.end <= self.start, "a span of consumed bytes");
        &self.buf[r]
    }
}

/// A frame found in a `FrameBuf`, its body by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameSpan {
    FourLetter([u8; 4]),
    Packet(std::ops::Range<usize>),
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

/// A reply frame: length, header, then the record (if any).
pub fn framed<R: Record>(hdr: &ReplyHeader, body: Option<&R>) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.i32(0);
    hdr.encode(&mut w);
    if let Some(b) = body {
        b.encode(&mut w);
    }
    let len = (w.buf.len() - 4) as i32;
    w.buf[..4].copy_from_slice(&len.to_be_bytes());
    w.buf
}

pub fn framed_raw(hdr: &ReplyHeader, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(16 + body.len() + 4);
    w.i32((16 + body.len()) as i32);
    hdr.encode(&mut w);
    w.raw(body);
    w.buf
}

/// A framed record without a reply header (the connect response).
pub fn frame_record<R: Record>(r: &R) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.i32(0);
    r.encode(&mut w);
    let len = (w.buf.len() - 4) as i32;
    w.buf[..4].copy_from_slice(&len.to_be_bytes());
    w.buf
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn any_chunking_yields_the_same_frames(
            bodies in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..90_000), 1..5),
            cuts in proptest::collection::vec(1usize..100_000, 1..20),
        ) {
            let mut wire = Vec::new();
            for b in &bodies {
                frame(b, &mut wire);
            }
            let mut fb = FrameBuf::new();
            let mut first = false;
            let mut got = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while at < wire.len() {
                let n = cuts[i % cuts.len()].min(wire.len() - at);
                i += 1;
                let sp = fb.spare(16 * 1024);
                let sl = sp.len();
                let n = n.min(sl);
                sp[..n].copy_from_slice(&wire[at..at + n]);
                fb.filled(sl, n);
                at += n;
                while let Some(f) = fb.next_frame(1 << 20, &mut first).unwrap() {
                    got.push(f);
                }
            }
            let want: Vec<Frame> = bodies.into_iter().map(Frame::Packet).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
