//! `zkd maxbuffer-stress`: jute.maxbuffer edge cases against a running server.
//!
//! Sweeps value sizes up to and over the limit on create, setData and multi; sends multis whose
//! total crosses the limit, many large requests at once, oversized and negative frame lengths, and
//! a getChildren whose reply exceeds the limit. Each case runs on its own connection; its outcome
//! is `ok`, `error:<ZooKeeper code name>`, `connection closed` or `timeout`, and after each case a
//! separate client checks the server still serves (create + getData + delete). The server's RSS is
//! sampled throughout (found with --pid or through the listening port in /proc). With `--compare`
//! the same sweep runs against a second server (the oracle) and every differing outcome is listed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::client::{error_name, open_acl, ClientError, Conn, Reply};
use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::{
    CreateRequest, DeleteRequest, ErrorCode, GetChildrenRequest, GetChildrenResponse, GetDataRequest,
    MultiHeader, OpCode, SetDataRequest,
};

const CALL_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAXBUFFER_MAX: usize = 256 << 20;
pub const CHILDREN_MAX: usize = 1_000_000;
pub const CONCURRENCY_MAX: usize = 1024;

#[derive(clap::Args, Debug, Clone)]
pub struct MaxbufferStressArgs {
    /// The server under test, host:port.
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub server: String,
    /// A second server (the oracle) to run the same sweep against; differences are reported.
    #[arg(long)]
    pub compare: Option<String>,
    /// The jute.maxbuffer the servers run with.
    #[arg(long, default_value_t = 1_048_575)]
    pub maxbuffer: usize,
    /// Server process id for RSS (default: found through the listening port).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Process id of the --compare server (default: found through its port).
    #[arg(long)]
    pub compare_pid: Option<u32>,
    /// Connections sending a large create at the same time.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Children created for the large getChildren reply.
    #[arg(long, default_value_t = 6000)]
    pub children: usize,
    /// Length of each child's name.
    #[arg(long, default_value_t = 200)]
    pub child_name_len: usize,
    /// Parent znode of everything created (removed afterwards).
    #[arg(long, default_value = "/zkmaxbuf")]
    pub root: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl MaxbufferStressArgs {
    pub fn new(server: String) -> Self {
        MaxbufferStressArgs {
            server,
            compare: None,
            maxbuffer: 1_048_575,
            pid: None,
            compare_pid: None,
            concurrency: 16,
            children: 6000,
            child_name_len: 200,
            root: "/zkmaxbuf".into(),
            json: false,
        }
    }
}

/// What happened to one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Ok(String),
    Error(String),
    ConnectionClosed,
    Timeout,
    ConnectFailed(String),
}

impl Outcome {
    /// What is compared between servers (details such as byte counts are not).
    pub fn key(&self) -> String {
        match self {
            Outcome::Ok(_) => "ok".into(),
            Outcome::Error(e) => format!("error:{e}"),
            Outcome::ConnectionClosed => "connection closed".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::ConnectFailed(_) => "connect failed".into(),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Outcome::Ok(d) if !d.is_empty() => format!("ok ({d})"),
            Outcome::ConnectFailed(d) => format!("connect failed ({d})"),
            _ => self.key(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub request_bytes: usize,
    pub outcome: Outcome,
    /// A separate client could create, read and delete right after the case.
    pub healthy_after: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Rss {
    pub pid: Option<u32>,
    pub before_kib: Option<u64>,
    pub after_kib: Option<u64>,
    pub peak_sampled_kib: Option<u64>,
    /// VmHWM at the end (the process's peak since it started).
    pub hwm_after_kib: Option<u64>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub server: String,
    pub maxbuffer: usize,
    pub cases: Vec<CaseResult>,
    pub rss: Rss,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub main: SweepReport,
    pub compare: Option<SweepReport>,
    /// Cases whose outcome differs: (case, main, compare).
    pub differences: Vec<(String, String, String)>,
}

// ---------- /proc ----------

/// The inode of the socket listening on `port` (IPv4 or IPv6), from /proc/net/tcp{,6}.
fn listening_inode(port: u16) -> Option<u64> {
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let Some(p) = cols[1].rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok()) else {
                continue;
            };
            if p == port {
                return cols[9].parse().ok();
            }
        }
    }
    None
}

/// The process holding the socket that listens on `port`.
pub fn pid_for_port(port: u16) -> Option<u32> {
    let inode = listening_inode(port)?;
    let want = format!("socket:[{inode}]");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Samples VmRSS every 20 ms on a thread until dropped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(v) = status_kib(pid, "VmRSS:") {
                    p.fetch_max(v, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler { stop, peak, thread: Some(thread) }
    }
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

// ---------- requests ----------

fn outcome_of(r: Result<Reply, ClientError>, ok_detail: impl FnOnce(&Reply) -> String) -> Outcome {
    match r {
        Ok(rep) if rep.err == 0 => Outcome::Ok(ok_detail(&rep)),
        Ok(rep) => Outcome::Error(error_name(rep.err)),
        Err(ClientError::Closed { .. }) => Outcome::ConnectionClosed,
        Err(ClientError::Timeout { .. }) => Outcome::Timeout,
        Err(e) => Outcome::ConnectFailed(e.to_string()),
    }
}

/// Encodes a multi of (opcode, record bytes) pairs.
fn multi_body(ops: &[(OpCode, Vec<u8>)]) -> RawRecord {
    let mut w = Writer::new();
    for (op, body) in ops {
        MultiHeader { op_type: op.code(), done: false, err: -1 }.encode(&mut w);
        w.raw(body);
    }
    MultiHeader { op_type: -1, done: true, err: -1 }.encode(&mut w);
    RawRecord(w.buf)
}

/// Pre-encoded bytes posing as a record (for multi bodies).
struct RawRecord(Vec<u8>);

impl Record for RawRecord {
    const MIN_SIZE: usize = 0;
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> zkd::proto::jute::Result<Self> {
        Ok(RawRecord(r.rest().to_vec()))
    }
}

/// The first failing op's error in a multi response, if any.
fn multi_first_error(body: &[u8]) -> Option<i32> {
    let mut r = Reader::new(body);
    loop {
        let h = MultiHeader::decode(&mut r).ok()?;
        if h.done {
            return None;
        }
        if h.op_type == -1 {
            let err = r.i32().ok()?;
            if err != 0 && err != ErrorCode::RuntimeInconsistency.code() {
                return Some(err);
            }
            continue;
        }
        // Successful op results: skip what we can recognise (create: path; setData: stat; delete: none).
        match OpCode::from_i32(h.op_type) {
            Some(OpCode::Create) => {
                r.string().ok()?;
            }
            Some(OpCode::SetData) => {
                r.take(68).ok()?;
            }
            Some(OpCode::Delete) | Some(OpCode::Check) => {}
            _ => return None,
        }
    }
}

struct Sweep<'a> {
    a: &'a MaxbufferStressArgs,
    addr: &'a str,
    cases: Vec<CaseResult>,
    health_seq: u64,
}

impl Sweep<'_> {
    async fn connect(&self) -> Result<Conn, Outcome> {
        Conn::connect(self.addr, 30_000, CONNECT_TIMEOUT)
            .await
            .map_err(|e| Outcome::ConnectFailed(e.to_string()))
    }

    async fn healthy(&mut self) -> bool {
        self.health_seq += 1;
        let path = format!("{}/health-{}", self.a.root, self.health_seq);
        let check = async {
            let mut c = Conn::connect(self.addr, 30_000, CONNECT_TIMEOUT).await.ok()?;
            let cr =
                CreateRequest { path: path.clone(), data: Some(b"ok".to_vec()), acl: open_acl(), flags: 0 };
            let r = c.call(OpCode::Create, &cr, Duration::from_secs(5)).await.ok()?;
            if r.err != 0 {
                return None;
            }
            let r = c
                .call(
                    OpCode::GetData,
                    &GetDataRequest { path: path.clone(), watch: false },
                    Duration::from_secs(5),
                )
                .await
                .ok()?;
            if r.err != 0 {
                return None;
            }
            let r = c
                .call(
                    OpCode::Delete,
                    &DeleteRequest { path: path.clone(), version: -1 },
                    Duration::from_secs(5),
                )
                .await
                .ok()?;
            c.close(Duration::from_secs(1)).await;
            (r.err == 0).then_some(())
        };
        tokio::time::timeout(Duration::from_secs(15), check).await.ok().flatten().is_some()
    }

    async fn record(&mut self, case: String, request_bytes: usize, outcome: Outcome) {
        let healthy_after = self.healthy().await;
        self.cases.push(CaseResult { case, request_bytes, outcome, healthy_after });
    }

    /// One request on a fresh connection.
    async fn single(&mut self, case: String, op: OpCode, body: &impl Record) {
        let bytes = body.to_bytes().len() + 12;
        let outcome = match self.connect().await {
            Err(o) => o,
            Ok(mut c) => {
                let r = c.call(op, body, CALL_TIMEOUT).await;
                let o = outcome_of(r, |rep| {
                    if op == OpCode::Multi {
                        match multi_first_error(&rep.body) {
                            Some(e) => format!("op failed: {}", error_name(e)),
                            None => String::new(),
                        }
                    } else {
                        String::new()
                    }
                });
                // A multi whose op failed is an error outcome.
                let o = match o {
                    Outcome::Ok(d) if d.starts_with("op failed: ") => {
                        Outcome::Error(d["op failed: ".len()..].to_string())
                    }
                    o => o,
                };
                c.close(Duration::from_secs(1)).await;
                o
            }
        };
        self.record(case, bytes, outcome).await;
    }

    /// Raw bytes after the handshake; waits for the server to close (or not).
    async fn raw(&mut self, case: String, bytes: Vec<u8>) {
        let n = bytes.len();
        let outcome = match self.connect().await {
            Err(o) => o,
            Ok(mut c) => {
                c.queue_raw(&bytes);
                match c.flush().await {
                    Err(_) => Outcome::ConnectionClosed,
                    Ok(()) => {
                        // A ping after the bad frame shows whether the connection is still served.
                        c.queue_empty(zkd::proto::xid::PING, OpCode::Ping);
                        let _ = c.flush().await;
                        outcome_of(c.wait_for(zkd::proto::xid::PING, Duration::from_secs(5)).await, |_| {
                            "connection still served".into()
                        })
                    }
                }
            }
        };
        self.record(case, n, outcome).await;
    }

    async fn cleanup(&mut self, paths: &[String]) {
        if let Ok(mut c) = self.connect().await {
            let mut last = None;
            for p in paths {
                last = Some(c.queue(OpCode::Delete, &DeleteRequest { path: p.clone(), version: -1 }));
            }
            if let (Some(x), Ok(())) = (last, c.flush().await) {
                let _ = c.wait_for(x, Duration::from_secs(60)).await;
            }
            c.close(Duration::from_secs(1)).await;
        }
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let a = self.a;
        let m = a.maxbuffer;
        let root = a.root.clone();
        // Setup: root and a node to setData on.
        {
            let mut c =
                Conn::connect(self.addr, 30_000, CONNECT_TIMEOUT).await.context("setup connection")?;
            for p in [root.clone(), format!("{root}/set"), format!("{root}/kids")] {
                let r = c
                    .call(
                        OpCode::Create,
                        &CreateRequest { path: p.clone(), data: Some(vec![]), acl: open_acl(), flags: 0 },
                        CALL_TIMEOUT,
                    )
                    .await?;
                if r.err != 0 && r.err != ErrorCode::NodeExists.code() {
                    bail!("setup: create {p}: {}", error_name(r.err));
                }
            }
            c.close(Duration::from_secs(1)).await;
        }
        let sizes: Vec<(String, usize)> = vec![
            ("1KiB".into(), 1024),
            ("max/2".into(), m / 2),
            ("max-1KiB".into(), m.saturating_sub(1024)),
            ("max-100".into(), m.saturating_sub(100)),
            ("max".into(), m),
            ("max+1".into(), m + 1),
            ("max+1KiB".into(), m + 1024),
            ("2*max".into(), 2 * m),
        ];
        let mut created = Vec::new();
        for (label, n) in &sizes {
            let path = format!("{root}/c-{n}");
            let req =
                CreateRequest { path: path.clone(), data: Some(vec![b'c'; *n]), acl: open_acl(), flags: 0 };
            self.single(format!("create value {label} ({n} B)"), OpCode::Create, &req).await;
            created.push(path);
        }
        self.cleanup(&created).await;
        for (label, n) in &sizes {
            let req = SetDataRequest { path: format!("{root}/set"), data: Some(vec![b's'; *n]), version: -1 };
            self.single(format!("setData value {label} ({n} B)"), OpCode::SetData, &req).await;
        }
        let mut created = Vec::new();
        for (label, n) in &sizes {
            let path = format!("{root}/m-{n}");
            let cr =
                CreateRequest { path: path.clone(), data: Some(vec![b'm'; *n]), acl: open_acl(), flags: 0 };
            let body = multi_body(&[(OpCode::Create, cr.to_bytes())]);
            self.single(format!("multi create value {label} ({n} B)"), OpCode::Multi, &body).await;
            created.push(path);
        }
        // Multis whose ops are each under the limit but whose total crosses it.
        for (parts, label) in [(2usize, "2 x max/2+1KiB"), (4, "4 x max/3")] {
            let each = if parts == 2 { m / 2 + 1024 } else { m / 3 };
            let ops: Vec<(OpCode, Vec<u8>)> = (0..parts)
                .map(|i| {
                    let path = format!("{root}/mt-{parts}-{i}");
                    created.push(path.clone());
                    (
                        OpCode::Create,
                        CreateRequest { path, data: Some(vec![b't'; each]), acl: open_acl(), flags: 0 }
                            .to_bytes(),
                    )
                })
                .collect();
            self.single(
                format!("multi create {label} (total {} B)", parts * each),
                OpCode::Multi,
                &multi_body(&ops),
            )
            .await;
        }
        let ops: Vec<(OpCode, Vec<u8>)> = (0..2)
            .map(|_| {
                (
                    OpCode::SetData,
                    SetDataRequest {
                        path: format!("{root}/set"),
                        data: Some(vec![b'u'; m / 2 + 1024]),
                        version: -1,
                    }
                    .to_bytes(),
                )
            })
            .collect();
        self.single(
            format!("multi setData 2 x max/2+1KiB (total {} B)", m + 2048),
            OpCode::Multi,
            &multi_body(&ops),
        )
        .await;
        self.cleanup(&created).await;

        // Many large requests at once.
        {
            let n = a.concurrency;
            let size = m.saturating_sub(1024);
            let mut conns = Vec::with_capacity(n);
            let mut failed_connect = 0;
            for _ in 0..n {
                match self.connect().await {
                    Ok(c) => conns.push(c),
                    Err(_) => failed_connect += 1,
                }
            }
            let mut xids = Vec::new();
            let mut paths = Vec::new();
            for (i, c) in conns.iter_mut().enumerate() {
                let path = format!("{root}/cc-{i}");
                xids.push(c.queue(
                    OpCode::Create,
                    &CreateRequest {
                        path: path.clone(),
                        data: Some(vec![b'k'; size]),
                        acl: open_acl(),
                        flags: 0,
                    },
                ));
                paths.push(path);
            }
            let flushes = futures_flush(&mut conns).await;
            let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
            for ((c, xid), flushed) in conns.iter_mut().zip(&xids).zip(flushes) {
                let o = if flushed {
                    outcome_of(c.wait_for(*xid, CALL_TIMEOUT).await, |_| String::new())
                } else {
                    Outcome::ConnectionClosed
                };
                *counts.entry(o.key()).or_default() += 1;
            }
            if failed_connect > 0 {
                *counts.entry("connect failed".into()).or_default() += failed_connect;
            }
            for c in conns {
                c.close(Duration::from_secs(1)).await;
            }
            let outcome = if counts.len() == 1 && counts.contains_key("ok") {
                Outcome::Ok(format!("{n} of {n}"))
            } else {
                Outcome::Error(counts.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", "))
            };
            self.record(format!("{n} concurrent creates of max-1KiB"), n * size, outcome).await;
            self.cleanup(&paths).await;
        }

        // Oversized and malformed frame lengths.
        let mut big = Vec::with_capacity(2 * m + 12);
        big.extend_from_slice(&((2 * m) as i32).to_be_bytes());
        big.extend_from_slice(&1i32.to_be_bytes());
        big.extend_from_slice(&OpCode::Exists.code().to_be_bytes());
        big.resize(2 * m + 4, 0);
        self.raw(format!("frame length 2*max ({} B) with body", 2 * m), big).await;
        self.raw("frame length i32::MAX, no body".into(), i32::MAX.to_be_bytes().to_vec()).await;
        self.raw("frame length -1".into(), (-1i32).to_be_bytes().to_vec()).await;
        self.raw(
            format!("frame length max+1 ({}) header only", m + 1),
            ((m + 1) as i32).to_be_bytes().to_vec(),
        )
        .await;

        // A getChildren reply larger than the limit.
        if a.children > 0 {
            let kids = format!("{root}/kids");
            let mut paths = Vec::with_capacity(a.children);
            let mut setup_err = None;
            if let Ok(mut c) = self.connect().await {
                for chunk_start in (0..a.children).step_by(512) {
                    let mut xids = Vec::new();
                    for i in chunk_start..(chunk_start + 512).min(a.children) {
                        let mut name = format!("{i:08}-");
                        name.extend(std::iter::repeat_n('n', a.child_name_len.saturating_sub(name.len())));
                        let path = format!("{kids}/{name}");
                        xids.push(c.queue(
                            OpCode::Create,
                            &CreateRequest {
                                path: path.clone(),
                                data: Some(vec![]),
                                acl: open_acl(),
                                flags: 0,
                            },
                        ));
                        paths.push(path);
                    }
                    if c.flush().await.is_err() {
                        setup_err = Some("connection closed".to_string());
                        break;
                    }
                    for x in xids {
                        match c.wait_for(x, CALL_TIMEOUT).await {
                            Ok(r) if r.err == 0 || r.err == ErrorCode::NodeExists.code() => {}
                            Ok(r) => setup_err = Some(error_name(r.err)),
                            Err(e) => setup_err = Some(e.to_string()),
                        }
                    }
                    if setup_err.is_some() {
                        break;
                    }
                }
                c.close(Duration::from_secs(1)).await;
            }
            let reply_bytes = a.children * (a.child_name_len + 4) + 4;
            let case = format!(
                "getChildren of {} children x {} B names (~{reply_bytes} B reply)",
                a.children, a.child_name_len
            );
            match setup_err {
                Some(e) => self.record(case, reply_bytes, Outcome::Error(format!("setup failed: {e}"))).await,
                None => {
                    let req = GetChildrenRequest { path: kids.clone(), watch: false };
                    let outcome = match self.connect().await {
                        Err(o) => o,
                        Ok(mut c) => {
                            let r = c.call(OpCode::GetChildren, &req, CALL_TIMEOUT).await;
                            let o = outcome_of(r, |rep| match GetChildrenResponse::from_bytes(&rep.body) {
                                Ok(g) => format!("{} children, {} B", g.children.len(), rep.body.len() + 16),
                                Err(e) => format!("undecodable reply: {e}"),
                            });
                            c.close(Duration::from_secs(1)).await;
                            o
                        }
                    };
                    self.record(case, reply_bytes, outcome).await;
                }
            }
            self.cleanup(&paths).await;
        }
        self.cleanup(&[format!("{root}/kids"), format!("{root}/set"), root.clone()]).await;
        Ok(())
    }
}

async fn futures_flush(conns: &mut [Conn]) -> Vec<bool> {
    // Sequential writes of ~1 MiB each still overlap on the server: nothing waits for a reply.
    let mut out = Vec::with_capacity(conns.len());
    for c in conns.iter_mut() {
        out.push(c.flush().await.is_ok());
    }
    out
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit(':').next()?.parse().ok()
}

/// Runs the whole sweep against one server.
pub fn run_sweep(a: &MaxbufferStressArgs, addr: &str, pid: Option<u32>) -> anyhow::Result<SweepReport> {
    if a.maxbuffer < 4096 || a.maxbuffer > MAXBUFFER_MAX {
        bail!("--maxbuffer {} outside 4096..={MAXBUFFER_MAX}", a.maxbuffer);
    }
    if a.children > CHILDREN_MAX || a.concurrency == 0 || a.concurrency > CONCURRENCY_MAX {
        bail!("--children <= {CHILDREN_MAX}, --concurrency in 1..={CONCURRENCY_MAX}");
    }
    if a.child_name_len == 0 || a.child_name_len > 4096 {
        bail!("--child-name-len {} outside 1..=4096", a.child_name_len);
    }
    let mut rss = Rss::default();
    let pid = pid.or_else(|| port_of(addr).and_then(pid_for_port));
    rss.pid = pid;
    if pid.is_none() {
        rss.note = Some(format!(
            "server process not found for {addr} (pass --pid; a remote server has no RSS here)"
        ));
    }
    let sampler = pid.map(|p| {
        rss.before_kib = status_kib(p, "VmRSS:");
        RssSampler::start(p)
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    let mut sweep = Sweep { a, addr, cases: Vec::new(), health_seq: 0 };
    let r = rt.block_on(sweep.run());
    if let (Some(s), Some(p)) = (sampler, pid) {
        let peak = s.finish();
        rss.after_kib = status_kib(p, "VmRSS:");
        rss.peak_sampled_kib = (peak > 0).then_some(peak);
        rss.hwm_after_kib = status_kib(p, "VmHWM:");
    }
    r?;
    Ok(SweepReport { server: addr.to_string(), maxbuffer: a.maxbuffer, cases: sweep.cases, rss })
}

/// The sweep against `--server`, and `--compare` if given, with the differences.
pub fn run_report(a: &MaxbufferStressArgs) -> anyhow::Result<Report> {
    let main = run_sweep(a, &a.server, a.pid)?;
    let compare = match &a.compare {
        Some(addr) => Some(run_sweep(a, addr, a.compare_pid)?),
        None => None,
    };
    let mut differences = Vec::new();
    if let Some(c) = &compare {
        for m in &main.cases {
            let other = c.cases.iter().find(|x| x.case == m.case);
            let (ok, ck) =
                (m.outcome.key(), other.map(|x| x.outcome.key()).unwrap_or_else(|| "missing".into()));
            let (mh, ch) = (m.healthy_after, other.map(|x| x.healthy_after).unwrap_or(false));
            if ok != ck || mh != ch {
                differences.push((
                    m.case.clone(),
                    format!("{ok}{}", if mh { "" } else { ", unhealthy after" }),
                    format!("{ck}{}", if ch { "" } else { ", unhealthy after" }),
                ));
            }
        }
    }
    Ok(Report { main, compare, differences })
}

fn fmt_kib(v: Option<u64>) -> String {
    v.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "-".into())
}

pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "maxbuffer-stress: jute.maxbuffer = {} B", r.main.maxbuffer);
    let name_w = r.main.cases.iter().map(|c| c.case.len()).max().unwrap_or(10).max(4);
    match &r.compare {
        None => {
            let _ = writeln!(o, "{:<name_w$}  {:<40} healthy after", "case", r.main.server);
            for c in &r.main.cases {
                let _ = writeln!(
                    o,
                    "{:<name_w$}  {:<40} {}",
                    c.case,
                    c.outcome.describe(),
                    if c.healthy_after { "yes" } else { "NO" }
                );
            }
        }
        Some(cmp) => {
            let _ = writeln!(
                o,
                "{:<name_w$}  {:<36} {:<36}",
                "case",
                r.main.server,
                format!("{} (compare)", cmp.server)
            );
            for c in &r.main.cases {
                let other = cmp.cases.iter().find(|x| x.case == c.case);
                let diff = r.differences.iter().any(|d| d.0 == c.case);
                let fmt = |x: &CaseResult| {
                    format!("{}{}", x.outcome.describe(), if x.healthy_after { "" } else { " UNHEALTHY" })
                };
                let _ = writeln!(
                    o,
                    "{:<name_w$}  {:<36} {:<36}{}",
                    c.case,
                    fmt(c),
                    other.map(fmt).unwrap_or_else(|| "-".into()),
                    if diff { "  <-- DIFFERS" } else { "" }
                );
            }
        }
    }
    for s in std::iter::once(&r.main).chain(r.compare.iter()) {
        let x = &s.rss;
        let _ = writeln!(
            o,
            "RSS of {} (pid {}): before {}, after {}, peak sampled {}, VmHWM {}{}",
            s.server,
            x.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            fmt_kib(x.before_kib),
            fmt_kib(x.after_kib),
            fmt_kib(x.peak_sampled_kib),
            fmt_kib(x.hwm_after_kib),
            x.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
    if r.compare.is_some() {
        if r.differences.is_empty() {
            let _ = writeln!(o, "no differences");
        } else {
            let _ = writeln!(o, "{} case(s) differ:", r.differences.len());
            for (case, a, b) in &r.differences {
                let _ = writeln!(o, "  {case}: {a} vs {b}");
            }
        }
    }
    o
}

/// `zkd maxbuffer-stress`.
pub fn run(a: MaxbufferStressArgs) -> anyhow::Result<()> {
    let r = run_report(&a)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", render(&r));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::{FakeConfig, FakeServer};

    #[test]
    fn sweep_against_the_fake_server() {
        let max = 65_535;
        let server = FakeServer::start(FakeConfig {
            delay: Duration::from_millis(0),
            max_frame: max,
            ..FakeConfig::default()
        });
        let other = FakeServer::start(FakeConfig {
            delay: Duration::from_millis(0),
            max_frame: 2 * max + 64,
            ..FakeConfig::default()
        });
        let mut a = MaxbufferStressArgs::new(server.addr.clone());
        a.maxbuffer = max;
        a.children = 20;
        a.concurrency = 4;
        a.compare = Some(other.addr.clone());
        let r = run_report(&a).unwrap();
        let outcome = |name: &str| {
            r.main
                .cases
                .iter()
                .find(|c| c.case.starts_with(name))
                .unwrap_or_else(|| panic!("no case {name}"))
                .outcome
                .clone()
        };
        assert_eq!(outcome("create value 1KiB"), Outcome::Ok(String::new()));
        assert_eq!(outcome("create value max-1KiB"), Outcome::Ok(String::new()));
        // The frame holding a max+1 value is longer than max: the fake closes the connection.
        assert_eq!(outcome("create value max+1 "), Outcome::ConnectionClosed);
        assert_eq!(outcome("frame length -1"), Outcome::ConnectionClosed);
        assert_eq!(outcome("frame length i32::MAX"), Outcome::ConnectionClosed);
        assert_eq!(outcome("4 concurrent creates"), Outcome::Ok("4 of 4".into()));
        assert!(matches!(outcome("getChildren of 20"), Outcome::Ok(_)));
        assert!(r.main.cases.iter().all(|c| c.healthy_after), "{:#?}", r.main.cases);
        // The fake runs inside this process, found through its port.
        assert_eq!(r.main.rss.pid, Some(std::process::id()));
        assert!(r.main.rss.before_kib.unwrap() > 0 && r.main.rss.peak_sampled_kib.unwrap() > 0);
        // The compare server accepts frames up to 2*max: those cases differ, and are reported.
        let diffs: Vec<&str> = r.differences.iter().map(|d| d.0.as_str()).collect();
        assert!(diffs.iter().any(|d| d.starts_with("create value max+1 ")), "{diffs:?}");
        assert!(!diffs.iter().any(|d| d.starts_with("create value 1KiB")), "{diffs:?}");
        assert!(render(&r).contains("DIFFERS"));
    }
}
