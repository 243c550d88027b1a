//! The safety invariants, one function each, named after what they check. The world records what
//! happened during a step ([`Seen`]) and calls [`Watch::after_step`], which runs every check.
//! A check returns `Err(what happened)`; the world stops there and reports the seed and step.

use std::collections::{BTreeMap, BTreeSet};

use super::{Entry, Txn};
use crate::quorum::{Members, PeerState, Sid};

/// One node's view as the checks need it.
pub struct NodeView<'a> {
    pub sid: Sid,
    pub up: bool,
    pub role: PeerState,
    pub epoch: u32,
    pub serving: bool,
    /// The replica's state: every applied txn, in order.
    pub state: &'a [Entry],
    /// `chain[i]`: a hash of `state[..=i]`, so two states share a prefix of length k exactly
    /// when their chains agree at k-1 (up to hash collisions, which a 64-bit mix makes moot).
    pub chain: &'a [u64],
    pub log: &'a [Entry],
}

/// What a step did that some invariant looks at.
#[derive(Debug, Clone)]
pub enum Seen {
    /// A proposal left a node (logged, sent, or installed from a snapshot).
    Proposed {
        sid: Sid,
        entry: Entry,
    },
    /// A node applied a txn (`serving` as the node was when it applied).
    Applied {
        sid: Sid,
        entry: Entry,
        role: PeerState,
        serving: bool,
    },
    /// A node asked to log `zxid` after `after` (not logged: the log stays in zxid order).
    LoggedOutOfOrder {
        sid: Sid,
        zxid: i64,
        after: i64,
    },
    /// A node's state was rebuilt (boot, truncation, snapshot): session order is rechecked.
    Rebuilt {
        sid: Sid,
    },
    /// A node's log became durable up to these entries (an ack's worth of evidence).
    Durable {
        sid: Sid,
        zxids: Vec<i64>,
    },
    PersistedAccepted {
        sid: Sid,
        old: u32,
        new: u32,
        current: u32,
    },
    PersistedCurrent {
        sid: Sid,
        old: u32,
        new: u32,
        accepted: u32,
    },
    /// A node started serving (it was not serving before this step).
    StartedServing {
        sid: Sid,
    },
}

/// What the checks remember across steps.
#[derive(Default)]
pub struct Watch {
    /// The serving leader of each epoch.
    leaders: BTreeMap<u32, Sid>,
    /// Every proposal ever seen, by zxid.
    proposals: BTreeMap<i64, Txn>,
    /// Which nodes have had each zxid durable (bit `sid`).
    holders: BTreeMap<i64, u64>,
    /// The committed history: a txn joins once a quorum held it durably and a serving node
    /// applied it; its position never changes.
    committed: Vec<Entry>,
    committed_chain: Vec<u64>,
    /// Every txn some serving leader has committed (applied while leading and serving).
    leader_committed: BTreeMap<i64, Txn>,
    /// Per node: the last cxid applied for each session in its current state.
    session_last: BTreeMap<Sid, BTreeMap<i64, i32>>,
}

/// Extends a prefix hash chain by one entry.
pub fn chain_next(prev: u64, e: &Entry) -> u64 {
    let mut h = prev ^ 0x9e37_79b9_7f4a_7c15;
    for v in [e.zxid as u64, e.txn.session as u64, e.txn.cxid as u32 as u64, e.txn.value as u64] {
        h = (h ^ v).wrapping_mul(0x1000_0000_01b3).rotate_left(29);
    }
    h
}

impl Watch {
    pub fn committed(&self) -> &[Entry] {
        &self.committed
    }

    /// Runs every invariant over what the step did and the nodes as they are after it.
    pub fn after_step(
        &mut self,
        members: &Members,
        seen: &[Seen],
        nodes: &[NodeView<'_>],
    ) -> Result<(), (&'static str, String)> {
        fn named(name: &'static str, r: Result<(), String>) -> Result<(), (&'static str, String)> {
            r.map_err(|e| (name, e))
        }
        named("zxid_never_proposed_twice", self.zxid_never_proposed_twice(seen))?;
        named("log_is_in_zxid_order", self.log_is_in_zxid_order(seen))?;
        named("epochs_never_go_backwards_on_disk", self.epochs_never_go_backwards_on_disk(seen))?;
        named("session_ops_apply_in_client_order", self.session_ops_apply_in_client_order(seen, nodes))?;
        self.record_durable(seen);
        named("at_most_one_leader_per_epoch_serving", self.at_most_one_leader_per_epoch_serving(nodes))?;
        named("all_serving_nodes_hold_the_same_prefix", self.all_serving_nodes_hold_the_same_prefix(nodes))?;
        named(
            "learner_never_applies_beyond_leader_commit",
            self.learner_never_applies_beyond_leader_commit(seen, nodes),
        )?;
        named(
            "committed_txn_never_lost_or_reordered",
            self.committed_txn_never_lost_or_reordered(members, seen, nodes),
        )?;
        Ok(())
    }

    /// A zxid names one proposal: every proposal seen with that zxid has the same content.
    pub fn zxid_never_proposed_twice(&mut self, seen: &[Seen]) -> Result<(), String> {
        for s in seen {
            if let Seen::Proposed { sid, entry } = s {
                match self.proposals.get(&entry.zxid) {
                    Some(t) if t != &entry.txn => {
                        return Err(format!(
                            "zxid {:#x} proposed twice: {:?} earlier, {:?} now by sid {sid}",
                            entry.zxid, t, entry.txn
                        ))
                    }
                    Some(_) => {}
                    None => {
                        self.proposals.insert(entry.zxid, entry.txn);
                    }
                }
            }
        }
        Ok(())
    }

    /// A node logs proposals in rising zxid order (the log and every sync decision rely on it).
    pub fn log_is_in_zxid_order(&self, seen: &[Seen]) -> Result<(), String> {
        for s in seen {
            if let Seen::LoggedOutOfOrder { sid, zxid, after } = s {
                return Err(format!("sid {sid} logged zxid {zxid:#x} after {after:#x}"));
            }
        }
        Ok(())
    }

    /// Epoch files only move forward, and the current epoch never passes the accepted one
    /// (ZooKeeper writes acceptedEpoch before it adopts an epoch as current).
    pub fn epochs_never_go_backwards_on_disk(&mut self, seen: &[Seen]) -> Result<(), String> {
        for s in seen {
            match *s {
                Seen::PersistedAccepted { sid, old, new, current } => {
                    if new < old {
                        return Err(format!("sid {sid} wrote acceptedEpoch {new} over {old}"));
                    }
                    if new < current {
                        return Err(format!(
                            "sid {sid} wrote acceptedEpoch {new} below its currentEpoch {current}"
                        ));
                    }
                }
                Seen::PersistedCurrent { sid, old, new, accepted } => {
                    if new < old {
                        return Err(format!("sid {sid} wrote currentEpoch {new} over {old}"));
                    }
                    if new > accepted {
                        return Err(format!(
                            "sid {sid} wrote currentEpoch {new} above its acceptedEpoch {accepted}"
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Within a session, ops take effect in the order the client sent them (rising cxids; a
    /// gap is an op lost with its connection, a repeat or a step back is a bug).
    pub fn session_ops_apply_in_client_order(
        &mut self,
        seen: &[Seen],
        nodes: &[NodeView<'_>],
    ) -> Result<(), String> {
        for s in seen {
            match s {
                Seen::Rebuilt { sid } => {
                    let node = nodes.iter().find(|n| n.sid == *sid).expect("a rebuilt node exists");
                    let mut last = BTreeMap::new();
                    for e in node.state {
                        let prev = last.insert(e.txn.session, e.txn.cxid);
                        if prev.is_some_and(|p| p >= e.txn.cxid) {
                            return Err(format!(
                                "sid {sid}'s rebuilt state has session {:#x} cxid {} after cxid {}",
                                e.txn.session,
                                e.txn.cxid,
                                prev.unwrap_or_default()
                            ));
                        }
                    }
                    self.session_last.insert(*sid, last);
                }
                Seen::Applied { sid, entry, .. } => {
                    let last = self.session_last.entry(*sid).or_default();
                    if let Some(p) = last.get(&entry.txn.session) {
                        if *p >= entry.txn.cxid {
                            return Err(format!(
                                "sid {sid} applied session {:#x} cxid {} after cxid {p}",
                                entry.txn.session, entry.txn.cxid
                            ));
                        }
                    }
                    last.insert(entry.txn.session, entry.txn.cxid);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn record_durable(&mut self, seen: &[Seen]) {
        for s in seen {
            if let Seen::Durable { sid, zxids } = s {
                for z in zxids {
                    *self.holders.entry(*z).or_default() |= 1 << *sid as u64;
                }
            }
        }
    }

    /// No two nodes ever serve as leader of the same epoch.
    pub fn at_most_one_leader_per_epoch_serving(&mut self, nodes: &[NodeView<'_>]) -> Result<(), String> {
        for n in nodes.iter().filter(|n| n.up && n.serving && n.role == PeerState::Leading) {
            match self.leaders.get(&n.epoch) {
                Some(s) if *s != n.sid => {
                    return Err(format!("sids {s} and {} both served as leader of epoch {}", n.sid, n.epoch))
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(n.epoch, n.sid);
                }
            }
        }
        Ok(())
    }

    /// A serving learner holds only txns some serving leader committed: it applies a proposal
    /// when the COMMIT comes, never on the PROPOSAL alone, and keeps nothing uncommitted from
    /// before its sync.
    pub fn learner_never_applies_beyond_leader_commit(
        &mut self,
        seen: &[Seen],
        nodes: &[NodeView<'_>],
    ) -> Result<(), String> {
        for n in nodes.iter().filter(|n| n.up && n.serving && n.role == PeerState::Leading) {
            // What a serving leader holds is committed (it commits its log when a quorum synced).
            for e in n.state.iter().rev() {
                if self.leader_committed.insert(e.zxid, e.txn).is_some() {
                    break;
                }
            }
        }
        let learner = |r: PeerState| matches!(r, PeerState::Following | PeerState::Observing);
        for s in seen {
            match s {
                Seen::Applied { sid, entry, role, serving: true }
                    if learner(*role) && self.leader_committed.get(&entry.zxid) != Some(&entry.txn) =>
                {
                    return Err(format!(
                        "learner sid {sid} applied zxid {:#x} ({:?}) that no serving leader committed",
                        entry.zxid, entry.txn
                    ));
                }
                Seen::StartedServing { sid } => {
                    let n = nodes.iter().find(|n| n.sid == *sid).expect("the node exists");
                    if !learner(n.role) {
                        continue;
                    }
                    if let Some(e) =
                        n.state.iter().find(|e| self.leader_committed.get(&e.zxid) != Some(&e.txn))
                    {
                        return Err(format!(
                            "learner sid {sid} started serving with zxid {:#x} ({:?}) that no serving leader committed",
                            e.zxid, e.txn
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Any two serving nodes' states agree on their common prefix.
    pub fn all_serving_nodes_hold_the_same_prefix(&self, nodes: &[NodeView<'_>]) -> Result<(), String> {
        let serving: Vec<&NodeView<'_>> = nodes.iter().filter(|n| n.up && n.serving).collect();
        for (i, a) in serving.iter().enumerate() {
            for b in &serving[i + 1..] {
                let k = a.chain.len().min(b.chain.len());
                if k > 0 && a.chain[k - 1] != b.chain[k - 1] {
                    let at = (0..k).find(|&j| a.state[j] != b.state[j]).unwrap_or(k - 1);
                    return Err(format!(
                        "serving sids {} and {} differ at position {at}: {:?} vs {:?}",
                        a.sid, b.sid, a.state[at], b.state[at]
                    ));
                }
            }
        }
        Ok(())
    }

    /// Once a quorum held zxid z durably and a serving node applied it at position i, every
    /// serving node holds the same txn at position i, forever (across crashes and leader
    /// changes), and a leader that starts serving has the whole committed history in its log.
    pub fn committed_txn_never_lost_or_reordered(
        &mut self,
        members: &Members,
        seen: &[Seen],
        nodes: &[NodeView<'_>],
    ) -> Result<(), String> {
        for n in nodes.iter().filter(|n| n.up && n.serving) {
            let k = n.chain.len().min(self.committed.len());
            if k > 0 && n.chain[k - 1] != self.committed_chain[k - 1] {
                let at = (0..k).find(|&j| n.state[j] != self.committed[j]).unwrap_or(k - 1);
                return Err(format!(
                    "serving sid {} holds {:?} at position {at} where {:?} was committed",
                    n.sid, n.state[at], self.committed[at]
                ));
            }
            // Extend the committed history with what this node applied and a quorum holds.
            for e in &n.state[k..] {
                let held = self.holders.get(&e.zxid).copied().unwrap_or(0);
                if !members.is_quorum(members.voters.iter().filter(|s| held & (1 << **s as u64) != 0)) {
                    break;
                }
                let prev = self.committed_chain.last().copied().unwrap_or(0);
                self.committed_chain.push(chain_next(prev, e));
                self.committed.push(*e);
            }
        }
        for s in seen {
            if let Seen::StartedServing { sid } = s {
                let n = nodes.iter().find(|n| n.sid == *sid).expect("the node exists");
                if n.role != PeerState::Leading {
                    continue;
                }
                // ZAB's promise: the leader of epoch e holds every txn committed in an epoch
                // before e. A txn committed in a later epoch can exist when a leader paused
                // during synchronisation resumes to acks sent before its followers moved on: a
                // deposed leader that serves only until its next quorum check, and cannot
                // commit (the newer epoch's quorum no longer acks it; other checks hold that).
                let logged: BTreeSet<(i64, Txn)> = n.log.iter().map(|e| (e.zxid, e.txn)).collect();
                let before = |e: &&Entry| crate::quorum::epoch_of(e.zxid) < n.epoch;
                if let Some(e) =
                    self.committed.iter().filter(before).find(|e| !logged.contains(&(e.zxid, e.txn)))
                {
                    return Err(format!(
                        "sid {sid} started serving as leader without committed zxid {:#x} ({:?}) in its log",
                        e.zxid, e.txn
                    ));
                }
            }
        }
        Ok(())
    }
}
