//! A quorum peer (`quorum::peer::Peer`: FastLeaderElection and ZAB's roles) driven by fake
//! peers that send whatever the input says: election notifications, and packets of any type,
//! zxid and data on the quorum connections, as a leader (when the peer follows or observes)
//! or as learners (when it leads). The harness keeps the driver's and the replica's side of
//! the contract written in `quorum::peer` (so a panic is the peer's), and checks on every step
//! that the peer keeps ZAB's promises to its replica and its disk:
//! - it never panics on a peer's input;
//! - what it logs (`Append`) grows in zxid order between truncations and snapshots, and it
//!   applies (`Commit`, `FastForward`) nothing beyond what it logged or loaded;
//! - the epochs it persists never go backwards, and the current epoch never passes the
//!   accepted one.
//!
//! To reach the states worth fuzzing, a fake peer may echo the peer's own last vote (so an
//! election decides), and zxids and epochs are mostly drawn relative to those the peer itself
//! announced.
#![no_main]
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use zkd::proto::Id;
use zkd::quorum::election::ElectionConfig;
use zkd::quorum::packet_type as t;
use zkd::quorum::peer::{Action, Input, Peer, PeerConfig, PeerInit, Role};
use zkd::quorum::wire::{LeaderMessage, LearnerInfo, LearnerMessage, Touch, ZAB_PROTOCOL_VERSION};
use zkd::quorum::zab::{Proposal, ZabConfig};
use zkd::quorum::{make_zxid, Members, Notification, PeerState, QuorumPacket, Sid, Vote};

const TICK_MS: u64 = 100;
/// Voters 1, 2, 3; observer 4; 5 and 1000 are outside the configuration.
const SIDS: [Sid; 6] = [1, 2, 3, 4, 5, 1000];
const VOTERS: [Sid; 3] = [1, 2, 3];
const OBSERVERS: [Sid; 1] = [4];
/// Bound on the ticks one time step may run (timers fire at most this often per op).
const TICKS_PER_STEP_MAX: usize = 64;

#[derive(Arbitrary, Debug)]
struct Setup {
    /// Which server this peer is (index into 1, 2, 3, 4: the last one observes).
    me: u8,
    accepted_epoch: u8,
    current_epoch: u8,
    last_counter: u32,
    tail: u8,
}

/// A zxid: raw, relative to one the peer announced, or built from an epoch near its own.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Z {
    Raw(i64),
    /// The n-th most recent zxid seen in the peer's actions, plus a small offset.
    Seen {
        back: u8,
        plus: i8,
    },
    /// make_zxid(accepted epoch + de, counter).
    Epoch {
        de: i8,
        counter: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Data {
    None,
    Raw(Vec<u8>),
    LearnerInfo {
        protocol: bool,
        config: Z,
    },
    Int(i32),
    /// A session id and a flag byte (REVALIDATE's answer), or a timeout (its question).
    Session {
        id: u8,
        flag: u8,
        timeout: bool,
    },
    /// A PING's touch table.
    Touches(Vec<(u8, i32)>),
    /// REQUEST: session, cxid, type, body.
    Request {
        session: u8,
        cxid: i32,
        typ: u8,
        body: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Time passes (tens of ms); timers run.
    Tick {
        ms: u16,
    },
    /// A notification from `from`: its own vote, or the peer's echoed (an agreeing voter), or
    /// one claiming `from` leads.
    Notify {
        from: u8,
        kind: u8,
        state: u8,
        leader: u8,
        zxid: Z,
        election_epoch: u8,
        peer_epoch: u8,
        version: bool,
        config: Option<Vec<u8>>,
    },
    ElectionPeer {
        sid: u8,
        reachable: bool,
    },
    /// Answer the pending Connect: connected, or failed.
    Connect {
        ok: bool,
    },
    /// A packet from `from` on its quorum connection.
    Packet {
        from: u8,
        typ: u8,
        zxid: Z,
        data: Data,
        auth: bool,
    },
    /// A well-formed message from the leader this peer follows, built from what the peer said
    /// (LEADERINFO with a newer epoch, DIFF/SNAP/TRUNC from its last zxid, NEWLEADER, UPTODATE,
    /// PROPOSAL/COMMIT of the next txn, PING, SYNC, a REVALIDATE answer), so that stories reach
    /// the broadcast phase.
    Leader {
        what: u8,
        arg: u8,
    },
    /// A well-formed message from a learner of this leader (FOLLOWERINFO/OBSERVERINFO, ACKEPOCH,
    /// ACK of what the peer proposed, PING, REVALIDATE, REQUEST).
    Learner {
        from: u8,
        what: u8,
        arg: u8,
    },
    /// A quorum connection drops.
    Drop {
        sid: u8,
    },
    /// The log makes the next `n` appended proposals durable.
    Durable {
        n: u8,
    },
    /// The replica proposes a write (leader serving).
    Propose {
        data: Vec<u8>,
    },
    /// Client requests on a learner that serves, or a sync on the leader.
    Forward {
        session: u8,
        typ: u8,
        data: Vec<u8>,
    },
    Sync {
        session: u8,
    },
    Touch {
        sessions: Vec<(u8, i32)>,
    },
    Revalidate {
        session: u8,
        timeout: i32,
    },
    /// The replica answers the oldest pending revalidation (leader).
    RevalidateAnswer {
        valid: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Story {
    setup: Setup,
    ops: Vec<Op>,
}

/// The packet types of Leader.java, and a few that are none.
const TYPES: [i32; 22] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0, -1, 100];

struct World {
    me: Sid,
    peer: Peer,
    now: u64,
    /// Zxids the peer announced (sent packets, notifications, appends), newest last.
    seen: VecDeque<i64>,
    /// The peer's last notification.
    last_vote: Option<Notification>,
    /// Quorum connections up (to learners when leading, to the leader when learning).
    conns: BTreeSet<Sid>,
    /// A Connect not yet answered.
    connecting: Option<Sid>,
    /// Appended, not yet reported durable.
    undurable: VecDeque<i64>,
    /// The log since the last truncation or snapshot, and the zxid it starts after.
    logged: Vec<i64>,
    base: i64,
    serving: Option<Role>,
    next_zxid: Option<i64>,
    revalidations: VecDeque<(Sid, i64)>,
    epochs: (u32, u32),
    /// The fake leader's epoch and txn counter (what its LEADERINFO and PROPOSALs carry).
    fake_epoch: u32,
    fake_counter: u32,
    /// What the peer sent as a leader: LEADERINFO's and NEWLEADER's zxids, recent PROPOSALs.
    sent_leaderinfo: Option<i64>,
    sent_newleader: Option<i64>,
    sent_proposals: VecDeque<i64>,
    /// Roles served during the story (for ZKD_FUZZ_PEER_STATS).
    roles: BTreeSet<String>,
}

impl World {
    fn zxid(&self, z: Z) -> i64 {
        match z {
            Z::Raw(v) => v,
            Z::Seen { back, plus } => {
                let n = self.seen.len();
                let base = if n == 0 { 0 } else { self.seen[n - 1 - (back as usize % n)] };
                base.wrapping_add(plus as i64)
            }
            Z::Epoch { de, counter } => make_zxid(
                (self.peer.accepted_epoch() as i64 + de as i64).clamp(0, u32::MAX as i64) as u32,
                counter as u32,
            ),
        }
    }

    fn saw(&mut self, z: i64) {
        if self.seen.len() == 64 {
            self.seen.pop_front();
        }
        self.seen.push_back(z);
    }

    fn step(&mut self, input: Input) {
        let out = self.peer.step(input, self.now);
        self.perform(out);
    }

    /// The driver and the replica carry out the peer's actions, checking its promises.
    fn perform(&mut self, out: Vec<Action>) {
        let mut queue: VecDeque<Action> = out.into();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::SendNotification { n, .. } => {
                    self.saw(n.vote.zxid);
                    self.last_vote = Some(n);
                }
                Action::Connect { leader } => self.connecting = Some(leader),
                Action::Send { to, packet } => {
                    assert!(self.conns.contains(&to), "sends to {to}, which has no connection");
                    self.saw(packet.zxid);
                    match packet.typ {
                        t::LEADERINFO => self.sent_leaderinfo = Some(packet.zxid),
                        t::NEWLEADER => self.sent_newleader = Some(packet.zxid),
                        t::PROPOSAL => {
                            if self.sent_proposals.len() == 16 {
                                self.sent_proposals.pop_front();
                            }
                            self.sent_proposals.push_back(packet.zxid);
                        }
                        _ => {}
                    }
                }
                Action::SendSnapshot { to, .. } => {
                    assert!(self.conns.contains(&to), "streams a snapshot to {to}, which has no connection");
                }
                Action::Disconnect { sid, .. } => {
                    self.conns.remove(&sid);
                    if self.connecting == Some(sid) {
                        self.connecting = None;
                    }
                }
                Action::PersistAcceptedEpoch(e) => {
                    assert!(e >= self.epochs.0, "accepted epoch goes back from {} to {e}", self.epochs.0);
                    self.epochs.0 = e;
                }
                Action::PersistCurrentEpoch(e) => {
                    assert!(e >= self.epochs.1, "current epoch goes back from {} to {e}", self.epochs.1);
                    assert!(
                        e <= self.epochs.0,
                        "current epoch {e} passes the accepted epoch {}",
                        self.epochs.0
                    );
                    self.epochs.1 = e;
                }
                Action::Append(p) => {
                    let last = self.logged.last().copied().unwrap_or(self.base);
                    assert!(p.zxid > last, "logs 0x{:x} after 0x{last:x}", p.zxid);
                    self.logged.push(p.zxid);
                    self.undurable.push_back(p.zxid);
                    self.saw(p.zxid);
                }
                Action::Commit { zxid } | Action::FastForward { zxid } => {
                    let last = self.logged.last().copied().unwrap_or(self.base);
                    assert!(zxid <= last, "applies 0x{zxid:x}, beyond what it logged (0x{last:x})");
                }
                Action::LoadSnapshot { zxid } => {
                    // The stream that follows is read and made durable before anything else
                    // from the connection; it replaces the log.
                    self.logged.clear();
                    self.undurable.clear();
                    self.base = zxid;
                    let out = self.peer.step(Input::SnapshotLoaded { zxid }, self.now);
                    queue.extend(out);
                }
                Action::Truncate { zxid } => {
                    self.logged.retain(|z| *z <= zxid);
                    self.undurable.retain(|z| *z <= zxid);
                    if self.logged.is_empty() {
                        self.base = self.base.min(zxid);
                    }
                }
                Action::Serving { role, next_zxid, .. } => {
                    self.roles.insert(format!("{role:?}"));
                    self.serving = Some(role);
                    self.next_zxid = next_zxid;
                }
                Action::StopServing { .. } => {
                    self.serving = None;
                    self.next_zxid = None;
                    self.revalidations.clear();
                }
                Action::Revalidate { from, session, .. } => self.revalidations.push_back((from, session)),
                Action::Decided { .. }
                | Action::ConfigMismatch { .. }
                | Action::NotificationTimeout { .. }
                | Action::Request { .. }
                | Action::Touch { .. }
                | Action::Revalidated { .. }
                | Action::SyncDone
                | Action::State { .. } => {}
            }
        }
    }

    fn packet_data(&self, from: Sid, d: Data) -> Option<Vec<u8>> {
        Some(match d {
            Data::None => return None,
            Data::Raw(b) => b,
            Data::LearnerInfo { protocol, config } => LearnerInfo {
                sid: from,
                protocol_version: if protocol { ZAB_PROTOCOL_VERSION } else { 0x1 },
                config_version: self.zxid(config),
            }
            .encode(),
            Data::Int(v) => v.to_be_bytes().to_vec(),
            Data::Session { id, flag, timeout } => {
                let mut b = (id as i64).to_be_bytes().to_vec();
                if timeout {
                    b.extend_from_slice(&30_000i32.to_be_bytes());
                } else {
                    b.push(flag);
                }
                b
            }
            Data::Touches(t) => t
                .iter()
                .flat_map(|(s, to)| (*s as i64).to_be_bytes().into_iter().chain(to.to_be_bytes()))
                .collect(),
            Data::Request { session, cxid, typ, body } => {
                let mut b = (session as i64).to_be_bytes().to_vec();
                b.extend_from_slice(&cxid.to_be_bytes());
                b.extend_from_slice(&(typ as i32).to_be_bytes());
                b.extend_from_slice(&body);
                b
            }
        })
    }

    fn run(&mut self, op: Op) {
        let sid = |i: u8| SIDS[i as usize % SIDS.len()];
        match op {
            Op::Tick { ms } => {
                // Timers run no later than the peer asked to be woken.
                let target = self.now + (ms as u64 % 50) * 10;
                for _ in 0..TICKS_PER_STEP_MAX {
                    let wake = self.peer.next_wake_ms();
                    if wake > target {
                        break;
                    }
                    self.now = self.now.max(wake);
                    self.step(Input::Tick);
                }
                self.now = target;
                self.step(Input::Tick);
            }
            Op::Notify { from, kind, state, leader, zxid, election_epoch, peer_epoch, version, config } => {
                let from = sid(from);
                if from == self.me {
                    return; // the election port never delivers this server's own notifications
                }
                let n = match (kind % 3, &self.last_vote) {
                    // A voter that agrees with the peer's vote.
                    (0, Some(v)) => Notification { state: PeerState::Looking, ..v.clone() },
                    // One that says it leads (or follows `leader`) in the peer's round.
                    (1, Some(v)) => Notification {
                        state: if state % 2 == 0 { PeerState::Leading } else { PeerState::Following },
                        vote: Vote { leader: if state % 2 == 0 { from } else { sid(leader) }, ..v.vote },
                        ..v.clone()
                    },
                    _ => Notification {
                        state: PeerState::from_i32((state % 4) as i32).expect("0..=3"),
                        vote: Vote {
                            leader: sid(leader),
                            zxid: self.zxid(zxid),
                            election_epoch: election_epoch as i64,
                            peer_epoch: peer_epoch as i64,
                        },
                        version: if version { 2 } else { 0 },
                        config: if version { config } else { None },
                    },
                };
                self.step(Input::Notification { from, n });
            }
            Op::ElectionPeer { sid: s, reachable } => {
                self.step(Input::ElectionPeer { sid: sid(s), reachable })
            }
            Op::Connect { ok } => {
                let Some(leader) = self.connecting.take() else { return };
                if ok {
                    self.conns.insert(leader);
                    self.step(Input::Connected { sid: leader });
                } else {
                    self.step(Input::Disconnected { sid: leader });
                }
            }
            Op::Packet { from, typ, zxid, data, auth } => {
                let from = sid(from);
                let typ = TYPES[typ as usize % TYPES.len()];
                let data = self.packet_data(from, data);
                if !self.conns.contains(&from) {
                    // A learner's driver has no connection but to its leader. A leader's driver
                    // learns a new connection's sid from its first packet (LearnerInfo) and
                    // drops a connection whose first packet names none.
                    let leading = self.peer.state() == PeerState::Leading;
                    let names_from = (typ == 11 || typ == 16)
                        && data
                            .as_deref()
                            .and_then(|d| LearnerInfo::decode(d).ok())
                            .is_some_and(|i| i.sid == from);
                    if !leading || !names_from {
                        return;
                    }
                    self.conns.insert(from);
                }
                let authinfo = auth.then(|| vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }]);
                let packet = QuorumPacket { typ, zxid: self.zxid(zxid), data, authinfo };
                self.step(Input::Packet { from, packet });
            }
            Op::Leader { what, arg } => {
                // Only on the connection to the leader this peer follows.
                let Some(leader) = self.peer.leader().filter(|l| *l != self.me && self.conns.contains(l))
                else {
                    return;
                };
                let last = self.logged.last().copied().unwrap_or(self.base);
                let m = match what % 10 {
                    0 => {
                        self.fake_epoch = self.peer.accepted_epoch() + (arg % 2) as u32;
                        self.fake_counter = 0;
                        LeaderMessage::LeaderInfo {
                            zxid: make_zxid(self.fake_epoch, 0),
                            protocol_version: ZAB_PROTOCOL_VERSION,
                        }
                    }
                    1 => match arg % 3 {
                        0 => LeaderMessage::Diff { zxid: last },
                        1 => LeaderMessage::Snap { zxid: last.max(make_zxid(self.fake_epoch, 0)) },
                        _ => LeaderMessage::Trunc { zxid: last.saturating_sub(arg as i64 / 3) },
                    },
                    2 => LeaderMessage::NewLeader { zxid: make_zxid(self.fake_epoch, 0), config: None },
                    3 => LeaderMessage::UpToDate,
                    4 | 5 => {
                        self.fake_counter += 1;
                        LeaderMessage::Proposal {
                            zxid: make_zxid(self.fake_epoch, self.fake_counter),
                            txn: vec![arg; 4],
                        }
                    }
                    6 => LeaderMessage::Commit {
                        zxid: make_zxid(self.fake_epoch, self.fake_counter.saturating_sub((arg % 3) as u32)),
                    },
                    7 => LeaderMessage::Ping { zxid: last },
                    8 => LeaderMessage::Sync,
                    _ => LeaderMessage::Revalidate { session_id: arg as i64, valid: arg % 2 == 0 },
                };
                self.step(Input::Packet { from: leader, packet: m.to_packet() });
            }
            Op::Learner { from, what, arg } => {
                let from = sid(from);
                if self.peer.state() != PeerState::Leading || from == self.me {
                    return;
                }
                let acked = |back: u8| -> i64 {
                    let n = self.sent_proposals.len();
                    if n == 0 {
                        self.sent_newleader.unwrap_or(0)
                    } else {
                        self.sent_proposals[n - 1 - (back as usize % n)]
                    }
                };
                let m = match what % 7 {
                    0 => {
                        let info = LearnerInfo {
                            sid: from,
                            protocol_version: ZAB_PROTOCOL_VERSION,
                            config_version: 0,
                        };
                        let zxid = make_zxid((arg % 4) as u32, 0);
                        if from == 4 {
                            LearnerMessage::ObserverInfo { zxid, info }
                        } else {
                            LearnerMessage::FollowerInfo { zxid, info }
                        }
                    }
                    1 => LearnerMessage::AckEpoch {
                        last_zxid: make_zxid((arg % 4) as u32, (arg / 4 % 4) as u32),
                        current_epoch: if arg >= 128 { -1 } else { (arg % 4) as i32 },
                    },
                    2 => LearnerMessage::Ack { zxid: self.sent_newleader.unwrap_or(0) },
                    3 => LearnerMessage::Ack { zxid: acked(arg) },
                    4 => LearnerMessage::Ping {
                        zxid: self.sent_leaderinfo.unwrap_or(0),
                        touches: (0..arg % 3)
                            .map(|i| Touch { session_id: i as i64, timeout_ms: 30_000 })
                            .collect(),
                    },
                    5 => LearnerMessage::Revalidate { session_id: arg as i64, timeout_ms: 30_000 },
                    _ => LearnerMessage::Request {
                        session_id: arg as i64,
                        cxid: 1,
                        op: if arg % 2 == 0 { zkd::quorum::zab::OP_SYNC } else { 1 },
                        body: vec![],
                        authinfo: None,
                    },
                };
                let packet = m.to_packet();
                if !self.conns.contains(&from) {
                    // The driver learns a connection's sid from its first packet.
                    if !matches!(m, LearnerMessage::FollowerInfo { .. } | LearnerMessage::ObserverInfo { .. })
                    {
                        return;
                    }
                    self.conns.insert(from);
                }
                self.step(Input::Packet { from, packet });
            }
            Op::Drop { sid: s } => {
                let s = sid(s);
                if self.conns.remove(&s) {
                    self.step(Input::Disconnected { sid: s });
                }
            }
            Op::Durable { n } => {
                let mut last = None;
                for _ in 0..=(n % 4) {
                    last = self.undurable.pop_front().or(last);
                }
                if let Some(zxid) = last {
                    self.step(Input::Durable { zxid });
                }
            }
            Op::Propose { data } => {
                if !matches!(self.serving, Some(Role::Leader)) {
                    return;
                }
                let Some(zxid) = self.next_zxid else { return };
                self.next_zxid = Some(zxid + 1);
                self.step(Input::Propose(Proposal { zxid, data: Arc::from(data) }));
            }
            Op::Forward { session, typ, data } => {
                // A sync goes as Input::Sync, never as a forwarded write.
                let typ = if typ as i32 == zkd::quorum::zab::OP_SYNC { 1 } else { typ as i32 };
                if matches!(self.serving, Some(Role::Follower | Role::Observer)) {
                    let input =
                        Input::Forward { session: session as i64, cxid: 1, typ, data, authinfo: vec![] };
                    self.step(input);
                }
            }
            Op::Sync { session } => {
                if matches!(self.serving, Some(Role::Leader | Role::Follower | Role::Observer)) {
                    self.step(Input::Sync {
                        session: session as i64,
                        cxid: 2,
                        data: vec![],
                        authinfo: vec![],
                    });
                }
            }
            Op::Touch { sessions } => self
                .step(Input::Touch { sessions: sessions.into_iter().map(|(s, t)| (s as i64, t)).collect() }),
            Op::Revalidate { session, timeout } => {
                if matches!(self.serving, Some(Role::Follower | Role::Observer)) {
                    self.step(Input::Revalidate { session: session as i64, timeout });
                }
            }
            Op::RevalidateAnswer { valid } => {
                if let Some((to, session)) = self.revalidations.pop_front() {
                    self.step(Input::RevalidateAnswer { to, session, valid });
                }
            }
        }
    }
}

fuzz_target!(|story: Story| {
    let s = story.setup;
    let me = [1, 2, 3, 4][s.me as usize % 4];
    let accepted = s.accepted_epoch as u32 % 4;
    let current = (s.current_epoch as u32 % 4).min(accepted);
    // The log ends in the current epoch or before; its newest txns are the tail.
    let last_epoch = current.saturating_sub(s.tail as u32 % 2);
    let last_zxid = if s.last_counter == 0 { 0 } else { make_zxid(last_epoch, s.last_counter) };
    let tail_len = (s.tail as i64 / 2 % 4).min(last_zxid & 0xffff_ffff);
    let log_tail: Vec<Proposal> =
        (0..tail_len).rev().map(|i| Proposal { zxid: last_zxid - i, data: Arc::from(&b"txn"[..]) }).collect();
    let cfg = PeerConfig {
        zab: ZabConfig {
            my_id: me,
            tick_ms: TICK_MS as i64,
            init_limit: 10,
            sync_limit: 5,
            commit_log_count: 8,
            epoch_counter_start: 0,
        },
        members: Members::new(VOTERS, OBSERVERS),
        standalone: false,
        election: ElectionConfig::default(),
        announced_config: None,
    };
    let init = PeerInit { accepted_epoch: accepted, current_epoch: current, last_zxid, log_tail };
    let Ok((peer, out)) = Peer::new(cfg, init, 0) else { return };
    let mut w = World {
        me,
        peer,
        now: 0,
        seen: VecDeque::new(),
        last_vote: None,
        conns: BTreeSet::new(),
        connecting: None,
        undurable: VecDeque::new(),
        logged: Vec::new(),
        base: last_zxid,
        serving: None,
        next_zxid: None,
        revalidations: VecDeque::new(),
        epochs: (accepted, current),
        fake_epoch: 0,
        fake_counter: 0,
        sent_leaderinfo: None,
        sent_newleader: None,
        sent_proposals: VecDeque::new(),
        roles: BTreeSet::new(),
    };
    w.perform(out);
    for op in story.ops.into_iter().take(256) {
        w.run(op);
    }
    // To see how deep the stories get: run the binary over a corpus with ZKD_FUZZ_PEER_STATS=1.
    if std::env::var_os("ZKD_FUZZ_PEER_STATS").is_some() {
        eprintln!("peer-stats: served {:?}, state {:?}, epochs {:?}", w.roles, w.peer.state(), w.epochs);
    }
});
