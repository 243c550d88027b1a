//! One client connection: framing, the handshake, per-session FIFO of replies, the writer task.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;

use super::Shard;
use crate::mesh::msg::{ConnRef, ToReplica};
use crate::proto::frame::{framed, framed_raw};
use crate::proto::frame::{FrameBuf, FrameSpan};
use crate::proto::jute::{Reader, Record};
use crate::proto::ops::Request;
use crate::proto::{
    xid, ConnectRequest, ErrorCode, EventType, Id, KeeperState, OpCode, ReplyHeader, RequestHeader,
    WatcherEvent,
};
use crate::tree::WatcherId;

/// Reply-queue entries, in request order.
pub enum Slot {
    /// Handed to the replica, not answered yet: a write, or a read that arrived behind one of
    /// the session's writes and so runs at its place in the apply order.
    AtReplica { xid: i32 },
    /// An answer ready to go out once everything before it has.
    Done(Vec<u8>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    AwaitConnect,
    Connecting,
    Connected,
}

pub struct Conn {
    pub id: u64,
    pub peer: SocketAddr,
    fd: i32,
    phase: Cell<Phase>,
    pub session: Cell<i64>,
    pub timeout_ms: Cell<i32>,
    pub auth: RefCell<Arc<Vec<Id>>>,
    queue: RefCell<VecDeque<Slot>>,
    /// Frames received before the handshake finished (clients may pipeline them).
    early: RefCell<Vec<Vec<u8>>>,
    out: RefCell<Vec<u8>>,
    wake_writer: LocalSender<()>,
    closed: Cell<bool>,
    close_after_flush: Cell<bool>,
    pub packets_received: Cell<u64>,
    pub packets_sent: Cell<u64>,
    /// Paths this connection set watches on, so closing it removes them without a tree scan.
    pub watched: RefCell<std::collections::HashSet<String>>,
    /// Statistics other threads read (cons, stat, wchc, admin).
    pub stats: Arc<super::ConnStats>,
    /// Arrival time, opcode and xid of each queued request, in queue order (latency, cons).
    pending: RefCell<VecDeque<(std::time::Instant, i32, i32)>>,
    /// When the last socket read returned: the arrival time of every frame it held (one clock
    /// read per read, not per request).
    arrived: Cell<std::time::Instant>,
    probe: Arc<crate::metrics::ShardProbe>,
    /// The writer drained the reply buffer below `OUT_MAX_BYTES` (or stopped).
    drained: super::notify::LocalNotify,
    /// The shard's "a request was answered" signal.
    answered_signal: Rc<super::notify::LocalNotify>,
}

/// ZooKeeper's `updatelatency` covers requests that change state (txns); the rest are reads.
fn is_update(opcode: i32) -> bool {
    matches!(opcode, 1 | 2 | 5 | 7 | 9 | 13 | 14 | 15 | 16 | 19 | 20 | 21 | -11)
}

/// Largest reply backlog a connection may hold before the shard stops reading from it.
const OUT_MAX_BYTES: usize = 4 << 20;

pub fn start(shard: &Rc<Shard>, stream: TcpStream) {
    let peer = match stream.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let max = shard.settings.max_client_cnxns;
    let admission = shard.limits.admit(peer.ip());
    super::limits::log_admission(peer.ip(), &admission, max);
    if !admission.admitted {
        shard.probe.conn_rejected_max_cnxns();
        return; // dropping the stream closes it
    }
    let _ = stream.set_nodelay(true);
    let id = shard.next_conn.get();
    shard.next_conn.set(id + 1);
    let (wake_tx, wake_rx) = local_channel::new_bounded::<()>(1);
    let conn = Rc::new(Conn {
        id,
        peer,
        fd: stream.as_raw_fd(),
        phase: Cell::new(Phase::AwaitConnect),
        session: Cell::new(0),
        timeout_ms: Cell::new(0),
        auth: RefCell::new(Arc::new(vec![Id { scheme: "ip".into(), id: peer.ip().to_string() }])),
        queue: RefCell::new(VecDeque::new()),
        early: RefCell::new(Vec::new()),
        out: RefCell::new(Vec::new()),
        wake_writer: wake_tx,
        closed: Cell::new(false),
        close_after_flush: Cell::new(false),
        packets_received: Cell::new(0),
        packets_sent: Cell::new(0),
        watched: RefCell::new(std::collections::HashSet::new()),
        stats: Arc::new(super::ConnStats::new(id, shard.id, peer)),
        pending: RefCell::new(VecDeque::new()),
        arrived: Cell::new(std::time::Instant::now()),
        probe: shard.probe.clone(),
        drained: Default::default(),
        answered_signal: shard.answered.clone(),
    });
    shard.conns.borrow_mut().insert(id, conn.clone());
    shard.ops.register(conn.stats.clone());
    shard.probe.conn_opened();

    let (mut rd, mut wr) = futures_lite::io::split(stream);
    // Writer: flushes the connection's output buffer whenever woken.
    let c = conn.clone();
    glommio::spawn_local(async move {
        while wake_rx.recv().await.is_some() {
            loop {
                let buf = std::mem::take(&mut *c.out.borrow_mut());
                if buf.is_empty() {
                    break;
                }
                if wr.write_all(&buf).await.is_err() {
                    c.closed.set(true);
                    break;
                }
                if c.out.borrow().len() <= OUT_MAX_BYTES {
                    c.drained.notify_all();
                }
                // Hand the allocation back for reuse when nothing new was queued meanwhile.
                let mut o = c.out.borrow_mut();
                if o.is_empty() && buf.capacity() <= 1 << 20 {
                    let mut buf = buf;
                    buf.clear();
                    *o = buf;
                }
            }
            if c.closed.get() || c.close_after_flush.get() {
                break;
            }
        }
        let _ = wr.flush().await;
        c.drained.notify_all();
        // Wakes the reader (its pending read returns 0) so it can clean up.
        unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
    })
    .detach();

    // Reader: frames in, requests dispatched; cleans up when the connection ends.
    let s = shard.clone();
    let c = conn;
    glommio::spawn_local(async move {
        let mut fb = FrameBuf::new();
        let mut first = true;
        let mut four_letter = false;
        let max = s.settings.jute_max_buffer;
        'read: while !c.closed.get() {
            if c.out.borrow().len() > OUT_MAX_BYTES {
                // Back-pressure: a client that does not read its replies stops being read until
                // the writer has drained them.
                c.drained.wait().await;
                continue;
            }
            // globalOutstandingLimit: stop reading while too many requests are in flight, until
            // one of this shard's is answered.
            if s.over_outstanding_limit(s.probe.outstanding()) {
                s.probe.set_backpressured(true);
                c.stats.not_reading.store(true, std::sync::atomic::Ordering::Relaxed);
                s.answered.wait().await;
                continue;
            }
            // The replica's queue is full: read nothing more until this shard handed over
            // what it holds for it.
            if s.replica_backlogged() {
                c.stats.not_reading.store(true, std::sync::atomic::Ordering::Relaxed);
                s.replica_drained.wait().await;
                continue;
            }
            if s.probe.backpressured() {
                s.probe.set_backpressured(false);
            }
            c.stats.not_reading.store(false, std::sync::atomic::Ordering::Relaxed);
            let spare = fb.spare(16 * 1024);
            let spare_len = spare.len();
            let n = match rd.read(spare).await {
                Ok(0) | Err(_) => {
                    fb.filled(spare_len, 0);
                    break;
                }
                Ok(n) => n,
            };
            c.arrived.set(std::time::Instant::now());
            s.probe.add(crate::metrics::Counter::BytesReceived, n as u64);
            fb.filled(spare_len, n);
            loop {
                match fb.next_span(max, &mut first) {
                    Ok(None) => break,
                    Ok(Some(FrameSpan::FourLetter(w))) => {
                        four_letter = true;
                        c.stats.packet_received();
                        c.stats.not_reading.store(true, std::sync::atomic::Ordering::Relaxed);
                        s.probe.add(crate::metrics::Counter::FourLetterWords, 1);
                        let text = s.ops.four_letter(w).await;
                        c.out.borrow_mut().extend_from_slice(text.as_bytes());
                        c.close_after_flush.set(true);
                        let _ = c.wake_writer.try_send(());
                        break 'read;
                    }
                    Ok(Some(FrameSpan::Packet(body))) => {
                        let body = fb.body(body);
                        c.packets_received.set(c.packets_received.get() + 1);
                        c.stats.packet_received();
                        s.probe.packet_received();
                        if let Err(why) = c.on_packet(&s, body) {
                            tracing::info!("closing connection from {}: {why}", c.peer);
                            break 'read;
                        }
                    }
                    Err(e) => {
                        s.probe.frame_rejected();
                        // One line per IP per interval, however many frames it sends.
                        if let Some(more) = s.limits.maxbuffer_rejected(c.peer.ip()) {
                            tracing::warn!(
                                "Closing connection from client {}: {e} (session 0x{:x}){}",
                                c.peer,
                                c.session.get(),
                                if more > 0 {
                                    format!("; {more} more from this IP since the last message")
                                } else {
                                    String::new()
                                }
                            );
                        }
                        break 'read;
                    }
                }
            }
        }
        c.close();
        s.conns.borrow_mut().remove(&c.id);
        let watched = std::mem::take(&mut *c.watched.borrow_mut());
        s.tree.remove_watcher(WatcherId { shard: s.id, conn: c.id }, watched.iter().map(String::as_str));
        s.ops.unregister(s.id, c.id);
        s.limits.release(c.peer.ip(), c.session.get() != 0 || four_letter);
        if c.session.get() == 0 && !four_letter {
            s.probe.add(crate::metrics::Counter::ConnsClosedWithoutSession, 1);
        }
        // Requests that will never be answered are no longer outstanding.
        let unanswered = c.pending.borrow().len() as i64;
        s.probe.outstanding_add(-unanswered);
        s.answered.notify_all();
        s.probe.conn_closed();
        if c.session.get() != 0 {
            s.to_replica(ToReplica::Disconnected { from: c.conn_ref(s.id), session: c.session.get() });
        } else {
            tracing::debug!(
                "Closed socket connection for client {} (no session established for client)",
                c.peer
            );
        }
    })
    .detach();
}

fn reply(xid: i32, zxid: i64, err: ErrorCode) -> Vec<u8> {
    framed_raw(&ReplyHeader { xid, zxid, err: err as i32 }, &[])
}

impl Conn {
    pub fn conn_ref(&self, shard: u16) -> ConnRef {
        ConnRef { shard, conn: self.id }
    }

    pub fn watcher(&self, shard: u16) -> WatcherId {
        WatcherId { shard, conn: self.id }
    }

    /// Stops the connection: the writer flushes what is queued, then shuts the socket down.
    pub fn close(&self) {
        if !self.close_after_flush.get() {
            self.close_after_flush.set(true);
            let _ = self.wake_writer.try_send(());
        }
    }

    fn push_out(&self, packet: &[u8]) {
        self.out.borrow_mut().extend_from_slice(packet);
        self.packets_sent.set(self.packets_sent.get() + 1);
        self.stats.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.probe.packets_sent(1);
        let _ = self.wake_writer.try_send(());
    }

    pub fn send_event(&self, event: EventType, path: &str) {
        let ev = WatcherEvent {
            event_type: event as i32,
            state: KeeperState::SyncConnected as i32,
            path: path.into(),
        };
        let packet = framed(&ReplyHeader { xid: xid::NOTIFICATION, zxid: -1, err: 0 }, Some(&ev));
        self.push_out(&packet);
    }

    /// The replica answered the handshake.
    pub fn connected(&self, shard: &Shard, session: i64, timeout_ms: i32, packet: Vec<u8>, close: bool) {
        self.push_out(&packet);
        if close || session == 0 {
            self.close();
            return;
        }
        self.session.set(session);
        self.timeout_ms.set(timeout_ms);
        let r = std::sync::atomic::Ordering::Relaxed;
        self.stats.session.store(session, r);
        self.stats.timeout_ms.store(timeout_ms as i64, r);
        self.stats.established_ms.store(crate::clock::wall_ms(), r);
        self.phase.set(Phase::Connected);
        tracing::debug!("session 0x{session:x} established for {} (timeout {timeout_ms} ms)", self.peer);
        let early = std::mem::take(&mut *self.early.borrow_mut());
        for body in early {
            if let Err(why) = self.dispatch(shard, &body) {
                tracing::info!("closing connection from {}: {why}", self.peer);
                self.close();
                return;
            }
        }
    }

    /// The replica answered this connection's oldest request it holds. The replica answers a
    /// connection's requests in the order they were handed over; a reply for any other xid would
    /// break the session's order, so it costs the connection instead (the client reconnects).
    pub fn replica_answered(&self, xid: i32, packet: Vec<u8>, close: bool) {
        let mut q = self.queue.borrow_mut();
        match q.iter_mut().find(|s| matches!(s, Slot::AtReplica { .. })) {
            Some(s @ Slot::AtReplica { .. }) => {
                let Slot::AtReplica { xid: want } = *s else { unreachable!() };
                if want != xid {
                    tracing::error!(
                        "reply for xid {xid} while xid {want} is the oldest unanswered on {} (session 0x{:x}): closing the connection rather than answer out of order",
                        self.peer,
                        self.session.get()
                    );
                    drop(q);
                    self.close();
                    return;
                }
                *s = Slot::Done(packet);
            }
            _ => {
                tracing::error!("reply for xid {xid} without a pending request on {}", self.peer);
                return;
            }
        }
        if close {
            self.close_after_flush.set(true);
        }
    }

    /// Sends the answered prefix of the reply queue.
    pub fn flush_done(&self) {
        let mut q = self.queue.borrow_mut();
        let mut sent = false;
        // One clock read per flush (the replies leave together), not per reply.
        let mut now = None;
        while let Some(Slot::Done(_)) = q.front() {
            if let Some(Slot::Done(p)) = q.pop_front() {
                self.out.borrow_mut().extend_from_slice(&p);
                self.packets_sent.set(self.packets_sent.get() + 1);
                let now = *now.get_or_insert_with(|| (std::time::Instant::now(), crate::clock::wall_ms()));
                self.answered(&p, now);
                sent = true;
            }
        }
        drop(q);
        if sent {
            let _ = self.wake_writer.try_send(());
        }
        if self.close_after_flush.get() {
            let _ = self.wake_writer.try_send(());
        }
    }

    /// Accounting for one reply leaving the queue: latency, outstanding, per-connection stats.
    fn answered(&self, packet: &[u8], (now, wall_ms): (std::time::Instant, i64)) {
        let Some((t0, opcode, xid)) = self.pending.borrow_mut().pop_front() else {
            // Accounting only (the reply itself is in order): say so loudly, keep serving.
            tracing::error!("bug: a reply without a pending request on {}", self.peer);
            return;
        };
        let us = now.saturating_duration_since(t0).as_micros() as u64;
        let zxid = packet.get(8..16).map_or(-1, |b| i64::from_be_bytes(b.try_into().unwrap_or([0xff; 8])));
        let probe = &self.stats;
        probe.outstanding.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        probe.answered(opcode, xid, zxid, (us / 1000) as i64, wall_ms);
        self.probe.outstanding_add(-1);
        self.answered_signal.notify_all();
        self.probe.packets_sent(1);
        self.probe.record_reply(us, is_update(opcode), Some(packet.len().saturating_sub(4)));
    }

    fn on_packet(&self, shard: &Rc<Shard>, body: &[u8]) -> Result<(), String> {
        match self.phase.get() {
            Phase::AwaitConnect => {
                let req = ConnectRequest::decode_handshake(body)
                    .map_err(|e| format!("bad connect request: {e}"))?;
                self.phase.set(Phase::Connecting);
                shard.to_replica(ToReplica::Connect { from: self.conn_ref(shard.id), peer: self.peer, req });
                Ok(())
            }
            Phase::Connecting => {
                self.early.borrow_mut().push(body.to_vec());
                Ok(())
            }
            Phase::Connected => self.dispatch(shard, body),
        }
    }

    /// A request from an established session.
    fn dispatch(&self, shard: &Shard, body: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(body);
        let hdr = RequestHeader::decode(&mut r).map_err(|e| format!("bad request header: {e}"))?;
        self.pending.borrow_mut().push_back((self.arrived.get(), hdr.op_type, hdr.xid));
        self.stats.outstanding.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shard.probe.outstanding_add(1);
        let session = self.session.get();
        shard.touch(session);
        let zxid = shard.tree.last_processed_zxid();
        let opcode = hdr.op_type;
        let req = match Request::decode(opcode, r.rest()) {
            Ok(req) => req,
            Err(e) => {
                // ZooKeeper answers a request it cannot parse with MarshallingError and keeps
                // the session; an unknown opcode gets Unimplemented.
                let err = if OpCode::from_i32(opcode).is_none() {
                    ErrorCode::Unimplemented
                } else {
                    ErrorCode::MarshallingError
                };
                tracing::debug!("request from {} (opcode {opcode}) rejected: {e}", self.peer);
                self.enqueue_done(reply(hdr.xid, zxid, err));
                return Ok(());
            }
        };
        match &req {
            Request::Ping => {
                self.enqueue_read(shard, hdr.xid, opcode, req);
            }
            Request::Auth(ap) => {
                let ok = self.authenticate(shard, &ap.scheme, &ap.auth);
                if ok {
                    self.enqueue_done(reply(hdr.xid, 0, ErrorCode::Ok));
                } else {
                    shard.probe.add(crate::metrics::Counter::AuthFailed, 1);
                    self.enqueue_done(reply(hdr.xid, 0, ErrorCode::AuthFailed));
                    self.close_after_flush.set(true);
                    self.flush_done();
                    return Err(format!("authentication with scheme {:?} failed", ap.scheme));
                }
            }
            r if r.is_write() => {
                self.queue.borrow_mut().push_back(Slot::AtReplica { xid: hdr.xid });
                let auth = self.auth.borrow().clone();
                shard.to_replica(ToReplica::Write {
                    from: self.conn_ref(shard.id),
                    session,
                    xid: hdr.xid,
                    opcode,
                    req,
                    auth,
                });
            }
            _ => self.enqueue_read(shard, hdr.xid, opcode, req),
        }
        Ok(())
    }

    fn enqueue_done(&self, packet: Vec<u8>) {
        self.queue.borrow_mut().push_back(Slot::Done(packet));
        self.flush_done();
    }

    /// A read runs now, on this shard, unless one of the session's writes is still in flight
    /// ahead of it: then it goes to the replica, which runs it after that write is applied and
    /// before any later write of the session (ZooKeeper's CommitProcessor keeps the same order).
    /// Sessions that do not mix reads and writes never take that path.
    fn enqueue_read(&self, shard: &Shard, xid: i32, opcode: i32, req: Request) {
        crate::request::read::watch_paths(&req, &mut self.watched.borrow_mut());
        let behind_write = self.queue.borrow().iter().any(|s| matches!(s, Slot::AtReplica { .. }));
        if behind_write {
            self.queue.borrow_mut().push_back(Slot::AtReplica { xid });
            shard.probe.add(crate::metrics::Counter::ReadsOrderedBehindWrites, 1);
            let auth = self.auth.borrow().clone();
            shard.to_replica(ToReplica::Read {
                from: self.conn_ref(shard.id),
                session: self.session.get(),
                xid,
                req: Box::new(req),
                auth,
            });
            return;
        }
        let _ = opcode;
        crate::tree::begin_observe();
        let packet = {
            let auth = self.auth.borrow();
            let ctx = crate::request::read::ReadCtx {
                session: self.session.get(),
                auth: &auth,
                watcher: self.watcher(shard.id),
                skip_acl: shard.settings.skip_acl,
            };
            crate::request::read::execute(&shard.tree, &ctx, xid, &req, &mut LocalSink { conn: self })
        };
        let seen = crate::tree::end_observe().unwrap_or_else(|| shard.tree.last_processed_zxid());
        // Events of changes this read saw are in the inbox already: they go first; events of
        // later changes (e.g. of a watch this read registered) go after the reply.
        shard.drain_for_read(seen);
        self.queue.borrow_mut().push_back(Slot::Done(packet));
        self.flush_done();
        shard.pump();
    }

    fn authenticate(&self, shard: &Shard, scheme: &str, auth: &[u8]) -> bool {
        match scheme {
            "digest" => {
                let Ok(text) = std::str::from_utf8(auth) else { return false };
                let Some((user, _)) = text.split_once(':') else { return false };
                let digest = crate::request::acl::digest_id(text);
                let mut ids = (**self.auth.borrow()).clone();
                if shard.settings.super_digest.as_deref() == Some(digest.as_str()) {
                    ids.push(Id { scheme: "super".into(), id: String::new() });
                }
                let _ = user;
                let id = Id { scheme: "digest".into(), id: digest };
                // An id is held once (ZooKeeper keeps a set); ZooKeeper lists digest ids first.
                if !ids.contains(&id) {
                    ids.insert(0, id);
                }
                *self.auth.borrow_mut() = Arc::new(ids);
                true
            }
            "ip" => true, // the ip id was added at accept time
            _ => false,
        }
    }
}

/// Events a read fires at once for its own connection (setWatches catching up, delivered
/// unconditionally as ZooKeeper does).
struct LocalSink<'a> {
    conn: &'a Conn,
}

impl crate::tree::WatchSink for LocalSink<'_> {
    fn deliver(
        &mut self,
        _w: crate::tree::WatcherId,
        event: EventType,
        path: &str,
        _acl: &Arc<Vec<crate::proto::Acl>>,
    ) {
        self.conn.send_event(event, path);
    }
}
