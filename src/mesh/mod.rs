//! The wiring between the replica core and the shards: what they say to each other (`msg`), the
//! bounded channels it travels on, and the doorbells that wake a parked shard (`doorbell`).
//!
//! Both sides import this module and neither imports the other through it: the replica sends to
//! the shards through `ShardLinks`, the shards (and the log writer and the ops thread) send to the
//! replica through `ReplicaTx`.

pub mod doorbell;
pub mod msg;

use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use doorbell::Doorbell;
use msg::{ToReplica, ToShard};

/// Bounds of the queues between threads (messages). A shard stops reading its sockets while
/// the replica's queue is full; the replica holds messages for a full shard inbox back, in
/// order, and hands them over on its next rounds. Both overflows are counted
/// (`zkd_replica_queue_full`, `zkd_shard_inbox_full`).
pub const REPLICA_QUEUE_MAX: usize = 64 * 1024;
pub const SHARD_INBOX_MAX: usize = 64 * 1024;

/// One link per shard: its inbox, its doorbell and its probe (overflow counts).
pub struct ShardLink {
    pub tx: Sender<ToShard>,
    pub bell: Arc<Doorbell>,
    pub probe: Arc<crate::metrics::ShardProbe>,
}

/// The replica's links to the shards. Sends never block: what a full inbox cannot take waits
/// in `held` (per shard, in order; everything for that shard queues behind it) until a later
/// round hands it over. What is held is bounded by what the shards have in flight: their
/// requests (`globalOutstandingLimit`) and the watch events those fire.
pub struct ShardLinks {
    links: Vec<ShardLink>,
    held: std::cell::RefCell<Vec<std::collections::VecDeque<ToShard>>>,
}

impl ShardLinks {
    pub fn new(links: Vec<ShardLink>) -> Self {
        let held = links.iter().map(|_| Default::default()).collect();
        ShardLinks { links, held: std::cell::RefCell::new(held) }
    }

    /// How many shards there are.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Queues a message for a shard; never blocks (a full inbox holds it back, counted).
    pub fn send(&self, shard: u16, msg: ToShard) {
        let i = shard as usize;
        let mut held = self.held.borrow_mut();
        if held[i].is_empty() {
            match self.links[i].tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Full(m)) => held[i].push_back(m),
                Err(TrySendError::Disconnected(_)) => return,
            }
        } else {
            held[i].push_back(msg);
        }
        self.links[i].probe.add(crate::metrics::Counter::ShardInboxFull, 1);
    }

    /// Rings the doorbells of the shards in `mask` (bit `i % 64` for shard `i`).
    pub fn ring(&self, mask: u64) {
        for (i, l) in self.links.iter().enumerate() {
            if mask & (1 << (i % 64)) != 0 {
                l.bell.ring();
            }
        }
    }

    /// Hands over what full inboxes held back; returns the shards that got something.
    pub fn retry(&self) -> u64 {
        let mut held = self.held.borrow_mut();
        let mut touched = 0u64;
        for (i, q) in held.iter_mut().enumerate() {
            while let Some(m) = q.pop_front() {
                match self.links[i].tx.try_send(m) {
                    Ok(()) => touched |= 1 << (i % 64),
                    Err(TrySendError::Full(m)) => {
                        q.push_front(m);
                        break;
                    }
                    // A shard that is gone (shutting down) drops its messages.
                    Err(TrySendError::Disconnected(_)) => q.clear(),
                }
            }
        }
        touched
    }

    /// Tells every shard to stop. Blocking is fine for other shards (they drain their inboxes);
    /// the hosting shard (`host`) is running this very call, so it is neither waited for nor
    /// rung: it learns of the stop from its hosted replica's round instead.
    pub fn stop_all(&self, host: Option<u16>) {
        for (i, l) in self.links.iter().enumerate() {
            if Some(i as u16) == host {
                let _ = l.tx.try_send(ToShard::Shutdown);
                continue;
            }
            let _ = l.tx.send(ToShard::Shutdown);
            l.bell.ring();
            tracing::debug!("replica: told shard {i} to stop");
        }
    }
}

/// The replica has stopped (shutdown or a failed log); the message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStopped;

/// Where `ToReplica` messages go: the channel, plus the doorbell of the shard that hosts the
/// replica when it runs on a shard's executor, so a parked host wakes up.
#[derive(Clone)]
pub struct ReplicaTx {
    tx: Sender<ToReplica>,
    bell: Option<Arc<Doorbell>>,
}

impl ReplicaTx {
    pub fn new(tx: Sender<ToReplica>, bell: Option<Arc<Doorbell>>) -> Self {
        ReplicaTx { tx, bell }
    }
    pub fn send(&self, m: ToReplica) -> Result<(), ReplicaStopped> {
        self.tx.send(m).map_err(|_| ReplicaStopped)?;
        if let Some(b) = &self.bell {
            b.ring();
        }
        Ok(())
    }
    /// Never blocks (for shards): a full queue gives the message back.
    #[allow(clippy::result_large_err)] // the message comes back by value, to be held in order
    pub fn try_send(&self, m: ToReplica, ring: bool) -> Result<(), TrySendError<ToReplica>> {
        self.tx.try_send(m)?;
        if ring {
            if let Some(b) = &self.bell {
                b.ring();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(conn: u64) -> ToShard {
        ToShard::Close { conn, reason: "test" }
    }

    /// A full inbox never blocks the replica and never reorders or loses a message: what does
    /// not fit waits, in order, behind what did, and each one held back is counted.
    #[test]
    fn a_full_shard_inbox_holds_messages_back_in_order() {
        let metrics = crate::metrics::Metrics::new(1);
        let (tx, rx) = crossbeam_channel::bounded(2);
        let (bell, _bell_rx) = Doorbell::new().unwrap();
        let links = ShardLinks::new(vec![ShardLink { tx, bell: Arc::new(bell), probe: metrics.shard(0) }]);
        for conn in 1..=5 {
            links.send(0, close(conn));
        }
        assert_eq!(metrics.counter(crate::metrics::Counter::ShardInboxFull), 3);
        let mut got = vec![];
        while got.len() < 5 {
            links.retry();
            while let Ok(ToShard::Close { conn, .. }) = rx.try_recv() {
                got.push(conn);
            }
        }
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert!(links.held.borrow()[0].is_empty());
    }
}
