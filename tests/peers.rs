//! The election connections (`zkd::quorum::peers`) on real loopback sockets: servers find each
//! other and exchange messages both ways; a simultaneous connect leaves one connection per pair;
//! bad bytes cost one connection and one log line while the listener goes on; a peer that never
//! reads, or whose packets are dropped, delays no message to a reachable peer; a restarted peer
//! is connected again; a listener that cannot bind says so.
//!
//! Each test runs its servers on one glommio executor in a thread of its own (so "never delays
//! another peer" is checked where it matters most: every peer shares one event loop) with a
//! deadline on the whole test, and captures the executor's log lines.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use zkd::quorum::peers::{Inbox, Listen, OnFatal, PeerEvent, Peers, PeersConfig};
use zkd::quorum::wire::{HostPort, ELECTION_FRAME_MAX, PROTOCOL_VERSION_V1};
use zkd::quorum::Sid;

/// Log lines of one executor thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().map(str::to_owned).collect()
    }
    /// WARN and ERROR lines that mention `what`.
    fn warnings_about(&self, what: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && l.contains(what))
            .collect()
    }
}

/// Runs `test` on a fresh glommio executor in its own thread, capturing its log lines, and fails
/// if it does not finish within `limit`. `setup` runs first in that thread (before any socket).
fn on_executor<S, F, Fut>(limit: Duration, setup: S, test: F)
where
    S: FnOnce() + Send + 'static,
    F: FnOnce(Logs) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let logs = Logs::default();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let l = logs.clone();
    let handle = std::thread::spawn(move || {
        setup();
        let sub = tracing_subscriber::fmt()
            .with_writer({
                let l = l.clone();
                move || l.clone()
            })
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let _guard = tracing::subscriber::set_default(sub);
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("peers-test")
            .make()
            .expect("a glommio executor (io_uring, locked memory)");
        ex.run(test(l));
        // done_tx goes with this thread, also when the test panics.
        drop(done_tx);
    });
    match done_rx.recv_timeout(limit) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not finish within {limit:?}; its log:\n{}", logs.lines().join("\n"))
        }
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = handle.join() {
                eprintln!("the executor's log:\n{}", logs.lines().join("\n"));
                std::panic::resume_unwind(e);
            }
        }
    }
}

fn listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

fn config(sid: Sid, l: std::net::TcpListener, view: &BTreeMap<Sid, u16>) -> PeersConfig {
    let port = l.local_addr().unwrap().port();
    PeersConfig {
        my_sid: sid,
        advertise: HostPort::new("127.0.0.1", port),
        listen: Listen::Bound(l),
        view: view.iter().map(|(s, p)| (*s, HostPort::new("127.0.0.1", *p))).collect(),
        connect_timeout: Some(Duration::from_secs(5)),
        io_timeout: Duration::from_secs(2),
        bind_retries: 3,
        bind_retry_pause: Duration::from_millis(20),
        send_queue_max: 1,
        inbox_messages_max: 100,
        pending_handshakes_max: 64,
        on_listener_failure: OnFatal::Report,
        tls: None,
        sasl: None,
    }
}

/// A server that binds `addr` itself, retrying until the port is free (a restart on the port of
/// a predecessor whose listener is closing).
fn config_at(sid: Sid, addr: SocketAddr, view: &BTreeMap<Sid, u16>) -> PeersConfig {
    let mut cfg = config(sid, listener(), view);
    cfg.listen = Listen::Addr(addr);
    cfg.advertise = HostPort::new("127.0.0.1", addr.port());
    cfg.bind_retries = 0;
    cfg
}

/// `n` servers with sids 1..=n on fresh loopback ports, all knowing each other.
fn cluster(n: Sid) -> Vec<(Peers, std::rc::Rc<Inbox>)> {
    let ls: Vec<_> = (1..=n).map(|_| listener()).collect();
    let view: BTreeMap<Sid, u16> =
        ls.iter().enumerate().map(|(i, l)| (i as Sid + 1, l.local_addr().unwrap().port())).collect();
    ls.into_iter().enumerate().map(|(i, l)| Peers::start(config(i as Sid + 1, l, &view))).collect()
}

/// The first event `pred` accepts within `within` (others are skipped), or None.
async fn wait_for(inbox: &Inbox, within: Duration, pred: impl Fn(&PeerEvent) -> bool) -> Option<PeerEvent> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let next = futures_lite::future::or(async { Some(inbox.recv().await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        match next {
            Some(ev) if pred(&ev) => return Some(ev),
            Some(_) => continue,
            None => return None,
        }
    }
}

fn is_msg(from: Sid, data: &[u8]) -> impl Fn(&PeerEvent) -> bool + '_ {
    move |e| matches!(e, PeerEvent::Message { sid, data: d } if *sid == from && d == data)
}

async fn expect_msg(inbox: &Inbox, from: Sid, data: &[u8]) {
    let got = wait_for(inbox, Duration::from_secs(10), is_msg(from, data)).await;
    assert!(got.is_some(), "no message {:?} from server {from} within 10 s", String::from_utf8_lossy(data));
}

/// Waits (10 s at most) until every one of `want` (sender, bytes) arrived, in any order.
async fn expect_msgs(inbox: &Inbox, mut want: Vec<(Sid, Vec<u8>)>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !want.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = wait_for(inbox, left, |e| matches!(e, PeerEvent::Message { .. })).await;
        let Some(PeerEvent::Message { sid, data }) = got else {
            panic!("still missing after 10 s: {want:?}")
        };
        want.retain(|(s, d)| !(*s == sid && *d == data));
    }
}

/// Sends `data` from `p` to `to` until it arrives in `inbox`, as the election sends its
/// notifications again when its wait times out (a peer may not be listening yet).
async fn send_until_received(p: &Peers, to: Sid, inbox: &Inbox, data: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "{:?} never reached server {to}", String::from_utf8_lossy(data));
        p.send(to, data).unwrap();
        if wait_for(inbox, Duration::from_millis(200), is_msg(p.my_sid(), data)).await.is_some() {
            return;
        }
    }
}

/// Waits (with a deadline) until `cond` holds.
async fn until(within: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Established TCP connections whose local port is `port` (the accepting ends on a listener).
fn established_on(port: u16) -> usize {
    let mut n = 0;
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port =
                cols.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && cols.get(3) == Some(&"01") {
                n += 1;
            }
        }
    }
    n
}

fn port_of(p: &Peers) -> u16 {
    p.local_addr().unwrap().port()
}

#[test]
fn two_servers_connect_and_exchange_messages_both_ways() {
    on_executor(
        Duration::from_secs(60),
        || {},
        |_logs| async move {
            let c = cluster(2);
            let ((a, ai), (b, bi)) = (&c[0], &c[1]);
            a.send(2, b"vote from 1").unwrap();
            // Server 1 connects, writes its handshake and drops its connection (2 is higher); 2
            // calls back. Neither reports any other connection on the way.
            let not_msg = |e: &PeerEvent| !matches!(e, PeerEvent::Message { .. });
            let status = wait_for(bi, Duration::from_secs(10), not_msg).await;
            assert_eq!(status, Some(PeerEvent::Connected { sid: 1, outgoing: true }));
            expect_msg(bi, 1, b"vote from 1").await;
            let status = wait_for(ai, Duration::from_secs(10), not_msg).await;
            assert_eq!(status, Some(PeerEvent::Connected { sid: 2, outgoing: false }));
            b.send(1, b"vote from 2").unwrap();
            expect_msg(ai, 2, b"vote from 2").await;
            // Server 1 connected first, lost (lower sid), and server 2 called back: the connection is
            // 2's, accepted on 1's listener.
            assert!(a.is_connected(2) && b.is_connected(1));
            until(Duration::from_secs(5), "one connection, accepted by server 1", || {
                established_on(port_of(a)) == 1 && established_on(port_of(b)) == 0
            })
            .await;
            for i in 0..50u32 {
                a.send(2, format!("a{i}").as_bytes()).unwrap();
                expect_msg(bi, 1, format!("a{i}").as_bytes()).await;
                b.send(1, format!("b{i}").as_bytes()).unwrap();
                expect_msg(ai, 2, format!("b{i}").as_bytes()).await;
            }
            // A message to ourselves is delivered without a socket; the largest frame goes through.
            a.send(1, b"self").unwrap();
            expect_msg(ai, 1, b"self").await;
            let big = vec![7u8; ELECTION_FRAME_MAX];
            b.send(1, &big).unwrap();
            expect_msg(ai, 2, &big).await;
            assert!(a.send(2, &vec![0; ELECTION_FRAME_MAX + 1]).is_err() && a.send(2, b"").is_err());
            assert_eq!(established_on(port_of(a)), 1);
        },
    );
}

#[test]
fn three_servers_connect_and_exchange_messages() {
    on_executor(
        Duration::from_secs(60),
        || {},
        |_logs| async move {
            let c = cluster(3);
            for round in 0..5 {
                for (i, (p, _)) in c.iter().enumerate() {
                    for to in 1..=3 {
                        p.send(to, format!("r{round} {} to {to}", i + 1).as_bytes()).unwrap();
                    }
                }
                for (i, (_, inbox)) in c.iter().enumerate() {
                    let me = i as Sid + 1;
                    let want =
                        (1..=3).map(|from| (from, format!("r{round} {from} to {me}").into_bytes())).collect();
                    expect_msgs(inbox, want).await;
                }
            }
            // One connection per pair, each accepted by the lower sid: 1 accepts 2's and 3's, 2
            // accepts 3's, 3 accepts none.
            until(Duration::from_secs(5), "one connection per pair", || {
                (
                    established_on(port_of(&c[0].0)),
                    established_on(port_of(&c[1].0)),
                    established_on(port_of(&c[2].0)),
                ) == (2, 1, 0)
            })
            .await;
        },
    );
}

#[test]
fn a_simultaneous_connect_leaves_one_connection_per_pair() {
    on_executor(
        Duration::from_secs(120),
        || {},
        |_logs| async move {
            for attempt in 0..20 {
                let c = cluster(2);
                let ((a, ai), (b, bi)) = (&c[0], &c[1]);
                // Both send at once: both connect. Like the election, each sends again when its
                // wait times out (ZooKeeper's rules can end such a race with no connection).
                let mut rounds = 0;
                loop {
                    rounds += 1;
                    assert!(rounds <= 20, "attempt {attempt}: no connection after {rounds} rounds");
                    a.send(2, format!("1 round {rounds}").as_bytes()).unwrap();
                    b.send(1, format!("2 round {rounds}").as_bytes()).unwrap();
                    let got_b = wait_for(
                        bi,
                        Duration::from_millis(300),
                        is_msg(1, format!("1 round {rounds}").as_bytes()),
                    )
                    .await;
                    let got_a = wait_for(
                        ai,
                        Duration::from_millis(300),
                        is_msg(2, format!("2 round {rounds}").as_bytes()),
                    )
                    .await;
                    if got_a.is_some() && got_b.is_some() && a.is_connected(2) && b.is_connected(1) {
                        break;
                    }
                }
                until(Duration::from_secs(5), "exactly one connection, server 2's", || {
                    established_on(port_of(a)) == 1 && established_on(port_of(b)) == 0
                })
                .await;
                a.send(2, b"after").unwrap();
                expect_msg(bi, 1, b"after").await;
                b.send(1, b"after").unwrap();
                expect_msg(ai, 2, b"after").await;
            }
        },
    );
}

/// A raw client: connects to `addr`, writes `bytes`, and returns its own address.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> (glommio::net::TcpStream, SocketAddr) {
    let mut s = glommio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let me = s.local_addr().unwrap();
    (s, me)
}

/// Reads until the server closes the connection (within 10 s).
async fn closed_by_server(mut s: glommio::net::TcpStream) {
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "the server kept a bad connection open");
        let r = futures_lite::future::or(async { Some(s.read(&mut buf).await) }, async {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            None
        })
        .await;
        match r {
            Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(_)) | None => {}
        }
    }
}

fn v1_handshake(sid: Sid, address: &[u8]) -> Vec<u8> {
    let mut b = PROTOCOL_VERSION_V1.to_be_bytes().to_vec();
    b.extend_from_slice(&sid.to_be_bytes());
    b.extend_from_slice(&(address.len() as i32).to_be_bytes());
    b.extend_from_slice(address);
    b
}

#[test]
fn bad_bytes_cost_one_connection_and_one_log_line_and_the_listener_goes_on() {
    on_executor(
        Duration::from_secs(60),
        || {},
        |logs| async move {
            // Server 5 under attack; server 3 (a real peer) is started afterwards.
            let (la, lb) = (listener(), listener());
            let view: BTreeMap<Sid, u16> =
                [(5, la.local_addr().unwrap().port()), (3, lb.local_addr().unwrap().port())].into();
            let mut cfg = config(5, la, &view);
            cfg.io_timeout = Duration::from_millis(500);
            let (a, ai) = Peers::start(cfg);
            let addr = a.local_addr().unwrap();

            let with_len = |prefix: Vec<u8>, len: i32| {
                let mut b = prefix;
                b.extend_from_slice(&len.to_be_bytes());
                b
            };
            let handshake_prefix = || {
                let mut b = PROTOCOL_VERSION_V1.to_be_bytes().to_vec();
                b.extend_from_slice(&9i64.to_be_bytes());
                b
            };
            // Refused at the handshake: what each costs is the connection and one warning. The last
            // two are well-formed and refused by the manager, the others by the handshake decoder.
            let refused: Vec<(&str, Vec<u8>)> = vec![
                ("address length 2^31-1", with_len(handshake_prefix(), i32::MAX)),
                (
                    "address length 3 GB (negative as an int)",
                    with_len(handshake_prefix(), 3_000_000_000u32 as i32),
                ),
                ("address length 0", with_len(handshake_prefix(), 0)),
                ("unknown protocol version", [(-7i64).to_be_bytes().as_slice(), &[0; 20]].concat()),
                ("garbage", (0..200u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80).collect()),
                ("a malformed address", v1_handshake(9, b"no-port-here")),
                ("half a handshake", handshake_prefix()),
                ("nothing at all", Vec::new()),
                (
                    "an HTTP request (a pre-3.5 sid of no configured server)",
                    b"GET / HTTP/1.0\r\nHost: zk\r\n\r\n".to_vec(),
                ),
                ("our own sid", v1_handshake(5, b"127.0.0.1:1")),
            ];
            for (what, bytes) in &refused {
                let (s, me) = raw(addr, bytes).await;
                closed_by_server(s).await;
                let me = me.to_string();
                until(Duration::from_secs(5), "the warning is logged", || {
                    !logs.warnings_about(&me).is_empty()
                })
                .await;
                let w = logs.warnings_about(&me);
                assert_eq!(w.len(), 1, "{what}: one line, got {w:?}");
                assert!(w[0].contains("dropping the election connection from"), "{what}: {w:?}");
            }
            // A good handshake from a (higher) stranger, then a bad frame length: the connection is
            // taken, then dropped for the frame, with one warning naming the length.
            for (what, len) in
                [("frame length 2^31-1", i32::MAX), ("negative frame length", -1), ("frame length 0", 0)]
            {
                let mut bytes = v1_handshake(9, b"127.0.0.1:9");
                bytes.extend_from_slice(&len.to_be_bytes());
                let (s, me) = raw(addr, &bytes).await;
                closed_by_server(s).await;
                let me = me.to_string();
                until(Duration::from_secs(5), "the warning is logged", || {
                    !logs.warnings_about(&me).is_empty()
                })
                .await;
                let w = logs.warnings_about(&me);
                assert_eq!(w.len(), 1, "{what}: one line, got {w:?}");
                assert!(w[0].contains(&format!("length {len} out of bounds")), "{what}: {w:?}");
            }
            let st = a.stats();
            assert_eq!(
                (st.accepted, st.refused, st.bad_frames),
                (refused.len() as u64 + 3, refused.len() as u64 - 2, 3),
                "{st:?}"
            );
            assert!(logs.lines().iter().all(|l| !l.contains("ERROR")), "the listener never failed");

            // The real peer still connects, both ways.
            let (b, bi) = Peers::start(config(3, lb, &view));
            b.send(5, b"hello 5").unwrap();
            expect_msg(&ai, 3, b"hello 5").await;
            a.send(3, b"hello 3").unwrap();
            expect_msg(&bi, 5, b"hello 3").await;
        },
    );
}

/// Sends big messages to `slow` and small ones to server 1 (whose inbox is `fast_inbox`) from
/// `a`, each small one awaited; returns the largest delay seen.
async fn latency_beside_a_stuck_peer(a: &Peers, slow: Sid, fast_inbox: &Inbox, rounds: u32) -> Duration {
    let big = vec![0xabu8; ELECTION_FRAME_MAX - 16];
    let mut worst = Duration::ZERO;
    for i in 0..rounds {
        a.send(slow, &big).unwrap();
        let t0 = Instant::now();
        let small = format!("to 1 #{i}");
        a.send(1, small.as_bytes()).unwrap();
        expect_msg(fast_inbox, a.my_sid(), small.as_bytes()).await;
        worst = worst.max(t0.elapsed());
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    worst
}

/// Delays this long or more to a reachable peer would mean it waited on the stuck one (its
/// connect timeout is seconds); a loaded 2-core machine stays far below it.
const PROMPT: Duration = Duration::from_millis(250);

#[test]
fn a_peer_that_never_reads_delays_no_message_to_a_reachable_peer() {
    on_executor(Duration::from_secs(60), || {}, |_logs| async move { never_reading_peer().await });
}

/// Server 3 sends to server 1 (a real peer) and to "server 2", a listener that accepts and never
/// reads: 3's writes to 2 fill the socket buffers and then wait, and 2 is dropped after
/// `io_timeout`; meanwhile every message to 1 arrives at once.
async fn never_reading_peer() {
    let (la, lb) = (listener(), listener());
    // Listening, never accepting: the kernel completes connections and buffers some bytes.
    let stuck = listener();
    let view: BTreeMap<Sid, u16> = [
        (3, la.local_addr().unwrap().port()),
        (1, lb.local_addr().unwrap().port()),
        (2, stuck.local_addr().unwrap().port()),
    ]
    .into();
    let mut cfg = config(3, la, &view);
    cfg.io_timeout = Duration::from_secs(2);
    let (a, ai) = Peers::start(cfg);
    let (_b, bi) = Peers::start(config(1, lb, &view));
    a.send(1, b"warm up").unwrap();
    expect_msg(&bi, 3, b"warm up").await;
    let worst = latency_beside_a_stuck_peer(&a, 2, &bi, 60).await;
    assert!(worst < PROMPT, "a message to a reachable peer took {worst:?}");
    let st = a.stats();
    assert!(st.sends_dropped > 0, "the stuck peer's queue overflowed (dropping its oldest): {st:?}");
    // The writer was stuck: after io_timeout the connection is given up, saying why.
    let lost = wait_for(&ai, Duration::from_secs(10), |e| matches!(e, PeerEvent::Lost { sid: 2, .. })).await;
    let Some(PeerEvent::Lost { reason, .. }) = lost else { panic!("server 2 was never reported lost") };
    assert!(reason.contains("read nothing for 2000 ms"), "{reason}");
    drop(stuck);
}

/// A network namespace of the test's own (root, iproute2, iptables), deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn create() -> Result<NetNs, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "zkd-peers-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name])?;
        let ns = NetNs { name };
        run("ip", &["-n", &ns.name, "link", "set", "lo", "up"])?;
        ns.iptables(&["-L", "-n"])?;
        Ok(ns)
    }

    /// Moves the calling thread into the namespace (sockets it opens then live there).
    fn enter(&self) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.name)).map_err(|e| e.to_string())?;
        // SAFETY: setns on an open namespace file; it changes only this thread's namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn iptables(&self, args: &[&str]) -> Result<(), String> {
        let mut a = vec!["netns", "exec", &self.name, "iptables"];
        a.extend_from_slice(args);
        run("ip", &a)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn require_all() -> bool {
    std::env::var("ZKD_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

#[test]
fn a_blackholed_peer_delays_no_message_to_a_reachable_peer() {
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(e) if require_all() => {
            panic!("prerequisite missing: a network namespace with iptables ({e}); ZKD_REQUIRE_ALL=1: every test must run")
        }
        Err(e) => {
            eprintln!("no network namespace ({e}): checking with a peer that never reads instead");
            on_executor(Duration::from_secs(60), || {}, |_logs| async move { never_reading_peer().await });
            return;
        }
    };
    let ns = Arc::new(ns);
    let n = ns.clone();
    on_executor(
        Duration::from_secs(90),
        move || n.enter().expect("entering the test's network namespace"),
        move |_logs| async move {
            // 1. Connecting to a peer whose packets are dropped: the connect waits for its
            //    timeout (3 s here, 5 s in ZooKeeper), while messages to server 1 go at once.
            let (la, lb, lc) = (listener(), listener(), listener());
            let c_port = lc.local_addr().unwrap().port();
            let view: BTreeMap<Sid, u16> =
                [(3, la.local_addr().unwrap().port()), (1, lb.local_addr().unwrap().port()), (2, c_port)]
                    .into();
            ns.iptables(&["-A", "INPUT", "-p", "tcp", "--dport", &c_port.to_string(), "-j", "DROP"]).unwrap();
            let mut cfg = config(3, la, &view);
            cfg.connect_timeout = Some(Duration::from_secs(3));
            cfg.io_timeout = Duration::from_secs(2);
            let (a, ai) = Peers::start(cfg);
            let (_b, bi) = Peers::start(config(1, lb, &view));
            let t0 = Instant::now();
            a.send(2, b"to the blackhole").unwrap();
            let mut worst = Duration::ZERO;
            for i in 0..40 {
                let t = Instant::now();
                a.send(2, format!("to 2 #{i}").as_bytes()).unwrap();
                a.send(1, format!("to 1 #{i}").as_bytes()).unwrap();
                expect_msg(&bi, 3, format!("to 1 #{i}").as_bytes()).await;
                worst = worst.max(t.elapsed());
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            assert!(worst < PROMPT, "a message to a reachable peer took {worst:?} beside a blackholed one");
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "the sends above ran while the connect was pending"
            );
            let failed =
                wait_for(&ai, Duration::from_secs(10), |e| matches!(e, PeerEvent::DialFailed { sid: 2, .. }))
                    .await;
            let Some(PeerEvent::DialFailed { reason, .. }) = failed else {
                panic!("the blackholed connect was never reported")
            };
            assert!(t0.elapsed() >= Duration::from_secs(3), "it failed by its timeout: {reason}");
            assert!(reason.contains("timed out"), "{reason}");

            // 2. A peer whose packets start being dropped once connected: our writes to it stop
            //    being acknowledged and wait; messages to server 1 still go at once, and the peer
            //    is given up after io_timeout.
            drop(lc);
            ns.iptables(&["-F", "INPUT"]).unwrap();
            let lc = listener();
            let c_port = lc.local_addr().unwrap().port();
            let mut view2 = view.clone();
            view2.insert(2, c_port);
            let (la, lb) = (listener(), listener());
            view2.insert(3, la.local_addr().unwrap().port());
            view2.insert(1, lb.local_addr().unwrap().port());
            let (a, ai) = Peers::start(config(3, la, &view2));
            let (_b, bi) = Peers::start(config(1, lb, &view2));
            let (_c, ci) = Peers::start(config(2, lc, &view2));
            a.send(2, b"before").unwrap();
            expect_msg(&ci, 3, b"before").await;
            a.send(1, b"before").unwrap();
            expect_msg(&bi, 3, b"before").await;
            let p = c_port.to_string();
            ns.iptables(&["-A", "INPUT", "-p", "tcp", "--dport", &p, "-j", "DROP"]).unwrap();
            ns.iptables(&["-A", "INPUT", "-p", "tcp", "--sport", &p, "-j", "DROP"]).unwrap();
            let worst = latency_beside_a_stuck_peer(&a, 2, &bi, 40).await;
            assert!(worst < PROMPT, "a message to a reachable peer took {worst:?} beside a blackholed one");
            let lost =
                wait_for(&ai, Duration::from_secs(15), |e| matches!(e, PeerEvent::Lost { sid: 2, .. })).await;
            let Some(PeerEvent::Lost { reason, .. }) = lost else {
                panic!("the blackholed peer was never reported lost")
            };
            assert!(reason.contains("read nothing for 2000 ms"), "{reason}");
        },
    );
}

#[test]
fn a_restarted_peer_is_connected_again() {
    on_executor(
        Duration::from_secs(60),
        || {},
        |_logs| async move {
            let (la, lb) = (listener(), listener());
            let (pa, pb) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
            let view: BTreeMap<Sid, u16> = [(1, pa.port()), (2, pb.port())].into();
            let (a, ai) = Peers::start(config(1, la, &view));
            let (b, bi) = Peers::start(config(2, lb, &view));
            a.send(2, b"one").unwrap();
            expect_msg(&bi, 1, b"one").await;

            // The higher sid restarts: 1 sees the connection go; 2's next message connects again.
            b.halt();
            drop((b, bi));
            let lost =
                wait_for(&ai, Duration::from_secs(10), |e| matches!(e, PeerEvent::Lost { sid: 2, .. })).await;
            assert!(lost.is_some(), "server 1 saw server 2 go");
            let (b, bi) = Peers::start(config_at(2, pb, &view));
            send_until_received(&b, 1, &ai, b"two is back").await;
            a.send(2, b"welcome").unwrap();
            expect_msg(&bi, 1, b"welcome").await;

            // The lower sid restarts: its first message connects to 2, which calls back.
            a.halt();
            drop((a, ai));
            let (a, ai) = Peers::start(config_at(1, pa, &view));
            send_until_received(&a, 2, &bi, b"one is back").await;
            b.send(1, b"welcome too").unwrap();
            expect_msg(&ai, 2, b"welcome too").await;
            until(Duration::from_secs(5), "one connection", || established_on(pa.port()) == 1).await;
        },
    );
}

#[test]
fn a_listener_that_cannot_bind_says_so_loudly() {
    on_executor(
        Duration::from_secs(30),
        || {},
        |logs| async move {
            // The port is taken by a listening socket: binding fails every time.
            let taken = listener();
            let addr = taken.local_addr().unwrap();
            let mut cfg = config(1, listener(), &BTreeMap::new());
            cfg.listen = Listen::Addr(addr);
            cfg.bind_retries = 3;
            let (_a, ai) = Peers::start(cfg);
            let ev =
                wait_for(&ai, Duration::from_secs(10), |e| matches!(e, PeerEvent::ListenerFailed { .. }))
                    .await;
            let Some(PeerEvent::ListenerFailed { reason }) = ev else { panic!("no ListenerFailed") };
            assert!(reason.contains(&addr.to_string()) && reason.contains("in use"), "{reason}");
            assert!(reason.contains("electionPortBindRetry=3"), "{reason}");
            let errors: Vec<String> = logs.lines().into_iter().filter(|l| l.contains("ERROR")).collect();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains("can no longer take part in leader election"), "{errors:?}");
            drop(taken);
        },
    );
}

/// A port for a server that cannot bind port 0 and report it (Apache ZooKeeper): a socket bound to
/// 0.0.0.0:0 with SO_REUSEADDR, never listened on, held while the server runs (as
/// tests/py/ports.py's PortHold): ZooKeeper binds and listens beside it.
struct PortHold(socket2::Socket);

impl PortHold {
    fn new() -> PortHold {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into()).unwrap();
        PortHold(s)
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().as_socket().unwrap().port()
    }
}

/// Java processes killed on drop.
struct Javas(Vec<std::process::Child>);

impl Drop for Javas {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const ZK_CLASSPATH: &str = "/usr/share/java/*:/etc/zookeeper/conf";

#[test]
#[ignore = "needs Java 17 and Apache ZooKeeper 3.8 (Debian package zookeeper); run with --include-ignored, as tests/run-all.sh does"]
fn java_servers_and_zkd_keep_one_connection_per_pair_and_exchange_notifications() {
    use zkd::quorum::wire::{decode_notification, encode_notification, QuorumView, ServerAddr, ServerSpec};
    use zkd::quorum::{LearnerType, Notification, PeerState, Vote};
    let java_ok = Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    assert!(
        java_ok && std::path::Path::new("/usr/share/java/zookeeper.jar").exists(),
        "prerequisite missing: java and /usr/share/java/zookeeper.jar (apt-get install zookeeper default-jre-headless)"
    );
    // Servers 1 and 2 are Java; server 3 is zkd's election connections (no election behind them).
    let dir = tempfile::tempdir().unwrap();
    let holds: Vec<PortHold> = (0..7).map(|_| PortHold::new()).collect();
    let p: Vec<u16> = holds.iter().map(PortHold::port).collect();
    let (q, e, client) = ([p[0], p[1], p[2]], [p[3], p[4]], [p[5], p[6]]);
    let ours = listener();
    let e3 = ours.local_addr().unwrap().port();
    let elections = [e[0], e[1], e3];
    let servers: String =
        (0..3).map(|i| format!("server.{}=127.0.0.1:{}:{}\n", i + 1, q[i], elections[i])).collect();
    let mut javas = Javas(Vec::new());
    for (n, client_port) in client.iter().enumerate() {
        let home = dir.path().join(format!("zk{}", n + 1));
        std::fs::create_dir_all(home.join("data")).unwrap();
        std::fs::write(home.join("data").join("myid"), format!("{}\n", n + 1)).unwrap();
        let cfg = home.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=*\n{servers}",
                home.join("data").display(),
                client_port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(home.join("zk.log")).unwrap();
        let child = Command::new("java")
            .args(["-Xshare:auto", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m"])
            .arg("-Dzookeeper.root.logger=INFO,CONSOLE")
            .arg(format!("-Dzookeeper.log.dir={}", home.display()))
            .args(["-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.quorum.QuorumPeerMain"])
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("java starts");
        javas.0.push(child);
    }
    let java_log = {
        let d = dir.path().to_owned();
        move || {
            (1..=2)
                .map(|n| std::fs::read_to_string(d.join(format!("zk{n}/zk.log"))).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n---\n")
        }
    };
    let view: BTreeMap<Sid, u16> = [(1, e[0]), (2, e[1]), (3, e3)].into();
    let config_text = QuorumView {
        servers: (0..3)
            .map(|i| {
                let spec = ServerSpec {
                    addrs: vec![ServerAddr {
                        host: "127.0.0.1".into(),
                        quorum_port: q[i],
                        election_port: elections[i],
                    }],
                    learner_type: LearnerType::Participant,
                    client: None,
                };
                (i as Sid + 1, spec)
            })
            .collect(),
        version: 0,
    }
    .to_text();
    let jl = java_log.clone();
    on_executor(
        Duration::from_secs(120),
        || {},
        move |logs| async move {
            let (z, zi) = Peers::start(config(3, ours, &view));
            // 1. Both Java servers, LOOKING, send us their votes: each connects, sees our higher sid
            //    and drops its connection; we call back, and the vote arrives on our connection.
            let mut connected = Vec::new();
            let mut looking_from = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while connected.len() < 2 || looking_from.len() < 2 {
                let left = deadline.saturating_duration_since(Instant::now());
                let ev = wait_for(&zi, left, |_| true).await;
                match ev {
                Some(PeerEvent::Connected { sid, outgoing }) => {
                    assert!(outgoing, "the connection with Java server {sid} is ours (we are the higher sid)");
                    connected.push(sid);
                }
                Some(PeerEvent::Message { sid, data }) => {
                    let n = decode_notification(&data).unwrap_or_else(|e| panic!("from {sid}: {e}"));
                    assert_eq!(n.version, 2, "3.8's notification form");
                    if n.state == PeerState::Looking && !looking_from.contains(&sid) {
                        looking_from.push(sid);
                    }
                }
                Some(_) => {}
                None => panic!(
                    "no votes from both Java servers within 60 s (connected {connected:?}, votes from {looking_from:?}); \
                     our log:\n{}\nJava's:\n{}",
                    logs.lines().join("\n"),
                    jl()
                ),
            }
            }
            // 2. Once they have elected a leader between them, a LOOKING vote from us is answered
            //    with theirs (FOLLOWING or LEADING), on the same connections: our bytes are read too.
            let ours = Notification {
                state: PeerState::Looking,
                vote: Vote { leader: 2, zxid: 0, election_epoch: 1, peer_epoch: 0 },
                version: 2,
                config: Some(config_text.into_bytes()),
            };
            let bytes = encode_notification(&ours);
            let mut settled: BTreeMap<Sid, Notification> = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while settled.len() < 2 {
                assert!(
                    Instant::now() < deadline,
                    "no FOLLOWING/LEADING answer from both; Java's log:\n{}",
                    jl()
                );
                for sid in [1, 2] {
                    if !settled.contains_key(&sid) {
                        z.send(sid, &bytes).unwrap();
                    }
                }
                let until = Instant::now() + Duration::from_millis(500);
                while let Some(PeerEvent::Message { sid, data }) =
                    wait_for(&zi, until.saturating_duration_since(Instant::now()), |e| {
                        matches!(e, PeerEvent::Message { .. })
                    })
                    .await
                {
                    let n = decode_notification(&data).unwrap();
                    if matches!(n.state, PeerState::Following | PeerState::Leading) {
                        settled.insert(sid, n);
                    }
                }
            }
            let (n1, n2) = (&settled[&1], &settled[&2]);
            assert_eq!(n1.vote.leader, n2.vote.leader, "both name one leader: {n1:?} {n2:?}");
            let leader = n1.vote.leader;
            assert_eq!(settled[&leader].state, PeerState::Leading, "{settled:?}");
            // One connection per pair, each opened by the higher sid: Java 1 accepted 2's and ours,
            // Java 2 accepted ours, we accepted none.
            until(Duration::from_secs(10), "one connection per pair", || {
                (established_on(view[&1]), established_on(view[&2]), established_on(view[&3])) == (2, 1, 0)
            })
            .await;
            // No connection of ours was dropped along the way for bad bytes.
            assert!(z.stats().bad_frames == 0, "{:?}", z.stats());
        },
    );
    drop(javas);
    drop(holds);
}
