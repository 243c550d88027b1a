//! What the election connections hand to the election, waiting to be taken: received messages
//! and reachability changes, bounded. ZooKeeper's receive queue holds 100 messages and drops the
//! oldest when full (a newer notification from the same peer supersedes it); reachability
//! changes have their own bound so that a flood of messages never pushes one out.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use super::PeerEvent;

pub struct Inbox {
    q: RefCell<VecDeque<PeerEvent>>,
    /// How many of `q` are messages.
    messages: Cell<usize>,
    messages_max: usize,
    others_max: usize,
    dropped_messages: Cell<u64>,
    dropped_others: Cell<u64>,
    wake: glommio::sync::Semaphore,
    waiting: Cell<bool>,
}

impl Inbox {
    pub fn new(messages_max: usize, others_max: usize) -> Inbox {
        assert!(messages_max >= 1 && others_max >= 1, "an inbox holds at least one of each");
        Inbox {
            q: RefCell::new(VecDeque::new()),
            messages: Cell::new(0),
            messages_max,
            others_max,
            dropped_messages: Cell::new(0),
            dropped_others: Cell::new(0),
            wake: glommio::sync::Semaphore::new(0),
            waiting: Cell::new(false),
        }
    }

    /// Never waits: a full inbox drops its oldest event of the same kind.
    pub fn push(&self, ev: PeerEvent) {
        let mut q = self.q.borrow_mut();
        let is_msg = matches!(ev, PeerEvent::Message { .. });
        let (count, max) = if is_msg {
            (self.messages.get(), self.messages_max)
        } else {
            (q.len() - self.messages.get(), self.others_max)
        };
        if count >= max {
            let oldest = q.iter().position(|e| matches!(e, PeerEvent::Message { .. }) == is_msg);
            if let Some(i) = oldest {
                q.remove(i);
            }
            let dropped = if is_msg { &self.dropped_messages } else { &self.dropped_others };
            dropped.set(dropped.get() + 1);
        } else if is_msg {
            self.messages.set(self.messages.get() + 1);
        }
        q.push_back(ev);
        assert!(self.messages.get() <= self.messages_max && q.len() <= self.messages_max + self.others_max);
        drop(q);
        if self.waiting.replace(false) {
            self.wake.signal(1);
        }
    }

    pub fn try_recv(&self) -> Option<PeerEvent> {
        let ev = self.q.borrow_mut().pop_front()?;
        if matches!(ev, PeerEvent::Message { .. }) {
            self.messages.set(self.messages.get() - 1);
        }
        Some(ev)
    }

    /// The next event, waiting for one. One task takes from an inbox. A wait given up (the
    /// future dropped) leaves at most one spare wake-up, which only makes a later wait look again.
    pub async fn recv(&self) -> PeerEvent {
        loop {
            if let Some(ev) = self.try_recv() {
                return ev;
            }
            self.waiting.set(true);
            // Nobody closes this semaphore; a wake-up re-checks the queue.
            let _ = self.wake.acquire(1).await;
        }
    }

    pub fn len(&self) -> usize {
        self.q.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.borrow().is_empty()
    }

    /// Messages dropped because the election did not take them in time.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped_messages.get()
    }

    /// Reachability changes dropped for the same reason.
    pub fn dropped_others(&self) -> u64 {
        self.dropped_others.get()
    }
}
