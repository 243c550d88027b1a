//! A shard: one glommio executor pinned to one core, owning the client connections it accepted.
//!
//! Each shard binds its own SO_REUSEPORT listener, does all socket I/O of its connections on
//! io_uring, answers reads itself against the shared tree, and forwards writes to the replica.
//! Per-session FIFO: a connection's replies leave in request order, and a read that arrives behind
//! the session's own pending writes runs only after they are applied.
//!
//! Watch events reach a shard through its inbox *before* the change that fired them is visible in
//! the tree (the replica sends them under the tree's lock). A shard drains its inbox after every
//! read and before queuing the read's reply, so a client always sees the event first.

pub mod conn;
pub mod limits;
pub mod notify;
pub mod stats;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use futures_lite::AsyncReadExt;

use crate::config::Settings;
use crate::mesh::doorbell::Doorbell;
use crate::mesh::msg::{ToReplica, ToShard};
use crate::mesh::ReplicaTx;
use crate::metrics::{Metrics, ShardProbe};
use crate::replica::driver::ReplicaHost;
use crate::tree::DataTree;
use conn::Conn;

/// Connections per client IP across all shards (`maxClientCnxns`), refusals and churn.
pub use limits::ConnLimits;
pub use stats::ConnStats;

/// Everything a shard thread is handed at start (all `Send`).
pub struct ShardInit {
    pub id: u16,
    pub tree: Arc<DataTree>,
    pub replica_tx: ReplicaTx,
    /// The replica, when this shard's executor hosts it (small machines; see `server`).
    pub replica_host: Option<ReplicaHost>,
    pub inbox: Receiver<ToShard>,
    pub bell: Arc<Doorbell>,
    pub bell_rx: StdUnixStream,
    pub settings: Arc<Settings>,
    pub listener: std::net::TcpListener,
    pub limits: Arc<ConnLimits>,
    pub stop: Arc<AtomicBool>,
    pub probe: Arc<ShardProbe>,
    pub metrics: Arc<Metrics>,
    pub ops: Arc<dyn Ops>,
}

/// What a shard asks of the operations surface (four-letter words, `cons` and the AdminServer),
/// which implements it: shards do not depend on it.
pub trait Ops: Send + Sync {
    /// A connection was accepted: its statistics join the registry that `cons` and friends read.
    fn register(&self, c: Arc<ConnStats>);
    /// The connection closed.
    fn unregister(&self, shard: u16, id: u64);
    /// The text that answers a four-letter word. Awaiting it never blocks the shard's event loop.
    fn four_letter(&self, w: [u8; 4]) -> Pin<Box<dyn Future<Output = String> + '_>>;
}

/// The shard's state inside its executor (single-threaded: `Rc`/`RefCell`).
pub struct Shard {
    pub id: u16,
    pub tree: Arc<DataTree>,
    replica_tx: ReplicaTx,
    /// The hosted replica: run by `pump` and by the replica task, which this shard's own
    /// connections wake (`replica_kick`) after queueing to it — batched per executor turn, with no
    /// syscall and no thread hand-off.
    replica_host: Option<RefCell<ReplicaHost>>,
    replica_kick: glommio::sync::Semaphore,
    replica_kicked: Cell<bool>,
    inbox: Receiver<ToShard>,
    pub settings: Arc<Settings>,
    pub limits: Arc<ConnLimits>,
    pub stop: Arc<AtomicBool>,
    pub probe: Arc<ShardProbe>,
    pub metrics: Arc<Metrics>,
    pub ops: Arc<dyn Ops>,
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    next_conn: Cell<u64>,
    touched: RefCell<Vec<i64>>,
    /// Connections whose reply queue may be able to advance after the inbox was drained.
    dirty: RefCell<Vec<u64>>,
    /// Inbox messages held back until a read's reply has been queued (see `pump`).
    stash: RefCell<std::collections::VecDeque<ToShard>>,
    /// Signalled whenever one of this shard's requests is answered or dropped: connections that
    /// stopped reading for `globalOutstandingLimit` re-check then. (Over the limit, a shard holds
    /// more than its share of requests, so its own answers are what can end the wait.)
    pub answered: Rc<notify::LocalNotify>,
    /// Messages for the replica that its full queue could not take yet, in order.
    replica_held: RefCell<std::collections::VecDeque<ToReplica>>,
    /// Signalled when `replica_held` empties.
    pub replica_drained: notify::LocalNotify,
}

/// How often every shard's timer fires. It flushes session touches and — just as important — keeps
/// a timer armed in every executor so that a reactor that parked while work was runnable wakes
/// within this bound: glommio 0.9 can park an executor that still has runnable work when the CPU
/// is contended; tests/runtime_stress.rs exercises it.
pub const HEARTBEAT: Duration = Duration::from_millis(50);

impl Shard {
    pub fn conn(&self, id: u64) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).cloned()
    }

    fn touch(&self, session: i64) {
        self.touched.borrow_mut().push(session);
    }

    fn flush_touches(&self) {
        let mut t = self.touched.borrow_mut();
        if t.is_empty() {
            return;
        }
        t.sort_unstable();
        t.dedup();
        let sessions = std::mem::take(&mut *t);
        drop(t);
        self.to_replica(ToReplica::Touch { sessions });
    }

    /// Queues a message for the replica: a hosted one runs at the end of this executor turn,
    /// a remote one is woken through its host's doorbell or its thread's channel. Never blocks:
    /// while the replica's queue is full, messages wait here in order and the shard's
    /// connections stop reading (see `replica_backlogged`).
    pub fn to_replica(&self, m: ToReplica) {
        let mut held = self.replica_held.borrow_mut();
        if held.is_empty() {
            match self.replica_tx.try_send(m, self.replica_host.is_none()) {
                Ok(()) => {}
                Err(crossbeam_channel::TrySendError::Full(m)) => held.push_back(m),
                // The replica has stopped: the shard is stopping too.
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
            }
        } else {
            held.push_back(m);
        }
        if !held.is_empty() {
            self.probe.add(crate::metrics::Counter::ReplicaQueueFull, 1);
        }
        drop(held);
        if self.replica_host.is_some() && !self.replica_kicked.replace(true) {
            self.replica_kick.signal(1);
        }
    }

    /// Hands over what a full replica queue held back; wakes the readers once all went.
    fn retry_replica_held(&self) {
        let mut held = self.replica_held.borrow_mut();
        if held.is_empty() {
            return;
        }
        while let Some(m) = held.pop_front() {
            match self.replica_tx.try_send(m, self.replica_host.is_none()) {
                Ok(()) => {}
                Err(crossbeam_channel::TrySendError::Full(m)) => {
                    held.push_front(m);
                    return;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => held.clear(),
            }
        }
        drop(held);
        self.replica_drained.notify_all();
    }

    /// True while outstanding requests exceed `globalOutstandingLimit` (checks the shard's own
    /// share first: only a shard holding more than its share sums everyone's cells).
    pub fn over_outstanding_limit(&self, own: i64) -> bool {
        let limit = self.settings.max_outstanding as i64;
        if limit <= 0 {
            return false;
        }
        let share = (limit / self.metrics.shard_count().max(1) as i64).max(1);
        own > share && self.metrics.outstanding_total() > limit
    }

    /// True while messages for the replica wait here: connections do not read meanwhile.
    pub fn replica_backlogged(&self) -> bool {
        !self.replica_held.borrow().is_empty()
    }

    /// Runs the hosted replica's round, if any. `None` once it has shut down; otherwise
    /// whether it did anything.
    fn pump_replica(&self) -> Option<bool> {
        let Some(h) = &self.replica_host else { return Some(false) };
        self.replica_kicked.set(false);
        h.borrow_mut().pump()
    }

    /// The next inbox message, unless it is a watch event for a txn newer than `limit` (that
    /// one stays queued, in order, for after the reply being sent).
    fn next_msg(&self, limit: i64) -> Option<ToShard> {
        let m = match self.stash.borrow_mut().pop_front() {
            Some(m) => m,
            None => self.inbox.try_recv().ok()?,
        };
        if let ToShard::Watch { zxid, .. } = &m {
            if *zxid > limit {
                self.stash.borrow_mut().push_front(m);
                return None;
            }
        }
        Some(m)
    }

    /// Handles inbox messages up to (watch events of) zxid `limit`. False on shutdown.
    fn drain(&self, limit: i64) -> Result<bool, ()> {
        let mut any = false;
        while let Some(m) = self.next_msg(limit) {
            any = true;
            match m {
                ToShard::Shutdown => {
                    self.stop.store(true, Ordering::Release);
                    return Err(());
                }
                m => self.handle(m),
            }
        }
        Ok(any)
    }

    /// Handles every message in the inbox (replies land in their connection's queue), then sends
    /// each touched connection's answered prefix; repeats until quiet. Returns false on shutdown.
    ///
    /// Ordering: the reply to a read must follow the events of every change that read saw
    /// (they are in the inbox already: the replica queues events before a change becomes
    /// visible), and must precede events of later changes — in particular those of a watch the
    /// read itself registered, which a client can only accept once it has the reply. Events carry
    /// their txn's zxid and a read records the last zxid applied when it ran, so the shard
    /// delivers events up to that zxid, then the reply, then the rest. Replies from the replica
    /// and events arrive in apply order through one channel, and an event first sends the answered
    /// prefix of its connection, so the client sees them in apply order too.
    pub fn pump(&self) -> bool {
        loop {
            self.retry_replica_held();
            let Some(replica_ran) = self.pump_replica() else {
                // The hosted replica stopped (shutdown, or the log failed): so does this shard,
                // after handing out what it was sent.
                let _ = self.drain(i64::MAX);
                self.stop.store(true, Ordering::Release);
                return false;
            };
            self.retry_replica_held();
            let any = match self.drain(i64::MAX) {
                Ok(a) => a,
                Err(()) => return false,
            };
            let dirty: Vec<u64> = std::mem::take(&mut *self.dirty.borrow_mut());
            if dirty.is_empty() && !any && !replica_ran {
                return true;
            }
            for id in dirty {
                if let Some(c) = self.conn(id) {
                    c.flush_done();
                }
            }
        }
    }

    /// Delivers what a read that observed zxid `seen` must be preceded by.
    pub fn drain_for_read(&self, seen: i64) {
        let _ = self.drain(seen);
    }

    fn handle(&self, m: ToShard) {
        match m {
            ToShard::Reply { conn, xid, packet, close } => {
                if let Some(c) = self.conn(conn) {
                    c.replica_answered(xid, packet, close);
                    self.dirty.borrow_mut().push(conn);
                }
            }
            ToShard::Connected { conn, session, timeout_ms, packet, close } => {
                if let Some(c) = self.conn(conn) {
                    c.connected(self, session, timeout_ms, packet, close);
                    self.dirty.borrow_mut().push(conn);
                }
            }
            ToShard::Watch { conn, event, path, acl, .. } => {
                if let Some(c) = self.conn(conn) {
                    let allowed = self.settings.skip_acl
                        || acl.as_ref().is_none_or(|acl| {
                            crate::request::acl::check_acl(
                                acl,
                                crate::proto::perms::READ,
                                &c.auth.borrow(),
                                None,
                            )
                            .is_ok()
                        });
                    if allowed {
                        // Replies already answered were applied before this event's txn.
                        c.flush_done();
                        c.send_event(event, &path);
                    } else {
                        tracing::trace!(
                            "not delivering {event:?} {path} to connection {conn}: filtered by ACL"
                        );
                    }
                }
            }
            ToShard::Close { conn, reason } => {
                if let Some(c) = self.conn(conn) {
                    tracing::debug!("closing connection {} from {}: {reason}", conn, c.peer);
                    c.close();
                }
            }
            ToShard::CloseAll { reason } => {
                let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
                if !conns.is_empty() {
                    tracing::info!("closing {} client connection(s): {reason}", conns.len());
                }
                for c in conns {
                    c.close();
                }
            }
            ToShard::Shutdown => unreachable!("handled by pump"),
        }
    }
}

/// Runs a shard until shutdown. Called on the shard's own (pinned) thread, inside its executor.
pub async fn run(init: ShardInit) {
    let listener = unsafe {
        use std::os::fd::{FromRawFd, IntoRawFd};
        glommio::net::TcpListener::from_raw_fd(init.listener.into_raw_fd())
    };
    let bell = init.bell;
    let bell_rx = unsafe {
        use std::os::fd::{FromRawFd, IntoRawFd};
        glommio::net::UnixStream::from_raw_fd(init.bell_rx.into_raw_fd())
    };
    let shard = Rc::new(Shard {
        id: init.id,
        tree: init.tree,
        replica_tx: init.replica_tx,
        replica_host: init.replica_host.map(RefCell::new),
        replica_kick: glommio::sync::Semaphore::new(0),
        replica_kicked: Cell::new(false),
        inbox: init.inbox,
        settings: init.settings,
        limits: init.limits,
        stop: init.stop,
        probe: init.probe,
        metrics: init.metrics,
        ops: init.ops,
        conns: RefCell::new(HashMap::new()),
        next_conn: Cell::new(1),
        touched: RefCell::new(Vec::new()),
        dirty: RefCell::new(Vec::new()),
        stash: RefCell::new(std::collections::VecDeque::new()),
        answered: Rc::new(notify::LocalNotify::default()),
        replica_held: Default::default(),
        replica_drained: Default::default(),
    });

    // Heartbeat: touches, and the always-armed timer that bounds any wrongly parked reactor.
    let s = shard.clone();
    glommio::spawn_local(async move {
        while !s.stop.load(Ordering::Acquire) {
            glommio::timer::sleep(HEARTBEAT).await;
            s.flush_touches();
            s.pump();
        }
    })
    .detach();

    // Accept loop.
    if shard.replica_host.is_some() {
        let s = shard.clone();
        glommio::spawn_local(async move {
            while s.replica_kick.acquire(1).await.is_ok() {
                if !s.pump() {
                    break;
                }
            }
        })
        .detach();
    }

    let s = shard.clone();
    glommio::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => conn::start(&s, stream),
                Err(e) => {
                    if s.stop.load(Ordering::Acquire) {
                        break;
                    }
                    // EMFILE and friends: back off instead of spinning, say why once per pause.
                    tracing::warn!("shard {}: accept failed: {e}", s.id);
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .detach();

    // Inbox loop: this future's end ends the executor.
    let mut bell_rx = bell_rx;
    let mut buf = [0u8; 64];
    loop {
        if !shard.pump() {
            break;
        }
        bell.arm();
        if !shard.pump() {
            break;
        }
        match bell_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if shard.stop.load(Ordering::Acquire) {
            shard.pump();
            break;
        }
    }
    // Close every connection; their tasks finish as the executor drops.
    let conns: Vec<Rc<Conn>> = shard.conns.borrow().values().cloned().collect();
    for c in conns {
        c.close();
    }
    shard.flush_touches();
}
