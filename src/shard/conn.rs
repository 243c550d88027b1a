//! One client connection: framing, the handshake, per-session FIFO of replies, the writer task;
//! TLS (a rustls state machine fed from and flushed to the io_uring socket, on this shard), and
//! authentication: digest and x509 `addauth`, SASL DIGEST-MD5 (opcode 102), enforced schemes.

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
use crate::request::sasl::{DigestMd5Server, SaslStep};
use crate::tree::WatcherId;

/// How the port a connection came in on speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wire {
    /// The plain client port.
    Plain,
    /// `secureClientPort`: TLS from the first byte.
    Tls,
    /// `client.portUnification`: TLS if the first byte starts a TLS handshake, plain otherwise.
    Unified,
}

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
    /// The TLS session, for a TLS connection (reader and writer take it in turn, never across
    /// an await).
    tls: RefCell<Option<rustls::ServerConnection>>,
    /// The TLS handshake finished and the client's certificate (if any) was turned into its id.
    tls_established: Cell<bool>,
    /// The SASL exchange in progress or done (DIGEST-MD5).
    sasl: RefCell<Option<DigestMd5Server>>,
}

/// ZooKeeper's `updatelatency` covers requests that change state (txns); the rest are reads.
fn is_update(opcode: i32) -> bool {
    matches!(opcode, 1 | 2 | 5 | 7 | 9 | 13 | 14 | 15 | 16 | 19 | 20 | 21 | -11)
}

/// Largest reply backlog a connection may hold before the shard stops reading from it.
const OUT_MAX_BYTES: usize = 4 << 20;

pub fn start(shard: &Rc<Shard>, stream: TcpStream, wire: Wire) {
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
        tls: RefCell::new(None),
        tls_established: Cell::new(false),
        sasl: RefCell::new(None),
    });
    if wire == Wire::Tls && !conn.begin_tls(shard) {
        shard.limits.release(peer.ip(), false);
        return;
    }
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
                // TLS: the plaintext goes through the session; what leaves is its records
                // (and any handshake message the reader left for the writer).
                let buf = match c.seal(buf) {
                    Ok(b) => b,
                    Err(()) => {
                        c.closed.set(true);
                        break;
                    }
                };
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
        if let Some(bye) = c.close_notify() {
            let _ = wr.write_all(&bye).await;
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
        let mut wire = wire;
        let mut raw: Vec<u8> = Vec::new();
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
            if wire == Wire::Plain {
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
            } else {
                // Ciphertext (or, on a unified port, the first bytes that decide).
                raw.resize(16 * 1024, 0);
                let n = match rd.read(&mut raw).await {
                    Ok(0) | Err(_) => {
                        c.tls_eof();
                        break;
                    }
                    Ok(n) => n,
                };
                c.arrived.set(std::time::Instant::now());
                s.probe.add(crate::metrics::Counter::BytesReceived, n as u64);
                if wire == Wire::Unified {
                    if crate::tls::looks_like_tls(raw[0]) {
                        wire = Wire::Tls;
                        if !c.begin_tls(&s) {
                            break;
                        }
                    } else {
                        wire = Wire::Plain;
                        let spare = fb.spare(n);
                        let spare_len = spare.len();
                        spare[..n].copy_from_slice(&raw[..n]);
                        fb.filled(spare_len, n);
                    }
                }
                if wire == Wire::Tls && c.open_tls(&s, &raw[..n], &mut fb).is_err() {
                    break;
                }
            }
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
        // ZooKeeperServer.processPacket: auth and SASL requests are handled before the
        // enforcement check; everything else (pings too) must come from an authenticated session.
        if opcode == OpCode::Sasl as i32 {
            return self.on_sasl(shard, hdr.xid, r.rest());
        }
        if opcode != OpCode::Auth as i32 {
            self.enforce_auth(shard, hdr.xid)?;
        }
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
                    shard.limits.auth_failed(self.peer.ip());
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
            "digest" if shard.settings.auth.digest_enabled => {
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
            // X509AuthenticationProvider: succeeds when the TLS handshake verified a client
            // certificate (its id was added then).
            "x509" => self.auth.borrow().iter().any(|i| i.scheme == "x509"),
            _ => false,
        }
    }

    /// Starts the TLS session of a connection on a TLS port. False: no TLS configuration (the
    /// connection is dropped).
    fn begin_tls(&self, shard: &Shard) -> bool {
        let Some(ctx) = &shard.tls else {
            tracing::error!("a TLS connection from {} without a TLS configuration", self.peer);
            return false;
        };
        match rustls::ServerConnection::new(ctx.server_config()) {
            Ok(mut t) => {
                // Our own bound on unsent output (OUT_MAX_BYTES) applies before rustls sees it.
                t.set_buffer_limit(None);
                *self.tls.borrow_mut() = Some(t);
                true
            }
            Err(e) => {
                tracing::error!("cannot start a TLS session for {}: {e}", self.peer);
                false
            }
        }
    }

    /// Feeds ciphertext to the TLS session; its plaintext lands in `fb`. Err: the connection
    /// ends (one line was logged, and rustls's alert is left for the writer to send).
    fn open_tls(&self, shard: &Shard, mut data: &[u8], fb: &mut FrameBuf) -> Result<(), ()> {
        let mut guard = self.tls.borrow_mut();
        let Some(t) = guard.as_mut() else { return Err(()) };
        while !data.is_empty() {
            if let Err(e) = t.read_tls(&mut data) {
                tracing::warn!("TLS connection from {} closed: {e}", self.peer);
                return Err(());
            }
            let state = match t.process_new_packets() {
                Ok(st) => st,
                Err(e) => {
                    let handshaking = t.is_handshaking();
                    drop(guard);
                    self.tls_failed(shard, handshaking, &e);
                    return Err(());
                }
            };
            let mut left = state.plaintext_bytes_to_read();
            while left > 0 {
                let spare = fb.spare(left);
                let spare_len = spare.len();
                let n = std::io::Read::read(&mut t.reader(), spare).unwrap_or(0);
                fb.filled(spare_len, n);
                if n == 0 {
                    break;
                }
                left = left.saturating_sub(n);
            }
        }
        let established = !t.is_handshaking() && !self.tls_established.get();
        let chain: Option<Vec<Vec<u8>>> = if established {
            t.peer_certificates().map(|c| c.iter().map(|d| d.to_vec()).collect())
        } else {
            None
        };
        let wants_write = t.wants_write();
        drop(guard);
        if wants_write {
            let _ = self.wake_writer.try_send(());
        }
        if established {
            self.tls_established.set(true);
            self.x509_login(shard, chain)?;
        }
        Ok(())
    }

    /// The handshake failed (a certificate that is expired or from an unknown CA, bytes that are
    /// not TLS): one line naming the peer and rustls's reason; the alert goes out, then the
    /// connection closes.
    fn tls_failed(&self, shard: &Shard, handshaking: bool, e: &rustls::Error) {
        shard.probe.add(crate::metrics::Counter::AuthFailed, 1);
        shard.limits.auth_failed(self.peer.ip());
        if handshaking {
            tracing::warn!("Unsuccessful TLS handshake with {}: {e}", self.peer);
        } else {
            tracing::warn!(
                "TLS error on the connection from {} (session 0x{:x}): {e}",
                self.peer,
                self.session.get()
            );
        }
        self.close_after_flush.set(true);
        let _ = self.wake_writer.try_send(());
    }

    /// The peer closed the socket.
    fn tls_eof(&self) {
        if self.tls.borrow().as_ref().is_some_and(|t| t.is_handshaking()) {
            tracing::info!("{} closed the connection during the TLS handshake", self.peer);
        }
    }

    /// NettyServerCnxnFactory.CertificateVerifier: a verified client certificate makes the
    /// connection `x509:<subject DN>` (and `super` if it is X509AuthenticationProvider's
    /// superUser). No certificate (clientAuth=want/none): nothing to add.
    fn x509_login(&self, shard: &Shard, chain: Option<Vec<Vec<u8>>>) -> Result<(), ()> {
        let Some(chain) = chain.filter(|c| !c.is_empty()) else { return Ok(()) };
        let der: Vec<rustls::pki_types::CertificateDer<'_>> =
            chain.iter().map(|c| rustls::pki_types::CertificateDer::from(c.as_slice())).collect();
        let Some(dn) = crate::tls::client_id(&der) else {
            shard.limits.auth_failed(self.peer.ip());
            tracing::error!(
                "Authentication failed for {}: its certificate's subject cannot be read",
                self.peer
            );
            self.close();
            return Err(());
        };
        let mut ids = (**self.auth.borrow()).clone();
        if shard.settings.auth.x509_super_user.as_deref() == Some(dn.as_str()) {
            ids.push(Id { scheme: "super".into(), id: dn.clone() });
            tracing::info!("Authenticated Id '{dn}' as super user");
        }
        tracing::info!("Authenticated Id '{dn}' for Scheme 'x509' ({})", self.peer);
        ids.push(Id { scheme: "x509".into(), id: dn });
        *self.auth.borrow_mut() = Arc::new(ids);
        Ok(())
    }

    /// The bytes to put on the socket for `plain`: itself on a plain connection; on a TLS one,
    /// its records plus whatever the session has to send (handshake messages, alerts).
    fn seal(&self, plain: Vec<u8>) -> Result<Vec<u8>, ()> {
        let mut guard = self.tls.borrow_mut();
        let Some(t) = guard.as_mut() else { return Ok(plain) };
        if !plain.is_empty() && std::io::Write::write_all(&mut t.writer(), &plain).is_err() {
            return Err(());
        }
        let mut out = Vec::new();
        while t.wants_write() {
            if t.write_tls(&mut out).is_err() {
                return Err(());
            }
        }
        Ok(out)
    }

    /// The close_notify alert of a TLS connection that is closing.
    fn close_notify(&self) -> Option<Vec<u8>> {
        let mut guard = self.tls.borrow_mut();
        let t = guard.as_mut()?;
        if t.is_handshaking() {
            // A failed handshake's alert was sent with the last flush.
            return None;
        }
        t.send_close_notify();
        let mut out = Vec::new();
        while t.wants_write() {
            if t.write_tls(&mut out).is_err() {
                break;
            }
        }
        Some(out)
    }

    /// The SASL request (opcode 102), as ZooKeeperServer.processSasl answers it: the next token
    /// of the DIGEST-MD5 exchange, `sasl:<user>` (and `super` for zookeeper.superUser) once it
    /// completes; a failure answers AuthFailed (SessionClosedRequireSaslAuth when SASL is
    /// enforced) and closes the connection.
    fn on_sasl(&self, shard: &Shard, xid: i32, body: &[u8]) -> Result<(), String> {
        let token = match crate::proto::GetSaslRequest::decode(&mut Reader::new(body)) {
            Ok(r) => r.token,
            Err(e) => {
                self.enqueue_done(reply(xid, 0, ErrorCode::MarshallingError));
                tracing::debug!("SASL request from {} rejected: {e}", self.peer);
                return Ok(());
            }
        };
        let auth = &shard.settings.auth;
        // Without a JAAS login ZooKeeper has no SASL server: the request is answered OK, with
        // no token.
        let Some(users) = &auth.sasl else {
            tracing::error!("SASL request from {}, but no JAAS file configures SASL (-Djava.security.auth.login.config in SERVER_JVMFLAGS, or zkd serve --jaas-config)", self.peer);
            self.enqueue_done(sasl_reply(xid, ErrorCode::Ok, None));
            return Ok(());
        };
        let step = {
            let mut server = self.sasl.borrow_mut();
            let server = server.get_or_insert_with(|| DigestMd5Server::new(crate::request::sasl::nonce()));
            server.step(&token, users)
        };
        match step {
            Ok(SaslStep::Challenge(t)) => self.enqueue_done(sasl_reply(xid, ErrorCode::Ok, Some(&t))),
            Ok(SaslStep::Complete { token, authorization_id }) => {
                tracing::info!(
                    "Session 0x{:x}: adding SASL authorization for authorizationID: {authorization_id}",
                    self.session.get()
                );
                let mut ids = (**self.auth.borrow()).clone();
                let id = Id { scheme: "sasl".into(), id: authorization_id.clone() };
                if !ids.contains(&id) {
                    ids.push(id);
                }
                if auth.sasl_super_users.contains(&authorization_id) {
                    ids.push(Id { scheme: "super".into(), id: String::new() });
                    tracing::info!(
                        "Session 0x{:x}: Authenticated Id '{authorization_id}' as super user",
                        self.session.get()
                    );
                }
                *self.auth.borrow_mut() = Arc::new(ids);
                self.enqueue_done(sasl_reply(xid, ErrorCode::Ok, Some(&token)));
            }
            Err(e) => {
                shard.probe.add(crate::metrics::Counter::AuthFailed, 1);
                shard.limits.auth_failed(self.peer.ip());
                tracing::warn!("Client {} failed to SASL authenticate: {e}", self.peer);
                if auth.allow_sasl_failed_clients && !auth.sasl_auth_required() {
                    self.enqueue_done(sasl_reply(xid, ErrorCode::Ok, None));
                    return Ok(());
                }
                let err = if auth.sasl_auth_required() {
                    ErrorCode::SessionClosedRequireSasl
                } else {
                    ErrorCode::AuthFailed
                };
                self.queue.borrow_mut().push_back(Slot::Done(sasl_reply(xid, err, None)));
                self.close_after_flush.set(true);
                self.flush_done();
                return Err(format!("SASL authentication failed ({e})"));
            }
        }
        Ok(())
    }

    /// AuthenticationHelper.enforceAuthentication: with enforcement on, a session that has no id
    /// of an enforced scheme gets SessionClosedRequireSaslAuth for its request, and its
    /// connection is closed.
    fn enforce_auth(&self, shard: &Shard, xid: i32) -> Result<(), String> {
        let auth = &shard.settings.auth;
        if !auth.enforce_auth {
            return Ok(());
        }
        let ids = self.auth.borrow().clone();
        if ids.iter().any(|i| auth.enforce_schemes.contains(&i.scheme)) {
            return Ok(());
        }
        shard.limits.unauthenticated(self.peer.ip());
        let schemes: Vec<&str> = ids.iter().map(|i| i.scheme.as_str()).collect();
        self.queue.borrow_mut().push_back(Slot::Done(reply(xid, 0, ErrorCode::SessionClosedRequireSasl)));
        self.close_after_flush.set(true);
        self.flush_done();
        Err(format!(
            "client authentication scheme(s) {schemes:?} does not match any of the expected authentication schemes {:?}, closing session 0x{:x}",
            auth.enforce_schemes,
            self.session.get()
        ))
    }
}

/// A SASL reply: header, then SetSASLResponse (a null token is a -1 length, as Java sends it).
fn sasl_reply(xid: i32, err: ErrorCode, token: Option<&[u8]>) -> Vec<u8> {
    let mut w = crate::proto::jute::Writer::with_capacity(4 + token.map_or(0, <[u8]>::len));
    w.opt_buffer(token);
    framed_raw(&ReplyHeader { xid, zxid: 0, err: err as i32 }, &w.into_inner())
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
