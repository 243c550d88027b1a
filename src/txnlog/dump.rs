//! `zkd txnlog dump FILE`: prints what ZooKeeper 3.8's `TxnLogToolkit FILE` (zkTxnLogToolkit.sh)
//! prints, line for line (the successor of `LogFormatter`, which 3.8 no longer ships):
//!
//! ```text
//! ZooKeeper Transactional Log File with dbid 0 txnlog format version 2
//! 11/22/26, 11:16:37 AM UTC session 0x1000025699f0000 cxid 0x0 zxid 0x1 createSession 10000
//! ...
//! EOF reached after 13 txns.
//! ```
//! Times are formatted like Java's `DateFormat.getDateTimeInstance(SHORT, LONG)` in the en_US
//! locale and the process's local time zone. Txn bodies print as ZooKeeper prints them: its own
//! format for create/setData/createContainer/createTTL/multi, the jute `toString` otherwise.
//! With `json`, one JSON object per line instead (zkd's own format).

use super::format::{adler32, FileHeader, DEFAULT_MAX_TXN_BYTES, EOR, TXNLOG_MAGIC};
use crate::proto::jute::JuteError;
use crate::proto::records::{Acl, TxnHeader};
use crate::proto::txn::{LoggedTxn, TxnBody};
use crate::proto::types::OpCode;
use std::io::{self, Write};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DumpError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("Invalid magic number for {file}")]
    BadMagic { file: String },
    #[error("Unreasonable length = {len} at offset {offset}")]
    BadLength { offset: u64, len: i32 },
    #[error("txn at offset {offset} does not decode: {source}")]
    Decode { offset: u64, source: JuteError },
    #[error("Last transaction was partial.")]
    Partial { offset: u64 },
}

/// Local-time calendar fields of a Unix time in milliseconds, and the zone's abbreviation.
pub(crate) struct LocalTime {
    pub year: i64,
    pub month0: usize,
    pub mday: i32,
    pub wday: usize,
    pub hour: i32,
    pub min: i32,
    pub sec: i32,
    pub zone: String,
}

extern "C" {
    fn tzset();
}

pub(crate) fn local_time(ms: i64) -> LocalTime {
    let secs = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`; tm_zone points to static storage of libc.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tzset();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return LocalTime {
                year: 1970,
                month0: 0,
                mday: 1,
                wday: 4,
                hour: 0,
                min: 0,
                sec: 0,
                zone: "UTC".into(),
            };
        }
        let zone = if tm.tm_zone.is_null() {
            "UTC".to_string()
        } else {
            std::ffi::CStr::from_ptr(tm.tm_zone).to_string_lossy().into_owned()
        };
        LocalTime {
            year: tm.tm_year as i64 + 1900,
            month0: tm.tm_mon as usize,
            mday: tm.tm_mday,
            wday: tm.tm_wday as usize,
            hour: tm.tm_hour,
            min: tm.tm_min,
            sec: tm.tm_sec,
            zone,
        }
    }
}

/// Java `DateFormat.getDateTimeInstance(SHORT, LONG)` (en_US): `11/22/26, 11:16:37 AM UTC`.
pub fn java_short_long_datetime(ms: i64) -> String {
    let t = local_time(ms);
    let h12 = if t.hour % 12 == 0 { 12 } else { t.hour % 12 };
    let ampm = if t.hour < 12 { "AM" } else { "PM" };
    format!(
        "{}/{}/{:02}, {}:{:02}:{:02} {} {}",
        t.month0 + 1,
        t.mday,
        t.year.rem_euclid(100),
        h12,
        t.min,
        t.sec,
        ampm,
        t.zone
    )
}

/// Java `Date.toString()`: `Sun Nov 22 11:16:37 UTC 2026`.
pub fn java_date_to_string(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = local_time(ms);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} {} {}",
        DAYS[t.wday % 7],
        MONTHS[t.month0 % 12],
        t.mday,
        t.hour,
        t.min,
        t.sec,
        t.zone,
        t.year
    )
}

/// `Request.op2String`.
pub fn op_name(op: i32) -> String {
    let s = match OpCode::from_i32(op) {
        Some(o) => match o {
            OpCode::Notification => "notification",
            OpCode::Create => "create",
            OpCode::Delete => "delete",
            OpCode::Exists => "exists",
            OpCode::GetData => "getData",
            OpCode::SetData => "setData",
            OpCode::GetAcl => "getACL",
            OpCode::SetAcl => "setACL",
            OpCode::GetChildren => "getChildren",
            OpCode::Sync => "sync",
            OpCode::Ping => "ping",
            OpCode::GetChildren2 => "getChildren2",
            OpCode::Check => "check",
            OpCode::Multi => "multi",
            OpCode::Create2 => "create2",
            OpCode::Reconfig => "reconfig",
            OpCode::CheckWatches => "checkWatches",
            OpCode::RemoveWatches => "removeWatches",
            OpCode::CreateContainer => "createContainer",
            OpCode::DeleteContainer => "deleteContainer",
            OpCode::CreateTtl => "createTtl",
            OpCode::MultiRead => "multiRead",
            OpCode::Auth => "auth",
            OpCode::SetWatches => "setWatches",
            OpCode::SetWatches2 => "setWatches2",
            OpCode::Sasl => "sasl",
            OpCode::GetEphemerals => "getEphemerals",
            OpCode::GetAllChildrenNumber => "getAllChildrenNumber",
            OpCode::CreateSession => "createSession",
            OpCode::CloseSession => "closeSession",
            OpCode::Error => "error",
            OpCode::WhoAmI => "whoAmI",
            OpCode::AddWatch => return format!("unknown {op}"),
        },
        None => return format!("unknown {op}"),
    };
    s.to_string()
}

/// jute's `ToStringOutputArchive`, which every generated record's `toString` uses.
struct ToStr {
    s: String,
    first: bool,
}

impl ToStr {
    fn new() -> Self {
        ToStr { s: String::new(), first: true }
    }
    fn comma(&mut self) {
        if !self.first {
            self.s.push(',');
        }
        self.first = false;
    }
    fn long(&mut self, v: i64) {
        self.comma();
        self.s.push_str(&v.to_string());
    }
    fn string(&mut self, v: &str) {
        self.comma();
        self.s.push('\'');
        for c in v.chars() {
            match c {
                '\0' => self.s.push_str("%00"),
                '\n' => self.s.push_str("%0A"),
                '\r' => self.s.push_str("%0D"),
                ',' => self.s.push_str("%2C"),
                '}' => self.s.push_str("%7D"),
                '%' => self.s.push_str("%25"),
                c => self.s.push(c),
            }
        }
    }
    fn start_nested(&mut self) {
        self.comma();
        self.s.push_str("s{");
        self.first = true;
    }
    fn end_nested(&mut self) {
        self.s.push('}');
        self.first = false;
    }
    fn start_vec(&mut self) {
        self.comma();
        self.s.push_str("v{");
        self.first = true;
    }
    fn end_vec(&mut self) {
        self.s.push('}');
        self.first = false;
    }
    fn acl_fields(&mut self, a: &Acl) {
        self.long(a.perms as i64);
        self.start_nested();
        self.string(&a.id.scheme);
        self.string(&a.id.id);
        self.end_nested();
    }
    /// A top-level record ends with a newline.
    fn end_top(mut self) -> String {
        self.s.push('\n');
        self.s
    }
}

/// `ACL.toString()`.
fn acl_to_string(a: &Acl) -> String {
    let mut t = ToStr::new();
    t.acl_fields(a);
    t.end_top()
}

/// `List<ACL>.toString()`.
fn acl_list_to_string(acls: &[Acl]) -> String {
    let parts: Vec<String> = acls.iter().map(acl_to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// `TxnLogToolkit.checkNullToEmpty`: the bytes as UTF-8 text.
fn text(data: &Option<Vec<u8>>) -> String {
    match data {
        Some(d) => String::from_utf8_lossy(d).into_owned(),
        None => String::new(),
    }
}

/// What `TxnLogToolkit.getFormattedTxnStr` prints for a txn body.
pub fn format_txn_body(body: &TxnBody) -> String {
    match body {
        TxnBody::Create(t) => format!(
            "{},{},{},{},{}",
            t.path,
            text(&t.data),
            acl_list_to_string(&t.acl),
            t.ephemeral,
            t.parent_c_version
        ),
        TxnBody::SetData(t) => format!("{},{},{}", t.path, text(&t.data), t.version),
        TxnBody::CreateContainer(t) => {
            format!("{},{},{},{}", t.path, text(&t.data), acl_list_to_string(&t.acl), t.parent_c_version)
        }
        TxnBody::CreateTtl(t) => format!(
            "{},{},{},{},{}",
            t.path,
            text(&t.data),
            acl_list_to_string(&t.acl),
            t.parent_c_version,
            t.ttl
        ),
        TxnBody::Multi(ops) => {
            let parts: Vec<String> = ops
                .iter()
                .map(|(ty, b)| {
                    let bytes = b.to_bytes();
                    let data = if bytes.is_empty() {
                        String::new()
                    } else {
                        String::from_utf8_lossy(&bytes).into_owned()
                    };
                    format!("{}:{}", op_name(*ty), data)
                })
                .collect();
            parts.join(";")
        }
        TxnBody::CreateSession(t) => {
            let mut s = ToStr::new();
            s.long(t.time_out as i64);
            s.end_top()
        }
        TxnBody::CloseSession(t) => {
            let mut s = ToStr::new();
            s.start_vec();
            for p in &t.paths2_delete {
                s.string(p);
            }
            s.end_vec();
            s.end_top()
        }
        TxnBody::Delete(t) => {
            let mut s = ToStr::new();
            s.string(&t.path);
            s.end_top()
        }
        TxnBody::SetAcl(t) => {
            let mut s = ToStr::new();
            s.string(&t.path);
            s.start_vec();
            for a in &t.acl {
                s.start_nested();
                s.acl_fields(a);
                s.end_nested();
            }
            s.end_vec();
            s.long(t.version as i64);
            s.end_top()
        }
        TxnBody::Check(t) => {
            let mut s = ToStr::new();
            s.string(&t.path);
            s.long(t.version as i64);
            s.end_top()
        }
        TxnBody::Error(t) => {
            let mut s = ToStr::new();
            s.long(t.err as i64);
            s.end_top()
        }
        TxnBody::Other(_) => String::new(),
    }
}

/// The line `TxnLogToolkit.printTxn` prints (ending in exactly one newline).
pub fn format_txn_line(hdr: &TxnHeader, body: &TxnBody) -> String {
    let mut s = format!(
        "{} session 0x{:x} cxid 0x{:x} zxid 0x{:x} {} {}",
        java_short_long_datetime(hdr.time),
        hdr.client_id,
        hdr.cxid as i64,
        hdr.zxid,
        op_name(hdr.txn_type),
        format_txn_body(body)
    );
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn json_line(offset: u64, t: &LoggedTxn, checksum_ok: bool) -> String {
    let v = serde_json::json!({
        "offset": offset,
        "time_ms": t.hdr.time,
        "session": format!("0x{:x}", t.hdr.client_id),
        "cxid": t.hdr.cxid,
        "zxid": format!("0x{:x}", t.hdr.zxid),
        "type": op_name(t.hdr.txn_type),
        "txn": format_txn_body(&t.body).trim_end_matches('\n'),
        "digest": t.digest.as_ref().map(|d| serde_json::json!({"version": d.version, "tree_digest": d.tree_digest})),
        "checksum_ok": checksum_ok,
    });
    format!("{v}\n")
}

/// Prints a transaction log file as `TxnLogToolkit FILE` does (or JSON lines with `json`).
pub fn dump_txnlog(path: &Path, json: bool, out: &mut impl Write) -> Result<(), DumpError> {
    let buf = std::fs::read(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let hdr = FileHeader::decode(&buf).ok_or(DumpError::Io(io::ErrorKind::UnexpectedEof.into()))?;
    if hdr.magic != TXNLOG_MAGIC {
        return Err(DumpError::BadMagic { file: name });
    }
    if json {
        writeln!(out, "{}", serde_json::json!({"file": name, "dbid": hdr.dbid, "version": hdr.version}))?;
    } else {
        writeln!(
            out,
            "ZooKeeper Transactional Log File with dbid {} txnlog format version {}",
            hdr.dbid, hdr.version
        )?;
    }
    let mut pos = 16usize;
    let mut count = 0u64;
    let eof = |out: &mut dyn Write, count: u64| -> Result<(), DumpError> {
        if json {
            writeln!(out, "{}", serde_json::json!({"eof_after_txns": count}))?;
        } else {
            writeln!(out, "EOF reached after {count} txns.")?;
        }
        Ok(())
    };
    loop {
        let offset = pos as u64;
        if buf.len() - pos < 12 {
            return eof(out, count);
        }
        let stored = i64::from_be_bytes(buf[pos..pos + 8].try_into().unwrap());
        let len = i32::from_be_bytes(buf[pos + 8..pos + 12].try_into().unwrap());
        if len < -1 || len as i64 > DEFAULT_MAX_TXN_BYTES as i64 {
            return Err(DumpError::BadLength { offset, len });
        }
        if len <= 0 || buf.len() - pos - 12 < len as usize {
            return eof(out, count);
        }
        let bytes = &buf[pos + 12..pos + 12 + len as usize];
        let ok = adler32(bytes) as i64 == stored;
        let t = LoggedTxn::from_bytes(bytes).map_err(|source| DumpError::Decode { offset, source })?;
        if json {
            out.write_all(json_line(offset, &t, ok).as_bytes())?;
        } else {
            let line = format_txn_line(&t.hdr, &t.body);
            if !ok {
                write!(out, "CRC ERROR - {line}")?;
            }
            out.write_all(line.as_bytes())?;
        }
        pos += 12 + len as usize;
        if buf.get(pos) != Some(&EOR) {
            return Err(DumpError::Partial { offset });
        }
        pos += 1;
        count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::*;

    #[test]
    fn java_formats_in_utc() {
        std::env::set_var("TZ", "UTC");
        assert_eq!(java_short_long_datetime(1_795_346_197_000), "11/22/26, 11:16:37 AM UTC");
        assert_eq!(java_short_long_datetime(0), "1/1/70, 12:00:00 AM UTC");
        assert_eq!(java_date_to_string(0), "Thu Jan 01 00:00:00 UTC 1970");
    }

    #[test]
    fn record_strings_match_jute_to_string() {
        let world = Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } };
        let b = TxnBody::SetAcl(SetAclTxn { path: "/a/b".into(), acl: vec![world.clone()], version: 1 });
        assert_eq!(format_txn_body(&b), "'/a/b,v{s{31,s{'world,'anyone}}},1\n");
        let c = TxnBody::Create(CreateTxn {
            path: "/a".into(),
            data: Some(b"hello".to_vec()),
            acl: vec![world],
            ephemeral: false,
            parent_c_version: 1,
        });
        assert_eq!(format_txn_body(&c), "/a,hello,[31,s{'world,'anyone}\n],false,1");
        let d = TxnBody::Delete(DeleteTxn { path: "/x,y%}".into() });
        assert_eq!(format_txn_body(&d), "'/x%2Cy%25%7D\n");
        assert_eq!(format_txn_body(&TxnBody::CloseSession(CloseSessionTxn::default())), "v{}\n");
    }
}
