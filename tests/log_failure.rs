//! The transaction log's file system dies under pipelined writes (EXT4_IOC_SHUTDOWN on a
//! loop-mounted ext4, without flushing its journal: what a pulled disk looks like).
//!
//! zkd's policy is fail-stop, as ZooKeeper's: the server logs one line naming the failure and
//! exits non-zero. On every connection the replies that did come are in request order and none
//! says "failed" (an unanswered write may or may not be durable; an error reply would be a
//! promise the next start could break). After a remount and a restart every acknowledged write is
//! there.
//!
//! Needs root, mkfs.ext4 and a loop device; `tests/run-all.sh` runs it (`--include-ignored`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::*;

const CLIENTS: usize = 4;
const DEPTH: i32 = 32;
const WRITES_PER_CLIENT: i32 = 200_000;

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn mount(image: &std::path::Path, at: &std::path::Path) -> Mount {
    run(Command::new("mount").args(["-o", "loop"]).arg(image).arg(at));
    Mount(at.to_path_buf())
}

/// Kills the server if the test fails before it stops (so the mount can go too).
struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts zkd on port 0 and reads the port it bound from its log.
fn spawn(cfg: &std::path::Path, log: &std::path::Path) -> (Running, u16) {
    let child = Running(
        Command::new(env!("CARGO_BIN_EXE_zkd"))
            .args(["serve", "--config"])
            .arg(cfg)
            .env("ZKD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("serving clients on ").nth(1) {
            let addr: std::net::SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
            return (child, addr.port());
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "zkd did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = i32::from_be_bytes(len);
    assert!((0..=1 << 20).contains(&n), "server sent frame length {n}");
    let mut b = vec![0u8; n as usize];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

fn connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = ConnectRequest { time_out: 30_000, passwd: vec![0; 16], ..Default::default() };
    s.write_all(&frame(&req.to_bytes())).unwrap();
    let resp = ConnectResponse::from_bytes(&read_frame(&mut s).expect("connect response")).unwrap();
    assert_ne!(resp.session_id, 0);
    s
}

fn create_frame(xid: i32, path: &str) -> Vec<u8> {
    let mut w = Writer::new();
    RequestHeader { xid, op_type: OpCode::Create as i32 }.encode(&mut w);
    CreateRequest {
        path: path.into(),
        data: Some(b"v".to_vec()),
        acl: vec![Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }],
        flags: 0,
    }
    .encode(&mut w);
    frame(&w.buf)
}

/// What one pipelining client saw.
struct Seen {
    acked: Vec<i32>,
    errors: Vec<(i32, i32)>,
    out_of_order: Vec<(i32, i32)>,
}

/// Creates /c{id}-{i} for i = 1.., `DEPTH` at a time, until the connection ends.
fn client(port: u16, id: usize, acked_total: Arc<AtomicUsize>) -> Seen {
    let mut s = connect(port);
    let mut w = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut xid = 1;
        // The reader paces the sender through the socket's flow control; DEPTH frames per write.
        while xid <= WRITES_PER_CLIENT {
            let mut batch = Vec::new();
            for _ in 0..DEPTH {
                batch.extend(create_frame(xid, &format!("/c{id}-{xid}")));
                xid += 1;
            }
            if w.write_all(&batch).is_err() {
                return;
            }
        }
    });
    let mut seen = Seen { acked: vec![], errors: vec![], out_of_order: vec![] };
    let mut want = 1;
    while let Some(f) = read_frame(&mut s) {
        let mut r = Reader::new(&f);
        let h = ReplyHeader::decode(&mut r).unwrap();
        if h.xid == xid::NOTIFICATION {
            continue;
        }
        if h.xid != want {
            seen.out_of_order.push((want, h.xid));
        }
        want = h.xid + 1;
        if h.err == 0 {
            seen.acked.push(h.xid);
            acked_total.fetch_add(1, Ordering::Relaxed);
        } else {
            seen.errors.push((h.xid, h.err));
        }
    }
    drop(s);
    let _ = sender.join();
    seen
}

/// EXT4_IOC_SHUTDOWN = _IOR('X', 125, __u32); EXT4_GOING_FLAGS_NOLOGFLUSH = 2 (the journal is not
/// flushed: only what was already synced survives).
fn shut_down_fs(mnt: &std::path::Path) {
    use std::os::fd::AsRawFd;
    const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
    let dir = std::fs::File::open(mnt).unwrap();
    let flags: u32 = 2;
    // SAFETY: the ioctl reads one u32 from the pointer given.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &flags) };
    assert_eq!(rc, 0, "EXT4_IOC_SHUTDOWN: {}", std::io::Error::last_os_error());
}

fn prerequisites() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root (mount, loop devices)".into());
    }
    for tool in ["mkfs.ext4", "mount", "umount"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return Err(format!("{tool} is missing"));
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs root, mkfs.ext4 and a loop device: tests/run-all.sh runs it with --include-ignored"]
fn a_dead_log_disk_stops_the_server_and_loses_no_acknowledged_write() {
    if let Err(why) = prerequisites() {
        panic!("cannot run: {why}");
    }
    let base = tempfile::tempdir().unwrap();
    let image = base.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(256 << 20).unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    let mnt = base.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount(&image, &mnt);
    let cfg = base.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=500\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n\
             snapCount=10000000\nadmin.enableServer=false\n",
            mnt.join("data").display()
        ),
    )
    .unwrap();
    let log = base.path().join("zkd.log");
    let (mut child, port) = spawn(&cfg, &log);

    let acked_total = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let a = acked_total.clone();
            std::thread::spawn(move || client(port, id, a))
        })
        .collect();
    // Under load: some thousands of writes acknowledged, then the disk dies.
    let t0 = Instant::now();
    while acked_total.load(Ordering::Relaxed) < 5_000 {
        assert!(t0.elapsed() < Duration::from_secs(60), "the load never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    shut_down_fs(&mnt);

    // The server stops by itself, with a non-zero status and one line naming the failure.
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "zkd did not stop after its log's disk died");
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "exit status after a log failure:\n{text}");
    assert!(text.contains("transaction log failed"), "one line names the failure:\n{text}");

    let seen: Vec<Seen> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let mut acked = 0;
    for (id, s) in seen.iter().enumerate() {
        assert!(
            s.out_of_order.is_empty(),
            "client {id}: replies out of order: {:?}",
            &s.out_of_order[..5.min(s.out_of_order.len())]
        );
        assert!(
            s.errors.is_empty(),
            "client {id}: writes answered with an error: {:?}",
            &s.errors[..5.min(s.errors.len())]
        );
        acked += s.acked.len();
    }

    // Power back: remount (the journal replays) and restart on the same directory.
    drop(m);
    let _m = mount(&image, &mnt);
    let (child, port) = spawn(&cfg, &log);
    let mut c = connect(port);
    let mut missing = Vec::new();
    let mut xid = 0;
    for (id, s) in seen.iter().enumerate() {
        for x in &s.acked {
            xid += 1;
            let mut w = Writer::new();
            RequestHeader { xid, op_type: OpCode::Exists as i32 }.encode(&mut w);
            ExistsRequest { path: format!("/c{id}-{x}"), watch: false }.encode(&mut w);
            c.write_all(&frame(&w.buf)).unwrap();
            let f = read_frame(&mut c).expect("exists reply");
            let h = ReplyHeader::decode(&mut Reader::new(&f)).unwrap();
            if h.err != 0 {
                missing.push(format!("/c{id}-{x}"));
            }
        }
    }
    drop(child);
    assert!(
        missing.is_empty(),
        "{} of {acked} acknowledged writes lost: {:?}",
        missing.len(),
        &missing[..5.min(missing.len())]
    );
    eprintln!("log failure: {acked} writes acknowledged before the disk died, all present after restart");
}
