//! Who keeps which election connection, and what goes out on it: Apache ZooKeeper's
//! `QuorumCnxManager` rules as a pure state machine (inputs in, actions out; no sockets).
//!
//! The rules, as ZooKeeper 3.8 has them, so that zkd and Java servers agree on every pair:
//! - One connection per pair, the one the higher sid opened. A server that receives a connection
//!   from a lower sid drops it (and any connection it had with that sid) and connects back; a
//!   server that connected to a higher sid writes its handshake and drops its own connection
//!   ("Have smaller server identifier"), since the higher one will connect back.
//! - Each peer has its own send queue of `send_queue_max` messages (ZooKeeper: 1); a full queue
//!   drops its oldest message, since a newer notification supersedes it. A peer that is slow or
//!   unreachable therefore holds nothing up but its own queue.
//! - The last message written to a peer is remembered and written again first on its next
//!   connection when nothing newer waits (the peer may not have read it before the drop).
//! - Connections are opened when there is something to send (`Send`, `ConnectAll`) or when a
//!   lower sid called; a lost connection is not re-opened by itself.
//! - An observer that calls with `Long.MAX_VALUE` as its sid gets a fresh negative sid.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::PeerEvent;
use crate::quorum::wire::{Handshake, HostPort};
use crate::quorum::Sid;

/// A connection, named by the driver.
pub type ConnId = u64;

/// A message as the election hands it over: shared, because it is kept as the last one sent.
pub type Msg = Arc<[u8]>;

/// The sid an observer without one sends (`QuorumPeer.OBSERVER_ID`, Java's `Long.MAX_VALUE`).
pub const OBSERVER_ID: Sid = i64::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Queue `msg` for `sid` (ZooKeeper's `toSend`); to ourselves it is delivered at once.
    Send { sid: Sid, msg: Msg },
    /// Open a connection to every peer that has a queue and none (`connectAll`).
    ConnectAll,
    /// An accepted connection's handshake arrived; `from` names the remote end in log lines.
    Accepted { conn: ConnId, handshake: Handshake, from: String },
    /// A connection we opened to `sid` is up and our handshake is written.
    Dialed { conn: ConnId, sid: Sid },
    /// Opening a connection to `sid` failed; `reason` says how and where.
    DialFailed { sid: Sid, reason: String },
    /// The writer of `conn` wrote the message it was given.
    Written { conn: ConnId },
    /// `conn` ended (end of stream, a read or write error, a bad frame).
    Closed { conn: ConnId, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a connection to `sid` at `addr` and write our handshake, then report `Dialed` or
    /// `DialFailed`.
    Dial {
        sid: Sid,
        addr: HostPort,
    },
    /// Start reading from and writing to `conn`, the connection with `sid`.
    Start {
        conn: ConnId,
        sid: Sid,
    },
    /// Close `conn`.
    Close {
        conn: ConnId,
    },
    /// Write `msg` on `conn`, then report `Written`. At most one is outstanding per connection.
    Write {
        conn: ConnId,
        msg: Msg,
    },
    /// Hand a message to the election as if received (a message to ourselves).
    Deliver {
        sid: Sid,
        msg: Msg,
    },
    /// Report a change of reachability.
    Report(PeerEvent),
    Log {
        level: Level,
        text: String,
    },
}

#[derive(Debug, Default)]
struct Peer {
    /// The send queue; None until something was sent or a connection adopted (ZooKeeper's
    /// `queueSendMap` entry, which `ConnectAll` and `have_delivered` look at).
    queue: Option<VecDeque<Msg>>,
    last_sent: Option<Msg>,
    conn: Option<ConnId>,
    dialing: bool,
}

#[derive(Debug)]
struct Conn {
    sid: Sid,
    /// A `Write` is outstanding.
    writing: bool,
}

/// The state of every peer and connection. See the module documentation for the rules.
#[derive(Debug)]
pub struct Manager {
    my_sid: Sid,
    /// Election addresses of the configured servers.
    view: BTreeMap<Sid, HostPort>,
    send_queue_max: usize,
    peers: BTreeMap<Sid, Peer>,
    conns: BTreeMap<ConnId, Conn>,
    next_observer_sid: Sid,
    dropped_sends: u64,
}

impl Manager {
    pub fn new(my_sid: Sid, view: BTreeMap<Sid, HostPort>, send_queue_max: usize) -> Manager {
        assert!(send_queue_max >= 1, "a send queue holds at least the newest message");
        assert!(my_sid != OBSERVER_ID, "{OBSERVER_ID} is the id of an observer without one");
        Manager {
            my_sid,
            view,
            send_queue_max,
            peers: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_observer_sid: -1,
            dropped_sends: 0,
        }
    }

    pub fn my_sid(&self) -> Sid {
        self.my_sid
    }

    /// One input; the actions it leads to are appended to `out`, in order.
    pub fn step(&mut self, input: Input, out: &mut Vec<Action>) {
        match input {
            Input::Send { sid, msg } => self.send(sid, msg, out),
            Input::ConnectAll => {
                let sids: Vec<Sid> =
                    self.peers.iter().filter(|(_, p)| p.queue.is_some()).map(|(s, _)| *s).collect();
                for sid in sids {
                    self.connect_one(sid, None, out);
                }
            }
            Input::Accepted { conn, handshake, from } => self.accepted(conn, handshake, &from, out),
            Input::Dialed { conn, sid } => {
                self.peer(sid).dialing = false;
                if sid > self.my_sid {
                    out.push(log(
                        Level::Info,
                        format!(
                            "Have smaller server identifier, so dropping the connection: (myId:{} --> sid:{sid})",
                            self.my_sid
                        ),
                    ));
                    out.push(Action::Close { conn });
                } else {
                    self.adopt(conn, sid, true, out);
                }
            }
            Input::DialFailed { sid, reason } => {
                self.peer(sid).dialing = false;
                out.push(log(Level::Warn, format!("Cannot open channel to {sid}: {reason}")));
                out.push(Action::Report(PeerEvent::DialFailed { sid, reason }));
                self.forget_if_unknown(sid);
            }
            Input::Written { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.writing = false;
                    self.pump(conn, out);
                }
            }
            Input::Closed { conn, reason } => {
                // Connections already replaced or never adopted were reported then.
                let Some(c) = self.conns.remove(&conn) else { return };
                let peer = self.peer(c.sid);
                assert_eq!(peer.conn, Some(conn), "an adopted connection is its peer's current one");
                peer.conn = None;
                out.push(log(Level::Warn, format!("Connection broken for id {}: {reason}", c.sid)));
                out.push(Action::Report(PeerEvent::Lost { sid: c.sid, reason }));
                self.forget_if_unknown(c.sid);
            }
        }
    }

    /// ZooKeeper's `haveDelivered`, quirk included: true as soon as one send queue is empty,
    /// false when every queue holds something or there is none. The election calls it to choose
    /// between sending its notifications again and `ConnectAll`.
    pub fn have_delivered(&self) -> bool {
        self.peers.values().filter_map(|p| p.queue.as_ref()).any(VecDeque::is_empty)
    }

    /// Whether a connection with `sid` is up (ZooKeeper's `connectedToPeer`).
    pub fn is_connected(&self, sid: Sid) -> bool {
        self.peers.get(&sid).is_some_and(|p| p.conn.is_some())
    }

    /// Messages dropped from full send queues so far.
    pub fn dropped_sends(&self) -> u64 {
        self.dropped_sends
    }

    fn peer(&mut self, sid: Sid) -> &mut Peer {
        self.peers.entry(sid).or_default()
    }

    fn send(&mut self, sid: Sid, msg: Msg, out: &mut Vec<Action>) {
        if sid == self.my_sid {
            out.push(Action::Deliver { sid, msg });
            return;
        }
        let max = self.send_queue_max;
        let peer = self.peers.entry(sid).or_default();
        let q = peer.queue.get_or_insert_with(VecDeque::new);
        // The oldest goes: a newer notification supersedes it.
        let dropped = q.len() >= max;
        if dropped {
            q.pop_front();
        }
        q.push_back(msg);
        assert!(q.len() <= max, "a send queue never exceeds its bound");
        let conn = peer.conn;
        self.dropped_sends += dropped as u64;
        if let Some(conn) = conn {
            self.pump(conn, out);
        }
        self.connect_one(sid, None, out);
    }

    /// ZooKeeper's `connectOne`: nothing if connected or connecting; else open a connection to
    /// `addr` (an address the peer announced) or to the configured one.
    fn connect_one(&mut self, sid: Sid, addr: Option<HostPort>, out: &mut Vec<Action>) {
        assert!(sid != self.my_sid, "no connection to ourselves");
        let configured = self.view.get(&sid).cloned();
        let peer = self.peer(sid);
        if peer.conn.is_some() || peer.dialing {
            return;
        }
        let Some(addr) = addr.or(configured) else {
            out.push(log(Level::Warn, format!("Invalid server id: {sid} (not in the configuration)")));
            return;
        };
        peer.dialing = true;
        out.push(Action::Dial { sid, addr });
    }

    fn accepted(&mut self, conn: ConnId, handshake: Handshake, from: &str, out: &mut Vec<Action>) {
        let (mut sid, addr) = match handshake {
            Handshake::Legacy { sid } => {
                // ZooKeeper takes any non-negative first long as a pre-3.5 server's sid. Only a
                // configured one is taken here: anything else is a stray client or garbage.
                if !self.view.contains_key(&sid) {
                    out.push(log(
                        Level::Warn,
                        format!(
                            "dropping the election connection from {from}: its first long {sid} is neither a protocol version nor a configured server id"
                        ),
                    ));
                    out.push(Action::Close { conn });
                    return;
                }
                (sid, None)
            }
            Handshake::Initial { sid, addrs, .. } => (sid, addrs.into_iter().find(|a| !a.is_wildcard())),
        };
        if sid == OBSERVER_ID {
            sid = self.next_observer_sid;
            self.next_observer_sid -= 1;
            out.push(log(Level::Info, format!("Setting arbitrary identifier to observer: {sid}")));
        }
        if sid < self.my_sid {
            // The lower sid may still believe an older connection is up: ours goes too, and we
            // call back.
            if let Some(old) = self.peer(sid).conn {
                self.finish(old, format!("server {sid} connected again"), out);
            }
            out.push(log(Level::Debug, format!("Create new connection to server: {sid}")));
            out.push(Action::Close { conn });
            self.connect_one(sid, addr, out);
        } else if sid == self.my_sid {
            out.push(log(
                Level::Warn,
                format!(
                    "dropping the election connection from {from}: it says it is server {sid}, our own id (two servers with one myid?)"
                ),
            ));
            out.push(Action::Close { conn });
        } else {
            self.adopt(conn, sid, false, out);
        }
    }

    /// `conn` becomes the connection with `sid`, replacing any other.
    fn adopt(&mut self, conn: ConnId, sid: Sid, outgoing: bool, out: &mut Vec<Action>) {
        if let Some(old) = self.peer(sid).conn {
            self.finish(old, format!("replaced by a new connection with server {sid}"), out);
        }
        let peer = self.peer(sid);
        peer.conn = Some(conn);
        peer.queue.get_or_insert_with(VecDeque::new);
        let resend =
            if peer.queue.as_ref().is_some_and(VecDeque::is_empty) { peer.last_sent.clone() } else { None };
        let prev = self.conns.insert(conn, Conn { sid, writing: false });
        assert!(prev.is_none(), "connection {conn} adopted twice");
        out.push(Action::Start { conn, sid });
        out.push(log(
            Level::Info,
            format!(
                "Election connection with server {sid} is up ({})",
                if outgoing { "we connected" } else { "it connected" }
            ),
        ));
        out.push(Action::Report(PeerEvent::Connected { sid, outgoing }));
        match resend {
            Some(msg) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.writing = true;
                }
                out.push(Action::Write { conn, msg });
            }
            None => self.pump(conn, out),
        }
    }

    /// Hands the connection's writer the next queued message, if it is idle.
    fn pump(&mut self, conn: ConnId, out: &mut Vec<Action>) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.writing {
            return;
        }
        let sid = c.sid;
        let Some(peer) = self.peers.get_mut(&sid) else { return };
        let Some(msg) = peer.queue.as_mut().and_then(VecDeque::pop_front) else { return };
        peer.last_sent = Some(msg.clone());
        c.writing = true;
        out.push(Action::Write { conn, msg });
    }

    /// Ends an adopted connection on our side (ZooKeeper's `SendWorker.finish`).
    fn finish(&mut self, conn: ConnId, reason: String, out: &mut Vec<Action>) {
        let Some(c) = self.conns.remove(&conn) else { return };
        self.peer(c.sid).conn = None;
        out.push(Action::Close { conn });
        out.push(log(Level::Info, format!("Election connection with server {} closed: {reason}", c.sid)));
        out.push(Action::Report(PeerEvent::Lost { sid: c.sid, reason }));
    }

    /// A server outside the configuration (an observer without an id, a stranger) leaves no state
    /// behind once it is gone: strangers cannot grow the table.
    fn forget_if_unknown(&mut self, sid: Sid) {
        if self.view.contains_key(&sid) {
            return;
        }
        if self.peers.get(&sid).is_some_and(|p| p.conn.is_none() && !p.dialing) {
            self.peers.remove(&sid);
        }
    }
}

fn log(level: Level, text: String) -> Action {
    Action::Log { level, text }
}
