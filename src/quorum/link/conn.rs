//! One quorum connection: its send queue and writer task, its reader task (packets in, the sid
//! learned from the first one on the leader's side, the snapshot after SNAP on a learner's).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use crate::tls::quorum::QStream as TcpStream;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::snap_load::SnapshotReceiver;
use super::snap_send::SnapshotSource;
use super::{Inner, LinkEvent};
use crate::proto::jute::Writer;
use crate::quorum::wire::{decode_packet, encode_packet_into, LearnerInfo};
use crate::quorum::zab::Input;
use crate::quorum::{counter_of, packet_type as pt, QuorumPacket, Sid};

/// Bytes asked of the socket per read.
const READ_BYTES: usize = 64 << 10;
/// Snapshot items read between two yields of the core.
const SNAP_ITEMS_PER_TURN: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// A learner's connection to this leader.
    Accepted,
    /// This learner's connection to its leader.
    ToLeader,
}

/// What the writer sends next, in order.
enum Segment {
    /// Encoded packets: everything queued in one burst, written with one write.
    Bytes(Vec<u8>),
    /// The snapshot stream of the live tree (SNAP), with the sessions it starts with.
    Snapshot { zxid: i64, sessions: Vec<(i64, i32)> },
}

impl Segment {
    fn size(&self) -> usize {
        match self {
            Segment::Bytes(b) => b.len(),
            Segment::Snapshot { sessions, .. } => 16 + 12 * sessions.len(),
        }
    }
}

/// A learner's reader after a SNAP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Idle,
    /// Stopped after SNAP with this zxid, until `start_load`.
    AwaitCall,
    Requested(i64),
}

pub(super) struct Conn {
    pub id: u64,
    pub peer: SocketAddr,
    fd: RawFd,
    pub side: Side,
    /// The server at the other end: known at once on a learner, from the first packet on a
    /// leader.
    pub sid: Cell<Option<Sid>>,
    /// The sid's generation when this connection became its: its events carry it.
    pub gen: Cell<u64>,
    queue: RefCell<VecDeque<Segment>>,
    queued_bytes: Cell<usize>,
    wake_writer: LocalSender<()>,
    wake_reader: LocalSender<()>,
    closed: Cell<bool>,
    load: Cell<Load>,
}

impl Conn {
    /// Sets the socket up and starts its reader and writer; None if it is already gone.
    /// `read`: bytes already read from the stream (past a quorum SASL exchange).
    pub(super) fn start(
        inner: Rc<Inner>,
        id: u64,
        stream: TcpStream,
        side: Side,
        read: Vec<u8>,
    ) -> Option<Rc<Conn>> {
        let peer = stream.peer_addr().ok()?;
        // As ZooKeeper's leader and learner sockets (leader.nodelay / follower.nodelay).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!("quorum connection {peer}: cannot set TCP_NODELAY: {e}");
        }
        let (wake_writer, writer_rx) = local_channel::new_bounded(1);
        let (wake_reader, reader_rx) = local_channel::new_bounded(1);
        let c = Rc::new(Conn {
            id,
            peer,
            fd: stream.as_raw_fd(),
            side,
            sid: Cell::new(None),
            gen: Cell::new(0),
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            wake_writer,
            wake_reader,
            closed: Cell::new(false),
            load: Cell::new(Load::Idle),
        });
        let (rd, wr) = futures_lite::io::split(stream);
        glommio::spawn_local(write_loop(inner.clone(), c.clone(), wr, writer_rx)).detach();
        glommio::spawn_local(read_loop(inner, c.clone(), rd, reader_rx, read)).detach();
        Some(c)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn name(&self) -> String {
        match self.sid.get() {
            Some(s) => format!("server {s} ({})", self.peer),
            None => format!("{} (not identified yet)", self.peer),
        }
    }

    /// Queues `seg` unless that takes the queue over `max` bytes (a lone segment always fits);
    /// false then.
    fn enqueue(&self, size: usize, max: usize, add: impl FnOnce(&mut VecDeque<Segment>)) -> bool {
        if self.closed.get() {
            return true;
        }
        let queued = self.queued_bytes.get();
        if queued > 0 && queued + size > max {
            return false;
        }
        add(&mut self.queue.borrow_mut());
        self.queued_bytes.set(queued + size);
        let _ = self.wake_writer.try_send(());
        true
    }

    pub(super) fn queue_packet(&self, p: &QuorumPacket, max: usize) -> bool {
        let mut w = Writer::with_capacity(0);
        encode_packet_into(p, &mut w);
        let size = w.buf.len();
        self.enqueue(size, max, |q| match q.back_mut() {
            // A burst goes out in one write.
            Some(Segment::Bytes(b)) => b.extend_from_slice(&w.buf),
            _ => q.push_back(Segment::Bytes(w.buf)),
        })
    }

    pub(super) fn queue_snapshot(&self, zxid: i64, sessions: Vec<(i64, i32)>, max: usize) -> bool {
        let seg = Segment::Snapshot { zxid, sessions };
        self.enqueue(seg.size(), max, |q| q.push_back(seg))
    }

    fn pop(&self) -> Option<Segment> {
        let s = self.queue.borrow_mut().pop_front()?;
        self.queued_bytes.set(self.queued_bytes.get() - s.size());
        Some(s)
    }

    /// Marks the connection closed and shuts its socket down (a pending read returns, a pending
    /// write fails: neither task waits on the peer any more). False if it already was.
    pub(super) fn shut(&self, reason: &str) -> bool {
        if self.closed.replace(true) {
            return false;
        }
        tracing::debug!("closing quorum connection to {}: {reason}", self.name());
        // SAFETY: the socket is open: its reader and writer (which own it) only end after the
        // connection is marked closed, and this is the first time.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        self.queue.borrow_mut().clear();
        self.queued_bytes.set(0);
        let _ = self.wake_writer.try_send(());
        let _ = self.wake_reader.try_send(());
        true
    }

    pub(super) fn awaits_load(&self) -> bool {
        !self.closed.get() && self.load.get() == Load::AwaitCall
    }

    pub(super) fn start_load(&self, zxid: i64) {
        self.load.set(Load::Requested(zxid));
        let _ = self.wake_reader.try_send(());
    }
}

/// A connection's input bytes: what was read and not yet decoded.
struct InBuf {
    buf: Vec<u8>,
    start: usize,
}

impl InBuf {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more. The decoders refuse any length over their bound before waiting for its
    /// bytes, so this holds at most one packet (or snapshot item) and one read.
    async fn fill(&mut self, rd: &mut ReadHalf<TcpStream>) -> std::io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_BYTES, 0);
        let r = rd.read(&mut self.buf[old..]).await;
        self.buf.truncate(old + *r.as_ref().unwrap_or(&0));
        r
    }
}

/// The sid a leader learns from a learner's first packet.
fn identify(p: &QuorumPacket) -> Result<Sid, String> {
    if p.typ != pt::FOLLOWERINFO && p.typ != pt::OBSERVERINFO {
        return Err(format!("first packet is {}, not FOLLOWERINFO or OBSERVERINFO", pt::name(p.typ)));
    }
    let data = p.data.as_deref().ok_or_else(|| format!("{} without LearnerInfo", pt::name(p.typ)))?;
    LearnerInfo::decode(data).map(|i| i.sid).map_err(|e| e.to_string())
}

/// Why a reader stopped.
enum End {
    /// The connection was closed here (the peer asked, or it was replaced).
    Closed,
    /// The other end closed it or the socket failed.
    Gone(String),
    /// It sent what the protocol does not allow (one line, at WARN).
    Bad(String),
    /// Installing a snapshot failed after the disk began to change.
    Fatal(String),
}

async fn read_loop(
    inner: Rc<Inner>,
    c: Rc<Conn>,
    mut rd: ReadHalf<TcpStream>,
    wake: LocalReceiver<()>,
    read: Vec<u8>,
) {
    let end = read_packets(&inner, &c, &mut rd, &wake, read).await;
    match &end {
        End::Closed => {}
        End::Gone(why) => tracing::info!("quorum connection to {} closed: {why}", c.name()),
        End::Bad(why) => tracing::warn!("quorum connection to {} dropped: {why}", c.name()),
        End::Fatal(why) => {
            tracing::error!("{why}");
            inner.push_control(LinkEvent::Fatal(why.clone()), None);
        }
    }
    let report = !matches!(end, End::Fatal(_));
    inner.close(&c, "reader ended", report);
}

async fn read_packets(
    inner: &Rc<Inner>,
    c: &Rc<Conn>,
    rd: &mut ReadHalf<TcpStream>,
    wake: &LocalReceiver<()>,
    read: Vec<u8>,
) -> End {
    let max = inner.cfg.packet_data_max;
    let mut input = InBuf { buf: Vec::with_capacity(READ_BYTES.max(read.len())), start: 0 };
    input.buf.extend_from_slice(&read);
    loop {
        if c.is_closed() {
            return End::Closed;
        }
        let (p, n) = match decode_packet(input.data(), max) {
            Err(e) => return End::Bad(format!("bad packet: {e}")),
            Ok(Some(x)) => x,
            Ok(None) => {
                match input.fill(rd).await {
                    Ok(0) if c.is_closed() => return End::Closed,
                    Ok(0) => return End::Gone("closed by the other end".into()),
                    Ok(_) => {}
                    Err(_) if c.is_closed() => return End::Closed,
                    Err(e) => return End::Gone(format!("read failed: {e}")),
                }
                continue;
            }
        };
        input.consume(n);
        if c.side == Side::Accepted && c.sid.get().is_none() {
            match identify(&p) {
                Ok(sid) => inner.register(c, sid),
                Err(why) => return End::Bad(why),
            }
        }
        let Some(from) = c.sid.get() else { unreachable!("identified above or at connect") };
        let snap = (c.side == Side::ToLeader && p.typ == pt::SNAP).then_some(p.zxid);
        if !inner.push(c, LinkEvent::Input(Input::Packet { from, packet: p })).await {
            return End::Closed;
        }
        if let Some(zxid) = snap {
            if let Err(end) = load_snapshot(inner, c, rd, &mut input, wake, zxid).await {
                return end;
            }
        }
    }
}

/// After SNAP: waits for the peer's `LoadSnapshot` (it must not read the stream as packets),
/// reads the stream into a new tree and a snapshot file, has `SyncStorage` install them, and
/// reports `SnapshotLoaded`. The packets after the stream stay in `input` for the caller.
async fn load_snapshot(
    inner: &Rc<Inner>,
    c: &Rc<Conn>,
    rd: &mut ReadHalf<TcpStream>,
    input: &mut InBuf,
    wake: &LocalReceiver<()>,
    snap_zxid: i64,
) -> Result<(), End> {
    c.load.set(Load::AwaitCall);
    let zxid = loop {
        if c.is_closed() {
            return Err(End::Closed);
        }
        if let Load::Requested(z) = c.load.get() {
            break z;
        }
        let _ = wake.recv().await;
    };
    c.load.set(Load::Idle);
    if zxid != snap_zxid {
        return Err(End::Bad(format!("LoadSnapshot 0x{zxid:x} after a SNAP of 0x{snap_zxid:x}")));
    }
    let started = Instant::now();
    tracing::info!("Getting a snapshot from leader 0x{zxid:x}");
    let storage = &inner.storage;
    let mut file = storage
        .begin_snapshot(zxid)
        .await
        .map_err(|e| End::Bad(format!("cannot create the file for snapshot 0x{zxid:x}: {e}")))?;
    let mut rx = SnapshotReceiver::new(zxid, inner.cfg.snap_limits);
    let chunk = inner.cfg.snapshot_chunk_bytes;
    let received = async {
        loop {
            let n = rx.feed(input.data(), SNAP_ITEMS_PER_TURN).map_err(|e| End::Bad(e.to_string()))?;
            input.consume(n);
            if rx.file_pending() >= chunk || rx.is_done() {
                let bytes = rx.take_file_bytes();
                if let Some(f) = &mut file {
                    f.write(bytes)
                        .await
                        .map_err(|e| End::Bad(format!("cannot write snapshot 0x{zxid:x}: {e}")))?;
                }
            }
            if rx.is_done() {
                break;
            }
            if c.is_closed() {
                return Err(End::Closed);
            }
            if n == 0 {
                match input.fill(rd).await {
                    Ok(0) => return Err(End::Gone("closed by the other end inside the snapshot".into())),
                    Ok(_) => {}
                    Err(_) if c.is_closed() => return Err(End::Closed),
                    Err(e) => return Err(End::Gone(format!("read failed inside the snapshot: {e}"))),
                }
            } else {
                // The tree is built on the core: let everything else run between batches.
                futures_lite::future::yield_now().await;
            }
        }
        let got = rx.finish().map_err(|e| End::Bad(e.to_string()))?;
        if let Some(f) = &mut file {
            let io = |e: std::io::Error| End::Bad(format!("cannot write snapshot 0x{zxid:x}: {e}"));
            f.write(got.file_tail.clone()).await.map_err(io)?;
            f.sync().await.map_err(io)?;
        }
        Ok(got)
    }
    .await;
    let got = match received {
        Ok(g) => g,
        Err(e) => {
            if let Some(f) = file {
                f.discard();
            }
            return Err(e);
        }
    };
    // From here on the disk changes: the install runs to its end even if the connection closes
    // meanwhile, and its failure stops the process.
    let (nodes, left_out, sessions) = (got.nodes, got.left_out, got.sessions);
    storage.install(zxid, file, got.tree).await.map_err(|e| End::Fatal(e.to_string()))?;
    tracing::info!(
        "loaded the leader's snapshot 0x{zxid:x} in {} ms: {nodes} nodes ({left_out} created after it left to the txns that follow), {} sessions",
        started.elapsed().as_millis(),
        sessions.len()
    );
    let tag = c.sid.get().map(|s| (s, c.gen.get()));
    inner.push_control(LinkEvent::SnapshotLoaded { zxid, sessions, current: true }, tag);
    Ok(())
}

async fn write_loop(inner: Rc<Inner>, c: Rc<Conn>, mut wr: WriteHalf<TcpStream>, wake: LocalReceiver<()>) {
    let failed = loop {
        let seg = loop {
            if c.is_closed() {
                break None;
            }
            if let Some(s) = c.pop() {
                break Some(s);
            }
            if wake.recv().await.is_none() {
                break None;
            }
        };
        let r = match seg {
            None => break None,
            Some(Segment::Bytes(b)) => match wr.write_all(&b).await {
                // TLS holds written bytes until flushed (plain TCP: flushing costs nothing).
                Ok(()) => wr.flush().await.map_err(|e| format!("write failed: {e}")),
                Err(e) => Err(format!("write failed: {e}")),
            },
            Some(Segment::Snapshot { zxid, sessions }) => {
                stream_snapshot(&inner, &c, &mut wr, zxid, sessions).await
            }
        };
        if let Err(why) = r {
            break Some(why);
        }
    };
    if let Some(why) = failed {
        if !c.is_closed() {
            tracing::info!("quorum connection to {} closed: {why}", c.name());
            inner.close(&c, &why, true);
        }
    }
}

/// Writes the snapshot stream of the live tree, a chunk at a time, yielding between chunks.
async fn stream_snapshot(
    inner: &Rc<Inner>,
    c: &Rc<Conn>,
    wr: &mut WriteHalf<TcpStream>,
    zxid: i64,
    sessions: Vec<(i64, i32)>,
) -> Result<(), String> {
    let tree = inner.storage.tree().clone();
    let last = tree.last_processed_zxid();
    // The tree must hold everything up to the SNAP zxid (the learner replays only what
    // follows it). An epoch's first zxid (counter 0) names no txn.
    if last < zxid && counter_of(zxid) != 0 {
        // The host performed SendSnapshot before the commits before it were applied: a bug.
        let why = format!("asked to send snapshot 0x{zxid:x}, but the tree is at 0x{last:x}");
        tracing::error!("{why}: dropping {}", c.name());
        return Err(why);
    }
    let started = Instant::now();
    tracing::info!("Sending snapshot 0x{zxid:x} to {}", c.name());
    let chunk_bytes = inner.cfg.snapshot_chunk_bytes;
    let mut src = SnapshotSource::new(sessions);
    let mut chunk = Vec::with_capacity(chunk_bytes + 4096);
    loop {
        chunk.clear();
        let done = src.fill(&tree, &mut chunk, chunk_bytes);
        wr.write_all(&chunk).await.map_err(|e| format!("write failed inside snapshot 0x{zxid:x}: {e}"))?;
        wr.flush().await.map_err(|e| format!("write failed inside snapshot 0x{zxid:x}: {e}"))?;
        if done {
            break;
        }
        if c.is_closed() {
            return Err("closed inside the snapshot".into());
        }
        // Let the core's other work (commits, other learners) run between chunks.
        futures_lite::future::yield_now().await;
    }
    let (nodes, bytes) = src.produced();
    tracing::info!(
        "sent snapshot 0x{zxid:x} to {}: {nodes} nodes, {bytes} bytes in {} ms",
        c.name(),
        started.elapsed().as_millis()
    );
    Ok(())
}
