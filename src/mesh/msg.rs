//! Messages between shards, the replica and the log writer. Plain data, `Send`.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::proto::ops::Request;
use crate::proto::{ConnectRequest, EventType, Id};

/// A connection, named by the shard that owns it and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub shard: u16,
    pub conn: u64,
}

/// To the replica core.
pub enum ToReplica {
    /// The first packet of a connection.
    Connect {
        from: ConnRef,
        peer: SocketAddr,
        req: ConnectRequest,
    },
    /// A write (or sync / closeSession): prepped, logged, applied, answered in order.
    Write {
        from: ConnRef,
        session: i64,
        xid: i32,
        opcode: i32,
        req: Request,
        auth: Arc<Vec<Id>>,
    },
    /// A read that arrived behind a write of its session still in flight: it runs at its place
    /// in the apply order (after the session's earlier writes, before its later ones) and is
    /// answered with a `Reply` like a write.
    Read {
        from: ConnRef,
        session: i64,
        xid: i32,
        req: Box<Request>,
        auth: Arc<Vec<Id>>,
    },
    /// Sessions that showed activity since the last batch (pings included).
    Touch {
        sessions: Vec<i64>,
    },
    /// A connection went away without closing its session.
    Disconnected {
        from: ConnRef,
        session: i64,
    },
    /// The log made everything up to this zxid durable.
    Durable {
        zxid: i64,
    },
    /// The log failed; the node must stop (see `txnlog`).
    LogFailed {
        reason: String,
    },
    /// The disk is full: nothing after `last_durable_zxid` was logged.
    LogNoSpace {
        last_durable_zxid: i64,
    },
    /// From the quorum plane's I/O: an election notification, a quorum packet, a connection that
    /// came or went, a snapshot loaded.
    Quorum(crate::quorum::peer::Input),
    /// A learner's snapshot from its leader is installed as the live tree (see
    /// `quorum::link::LinkEvent::SnapshotLoaded`).
    SnapshotInstalled {
        zxid: i64,
        sessions: Vec<(i64, i32)>,
        current: bool,
    },
    /// A learner's TRUNC is done: the log ends at `zxid` and the tree was rebuilt from disk
    /// (`last_zxid`, with these sessions).
    Truncated {
        zxid: i64,
        sessions: Vec<(i64, i32)>,
        last_zxid: i64,
    },
    /// The session tracker's buckets, for `dump` (operations surface; answered at once).
    DumpSessions {
        reply: crossbeam_channel::Sender<crate::session::SessionsDump>,
    },
    Shutdown,
}

/// To a shard.
pub enum ToShard {
    /// The answer to the connection's oldest request handed to the replica (a write, or a read
    /// ordered behind one): a whole framed packet.
    Reply {
        conn: u64,
        xid: i32,
        packet: Vec<u8>,
        close: bool,
    },
    /// The handshake result: a framed ConnectResponse. `session` 0 means refused (then `close`).
    Connected {
        conn: u64,
        session: i64,
        timeout_ms: i32,
        packet: Vec<u8>,
        close: bool,
    },
    /// A watch fired for a watcher on this shard; delivered only if the connection may READ a
    /// znode with this ACL (`None`: unconditionally, as setWatches' catch-up events are).
    Watch {
        conn: u64,
        event: EventType,
        path: String,
        acl: Option<Arc<Vec<crate::proto::Acl>>>,
        /// The txn that fired it.
        zxid: i64,
    },
    /// Close the connection (session expired or moved to another connection).
    Close {
        conn: u64,
        reason: &'static str,
    },
    /// Close every client connection: the server stopped serving (it lost its leader or its
    /// quorum); clients reconnect, here once it serves again or to another server.
    CloseAll {
        reason: String,
    },
    Shutdown,
}
