//! Wakes every task of this executor that waits on it: back-pressure waits for the condition
//! that ends it (a reply buffer drained, a request answered) instead of polling a timer.

use std::cell::Cell;

use glommio::sync::Semaphore;

pub struct LocalNotify {
    sem: Semaphore,
    waiters: Cell<u64>,
}

impl Default for LocalNotify {
    fn default() -> Self {
        LocalNotify { sem: Semaphore::new(0), waiters: Cell::new(0) }
    }
}

impl LocalNotify {
    /// Returns after the next `notify_all` (callers re-check their condition).
    pub async fn wait(&self) {
        self.waiters.set(self.waiters.get() + 1);
        // A closed semaphore ends the wait too; nobody closes this one.
        let _ = self.sem.acquire(1).await;
    }

    /// Wakes everyone waiting now. Cheap when nobody waits.
    pub fn notify_all(&self) {
        let n = self.waiters.replace(0);
        if n > 0 {
            self.sem.signal(n);
        }
    }
}
