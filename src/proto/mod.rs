//! The client wire protocol: jute primitives, records, constants, and framing.
//! Pure: no sockets here. Every length is bounded before anything is allocated.

pub mod frame;
pub mod jute;
pub mod ops;
pub mod records;
pub mod txn;
pub mod types;

pub use jute::{JuteError, Reader, Record, Writer};
pub use records::*;
pub use txn::{LoggedTxn, TxnBody};
pub use types::*;
