//! The transaction log: Apache ZooKeeper 3.8's `log.<zxid>` files.
//!
//! `format` (pure: file header, entries, a reader that says exactly where and why it stopped),
//! `writer` (the group-commit thread), `recovery` (snapshot + logs → what to replay, as a decision
//! table), `dump` (what `TxnLogToolkit` prints).

pub mod dump;
pub mod format;
pub mod recovery;
pub mod writer;

pub use format::{FileHeader, LogEntry, LogReader, Stop};
pub use writer::{
    AppendError, LogHandle, LogOptions, LogStats, LogWriteError, LogWriter, SharedTxn, WritePath,
};
