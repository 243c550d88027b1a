//! What `zkd election status` and the AdminServer show: our state, round and vote, every peer's
//! last notification and link, and one sentence on why the election has not finished.

use std::fmt;

use super::{Ballot, Election};
use crate::quorum::{LearnerType, PeerState, Sid, Vote};

/// A snapshot of one server's election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionStatus {
    pub my_sid: Sid,
    pub learner_type: LearnerType,
    pub state: PeerState,
    /// The round (`logicalclock`).
    pub round: i64,
    /// Our vote in the round in progress.
    pub vote: Option<Vote>,
    /// The vote we tell peers that ask: the decided one (or the initial one before any decision).
    pub current_vote: Option<Vote>,
    /// How long the round in progress has run.
    pub looking_for_ms: Option<u64>,
    /// When we notify every voter again if nothing arrives, from now.
    pub next_notification_ms: Option<u64>,
    /// Left of the finalize window, when a quorum for our vote is waiting it out.
    pub finalize_left_ms: Option<u64>,
    /// Votes a quorum needs (a majority of the voters).
    pub quorum: usize,
    pub voters: usize,
    /// Every other member, then servers outside our configuration that notified us.
    pub peers: Vec<PeerStatus>,
    /// Why the election has not finished; None when we are not looking.
    pub waiting: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub sid: Sid,
    /// None: not in our configuration.
    pub role: Option<LearnerType>,
    /// The election connection as the driver last reported it (None: not reported).
    pub reachable: Option<bool>,
    pub last: Option<LastNotification>,
    /// Its vote in this round is ours (it counts towards our quorum).
    pub agrees: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastNotification {
    pub state: PeerState,
    pub vote: Vote,
    pub version: i32,
    pub received_ms: u64,
    pub age_ms: u64,
}

impl Election {
    pub fn status(&self, now_ms: u64) -> ElectionStatus {
        let round = self.round.as_ref();
        let ours = round.map(|_| Ballot::looking(self.proposal_vote()));
        let mut peers = Vec::new();
        let others = self.members.all().filter(|s| *s != self.my_sid);
        let strangers = self.peers.keys().copied().filter(|s| self.members.learner_type(*s).is_none());
        for sid in others.chain(strangers) {
            let p = self.peers.get(&sid);
            let agrees = match (round, ours) {
                (Some(r), Some(ours)) => r.recvset.get(&sid).is_some_and(|b| b.matches(&ours)),
                _ => false,
            };
            peers.push(PeerStatus {
                sid,
                role: self.members.learner_type(sid),
                reachable: p.and_then(|p| p.reachable),
                last: p.and_then(|p| p.last.as_ref()).map(|(n, at)| LastNotification {
                    state: n.state,
                    vote: n.vote,
                    version: n.version,
                    received_ms: *at,
                    age_ms: now_ms.saturating_sub(*at),
                }),
                agrees,
            });
        }
        ElectionStatus {
            my_sid: self.my_sid,
            learner_type: self.learner_type,
            state: self.state,
            round: self.logical_clock,
            vote: self.proposal(),
            current_vote: self.current_vote,
            looking_for_ms: round.map(|r| now_ms.saturating_sub(r.started_ms)),
            next_notification_ms: round
                .filter(|r| r.finalize_deadline_ms.is_none())
                .map(|r| r.notification_deadline_ms.saturating_sub(now_ms)),
            finalize_left_ms: round.and_then(|r| r.finalize_deadline_ms).map(|d| d.saturating_sub(now_ms)),
            quorum: self.members.voters.len() / 2 + 1,
            voters: self.members.voters.len(),
            peers,
            waiting: self.waiting(now_ms),
        }
    }

    /// One sentence (clauses joined by "; ") on what the round in progress lacks.
    fn waiting(&self, now_ms: u64) -> Option<String> {
        let Some(r) = self.round.as_ref() else {
            let idle = self.initial.is_none() && self.state == PeerState::Looking;
            return idle.then(|| "the election has not started".to_owned());
        };
        let ours = Ballot::looking(self.proposal_vote());
        let voters = &self.members.voters;
        let have = voters.iter().filter(|s| r.recvset.get(s).is_some_and(|b| b.matches(&ours))).count();
        let quorum = voters.len() / 2 + 1;
        let mut parts = Vec::new();
        if self.initial.is_some_and(|i| i.zxid == -1) {
            parts.push("our last zxid is -1, so LOOKING votes are ignored".to_owned());
        }
        let leader = if self.members.is_voter(self.proposal.leader) {
            self.proposal.leader.to_string()
        } else {
            "no one yet".to_owned()
        };
        if let Some(deadline) = r.finalize_deadline_ms {
            parts.push(format!(
                "have {have} of {} votes for {leader} in round {}, a quorum; waiting {} ms more for a better vote before deciding",
                voters.len(),
                self.logical_clock,
                deadline.saturating_sub(now_ms)
            ));
            return Some(parts.join("; "));
        }
        parts.push(format!(
            "have {have} of {} votes for {leader} in round {}; a quorum needs {quorum}",
            voters.len(),
            self.logical_clock
        ));
        let unreachable = |s: &Sid| self.peers.get(s).and_then(|p| p.reachable) == Some(false);
        let missing: Vec<Sid> = voters.iter().copied().filter(|s| !r.recvset.contains_key(s)).collect();
        if !missing.is_empty() {
            let (down, up): (Vec<Sid>, Vec<Sid>) = missing.iter().partition(|s| unreachable(s));
            let mut w = "waiting for votes from ".to_owned();
            if !up.is_empty() {
                w += &list(&up);
            }
            if !down.is_empty() {
                if !up.is_empty() {
                    w += " and from ";
                }
                w += &format!("{} (unreachable)", list(&down));
            }
            parts.push(w);
        }
        // Voters of this round that vote otherwise, grouped by whom they vote for.
        let mut elsewhere: Vec<(Vote, Vec<Sid>)> = Vec::new();
        for (sid, b) in r.recvset.iter().filter(|(s, b)| voters.contains(s) && !b.matches(&ours)) {
            match elsewhere.iter_mut().find(|(v, _)| v.leader == b.vote.leader) {
                Some((_, sids)) => sids.push(*sid),
                None => elsewhere.push((b.vote, vec![*sid])),
            }
        }
        for (v, sids) in elsewhere {
            let verb = if sids.len() == 1 { "votes" } else { "vote" };
            parts.push(format!("{} {verb} for {}", list(&sids), v.leader));
        }
        // Servers out of election: whom they follow, and what joining them lacks.
        let mut followed: Vec<(Ballot, Vec<Sid>)> = Vec::new();
        for (sid, b) in &r.outofelection {
            match followed.iter_mut().find(|(v, _)| v.vote.leader == b.vote.leader) {
                Some((_, sids)) => sids.push(*sid),
                None => followed.push((*b, vec![*sid])),
            }
        }
        for (b, sids) in followed {
            let l = b.vote.leader;
            let acks: Vec<Sid> = Election::acks(&r.outofelection, &b);
            let lacks = if !self.members.is_quorum(acks.iter()) {
                format!("{} of {} voters, a quorum needs {quorum}", acks.len(), voters.len())
            } else if l == self.my_sid {
                format!("they elected us in round {}, not our round", b.vote.election_epoch)
            } else {
                format!("{l} has not told us it is leading")
            };
            parts.push(format!("{} out of election with leader {l} ({lacks})", list(&sids)));
        }
        Some(parts.join("; "))
    }
}

fn list(sids: &[Sid]) -> String {
    sids.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

fn state_word(s: PeerState) -> &'static str {
    match s {
        PeerState::Looking => "LOOKING",
        PeerState::Following => "FOLLOWING",
        PeerState::Leading => "LEADING",
        PeerState::Observing => "OBSERVING",
    }
}

/// A candidate field of a vote: an observer's initial vote holds Long.MIN_VALUE, shown as "-".
fn num(v: i64, hex: bool) -> String {
    match (v, hex) {
        (i64::MIN, _) => "-".to_owned(),
        (v, true) if v >= 0 => format!("0x{v:x}"),
        (v, _) => v.to_string(),
    }
}

fn vote_text(v: &Vote) -> String {
    format!(
        "{} (zxid {}, peer epoch {}, round {})",
        num(v.leader, false),
        num(v.zxid, true),
        num(v.peer_epoch, true),
        v.election_epoch
    )
}

impl fmt::Display for ElectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.learner_type {
            LearnerType::Participant => "participant",
            LearnerType::Observer => "observer",
        };
        write!(f, "server {} ({role}): {}, round {}", self.my_sid, state_word(self.state), self.round)?;
        if let Some(ms) = self.looking_for_ms {
            write!(f, ", looking for {ms} ms")?;
        }
        writeln!(f, "; {} voters, a quorum is {}", self.voters, self.quorum)?;
        if let Some(v) = &self.vote {
            write!(f, "our vote: {}", vote_text(v))?;
            if let Some(ms) = self.next_notification_ms {
                write!(f, "; notifying everyone again in {ms} ms")?;
            }
            writeln!(f)?;
        }
        if let Some(v) = &self.current_vote {
            writeln!(f, "current vote: {}", vote_text(v))?;
        }
        if let Some(w) = &self.waiting {
            writeln!(f, "waiting: {w}")?;
        }
        let head = ["sid", "role", "link", "state", "leader", "zxid", "round", "peer epoch", "age", "agrees"];
        let mut rows: Vec<[String; 10]> = vec![head.map(str::to_owned)];
        for p in &self.peers {
            let role = match p.role {
                Some(LearnerType::Participant) => "participant",
                Some(LearnerType::Observer) => "observer",
                None => "not ours",
            };
            let link = match p.reachable {
                Some(true) => "up",
                Some(false) => "down",
                None => "?",
            };
            let dash = || "-".to_owned();
            let (state, leader, zxid, round, epoch, age) = match &p.last {
                Some(l) => (
                    state_word(l.state).to_owned(),
                    num(l.vote.leader, false),
                    num(l.vote.zxid, true),
                    l.vote.election_epoch.to_string(),
                    num(l.vote.peer_epoch, true),
                    format!("{} ms", l.age_ms),
                ),
                None => (dash(), dash(), dash(), dash(), dash(), dash()),
            };
            let agrees = if p.agrees { "yes" } else { "" }.to_owned();
            rows.push([
                p.sid.to_string(),
                role.to_owned(),
                link.to_owned(),
                state,
                leader,
                zxid,
                round,
                epoch,
                age,
                agrees,
            ]);
        }
        let mut widths = [0usize; 10];
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.len());
            }
        }
        for r in &rows {
            let line: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            writeln!(f, "{}", line.join("  ").trim_end())?;
        }
        Ok(())
    }
}
