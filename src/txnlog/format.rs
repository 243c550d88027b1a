//! The transaction log file format of Apache ZooKeeper 3.8 (`FileTxnLog`), byte for byte. Pure.
//!
//! ```text
//! file   := FileHeader entry* padding
//! FileHeader := magic i32 ("ZKLG" = 0x5a4b4c47) | version i32 (2) | dbid i64 (0)      16 bytes
//! entry  := checksum i64 (Adler32 of txn) | len i32 | txn [len] | 0x42 ('B', end of record)
//! txn    := TxnHeader | body (by header type) | TxnDigest? (3.6+)
//! padding := zeros (the file is preallocated; ZooKeeper defines EOF as an entry of length 0)
//! ```
//! The file is named `log.<zxid of its first entry, lower-case hex, no 0x>`.
//!
//! [`LogReader`] walks a file's bytes and yields every whole, checksummed entry; when it stops it
//! says exactly why ([`Stop`]): the clean end, the zero padding, or damage at an offset. What to do
//! with damage (truncate a torn tail, refuse a corrupt middle) is decided by `db::recovery`.

use crate::proto::jute::{JuteError, Writer};
use crate::proto::txn::LoggedTxn;
use thiserror::Error;

/// "ZKLG".
pub const TXNLOG_MAGIC: i32 = 0x5a4b_4c47;
/// "ZKSN".
pub const SNAP_MAGIC: i32 = 0x5a4b_534e;
/// `FileTxnLog.VERSION` and `FileSnap.VERSION`.
pub const FORMAT_VERSION: i32 = 2;
/// `FileTxnLog.dbId`: ZooKeeper always writes 0 in log headers.
pub const TXNLOG_DBID: i64 = 0;
pub const FILE_HEADER_LEN_BYTES: usize = 16;
/// End-of-record marker after each entry.
pub const EOR: u8 = b'B';
/// checksum (8) + length (4) before the txn, EOR (1) after it.
pub const ENTRY_OVERHEAD_BYTES: usize = 13;
/// `jute.maxbuffer` default (0xfffff) plus `jute.maxbuffer.extrasize` default (1024): the largest
/// txn ZooKeeper's `BinaryInputArchive.readBuffer` accepts.
pub const DEFAULT_MAX_TXN_BYTES: usize = 0xfffff + 1024;
/// The smallest TxnHeader (clientId, cxid, zxid, time, type).
pub const TXN_HEADER_LEN_BYTES: usize = 28;
pub const LOG_FILE_PREFIX: &str = "log";
pub const SNAPSHOT_FILE_PREFIX: &str = "snapshot";

/// `org.apache.zookeeper.server.persistence.FileHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileHeader {
    pub magic: i32,
    pub version: i32,
    pub dbid: i64,
}

impl FileHeader {
    pub fn txnlog() -> Self {
        FileHeader { magic: TXNLOG_MAGIC, version: FORMAT_VERSION, dbid: TXNLOG_DBID }
    }
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.magic.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.dbid.to_be_bytes());
    }
    pub fn to_bytes(&self) -> [u8; FILE_HEADER_LEN_BYTES] {
        let mut v = Vec::with_capacity(FILE_HEADER_LEN_BYTES);
        self.encode(&mut v);
        v.try_into().expect("header is 16 bytes")
    }
    /// Decodes the first 16 bytes; `None` if fewer are given.
    pub fn decode(b: &[u8]) -> Option<FileHeader> {
        if b.len() < FILE_HEADER_LEN_BYTES {
            return None;
        }
        Some(FileHeader {
            magic: i32::from_be_bytes(b[0..4].try_into().unwrap()),
            version: i32::from_be_bytes(b[4..8].try_into().unwrap()),
            dbid: i64::from_be_bytes(b[8..16].try_into().unwrap()),
        })
    }
}

/// Adler32 as `java.util.zip.Adler32` computes it (the value is stored as a long, high bits 0).
pub fn adler32(bytes: &[u8]) -> u32 {
    simd_adler32::adler32(&bytes)
}

/// `Util.makeLogName`: `log.` + `Long.toHexString(zxid)`.
pub fn log_file_name(first_zxid: i64) -> String {
    format!("{LOG_FILE_PREFIX}.{first_zxid:x}")
}

/// `Util.makeSnapshotName` (without a compression suffix).
pub fn snapshot_file_name(zxid: i64) -> String {
    format!("{SNAPSHOT_FILE_PREFIX}.{zxid:x}")
}

/// `Util.getZxidFromName`: the hex after `<prefix>.` up to the next dot; `None` if the name is not
/// of that form. Like `Long.parseLong(s, 16)`, 16 hex digits above `i64::MAX` do not parse.
pub fn zxid_from_name(name: &str, prefix: &str) -> Option<i64> {
    let mut parts = name.split('.');
    if parts.next()? != prefix {
        return None;
    }
    let hex = parts.next()?;
    if hex.is_empty() || hex.len() > 16 || hex.starts_with(['+', '-']) {
        return None;
    }
    i64::from_str_radix(hex, 16).ok()
}

/// Appends one entry (checksum, length, txn bytes, EOR) for already-serialized txn bytes.
pub fn encode_entry(txn_bytes: &[u8], out: &mut Vec<u8>) {
    assert!(!txn_bytes.is_empty(), "an empty txn would read back as end of file");
    assert!(txn_bytes.len() <= i32::MAX as usize);
    out.extend_from_slice(&(adler32(txn_bytes) as i64).to_be_bytes());
    out.extend_from_slice(&(txn_bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(txn_bytes);
    out.push(EOR);
}

/// Appends one entry for `txn`. Returns the number of bytes appended.
pub fn encode_txn_entry(txn: &LoggedTxn, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    // Reserve the checksum and length, serialize in place, then fill them in.
    out.extend_from_slice(&[0u8; 12]);
    let mut w = Writer { buf: std::mem::take(out) };
    txn.encode(&mut w);
    *out = w.buf;
    let txn_len = out.len() - start - 12;
    assert!(txn_len > 0 && txn_len <= i32::MAX as usize);
    let sum = adler32(&out[start + 12..]) as i64;
    out[start..start + 8].copy_from_slice(&sum.to_be_bytes());
    out[start + 8..start + 12].copy_from_slice(&(txn_len as i32).to_be_bytes());
    out.push(EOR);
    out.len() - start
}

/// Why a log file's header is unusable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    #[error("file is {len_bytes} bytes, shorter than the 16-byte file header")]
    Short { len_bytes: usize },
    #[error("invalid magic number 0x{magic:08x} (expected 0x{expected:08x})")]
    BadMagic { magic: i32, expected: i32 },
    #[error("unsupported format version {version}")]
    BadVersion { version: i32 },
}

/// What is wrong at the offset where reading stopped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Damage {
    #[error("entry header cut short: {left} bytes left, not all zero")]
    TruncatedHeader { left: usize },
    #[error("entry length 0 with a non-zero checksum {checksum}")]
    ZeroLengthWithChecksum { checksum: i64 },
    #[error("entry length {len} out of range (max {max})")]
    BadLength { len: i32, max: usize },
    #[error("entry of {len} bytes cut short: {left} bytes left after its header")]
    TruncatedBody { len: usize, left: usize },
    #[error("end-of-record byte is 0x{found:02x}, expected 0x42 ('B')")]
    MissingEor { found: u8 },
    #[error("checksum mismatch: stored {stored}, computed {computed}")]
    ChecksumMismatch { stored: i64, computed: i64 },
    #[error("txn does not decode: {0}")]
    Undecodable(JuteError),
}

/// Why a [`LogReader`] stopped yielding entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Still reading.
    NotYet,
    /// The bytes ended exactly after the last entry.
    End { offset: u64 },
    /// An entry of length 0 (zero padding, ZooKeeper's EOF) or fewer than 12 bytes, all zero.
    Padding { offset: u64 },
    /// Something that is neither a whole entry nor padding starts at `offset`.
    Damaged { offset: u64, damage: Damage },
}

impl Stop {
    pub fn offset(&self) -> Option<u64> {
        match self {
            Stop::NotYet => None,
            Stop::End { offset } | Stop::Padding { offset } | Stop::Damaged { offset, .. } => Some(*offset),
        }
    }
}

/// One entry as found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Offset of the entry's checksum field in the file.
    pub offset: u64,
    /// Bytes the whole entry takes (overhead included).
    pub len_bytes: usize,
    pub txn: LoggedTxn,
}

/// Reads entries from the bytes of one log file (header included).
pub struct LogReader<'a> {
    buf: &'a [u8],
    pos: usize,
    max_txn_bytes: usize,
    header: FileHeader,
    stop: Stop,
}

impl<'a> LogReader<'a> {
    /// Checks the file header (magic "ZKLG", version 2) and positions after it.
    pub fn new(buf: &'a [u8], max_txn_bytes: usize) -> Result<LogReader<'a>, HeaderError> {
        let header = FileHeader::decode(buf).ok_or(HeaderError::Short { len_bytes: buf.len() })?;
        if header.magic != TXNLOG_MAGIC {
            return Err(HeaderError::BadMagic { magic: header.magic, expected: TXNLOG_MAGIC });
        }
        if header.version != FORMAT_VERSION {
            return Err(HeaderError::BadVersion { version: header.version });
        }
        Ok(LogReader { buf, pos: FILE_HEADER_LEN_BYTES, max_txn_bytes, header, stop: Stop::NotYet })
    }
    pub fn header(&self) -> FileHeader {
        self.header
    }
    /// Why iteration ended ([`Stop::NotYet`] while it has not).
    pub fn stop(&self) -> &Stop {
        &self.stop
    }
    /// Offset just past the last entry yielded so far.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    /// Parses the entry at `at` without side effects.
    pub fn parse_entry_at(buf: &[u8], at: usize, max_txn_bytes: usize) -> Result<LogEntry, Stop> {
        let offset = at as u64;
        let rest = &buf[at.min(buf.len())..];
        if rest.is_empty() {
            return Err(Stop::End { offset });
        }
        if rest.len() < 12 {
            return Err(if rest.iter().all(|&b| b == 0) {
                Stop::Padding { offset }
            } else {
                Stop::Damaged { offset, damage: Damage::TruncatedHeader { left: rest.len() } }
            });
        }
        let stored = i64::from_be_bytes(rest[0..8].try_into().unwrap());
        let len = i32::from_be_bytes(rest[8..12].try_into().unwrap());
        if len == 0 {
            return Err(if stored == 0 {
                Stop::Padding { offset }
            } else {
                Stop::Damaged { offset, damage: Damage::ZeroLengthWithChecksum { checksum: stored } }
            });
        }
        if len < 0 || len as usize > max_txn_bytes {
            return Err(Stop::Damaged { offset, damage: Damage::BadLength { len, max: max_txn_bytes } });
        }
        let len = len as usize;
        let left = rest.len() - 12;
        if left < len + 1 {
            return Err(Stop::Damaged { offset, damage: Damage::TruncatedBody { len, left } });
        }
        let txn_bytes = &rest[12..12 + len];
        let eor = rest[12 + len];
        if eor != EOR {
            return Err(Stop::Damaged { offset, damage: Damage::MissingEor { found: eor } });
        }
        let computed = adler32(txn_bytes) as i64;
        if computed != stored {
            return Err(Stop::Damaged { offset, damage: Damage::ChecksumMismatch { stored, computed } });
        }
        let txn = LoggedTxn::from_bytes(txn_bytes)
            .map_err(|e| Stop::Damaged { offset, damage: Damage::Undecodable(e) })?;
        Ok(LogEntry { offset, len_bytes: len + ENTRY_OVERHEAD_BYTES, txn })
    }

    /// The offset of the first whole, checksummed, decodable entry starting strictly after `from`
    /// whose zxid is greater than `min_zxid`, if any. Used to tell a torn tail (nothing valid
    /// follows) from a corrupt middle (valid entries follow).
    pub fn find_valid_entry_after(
        buf: &[u8],
        from: usize,
        min_zxid: i64,
        max_txn_bytes: usize,
    ) -> Option<u64> {
        let mut at = from + 1;
        while at + ENTRY_OVERHEAD_BYTES + TXN_HEADER_LEN_BYTES <= buf.len() {
            let len = i32::from_be_bytes(buf[at + 8..at + 12].try_into().unwrap());
            // Cheap filters before any checksum: plausible length, EOR in place, a sane zxid.
            if len >= TXN_HEADER_LEN_BYTES as i32
                && (len as usize) <= max_txn_bytes
                && at + 12 + (len as usize) < buf.len()
                && buf[at + 12 + len as usize] == EOR
            {
                let zxid = i64::from_be_bytes(buf[at + 24..at + 32].try_into().unwrap());
                if zxid > min_zxid {
                    if let Ok(e) = Self::parse_entry_at(buf, at, max_txn_bytes) {
                        return Some(e.offset);
                    }
                }
            }
            at += 1;
        }
        None
    }
}

impl Iterator for LogReader<'_> {
    type Item = LogEntry;
    fn next(&mut self) -> Option<LogEntry> {
        if self.stop != Stop::NotYet {
            return None;
        }
        match Self::parse_entry_at(self.buf, self.pos, self.max_txn_bytes) {
            Ok(e) => {
                self.pos += e.len_bytes;
                Some(e)
            }
            Err(stop) => {
                self.stop = stop;
                None
            }
        }
    }
}

/// Reads the header only; used to check a file before deciding anything about it.
pub fn check_header(buf: &[u8]) -> Result<FileHeader, HeaderError> {
    LogReader::new(buf, 0).map(|r| r.header())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::*;
    use crate::proto::txn::TxnBody;
    use crate::proto::types::OpCode;

    pub(crate) fn txn(zxid: i64) -> LoggedTxn {
        LoggedTxn {
            hdr: TxnHeader {
                client_id: 0x1000,
                cxid: zxid as i32,
                zxid,
                time: 1_700_000_000_000 + zxid,
                txn_type: OpCode::SetData as i32,
            },
            body: TxnBody::SetData(SetDataTxn {
                path: "/a".into(),
                data: Some(vec![zxid as u8; 5]),
                version: 1,
            }),
            digest: Some(TxnDigest { version: 2, tree_digest: zxid * 7 }),
        }
    }

    fn file(zxids: &[i64], pad: usize) -> Vec<u8> {
        let mut b = Vec::new();
        FileHeader::txnlog().encode(&mut b);
        for &z in zxids {
            encode_txn_entry(&txn(z), &mut b);
        }
        b.resize(b.len() + pad, 0);
        b
    }

    #[test]
    fn names() {
        assert_eq!(log_file_name(0x1_0000_00ab), "log.1000000ab");
        assert_eq!(snapshot_file_name(0), "snapshot.0");
        assert_eq!(zxid_from_name("log.1000000ab", "log"), Some(0x1_0000_00ab));
        assert_eq!(zxid_from_name("snapshot.10.gz", "snapshot"), Some(0x10));
        assert_eq!(zxid_from_name("snapshot.zz", "snapshot"), None);
        assert_eq!(zxid_from_name("log.5", "snapshot"), None);
        assert_eq!(zxid_from_name("log.", "log"), None);
    }

    #[test]
    fn header_bytes_are_zklg_2_0() {
        assert_eq!(&FileHeader::txnlog().to_bytes(), b"ZKLG\0\0\0\x02\0\0\0\0\0\0\0\0");
    }

    #[test]
    fn round_trip_with_padding_and_without() {
        for pad in [0, 5, 100] {
            let b = file(&[1, 2, 3], pad);
            let mut r = LogReader::new(&b, DEFAULT_MAX_TXN_BYTES).unwrap();
            let got: Vec<_> = r.by_ref().map(|e| e.txn).collect();
            assert_eq!(got, vec![txn(1), txn(2), txn(3)]);
            let end = (b.len() - pad) as u64;
            if pad == 0 {
                assert_eq!(r.stop(), &Stop::End { offset: end });
            } else {
                assert_eq!(r.stop(), &Stop::Padding { offset: end });
            }
        }
    }

    #[test]
    fn every_truncation_point_is_reported_at_the_last_whole_entry() {
        let b = file(&[1, 2], 0);
        let second = {
            let mut r = LogReader::new(&b, DEFAULT_MAX_TXN_BYTES).unwrap();
            r.next().unwrap();
            r.position() as usize
        };
        for cut in second + 1..b.len() {
            let mut r = LogReader::new(&b[..cut], DEFAULT_MAX_TXN_BYTES).unwrap();
            assert_eq!(r.by_ref().count(), 1, "cut {cut}");
            match r.stop() {
                Stop::Damaged { offset, .. } => assert_eq!(*offset as usize, second),
                // The checksum's high 4 bytes are always zero (Adler32 is 32 bits): a tail of
                // at most 4 bytes is indistinguishable from padding, and just as harmless.
                Stop::Padding { offset } if cut - second <= 4 => assert_eq!(*offset as usize, second),
                s => panic!("cut {cut}: {s:?}"),
            }
        }
    }

    #[test]
    fn flipped_bit_in_body_is_a_checksum_mismatch_at_that_entry() {
        let mut b = file(&[1, 2, 3], 64);
        let first_end = FILE_HEADER_LEN_BYTES + encode_txn_entry(&txn(1), &mut Vec::new());
        b[first_end + 20] ^= 0x10;
        let mut r = LogReader::new(&b, DEFAULT_MAX_TXN_BYTES).unwrap();
        assert_eq!(r.by_ref().count(), 1);
        assert!(matches!(
            r.stop(),
            Stop::Damaged { offset, damage: Damage::ChecksumMismatch { .. } } if *offset as usize == first_end
        ));
        // Entry 3 is still there to be found.
        let after = LogReader::find_valid_entry_after(&b, first_end, 1, DEFAULT_MAX_TXN_BYTES);
        assert!(after.is_some());
    }

    #[test]
    fn hostile_length_is_refused_before_allocating() {
        let mut b = file(&[], 0);
        b.extend_from_slice(&1i64.to_be_bytes());
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        let mut r = LogReader::new(&b, DEFAULT_MAX_TXN_BYTES).unwrap();
        assert_eq!(r.next(), None);
        assert!(matches!(r.stop(), Stop::Damaged { damage: Damage::BadLength { .. }, .. }));
    }

    #[test]
    fn bad_magic_and_short_header() {
        assert!(matches!(
            LogReader::new(b"ZKSN\0\0\0\x02\0\0\0\0\0\0\0\0", 10),
            Err(HeaderError::BadMagic { .. })
        ));
        assert_eq!(LogReader::new(b"ZKLG", 10).err(), Some(HeaderError::Short { len_bytes: 4 }));
    }
}
