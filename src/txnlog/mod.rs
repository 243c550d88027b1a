//! The transaction log: Apache ZooKeeper 3.8's `log.<zxid>` files.
//!
//! `format` (pure: file header, entries, a reader that says exactly where and why it stopped),
//! `writer` (the group-commit thread), `truncate` (removing txns after a zxid: TRUNC, SNAP),
//! `dump` (what `TxnLogToolkit` prints). What to replay from
//! a snapshot and the logs after it is decided by `db::recovery`.

pub mod dump;
pub mod format;
pub mod truncate;
pub mod writer;

pub use format::{FileHeader, LogEntry, LogReader, Stop};
pub use truncate::{truncate_logs, TruncateError, TruncateMode, TruncateReport};
pub use writer::{
    AppendError, LogHandle, LogOptions, LogStats, LogTruncator, LogWriteError, LogWriter, SharedTxn,
    WritePath,
};
