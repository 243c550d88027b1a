//! A doorbell lets a plain thread (the replica) wake a glommio executor that is parked in its
//! reactor. Messages travel over a crossbeam channel; the bell is one byte written to a socketpair
//! whose other end the shard awaits with io_uring. `armed` coalesces rings: the sender writes only
//! when the shard said it is about to sleep, so a busy shard costs no syscalls.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Doorbell {
    armed: AtomicBool,
    tx: UnixStream,
}

impl Doorbell {
    /// Returns the bell (shared with senders) and the receiving end for the shard.
    pub fn new() -> std::io::Result<(Doorbell, UnixStream)> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok((Doorbell { armed: AtomicBool::new(true), tx }, rx))
    }

    /// Wakes the shard if it is (about to be) asleep. Never blocks: a full socket buffer already
    /// holds a pending wake-up.
    pub fn ring(&self) {
        if self.armed.swap(false, Ordering::AcqRel) {
            let _ = (&self.tx).write(&[1]);
        }
    }

    /// The shard calls this before it drains its inbox one last time and then awaits the bell.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::Release);
    }
}
