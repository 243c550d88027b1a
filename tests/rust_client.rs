//! zkd driven by the Rust `zookeeper-client` crate (a client nobody here wrote). Each test runs
//! twice: on its own in-process server on an ephemeral port with 2 shards, and (`*_on_an_ensemble`)
//! on its own 3-node `zkd serve` ensemble, where every client the test opens connects to the next
//! node in turn, so sessions on the leader and on followers meet in one test.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zookeeper_client as zk;

struct Server {
    handle: Option<zkd::server::ServerHandle>,
    /// One client address, or one per node of an ensemble.
    addrs: Vec<String>,
    next: AtomicUsize,
    _ensemble: Option<common::ZkdEnsemble>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// The address the next client connects to: the next node, on an ensemble.
    fn addr(&self) -> String {
        self.addrs[self.next.fetch_add(1, Ordering::Relaxed) % self.addrs.len()].clone()
    }
}

/// A 3-node ensemble with these zoo.cfg lines.
fn start_ensemble(extra: &str) -> Server {
    let e = common::ZkdEnsemble::start(3, extra);
    let addrs = e.client_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    Server { handle: None, addrs, next: AtomicUsize::new(0), _ensemble: Some(e), _dir: None }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

fn start(extra: &str) -> Server {
    start_with(extra, false)
}

/// `dedicated_replica`: the replica on its own thread (the layout for >= 4 cores) instead of
/// hosted on a shard's executor (the layout on this 2-core machine); both must behave the same.
fn start_with(extra: &str, dedicated_replica: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "tickTime=200\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n{extra}\n",
        dir.path().display()
    );
    let (cfg, _) = zkd::config::Config::parse_str(&cfg, dir.path()).unwrap();
    let handle = zkd::server::start(
        &cfg,
        zkd::server::RunOptions { shards: Some(2), cores: None, in_memory: true, dedicated_replica },
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", handle.addr.port());
    Server {
        handle: Some(handle),
        addrs: vec![addr],
        next: AtomicUsize::new(0),
        _ensemble: None,
        _dir: Some(dir),
    }
}

fn open() -> &'static zk::CreateOptions<'static> {
    static O: zk::CreateOptions<'static> = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    &O
}

async fn client(s: &Server) -> zk::Client {
    let c = zk::Client::connector().session_timeout(Duration::from_secs(4)).connect(&s.addr()).await.unwrap();
    // A node of an ensemble may not have applied what other sessions just wrote: a client that
    // must see it first syncs, as ZooKeeper's documentation says.
    if s.addrs.len() > 1 {
        c.sync("/").await.unwrap();
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_stat_fields() {
    crud_and_stat_fields_on(start("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_stat_fields_on_an_ensemble() {
    crud_and_stat_fields_on(start_ensemble("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_stat_fields_with_a_dedicated_replica_thread() {
    crud_and_stat_fields_on(start_with("", true)).await;
}

async fn crud_and_stat_fields_on(s: Server) {
    let c = client(&s).await;
    let (st, _) = c.create("/a", b"hello", open()).await.unwrap();
    assert_eq!((st.version, st.cversion, st.aversion, st.data_length, st.num_children), (0, 0, 0, 5, 0));
    assert_eq!(st.czxid, st.mzxid);
    assert_eq!(st.czxid, st.pzxid);
    assert_eq!(c.create("/a", b"", open()).await.unwrap_err(), zk::Error::NodeExists);
    assert_eq!(c.create("/x/y", b"", open()).await.unwrap_err(), zk::Error::NoNode);
    let (data, st2) = c.get_data("/a").await.unwrap();
    assert_eq!((data.as_slice(), st2), (&b"hello"[..], st));
    let st3 = c.set_data("/a", b"bye", Some(0)).await.unwrap();
    assert_eq!((st3.version, st3.data_length, st3.czxid), (1, 3, st.czxid));
    assert!(st3.mzxid > st.mzxid);
    assert_eq!(c.set_data("/a", b"x", Some(0)).await.unwrap_err(), zk::Error::BadVersion);
    c.create("/a/b", b"", open()).await.unwrap();
    let (children, pst) = c.get_children("/a").await.unwrap();
    assert_eq!(children, vec!["b".to_string()]);
    assert_eq!((pst.num_children, pst.cversion), (1, 1));
    assert_eq!(c.delete("/a", None).await.unwrap_err(), zk::Error::NotEmpty);
    assert_eq!(c.delete("/a/b", Some(3)).await.unwrap_err(), zk::Error::BadVersion);
    c.delete("/a/b", Some(0)).await.unwrap();
    c.delete("/a", None).await.unwrap();
    assert_eq!(c.check_stat("/a").await.unwrap(), None);
    assert_eq!(c.get_data("/a").await.unwrap_err(), zk::Error::NoNode);
    // The fresh tree has ZooKeeper's system nodes.
    let (mut root, _) = c.get_children("/zookeeper").await.unwrap();
    root.sort();
    assert_eq!(root, vec!["config".to_string(), "quota".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_reports_the_failing_op() {
    multi_reports_the_failing_op_on(start("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_reports_the_failing_op_on_an_ensemble() {
    multi_reports_the_failing_op_on(start_ensemble("")).await;
}

async fn multi_reports_the_failing_op_on(s: Server) {
    let c = client(&s).await;
    let mut w = c.new_multi_writer();
    w.add_create("/m", b"0", open()).unwrap();
    let r = w.commit().await.unwrap();
    assert!(matches!(&r[0], zk::MultiWriteResult::Create { path, .. } if path == "/m"));
    let (_, st) = c.get_data("/m").await.unwrap();
    w.add_set_data("/m", b"1", None).unwrap();
    w.add_check_version("/m", st.version + 1).unwrap();
    w.add_create("/m", b"", open()).unwrap();
    assert_eq!(
        w.commit().await.unwrap_err(),
        zk::MultiWriteError::OperationFailed { index: 2, source: zk::Error::NodeExists }
    );
    // Nothing of the failed multi was applied.
    assert_eq!(c.get_data("/m").await.unwrap().0, b"0");
    let mut r = c.new_multi_reader();
    r.add_get_data("/m").unwrap();
    r.add_get_data("/nope").unwrap();
    r.add_get_children("/").unwrap();
    let res = r.commit().await.unwrap();
    assert!(matches!(&res[0], zk::MultiReadResult::Data { data, .. } if data == b"0"));
    assert!(matches!(&res[1], zk::MultiReadResult::Error { err: zk::Error::NoNode }));
    assert!(
        matches!(&res[2], zk::MultiReadResult::Children { children } if children.contains(&"m".to_string()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_ephemeral_container_ttl() {
    sequential_ephemeral_container_ttl_on(start(
        "extendedTypesEnabled=true\nznode.container.checkIntervalMs=100\n",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_ephemeral_container_ttl_on_an_ensemble() {
    sequential_ephemeral_container_ttl_on(start_ensemble(
        "extendedTypesEnabled=true\nznode.container.checkIntervalMs=100\n",
    ))
    .await;
}

async fn sequential_ephemeral_container_ttl_on(s: Server) {
    let c = client(&s).await;
    c.create("/q", b"", open()).await.unwrap();
    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let (_, n0) = c.create("/q/n-", b"", &seq).await.unwrap();
    let (_, n1) = c.create("/q/n-", b"", &seq).await.unwrap();
    assert_eq!((n0.into_i64(), n1.into_i64()), (0, 1));
    c.delete(&format!("/q/n-{n1}"), None).await.unwrap();
    let (_, n2) = c.create("/q/n-", b"", &seq).await.unwrap();
    // The suffix is the parent's *stored* cversion, which counts creations only: 2 here, while
    // the visible cversion (which deletes also bump) is 3. ZooKeeper 3.8 gives the same.
    assert_eq!(n2.into_i64(), 2);
    assert!(c.list_children("/q").await.unwrap().contains(&"n-0000000002".to_string()));
    assert_eq!(c.get_children("/q").await.unwrap().1.cversion, 4);

    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let (st, _) = c.create("/q/e", b"", &eph).await.unwrap();
    assert_eq!(st.ephemeral_owner, c.session_id().0);
    assert_eq!(c.create("/q/e/child", b"", open()).await.unwrap_err(), zk::Error::NoChildrenForEphemerals);
    assert_eq!(c.list_ephemerals("/").await.unwrap(), vec!["/q/e".to_string()]);

    let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
    c.create("/box", b"", &container).await.unwrap();
    c.create("/box/item", b"", open()).await.unwrap();
    c.delete("/box/item", None).await.unwrap();
    let ttl = open().clone().with_ttl(Duration::from_millis(100));
    c.create("/ttl", b"", &ttl).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let box_gone = c.check_stat("/box").await.unwrap().is_none();
        let ttl_gone = c.check_stat("/ttl").await.unwrap().is_none();
        if box_gone && ttl_gone {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "container/TTL nodes were not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_close_removes_ephemerals_and_fires_watches() {
    session_close_removes_ephemerals_and_fires_watches_on(start("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_close_removes_ephemerals_and_fires_watches_on_an_ensemble() {
    session_close_removes_ephemerals_and_fires_watches_on(start_ensemble("")).await;
}

async fn session_close_removes_ephemerals_and_fires_watches_on(s: Server) {
    let a = client(&s).await;
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    a.create("/lock", b"", &eph).await.unwrap();
    let b = client(&s).await;
    let (_, watcher) = b.check_and_watch_stat("/lock").await.unwrap();
    drop(a); // closes the session
    let ev = tokio::time::timeout(Duration::from_secs(10), watcher.changed()).await.unwrap();
    assert_eq!((ev.event_type, ev.path.as_str()), (zk::EventType::NodeDeleted, "/lock"));
    assert_eq!(b.check_stat("/lock").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_and_auth() {
    acl_and_auth_on(start("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_and_auth_on_an_ensemble() {
    acl_and_auth_on(start_ensemble("")).await;
}

async fn acl_and_auth_on(s: Server) {
    let c = client(&s).await;
    c.auth("digest".into(), b"alice:secret".to_vec()).await.unwrap();
    let creator_only = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    c.create("/private", b"s3", &creator_only).await.unwrap();
    let (acl, _) = c.get_acl("/private").await.unwrap();
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "digest");
    assert!(acl[0].id().starts_with("alice:"));
    let other = client(&s).await;
    assert_eq!(other.get_data("/private").await.unwrap_err(), zk::Error::NoAuth);
    assert_eq!(other.set_data("/private", b"x", None).await.unwrap_err(), zk::Error::NoAuth);
    other.auth("digest".into(), b"alice:secret".to_vec()).await.unwrap();
    assert_eq!(other.get_data("/private").await.unwrap().0, b"s3");
    let users = other.list_auth_users().await.unwrap();
    assert!(users.iter().any(|u| u.scheme() == "digest" && u.user() == "alice"), "{users:?}");
    // An `auth` ACL without any authenticated id is invalid.
    let anon = client(&s).await;
    assert_eq!(anon.create("/p2", b"", &creator_only).await.unwrap_err(), zk::Error::InvalidAcl);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_recursive_watch() {
    persistent_recursive_watch_on(start("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_recursive_watch_on_an_ensemble() {
    persistent_recursive_watch_on(start_ensemble("")).await;
}

async fn persistent_recursive_watch_on(s: Server) {
    let c = client(&s).await;
    let mut w = c.watch("/r", zk::AddWatchMode::PersistentRecursive).await.unwrap();
    c.create("/r", b"", open()).await.unwrap();
    c.create("/r/a", b"", open()).await.unwrap();
    c.set_data("/r/a", b"1", None).await.unwrap();
    c.delete("/r/a", None).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.changed()).await.unwrap();
        got.push((ev.event_type, ev.path));
    }
    assert_eq!(
        got,
        vec![
            (zk::EventType::NodeCreated, "/r".to_string()),
            (zk::EventType::NodeCreated, "/r/a".to_string()),
            (zk::EventType::NodeDataChanged, "/r/a".to_string()),
            (zk::EventType::NodeDeleted, "/r/a".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descendants_ephemerals_and_watch_removal() {
    descendants_ephemerals_and_watch_removal_on(start("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descendants_ephemerals_and_watch_removal_on_an_ensemble() {
    descendants_ephemerals_and_watch_removal_on(start_ensemble("")).await;
}

async fn descendants_ephemerals_and_watch_removal_on(s: Server) {
    let c = client(&s).await;
    c.create("/n", b"", open()).await.unwrap();
    c.create("/n/a", b"", open()).await.unwrap();
    c.create("/n/a/b", b"", open()).await.unwrap();
    assert_eq!(c.count_descendants_number("/n").await.unwrap(), 2);
    // "/" counts every node but the root, /zookeeper and its children included (as ZooKeeper).
    assert_eq!(c.count_descendants_number("/").await.unwrap(), 6);
    assert_eq!(c.count_descendants_number("/missing").await.unwrap_err(), zk::Error::NoNode);
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    c.create("/n/e1", b"", &eph).await.unwrap();
    c.create("/n/a/e2", b"", &eph).await.unwrap();
    let mut e = c.list_ephemerals("/n/a").await.unwrap();
    e.sort();
    assert_eq!(e, vec!["/n/a/e2".to_string()]);
    // removeWatches: a removed watch never fires; removing twice is NoWatcher.
    let (_, w) = c.check_and_watch_stat("/n").await.unwrap();
    w.remove().await.unwrap();
    let (_, w2) = c.check_and_watch_stat("/n/a").await.unwrap();
    c.set_data("/n", b"changed", None).await.unwrap();
    c.set_data("/n/a", b"changed", None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w2.changed()).await.unwrap();
    assert_eq!(ev.event_type, zk::EventType::NodeDataChanged);
    let pw = c.watch("/n", zk::AddWatchMode::Persistent).await.unwrap();
    pw.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn super_digest_passes_every_acl() {
    super_digest_passes_every_acl_on(start(SUPER_DIGEST)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn super_digest_passes_every_acl_on_an_ensemble() {
    super_digest_passes_every_acl_on(start_ensemble(SUPER_DIGEST)).await;
}

// super:test → super:D/InIHSb7yEEbrWz8b9l71RjZJU=
const SUPER_DIGEST: &str =
    "zookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=";

async fn super_digest_passes_every_acl_on(s: Server) {
    let alice = client(&s).await;
    alice.auth("digest".into(), b"alice:pw".to_vec()).await.unwrap();
    let creator_only = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
    alice.create("/locked", b"x", &creator_only).await.unwrap();
    let admin = client(&s).await;
    assert_eq!(admin.get_data("/locked").await.unwrap_err(), zk::Error::NoAuth);
    admin.auth("digest".into(), b"super:test".to_vec()).await.unwrap();
    assert_eq!(admin.get_data("/locked").await.unwrap().0, b"x");
    let wrong = client(&s).await;
    wrong.auth("digest".into(), b"super:nope".to_vec()).await.unwrap();
    assert_eq!(
        wrong.get_data("/locked").await.unwrap_err(),
        zk::Error::NoAuth,
        "a wrong super password is just a user"
    );
    admin.delete("/locked", None).await.unwrap();
}

/// A TCP proxy in front of the server whose connections can be cut and whose door can be held
/// shut, so a client is away while others change what it watches.
struct Proxy {
    addr: String,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        use std::sync::atomic::Ordering;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let (o, cs) = (open.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: the client retries
                }
                let target = target.clone();
                cs.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut s) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                    }
                }));
            }
        });
        Proxy { addr, open, conns }
    }
    fn cut_and_hold(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
    fn reopen(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_set_again_after_a_reconnect() {
    watches_are_set_again_after_a_reconnect_on(start("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_set_again_after_a_reconnect_on_an_ensemble() {
    watches_are_set_again_after_a_reconnect_on(start_ensemble("")).await;
}

/// The client re-registers its watches with setWatches (relative to the last zxid it saw) on
/// the new connection; changes made while it was away fire them at once. On an ensemble the
/// writer and the watcher are on different nodes.
async fn watches_are_set_again_after_a_reconnect_on(s: Server) {
    let writer = client(&s).await;
    let proxy = Proxy::start(s.addr()).await;
    let watched =
        zk::Client::connector().session_timeout(Duration::from_secs(10)).connect(&proxy.addr).await.unwrap();
    writer.create("/sw", b"", open()).await.unwrap();
    writer.create("/sw/data", b"v0", open()).await.unwrap();
    writer.create("/sw/gone", b"", open()).await.unwrap();
    // The watcher's node may not have applied the writer's creates yet.
    watched.sync("/sw").await.unwrap();
    let (_, _, w_data) = watched.get_and_watch_data("/sw/data").await.unwrap();
    let (_, w_gone) = watched.check_and_watch_stat("/sw/gone").await.unwrap();
    let (_, w_missing) = watched.check_and_watch_stat("/sw/new").await.unwrap();
    let (_, _, w_children) = watched.get_and_watch_children("/sw").await.unwrap();
    let session = watched.session().id();

    proxy.cut_and_hold();
    let mut states = watched.state_watcher();
    tokio::time::timeout(Duration::from_secs(10), async {
        while states.state() != zk::SessionState::Disconnected {
            states.changed().await;
        }
    })
    .await
    .expect("the client noticed the cut");
    writer.set_data("/sw/data", b"v1", None).await.unwrap();
    writer.delete("/sw/gone", None).await.unwrap();
    writer.create("/sw/new", b"", open()).await.unwrap();
    proxy.reopen();

    let within = |w: zk::OneshotWatcher| tokio::time::timeout(Duration::from_secs(15), w.changed());
    let e = within(w_data).await.expect("data watch fired after reconnect");
    assert_eq!((e.event_type, e.path.as_str()), (zk::EventType::NodeDataChanged, "/sw/data"));
    let e = within(w_gone).await.expect("exists watch fired");
    assert_eq!((e.event_type, e.path.as_str()), (zk::EventType::NodeDeleted, "/sw/gone"));
    let e = within(w_missing).await.expect("exists watch on a missing node fired");
    assert_eq!((e.event_type, e.path.as_str()), (zk::EventType::NodeCreated, "/sw/new"));
    let e = within(w_children).await.expect("child watch fired");
    assert_eq!((e.event_type, e.path.as_str()), (zk::EventType::NodeChildrenChanged, "/sw"));
    assert_eq!(watched.session().id(), session, "same session after the reconnect");
    assert_eq!(watched.get_data("/sw/data").await.unwrap().0, b"v1");
}
