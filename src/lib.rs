//! zkd: an Apache ZooKeeper-compatible server, thread-per-core on io_uring.
//!
//! Where a request goes: `shard` (socket, framing, per-session FIFO, reads against `tree`) →
//! `replica` (prep → log → apply, on the replica core) → `txnlog` (group commit) → back to the
//! shard that owns the connection; the two talk through `mesh`. Pure state machines live in
//! `proto`, `tree`, `session`, `request`, `config`; drivers (`shard`, `replica`,
//! `txnlog::writer`) own threads and I/O.
//!
//! Imports run one way: a module uses only modules earlier in this order — `proto`, `config`,
//! `session`, `clock`, `metrics`, `tree`, `request`, `txnlog`, `snapshot`, `db`, `quorum`
//! (election and ZAB), `mesh`, `replica`, `shard`, `admin`, `server`.

pub mod admin;
pub mod clock;
pub mod config;
pub mod db;
pub mod mesh;
pub mod metrics;
pub mod proto;
pub mod quorum;
pub mod replica;
pub mod request;
pub mod server;
pub mod session;
pub mod shard;
pub mod snapshot;
pub mod tree;
pub mod txnlog;
