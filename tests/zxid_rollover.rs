//! ZOOKEEPER-1277 as processes: a leader whose zxid counter would reach 0xffffffff steps down
//! instead of rolling the counter into the epoch half, and the ensemble goes on in a new epoch —
//! no acknowledged write lost, none applied twice. The figure it prints (writes unavailable from
//! the last acknowledgement in the old epoch to the first in the new one) is recorded in
//! perf/RESULTS.md ("Ensembles").
//!
//! Every election starts a new epoch at counter 0, so no data dir can put a leader near the end
//! of its counter: the servers run with `zkd.testing.epochCounterStart=0xfffffff0`, which starts
//! each epoch's proposals there (14 zxids per epoch), so 30 writes cross two rollovers. The data
//! dir they start from is written with the library all the same, as ZooKeeper would leave it
//! after an epoch of ~2^32 txns: a snapshot at counter 0xffffffe0 of epoch 5 and a log of creates
//! up to counter 0xfffffff0, acceptedEpoch = currentEpoch = 5; three copies of it make a 3-node
//! ensemble on loopback. Its election and quorum ports are picked by binding port 0, released just
//! before the servers start, and the ensemble starts again on new ports if one was taken
//! meanwhile; client ports are the kernel's (clientPort=0, --port-file).
//!
//!     cargo test --release --test zxid_rollover -- --nocapture

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::*;
use zkd::quorum::{counter_of, epoch_of, make_zxid};
use zkd::tree::DataTree;
use zkd::txnlog::format::{encode_txn_entry, log_file_name, FileHeader, LogReader, DEFAULT_MAX_TXN_BYTES};

const EPOCH: u32 = 5;
/// The counter of the data dir's last txn.
const LAST_COUNTER: u32 = 0xffff_fff0;
/// The snapshot's counter; the log holds the creates after it.
const SNAP_COUNTER: u32 = 0xffff_ffe0;
const WRITES: usize = 30;
const TICK_MS: u64 = 200;
/// zkd's exit status when it cannot bind its election port.
const EXIT_UNABLE_TO_BIND: i32 = 14;

// ---- the data dir ----------------------------------------------------------------------------

fn acl() -> Vec<Acl> {
    vec![Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

fn create_txn(zxid: i64, path: String) -> LoggedTxn {
    let hdr =
        TxnHeader { client_id: 0, cxid: 0, zxid, time: 1_700_000_000_000, txn_type: OpCode::Create as i32 };
    let body = TxnBody::Create(CreateTxn {
        path,
        data: Some(b"pre".to_vec()),
        acl: acl(),
        ephemeral: false,
        parent_c_version: -1,
    });
    LoggedTxn { hdr, body, digest: None }
}

/// A data dir whose last txn is (EPOCH, LAST_COUNTER): what an ensemble leaves behind after
/// ~2^32 txns in one epoch.
fn write_template(dir: &Path) {
    let v2 = zkd::db::version_dir(dir);
    std::fs::create_dir_all(&v2).unwrap();
    let snap = make_zxid(EPOCH, SNAP_COUNTER);
    zkd::db::write_snapshot(&DataTree::new(), &v2, snap, &[], Default::default()).unwrap();
    let mut buf = Vec::new();
    FileHeader::txnlog().encode(&mut buf);
    encode_txn_entry(&create_txn(snap + 1, "/pre".into()), &mut buf);
    for c in SNAP_COUNTER + 2..=LAST_COUNTER {
        encode_txn_entry(&create_txn(make_zxid(EPOCH, c), format!("/pre/n-{c:x}")), &mut buf);
    }
    std::fs::write(v2.join(log_file_name(snap + 1)), &buf).unwrap();
    // In the data dir itself, where earlier zkd releases kept them: read as a fallback.
    for f in ["acceptedEpoch", "currentEpoch"] {
        std::fs::write(dir.join(f), EPOCH.to_string()).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

// ---- the servers -----------------------------------------------------------------------------

struct Node {
    sid: u64,
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
}

impl Node {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The role the log last says this node serves in, or None.
    fn role(&self) -> Option<String> {
        let mut role = None;
        for l in self.log().lines() {
            if let Some(rest) = l.split("serving clients as ").nth(1) {
                role = rest.split_whitespace().next().map(str::to_owned);
            } else if l.contains("stopped serving clients") {
                role = None;
            }
        }
        role
    }

    /// Starts zkd; the client port once bound, or None if zkd exited first.
    fn spawn(&mut self) -> Option<u16> {
        let port_file = self.dir.join("zkd.port");
        let _ = std::fs::remove_file(&port_file);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_zkd"))
            .args(["serve", "--config"])
            .arg(self.dir.join("zoo.cfg"))
            .arg("--port-file")
            .arg(&port_file)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(p) = std::fs::read_to_string(&port_file).ok().and_then(|t| t.trim().parse().ok()) {
                self.port = p;
                return Some(p);
            }
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "node {} bound no client port within 30 s", self.sid);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn bind_failed(&mut self) -> bool {
        let code = self.child.as_mut().and_then(|c| c.try_wait().unwrap()).and_then(|s| s.code());
        code == Some(EXIT_UNABLE_TO_BIND) || self.log().contains("Address already in use")
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Ensemble {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() || std::env::var("ZKD_SHOW_LOGS").is_ok() {
            for n in &self.nodes {
                let log = n.log();
                eprintln!("==== node {} ====\n{}", n.sid, &log[log.len().saturating_sub(6000)..]);
            }
        }
    }
}

fn start_ensemble() -> Ensemble {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    write_template(&template);
    let mut nodes: Vec<Node> = (1..=3)
        .map(|sid| {
            let n = Node { sid, dir: dir.path().join(format!("n{sid}")), child: None, port: 0 };
            copy_dir(&template, &n.data());
            std::fs::write(n.data().join("myid"), format!("{sid}\n")).unwrap();
            n
        })
        .collect();
    for _attempt in 0..3 {
        // Two ports per server from the kernel, held until just before the servers bind them.
        let held: Vec<std::net::TcpListener> =
            (0..6).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let ports: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
        for n in &nodes {
            let mut cfg = format!(
                "tickTime={TICK_MS}\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort=0\n\
                 clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
                 zkd.testing.epochCounterStart=0x{LAST_COUNTER:x}\n",
                n.data().display()
            );
            for s in 0..3 {
                cfg += &format!("server.{}=127.0.0.1:{}:{}\n", s + 1, ports[2 * s], ports[2 * s + 1]);
            }
            std::fs::write(n.dir.join("zoo.cfg"), cfg).unwrap();
        }
        drop(held);
        let mut taken = false;
        for n in &mut nodes {
            if n.spawn().is_none() {
                assert!(n.bind_failed(), "node {} exited during start-up:\n{}", n.sid, n.log());
                taken = true;
            }
        }
        if !taken {
            return Ensemble { nodes, _dir: dir };
        }
        for n in &mut nodes {
            n.kill();
        }
    }
    panic!("the ensemble's ports were taken by other processes 3 times");
}

fn wait_until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- a client that survives its server ----------------------------------------------------------

struct Client {
    s: TcpStream,
    xid: i32,
    session: i64,
    passwd: Vec<u8>,
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = i32::from_be_bytes(len);
    if !(0..=1 << 20).contains(&n) {
        return Err(std::io::Error::other(format!("frame length {n}")));
    }
    let mut b = vec![0u8; n as usize];
    s.read_exact(&mut b)?;
    Ok(b)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

impl Client {
    /// A new session (`session` None) or the given one resumed, as a client library reconnects.
    fn connect(port: u16, session: Option<(i64, Vec<u8>)>, last_zxid: i64) -> std::io::Result<Client> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_nodelay(true)?;
        let (session_id, passwd) = session.unwrap_or((0, vec![0; 16]));
        let req = ConnectRequest {
            time_out: 10_000,
            session_id,
            passwd,
            last_zxid_seen: last_zxid,
            ..Default::default()
        };
        s.write_all(&frame(&req.to_bytes()))?;
        let resp = ConnectResponse::from_bytes(&read_frame(&mut s)?)
            .map_err(|e| std::io::Error::other(format!("connect response: {e:?}")))?;
        if resp.time_out <= 0 {
            return Err(std::io::Error::other("session expired"));
        }
        Ok(Client { s, xid: 0, session: resp.session_id, passwd: resp.passwd })
    }

    fn call(&mut self, op: OpCode, body: &[u8]) -> std::io::Result<(ReplyHeader, Vec<u8>)> {
        self.xid += 1;
        let mut w = Writer::new();
        RequestHeader { xid: self.xid, op_type: op as i32 }.encode(&mut w);
        w.raw(body);
        self.s.write_all(&frame(&w.buf))?;
        loop {
            let f = read_frame(&mut self.s)?;
            let mut r = Reader::new(&f);
            let h = ReplyHeader::decode(&mut r).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            if h.xid == xid::NOTIFICATION {
                continue;
            }
            assert_eq!(h.xid, self.xid, "replies come in request order");
            return Ok((h, r.rest().to_vec()));
        }
    }

    fn create(&mut self, path: &str, data: &[u8]) -> std::io::Result<ReplyHeader> {
        let req = CreateRequest { path: path.into(), data: Some(data.to_vec()), acl: acl(), flags: 0 };
        Ok(self.call(OpCode::Create, &req.to_bytes())?.0)
    }
}

/// path → (data, czxid) of every child of `parent`, read through `port` after a sync.
fn children(port: u16, parent: &str) -> std::io::Result<Vec<(String, Vec<u8>, i64)>> {
    let mut c = Client::connect(port, None, 0)?;
    let (h, _) = c.call(OpCode::Sync, &SyncRequest { path: parent.into() }.to_bytes())?;
    assert_eq!(h.err, 0, "sync");
    let (h, b) =
        c.call(OpCode::GetChildren, &GetChildrenRequest { path: parent.into(), watch: false }.to_bytes())?;
    assert_eq!(h.err, 0, "getChildren {parent}");
    let mut kids = GetChildrenResponse::from_bytes(&b).unwrap().children;
    kids.sort();
    let mut out = Vec::new();
    for k in kids {
        let path = format!("{parent}/{k}");
        let (h, b) =
            c.call(OpCode::GetData, &GetDataRequest { path: path.clone(), watch: false }.to_bytes())?;
        assert_eq!(h.err, 0, "getData {path}");
        let r = GetDataResponse::from_bytes(&b).unwrap();
        out.push((path, r.data.unwrap_or_default(), r.stat.czxid));
    }
    c.call(OpCode::CloseSession, &[])?;
    Ok(out)
}

/// The creates under /roll in a node's txn logs, in log order: (path, zxid).
fn logged_creates(data: &Path) -> Vec<(String, i64)> {
    let v2 = zkd::db::version_dir(data);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&v2)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("log."))
        .collect();
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        i64::from_str_radix(name.trim_start_matches("log."), 16).unwrap()
    });
    let mut out = Vec::new();
    for f in files {
        let buf = std::fs::read(&f).unwrap();
        let r = LogReader::new(&buf, DEFAULT_MAX_TXN_BYTES).unwrap();
        for e in r {
            if let TxnBody::Create(c) = &e.txn.body {
                if c.path.starts_with("/roll/") {
                    out.push((c.path.clone(), e.txn.hdr.zxid));
                }
            }
        }
    }
    out
}

#[test]
fn the_leader_steps_down_before_the_zxid_counter_rolls_over() {
    let e = start_ensemble();
    wait_until(Duration::from_secs(30), "every node serves", || {
        e.nodes.iter().all(|n| n.role().is_some()).then_some(())
    });
    let leader = e.nodes.iter().position(|n| n.role().as_deref() == Some("Leader")).expect("a leader");
    assert!(e.nodes[leader].log().contains("serving clients as Leader in epoch 6"), "epoch 5 + 1");
    // The history of epoch 5 came through: the log's last create is on every node.
    for n in &e.nodes {
        let pre = children(n.port, "/pre").expect("read /pre");
        assert_eq!(pre.last().map(|c| c.2), Some(make_zxid(EPOCH, LAST_COUNTER)), "node {}", n.sid);
    }

    // Writes through a follower, one at a time; a lost connection is retried on the next node
    // with the same session, as a client library does. A create whose answer was lost and that
    // had been applied comes back NodeExists: it is acknowledged then (the retry is no second
    // write).
    let ports: Vec<u16> = e.nodes.iter().map(|n| n.port).collect();
    let mut at = (leader + 1) % 3;
    let mut client = Client::connect(ports[at], None, 0).expect("a session");
    let session = (client.session, client.passwd.clone());
    let mut last_zxid = 0i64;
    let mut acks: Vec<(usize, i64, Instant)> = Vec::new();
    let mut reconnects = 0;
    client.create("/roll", b"").expect("create /roll");
    for k in 0..WRITES {
        let path = format!("/roll/w-{k:02}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "write {k} not acknowledged within 30 s");
            match client.create(&path, k.to_string().as_bytes()) {
                Ok(h) if h.err == 0 || h.err == ErrorCode::NodeExists as i32 => {
                    last_zxid = last_zxid.max(h.zxid);
                    acks.push((k, h.zxid, Instant::now()));
                    break;
                }
                Ok(h) => panic!("write {k}: error {}", h.err),
                Err(_) => loop {
                    // The connection is gone (the leader stepped down): the next node, 10 ms apart.
                    reconnects += 1;
                    at = (at + 1) % 3;
                    std::thread::sleep(Duration::from_millis(10));
                    assert!(Instant::now() < deadline, "no node takes the session back within 30 s");
                    if let Ok(c) = Client::connect(ports[at], Some(session.clone()), last_zxid) {
                        assert_eq!(c.session, session.0, "the session was resumed, not replaced");
                        client = c;
                        break;
                    }
                },
            }
        }
    }

    // Each leader stepped down when its next zxid's counter was all ones, with every zxid of
    // its epoch before that used; the next epoch took over.
    let epochs: Vec<u32> = acks.iter().map(|a| epoch_of(a.1)).collect();
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "epochs never go back: {epochs:?}");
    let mut rollovers = Vec::new();
    for w in acks.windows(2) {
        let (old, new) = (&w[0], &w[1]);
        if epoch_of(new.1) == epoch_of(old.1) {
            continue;
        }
        assert_eq!(
            counter_of(old.1),
            u32::MAX - 1,
            "epoch {} ended before its last counter",
            epoch_of(old.1)
        );
        assert!(counter_of(new.1) > LAST_COUNTER, "epoch {} starts where configured", epoch_of(new.1));
        let unavailable = new.2 - old.2;
        println!(
            "zxid rollover: writes unavailable for {} ms (last acknowledged 0x{:x}, first in the new epoch 0x{:x})",
            unavailable.as_millis(),
            old.1,
            new.1
        );
        rollovers.push(unavailable);
    }
    assert!(rollovers.len() >= 2, "30 writes cross two rollovers: {epochs:?}");
    assert!(acks.iter().all(|a| counter_of(a.1) != u32::MAX), "no zxid with an all-ones counter");
    let said: usize = e
        .nodes
        .iter()
        .map(|n| n.log().matches("stopped serving clients: zxid lower 32 bits have rolled over").count())
        .sum();
    // (The session that closed the last write's connection may have used an epoch up too.)
    assert!(
        said >= rollovers.len(),
        "each leader says why it steps down: {said} for {} rollovers",
        rollovers.len()
    );
    println!(
        "zxid rollover: {} rollovers, writes unavailable for at most {} ms ({reconnects} reconnect attempts, tick {TICK_MS} ms)",
        rollovers.len(),
        rollovers.iter().max().unwrap().as_millis()
    );

    // Nothing lost: every node holds the 30 writes, each under the same zxid everywhere.
    let want: Vec<Vec<u8>> = (0..WRITES).map(|k| k.to_string().into_bytes()).collect();
    let mut seen: Option<Vec<(String, Vec<u8>, i64)>> = None;
    for n in &e.nodes {
        let kids = wait_until(Duration::from_secs(10), "the node answers", || children(n.port, "/roll").ok());
        assert_eq!(kids.iter().map(|k| k.1.clone()).collect::<Vec<_>>(), want, "node {}", n.sid);
        if let Some(s) = &seen {
            assert_eq!(&kids, s, "node {} differs", n.sid);
        }
        seen = Some(kids);
    }
    // Nothing applied twice: no node logged a create twice, and nodes agree on each one's zxid.
    let mut zxid_of = std::collections::BTreeMap::new();
    for n in &e.nodes {
        let creates = logged_creates(&n.data());
        let mut paths: Vec<&String> = creates.iter().map(|c| &c.0).collect();
        paths.sort();
        let before = paths.len();
        paths.dedup();
        assert_eq!(paths.len(), before, "node {} logged a create twice: {creates:?}", n.sid);
        assert!(creates.windows(2).all(|w| w[0].1 < w[1].1), "node {}: zxids grow in the log", n.sid);
        for (p, z) in creates {
            assert!(counter_of(z) != u32::MAX, "node {} logged 0x{z:x}", n.sid);
            assert_eq!(*zxid_of.entry(p.clone()).or_insert(z), z, "{p} has two zxids");
        }
    }
    assert_eq!(zxid_of.len(), WRITES, "the 30 creates are in the logs");
    for n in &e.nodes {
        // In the snapshot dir, where ZooKeeper 3.8 keeps it (zkd::quorum::epochs).
        let current: u32 =
            zkd::quorum::epochs::read(&n.data(), zkd::quorum::epochs::CURRENT_EPOCH).unwrap().unwrap();
        let last = epochs.last().copied().unwrap();
        assert!(
            current >= last,
            "node {}: currentEpoch {current} is behind the last write's epoch {last}",
            n.sid
        );
    }
}
