//! The simulated network: TCP-like connections between node pairs, one per [`Channel`], with
//! delays, breaks and directed partitions (the fault model is in the module above).
//!
//! The network holds queues and connection states only; the world schedules the events (a
//! delivery at a message's time, a break notice, a TCP timeout) and calls back in here.

use std::collections::VecDeque;

use super::{Channel, Ms};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never opened, or broken and both ends told (a send opens a new one).
    Closed,
    /// Broken; `told_at[end]` is when each end learns of it. A send by an end that has not been
    /// told yet goes into the dead socket and is lost.
    Broken,
    /// Open (or opening: data queued before `ready_at` waits for the handshake).
    Open { ready_at: Ms },
}

struct Conn<M> {
    state: State,
    /// Bumped on every open; events carry it so a stale event never acts on a newer connection.
    gen: u64,
    /// `queue[d]`: direction 0 runs from the lower node index to the higher, 1 the other way.
    queue: [VecDeque<(Ms, M)>; 2],
    told_at: [Ms; 2],
}

/// What became of a send.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Queued; delivery is due at the time given.
    Queued(Ms),
    /// The sender writes into a socket it does not yet know is dead: lost.
    IntoDeadSocket,
    /// A new connection could not be opened across a blocked link: the sender learns at the
    /// time given (its connect times out).
    ConnectFailed { gen: u64, told_at: Ms },
}

pub struct Net<M> {
    n: usize,
    conns: Vec<Conn<M>>,
    /// `blocked[from * n + to]`: data from `from` to `to` does not get through.
    blocked: Vec<bool>,
}

/// A connection's key: the two node indices (lower first) and the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub lo: usize,
    pub hi: usize,
    pub channel: Channel,
}

impl Link {
    pub fn new(a: usize, b: usize, channel: Channel) -> Link {
        assert_ne!(a, b, "a node has no connection to itself");
        Link { lo: a.min(b), hi: a.max(b), channel }
    }

    /// The queue index for data sent by `from`.
    fn dir(&self, from: usize) -> usize {
        if from == self.lo {
            0
        } else {
            assert_eq!(from, self.hi);
            1
        }
    }

    fn end(&self, node: usize) -> usize {
        self.dir(node)
    }
}

impl<M: Clone> Net<M> {
    pub fn new(n: usize) -> Net<M> {
        let conns = (0..n * n * 2)
            .map(|_| Conn {
                state: State::Closed,
                gen: 0,
                queue: [VecDeque::new(), VecDeque::new()],
                told_at: [0; 2],
            })
            .collect();
        Net { n, conns, blocked: vec![false; n * n] }
    }

    fn idx(&self, l: Link) -> usize {
        (l.lo * self.n + l.hi) * 2 + l.channel as usize
    }

    fn conn(&mut self, l: Link) -> &mut Conn<M> {
        let i = self.idx(l);
        &mut self.conns[i]
    }

    pub fn gen(&self, l: Link) -> u64 {
        self.conns[self.idx(l)].gen
    }

    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from * self.n + to]
    }

    /// True when either direction of the pair is blocked (a TCP connection needs both).
    pub fn pair_blocked(&self, a: usize, b: usize) -> bool {
        self.is_blocked(a, b) || self.is_blocked(b, a)
    }

    pub fn set_blocked(&mut self, from: usize, to: usize, blocked: bool) {
        self.blocked[from * self.n + to] = blocked;
    }

    pub fn is_live(&self, l: Link) -> bool {
        matches!(self.conns[self.idx(l)].state, State::Open { .. })
    }

    /// Opens `l` from `from` if it is not open: the time it is ready, or why it cannot be used.
    /// `connect_ms` is the handshake time, `connect_timeout_ms` how long a failed connect takes
    /// to be noticed; `refused`: no process listens at the other end.
    pub fn open(
        &mut self,
        now: Ms,
        from: usize,
        l: Link,
        connect_ms: Ms,
        connect_timeout_ms: Ms,
        refused: bool,
    ) -> Result<Ms, Sent> {
        let blocked = self.pair_blocked(l.lo, l.hi) || refused;
        let d = l.dir(from);
        let c = self.conn(l);
        match c.state {
            State::Open { ready_at } => Ok(ready_at),
            State::Broken if c.told_at[d] > now => Err(Sent::IntoDeadSocket),
            State::Broken | State::Closed => {
                c.gen += 1;
                if blocked {
                    // The SYN does not get through (or is refused); the sender's connect fails.
                    c.state = State::Broken;
                    c.told_at = [now; 2];
                    c.told_at[d] = now + connect_timeout_ms;
                    return Err(Sent::ConnectFailed { gen: c.gen, told_at: c.told_at[d] });
                }
                // The peer accepts only once it was told the old connection is gone.
                let ready_at = (now + connect_ms).max(c.told_at[1 - d]);
                c.state = State::Open { ready_at };
                Ok(ready_at)
            }
        }
    }

    /// Sends `msg` from `from` over `l` (opening it if needed, see `open`), `delay_ms` after
    /// `now` and never before what was sent earlier in the same direction: FIFO.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        now: Ms,
        from: usize,
        l: Link,
        msg: M,
        delay_ms: Ms,
        connect_ms: Ms,
        connect_timeout_ms: Ms,
        refused: bool,
    ) -> Sent {
        let ready_at = match self.open(now, from, l, connect_ms, connect_timeout_ms, refused) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let d = l.dir(from);
        let c = self.conn(l);
        let last = c.queue[d].back().map_or(0, |(t, _)| *t);
        let at = (now + delay_ms).max(ready_at).max(last);
        c.queue[d].push_back((at, msg));
        Sent::Queued(at)
    }

    /// Takes the next message due on `l` towards `to`, if one is due by `now` and its direction
    /// is not blocked.
    pub fn take(&mut self, now: Ms, l: Link, to: usize) -> Option<M> {
        let from = if to == l.lo { l.hi } else { l.lo };
        if self.is_blocked(from, to) {
            return None;
        }
        let d = l.dir(from);
        let c = self.conn(l);
        if !matches!(c.state, State::Open { .. }) {
            return None;
        }
        match c.queue[d].front() {
            Some((at, _)) if *at <= now => c.queue[d].pop_front().map(|(_, m)| m),
            _ => None,
        }
    }

    /// Puts a message back at the head of its queue, to be delivered again (duplication).
    pub fn push_front(&mut self, now: Ms, l: Link, from: usize, msg: M) {
        let d = l.dir(from);
        self.conn(l).queue[d].push_front((now, msg));
    }

    /// Breaks the connection: both queues are dropped. `told_at[i]` is when node `i` of the
    /// pair (`lo`, `hi`) learns. Returns the generation broken, or None if it was not open.
    pub fn break_link(&mut self, l: Link, told_lo: Ms, told_hi: Ms) -> Option<u64> {
        let c = self.conn(l);
        if !matches!(c.state, State::Open { .. }) {
            return None;
        }
        c.state = State::Broken;
        c.queue[0].clear();
        c.queue[1].clear();
        c.told_at = [told_lo, told_hi];
        Some(c.gen)
    }

    /// `node` learns that generation `gen` broke; the connection is Closed once both ends know.
    /// (The notice is the node's whatever the connection did since: a new connection opens only
    /// after both ends were told, so it reaches the node before any data of the new one.)
    pub fn told(&mut self, l: Link, node: usize, gen: u64, now: Ms) {
        let e = l.end(node);
        let c = self.conn(l);
        if c.gen != gen || c.state != State::Broken {
            return;
        }
        assert!(c.told_at[e] <= now, "a break notice fires at its time");
        if c.told_at[1 - e] <= now {
            c.state = State::Closed;
        }
    }

    /// Every message still queued on `l` towards `to`, with its due time (to reschedule
    /// deliveries after a heal or a resume).
    pub fn pending_times(&self, l: Link, to: usize) -> Vec<Ms> {
        let from = if to == l.lo { l.hi } else { l.lo };
        let c = &self.conns[self.idx(l)];
        c.queue[l.dir(from)].iter().map(|(t, _)| *t).collect()
    }

    /// Every link of node count `n`, each once.
    pub fn links(n: usize) -> Vec<Link> {
        let mut v = Vec::new();
        for lo in 0..n {
            for hi in lo + 1..n {
                for channel in [Channel::Election, Channel::Quorum] {
                    v.push(Link { lo, hi, channel });
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_per_direction_even_when_a_later_message_is_faster() {
        let mut net: Net<u32> = Net::new(2);
        let l = Link::new(0, 1, Channel::Quorum);
        assert_eq!(net.send(0, 0, l, 1, 50, 0, 100, false), Sent::Queued(50));
        assert_eq!(net.send(1, 0, l, 2, 1, 0, 100, false), Sent::Queued(50), "never overtakes the first");
        assert_eq!(net.take(49, l, 1), None);
        assert_eq!(net.take(50, l, 1), Some(1));
        assert_eq!(net.take(50, l, 1), Some(2));
    }

    #[test]
    fn a_break_drops_both_queues_and_the_unaware_sender_writes_into_a_dead_socket() {
        let mut net: Net<u32> = Net::new(2);
        let l = Link::new(0, 1, Channel::Election);
        net.send(0, 0, l, 1, 5, 0, 100, false);
        net.send(0, 1, l, 2, 5, 0, 100, false);
        let gen = net.break_link(l, 10, 20).unwrap();
        assert_eq!(net.send(5, 0, l, 3, 1, 0, 100, false), Sent::IntoDeadSocket);
        net.told(l, 0, gen, 10);
        // Node 0 knows, node 1 does not yet: the new connection opens once it does.
        assert_eq!(net.send(11, 0, l, 4, 1, 0, 100, false), Sent::Queued(20));
        net.told(l, 1, gen, 20);
        assert_eq!(net.take(20, l, 1), Some(4));
        assert_eq!(net.take(20, l, 0), None);
    }

    #[test]
    fn blocked_direction_holds_data_and_connects_fail_across_it() {
        let mut net: Net<u32> = Net::new(3);
        let l = Link::new(0, 1, Channel::Quorum);
        net.send(0, 0, l, 1, 1, 0, 100, false);
        net.set_blocked(0, 1, true);
        assert_eq!(net.take(5, l, 1), None, "held while blocked");
        net.set_blocked(0, 1, false);
        assert_eq!(net.take(5, l, 1), Some(1), "flows after the heal");
        net.set_blocked(2, 1, true);
        let l2 = Link::new(1, 2, Channel::Quorum);
        assert!(matches!(net.send(0, 1, l2, 9, 1, 0, 100, false), Sent::ConnectFailed { told_at: 100, .. }));
    }
}
