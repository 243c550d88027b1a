//! The manager's rules, step by step, comparing whole action lists; then the simultaneous-connect
//! race played out between two managers in every order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::manager::{Action, ConnId, Input, Level, Manager, Msg, OBSERVER_ID};
use super::PeerEvent;
use crate::quorum::wire::{Handshake, HandshakeVersion, HostPort};
use crate::quorum::Sid;

fn addr(sid: Sid) -> HostPort {
    HostPort::new("10.0.0.".to_string() + &sid.to_string(), 3888)
}

fn view(sids: &[Sid]) -> BTreeMap<Sid, HostPort> {
    sids.iter().map(|s| (*s, addr(*s))).collect()
}

fn m(my: Sid) -> Manager {
    Manager::new(my, view(&[1, 2, 3]), 1)
}

fn msg(b: &[u8]) -> Msg {
    Arc::from(b)
}

fn step(m: &mut Manager, i: Input) -> Vec<Action> {
    let mut out = Vec::new();
    m.step(i, &mut out);
    out
}

/// The actions without log lines (checked separately where they matter).
fn acts(m: &mut Manager, i: Input) -> Vec<Action> {
    step(m, i).into_iter().filter(|a| !matches!(a, Action::Log { .. })).collect()
}

fn logs(out: &[Action]) -> Vec<(Level, String)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Log { level, text } => Some((*level, text.clone())),
            _ => None,
        })
        .collect()
}

fn hello(sid: Sid) -> Handshake {
    Handshake::Initial { version: HandshakeVersion::V1, sid, addrs: vec![addr(sid)] }
}

fn send(sid: Sid, b: &[u8]) -> Input {
    Input::Send { sid, msg: msg(b) }
}

fn connected(sid: Sid, outgoing: bool) -> Action {
    Action::Report(PeerEvent::Connected { sid, outgoing })
}

#[test]
fn a_message_to_ourselves_is_delivered_at_once() {
    let mut a = m(2);
    assert_eq!(acts(&mut a, send(2, b"v")), vec![Action::Deliver { sid: 2, msg: msg(b"v") }]);
    assert!(!a.have_delivered(), "no send queue was made");
}

#[test]
fn sending_opens_one_connection_and_keeps_only_the_newest_message() {
    let mut a = m(3);
    assert_eq!(acts(&mut a, send(1, b"v1")), vec![Action::Dial { sid: 1, addr: addr(1) }]);
    // Already dialing: no second connection; the queue of one keeps the newest.
    assert_eq!(acts(&mut a, send(1, b"v2")), vec![]);
    assert_eq!(a.dropped_sends(), 1);
    // We are the higher sid: our connection stays, and the writer gets v2.
    assert_eq!(
        acts(&mut a, Input::Dialed { conn: 7, sid: 1 }),
        vec![
            Action::Start { conn: 7, sid: 1 },
            connected(1, true),
            Action::Write { conn: 7, msg: msg(b"v2") }
        ]
    );
    assert!(a.is_connected(1));
    // One write outstanding: the next waits (and supersedes nothing yet).
    assert_eq!(acts(&mut a, send(1, b"v3")), vec![]);
    assert_eq!(acts(&mut a, Input::Written { conn: 7 }), vec![Action::Write { conn: 7, msg: msg(b"v3") }]);
    assert_eq!(acts(&mut a, Input::Written { conn: 7 }), vec![]);
    assert_eq!(acts(&mut a, send(1, b"v4")), vec![Action::Write { conn: 7, msg: msg(b"v4") }]);
}

#[test]
fn connecting_to_a_higher_sid_writes_the_handshake_then_drops_the_connection() {
    let mut a = m(1);
    assert_eq!(acts(&mut a, send(3, b"v")), vec![Action::Dial { sid: 3, addr: addr(3) }]);
    let out = step(&mut a, Input::Dialed { conn: 4, sid: 3 });
    assert_eq!(
        out,
        vec![
            Action::Log {
                level: Level::Info,
                text: "Have smaller server identifier, so dropping the connection: (myId:1 --> sid:3)".into()
            },
            Action::Close { conn: 4 }
        ]
    );
    // Server 3 calls back: its connection is kept and the queued message goes out on it.
    assert_eq!(
        acts(&mut a, Input::Accepted { conn: 5, handshake: hello(3), from: "peer".into() }),
        vec![
            Action::Start { conn: 5, sid: 3 },
            connected(3, false),
            Action::Write { conn: 5, msg: msg(b"v") }
        ]
    );
}

#[test]
fn a_lower_sid_calling_is_dropped_and_called_back_at_the_address_it_announced() {
    let mut a = m(3);
    let h = Handshake::Initial {
        version: HandshakeVersion::V2,
        sid: 1,
        addrs: vec![HostPort::new("0.0.0.0", 1), HostPort::new("192.168.9.9", 4000)],
    };
    assert_eq!(
        acts(&mut a, Input::Accepted { conn: 1, handshake: h, from: "peer".into() }),
        vec![Action::Close { conn: 1 }, Action::Dial { sid: 1, addr: HostPort::new("192.168.9.9", 4000) }],
        "wildcard addresses are skipped"
    );
    // Without an address (the legacy form), the configured one.
    let mut a = m(3);
    assert_eq!(
        acts(
            &mut a,
            Input::Accepted { conn: 1, handshake: Handshake::Legacy { sid: 2 }, from: "peer".into() }
        ),
        vec![Action::Close { conn: 1 }, Action::Dial { sid: 2, addr: addr(2) }]
    );
}

#[test]
fn a_lower_sid_calling_again_ends_our_connection_with_it_too() {
    let mut a = m(3);
    acts(&mut a, send(1, b"v"));
    acts(&mut a, Input::Dialed { conn: 1, sid: 1 });
    // Server 1 restarted and calls: it no longer has our connection, so we drop ours and call.
    let out = step(&mut a, Input::Accepted { conn: 2, handshake: hello(1), from: "peer".into() });
    assert_eq!(
        out.iter().filter(|a| !matches!(a, Action::Log { .. })).cloned().collect::<Vec<_>>(),
        vec![
            Action::Close { conn: 1 },
            Action::Report(PeerEvent::Lost { sid: 1, reason: "server 1 connected again".into() }),
            Action::Close { conn: 2 },
            Action::Dial { sid: 1, addr: addr(1) },
        ]
    );
    assert!(!a.is_connected(1));
    // The old connection's reader ending later reports nothing more.
    assert_eq!(step(&mut a, Input::Closed { conn: 1, reason: "eof".into() }), vec![]);
    // On the new connection the last message goes out again: 1 may never have read it.
    assert_eq!(
        acts(&mut a, Input::Dialed { conn: 3, sid: 1 }),
        vec![
            Action::Start { conn: 3, sid: 1 },
            connected(1, true),
            Action::Write { conn: 3, msg: msg(b"v") }
        ]
    );
}

#[test]
fn a_higher_sid_calling_replaces_the_connection_we_had_with_it() {
    let mut a = m(1);
    acts(&mut a, Input::Accepted { conn: 1, handshake: hello(3), from: "peer".into() });
    assert_eq!(
        acts(&mut a, Input::Accepted { conn: 2, handshake: hello(3), from: "peer".into() }),
        vec![
            Action::Close { conn: 1 },
            Action::Report(PeerEvent::Lost {
                sid: 3,
                reason: "replaced by a new connection with server 3".into()
            }),
            Action::Start { conn: 2, sid: 3 },
            connected(3, false),
        ]
    );
    assert_eq!(acts(&mut a, Input::Closed { conn: 1, reason: "eof".into() }), vec![]);
    assert_eq!(
        acts(&mut a, Input::Closed { conn: 2, reason: "eof".into() }),
        vec![Action::Report(PeerEvent::Lost { sid: 3, reason: "eof".into() })]
    );
}

#[test]
fn a_connection_from_our_own_id_or_a_stranger_in_the_old_form_is_refused() {
    let mut a = m(2);
    let out = step(&mut a, Input::Accepted { conn: 1, handshake: hello(2), from: "peer".into() });
    assert_eq!(out.last(), Some(&Action::Close { conn: 1 }));
    assert_eq!(logs(&out).len(), 1);
    assert_eq!(logs(&out)[0].0, Level::Warn);
    // "GET / HT" read as a long: positive, so the pre-3.5 form, but no configured server.
    let garbage = i64::from_be_bytes(*b"GET / HT");
    let out = step(
        &mut a,
        Input::Accepted { conn: 2, handshake: Handshake::Legacy { sid: garbage }, from: "peer".into() },
    );
    assert_eq!(
        out.iter().filter(|a| !matches!(a, Action::Log { .. })).collect::<Vec<_>>(),
        vec![&Action::Close { conn: 2 }]
    );
    assert_eq!(logs(&out).len(), 1);
    // A stranger in the 3.5+ form is taken, as ZooKeeper takes it (a joining server), and
    // forgotten once gone.
    assert_eq!(
        acts(&mut a, Input::Accepted { conn: 3, handshake: hello(99), from: "peer".into() }),
        vec![Action::Start { conn: 3, sid: 99 }, connected(99, false)]
    );
    assert!(a.have_delivered(), "its (empty) queue counts, as in ZooKeeper");
    acts(&mut a, Input::Closed { conn: 3, reason: "eof".into() });
    assert!(!a.have_delivered(), "nothing of it is left");
}

#[test]
fn observers_without_an_id_get_negative_ones() {
    let mut a = m(2);
    let h = |port| Handshake::Initial {
        version: HandshakeVersion::V1,
        sid: OBSERVER_ID,
        addrs: vec![HostPort::new("10.9.9.9", port)],
    };
    assert_eq!(
        acts(&mut a, Input::Accepted { conn: 1, handshake: h(1), from: "peer".into() }),
        vec![Action::Close { conn: 1 }, Action::Dial { sid: -1, addr: HostPort::new("10.9.9.9", 1) }]
    );
    assert_eq!(
        acts(&mut a, Input::Accepted { conn: 2, handshake: h(2), from: "peer".into() }),
        vec![Action::Close { conn: 2 }, Action::Dial { sid: -2, addr: HostPort::new("10.9.9.9", 2) }]
    );
    assert_eq!(
        acts(&mut a, Input::Dialed { conn: 3, sid: -1 }),
        vec![Action::Start { conn: 3, sid: -1 }, connected(-1, true)]
    );
}

#[test]
fn a_failed_connect_is_reported_and_the_next_send_tries_again() {
    let mut a = m(3);
    acts(&mut a, send(2, b"v"));
    let out =
        step(&mut a, Input::DialFailed { sid: 2, reason: "connecting to 10.0.0.2:3888: timed out".into() });
    assert_eq!(
        out,
        vec![
            Action::Log {
                level: Level::Warn,
                text: "Cannot open channel to 2: connecting to 10.0.0.2:3888: timed out".into()
            },
            Action::Report(PeerEvent::DialFailed {
                sid: 2,
                reason: "connecting to 10.0.0.2:3888: timed out".into()
            }),
        ]
    );
    assert_eq!(acts(&mut a, send(2, b"w")), vec![Action::Dial { sid: 2, addr: addr(2) }]);
}

#[test]
fn an_unknown_sid_is_not_dialled() {
    let mut a = m(3);
    let out = step(&mut a, send(42, b"v"));
    assert_eq!(
        out,
        vec![Action::Log {
            level: Level::Warn,
            text: "Invalid server id: 42 (not in the configuration)".into()
        }]
    );
}

#[test]
fn connect_all_dials_every_peer_with_a_queue_and_no_connection() {
    let mut a = m(3);
    assert_eq!(acts(&mut a, Input::ConnectAll), vec![]);
    acts(&mut a, send(1, b"v"));
    acts(&mut a, send(2, b"v"));
    acts(&mut a, Input::DialFailed { sid: 1, reason: "refused".into() });
    acts(&mut a, Input::Dialed { conn: 9, sid: 2 });
    assert_eq!(acts(&mut a, Input::ConnectAll), vec![Action::Dial { sid: 1, addr: addr(1) }]);
}

#[test]
fn have_delivered_is_true_once_any_queue_is_empty() {
    let mut a = m(3);
    assert!(!a.have_delivered());
    acts(&mut a, send(1, b"v"));
    acts(&mut a, send(2, b"v"));
    assert!(!a.have_delivered(), "both queues hold a message");
    acts(&mut a, Input::Dialed { conn: 1, sid: 1 });
    assert!(a.have_delivered(), "1's queue went to its writer; 2's still waits (ZooKeeper's quirk)");
}

#[test]
fn a_lost_connection_is_reported_and_not_reopened_by_itself() {
    let mut a = m(3);
    acts(&mut a, send(1, b"v"));
    acts(&mut a, Input::Dialed { conn: 1, sid: 1 });
    let out = step(&mut a, Input::Closed { conn: 1, reason: "10.0.0.1:3888 closed the connection".into() });
    assert_eq!(
        out,
        vec![
            Action::Log {
                level: Level::Warn,
                text: "Connection broken for id 1: 10.0.0.1:3888 closed the connection".into()
            },
            Action::Report(PeerEvent::Lost { sid: 1, reason: "10.0.0.1:3888 closed the connection".into() }),
        ]
    );
    assert!(!a.is_connected(1));
    // The next send dials; the connection then carries the newest message only.
    assert_eq!(acts(&mut a, send(1, b"w")), vec![Action::Dial { sid: 1, addr: addr(1) }]);
}

/// Two managers joined by an in-memory network: every action is executed, and pending
/// deliveries happen in any order. As on a socket, an end learns that the other end closed only
/// once it reads (after its handshake was handled and it was started).
struct Pair {
    nodes: [Manager; 2],
    /// (node, input) waiting to be delivered.
    pending: Vec<(usize, Input)>,
    /// conn id → (node that holds it, the other end's conn id).
    ends: BTreeMap<ConnId, (usize, ConnId)>,
    started: BTreeMap<ConnId, Sid>,
    closed: Vec<ConnId>,
    /// Ends whose other end closed before they were started.
    orphaned: Vec<ConnId>,
    next: ConnId,
}

impl Pair {
    fn sid(n: usize) -> Sid {
        n as Sid + 1
    }

    fn new() -> Pair {
        Pair {
            nodes: [Manager::new(1, view(&[1, 2]), 1), Manager::new(2, view(&[1, 2]), 1)],
            pending: Vec::new(),
            ends: BTreeMap::new(),
            started: BTreeMap::new(),
            closed: Vec::new(),
            orphaned: Vec::new(),
            next: 1,
        }
    }

    fn run(&mut self, node: usize, input: Input) {
        let mut out = Vec::new();
        self.nodes[node].step(input, &mut out);
        for a in out {
            match a {
                Action::Dial { sid, .. } => {
                    let peer = (sid - 1) as usize;
                    let (here, there) = (self.next, self.next + 1);
                    self.next += 2;
                    self.ends.insert(here, (node, there));
                    self.ends.insert(there, (peer, here));
                    self.pending.push((node, Input::Dialed { conn: here, sid }));
                    self.pending.push((
                        peer,
                        Input::Accepted {
                            conn: there,
                            handshake: hello(Pair::sid(node)),
                            from: "peer".into(),
                        },
                    ));
                }
                Action::Start { conn, sid } => {
                    self.started.insert(conn, sid);
                    if self.orphaned.contains(&conn) {
                        self.pending.push((node, Input::Closed { conn, reason: "peer closed".into() }));
                    }
                }
                Action::Close { conn } => {
                    self.closed.push(conn);
                    let (_, other) = self.ends[&conn];
                    let (peer, _) = self.ends[&other];
                    if self.started.contains_key(&other) {
                        if !self.closed.contains(&other) {
                            self.pending
                                .push((peer, Input::Closed { conn: other, reason: "peer closed".into() }));
                        }
                    } else {
                        self.orphaned.push(other);
                    }
                }
                Action::Write { conn, .. } => self.pending.push((node, Input::Written { conn })),
                _ => {}
            }
        }
    }

    /// Connections up at both ends.
    fn live(&self) -> Vec<(ConnId, ConnId)> {
        let up = |c: &ConnId| self.started.contains_key(c) && !self.closed.contains(c);
        self.ends.iter().filter(|(c, (_, o))| up(c) && up(o) && c < &o).map(|(c, (_, o))| (*c, *o)).collect()
    }

    /// Delivers everything pending, in the order the seeded choices give.
    fn settle(&mut self, rng: &mut u64) {
        let mut steps = 0;
        while !self.pending.is_empty() {
            *rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let i = (*rng >> 33) as usize % self.pending.len();
            let (node, input) = self.pending.remove(i);
            self.run(node, input);
            steps += 1;
            assert!(steps < 1000, "no quiet state");
        }
    }
}

#[test]
fn simultaneous_connects_settle_on_one_connection_in_every_order() {
    // Both servers send at once, so both dial; the deliveries then happen in the order a seeded
    // choice gives. ZooKeeper's rules can end such a race with no connection at all (a stale
    // handshake read late replaces the fresh connection, and the other end then drops both); the
    // election's next notification, which it sends when its wait times out, connects again.
    // Never do two connections survive, and every manager's view matches the sockets.
    let mut first_round = [0usize; 2];
    for seed in 0..2000u64 {
        let mut p = Pair::new();
        let mut rng = seed;
        p.run(0, send(2, b"from 1"));
        p.run(1, send(1, b"from 2"));
        p.settle(&mut rng);
        let live = p.live();
        assert!(live.len() <= 1, "seed {seed}: at most one connection per pair, got {live:?}");
        assert_eq!(p.nodes[0].is_connected(2), live.len() == 1, "seed {seed}: server 1's view");
        assert_eq!(p.nodes[1].is_connected(1), live.len() == 1, "seed {seed}: server 2's view");
        first_round[live.len()] += 1;
        // The next rounds of notifications, from both again, until a connection stays.
        let mut rounds = 1;
        while p.live().is_empty() {
            rounds += 1;
            assert!(rounds <= 10, "seed {seed}: no connection after {rounds} rounds");
            p.run(0, send(2, b"again from 1"));
            p.run(1, send(1, b"again from 2"));
            p.settle(&mut rng);
            assert!(p.live().len() <= 1, "seed {seed}: at most one connection per pair");
        }
        let live = p.live();
        assert_eq!(live.len(), 1, "seed {seed}: one connection per pair, got {live:?}");
        assert!(p.nodes[0].is_connected(2) && p.nodes[1].is_connected(1), "seed {seed}: both ends see it");
        // It is the one server 2 (the higher sid) opened: the dialling end is the odd id.
        let (a, b) = live[0];
        let opener = if a % 2 == 1 { a } else { b };
        assert_eq!(p.ends[&opener].0, 1, "seed {seed}: server 2 opened the surviving connection");
    }
    // Both outcomes of the first round occur, so the test exercises both paths.
    assert!(first_round[0] > 0 && first_round[1] > 0, "{first_round:?}");
}

#[test]
fn the_queue_bound_holds_for_any_sequence() {
    let mut a = Manager::new(3, view(&[1, 2, 3]), 2);
    let mut q: VecDeque<u8> = VecDeque::new();
    for i in 0..50u8 {
        acts(&mut a, send(1, &[i]));
        q.push_back(i);
        if q.len() > 2 {
            q.pop_front();
        }
    }
    assert_eq!(a.dropped_sends(), 48);
    // The writer gets the two newest, oldest first.
    let got = acts(&mut a, Input::Dialed { conn: 1, sid: 1 });
    assert_eq!(got.last(), Some(&Action::Write { conn: 1, msg: msg(&[48]) }));
    assert_eq!(acts(&mut a, Input::Written { conn: 1 }), vec![Action::Write { conn: 1, msg: msg(&[49]) }]);
    assert_eq!(q, VecDeque::from([48, 49]));
}
