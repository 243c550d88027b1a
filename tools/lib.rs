//! Operator tools built into the `zkd` binary: `bench` (load generator), `fsync-test` (what a txn
//! log writer sees on a disk), `maxbuffer-stress` (jute.maxbuffer edge cases against a server),
//! `lincheck` (histories under faults, checked for linearizability).
//! They speak the ZooKeeper client protocol with their own small client ([`client`]) and only use
//! the server library's protocol types (`zkd::proto`).

pub mod bench;
pub mod client;
#[cfg(test)]
pub(crate) mod fake_server;
pub mod fsync_test;
pub mod lincheck;
pub mod maxbuffer_stress;
