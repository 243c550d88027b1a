//! The quorum port: the TCP connections between a leader and its learners, on glommio (the
//! replica core's executor). ZooKeeper's `LearnerCnxAcceptor` and `LearnerHandler` sockets on
//! the leader, `Learner.connectToLeader` on a learner.
//!
//! A thin driver under `quorum::peer`: it performs the peer's `Connect`, `Send`,
//! `SendSnapshot`, `Disconnect` and `LoadSnapshot` actions and reports what the sockets do as
//! [`LinkEvent`]s (the peer's `Connected`, `Packet`, `Disconnected` and `SnapshotLoaded`
//! inputs). It decides nothing about the protocol; liveness is the peer's (its syncLimit
//! timers run on `Tick`), not a socket read timeout.
//!
//! - Leader side ([`QuorumLink::listen`], while leading, as ZooKeeper binds only then): accepts
//!   learners, learns each connection's sid from its first packet (FOLLOWERINFO or
//!   OBSERVERINFO, whose LearnerInfo names it), keeps at most one connection per sid (the old
//!   one is reported `Disconnected` before any packet of the new one).
//! - Learner side ([`QuorumLink::connect`]): connects to the leader's quorum address as
//!   ZooKeeper 3.8's `LeaderConnector` does (up to 5 tries, 100 ms apart, all within
//!   tickTime × initLimit), then reports `Connected` or `Disconnected`.
//! - Every connection reads QuorumPackets with the stream decoder (each length bounded by
//!   jute.maxbuffer plus slack before anything is allocated: a bad stream costs that connection
//!   and one log line) and writes from its own bounded send queue with its own writer task, one
//!   write per burst (TCP_NODELAY on, as ZooKeeper sets it), so a slow peer never delays
//!   another; a peer whose queue overflows is disconnected with a line naming it.
//! - SNAP: the leader's snapshot stream is written in the connection's order, right where
//!   `send_snapshot` was called (`snap_send`); a learner's reader stops after a SNAP packet
//!   until `load_snapshot`, then reads the stream into a new tree and snapshot file
//!   (`snap_load`), which `SyncStorage` installs, before it delivers anything that followed.
//!
//! Events reach the host through one bounded queue ([`QuorumLink::next_event`]); a reader
//! waits for room before it reads on. Events of a connection the peer itself disconnected (or
//! replaced with a new `Connect`) are dropped when taken: the peer must never see a stale
//! `Disconnected` after it started over with the same server.

mod conn;
mod snap_load;
mod snap_send;

pub use snap_load::{SnapLimits, SnapLoadError};

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;

use crate::quorum::sync_storage::SyncStorage;
use crate::quorum::zab::Input;
use crate::quorum::{QuorumPacket, Sid};
use crate::tls::quorum::QStream;
use conn::{Conn, Side};

/// The link's settings (from zoo.cfg).
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub my_id: Sid,
    /// Where learners reach this server when it leads: its quorum address, or the wildcard
    /// with the quorum port under `quorumListenOnAllIPs` (see [`LinkConfig::listen_addrs`]).
    pub listen: Vec<SocketAddr>,
    /// Every server's quorum address (`server.N=host:quorumPort:...`), for connecting to a
    /// leader.
    pub quorum_addrs: HashMap<Sid, SocketAddr>,
    /// Bound of a packet's data and of every length in a snapshot stream:
    /// `wire::packet_data_max(jute.maxbuffer)`.
    pub packet_data_max: usize,
    /// How long a learner may try to connect: tickTime × initLimit (or
    /// connectToLearnerMasterLimit when set), as ZooKeeper's `LeaderConnector`.
    pub connect_timeout: Duration,
    /// `LeaderConnector`'s tries (5) and the pause between them
    /// (`zookeeper.leaderConnectDelayDuringRetryMs`, 100 ms).
    pub connect_tries: u32,
    pub connect_retry_delay: Duration,
    /// Bytes a connection's send queue may hold; one more packet disconnects the peer.
    /// ZooKeeper's queue has no bound; this one must hold a sync's burst (up to
    /// commitLogCount proposals) and what queues while a snapshot streams.
    pub send_queue_max_bytes: usize,
    /// Events queued for the host before readers wait.
    pub events_max: usize,
    /// Connections accepted at once, identified or not; more are closed at once.
    pub accepted_max: usize,
    /// Size of the pieces a snapshot is streamed and written in (the core yields between them).
    pub snapshot_chunk_bytes: usize,
    pub snap_limits: SnapLimits,
    /// `sslQuorum` / `portUnification`: TLS on these connections (None: plain TCP).
    pub tls: Option<std::sync::Arc<crate::tls::quorum::QuorumTls>>,
    /// `quorum.auth.enableSasl=true`: DIGEST-MD5 before the first packet (None: no quorum SASL).
    pub sasl: Option<std::sync::Arc<crate::quorum::auth::QuorumSaslSettings>>,
    /// The host of each server line, which a leader's certificate must name (hostname
    /// verification); absent: the address's IP.
    pub quorum_hosts: HashMap<Sid, String>,
}

impl LinkConfig {
    /// Settings with ZooKeeper's defaults for `my_id` (listening on `listen`, connecting to
    /// `quorum_addrs`), for jute.maxbuffer `jute_max_buffer` and a connect budget of
    /// tickTime × initLimit.
    pub fn new(
        my_id: Sid,
        listen: Vec<SocketAddr>,
        quorum_addrs: HashMap<Sid, SocketAddr>,
        jute_max_buffer: usize,
        connect_timeout: Duration,
    ) -> LinkConfig {
        let max = crate::quorum::wire::packet_data_max(jute_max_buffer);
        LinkConfig {
            my_id,
            listen,
            quorum_addrs,
            packet_data_max: max,
            connect_timeout,
            connect_tries: 5,
            connect_retry_delay: Duration::from_millis(100),
            send_queue_max_bytes: 256 << 20,
            events_max: 4096,
            accepted_max: 1024,
            snapshot_chunk_bytes: 256 << 10,
            snap_limits: SnapLimits::new(max),
            tls: None,
            sasl: None,
            quorum_hosts: HashMap::new(),
        }
    }

    /// The addresses a leader listens on (`Leader`'s server sockets): its own quorum address,
    /// or, with `quorumListenOnAllIPs`, the wildcard address of the same family and port.
    pub fn listen_addrs(quorum_addr: SocketAddr, on_all_ips: bool) -> Vec<SocketAddr> {
        if !on_all_ips {
            return vec![quorum_addr];
        }
        let any: std::net::IpAddr = match quorum_addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        vec![SocketAddr::new(any, quorum_addr.port())]
    }
}

/// What the link reports to the host.
#[derive(Debug)]
pub enum LinkEvent {
    /// For `Peer::step`: `Connected`, `Packet` or `Disconnected`.
    Input(Input),
    /// `LoadSnapshot` finished: the leader's snapshot at `zxid` is durable and is now the live
    /// tree. The host gives the replica these sessions (id, timeout ms), then feeds
    /// `Input::SnapshotLoaded { zxid }` if `current` — false when the peer disconnected the
    /// leader while the snapshot was being installed (installing is not interrupted once the
    /// disk changes; the peer, which started over meanwhile, must not be told).
    SnapshotLoaded { zxid: i64, sessions: Vec<(i64, i32)>, current: bool },
    /// Installing a snapshot failed after the disk began to change: the process must stop.
    Fatal(String),
}

/// Wakes every task waiting on it (tasks re-check their condition after a wake).
struct Notify {
    sem: Semaphore,
    waiters: Cell<u64>,
}

impl Notify {
    fn new() -> Notify {
        Notify { sem: Semaphore::new(0), waiters: Cell::new(0) }
    }
    async fn wait(&self) {
        self.waiters.set(self.waiters.get() + 1);
        // Nobody closes it.
        let _ = self.sem.acquire(1).await;
    }
    fn notify_all(&self) {
        let n = self.waiters.replace(0);
        if n > 0 {
            self.sem.signal(n);
        }
    }
}

/// An event with the (sid, generation) it belongs to, checked when it is taken.
struct Queued {
    event: LinkEvent,
    tag: Option<(Sid, u64)>,
}

/// A learner's attempt to reach its leader.
struct Connecting {
    cancelled: Cell<bool>,
    /// The leader's generation when the attempt began: its events carry it.
    gen: u64,
}

pub(crate) struct Inner {
    cfg: LinkConfig,
    storage: SyncStorage,
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    by_sid: RefCell<HashMap<Sid, u64>>,
    next_id: Cell<u64>,
    events: RefCell<VecDeque<Queued>>,
    event_ready: Notify,
    event_room: Notify,
    /// Bumped by every `connect` and `disconnect` of a sid: events tagged with an older value
    /// are stale.
    gens: RefCell<HashMap<Sid, u64>>,
    listeners: RefCell<Vec<(SocketAddr, glommio::Task<()>)>>,
    connecting: RefCell<HashMap<Sid, Rc<Connecting>>>,
    /// Accepted connections still in their TLS handshake.
    handshaking: Cell<usize>,
}

/// The quorum port of one server. Lives on one glommio executor (not `Send`); every method
/// returns at once, the work runs in tasks of that executor, which must keep a timer armed (the
/// shards' heartbeat does: glommio 0.9 can park a reactor that still has runnable tasks).
#[derive(Clone)]
pub struct QuorumLink {
    inner: Rc<Inner>,
}

impl QuorumLink {
    /// A link with no connection and no listener. `storage` holds the live tree (a leader
    /// streams it, a learner replaces it) and the disk a learner installs snapshots on.
    pub fn new(cfg: LinkConfig, storage: SyncStorage) -> QuorumLink {
        assert!(cfg.events_max > 0 && cfg.send_queue_max_bytes > 0 && cfg.snapshot_chunk_bytes > 0);
        QuorumLink {
            inner: Rc::new(Inner {
                cfg,
                storage,
                conns: Default::default(),
                by_sid: Default::default(),
                next_id: Cell::new(1),
                events: Default::default(),
                event_ready: Notify::new(),
                event_room: Notify::new(),
                gens: Default::default(),
                listeners: Default::default(),
                connecting: Default::default(),
                handshaking: Cell::new(0),
            }),
        }
    }

    pub fn storage(&self) -> &SyncStorage {
        &self.inner.storage
    }

    /// Starts accepting learners on `cfg.listen` (call it when this server starts LEADING);
    /// returns the bound addresses. Already listening: the same addresses. SO_REUSEADDR, as
    /// ZooKeeper's leader sockets.
    pub fn listen(&self) -> std::io::Result<Vec<SocketAddr>> {
        let mut ls = self.inner.listeners.borrow_mut();
        if !ls.is_empty() {
            return Ok(ls.iter().map(|(a, _)| *a).collect());
        }
        let mut bound = Vec::new();
        for addr in &self.inner.cfg.listen {
            let l = bind(*addr)?;
            let local = l.local_addr()?;
            let inner = self.inner.clone();
            let task = glommio::spawn_local(accept_loop(inner, l, local));
            bound.push((local, task));
        }
        let addrs = bound.iter().map(|(a, _)| *a).collect::<Vec<_>>();
        tracing::info!("leader: accepting learners on {addrs:?}");
        *ls = bound;
        Ok(addrs)
    }

    /// Stops accepting (the server stopped leading) and closes the learner connections that
    /// are left; the peer is told nothing (it knows the role ended).
    pub fn stop_listening(&self) {
        let ls = std::mem::take(&mut *self.inner.listeners.borrow_mut());
        if ls.is_empty() {
            return;
        }
        // Dropping an accept loop's task cancels it and closes its socket.
        drop(ls);
        let accepted: Vec<Rc<Conn>> =
            self.inner.conns.borrow().values().filter(|c| c.side == Side::Accepted).cloned().collect();
        for c in accepted {
            self.inner.close(&c, "no longer leading", false);
        }
    }

    /// `Action::Connect { leader }`: connects to the leader's quorum address (5 tries, 100 ms
    /// apart, within `connect_timeout`, as ZooKeeper 3.8's `LeaderConnector`), then reports
    /// `Connected { sid }` or `Disconnected { sid }`. A connection or attempt to `leader` that
    /// exists is dropped first.
    pub fn connect(&self, leader: Sid) {
        let inner = &self.inner;
        inner.bump(leader);
        inner.drop_sid(leader, "connecting anew");
        let gen = inner.gen(leader);
        let Some(addr) = inner.cfg.quorum_addrs.get(&leader).copied() else {
            tracing::error!("no quorum address for server {leader}: cannot follow it");
            inner.push_control(LinkEvent::Input(Input::Disconnected { sid: leader }), Some((leader, gen)));
            return;
        };
        let attempt = Rc::new(Connecting { cancelled: Cell::new(false), gen });
        inner.connecting.borrow_mut().insert(leader, attempt.clone());
        glommio::spawn_local(connect_to_leader(inner.clone(), leader, addr, attempt)).detach();
    }

    /// `Action::Send { to, packet }`: queues the packet on `to`'s connection (none: dropped,
    /// as ZooKeeper drops what it queues for a learner that is gone). A full queue disconnects
    /// `to` (reported `Disconnected`).
    pub fn send(&self, to: Sid, packet: &QuorumPacket) {
        if let Some(c) = self.inner.conn_of(to) {
            if !c.queue_packet(packet, self.inner.cfg.send_queue_max_bytes) {
                self.inner.overflow(&c);
            }
        }
    }

    /// `Action::SendSnapshot { to, zxid }`: the snapshot stream goes out on `to`'s connection
    /// right after what was queued before (the SNAP packet), the tree read when the writer gets
    /// there. `sessions`: the live sessions and their timeouts (ms), which the replica owns.
    pub fn send_snapshot(&self, to: Sid, zxid: i64, sessions: Vec<(i64, i32)>) {
        if let Some(c) = self.inner.conn_of(to) {
            if !c.queue_snapshot(zxid, sessions, self.inner.cfg.send_queue_max_bytes) {
                self.inner.overflow(&c);
            }
        }
    }

    /// `Action::Disconnect { sid, reason }`: closes the connection to `sid`, or stops connecting
    /// to it. Nothing more is reported about it (the peer asked).
    pub fn disconnect(&self, sid: Sid, reason: &str) {
        if self.inner.conn_of(sid).is_some() {
            tracing::info!("closing the quorum connection to server {sid}: {reason}");
        }
        self.inner.bump(sid);
        self.inner.drop_sid(sid, reason);
    }

    /// `Action::LoadSnapshot { zxid }`: the leader connection's reader, stopped after the SNAP
    /// packet, reads the snapshot stream, installs it (`SyncStorage`) and reports
    /// [`LinkEvent::SnapshotLoaded`] before anything that follows it on the connection.
    pub fn load_snapshot(&self, zxid: i64) {
        let waiting = self.inner.conns.borrow().values().find(|c| c.awaits_load()).cloned();
        match waiting {
            Some(c) => c.start_load(zxid),
            None => tracing::error!(
                "LoadSnapshot 0x{zxid:x} but no leader connection stopped at a SNAP packet: ignored"
            ),
        }
    }

    /// The next event, waiting for one.
    pub async fn next_event(&self) -> LinkEvent {
        loop {
            if let Some(e) = self.try_next_event() {
                return e;
            }
            self.inner.event_ready.wait().await;
        }
    }

    /// The next event if one is queued.
    pub fn try_next_event(&self) -> Option<LinkEvent> {
        loop {
            let q = self.inner.events.borrow_mut().pop_front()?;
            self.inner.event_room.notify_all();
            let current = q.tag.is_none_or(|(sid, g)| self.inner.gen(sid) == g);
            match q.event {
                LinkEvent::SnapshotLoaded { zxid, sessions, .. } => {
                    return Some(LinkEvent::SnapshotLoaded { zxid, sessions, current })
                }
                e if current => return Some(e),
                _ => {}
            }
        }
    }

    /// The sid of every identified connection (for status).
    pub fn connected(&self) -> Vec<Sid> {
        let mut v: Vec<Sid> = self.inner.by_sid.borrow().keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Closes everything (shutdown).
    pub fn close(&self) {
        self.stop_listening();
        for a in std::mem::take(&mut *self.inner.connecting.borrow_mut()).into_values() {
            a.cancelled.set(true);
        }
        let all: Vec<Rc<Conn>> = self.inner.conns.borrow().values().cloned().collect();
        for c in all {
            self.inner.close(&c, "shutting down", false);
        }
    }
}

/// A listening socket as ZooKeeper's leader makes it (SO_REUSEADDR, no SO_REUSEPORT: two
/// servers must not share a quorum port).
fn bind(addr: SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    let fd = std::os::fd::IntoRawFd::into_raw_fd(s);
    // SAFETY: a listening TCP socket we own, handed over once.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

async fn accept_loop(inner: Rc<Inner>, l: glommio::net::TcpListener, local: SocketAddr) {
    loop {
        match l.accept().await {
            Ok(stream) => {
                let accepted = inner.conns.borrow().values().filter(|c| c.side == Side::Accepted).count()
                    + inner.handshaking.get();
                if accepted >= inner.cfg.accepted_max {
                    tracing::warn!(
                        "quorum port {local}: {accepted} learner connections already, closing one from {:?}",
                        stream.peer_addr().ok()
                    );
                    continue;
                }
                match (inner.cfg.tls.clone(), inner.cfg.sasl.clone()) {
                    (None, None) => {
                        inner.start_conn(QStream::Plain(stream), Side::Accepted, None, Vec::new())
                    }
                    (tls, sasl) => {
                        // Its own task: a learner that stalls its handshake delays no other.
                        let inner = inner.clone();
                        inner.handshaking.set(inner.handshaking.get() + 1);
                        glommio::spawn_local(async move {
                            let peer = stream.peer_addr().ok();
                            let deadline = Instant::now() + inner.cfg.connect_timeout;
                            let r = async {
                                let mut s = match tls {
                                    None => QStream::Plain(stream),
                                    Some(tls) => tls.accept(stream, inner.cfg.connect_timeout).await?,
                                };
                                let Some(q) = sasl else { return Ok((s, Vec::new())) };
                                let (read, note) =
                                    crate::quorum::auth::drive::serve(&mut s, &q, Vec::new(), deadline)
                                        .await?;
                                tracing::info!(
                                    "quorum port {local}: learner connection from {}: {note}",
                                    peer.map_or("?".into(), |p| p.to_string())
                                );
                                Ok::<_, String>((s, read))
                            }
                            .await;
                            inner.handshaking.set(inner.handshaking.get() - 1);
                            match r {
                                Ok((s, read)) => inner.start_conn(s, Side::Accepted, None, read),
                                Err(why) => tracing::warn!(
                                    "quorum port {local}: dropping the learner connection from {}: {why}",
                                    peer.map_or("?".into(), |p| p.to_string())
                                ),
                            }
                        })
                        .detach();
                    }
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, once per pause.
                tracing::warn!("quorum port {local}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(100)).await; // not a poll: a back-off
            }
        }
    }
}

/// ZooKeeper 3.8's `LeaderConnector.connectToLeader`: up to `connect_tries` tries, each with
/// what is left of the budget as its timeout, `connect_retry_delay` apart; gives up early when
/// the budget left is no more than that delay.
async fn connect_to_leader(inner: Rc<Inner>, leader: Sid, addr: SocketAddr, attempt: Rc<Connecting>) {
    let cfg = &inner.cfg;
    let started = Instant::now();
    let budget = cfg.connect_timeout;
    let mut tries = 0;
    let outcome = loop {
        let left = budget.saturating_sub(started.elapsed());
        if left.is_zero() {
            break Err("connectToLeader exceeded on retries".to_string());
        }
        let r = match glommio::net::TcpStream::connect_timeout(addr, left).await {
            Ok(s) => match &cfg.tls {
                None => Ok(QStream::Plain(s)),
                Some(tls) => {
                    let host =
                        cfg.quorum_hosts.get(&leader).cloned().unwrap_or_else(|| addr.ip().to_string());
                    let left = budget.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
                    tls.connect(s, &host, left).await
                }
            },
            Err(e) => Err(e.to_string()),
        };
        if attempt.cancelled.get() {
            return;
        }
        match r {
            Ok(s) => break Ok(s),
            Err(e) => {
                let left = budget.saturating_sub(started.elapsed());
                if left <= cfg.connect_retry_delay || tries + 1 >= cfg.connect_tries {
                    break Err(format!(
                        "Unexpected exception, tries={tries}, remaining init limit={} ms, connecting to {addr}: {e}",
                        left.as_millis()
                    ));
                }
                tracing::warn!(
                    "Unexpected exception, tries={tries}, remaining init limit={} ms, connecting to {addr}: {e}",
                    left.as_millis()
                );
            }
        }
        tries += 1;
        glommio::timer::sleep(cfg.connect_retry_delay).await; // not a poll: ZooKeeper's retry pause
        if attempt.cancelled.get() {
            return;
        }
    };
    // Quorum SASL: authenticate to the leader before the first packet (ZooKeeper's
    // `Learner.connectToLeader`, after its connect tries).
    let outcome = match (outcome, cfg.sasl.clone()) {
        (Ok(mut stream), Some(q)) => {
            let deadline = Instant::now() + cfg.connect_timeout;
            match crate::quorum::auth::drive::learn(&mut stream, &q, deadline).await {
                Ok(Some((read, note))) => {
                    tracing::info!("leader {leader} at {addr}: {note}");
                    Ok((stream, read))
                }
                Ok(None) => Ok((stream, Vec::new())),
                Err(why) => Err(format!("{why} (leader {leader} at {addr})")),
            }
        }
        (o, _) => o.map(|s| (s, Vec::new())),
    };
    if attempt.cancelled.get() {
        return;
    }
    let mine = inner.connecting.borrow().get(&leader).is_some_and(|a| Rc::ptr_eq(a, &attempt));
    if mine {
        inner.connecting.borrow_mut().remove(&leader);
    }
    let tag = Some((leader, attempt.gen));
    match outcome {
        Ok((stream, read)) => {
            tracing::info!("connected to leader {leader} at {addr}");
            inner.start_conn(stream, Side::ToLeader, Some(leader), read);
            inner.push_control(LinkEvent::Input(Input::Connected { sid: leader }), tag);
        }
        Err(why) => {
            tracing::error!("Failed connect to leader {leader} at {addr}: {why}");
            inner.push_control(LinkEvent::Input(Input::Disconnected { sid: leader }), tag);
        }
    }
}

impl Inner {
    fn gen(&self, sid: Sid) -> u64 {
        self.gens.borrow().get(&sid).copied().unwrap_or(0)
    }

    fn bump(&self, sid: Sid) {
        *self.gens.borrow_mut().entry(sid).or_default() += 1;
    }

    fn conn_of(&self, sid: Sid) -> Option<Rc<Conn>> {
        let id = *self.by_sid.borrow().get(&sid)?;
        self.conns.borrow().get(&id).cloned()
    }

    /// Closes `sid`'s connection and stops connecting to it, silently.
    fn drop_sid(&self, sid: Sid, reason: &str) {
        if let Some(a) = self.connecting.borrow_mut().remove(&sid) {
            a.cancelled.set(true);
        }
        if let Some(c) = self.conn_of(sid) {
            self.close(&c, reason, false);
        }
    }

    fn start_conn(self: &Rc<Self>, stream: QStream, side: Side, sid: Option<Sid>, read: Vec<u8>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let Some(c) = Conn::start(self.clone(), id, stream, side, read) else { return };
        self.conns.borrow_mut().insert(id, c.clone());
        if let Some(sid) = sid {
            self.register(&c, sid);
        }
    }

    /// Makes `c` the connection of `sid`; the one it replaces is closed and reported
    /// `Disconnected` first.
    fn register(&self, c: &Rc<Conn>, sid: Sid) {
        if let Some(old) = self.conn_of(sid) {
            if old.id != c.id {
                tracing::warn!(
                    "a new connection from server {sid} ({}) replaces its connection from {}",
                    c.peer,
                    old.peer
                );
                self.close(&old, "replaced by a new connection from the same server", true);
            }
        }
        c.sid.set(Some(sid));
        c.gen.set(self.gen(sid));
        self.by_sid.borrow_mut().insert(sid, c.id);
    }

    /// Closes a connection once: out of the tables, its socket shut down (which ends its
    /// reader and writer). `report`: the peer does not know yet, tell it `Disconnected`.
    fn close(&self, c: &Rc<Conn>, reason: &str, report: bool) {
        if !c.shut(reason) {
            return;
        }
        self.conns.borrow_mut().remove(&c.id);
        let Some(sid) = c.sid.get() else { return };
        let current = self.by_sid.borrow().get(&sid) == Some(&c.id);
        if current {
            self.by_sid.borrow_mut().remove(&sid);
            if report {
                self.push_control(LinkEvent::Input(Input::Disconnected { sid }), Some((sid, c.gen.get())));
            }
        }
    }

    fn overflow(&self, c: &Rc<Conn>) {
        tracing::warn!(
            "quorum connection to server {} ({}): more than {} bytes queued (a slow peer): disconnecting it",
            c.sid.get().map_or("?".into(), |s| s.to_string()),
            c.peer,
            self.cfg.send_queue_max_bytes
        );
        self.close(c, "send queue full", true);
    }

    /// Queues an event that may not wait (a state change: at most a few per connection beyond
    /// `events_max`), tagged with the (sid, generation) it belongs to.
    fn push_control(&self, event: LinkEvent, tag: Option<(Sid, u64)>) {
        self.events.borrow_mut().push_back(Queued { event, tag });
        self.event_ready.notify_all();
    }

    /// Queues an event of `c`'s once there is room (a reader's packets; the reader reads nothing
    /// more meanwhile). False, and nothing queued, if `c` closed while it waited: what it read
    /// must not follow the `Disconnected` that reported it.
    async fn push(&self, c: &Conn, event: LinkEvent) -> bool {
        while self.events.borrow().len() >= self.cfg.events_max {
            self.event_room.wait().await;
        }
        if c.is_closed() {
            return false;
        }
        let tag = c.sid.get().map(|s| (s, c.gen.get()));
        self.push_control(event, tag);
        true
    }
}

#[cfg(test)]
mod snap_tests;
#[cfg(test)]
mod tests;
