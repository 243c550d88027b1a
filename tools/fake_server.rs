//! A tiny fake ZooKeeper server for the tools' tests: it answers the handshake and every request
//! after a fixed delay, returns a chosen error code for every Nth getData, can stall all replies
//! for a while, and closes a connection that sends a frame longer than its `max_frame`.
//! Test-only: it keeps no tree (reads return a fixed value, writes succeed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::{
    ConnectResponse, CreateRequest, CreateResponse, GetDataResponse, OpCode, ReplyHeader, RequestHeader,
    SetDataResponse, Stat,
};

#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Every reply is sent this long after its request was read.
    pub delay: Duration,
    /// Every Nth getData (1-based count) is answered with `error_code`; 0 = never.
    pub error_every_nth_get: u64,
    pub error_code: i32,
    /// Once the first getData arrives, replies due in [first + .0, first + .0 + .1) wait until the end.
    pub stall: Option<(Duration, Duration)>,
    /// Request frames longer than this close the connection (jute.maxbuffer).
    pub max_frame: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            delay: Duration::from_millis(2),
            error_every_nth_get: 0,
            error_code: -101,
            stall: None,
            max_frame: 1_048_575,
        }
    }
}

#[derive(Debug, Default)]
pub struct FakeStats {
    pub connections: AtomicU64,
    pub get_data: AtomicU64,
    pub injected_errors: AtomicU64,
    pub oversized_frames: AtomicU64,
}

pub struct FakeServer {
    pub addr: String,
    pub stats: Arc<FakeStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Shared {
    cfg: FakeConfig,
    stats: Arc<FakeStats>,
    first_get: Mutex<Option<Instant>>,
    next_session: AtomicU64,
}

impl FakeServer {
    pub fn start(cfg: FakeConfig) -> FakeServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr").to_string();
        let stats = Arc::new(FakeStats::default());
        let shared = Arc::new(Shared {
            cfg,
            stats: stats.clone(),
            first_get: Mutex::new(None),
            next_session: AtomicU64::new(0x1000),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((s, _)) = listener.accept().await else { continue };
                        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(serve(s, shared.clone()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = rx => {}
                }
            });
        });
        FakeServer { addr, stats, stop: Some(tx), thread: Some(thread) }
    }
}

async fn read_frame(rd: &mut (impl AsyncReadExt + Unpin), max: usize, stats: &FakeStats) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await.ok()?;
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > max {
        stats.oversized_frames.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let mut b = vec![0u8; len as usize];
    rd.read_exact(&mut b).await.ok()?;
    Some(b)
}

fn reply(xid: i32, err: i32, body: Option<&dyn Fn(&mut Writer)>) -> Vec<u8> {
    let mut w = Writer::new();
    ReplyHeader { xid, zxid: 1, err }.encode(&mut w);
    if let (0, Some(f)) = (err, body) {
        f(&mut w);
    }
    let mut out = Vec::with_capacity(w.buf.len() + 4);
    zkd::proto::frame::frame(&w.buf, &mut out);
    out
}

async fn serve(s: TcpStream, sh: Arc<Shared>) {
    let _ = s.set_nodelay(true);
    let (mut rd, mut wr) = s.into_split();
    let Some(_hs) = read_frame(&mut rd, sh.cfg.max_frame, &sh.stats).await else { return };
    let resp = ConnectResponse {
        protocol_version: 0,
        time_out: 30_000,
        session_id: sh.next_session.fetch_add(1, Ordering::Relaxed) as i64,
        passwd: vec![0; 16],
        read_only: false,
    };
    let mut out = Vec::new();
    zkd::proto::frame::frame(&resp.to_bytes(), &mut out);
    if wr.write_all(&out).await.is_err() {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>, bool)>(4096);
    let writer = tokio::spawn(async move {
        while let Some((due, bytes, last)) = rx.recv().await {
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            if wr.write_all(&bytes).await.is_err() || last {
                return;
            }
        }
    });
    let stat = Stat { version: 0, data_length: 1, ..Stat::default() };
    while let Some(frame) = read_frame(&mut rd, sh.cfg.max_frame, &sh.stats).await {
        let now = Instant::now();
        let mut r = Reader::new(&frame);
        let Ok(h) = RequestHeader::decode(&mut r) else { break };
        let mut due = now + sh.cfg.delay;
        let mut last = false;
        let bytes = match OpCode::from_i32(h.op_type) {
            Some(OpCode::Ping) => {
                due = now;
                reply(h.xid, 0, None)
            }
            Some(OpCode::CloseSession) => {
                last = true;
                reply(h.xid, 0, None)
            }
            Some(OpCode::GetData) => {
                let n = sh.stats.get_data.fetch_add(1, Ordering::Relaxed) + 1;
                let first = *sh.first_get.lock().unwrap().get_or_insert(now);
                if let Some((after, len)) = sh.cfg.stall {
                    if due >= first + after && due < first + after + len {
                        due = first + after + len;
                    }
                }
                let every = sh.cfg.error_every_nth_get;
                if every > 0 && n.is_multiple_of(every) {
                    sh.stats.injected_errors.fetch_add(1, Ordering::Relaxed);
                    reply(h.xid, sh.cfg.error_code, None)
                } else {
                    let g = GetDataResponse { data: Some(b"v".to_vec()), stat: stat.clone() };
                    reply(h.xid, 0, Some(&|w: &mut Writer| g.encode(w)))
                }
            }
            Some(OpCode::SetData) => {
                let s = SetDataResponse { stat: stat.clone() };
                reply(h.xid, 0, Some(&|w: &mut Writer| s.encode(w)))
            }
            Some(OpCode::Create) => {
                let path = CreateRequest::decode(&mut r).map(|c| c.path).unwrap_or_default();
                let c = CreateResponse { path };
                reply(h.xid, 0, Some(&|w: &mut Writer| c.encode(w)))
            }
            Some(OpCode::GetChildren) => reply(h.xid, 0, Some(&|w: &mut Writer| w.i32(0))),
            Some(OpCode::Multi) => reply(
                h.xid,
                0,
                Some(&|w: &mut Writer| {
                    zkd::proto::MultiHeader { op_type: -1, done: true, err: -1 }.encode(w)
                }),
            ),
            _ => reply(h.xid, 0, None),
        };
        if tx.send((due, bytes, last)).await.is_err() || last {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
