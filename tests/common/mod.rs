//! Shared helpers for integration tests: an in-process server and a tiny blocking raw client
//! built on zkd's own jute records (used where a test must control the exact bytes).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::*;

pub struct Server {
    pub handle: Option<zkd::server::ServerHandle>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

pub fn start(shards: usize, extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "tickTime=200\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\n{extra}\n",
        dir.path().display()
    );
    let (cfg, _) = zkd::config::Config::parse_str(&cfg, dir.path()).unwrap();
    let handle = zkd::server::start(
        &cfg,
        zkd::server::RunOptions {
            shards: Some(shards),
            cores: None,
            in_memory: true,
            dedicated_replica: false,
        },
    )
    .unwrap();
    let port = handle.addr.port();
    Server { handle: Some(handle), port, dir }
}

pub struct Raw {
    pub s: TcpStream,
    pub session: i64,
    xid: i32,
}

pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

impl Raw {
    pub fn tcp(port: u16) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    pub fn connect(port: u16) -> Raw {
        let mut s = Self::tcp(port);
        let req = ConnectRequest { time_out: 10_000, passwd: vec![0; 16], ..Default::default() };
        s.write_all(&frame(&req.to_bytes())).unwrap();
        let body = read_frame(&mut s).expect("connect response");
        let resp = ConnectResponse::from_bytes(&body).unwrap();
        assert!(resp.session_id != 0 && resp.time_out > 0, "{resp:?}");
        Raw { s, session: resp.session_id, xid: 0 }
    }

    /// Sends one request, returns (reply header, body), skipping watch notifications.
    pub fn call(&mut self, op: OpCode, body: &[u8]) -> (ReplyHeader, Vec<u8>) {
        self.xid += 1;
        let mut w = Writer::new();
        RequestHeader { xid: self.xid, op_type: op as i32 }.encode(&mut w);
        w.raw(body);
        self.s.write_all(&frame(&w.buf)).unwrap();
        loop {
            let f = read_frame(&mut self.s).expect("reply");
            let mut r = Reader::new(&f);
            let h = ReplyHeader::decode(&mut r).unwrap();
            if h.xid == xid::NOTIFICATION {
                continue;
            }
            assert_eq!(h.xid, self.xid, "replies must come back in request order");
            return (h, r.rest().to_vec());
        }
    }

    pub fn create(&mut self, path: &str, data: &[u8]) -> i32 {
        let req = CreateRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: vec![Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }],
            flags: 0,
        };
        self.call(OpCode::Create, &req.to_bytes()).0.err
    }

    pub fn get_data(&mut self, path: &str) -> Result<(Option<Vec<u8>>, Stat), i32> {
        let (h, b) =
            self.call(OpCode::GetData, &GetDataRequest { path: path.into(), watch: false }.to_bytes());
        if h.err != 0 {
            return Err(h.err);
        }
        let r = GetDataResponse::from_bytes(&b).unwrap();
        Ok((r.data, r.stat))
    }
}

/// Reads one length-prefixed frame; None on EOF or error.
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = i32::from_be_bytes(len);
    assert!((0..=64 << 20).contains(&n), "server sent frame length {n}");
    let mut b = vec![0u8; n as usize];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

/// True once the server closed the connection (read returns 0 or an error).
pub fn is_closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

pub fn four_letter(port: u16, word: &str) -> String {
    let mut s = Raw::tcp(port);
    s.write_all(word.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
