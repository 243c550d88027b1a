//! The history recorder: concurrent clients, one session each, run random operations on a few
//! znodes and record each one's call and return time (monotonic) and outcome.
//!
//! Clients use the tools' own client ([`crate::client::Conn`]), not a client library: it never
//! retries or reconnects behind the caller's back, so one recorded operation is exactly one
//! request (or one pipelined sync + read) on one connection, and "no reply" is known for what it
//! is. A library that resubmits after a reconnect would turn one invocation into two writes.
//! Each client has one operation in flight; when it gets no reply (connection lost, or no reply
//! within 2/3 of the session timeout, as ZooKeeper's client gives up) the outcome is unknown and
//! the client reconnects, with a new session, to the next node that is up, presenting the
//! newest zxid it has seen. It also closes its session and moves to the next node every few
//! hundred operations.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::{
    CreateRequest, CreateResponse, DeleteRequest, ErrorCode, ExistsRequest, ExistsResponse, GetDataRequest,
    GetDataResponse, MultiHeader, OpCode, RequestHeader, SetDataResponse, Stat, SyncRequest,
};

use super::history::{write_line, FaultEvent, History, Line, Op, Outcome, Res, RunInfo, Sub};
use crate::client::{error_name, open_acl, ClientError, Conn, REPLY_FRAME_MAX_BYTES};

/// The client addresses of the nodes, `None` while a node is down. The nemesis updates it (a
/// restarted zkd binds a new port).
pub type Addrs = Arc<Mutex<Vec<Option<SocketAddr>>>>;

/// A history being recorded: kept in memory and written line by line to a file, so that what
/// was recorded survives a crash of the recorder itself.
pub struct Recording {
    t0: Instant,
    next_id: AtomicU64,
    /// Per client, when its latest reply came (ns).
    replied: Mutex<HashMap<u32, u64>>,
    inner: Mutex<(History, Option<std::io::BufWriter<std::fs::File>>)>,
}

impl Recording {
    pub fn new(run: RunInfo, file: Option<&Path>) -> anyhow::Result<Arc<Recording>> {
        let mut w = match file {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            )),
            None => None,
        };
        if let Some(w) = &mut w {
            write_line(w, &Line::Run(run.clone()))?;
        }
        let h = History { run: Some(run), ops: Vec::new(), faults: Vec::new() };
        Ok(Arc::new(Recording {
            t0: Instant::now(),
            next_id: AtomicU64::new(0),
            replied: Mutex::new(HashMap::new()),
            inner: Mutex::new((h, w)),
        }))
    }

    /// Nanoseconds since the recording began (monotonic).
    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (History, Option<std::io::BufWriter<std::fs::File>>)> {
        // A panicking client thread must not hide the history of the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn op(&self, mut op: Op) {
        op.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = op.ret_ns {
            self.replied.lock().unwrap_or_else(|e| e.into_inner()).insert(op.client, r);
        }
        let mut g = self.lock();
        if let Some(w) = &mut g.1 {
            // A write error ends the file, not the run: the history is also kept in memory.
            if write_line(w, &Line::Op(op.clone())).is_err() {
                g.1 = None;
            }
        }
        g.0.ops.push(op);
    }

    pub fn fault(&self, node: usize, what: &str, detail: String) {
        let f = FaultEvent { at_ns: self.now_ns(), node, what: what.to_string(), detail };
        eprintln!("[{:9.3}s] fault: node {node} {what} {}", f.at_ns as f64 / 1e9, f.detail);
        let mut g = self.lock();
        if let Some(w) = &mut g.1 {
            if write_line(w, &Line::Fault(f.clone())).is_err() {
                g.1 = None;
            }
        }
        g.0.faults.push(f);
    }

    /// When the latest fault event was logged (0: none yet).
    pub fn last_fault_ns(&self) -> u64 {
        self.lock().0.faults.iter().map(|f| f.at_ns).max().unwrap_or(0)
    }

    /// Whether each of `clients` got a reply after `ns`.
    pub fn all_replied_since(&self, clients: usize, ns: u64) -> bool {
        let r = self.replied.lock().unwrap_or_else(|e| e.into_inner());
        (0..clients as u32).all(|c| r.get(&c).is_some_and(|t| *t > ns))
    }

    /// Flushes the file; returns the history.
    pub fn finish(&self) -> History {
        let mut g = self.lock();
        if let Some(w) = &mut g.1 {
            let _ = w.flush();
        }
        g.0.clone()
    }
}

/// What the clients do.
#[derive(Debug, Clone)]
pub struct Workload {
    pub clients: usize,
    /// Data znodes (created empty before the run) and the sequential parent (created empty).
    pub keys: Vec<String>,
    pub seq_parent: String,
    pub session_timeout_ms: u32,
    pub seed: u64,
}

impl Workload {
    /// `keys` data znodes and one sequential parent under `base`.
    pub fn new(base: &str, keys: usize, clients: usize, session_timeout_ms: u32, seed: u64) -> Workload {
        Workload {
            clients,
            keys: (0..keys).map(|i| format!("{base}/k{i}")).collect(),
            seq_parent: format!("{base}/seq"),
            session_timeout_ms,
            seed,
        }
    }

    fn op_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.session_timeout_ms) * 2 / 3)
    }
}

/// What the clients did, in counts.
#[derive(Debug, Clone, Default)]
pub struct RecordStats {
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
    pub connects: u64,
    pub connect_failures: u64,
    /// Per client, why its last connect attempt failed.
    pub last_connect_error: HashMap<u32, String>,
}

/// Creates the workload's znodes (their parents too), on the first node that answers.
pub fn setup(addrs: &Addrs, wl: &Workload, timeout: Duration) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let deadline = Instant::now() + timeout;
        loop {
            let live: Vec<SocketAddr> =
                addrs.lock().unwrap_or_else(|e| e.into_inner()).iter().flatten().copied().collect();
            for a in live {
                if let Ok(mut c) =
                    Conn::connect(&a.to_string(), wl.session_timeout_ms as i32, Duration::from_secs(5)).await
                {
                    let mut paths: Vec<String> = Vec::new();
                    let mut all: Vec<&String> = wl.keys.iter().collect();
                    all.push(&wl.seq_parent);
                    for p in all {
                        let mut prefix = String::new();
                        for part in p.split('/').filter(|s| !s.is_empty()) {
                            prefix = format!("{prefix}/{part}");
                            if !paths.contains(&prefix) {
                                paths.push(prefix.clone());
                            }
                        }
                    }
                    for p in paths {
                        let req = CreateRequest {
                            path: p.clone(),
                            data: Some(Vec::new()),
                            acl: open_acl(),
                            flags: 0,
                        };
                        let r = c.call(OpCode::Create, &req, Duration::from_secs(10)).await?;
                        anyhow::ensure!(
                            r.err == 0
                                || r.err == ErrorCode::NodeExists as i32
                                    && !wl.keys.contains(&p)
                                    && p != wl.seq_parent,
                            "setup: create {p}: {}",
                            error_name(r.err)
                        );
                    }
                    c.close(Duration::from_secs(2)).await;
                    return Ok(());
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "setup: no node answered within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// How long a run may go on past its duration for every client to get a reply after the last
/// fault (a liveness failure if one does not).
pub const PROGRESS_WAIT_MAX: Duration = Duration::from_secs(10);

/// Runs the clients for `duration`, and then until every client has had a reply since the last
/// fault event, for at most [`PROGRESS_WAIT_MAX`] more; every operation goes to `rec`.
pub fn record(
    rec: &Arc<Recording>,
    addrs: &Addrs,
    wl: &Workload,
    duration: Duration,
) -> anyhow::Result<RecordStats> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stats = Arc::new(Mutex::new(RecordStats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for id in 0..wl.clients {
            let c = Client::new(id as u32, wl.clone(), rec.clone(), addrs.clone(), stats.clone());
            set.spawn(c.run(stop.clone()));
        }
        let (r, st, n) = (rec.clone(), stop.clone(), wl.clients);
        tokio::spawn(async move {
            let t0 = Instant::now();
            tokio::time::sleep(duration).await;
            while !r.all_replied_since(n, r.last_fault_ns()) && t0.elapsed() < duration + PROGRESS_WAIT_MAX {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            st.store(true, Ordering::Relaxed);
        });
        while let Some(r) = set.join_next().await {
            r.map_err(|e| anyhow::anyhow!("client task: {e}"))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let s = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(s)
}

/// One request of an operation, as sent.
struct Sent {
    op: OpCode,
    body: Vec<u8>,
}

struct Client {
    id: u32,
    wl: Workload,
    rec: Arc<Recording>,
    addrs: Addrs,
    stats: Arc<Mutex<RecordStats>>,
    rng: StdRng,
    conn: Option<(Conn, usize)>,
    /// Operations left before the client closes its session and moves to the next node.
    left_on_conn: u32,
    last_zxid: i64,
    next_node: usize,
    values: u64,
    /// The version this client last saw per data znode (None: absent or not known).
    versions: HashMap<String, i32>,
}

/// How an operation ended, before recording.
enum Ended {
    Reply(Outcome),
    Lost(String),
}

impl Client {
    fn new(
        id: u32,
        wl: Workload,
        rec: Arc<Recording>,
        addrs: Addrs,
        stats: Arc<Mutex<RecordStats>>,
    ) -> Client {
        let seed = wl.seed ^ u64::from(id + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Client {
            id,
            next_node: id as usize,
            wl,
            rec,
            addrs,
            stats,
            rng: StdRng::seed_from_u64(seed),
            conn: None,
            left_on_conn: 0,
            last_zxid: 0,
            values: 0,
            versions: HashMap::new(),
        }
    }

    fn stat(&self, f: impl FnOnce(&mut RecordStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            if self.left_on_conn == 0 {
                // Sessions move between nodes now and then, as clients' do: a session on one
                // member must see what another session wrote on another.
                if let Some((c, _)) = self.conn.take() {
                    c.close(Duration::from_millis(500)).await;
                }
                self.left_on_conn = self.rng.gen_range(200..2000);
            }
            if self.conn.is_none() && !self.connect(&stop).await {
                break;
            }
            let subs = self.next_op();
            self.perform(subs).await;
            self.left_on_conn -= 1;
        }
        if let Some((c, _)) = self.conn.take() {
            c.close(Duration::from_millis(500)).await;
        }
    }

    /// Connects to the next node that is up; false if told to stop first.
    async fn connect(&mut self, stop: &AtomicBool) -> bool {
        let mut failures = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let addrs: Vec<Option<SocketAddr>> = self.addrs.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let n = addrs.len().max(1);
            let node = self.next_node % n;
            self.next_node = self.next_node.wrapping_add(1);
            if let Some(Some(a)) = addrs.get(node) {
                let r = Conn::connect_seen(
                    &a.to_string(),
                    self.wl.session_timeout_ms as i32,
                    self.wl.op_timeout(),
                    REPLY_FRAME_MAX_BYTES,
                    self.last_zxid,
                )
                .await;
                match r {
                    Ok(c) => {
                        self.stat(|s| s.connects += 1);
                        self.conn = Some((c, node));
                        return true;
                    }
                    Err(e) => {
                        let (id, why) = (self.id, format!("node {node}: {e}"));
                        self.stat(|s| {
                            s.connect_failures += 1;
                            s.last_connect_error.insert(id, why);
                        });
                        failures += 1;
                        if failures.is_multiple_of(50) {
                            eprintln!("lincheck: client {} still cannot connect: {e}", self.id);
                        }
                    }
                }
            }
            // Every node down or refusing: try again shortly.
            tokio::time::sleep(Duration::from_millis(20 + u64::from(failures.min(10)) * 10)).await;
        }
        false
    }

    fn value(&mut self) -> String {
        self.values += 1;
        format!("c{}-{}", self.id, self.values)
    }

    /// The client's guess at a key's version for a conditional request (-1 if it has none).
    fn guess(&self, key: &str) -> i32 {
        self.versions.get(key).copied().unwrap_or(-1)
    }

    fn next_op(&mut self) -> Vec<Sub> {
        let keys = self.wl.keys.clone();
        let k = keys[self.rng.gen_range(0..keys.len())].clone();
        let seq = Sub::CreateSeq { prefix: format!("{}/n-", self.wl.seq_parent) };
        match self.rng.gen_range(0..100) {
            0..=29 => vec![Sub::Read { path: k }],
            30..=47 => vec![Sub::Set { path: k, value: self.value(), version: -1 }],
            48..=61 => {
                let version = self.guess(&k);
                vec![Sub::Set { path: k, value: self.value(), version }]
            }
            62..=69 => vec![seq],
            70..=73 => vec![Sub::ReadCversion { path: self.wl.seq_parent.clone() }],
            74..=79 => {
                let version = self.guess(&k).max(0);
                vec![
                    Sub::Check { path: k.clone(), version },
                    Sub::Set { path: k, value: self.value(), version: -1 },
                ]
            }
            80..=85 if keys.len() > 1 => {
                let mut k2 = keys[self.rng.gen_range(0..keys.len())].clone();
                if k2 == k {
                    k2 = keys[(keys.iter().position(|x| *x == k).unwrap_or(0) + 1) % keys.len()].clone();
                }
                vec![
                    Sub::Set { path: k, value: self.value(), version: -1 },
                    Sub::Set { path: k2, value: self.value(), version: -1 },
                ]
            }
            80..=88 => {
                let version = self.guess(&k);
                vec![Sub::Set { path: k, value: self.value(), version }, seq]
            }
            89..=95 => vec![Sub::Create { path: k, value: self.value() }],
            _ => {
                let version = self.guess(&k);
                vec![Sub::Delete { path: k, version }]
            }
        }
    }

    async fn perform(&mut self, subs: Vec<Sub>) {
        let multi = subs.len() > 1;
        let Some((conn, node)) = self.conn.as_mut() else { return };
        let node = *node;
        let session = format!("0x{:x}", conn.session_id);
        let timeout = self.wl.op_timeout();
        let call_ns = self.rec.now_ns();
        let ended = if multi {
            multi_call(conn, &subs, timeout).await
        } else {
            single_call(conn, &subs[0], timeout).await
        };
        let ret_ns = self.rec.now_ns();
        let (ended, zxid) = ended;
        self.last_zxid = self.last_zxid.max(zxid);
        let (ret_ns, outcome) = match ended {
            Ended::Reply(o) => (Some(ret_ns), o),
            Ended::Lost(why) => {
                // The connection is of no more use: a late reply could no longer be told apart.
                self.conn = None;
                (None, Outcome::Unknown { why })
            }
        };
        match &outcome {
            Outcome::Ok { results } => {
                self.stat(|s| s.ok += 1);
                for (s, r) in subs.iter().zip(results) {
                    match (s, r) {
                        (Sub::Read { path }, Res::Read { version, .. })
                        | (Sub::Set { path, .. }, Res::Set { version }) => {
                            self.versions.insert(path.clone(), *version);
                        }
                        (Sub::Create { path, .. }, _) => {
                            self.versions.insert(path.clone(), 0);
                        }
                        (Sub::Delete { path, .. }, _) => {
                            self.versions.remove(path);
                        }
                        _ => {}
                    }
                }
            }
            Outcome::Fail { index, code, .. } => {
                self.stat(|s| s.failed += 1);
                if *code == ErrorCode::NoNode as i32 {
                    if let Some(s) = subs.get(*index) {
                        self.versions.remove(s.key());
                    }
                }
            }
            Outcome::Unknown { .. } => self.stat(|s| s.unknown += 1),
        }
        self.rec.op(Op { id: 0, client: self.id, session, node, call_ns, ret_ns, multi, subs, outcome });
    }
}

fn request(s: &Sub) -> Sent {
    let body = |r: &dyn Fn(&mut Writer)| {
        let mut w = Writer::new();
        r(&mut w);
        w.buf
    };
    match s {
        Sub::Read { path } => {
            Sent { op: OpCode::GetData, body: GetDataRequest { path: path.clone(), watch: false }.to_bytes() }
        }
        Sub::Set { path, value, version } => Sent {
            op: OpCode::SetData,
            body: zkd::proto::SetDataRequest {
                path: path.clone(),
                data: Some(value.clone().into_bytes()),
                version: *version,
            }
            .to_bytes(),
        },
        Sub::Create { path, value } => Sent {
            op: OpCode::Create,
            body: CreateRequest {
                path: path.clone(),
                data: Some(value.clone().into_bytes()),
                acl: open_acl(),
                flags: 0,
            }
            .to_bytes(),
        },
        Sub::CreateSeq { prefix } => Sent {
            op: OpCode::Create,
            body: CreateRequest { path: prefix.clone(), data: Some(Vec::new()), acl: open_acl(), flags: 2 }
                .to_bytes(),
        },
        Sub::Delete { path, version } => Sent {
            op: OpCode::Delete,
            body: DeleteRequest { path: path.clone(), version: *version }.to_bytes(),
        },
        Sub::Check { path, version } => Sent {
            op: OpCode::Check,
            body: body(&|w| {
                w.string(path);
                w.i32(*version);
            }),
        },
        Sub::ReadCversion { path } => {
            Sent { op: OpCode::Exists, body: ExistsRequest { path: path.clone(), watch: false }.to_bytes() }
        }
    }
}

fn queue(conn: &mut Conn, op: OpCode, body: &[u8]) -> i32 {
    let xid = conn.next_xid();
    let mut w = Writer::with_capacity(body.len() + 8);
    RequestHeader { xid, op_type: op.code() }.encode(&mut w);
    w.raw(body);
    let mut framed = Vec::with_capacity(w.buf.len() + 4);
    zkd::proto::frame::frame(&w.buf, &mut framed);
    conn.queue_raw(&framed);
    xid
}

/// Sends the requests (a read is preceded by a sync of its path, pipelined) and waits for the
/// last reply. Returns how it ended and the reply's zxid (0 if none).
async fn exchange(
    conn: &mut Conn,
    reqs: &[(OpCode, Vec<u8>)],
    timeout: Duration,
) -> (Result<crate::client::Reply, String>, i64) {
    let mut last = 0;
    for (op, body) in reqs {
        last = queue(conn, *op, body);
    }
    if let Err(e) = conn.flush().await {
        return (Err(lost(&e)), 0);
    }
    match conn.wait_for(last, timeout).await {
        Ok(r) => {
            let z = r.zxid;
            (Ok(r), z)
        }
        Err(e) => (Err(lost(&e)), 0),
    }
}

fn lost(e: &ClientError) -> String {
    match e {
        ClientError::Timeout { after_ms, .. } => format!("no reply within {after_ms} ms"),
        other => other.to_string(),
    }
}

fn decode<R: Record>(b: &[u8]) -> Result<R, String> {
    R::decode(&mut Reader::new(b)).map_err(|e| format!("undecodable reply: {e}"))
}

async fn single_call(conn: &mut Conn, s: &Sub, timeout: Duration) -> (Ended, i64) {
    let sent = request(s);
    let mut reqs = Vec::new();
    if let Sub::Read { path } | Sub::ReadCversion { path } = s {
        reqs.push((OpCode::Sync, SyncRequest { path: path.clone() }.to_bytes()));
    }
    reqs.push((sent.op, sent.body));
    let (r, zxid) = exchange(conn, &reqs, timeout).await;
    let r = match r {
        Ok(r) => r,
        Err(why) => return (Ended::Lost(why), zxid),
    };
    if r.err != 0 {
        let error = error_name(r.err);
        return (Ended::Reply(Outcome::Fail { index: 0, error, code: r.err }), zxid);
    }
    let res = match s {
        Sub::Read { .. } => decode::<GetDataResponse>(&r.body).map(|g| Res::Read {
            value: g.data.map(|d| String::from_utf8_lossy(&d).into_owned()),
            version: g.stat.version,
        }),
        Sub::Set { .. } => decode::<SetDataResponse>(&r.body).map(|g| Res::Set { version: g.stat.version }),
        Sub::Create { .. } | Sub::CreateSeq { .. } => {
            decode::<CreateResponse>(&r.body).map(|g| Res::Created { path: g.path })
        }
        Sub::Delete { .. } | Sub::Check { .. } => Ok(Res::Done),
        Sub::ReadCversion { .. } => {
            decode::<ExistsResponse>(&r.body).map(|g| Res::Cversion { cversion: g.stat.cversion })
        }
    };
    match res {
        Ok(res) => (Ended::Reply(Outcome::Ok { results: vec![res] }), zxid),
        // A reply that cannot be read is no reply the client could act on.
        Err(why) => (Ended::Lost(why), zxid),
    }
}

async fn multi_call(conn: &mut Conn, subs: &[Sub], timeout: Duration) -> (Ended, i64) {
    let mut w = Writer::new();
    for s in subs {
        let sent = request(s);
        MultiHeader { op_type: sent.op.code(), done: false, err: -1 }.encode(&mut w);
        w.raw(&sent.body);
    }
    MultiHeader { op_type: -1, done: true, err: -1 }.encode(&mut w);
    let (r, zxid) = exchange(conn, &[(OpCode::Multi, w.buf)], timeout).await;
    let r = match r {
        Ok(r) => r,
        Err(why) => return (Ended::Lost(why), zxid),
    };
    match decode_multi(&r.body, subs.len()) {
        Ok(results) => {
            // The first result that is an error other than "rolled back" (RuntimeInconsistency)
            // or "would have succeeded" (0) is the request that failed.
            let failed = results.iter().position(|r| matches!(r, Err(c) if *c != 0 && *c != -2));
            match failed {
                Some(i) => {
                    let code = results[i].clone().err().unwrap_or(0);
                    (Ended::Reply(Outcome::Fail { index: i, error: error_name(code), code }), zxid)
                }
                None if results.iter().all(Result::is_ok) && r.err == 0 => {
                    (Ended::Reply(Outcome::Ok { results: results.into_iter().flatten().collect() }), zxid)
                }
                None => (Ended::Lost(format!("multi reply with err {} and no failed request", r.err)), zxid),
            }
        }
        // An error reply without per-request results: the whole multi failed.
        Err(_) if r.err != 0 && r.body.is_empty() => {
            (Ended::Reply(Outcome::Fail { index: 0, error: error_name(r.err), code: r.err }), zxid)
        }
        Err(why) => (Ended::Lost(why), zxid),
    }
}

/// A multi's results: each a result, or the error code of an ErrorResult.
fn decode_multi(body: &[u8], n: usize) -> Result<Vec<Result<Res, i32>>, String> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    let bad = |e: zkd::proto::jute::JuteError| format!("undecodable multi reply: {e}");
    loop {
        let h = MultiHeader::decode(&mut r).map_err(bad)?;
        if h.done {
            break;
        }
        if out.len() >= n {
            return Err(format!("multi reply with more than {n} results"));
        }
        let res = match OpCode::from_i32(h.op_type) {
            Some(OpCode::Create) => Ok(Res::Created { path: r.string().map_err(bad)? }),
            Some(OpCode::Create2) => {
                let path = r.string().map_err(bad)?;
                Stat::decode(&mut r).map_err(bad)?;
                Ok(Res::Created { path })
            }
            Some(OpCode::SetData) => Ok(Res::Set { version: Stat::decode(&mut r).map_err(bad)?.version }),
            Some(OpCode::Delete | OpCode::Check) => Ok(Res::Done),
            Some(OpCode::Error) => Err(r.i32().map_err(bad)?),
            _ => return Err(format!("multi result of type {}", h.op_type)),
        };
        out.push(res);
    }
    if out.len() != n {
        return Err(format!("multi reply with {} results for {n} requests", out.len()));
    }
    Ok(out)
}
