//! Linearizability under faults (`zkd lincheck`, tools/lincheck): concurrent clients record a
//! history against a zkd node (and 3- and 5-node zkd ensembles) while a seeded nemesis kills,
//! pauses, restarts it with its monotonic clock moved, and (as root) shuts its disk down, fills it
//! and slows it, or cuts a member off from the others; the history must be linearizable per znode
//! and every client must make progress once the faults end.
//!
//! The checker must be able to say no: a proxy in front of zkd that serves stale reads, or that
//! acknowledges writes it never forwards, must be caught, with a small failing window.
//!
//! `ZKD_LINCHECK_SEED` replays a seed; a long run: `bash tests/lincheck-long.sh`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::*;
use zkd_tools::lincheck::check;
use zkd_tools::lincheck::cluster::{disk_prerequisites, Cluster, ClusterConfig, ServerKind};
use zkd_tools::lincheck::history::{History, Outcome, RunInfo, Sub};
use zkd_tools::lincheck::nemesis::FaultKind;
use zkd_tools::lincheck::netlab::net_prerequisites;
use zkd_tools::lincheck::record::{record, setup, Addrs, Recording, Workload};
use zkd_tools::lincheck::run::{run_lincheck, RunConfig, RunResult};

/// One run at a time: each drives servers on the machine's two cores, and a pause must outlast
/// the session timeout however loaded the machine is.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn seed(default: u64) -> u64 {
    std::env::var("ZKD_LINCHECK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn zkd() -> ServerKind {
    ServerKind::Zkd { bin: env!("CARGO_BIN_EXE_zkd").into() }
}

fn config(server: ServerKind, faults: &[FaultKind], secs: u64, seed: u64) -> RunConfig {
    RunConfig {
        server,
        nodes: 1,
        clients: 5,
        keys: 3,
        duration: Duration::from_secs(secs),
        seed,
        faults: faults.to_vec(),
        session_timeout_ms: 2000,
        out: None,
        budget: check::BUDGET_DEFAULT,
        dir: None,
        keep: false,
    }
}

/// The run passed, and it tested something: faults were injected, operations lost their
/// replies, and thousands completed.
#[track_caller]
fn assert_passed(r: &RunResult, faults_at_least: usize) {
    assert!(r.passed(), "seed {}:\n{}", r.history.run.as_ref().map_or(0, |x| x.seed), r.text);
    assert!(r.history.faults.len() >= faults_at_least, "{}", r.text);
    assert!(r.stats.ok > 2000, "{}", r.text);
    eprintln!("{}", r.text);
}

#[test]
fn zkd_is_linearizable_under_kills_and_pauses() {
    let _g = serial();
    let r = run_lincheck(&config(zkd(), &[FaultKind::Kill, FaultKind::Pause], 25, seed(1))).expect("the run");
    assert_passed(&r, 8);
    assert!(r.stats.unknown > 0, "kills and pauses leave operations without a reply:\n{}", r.text);
}

#[test]
fn a_three_node_zkd_ensemble_is_linearizable_under_kills_and_pauses() {
    let _g = serial();
    let cfg = RunConfig {
        nodes: 3,
        clients: 6,
        ..config(zkd(), &[FaultKind::Kill, FaultKind::Pause], 25, seed(7))
    };
    let r = run_lincheck(&cfg).expect("the run");
    assert_passed(&r, 8);
    let nodes: std::collections::BTreeSet<usize> = r.history.ops.iter().map(|o| o.node).collect();
    assert_eq!(nodes.len(), 3, "clients used every member:\n{}", r.text);
}

#[test]
#[ignore = "needs root (network namespaces, iptables): tests/run-all.sh runs it with --include-ignored"]
fn a_three_node_zkd_ensemble_is_linearizable_under_partitions_and_one_way_drops() {
    if let Err(why) = net_prerequisites() {
        panic!("prerequisite missing: {why}; the partitions did not run");
    }
    let _g = serial();
    let cfg = RunConfig {
        nodes: 3,
        clients: 6,
        ..config(zkd(), &[FaultKind::Partition, FaultKind::OneWay, FaultKind::Kill], 40, seed(11))
    };
    let r = run_lincheck(&cfg).expect("the run");
    assert_passed(&r, 6);
    for what in ["partition", "one-way", "heal"] {
        assert!(
            r.history.faults.iter().any(|f| f.what == what),
            "no {what} in this seed's schedule:\n{}",
            r.text
        );
    }
    let nodes: std::collections::BTreeSet<usize> = r.history.ops.iter().map(|o| o.node).collect();
    assert_eq!(nodes.len(), 3, "clients used every member:\n{}", r.text);
}

/// Five members: a cut-off or muted member (leader included) leaves a quorum of four behind, two
/// faults can overlap a member that is still catching up, and elections count to three.
#[test]
#[ignore = "needs root (network namespaces, iptables): tests/run-all.sh runs it with --include-ignored"]
fn a_five_node_zkd_ensemble_is_linearizable_under_kills_pauses_partitions_and_one_way_drops() {
    if let Err(why) = net_prerequisites() {
        panic!("prerequisite missing: {why}; the partitions did not run");
    }
    let _g = serial();
    let faults = [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::OneWay];
    let cfg = RunConfig { nodes: 5, clients: 8, ..config(zkd(), &faults, 28, seed(23)) };
    let r = run_lincheck(&cfg).expect("the run");
    assert_passed(&r, 8);
    for what in ["kill", "pause", "partition", "one-way", "heal"] {
        assert!(
            r.history.faults.iter().any(|f| f.what == what),
            "no {what} in this seed's schedule:\n{}",
            r.text
        );
    }
    let nodes: std::collections::BTreeSet<usize> = r.history.ops.iter().map(|o| o.node).collect();
    assert_eq!(nodes.len(), 5, "clients used every member:\n{}", r.text);
}

/// An ensemble member whose log's disk dies must stop (fail-stop) without having acknowledged a
/// txn it did not make durable, and rejoin after the remount; a full or slow disk and a restart
/// with its monotonic clock moved must cost no acknowledged write either.
#[test]
#[ignore = "needs root (loop devices, mount, blkio cgroups, time namespaces): tests/run-all.sh runs it with --include-ignored"]
fn a_three_node_zkd_ensemble_is_linearizable_when_disks_die_fill_up_or_slow_down_or_clocks_jump() {
    if let Err(why) = disk_prerequisites() {
        panic!("prerequisite missing: {why}; the disk and clock faults did not run");
    }
    let _g = serial();
    let faults = [FaultKind::FsShutdown, FaultKind::DiskFull, FaultKind::SlowDisk, FaultKind::Clock];
    let cfg = RunConfig { nodes: 3, clients: 6, ..config(zkd(), &faults, 30, seed(4)) };
    let r = run_lincheck(&cfg).expect("the run");
    assert_passed(&r, 8);
    for what in ["fs-shutdown", "disk-full", "slow-disk", "restart"] {
        assert!(
            r.history.faults.iter().any(|f| f.what == what),
            "no {what} in this seed's schedule:\n{}",
            r.text
        );
    }
    // Every member whose disk died stopped by itself, and came back (the restart waits until it
    // serves, as a follower or the leader of a quorum).
    let died = r.history.faults.iter().filter(|f| f.what == "fs-shutdown").count();
    let stopped = r.history.faults.iter().filter(|f| f.what == "stopped").count();
    assert_eq!(died, stopped, "{}", r.text);
    assert!(!r.history.faults.iter().any(|f| f.detail.contains("still running")), "{}", r.text);
    let nodes: std::collections::BTreeSet<usize> = r.history.ops.iter().map(|o| o.node).collect();
    assert_eq!(nodes.len(), 3, "clients used every member:\n{}", r.text);
}

#[test]
#[ignore = "needs root (loop devices, mount, blkio cgroups, time namespaces): tests/run-all.sh runs it with --include-ignored"]
fn zkd_is_linearizable_when_its_disk_dies_fills_up_or_slows_down_or_its_clock_jumps() {
    if let Err(why) = disk_prerequisites() {
        panic!("prerequisite missing: {why}; the disk and clock faults did not run");
    }
    let _g = serial();
    let faults = [FaultKind::FsShutdown, FaultKind::DiskFull, FaultKind::SlowDisk, FaultKind::Clock];
    let r = run_lincheck(&config(zkd(), &faults, 30, seed(3))).expect("the run");
    assert_passed(&r, 8);
    for what in ["fs-shutdown", "disk-full", "slow-disk", "restart"] {
        assert!(
            r.history.faults.iter().any(|f| f.what == what),
            "no {what} in this seed's schedule:\n{}",
            r.text
        );
    }
    // The node stopped by itself each time its disk died (fail-stop), not killed by the nemesis.
    assert!(r.history.faults.iter().filter(|f| f.what == "stopped").count() >= 1, "{}", r.text);
    assert!(!r.history.faults.iter().any(|f| f.detail.contains("still running")), "{}", r.text);
}

#[test]
#[ignore = "needs Java and Apache ZooKeeper 3.8: tests/run-all.sh runs it with --include-ignored"]
fn the_oracle_is_linearizable_under_the_same_faults() {
    let classpath = "/usr/share/java/*:/etc/zookeeper/conf";
    let java = std::process::Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    assert!(
        java && std::path::Path::new("/usr/share/java/zookeeper.jar").exists(),
        "prerequisite missing: java and /usr/share/java/zookeeper.jar (Debian package zookeeper)"
    );
    let _g = serial();
    let oracle = ServerKind::Oracle { classpath: classpath.into() };
    let r =
        run_lincheck(&config(oracle, &[FaultKind::Kill, FaultKind::Pause], 20, seed(5))).expect("the run");
    assert_passed(&r, 4);
}

/// How the proxy lies.
#[derive(Clone, Copy, PartialEq)]
enum Lie {
    /// Forwards everything as it is.
    Nothing,
    /// Every `n`th getData is answered with a reply this proxy forwarded for the same path at
    /// least 50 replies earlier.
    StaleReads(u64),
    /// Every `n`th unconditional setData is answered "ok, version + 1" and never forwarded.
    LostWrites(u64),
}

/// A server in front of zkd that breaks it on purpose. Assumes what the recorder does: at most
/// a sync and a read, or one write, in flight per connection.
struct Proxy {
    lie: Lie,
    count: AtomicU64,
    /// Lies told so far.
    lies: AtomicU64,
    seen: Mutex<std::collections::HashMap<String, Seen>>,
}

/// Per path: the getData reply bodies passed on, and the latest Stat.
#[derive(Default)]
struct Seen {
    bodies: Vec<Vec<u8>>,
    stat: Option<Stat>,
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = i32::from_be_bytes(len);
    if !(0..=1 << 20).contains(&n) {
        return None;
    }
    let mut b = vec![0u8; n as usize];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

enum Asked {
    Get(String),
    Set(String),
}

impl Proxy {
    fn start(upstream: SocketAddr, lie: Lie) -> (SocketAddr, Arc<Proxy>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let p = Arc::new(Proxy {
            lie,
            count: AtomicU64::new(0),
            lies: AtomicU64::new(0),
            seen: Mutex::default(),
        });
        let proxy = p.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let (Ok(c), Ok(u)) = (c, TcpStream::connect(upstream)) else { continue };
                let _ = (c.set_nodelay(true), u.set_nodelay(true));
                let p = p.clone();
                std::thread::spawn(move || p.connection(c, u));
            }
        });
        (addr, proxy)
    }

    fn tick(&self, n: u64) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed) % n == n - 1
    }

    fn connection(self: Arc<Self>, client: TcpStream, server: TcpStream) {
        let asked: Arc<Mutex<std::collections::HashMap<i32, Asked>>> = Arc::default();
        let to_client = Arc::new(Mutex::new(client.try_clone().unwrap()));
        let (mut c_in, mut s_out) = (client, server.try_clone().unwrap());
        let (a2, p2, tc2, mut s_in) = (asked.clone(), self.clone(), to_client.clone(), server);
        // Server to client: the connect response, then replies.
        std::thread::spawn(move || {
            let Some(f) = read_frame(&mut s_in) else { return };
            let _ = tc2.lock().unwrap().write_all(&frame(&f));
            while let Some(mut f) = read_frame(&mut s_in) {
                let h = ReplyHeader::decode(&mut Reader::new(&f)).unwrap();
                if let (Some(a), 0) = (a2.lock().unwrap().remove(&h.xid), h.err) {
                    f = p2.reply(a, f);
                }
                if tc2.lock().unwrap().write_all(&frame(&f)).is_err() {
                    return;
                }
            }
        });
        // Client to server: the connect request, then requests.
        let Some(f) = read_frame(&mut c_in) else { return };
        let _ = s_out.write_all(&frame(&f));
        while let Some(f) = read_frame(&mut c_in) {
            let mut r = Reader::new(&f);
            let h = RequestHeader::decode(&mut r).unwrap();
            if h.op_type == OpCode::GetData as i32 {
                let path = GetDataRequest::decode(&mut r).unwrap().path;
                asked.lock().unwrap().insert(h.xid, Asked::Get(path));
            } else if h.op_type == OpCode::SetData as i32 {
                let req = SetDataRequest::decode(&mut r).unwrap();
                if let Some(reply) = self.lose(&req, h.xid) {
                    let _ = to_client.lock().unwrap().write_all(&frame(&reply));
                    continue;
                }
                asked.lock().unwrap().insert(h.xid, Asked::Set(req.path));
            }
            if s_out.write_all(&frame(&f)).is_err() {
                return;
            }
        }
    }

    /// A reply the proxy makes up for a setData it drops, if it lies about writes.
    fn lose(&self, req: &SetDataRequest, xid: i32) -> Option<Vec<u8>> {
        let Lie::LostWrites(n) = self.lie else { return None };
        if req.version != -1 || !self.tick(n) {
            return None;
        }
        let mut seen = self.seen.lock().unwrap();
        let stat = seen.get_mut(&req.path)?.stat.as_mut()?;
        stat.version += 1;
        self.lies.fetch_add(1, Ordering::Relaxed);
        let mut w = Writer::new();
        ReplyHeader { xid, zxid: stat.mzxid, err: 0 }.encode(&mut w);
        SetDataResponse { stat: stat.clone() }.encode(&mut w);
        Some(w.buf)
    }

    /// The reply to pass on for a successful getData or setData.
    fn reply(&self, asked: Asked, f: Vec<u8>) -> Vec<u8> {
        let mut r = Reader::new(&f);
        let h = ReplyHeader::decode(&mut r).unwrap();
        let body = r.rest().to_vec();
        let mut seen = self.seen.lock().unwrap();
        match asked {
            Asked::Set(path) => {
                seen.entry(path).or_default().stat = Some(SetDataResponse::from_bytes(&body).unwrap().stat);
                f
            }
            Asked::Get(path) => {
                let e = seen.entry(path).or_default();
                e.stat = Some(GetDataResponse::from_bytes(&body).unwrap().stat);
                e.bodies.push(body);
                let old = e.bodies.len().checked_sub(50);
                match (self.lie, old) {
                    (Lie::StaleReads(n), Some(i)) if self.tick(n) => {
                        self.lies.fetch_add(1, Ordering::Relaxed);
                        let mut w = Writer::new();
                        h.encode(&mut w);
                        w.raw(&e.bodies[i]);
                        w.buf
                    }
                    _ => f,
                }
            }
        }
    }
}

/// Records the workload through a proxy in front of a fresh zkd node, 2 s at a time, until the
/// proxy has lied 5 times (honest: until 2000 replies); checks the history.
fn through_proxy(lie: Lie) -> (History, check::Report, String) {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("zkd-lincheck-proxy-{}-{n}", std::process::id()));
    let cluster = Cluster::start(ClusterConfig {
        kind: zkd(),
        nodes: 1,
        disks: false,
        cgroups: false,
        netns: false,
        dir: dir.clone(),
    })
    .unwrap();
    let upstream = cluster.addrs().lock().unwrap()[0].unwrap();
    let (addr, proxy) = Proxy::start(upstream, lie);
    let addrs: Addrs = Arc::new(Mutex::new(vec![Some(addr)]));
    let wl = Workload::new("/proxied", 2, 4, 2000, 9);
    setup(&addrs, &wl, Duration::from_secs(10)).unwrap();
    let run = RunInfo {
        seed: 9,
        server: "proxy".into(),
        keys: wl.keys.clone(),
        seq_parents: vec![wl.seq_parent.clone()],
        ..Default::default()
    };
    let rec = Recording::new(run, None).unwrap();
    let mut replies = 0;
    for _ in 0..15 {
        let enough = match lie {
            Lie::Nothing => replies >= 2000,
            _ => proxy.lies.load(Ordering::Relaxed) >= 5,
        };
        if enough {
            break;
        }
        let st = record(&rec, &addrs, &wl, Duration::from_secs(2)).unwrap();
        replies += st.ok + st.failed;
    }
    if lie != Lie::Nothing {
        assert!(proxy.lies.load(Ordering::Relaxed) >= 5, "the proxy had no chance to lie");
    }
    let h = rec.finish();
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    let (report, keys) = check::check(&h, check::BUDGET_DEFAULT).unwrap();
    let text = check::render(&h, &report, &keys);
    (h, report, text)
}

/// The window of each violation, as the operations in it.
fn window_ops<'a>(
    h: &'a History,
    report: &check::Report,
    text: &str,
) -> Vec<&'a zkd_tools::lincheck::history::Op> {
    let bad: Vec<_> = report.violations().collect();
    assert!(!bad.is_empty(), "not caught:\n{text}");
    let w = bad[0].window.as_ref().expect("a window");
    assert!(w.ops.len() <= 12, "the window should be small:\n{text}");
    let ids: Vec<String> =
        text.lines().filter_map(|l| l.split(" #").nth(1)?.split(' ').next().map(String::from)).collect();
    h.ops.iter().filter(|o| ids.contains(&o.id.to_string())).collect()
}

#[test]
fn an_honest_proxy_passes() {
    let _g = serial();
    let (h, report, text) = through_proxy(Lie::Nothing);
    assert!(report.linearizable(), "{text}");
    assert!(h.ops.len() > 1000, "{text}");
}

#[test]
fn a_server_that_serves_stale_reads_is_caught() {
    let _g = serial();
    let (h, report, text) = through_proxy(Lie::StaleReads(31));
    let ops = window_ops(&h, &report, &text);
    assert!(ops.iter().any(|o| matches!(o.subs[0], Sub::Read { .. })), "a read is in the window:\n{text}");
    eprintln!("{text}");
}

#[test]
fn a_server_that_loses_acknowledged_writes_is_caught() {
    let _g = serial();
    let (h, report, text) = through_proxy(Lie::LostWrites(31));
    let ops = window_ops(&h, &report, &text);
    assert!(
        ops.iter().any(|o| matches!(o.subs[0], Sub::Set { .. }) && matches!(o.outcome, Outcome::Ok { .. })),
        "an acknowledged write is in the window:\n{text}"
    );
    eprintln!("{text}");
}
