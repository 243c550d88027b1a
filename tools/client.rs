//! A lean asynchronous ZooKeeper client connection for the tools: one TCP connection, one session,
//! requests pipelined without limit other than the caller's, replies handed back as they arrive.
//!
//! It does not match xids itself (the caller keeps its own table of outstanding requests, because
//! what it needs to remember per request differs per tool) and never reconnects: a closed socket is
//! reported once as [`Event::Closed`] and the caller decides what to do.

use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::{ConnectRequest, ConnectResponse, OpCode, ReplyHeader, RequestHeader};

/// Replies buffered between the socket reader task and the session; the reader waits when full.
pub const EVENT_QUEUE_MAX: usize = 4096;
/// Socket read buffer of the reply reader.
const READ_BUFFER_BYTES: usize = 64 << 10;
/// The default client-side bound on a reply frame (ZooKeeper's jute.maxbuffer default is 1 MiB - 1;
/// the tools accept more so that they can observe what a server sends).
pub const REPLY_FRAME_MAX_BYTES: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("timed out after {after_ms} ms while {what} ({addr})")]
    Timeout { addr: String, what: &'static str, after_ms: u64 },
    #[error("handshake with {addr} failed: {why}")]
    Handshake { addr: String, why: String },
    #[error("connection to {addr} closed: {why}")]
    Closed { addr: String, why: String },
}

/// One reply frame: its header, the rest of the body (undecoded), and when it was read.
#[derive(Debug, Clone)]
pub struct Reply {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: Vec<u8>,
    pub at: Instant,
}

#[derive(Debug)]
pub enum Event {
    Reply(Reply),
    /// The socket is gone (EOF, error or an unreadable frame); nothing follows.
    Closed(String),
}

/// An established session on one connection.
pub struct Conn {
    pub addr: String,
    pub session_id: i64,
    pub negotiated_timeout_ms: i32,
    wr: OwnedWriteHalf,
    rx: mpsc::Receiver<Event>,
    reader: tokio::task::JoinHandle<()>,
    next_xid: i32,
    out: Vec<u8>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_frame<R: AsyncReadExt + Unpin>(rd: &mut R, max: usize) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await.map_err(|e| format!("reading length: {e}"))?;
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > max {
        return Err(format!("reply frame length {len} outside 0..={max}"));
    }
    let mut body = vec![0u8; len as usize];
    rd.read_exact(&mut body).await.map_err(|e| format!("reading {len}-byte body: {e}"))?;
    Ok(body)
}

impl Conn {
    /// Connects, performs the ConnectRequest/ConnectResponse handshake, and starts the reader.
    pub async fn connect(
        addr: &str,
        session_timeout_ms: i32,
        timeout: Duration,
    ) -> Result<Conn, ClientError> {
        Self::connect_with(addr, session_timeout_ms, timeout, REPLY_FRAME_MAX_BYTES).await
    }

    pub async fn connect_with(
        addr: &str,
        session_timeout_ms: i32,
        timeout: Duration,
        reply_frame_max_bytes: usize,
    ) -> Result<Conn, ClientError> {
        Self::connect_seen(addr, session_timeout_ms, timeout, reply_frame_max_bytes, 0).await
    }

    /// A new session that presents `last_zxid_seen`, the newest zxid this client has seen, as
    /// ZooKeeper's client does: a server that is behind it refuses the session, so the client
    /// never sees the past after seeing the present.
    pub async fn connect_seen(
        addr: &str,
        session_timeout_ms: i32,
        timeout: Duration,
        reply_frame_max_bytes: usize,
        last_zxid_seen: i64,
    ) -> Result<Conn, ClientError> {
        let to = |what| ClientError::Timeout {
            addr: addr.to_string(),
            what,
            after_ms: timeout.as_millis() as u64,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| to("connecting"))?
            .map_err(|source| ClientError::Connect { addr: addr.to_string(), source })?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen,
            time_out: session_timeout_ms,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: false,
        };
        let mut out = Vec::new();
        zkd::proto::frame::frame(&req.to_bytes(), &mut out);
        let hs = |why: String| ClientError::Handshake { addr: addr.to_string(), why };
        tokio::time::timeout(timeout, wr.write_all(&out))
            .await
            .map_err(|_| to("sending the handshake"))?
            .map_err(|e| hs(format!("write: {e}")))?;
        let body = tokio::time::timeout(timeout, read_frame(&mut rd, 4096))
            .await
            .map_err(|_| to("waiting for the ConnectResponse"))?
            .map_err(hs)?;
        // Old servers omit readOnly; accept both.
        let mut r = Reader::new(&body);
        let resp = ConnectResponse {
            protocol_version: r.i32().map_err(|e| hs(e.to_string()))?,
            time_out: r.i32().map_err(|e| hs(e.to_string()))?,
            session_id: r.i64().map_err(|e| hs(e.to_string()))?,
            passwd: r.buffer().map_err(|e| hs(e.to_string()))?,
            read_only: r.remaining() > 0 && r.bool().map_err(|e| hs(e.to_string()))?,
        };
        if resp.time_out <= 0 {
            return Err(hs(format!("session refused (negotiated timeout {} ms)", resp.time_out)));
        }
        let (tx, rx) = mpsc::channel(EVENT_QUEUE_MAX);
        // Buffered: one read syscall serves every reply that arrived together (a pipelined session
        // gets many), so the load generator is not the bottleneck it measures.
        let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
        let reader = tokio::spawn(async move {
            loop {
                let ev = match read_frame(&mut rd, reply_frame_max_bytes).await {
                    Err(why) => Event::Closed(why),
                    Ok(body) => {
                        let at = Instant::now();
                        let mut r = Reader::new(&body);
                        match ReplyHeader::decode(&mut r) {
                            Err(e) => Event::Closed(format!("bad reply header: {e}")),
                            Ok(h) => Event::Reply(Reply {
                                xid: h.xid,
                                zxid: h.zxid,
                                err: h.err,
                                body: r.rest().to_vec(),
                                at,
                            }),
                        }
                    }
                };
                let closed = matches!(ev, Event::Closed(_));
                if tx.send(ev).await.is_err() || closed {
                    return;
                }
            }
        });
        Ok(Conn {
            addr: addr.to_string(),
            session_id: resp.session_id,
            negotiated_timeout_ms: resp.time_out,
            wr,
            rx,
            reader,
            next_xid: 1,
            out: Vec::new(),
        })
    }

    /// Appends one request to the output buffer (sent by [`Conn::flush`]); returns its xid.
    pub fn queue(&mut self, op: OpCode, body: &impl Record) -> i32 {
        let xid = self.next_xid();
        self.queue_with_xid(xid, op, body);
        xid
    }

    /// A request without a body (ping, closeSession).
    pub fn queue_empty(&mut self, xid: i32, op: OpCode) {
        let mut w = Writer::with_capacity(8);
        RequestHeader { xid, op_type: op.code() }.encode(&mut w);
        zkd::proto::frame::frame(&w.buf, &mut self.out);
    }

    pub fn queue_with_xid(&mut self, xid: i32, op: OpCode, body: &impl Record) {
        let mut w = Writer::with_capacity(64);
        RequestHeader { xid, op_type: op.code() }.encode(&mut w);
        body.encode(&mut w);
        zkd::proto::frame::frame(&w.buf, &mut self.out);
    }

    /// Raw bytes, sent as they are (oversized or malformed frames).
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn next_xid(&mut self) -> i32 {
        let xid = self.next_xid;
        self.next_xid = if self.next_xid == i32::MAX { 1 } else { self.next_xid + 1 };
        xid
    }

    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.wr.write_all(&self.out).await;
        self.out.clear();
        r.map_err(|e| ClientError::Closed { addr: self.addr.clone(), why: format!("write: {e}") })
    }

    /// The next reply or the close; cancel-safe. None after the close was already delivered.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// A reply or close that already arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Waits for the reply with `xid`, skipping pings and notifications; other replies are returned
    /// as an error (the caller pipelined something it did not expect).
    pub async fn wait_for(&mut self, xid: i32, timeout: Duration) -> Result<Reply, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev =
                tokio::time::timeout_at(deadline, self.recv()).await.map_err(|_| ClientError::Timeout {
                    addr: self.addr.clone(),
                    what: "waiting for a reply",
                    after_ms: timeout.as_millis() as u64,
                })?;
            match ev {
                None => return Err(ClientError::Closed { addr: self.addr.clone(), why: "closed".into() }),
                Some(Event::Closed(why)) => return Err(ClientError::Closed { addr: self.addr.clone(), why }),
                Some(Event::Reply(r)) if r.xid == xid => return Ok(r),
                Some(Event::Reply(_)) => continue,
            }
        }
    }

    /// One request, flushed, and its reply.
    pub async fn call(
        &mut self,
        op: OpCode,
        body: &impl Record,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let xid = self.queue(op, body);
        self.flush().await?;
        self.wait_for(xid, timeout).await
    }

    /// Sends closeSession and waits (bounded) for its reply; the connection is dropped either way.
    pub async fn close(mut self, timeout: Duration) {
        let xid = self.next_xid();
        self.queue_empty(xid, OpCode::CloseSession);
        if self.flush().await.is_ok() {
            let _ = self.wait_for(xid, timeout).await;
        }
    }
}

/// The name a tool reports for a reply's error code: the ZooKeeper name, or `Unknown(<code>)`.
pub fn error_name(code: i32) -> String {
    match zkd::proto::ErrorCode::from_i32(code) {
        Some(c) => c.name().to_string(),
        None => format!("Unknown({code})"),
    }
}

/// The open ACL (world:anyone, all permissions).
pub fn open_acl() -> Vec<zkd::proto::Acl> {
    vec![zkd::proto::Acl {
        perms: zkd::proto::perms::ALL,
        id: zkd::proto::Id { scheme: "world".into(), id: "anyone".into() },
    }]
}
