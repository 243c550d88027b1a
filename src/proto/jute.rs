//! Jute primitives: the big-endian encoding Apache ZooKeeper uses on the wire and on disk.
//!
//! Every length read from bytes is checked against what is left in the input *before* anything is
//! allocated, so a hostile length can cost at most an error, never memory (ZOOKEEPER-2186).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JuteError {
    #[error("truncated record: needed {needed} bytes at offset {offset}, {left} left")]
    Truncated { offset: usize, needed: usize, left: usize },
    #[error("invalid length {len} at offset {offset}")]
    BadLength { offset: usize, len: i32 },
    #[error("invalid UTF-8 string at offset {offset}")]
    BadUtf8 { offset: usize },
    #[error("invalid value {value} for {what}")]
    BadValue { what: &'static str, value: i64 },
    #[error("{len} trailing bytes after record")]
    Trailing { len: usize },
}

pub type Result<T> = std::result::Result<T, JuteError>;

/// Reads jute fields from a borrowed buffer.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
    /// Errors unless the whole input was consumed.
    pub fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            len => Err(JuteError::Trailing { len }),
        }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(JuteError::Truncated { offset: self.pos, needed: n, left: self.remaining() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.u8()? != 0)
    }
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    /// A length prefix: -1 means null (returned as None); other negatives are errors; a length
    /// larger than the input left is an error before any allocation.
    fn len(&mut self, elem_min_size: usize) -> Result<Option<usize>> {
        let offset = self.pos;
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        if len < 0 || (len as usize).saturating_mul(elem_min_size.max(1)) > self.remaining() {
            return Err(JuteError::BadLength { offset, len });
        }
        Ok(Some(len as usize))
    }
    /// `buffer`: null decodes as None.
    pub fn opt_buffer(&mut self) -> Result<Option<Vec<u8>>> {
        match self.len(1)? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }
    /// `buffer`: null decodes as empty.
    pub fn buffer(&mut self) -> Result<Vec<u8>> {
        Ok(self.opt_buffer()?.unwrap_or_default())
    }
    pub fn buffer_slice(&mut self) -> Result<&'a [u8]> {
        match self.len(1)? {
            None => Ok(&[]),
            Some(n) => self.take(n),
        }
    }
    /// `ustring`: null decodes as empty.
    pub fn string(&mut self) -> Result<String> {
        let offset = self.pos;
        let bytes = self.buffer_slice()?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| JuteError::BadUtf8 { offset })
    }
    /// `vector<T>`: null decodes as empty. `elem_min_size` bounds the count by the bytes left.
    pub fn vec<T>(
        &mut self,
        elem_min_size: usize,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self.len(elem_min_size)? {
            None => Ok(Vec::new()),
            Some(n) => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(f(self)?);
                }
                Ok(v)
            }
        }
    }
}

/// Writes jute fields into a growable buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }
    pub fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn buffer(&mut self, b: &[u8]) {
        self.i32(b.len() as i32);
        self.buf.extend_from_slice(b);
    }
    pub fn opt_buffer(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.i32(-1),
            Some(b) => self.buffer(b),
        }
    }
    pub fn string(&mut self, s: &str) {
        self.buffer(s.as_bytes());
    }
    pub fn vec<T>(&mut self, v: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.i32(v.len() as i32);
        for x in v {
            f(self, x);
        }
    }
}

/// A jute record: encodes to and decodes from the wire format.
pub trait Record: Sized {
    fn encode(&self, w: &mut Writer);
    fn decode(r: &mut Reader<'_>) -> Result<Self>;
    /// The fewest bytes one encoded record can take (bounds vector counts before allocating).
    const MIN_SIZE: usize;

    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.buf
    }
    /// Decodes a whole buffer; trailing bytes are an error.
    fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// Field types a record may contain.
pub trait Field: Sized {
    const MIN_SIZE: usize;
    fn put(&self, w: &mut Writer);
    fn get(r: &mut Reader<'_>) -> Result<Self>;
}

impl Field for i32 {
    const MIN_SIZE: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.i32(*self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.i32()
    }
}
impl Field for i64 {
    const MIN_SIZE: usize = 8;
    fn put(&self, w: &mut Writer) {
        w.i64(*self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.i64()
    }
}
impl Field for bool {
    const MIN_SIZE: usize = 1;
    fn put(&self, w: &mut Writer) {
        w.bool(*self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.bool()
    }
}
impl Field for String {
    const MIN_SIZE: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.string(self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.string()
    }
}
impl Field for Vec<u8> {
    const MIN_SIZE: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.buffer(self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.buffer()
    }
}
impl Field for Option<Vec<u8>> {
    const MIN_SIZE: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.opt_buffer(self.as_deref())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.opt_buffer()
    }
}
impl Field for Vec<String> {
    const MIN_SIZE: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.vec(self, |w, s| w.string(s))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.vec(4, |r| r.string())
    }
}

/// Defines a jute record struct whose fields are encoded in declaration order.
#[macro_export]
macro_rules! jute_record {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        impl $crate::proto::jute::Record for $name {
            const MIN_SIZE: usize = 0 $(+ <$t as $crate::proto::jute::Field>::MIN_SIZE)*;
            #[allow(unused_variables)]
            fn encode(&self, w: &mut $crate::proto::jute::Writer) {
                $( $crate::proto::jute::Field::put(&self.$f, w); )*
            }
            #[allow(unused_variables)]
            fn decode(r: &mut $crate::proto::jute::Reader<'_>) -> $crate::proto::jute::Result<Self> {
                Ok($name { $($f: <$t as $crate::proto::jute::Field>::get(r)?),* })
            }
        }
        impl $crate::proto::jute::Field for $name {
            const MIN_SIZE: usize = <$name as $crate::proto::jute::Record>::MIN_SIZE;
            fn put(&self, w: &mut $crate::proto::jute::Writer) { $crate::proto::jute::Record::encode(self, w) }
            fn get(r: &mut $crate::proto::jute::Reader<'_>) -> $crate::proto::jute::Result<Self> { <$name as $crate::proto::jute::Record>::decode(r) }
        }
        impl $crate::proto::jute::Field for Vec<$name> {
            const MIN_SIZE: usize = 4;
            fn put(&self, w: &mut $crate::proto::jute::Writer) { w.vec(self, |w, x| $crate::proto::jute::Record::encode(x, w)) }
            fn get(r: &mut $crate::proto::jute::Reader<'_>) -> $crate::proto::jute::Result<Self> {
                r.vec(<$name as $crate::proto::jute::Record>::MIN_SIZE, |r| <$name as $crate::proto::jute::Record>::decode(r))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_lengths_are_errors_not_allocations() {
        let mut b = Vec::new();
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(Reader::new(&b).buffer(), Err(JuteError::BadLength { .. })));
        let mut b = Vec::new();
        b.extend_from_slice(&(-2i32).to_be_bytes());
        assert!(matches!(Reader::new(&b).string(), Err(JuteError::BadLength { .. })));
        assert!(matches!(Reader::new(&[0, 0]).i32(), Err(JuteError::Truncated { .. })));
    }

    #[test]
    fn null_buffer_round_trips() {
        let mut w = Writer::new();
        w.opt_buffer(None);
        w.opt_buffer(Some(b"x"));
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.opt_buffer().unwrap(), None);
        assert_eq!(r.opt_buffer().unwrap(), Some(b"x".to_vec()));
        r.finish().unwrap();
    }
}
