//! The history file: JSON lines. The first line describes the run (seed, servers, faults, keys),
//! then one line per operation and one per fault, in completion order (the checker sorts by
//! time itself). Times are nanoseconds on the recorder's monotonic clock since the run began.
//!
//! An operation is a list of requests (`subs`): one for a plain call, several for a multi (which
//! ZooKeeper applies atomically or not at all). Its outcome is one of
//! - `ok`: every request took effect; `results` holds what each returned;
//! - `fail`: a definite error reply: nothing took effect; `index` is the request that failed;
//! - `unknown`: no reply (connection lost, timeout): it may have taken effect at any time after
//!   `call_ns`, or never. Its `ret_ns` is absent.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Run(RunInfo),
    Op(Op),
    Fault(FaultEvent),
}

/// How the history was made: enough to replay it (`zkd lincheck run --seed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub seed: u64,
    /// "zkd" or "oracle" (Apache ZooKeeper).
    pub server: String,
    pub nodes: usize,
    pub clients: usize,
    pub session_timeout_ms: u32,
    /// The fault kinds the schedule drew from.
    pub faults: Vec<String>,
    /// The data znodes and the parents of the sequential znodes.
    pub keys: Vec<String>,
    pub seq_parents: Vec<String>,
}

/// A fault the nemesis injected (or healed), at `at_ns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    pub at_ns: u64,
    pub node: usize,
    /// "kill", "restart", "pause", "resume", "fs-shutdown", ...
    pub what: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub id: u64,
    pub client: u32,
    /// The session id, as ZooKeeper prints it (0x...).
    pub session: String,
    /// The node the client was connected to.
    pub node: usize,
    pub call_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret_ns: Option<u64>,
    /// Sent as a multi (atomic), even with one request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multi: bool,
    pub subs: Vec<Sub>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One request. Versions are ZooKeeper's: -1 matches any version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Sub {
    /// sync(path) then getData(path): the value and its Stat.version.
    Read {
        path: String,
    },
    /// setData(path, value, version).
    Set {
        path: String,
        value: String,
        version: i32,
    },
    /// create(path, value), persistent.
    Create {
        path: String,
        value: String,
    },
    /// create(prefix, persistent sequential): the parent's sequence number is the key.
    CreateSeq {
        prefix: String,
    },
    Delete {
        path: String,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    /// sync(path) then exists(path): the Stat's cversion (a sequential parent's counter).
    ReadCversion {
        path: String,
    },
}

impl Sub {
    /// The znode whose state this request reads or changes (a sequential create's parent).
    pub fn key(&self) -> &str {
        match self {
            Sub::Read { path }
            | Sub::Set { path, .. }
            | Sub::Create { path, .. }
            | Sub::Delete { path, .. }
            | Sub::Check { path, .. }
            | Sub::ReadCversion { path } => path,
            Sub::CreateSeq { prefix } => parent_of(prefix),
        }
    }
}

/// "/a/b-" → "/a"; "/x" → "/".
pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// What the operation ended with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ok { results: Vec<Res> },
    Fail { index: usize, error: String, code: i32 },
    Unknown { why: String },
}

/// What one request returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum Res {
    Read { value: Option<String>, version: i32 },
    Set { version: i32 },
    Created { path: String },
    Done,
    Cversion { cversion: i32 },
}

/// A sequential znode's number: the last 10 digits of its name.
pub fn seq_number(path: &str) -> Option<i64> {
    let tail = path.len().checked_sub(10).map(|i| &path[i..])?;
    if tail.bytes().all(|b| b.is_ascii_digit()) {
        tail.parse().ok()
    } else {
        None
    }
}

/// A history read back from its file.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub run: Option<RunInfo>,
    pub ops: Vec<Op>,
    pub faults: Vec<FaultEvent>,
}

/// Longest line a history file may have (a multi of a few requests is well under 4 KiB).
pub const LINE_MAX_BYTES: usize = 1 << 20;

impl History {
    pub fn read(r: impl BufRead) -> anyhow::Result<History> {
        let mut h = History::default();
        for (n, line) in r.lines().enumerate() {
            let line = line?;
            anyhow::ensure!(
                line.len() <= LINE_MAX_BYTES,
                "line {}: longer than {LINE_MAX_BYTES} bytes",
                n + 1
            );
            if line.trim().is_empty() {
                continue;
            }
            let l: Line =
                serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("line {}: {e}: {line}", n + 1))?;
            match l {
                Line::Run(r) => h.run = Some(r),
                Line::Op(o) => h.ops.push(o),
                Line::Fault(f) => h.faults.push(f),
            }
        }
        Ok(h)
    }

    pub fn read_file(p: &std::path::Path) -> anyhow::Result<History> {
        let f = std::fs::File::open(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        Self::read(std::io::BufReader::new(f))
    }

    pub fn write(&self, mut w: impl Write) -> std::io::Result<()> {
        if let Some(r) = &self.run {
            write_line(&mut w, &Line::Run(r.clone()))?;
        }
        for o in &self.ops {
            write_line(&mut w, &Line::Op(o.clone()))?;
        }
        for f in &self.faults {
            write_line(&mut w, &Line::Fault(f.clone()))?;
        }
        Ok(())
    }
}

pub fn write_line(w: &mut impl Write, l: &Line) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, l)?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let op = Op {
            id: 7,
            client: 2,
            session: "0x100".into(),
            node: 0,
            call_ns: 10,
            ret_ns: Some(20),
            multi: true,
            subs: vec![
                Sub::Check { path: "/k0".into(), version: 3 },
                Sub::Set { path: "/k0".into(), value: "c2-1".into(), version: -1 },
            ],
            outcome: Outcome::Ok { results: vec![Res::Done, Res::Set { version: 4 }] },
        };
        let text = serde_json::to_string(&Line::Op(op.clone())).unwrap();
        assert!(text.contains(r#""outcome":"ok""#), "{text}");
        assert_eq!(serde_json::from_str::<Line>(&text).unwrap(), Line::Op(op));
        let unknown = r#"{"type":"op","id":1,"client":0,"session":"0x1","node":0,"call_ns":5,"subs":[{"f":"read","path":"/k"}],"outcome":"unknown","why":"connection lost"}"#;
        match serde_json::from_str::<Line>(unknown).unwrap() {
            Line::Op(o) => {
                assert_eq!(o.ret_ns, None);
                assert_eq!(o.outcome, Outcome::Unknown { why: "connection lost".into() });
            }
            l => panic!("{l:?}"),
        }
    }

    #[test]
    fn keys_and_sequence_numbers() {
        assert_eq!(Sub::CreateSeq { prefix: "/lin/seq/n-".into() }.key(), "/lin/seq");
        assert_eq!(parent_of("/x"), "/");
        assert_eq!(seq_number("/lin/seq/n-0000000042"), Some(42));
        assert_eq!(seq_number("/lin/seq/n-42"), None);
    }
}
