//! The replica as a state machine: messages in, the exact messages to shards and log appends
//! out. No threads, sockets or clocks.

use std::cell::RefCell;
use std::sync::Arc;

use super::*;
use crate::proto::jute::Reader;
use crate::proto::{ConnectRequest, CreateRequest, ErrorCode, GetDataRequest, Id, SetDataRequest, Stat};

/// Records every message the replica sends, in order.
#[derive(Default)]
struct Rec(RefCell<Vec<(u16, ToShard)>>);

impl Links for Rec {
    fn send(&self, shard: u16, msg: ToShard) {
        self.0.borrow_mut().push((shard, msg));
    }
    fn shard_count(&self) -> u16 {
        1
    }
}

const CONN: ConnRef = ConnRef { shard: 0, conn: 7 };
const T0: Now = Now { mono_ms: 1_000_000, wall_ms: 1_700_000_000_000 };

fn cfg() -> ReplicaConfig {
    ReplicaConfig {
        server_id: 1,
        tick_ms: 100,
        min_session_timeout_ms: 200,
        max_session_timeout_ms: 20_000,
        container_check_interval_ms: 0,
        extended_types_enabled: false,
        super_digest: None,
        skip_acl: false,
        enforce_quota: false,
        snap_count: 100_000,
        snap_size_limit_bytes: 0,
    }
}

struct World {
    replica: Replica<Rec>,
    out: Outbox,
    /// Txns handed to the log and not yet reported durable.
    logged: Vec<i64>,
}

impl World {
    fn new() -> Self {
        let tree = Arc::new(DataTree::new());
        let sessions = SessionTracker::new(1, 100, T0.wall_ms);
        World {
            replica: Replica::new(cfg(), tree, sessions, Rec::default(), 0, T0),
            out: Outbox::default(),
            logged: vec![],
        }
    }

    fn step(&mut self, m: ToReplica, now: Now) {
        self.replica.step(m, now, &mut self.out);
        self.logged.extend(self.out.to_log.drain(..).map(|t| t.hdr.zxid));
    }

    /// Reports everything logged so far durable.
    fn sync_log(&mut self, now: Now) {
        if let Some(&z) = self.logged.last() {
            self.logged.clear();
            self.step(ToReplica::Durable { zxid: z }, now);
        }
    }

    fn sent(&self) -> Vec<(u16, ToShard)> {
        std::mem::take(&mut *self.replica.links.0.borrow_mut())
    }

    fn connect(&mut self) -> i64 {
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: 4000,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: false,
        };
        self.step(ToReplica::Connect { from: CONN, peer: "127.0.0.1:1".parse().unwrap(), req }, T0);
        self.sync_log(T0);
        match self.sent().as_slice() {
            [(0, ToShard::Connected { conn: 7, session, close: false, .. })] => *session,
            _ => panic!("expected exactly one Connected"),
        }
    }

    fn write(&mut self, session: i64, xid: i32, opcode: OpCode, req: Request) {
        let auth = Arc::new(vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }]);
        self.step(ToReplica::Write { from: CONN, session, xid, opcode: opcode as i32, req, auth }, T0);
    }

    fn read(&mut self, session: i64, xid: i32, req: Request) {
        let auth = Arc::new(vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }]);
        self.step(ToReplica::Read { from: CONN, session, xid, req: Box::new(req), auth }, T0);
    }
}

/// create /k "0", setData "1", getData, setData "2", getData: xids 1-5, without waiting.
fn pipeline_mixed(w: &mut World, s: i64) {
    let acl = vec![crate::proto::Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }];
    let create = CreateRequest { path: "/k".into(), data: Some(b"0".to_vec()), acl, flags: 0 };
    w.write(s, 1, OpCode::Create, Request::Create(OpCode::Create, create));
    w.write(s, 2, OpCode::SetData, set("1"));
    w.read(s, 3, get());
    w.write(s, 4, OpCode::SetData, set("2"));
    w.read(s, 5, get());
}

fn set(v: &str) -> Request {
    Request::SetData(SetDataRequest { path: "/k".into(), data: Some(v.as_bytes().to_vec()), version: -1 })
}

fn get() -> Request {
    Request::GetData(GetDataRequest { path: "/k".into(), watch: false })
}

/// A reply as (xid, reply zxid, error, body).
fn reply(m: &ToShard) -> (i32, i64, i32, Vec<u8>) {
    let ToShard::Reply { packet, xid, .. } = m else { panic!("not a reply") };
    let mut r = Reader::new(&packet[4..]);
    let (x, zxid, err) = (r.i32().unwrap(), r.i64().unwrap(), r.i32().unwrap());
    assert_eq!(x, *xid, "the packet answers the xid the message names");
    (x, zxid, err, r.rest().to_vec())
}

fn data_of(body: &[u8]) -> (String, Stat) {
    let mut r = Reader::new(body);
    let data = r.buffer().unwrap();
    let stat = Stat::decode(&mut r).unwrap();
    (String::from_utf8(data).unwrap(), stat)
}

/// The bug this guards: setData(1), getData, setData(2), getData pipelined on one session, all
/// logged in one group. Each read must see exactly its session's earlier writes (ZooKeeper's
/// order), not the later write applied in the same batch.
#[test]
fn a_read_behind_writes_sees_exactly_the_earlier_writes() {
    let mut w = World::new();
    let s = w.connect();
    pipeline_mixed(&mut w, s);
    assert!(w.sent().is_empty(), "nothing is answered before the log says durable");
    w.sync_log(T0);
    let sent = w.sent();
    let replies: Vec<_> = sent.iter().map(|(_, m)| reply(m)).collect();
    let xids: Vec<i32> = replies.iter().map(|r| r.0).collect();
    assert_eq!(xids, [1, 2, 3, 4, 5], "answers leave in request order");
    let zxids: Vec<i64> = replies.iter().map(|r| r.1).collect();
    // create = zxid 2 (the session took 1); each read carries the zxid of the write before it.
    assert_eq!(zxids, [2, 3, 3, 4, 4]);
    let (v3, st3) = data_of(&replies[2].3);
    let (v5, st5) = data_of(&replies[4].3);
    assert_eq!((v3.as_str(), st3.version, st3.mzxid), ("1", 1, 3));
    assert_eq!((v5.as_str(), st5.version, st5.mzxid), ("2", 2, 4));
}

/// A read with nothing in flight runs at once, against the applied tree.
#[test]
fn a_read_with_nothing_in_flight_is_answered_at_once() {
    let mut w = World::new();
    let s = w.connect();
    w.read(s, 9, get());
    let sent = w.sent();
    assert_eq!(sent.len(), 1);
    let (xid, zxid, err, _) = reply(&sent[0].1);
    assert_eq!((xid, zxid, err), (9, 1, ErrorCode::NoNode as i32));
}

/// Session expiry follows the monotonic clock: a wall clock set an hour ahead expires nothing,
/// and the monotonic clock passing the timeout expires the session whatever the wall clock says.
#[test]
fn session_expiry_ignores_wall_clock_steps() {
    let mut w = World::new();
    let s = w.connect();
    let jumped = Now { mono_ms: T0.mono_ms + 100, wall_ms: T0.wall_ms + 3_600_000 };
    w.replica.tick(jumped, &mut w.out);
    assert!(w.out.to_log.is_empty(), "a wall clock step must not expire sessions");
    assert!(w.replica.sessions().is_valid(s));
    let later = Now { mono_ms: T0.mono_ms + 10_000, wall_ms: T0.wall_ms - 3_600_000 };
    w.replica.tick(later, &mut w.out);
    let closes: Vec<_> = w.out.to_log.iter().map(|t| (t.hdr.client_id, t.hdr.txn_type)).collect();
    assert_eq!(closes, [(s, OpCode::CloseSession as i32)]);
}

/// The log failed with writes in flight: the node stops. Nothing more is answered — not the
/// writes in flight (each may or may not be durable), not later requests (an answer would
/// overtake the unanswered ones) — and the driver is told to stop the process.
#[test]
fn a_failed_log_stops_the_node_without_answering_anything_more() {
    let mut w = World::new();
    let s = w.connect();
    w.write(s, 1, OpCode::SetData, set("1"));
    w.read(s, 2, get());
    w.step(ToReplica::LogFailed { reason: "EIO".into() }, T0);
    let fatal = w.out.fatal.take().expect("the driver is told to stop");
    assert!(fatal.contains("EIO") && fatal.contains("2 unanswered"), "{fatal}");
    w.write(s, 3, OpCode::SetData, set("2"));
    w.read(s, 4, get());
    w.step(ToReplica::Durable { zxid: 2 }, T0);
    assert!(w.sent().is_empty(), "no answer after the log failed");
    assert!(w.logged.iter().all(|&z| z <= 2), "nothing new is logged after the log failed");
}

/// The disk filled up under pipelined writes: what the log made durable is applied and
/// answered, the rest fails with SystemError — all in request order, the read in between seeing
/// exactly the durable write — and the zxids that were never logged are handed out again.
#[test]
fn a_full_disk_fails_the_unlogged_writes_in_order_and_reuses_only_their_zxids() {
    let mut w = World::new();
    let s = w.connect();
    pipeline_mixed(&mut w, s);
    assert_eq!(w.logged, [2, 3, 4]);
    w.logged.clear();
    // The log made the create and the first setData (zxids 2, 3) durable, then hit ENOSPC.
    w.step(ToReplica::LogNoSpace { last_durable_zxid: 3 }, T0);
    let replies: Vec<_> = w.sent().iter().map(|(_, m)| reply(m)).collect();
    let got: Vec<(i32, i64, i32)> = replies.iter().map(|r| (r.0, r.1, r.2)).collect();
    let sys = ErrorCode::SystemError as i32;
    assert_eq!(got, [(1, 2, 0), (2, 3, 0), (3, 3, 0), (4, 3, sys), (5, 3, 0)]);
    assert_eq!(data_of(&replies[2].3).0, "1");
    assert_eq!(data_of(&replies[4].3).0, "1", "the failed setData(2) never took effect");
    // Refused at once while the disk is full, still in order.
    w.write(s, 6, OpCode::SetData, set("3"));
    let got: Vec<_> = w.sent().iter().map(|(_, m)| reply(m)).map(|r| (r.0, r.2)).collect();
    assert_eq!(got, [(6, sys)]);
    // Space is back: zxid 4 (never logged, never seen) is handed out again.
    w.replica.tick(Now { mono_ms: T0.mono_ms + 1_000, ..T0 }, &mut w.out);
    assert!(w.out.resume_log);
    w.write(s, 7, OpCode::SetData, set("4"));
    assert_eq!(w.logged, [4]);
}

/// A full disk: txns that still reach the log while client writes are refused (a new session's
/// createSession, an expired session's closeSession) are rejected too, and each rejection is
/// reported. Those reports must not push the retry back: clients that reconnect in a loop would
/// otherwise keep the node refusing writes long after space returned (found by `zkd lincheck`).
#[test]
fn a_full_disk_retries_after_a_second_however_many_rejections_follow() {
    let mut w = World::new();
    let _s = w.connect();
    w.step(ToReplica::LogNoSpace { last_durable_zxid: 1 }, T0);
    let at = |ms| Now { mono_ms: T0.mono_ms + ms, ..T0 };
    for ms in [300, 600, 900] {
        w.step(ToReplica::LogNoSpace { last_durable_zxid: 1 }, at(ms));
        w.replica.tick(at(ms), &mut w.out);
        assert!(!w.out.resume_log, "refusing for a second after the first rejection");
    }
    w.replica.tick(at(1_000), &mut w.out);
    assert!(w.out.resume_log, "the log is asked to resume a second after the first rejection");
}
