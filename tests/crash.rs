//! kill -9 under a pipelined write load: every acknowledged write survives, nothing half-written
//! appears. A short run in CI; `ZKD_CRASH_KILLS=N` for a long one. Prints the kills survived.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::*;

const WRITERS: usize = 6;
const DEPTH: usize = 8;

fn spawn(cfg: &std::path::Path) -> (Child, u16) {
    spawn_zkd(cfg, |c| {
        c.env("ZKD_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::inherit());
    })
}

fn set_data_req(xid: i32, path: &str, v: u64) -> Vec<u8> {
    let mut w = Writer::new();
    RequestHeader { xid, op_type: OpCode::SetData as i32 }.encode(&mut w);
    SetDataRequest { path: path.into(), data: Some(v.to_string().into_bytes()), version: -1 }.encode(&mut w);
    frame(&w.buf)
}

/// Pipelines setData of increasing values; returns the highest acknowledged value. Stops at the
/// first connection error (the kill).
fn writer(port: u16, path: String, start: u64, stop: Instant) -> (u64, u64) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return (start, start) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = ConnectRequest { time_out: 10_000, passwd: vec![0; 16], ..Default::default() };
    if s.write_all(&frame(&req.to_bytes())).is_err() || read_frame(&mut s).is_none() {
        return (start, start);
    }
    let mut next = start + 1;
    let mut acked = start;
    let mut inflight = std::collections::VecDeque::new();
    loop {
        while inflight.len() < DEPTH && Instant::now() < stop {
            if s.write_all(&set_data_req(next as i32, &path, next)).is_err() {
                return (acked, next - 1);
            }
            inflight.push_back(next);
            next += 1;
        }
        if inflight.is_empty() {
            return (acked, next - 1);
        }
        let Some(f) = read_frame(&mut s) else { return (acked, next - 1) };
        let h = ReplyHeader::decode(&mut Reader::new(&f)).unwrap();
        let v = inflight.pop_front().unwrap();
        assert_eq!(h.xid as u64, v, "replies in request order");
        assert_eq!(h.err, 0, "setData {v} failed");
        acked = v;
    }
}

#[test]
fn kill_dash_nine_loses_no_acknowledged_write() {
    let kills: usize = std::env::var("ZKD_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nsnapCount=2000\npreAllocSize=4096\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (mut child, mut port) = spawn(&cfg);
    {
        let mut r = Raw::connect(port);
        assert_eq!(r.create("/crash", b""), 0);
        for i in 0..WRITERS {
            assert_eq!(r.create(&format!("/crash/w{i}"), b"0"), 0);
        }
    }
    let mut acked = vec![0u64; WRITERS];
    let mut rng = 0x9e37_79b9u64;
    for k in 0..kills {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let run_ms = 150 + (rng >> 33) % 400;
        let stop = Instant::now() + Duration::from_secs(30);
        let handles: Vec<_> = (0..WRITERS)
            .map(|i| {
                let start = acked[i];
                std::thread::spawn(move || writer(port, format!("/crash/w{i}"), start, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(run_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let results: Vec<(u64, u64)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // Each run on a port of its own, from the kernel.
        (child, port) = spawn(&cfg);
        let mut r = Raw::connect(port);
        for (i, (ack, sent)) in results.iter().enumerate() {
            let (data, stat) = r.get_data(&format!("/crash/w{i}")).unwrap();
            let text = String::from_utf8(data.unwrap_or_default()).expect("no half-written data");
            let v: u64 = text.parse().unwrap_or_else(|_| panic!("corrupt value {text:?} after kill {k}"));
            assert!(v >= *ack, "kill {k}: writer {i} was acknowledged {ack} but recovered {v}");
            assert!(v <= *sent, "kill {k}: writer {i} recovered {v} but only sent up to {sent}");
            assert_eq!(stat.version as u64, v, "kill {k}: version must count every applied set");
            acked[i] = v;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("survived {kills} kill -9s; acknowledged writes per writer: {acked:?}");
}
