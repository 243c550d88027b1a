//! The election connections' sockets on a glommio executor: the listener, one task per
//! handshake, one per connect, and one reader and one writer per connection. Every decision is
//! the manager's; this file only moves bytes and reports what happened.
//!
//! Nothing here waits on more than one peer: a connect (bounded by `cnxTimeout`), a handshake
//! (bounded by `io_timeout`) and a write (bounded by `io_timeout`) each run in their own task,
//! and `Peers::send` only queues. A peer that never answers costs its own tasks, never another
//! peer's message. Bad bytes cost their connection and one log line; the listener never reads
//! from a socket, so no peer can stop it (ZOOKEEPER-2186: a listener thread died on one huge
//! length and the server, port still open, could never rejoin).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;

use super::inbox::Inbox;
use super::manager::{Action, ConnId, Input, Level, Manager, Msg};
use super::{Listen, OnFatal, PeerEvent, PeersConfig, EXIT_UNABLE_TO_BIND_QUORUM_PORT};
use crate::quorum::wire::{self, Handshake, HostPort, ELECTION_FRAME_MAX, HANDSHAKE_ADDR_MAX};
use crate::quorum::Sid;
use crate::tls::quorum::{QStream, QuorumTls};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// The largest handshake: version, sid, address length, address.
const HANDSHAKE_MAX: usize = 8 + 8 + 4 + HANDSHAKE_ADDR_MAX;
/// Reachability changes the inbox holds (they are rare; messages have their own bound).
const INBOX_OTHERS_MAX: usize = 1024;
/// Keeps a timer armed on the executor: glommio 0.9 can park a reactor that still has runnable
/// work under CPU contention, and a timer bounds how long that lasts.
const HEARTBEAT: Duration = Duration::from_millis(50);
/// Pause after an accept error that passes (no descriptors left, and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why `Peers::send` refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A 3.8 peer drops the connection on a frame outside 1..=512 KiB.
    #[error("an election message has 1 to {ELECTION_FRAME_MAX} bytes, not {0}")]
    Size(usize),
    #[error("the election connections were halted")]
    Halted,
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    /// Accepted connections dropped before their handshake was whole: bad bytes, silence, too
    /// many waiting. (Well-formed handshakes the manager refuses are logged, not counted here.)
    pub refused: u64,
    pub dials: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    /// Connections dropped for a bad frame length.
    pub bad_frames: u64,
    /// Messages dropped from full send queues.
    pub sends_dropped: u64,
}

/// The election connections of one server. Lives on the glommio executor that started it.
pub struct Peers {
    inner: Rc<Inner>,
}

struct Inner {
    my_sid: Sid,
    hello: Vec<u8>,
    connect_timeout: Option<Duration>,
    io_timeout: Duration,
    bind_retries: u32,
    bind_retry_pause: Duration,
    pending_handshakes_max: usize,
    on_fatal: OnFatal,
    tls: Option<Arc<QuorumTls>>,
    sasl: Option<Arc<crate::quorum::auth::QuorumSaslSettings>>,
    core: RefCell<Manager>,
    inbox: Rc<Inbox>,
    /// Connections whose handshake is done, until the manager says Start or Close.
    staged: RefCell<HashMap<ConnId, Staged>>,
    /// Started connections.
    live: RefCell<HashMap<ConnId, Live>>,
    next_conn: Cell<ConnId>,
    pending_handshakes: Cell<usize>,
    halted: Cell<bool>,
    local_addr: Cell<Option<SocketAddr>>,
    listener_fd: Cell<Option<RawFd>>,
    last_accept_warn: Cell<Option<Instant>>,
    stats: RefCell<Stats>,
}

struct Staged {
    stream: QStream,
    /// Bytes read after the handshake: the start of the frame stream.
    leftover: Vec<u8>,
    peer: SocketAddr,
}

struct Live {
    fd: RawFd,
    shut: Rc<Cell<bool>>,
    /// Dropped to end the writer.
    writer: Option<LocalSender<Msg>>,
}

/// Shuts a connection's socket down once (both halves' pending I/O then ends). The descriptor
/// is closed only after `shut` is set, so a later call can never reach a reused descriptor.
fn shut_down(fd: RawFd, shut: &Cell<bool>) {
    if !shut.replace(true) {
        // SAFETY: fd is open: the halves that own it are dropped only after `shut` was set.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

impl Peers {
    /// Starts listening and returns the handle and the inbox the election takes from. Must run
    /// inside a glommio executor; everything stays on it.
    pub fn start(cfg: PeersConfig) -> (Peers, Rc<Inbox>) {
        let hello = Handshake::Initial {
            version: wire::HandshakeVersion::V1,
            sid: cfg.my_sid,
            addrs: vec![cfg.advertise.clone()],
        }
        .encode();
        // The advertised address comes from our own server line: short by construction.
        let hello = hello
            .unwrap_or_else(|e| panic!("our handshake ({}) cannot be encoded: {e}", cfg.advertise.format()));
        let inbox = Rc::new(Inbox::new(cfg.inbox_messages_max, INBOX_OTHERS_MAX));
        let inner = Rc::new(Inner {
            my_sid: cfg.my_sid,
            hello,
            connect_timeout: cfg.connect_timeout,
            io_timeout: cfg.io_timeout,
            bind_retries: cfg.bind_retries,
            bind_retry_pause: cfg.bind_retry_pause,
            pending_handshakes_max: cfg.pending_handshakes_max,
            on_fatal: cfg.on_listener_failure,
            tls: cfg.tls,
            sasl: cfg.sasl,
            core: RefCell::new(Manager::new(cfg.my_sid, cfg.view, cfg.send_queue_max)),
            inbox: inbox.clone(),
            staged: RefCell::new(HashMap::new()),
            live: RefCell::new(HashMap::new()),
            next_conn: Cell::new(1),
            pending_handshakes: Cell::new(0),
            halted: Cell::new(false),
            local_addr: Cell::new(None),
            listener_fd: Cell::new(None),
            last_accept_warn: Cell::new(None),
            stats: RefCell::new(Stats::default()),
        });
        // The first bind happens now, so that a peer we call before this returns can call back.
        let (first, addr) = match cfg.listen {
            Listen::Addr(a) => (bind(a).map_err(|e| (e, 1)), a),
            Listen::Bound(l) => {
                let a = l.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                (Ok(l), a)
            }
        };
        if let Ok(l) = &first {
            inner.local_addr.set(l.local_addr().ok());
        }
        glommio::spawn_local(listen(inner.clone(), first, addr)).detach();
        let i = inner.clone();
        glommio::spawn_local(async move {
            while !i.halted.get() {
                glommio::timer::sleep(HEARTBEAT).await;
            }
        })
        .detach();
        (Peers { inner }, inbox)
    }

    /// Queues `msg` for `sid` and opens a connection if there is none. Never waits.
    pub fn send(&self, sid: Sid, msg: &[u8]) -> Result<(), SendError> {
        if msg.is_empty() || msg.len() > ELECTION_FRAME_MAX {
            return Err(SendError::Size(msg.len()));
        }
        if self.inner.halted.get() {
            return Err(SendError::Halted);
        }
        self.inner.step(Input::Send { sid, msg: Arc::from(msg) });
        Ok(())
    }

    pub fn my_sid(&self) -> Sid {
        self.inner.my_sid
    }

    /// Opens a connection to every peer that has a send queue and no connection.
    pub fn connect_all(&self) {
        if !self.inner.halted.get() {
            self.inner.step(Input::ConnectAll);
        }
    }

    /// ZooKeeper's `haveDelivered` (see `Manager::have_delivered`).
    pub fn have_delivered(&self) -> bool {
        self.inner.core.borrow().have_delivered()
    }

    pub fn is_connected(&self, sid: Sid) -> bool {
        self.inner.core.borrow().is_connected(sid)
    }

    /// The listener's address, once bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr.get()
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.inner.stats.borrow().clone();
        s.sends_dropped = self.inner.core.borrow().dropped_sends();
        s
    }

    /// Stops listening and closes every connection. Tasks still connecting or awaiting a
    /// handshake end by their own deadlines and drop what they hold.
    pub fn halt(&self) {
        let i = &self.inner;
        if i.halted.replace(true) {
            return;
        }
        if let Some(fd) = i.listener_fd.take() {
            // Ends the pending accept; the listener task then closes the socket.
            // SAFETY: the listener task owns fd and closes it only after it sees `halted`.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        i.staged.borrow_mut().clear();
        for l in i.live.borrow_mut().values_mut() {
            shut_down(l.fd, &l.shut);
            l.writer = None;
        }
        i.log(Level::Info, "election connections halted".into());
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Inner {
    fn step(self: &Rc<Self>, input: Input) {
        let mut out = Vec::new();
        self.core.borrow_mut().step(input, &mut out);
        for a in out {
            self.apply(a);
        }
    }

    fn apply(self: &Rc<Self>, a: Action) {
        match a {
            Action::Dial { sid, addr } => {
                glommio::spawn_local(dial(self.clone(), sid, addr)).detach();
            }
            Action::Start { conn, sid } => {
                let Some(s) = self.staged.borrow_mut().remove(&conn) else {
                    // Halted meanwhile: the reader that never starts reports nothing.
                    self.step(Input::Closed { conn, reason: "halted".into() });
                    return;
                };
                self.start(conn, sid, s);
            }
            Action::Close { conn } => {
                if self.staged.borrow_mut().remove(&conn).is_none() {
                    if let Some(l) = self.live.borrow_mut().get_mut(&conn) {
                        shut_down(l.fd, &l.shut);
                        l.writer = None;
                    }
                }
            }
            Action::Write { conn, msg } => {
                if let Some(w) = self.live.borrow().get(&conn).and_then(|l| l.writer.as_ref()) {
                    // The manager keeps one write outstanding per connection: there is room.
                    let _ = w.try_send(msg);
                }
            }
            Action::Deliver { sid, msg } => self.inbox.push(PeerEvent::Message { sid, data: msg.to_vec() }),
            Action::Report(ev) => self.inbox.push(ev),
            Action::Log { level, text } => self.log(level, text),
        }
    }

    fn log(&self, level: Level, text: String) {
        let me = self.my_sid;
        match level {
            Level::Debug => tracing::debug!("election (myid {me}): {text}"),
            Level::Info => tracing::info!("election (myid {me}): {text}"),
            Level::Warn => tracing::warn!("election (myid {me}): {text}"),
        }
    }

    fn conn_id(&self) -> ConnId {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        id
    }

    /// A started connection: one task reads frames, one writes what the manager hands it.
    fn start(self: &Rc<Self>, conn: ConnId, sid: Sid, s: Staged) {
        let fd = s.stream.as_raw_fd();
        let shut = Rc::new(Cell::new(false));
        let (tx, rx) = local_channel::new_bounded::<Msg>(1);
        self.live.borrow_mut().insert(conn, Live { fd, shut: shut.clone(), writer: Some(tx) });
        let peer = s.peer;
        let (mut rd, mut wr) = futures_lite::io::split(s.stream);
        // Why the writer stopped, for the reader's report.
        let write_error: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));

        let (i, we, sh) = (self.clone(), write_error.clone(), shut.clone());
        let io_ms = self.io_timeout.as_millis();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                let frame = match wire::encode_frame(&msg) {
                    Ok(f) => f,
                    Err(e) => {
                        // `send` checks sizes; a message that still does not fit is dropped.
                        i.log(Level::Warn, format!("not sending a message to server {sid}: {e}"));
                        i.step(Input::Written { conn });
                        continue;
                    }
                };
                let written = match wr.write_all(&frame).await {
                    Ok(()) => wr.flush().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    let why = if e.kind() == std::io::ErrorKind::TimedOut {
                        format!("{peer} read nothing for {io_ms} ms (a frame could not be written)")
                    } else {
                        format!("writing to {peer}: {e}")
                    };
                    *we.borrow_mut() = Some(why);
                    shut_down(fd, &sh);
                    break;
                }
                i.stats.borrow_mut().frames_out += 1;
                i.step(Input::Written { conn });
            }
        })
        .detach();

        let i = self.clone();
        let mut buf = s.leftover;
        glommio::spawn_local(async move {
            let mut chunk = vec![0u8; READ_CHUNK];
            let reason = 'read: loop {
                let mut used = 0;
                loop {
                    match wire::decode_frame(&buf[used..]) {
                        Ok(Some((payload, n))) => {
                            i.inbox.push(PeerEvent::Message { sid, data: payload.to_vec() });
                            i.stats.borrow_mut().frames_in += 1;
                            used += n;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            i.stats.borrow_mut().bad_frames += 1;
                            break 'read format!("{e} from {peer}");
                        }
                    }
                }
                buf.drain(..used);
                // A frame's length is checked before its bytes are awaited, so the buffer
                // never holds more than one frame and one read.
                assert!(buf.len() <= 4 + ELECTION_FRAME_MAX + READ_CHUNK, "election read buffer bound");
                match rd.read(&mut chunk).await {
                    Ok(0) => break format!("{peer} closed the connection"),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => break format!("reading from {peer}: {e}"),
                }
            };
            shut_down(fd, &shut);
            let reason = write_error.borrow_mut().take().unwrap_or(reason);
            i.live.borrow_mut().remove(&conn);
            i.step(Input::Closed { conn, reason });
        })
        .detach();
    }

    fn listener_failed(&self, reason: String) {
        tracing::error!(
            "election (myid {}): the election listener stopped: {reason}; this server can no longer take part in leader election",
            self.my_sid
        );
        match self.on_fatal {
            OnFatal::ExitProcess => std::process::exit(EXIT_UNABLE_TO_BIND_QUORUM_PORT),
            OnFatal::Report => self.inbox.push(PeerEvent::ListenerFailed { reason }),
        }
    }
}

/// Accept errors that pass by themselves (descriptors or memory short, a connection reset while
/// queued): the listener pauses and goes on. Anything else means the listening socket is broken.
fn accept_error_passes(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::EINTR
                | libc::EAGAIN
                | libc::EPROTO
                | libc::EPERM
        )
    )
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As ZooKeeper's ServerSocket: a restarted server rebinds over connections in TIME_WAIT. No
    // SO_REUSEPORT: a second server on this port must fail to bind, not share it.
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}

/// The listener: binds (with retries), accepts, hands each connection to its own handshake task.
/// `first` is the outcome of the first bind (with the attempts it took).
async fn listen(i: Rc<Inner>, first: Result<std::net::TcpListener, (std::io::Error, u32)>, addr: SocketAddr) {
    let mut failures: u32 = 0;
    let exhausted = |n: u32| i.bind_retries != 0 && n >= i.bind_retries;
    let mut first = Some(first);
    loop {
        if i.halted.get() {
            return;
        }
        let bound = match first.take() {
            Some(Ok(l)) => Ok(l),
            Some(Err((e, n))) => {
                failures += n - 1;
                Err(e)
            }
            None => bind(addr),
        };
        let std_listener = match bound {
            Ok(l) => l,
            Err(e) => {
                failures += 1;
                let why = format!("cannot bind the election port {addr}: {e} (attempt {failures})");
                if exhausted(failures) {
                    i.listener_failed(format!(
                        "{why}; electionPortBindRetry={} attempts made",
                        i.bind_retries
                    ));
                    return;
                }
                i.log(Level::Warn, why);
                glommio::timer::sleep(i.bind_retry_pause).await;
                continue;
            }
        };
        let local = std_listener.local_addr().ok();
        // SAFETY: the descriptor moves from the std listener, which gives it up, to glommio's.
        let fd = std_listener.into_raw_fd();
        let listener = unsafe { glommio::net::TcpListener::from_raw_fd(fd) };
        i.local_addr.set(local.or(Some(addr)));
        i.listener_fd.set(Some(fd));
        i.log(Level::Info, format!("accepting election connections on {}", local.unwrap_or(addr)));
        let broken = loop {
            match listener.accept().await {
                Ok(stream) => {
                    i.stats.borrow_mut().accepted += 1;
                    glommio::spawn_local(handshake(i.clone(), stream)).detach();
                }
                Err(e) => {
                    if i.halted.get() {
                        return;
                    }
                    let e: std::io::Error = e.into();
                    if accept_error_passes(&e) {
                        let now = Instant::now();
                        if i.last_accept_warn
                            .get()
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                        {
                            i.last_accept_warn.set(Some(now));
                            i.log(
                                Level::Warn,
                                format!("accepting an election connection failed: {e} (pausing)"),
                            );
                        }
                        glommio::timer::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                    break e;
                }
            }
        };
        i.listener_fd.set(None);
        drop(listener);
        failures += 1;
        let why = format!("the election listener on {addr} failed: {broken}");
        if exhausted(failures) {
            i.listener_failed(why);
            return;
        }
        i.log(Level::Warn, format!("{why}; binding again"));
        glommio::timer::sleep(i.bind_retry_pause).await;
    }
}

/// Reads an accepted connection's handshake within `io_timeout`, then hands it to the manager.
async fn handshake(i: Rc<Inner>, stream: TcpStream) {
    let peer = match stream.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    if i.halted.get() {
        return;
    }
    if i.pending_handshakes.get() >= i.pending_handshakes_max {
        i.stats.borrow_mut().refused += 1;
        i.log(
            Level::Warn,
            format!(
                "dropping the election connection from {peer}: {} handshakes are already awaited",
                i.pending_handshakes_max
            ),
        );
        return;
    }
    i.pending_handshakes.set(i.pending_handshakes.get() + 1);
    let read = async {
        let mut s = match &i.tls {
            None => QStream::Plain(stream),
            // The TLS handshake shares the deadline of the ZooKeeper handshake below.
            Some(t) => t.accept(stream, i.io_timeout).await?,
        };
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 4096];
        loop {
            match wire::decode_handshake(&buf) {
                Ok(Some((h, used))) => {
                    buf.drain(..used);
                    return Ok((s, h, buf));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("bad handshake: {e}")),
            }
            // decode_handshake refuses a bad length before awaiting the bytes it announces.
            assert!(buf.len() <= HANDSHAKE_MAX + chunk.len(), "handshake buffer bound");
            match s.read(&mut chunk).await {
                Ok(0) => {
                    return Err(if buf.is_empty() {
                        "closed before its handshake".to_string()
                    } else {
                        format!("closed after {} bytes of its handshake", buf.len())
                    })
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading its handshake: {e}")),
            }
        }
    };
    let timeout_ms = i.io_timeout.as_millis();
    let timed = async {
        glommio::timer::sleep(i.io_timeout).await;
        Err(format!("no complete handshake within {timeout_ms} ms"))
    };
    let r = futures_lite::future::or(read, timed).await;
    // Quorum SASL: the connecting member authenticates right after its handshake.
    let r = match (r, i.sasl.clone()) {
        (Ok((mut s, h, buf)), Some(q)) => {
            match crate::quorum::auth::drive::serve(&mut s, &q, buf, Instant::now() + i.io_timeout).await {
                Ok((left, note)) => {
                    i.log(Level::Info, format!("election connection from {peer}: {note}"));
                    Ok((s, h, left))
                }
                Err(why) => Err(why),
            }
        }
        (r, _) => r,
    };
    i.pending_handshakes.set(i.pending_handshakes.get() - 1);
    match r {
        Err(why) => {
            i.stats.borrow_mut().refused += 1;
            i.log(Level::Warn, format!("dropping the election connection from {peer}: {why}"));
        }
        Ok((stream, h, leftover)) => {
            if i.halted.get() {
                return;
            }
            i.log(Level::Debug, format!("election connection from {peer}: {h:?}"));
            let _ = stream.set_nodelay(true);
            let _ = stream.set_write_timeout(Some(i.io_timeout));
            let conn = i.conn_id();
            i.staged.borrow_mut().insert(conn, Staged { stream, leftover, peer });
            i.step(Input::Accepted { conn, handshake: h, from: peer.to_string() });
        }
    }
}

/// Opens a connection to `sid` within `cnxTimeout`, writes our handshake, reports the outcome.
async fn dial(i: Rc<Inner>, sid: Sid, addr: HostPort) {
    i.stats.borrow_mut().dials += 1;
    let target = addr.format();
    let r = async {
        let sa = resolve(&addr).await?;
        let stream = match i.connect_timeout {
            Some(t) => TcpStream::connect_timeout(sa, t).await,
            None => TcpStream::connect(sa).await,
        }
        .map_err(|e| {
            let e: std::io::Error = e.into();
            format!("connecting to {target} ({sa}): {e}")
        })?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(i.io_timeout));
        let mut stream = match &i.tls {
            None => QStream::Plain(stream),
            Some(t) => t
                .connect(stream, &addr.host, i.connect_timeout.unwrap_or(i.io_timeout))
                .await
                .map_err(|e| format!("connecting to {target} ({sa}): {e}"))?,
        };
        stream
            .write_all(&i.hello)
            .await
            .map_err(|e| format!("writing our handshake to {target} ({sa}): {e}"))?;
        stream.flush().await.map_err(|e| format!("writing our handshake to {target} ({sa}): {e}"))?;
        // Quorum SASL: authenticate to the other member before anything else.
        let mut leftover = Vec::new();
        if let Some(q) = i.sasl.clone() {
            let deadline = Instant::now() + i.io_timeout;
            match crate::quorum::auth::drive::learn(&mut stream, &q, deadline).await {
                Ok(Some((left, note))) => {
                    i.log(Level::Info, format!("election connection to {sid} at {target}: {note}"));
                    leftover = left;
                }
                Ok(None) => i.log(
                    Level::Debug,
                    format!("skipping quorum SASL to {sid}: quorum.auth.learnerRequireSasl=false"),
                ),
                Err(why) => return Err(format!("{target} ({sa}): {why}")),
            }
        }
        Ok::<_, String>((stream, sa, leftover))
    }
    .await;
    if i.halted.get() {
        return;
    }
    match r {
        Ok((stream, peer, leftover)) => {
            let conn = i.conn_id();
            i.staged.borrow_mut().insert(conn, Staged { stream, leftover, peer });
            i.step(Input::Dialed { conn, sid });
        }
        Err(reason) => i.step(Input::DialFailed { sid, reason }),
    }
}

/// An address literal as is; a name through the resolver, off the executor (it blocks).
async fn resolve(addr: &HostPort) -> Result<SocketAddr, String> {
    if let Ok(ip) = addr.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, addr.port));
    }
    let (host, port) = (addr.host.clone(), addr.port);
    let found = glommio::executor()
        .spawn_blocking(move || (host.as_str(), port).to_socket_addrs().map(|mut a| a.next()))
        .await;
    match found {
        Ok(Some(sa)) => Ok(sa),
        Ok(None) => Err(format!("{} has no address", addr.format())),
        Err(e) => Err(format!("cannot resolve {}: {e}", addr.format())),
    }
}
