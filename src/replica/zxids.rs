//! Zxid allocation: epoch in the high 32 bits, a counter in the low 32.
//!
//! A zxid that may have been seen outside this node's own log — applied (so a client may have
//! read it in a reply header), or, in an ensemble, proposed to a peer — is *exposed* and must
//! never be handed out again: two different txns under one zxid would split the history. The one
//! legitimate take-back is of zxids the log refused (a full disk) before anything exposed them.
//! Both rules are asserted in release builds: breaking them corrupts data, so the node stops.

use crate::proto::Zxid;

#[derive(Debug)]
pub struct Zxids {
    epoch: u32,
    /// Last zxid handed out.
    last: i64,
    /// Highest zxid that may have been seen outside the log.
    exposed: i64,
}

impl Zxids {
    /// After recovery: `last` is the tree's last applied zxid, exposed by definition.
    pub fn new(last: i64) -> Self {
        Zxids { epoch: Zxid(last).epoch(), last, exposed: last }
    }

    pub fn last(&self) -> i64 {
        self.last
    }

    pub fn exposed(&self) -> i64 {
        self.exposed
    }

    pub fn issue(&mut self) -> i64 {
        let z = Zxid(self.last);
        // ZooKeeper forces a new epoch (a re-election) before the counter wraps (ZOOKEEPER-1277);
        // standalone, we open the next epoch ourselves.
        let next = if z.counter() == u32::MAX { Zxid::new(self.epoch + 1, 1) } else { Zxid(self.last + 1) };
        assert!(next.0 > self.last, "zxids must grow: 0x{:x} after 0x{:x}", next.0, self.last);
        self.epoch = next.epoch();
        self.last = next.0;
        next.0
    }

    /// A learner: `z` was numbered by the leader; it is tracked so that this server's view of
    /// the last zxid never goes back (a learner hands out none).
    pub fn adopt(&mut self, z: i64) {
        if z > self.last {
            self.last = z;
            self.epoch = Zxid(z).epoch();
        }
    }

    /// Everything up to `z` may now be seen outside the log (applied, or sent to a peer).
    pub fn expose(&mut self, z: i64) {
        assert!(z <= self.last, "exposing zxid 0x{z:x} beyond the last handed out 0x{:x}", self.last);
        self.exposed = self.exposed.max(z);
    }

    /// Takes back every zxid after `to`: the log refused them and nothing exposed them. Handing
    /// out an exposed zxid again is impossible: this panics instead.
    pub fn take_back_after(&mut self, to: i64) {
        assert!(
            to >= self.exposed,
            "taking back zxids after 0x{to:x}, but 0x{:x} was already exposed: it would be reused",
            self.exposed
        );
        assert!(to <= self.last, "taking back to 0x{to:x}, beyond the last handed out 0x{:x}", self.last);
        self.last = to;
        self.epoch = Zxid(to).epoch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_back_reissues_only_unexposed_zxids() {
        let mut z = Zxids::new(10);
        assert_eq!((z.issue(), z.issue(), z.issue()), (11, 12, 13));
        z.expose(11);
        z.take_back_after(11);
        assert_eq!(z.issue(), 12, "12 and 13 were never exposed: 12 is handed out again");
    }

    #[test]
    #[should_panic(expected = "already exposed")]
    fn taking_back_an_exposed_zxid_panics() {
        let mut z = Zxids::new(10);
        z.issue();
        z.issue();
        z.expose(12);
        z.take_back_after(11);
    }

    #[test]
    fn the_counter_rolls_into_the_next_epoch() {
        let mut z = Zxids::new(Zxid::new(3, u32::MAX).0);
        assert_eq!(z.issue(), Zxid::new(4, 1).0);
    }
}
