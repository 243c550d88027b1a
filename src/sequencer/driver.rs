//! The thread around `Sequencer`: receives from shards and the log, steps, sends, rings doorbells.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Links, Outbox, Sequencer, ToSequencer, ToShard};
use crate::shard::doorbell::Doorbell;

/// Where logged txns go. The real one is `txnlog`'s group-committing writer; it reports
/// durability back as `ToSequencer::Durable`.
pub trait LogSink: Send {
    fn append(&mut self, txns: Vec<crate::txnlog::SharedTxn>);
    /// Start a new log file (after a snapshot).
    fn roll(&mut self) {}
    /// Accept appends again after a full disk.
    fn resume(&mut self) {}
    fn shutdown(&mut self) {}
}

/// The real log: `txnlog`'s group-committing writer thread.
pub struct DurableLog {
    pub handle: Option<crate::txnlog::writer::LogHandle>,
    pub to_seq: Sender<ToSequencer>,
}

impl LogSink for DurableLog {
    fn append(&mut self, mut txns: Vec<crate::txnlog::SharedTxn>) {
        let Some(h) = &self.handle else { return };
        loop {
            match h.append_shared(txns) {
                Ok(()) => return,
                // The writer's queue is full: wait here. Blocking the sequencer is the
                // back-pressure that reaches the shards through their outstanding limits.
                Err(crate::txnlog::writer::AppendError::Full(_, t)) => {
                    txns = t;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(crate::txnlog::writer::AppendError::Stopped(_)) => {
                    let _ = self.to_seq.send(ToSequencer::LogFailed { reason: "log writer stopped".into() });
                    return;
                }
            }
        }
    }
    fn roll(&mut self) {
        if let Some(h) = &self.handle {
            let _ = h.roll();
        }
    }
    fn resume(&mut self) {
        if let Some(h) = &self.handle {
            let _ = h.resume();
        }
    }
    fn shutdown(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// Keeps nothing: every txn is "durable" at once. Only for `forceSync`-less in-memory tests.
pub struct MemoryLog {
    pub to_seq: Sender<ToSequencer>,
}

impl LogSink for MemoryLog {
    fn append(&mut self, txns: Vec<crate::txnlog::SharedTxn>) {
        if let Some(last) = txns.last() {
            let _ = self.to_seq.send(ToSequencer::Durable { zxid: last.hdr.zxid });
        }
    }
}

/// One link per shard: its inbox and its doorbell.
pub struct ShardLink {
    pub tx: Sender<ToShard>,
    pub bell: Arc<Doorbell>,
}

pub struct ShardLinks(pub Vec<ShardLink>);

impl Links for ShardLinks {
    fn send(&self, shard: u16, msg: ToShard) {
        // A shard that is gone (shutting down) drops its messages; nothing to answer there.
        let _ = self.0[shard as usize].tx.send(msg);
    }
}

impl ShardLinks {
    fn ring(&self, mask: u64) {
        for (i, l) in self.0.iter().enumerate() {
            if mask & (1 << (i % 64)) != 0 {
                l.bell.ring();
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs until `Shutdown`. `tick` is how often expiry and container checks run.
pub fn run(
    mut seq: Sequencer<ShardLinks>,
    rx: Receiver<ToSequencer>,
    mut log: Box<dyn LogSink>,
    snapshotter: Option<crate::db::Snapshotter>,
    tick: Duration,
) {
    let mut next_tick = Instant::now() + tick;
    let mut batch = Vec::with_capacity(1024);
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(m) => batch.push(m),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Take everything that is already queued: one log append (one group) per round.
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let now = now_ms();
        let mut out = Outbox::default();
        let mut stop = false;
        for m in batch.drain(..) {
            if matches!(m, ToSequencer::Shutdown) {
                stop = true;
            }
            seq.step(m, now, &mut out);
        }
        if Instant::now() >= next_tick {
            seq.tick(now, &mut out);
            next_tick = Instant::now() + tick;
        }
        if !out.to_log.is_empty() {
            log.append(std::mem::take(&mut out.to_log));
        }
        if out.resume_log {
            log.resume();
        }
        if let Some((zxid, sessions)) = out.snapshot.take() {
            if let Some(s) = &snapshotter {
                // Roll first, as ZooKeeper does: the new log starts after this point, and the
                // fuzzy snapshot is replayed from zxid + 1 on recovery.
                log.roll();
                s.start(seq.tree.clone(), zxid, sessions);
            }
        }
        seq.links.ring(out.touched_shards);
        if stop {
            break;
        }
    }
    log.shutdown();
    for (i, l) in seq.links.0.iter().enumerate() {
        let _ = l.tx.send(ToShard::Shutdown);
        l.bell.ring();
        tracing::debug!("sequencer: told shard {i} to stop");
    }
}
