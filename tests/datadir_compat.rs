//! Live cross-checks against Apache ZooKeeper 3.8 (the Debian package) and kazoo:
//! 1. ZooKeeper writes a data dir (kazoo makes the writes); zkd recovers it and sees the tree.
//! 2. zkd writes a data dir (snapshot + log via the writer thread); ZooKeeper starts on it and
//!    kazoo sees the tree.
//!
//! They need java, the ZooKeeper jars and python3 kazoo: ignored by a plain `cargo test`;
//! tests/run-all.sh (which installs them) runs them with `--include-ignored`, and a missing
//! prerequisite is a failure, never a pass.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zkd::db::recovery::{recover, RecoveryOptions};
use zkd::proto::records::*;
use zkd::proto::types::OpCode;
use zkd::proto::{LoggedTxn, TxnBody};
use zkd::snapshot::{read_snapshot_file, write_snapshot_file, Compression};
use zkd::txnlog::{LogOptions, LogWriter};

const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

fn require_prerequisites() {
    let java = Command::new("java").arg("-version").stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    let kazoo = Command::new("python3").args(["-c", "import kazoo"]).status().is_ok_and(|s| s.success());
    let jar = Path::new(ZK_JAR).exists();
    assert!(java && kazoo && jar, "prerequisite missing: java={java}, {ZK_JAR}={jar}, kazoo={kazoo}");
}

struct Zk(Child);

impl Zk {
    fn start(data_dir: &Path, port: u16) -> Zk {
        let child = Command::new("java")
            .args([
                "-Dzookeeper.admin.enableServer=false",
                "-cp",
                "/usr/share/java/*",
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                &port.to_string(),
                data_dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut zk = Zk(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "ZooKeeper did not start");
            if let Some(st) = zk.0.try_wait().unwrap() {
                panic!("ZooKeeper exited during start-up ({st}) on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        zk
    }
    fn stop(mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

impl Drop for Zk {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kazoo(port: u16, body: &str) -> String {
    let script = format!(
        "from kazoo.client import KazooClient\nz = KazooClient(hosts='127.0.0.1:{port}', timeout=20)\nz.start(timeout=20)\n{body}\nz.stop()\n"
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "kazoo failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs java, the Debian zookeeper package and python3 kazoo; run with --include-ignored"]
fn zkd_recovers_a_data_dir_written_by_zookeeper() {
    require_prerequisites();
    let d = tempfile::tempdir().unwrap();
    // Held for both of ZooKeeper's runs.
    let hold = common::hold_port();
    let port = hold.port;
    let zk = Zk::start(d.path(), port);
    kazoo(
        port,
        "z.create('/c', b'one')\nz.create('/c/k', b'two')\nz.set('/c', b'three')\nfor i in range(50): z.create('/c/s-', b'x'*i, sequence=True)\nz.delete('/c/k')",
    );
    zk.stop();
    let v2 = d.path().join("version-2");
    let r = recover(&v2, &v2, &RecoveryOptions::default()).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let snap = r.snapshot.as_ref().unwrap();
    assert_eq!(snap.zxid, 0, "ZooKeeper writes snapshot.0 on a fresh start");
    // createSession, 2 creates, setData, 50 creates, delete, closeSession = 56 txns.
    assert_eq!(r.txns.len(), 56);
    assert_eq!(r.last_zxid, 56);
    let sets: Vec<_> = r.txns.iter().filter(|t| t.hdr.txn_type == OpCode::SetData as i32).collect();
    assert!(
        matches!(&sets[0].body, TxnBody::SetData(s) if s.path == "/c" && s.data.as_deref() == Some(&b"three"[..]))
    );
    // Restart: ZooKeeper snapshots what it loaded; zkd reads that snapshot too.
    let zk = Zk::start(d.path(), port);
    // The port opens before the data is loaded: a served read proves the startup snapshot exists.
    assert_eq!(kazoo(port, "print(z.get('/c')[0].decode())"), "three\n");
    zk.stop();
    let r = recover(&v2, &v2, &RecoveryOptions::default()).unwrap();
    let snap = r.snapshot.as_ref().unwrap();
    let c = snap.snapshot.nodes.iter().find(|n| n.path == "/c").unwrap();
    assert_eq!(c.data.as_deref(), Some(&b"three"[..]));
    assert_eq!(snap.snapshot.nodes.iter().filter(|n| n.path.starts_with("/c/s-")).count(), 50);
}

#[test]
#[ignore = "needs java, the Debian zookeeper package and python3 kazoo; run with --include-ignored"]
fn zookeeper_starts_on_a_data_dir_written_by_zkd() {
    require_prerequisites();
    let d = tempfile::tempdir().unwrap();
    let v2 = d.path().join("version-2");
    // The snapshot ZooKeeper itself writes for a fresh tree (root, /zookeeper, quota, config),
    // plus one node of ours, re-written by zkd.
    let base =
        read_snapshot_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zk38/snapshot.0"))
            .unwrap();
    let mut nodes = base.nodes.clone();
    nodes.push(zkd::snapshot::SnapshotNode {
        path: "/fromsnap".into(),
        data: Some(b"snapdata".to_vec()),
        acl_id: 1,
        stat: StatPersisted { czxid: 0, mzxid: 0, pzxid: 0, ctime: 1, mtime: 1, ..Default::default() },
    });
    nodes[0].stat.cversion = 1;
    write_snapshot_file(&v2, 0, Compression::None, &[], &base.meta.acl_cache, &nodes, None).unwrap();
    // Then txns through the writer thread: create /zkd, /zkd/a .. /zkd/e, setData /zkd.
    let world = vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }];
    let hdr = |zxid: i64, ty: OpCode| TxnHeader {
        client_id: 0,
        cxid: zxid as i32,
        zxid,
        time: 1_700_000_000_000,
        txn_type: ty as i32,
    };
    let mut txns = vec![LoggedTxn {
        hdr: hdr(1, OpCode::Create),
        body: TxnBody::Create(CreateTxn {
            path: "/zkd".into(),
            data: Some(b"v0".to_vec()),
            acl: world.clone(),
            ephemeral: false,
            parent_c_version: 2,
        }),
        digest: None,
    }];
    for (i, c) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        txns.push(LoggedTxn {
            hdr: hdr(2 + i as i64, OpCode::Create),
            body: TxnBody::Create(CreateTxn {
                path: format!("/zkd/{c}"),
                data: Some(c.as_bytes().to_vec()),
                acl: world.clone(),
                ephemeral: false,
                parent_c_version: 1 + i as i32,
            }),
            digest: None,
        });
    }
    txns.push(LoggedTxn {
        hdr: hdr(7, OpCode::SetData),
        body: TxnBody::SetData(SetDataTxn { path: "/zkd".into(), data: Some(b"v1".to_vec()), version: 1 }),
        digest: None,
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let h = LogWriter::start(
        v2.clone(),
        LogOptions { pre_alloc_size_bytes: 1 << 20, ..Default::default() },
        Box::new(move |z| {
            let _ = tx.send(z);
        }),
        Box::new(|e| panic!("{e}")),
    )
    .unwrap();
    h.append(txns[..3].to_vec()).unwrap();
    h.append(txns[3..].to_vec()).unwrap();
    while rx.recv_timeout(Duration::from_secs(10)).unwrap() < 7 {}
    h.shutdown();

    let hold = common::hold_port();
    let port = hold.port;
    let zk = Zk::start(d.path(), port);
    let out = kazoo(
        port,
        "d, s = z.get('/zkd')\nprint(d.decode(), s.version, s.czxid, s.mzxid, s.numChildren)\nprint(sorted(z.get_children('/zkd')))\nprint(z.get('/zkd/c')[0].decode())\nprint(z.get('/fromsnap')[0].decode())",
    );
    zk.stop();
    assert_eq!(out, "v1 1 1 7 5\n['a', 'b', 'c', 'd', 'e']\nc\nsnapdata\n");
}
