//! Shared helpers for integration tests: an in-process server and a tiny blocking raw client
//! built on zkd's own jute records (used where a test must control the exact bytes).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

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

/// How long `is_closed` waits for the server to close a connection. It must be shorter than the
/// session timeout of a connection it is used on, so that an expiring session cannot pass for
/// the close under test (tests/bad_input.rs configures sessions of 20 s or more).
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Waits up to `CLOSE_WAIT` for the server to close the connection, reading (and dropping)
/// whatever it sends first. True on EOF or a reset; false if the connection is still open when
/// the wait ends: a read that times out is not a close.
pub fn is_closed(s: &mut TcpStream) -> bool {
    is_closed_within(s, CLOSE_WAIT)
}

/// `is_closed` with another wait.
pub fn is_closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    use std::io::ErrorKind::*;
    let deadline = Instant::now() + wait;
    let mut b = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) => return true,
            // SO_RCVTIMEO expiring: the connection is still open.
            Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => return false,
            Err(e) if e.kind() == Interrupted => continue,
            Err(e) => panic!("reading from the server: {e}"),
        }
    }
}

/// Starts `zkd serve --config cfg --port-file <cfg's dir>/zkd.port` (`setup` adjusts the command:
/// environment, stdio) and returns it with the client port it bound, read from the port file:
/// a config with clientPort=0 gets a port from the kernel, never one another process may take
/// between a probe and the server's bind. Panics if zkd exits or writes no port within 30 s.
pub fn spawn_zkd(cfg: &Path, setup: impl FnOnce(&mut Command)) -> (Child, u16) {
    let port_file = cfg.parent().unwrap().join("zkd.port");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkd"));
    cmd.args(["serve", "--config"]).arg(cfg).arg("--port-file").arg(&port_file);
    setup(&mut cmd);
    // Not the previous run's file (a restart in the same directory).
    match std::fs::remove_file(&port_file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{}: {e}", port_file.display()),
        _ => {}
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // zkd writes the file by rename: it is either absent or whole.
        if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|t| t.trim().parse().ok()) {
            return (child, port);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("zkd exited during start-up ({status}): {err}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("zkd wrote no port file within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn four_letter(port: u16, word: &str) -> String {
    let mut s = Raw::tcp(port);
    s.write_all(word.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A port for a server that cannot bind port 0 and report it (Apache ZooKeeper): a socket bound
/// to `0.0.0.0:0` with SO_REUSEADDR and never listened on, kept open while the server runs.
/// ZooKeeper's listener sets SO_REUSEADDR too, so it can bind and listen beside it; meanwhile
/// the kernel neither hands the port to another bind of port 0 nor uses it as the local port of
/// an outgoing connection, because a socket is bound to it. What remains is a process binding
/// this very port number explicitly, with SO_REUSEADDR, before the server listens on it.
pub struct PortHold {
    pub port: u16,
    _socket: socket2::Socket,
}

pub fn hold_port() -> PortHold {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&std::net::SocketAddr::from(([0, 0, 0, 0], 0)).into()).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    PortHold { port, _socket: s }
}

/// A 3-node `zkd serve` ensemble on loopback, for running a client suite with its clients on
/// different nodes. Client ports are the kernel's choice (clientPort=0, read back from each
/// `--port-file`); the quorum and election ports must be in every zoo.cfg before any server
/// starts, so they are held (`hold_port`) for the ensemble's life. Should a server lose a held
/// port to a process binding that very number, the whole ensemble starts again on new ports.
pub struct ZkdEnsemble {
    children: Vec<Child>,
    pub client_ports: Vec<u16>,
    logs: Vec<std::path::PathBuf>,
    _holds: Vec<PortHold>,
    _dir: tempfile::TempDir,
}

impl Drop for ZkdEnsemble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl ZkdEnsemble {
    /// Starts `n` voters with `extra` zoo.cfg lines and waits until one leads and all serve.
    pub fn start(n: usize, extra: &str) -> ZkdEnsemble {
        let mut why = String::new();
        for _ in 0..3 {
            match Self::try_start(n, extra) {
                Ok(e) => return e,
                Err((true, log)) => why = log,
                Err((false, log)) => panic!("the ensemble did not form:\n{log}"),
            }
        }
        panic!("the ensemble lost a held port three times:\n{why}");
    }

    fn logs(&self) -> String {
        self.logs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                format!("--- server {} ---\n{}\n", i + 1, std::fs::read_to_string(l).unwrap_or_default())
            })
            .collect()
    }

    /// Err((port_taken, logs)).
    fn try_start(n: usize, extra: &str) -> Result<ZkdEnsemble, (bool, String)> {
        let dir = tempfile::tempdir().unwrap();
        let holds: Vec<PortHold> = (0..2 * n).map(|_| hold_port()).collect();
        let servers: String = (0..n)
            .map(|i| format!("server.{}=127.0.0.1:{}:{}\n", i + 1, holds[2 * i].port, holds[2 * i + 1].port))
            .collect();
        let mut e =
            ZkdEnsemble { children: vec![], client_ports: vec![], logs: vec![], _holds: holds, _dir: dir };
        let mut port_files = vec![];
        for i in 0..n {
            let data = e._dir.path().join(format!("n{}", i + 1));
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(data.join("myid"), format!("{}\n", i + 1)).unwrap();
            let cfg = data.join("zoo.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\n\
                     maxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\n{extra}\n{servers}",
                    data.display()
                ),
            )
            .unwrap();
            let log = data.join("zkd.log");
            let port_file = data.join("zkd.port");
            let child = Command::new(env!("CARGO_BIN_EXE_zkd"))
                .args(["serve", "--shards", "1", "--config"])
                .arg(&cfg)
                .arg("--port-file")
                .arg(&port_file)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            e.children.push(child);
            e.logs.push(log);
            port_files.push(port_file);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for (i, c) in e.children.iter_mut().enumerate() {
                if let Some(status) = c.try_wait().unwrap() {
                    let log = std::fs::read_to_string(&e.logs[i]).unwrap_or_default();
                    let taken = log.contains("Address already in use");
                    return Err((taken, format!("server {} exited ({status})\n{}", i + 1, e.logs())));
                }
            }
            if e.client_ports.len() < n {
                let ports: Vec<u16> = port_files
                    .iter()
                    .filter_map(|f| std::fs::read_to_string(f).ok().and_then(|t| t.trim().parse().ok()))
                    .collect();
                if ports.len() == n {
                    e.client_ports = ports;
                }
            }
            if e.client_ports.len() == n {
                let modes: Vec<String> = e
                    .client_ports
                    .iter()
                    .map(|p| {
                        zkd::admin::remote::four_letter(
                            &format!("127.0.0.1:{p}"),
                            "srvr",
                            Duration::from_secs(5),
                        )
                        .unwrap_or_default()
                        .lines()
                        .find_map(|l| l.strip_prefix("Mode: "))
                        .unwrap_or("")
                        .to_owned()
                    })
                    .collect();
                let leaders = modes.iter().filter(|m| *m == "leader").count();
                if leaders == 1 && modes.iter().all(|m| m == "leader" || m == "follower") {
                    return Ok(e);
                }
            }
            if Instant::now() > deadline {
                return Err((false, format!("no leader with {n} serving servers within 60 s\n{}", e.logs())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What `srvr` says server `i` (0-based) is: leader, follower, ...
    pub fn mode(&self, i: usize) -> String {
        zkd::admin::remote::four_letter(
            &format!("127.0.0.1:{}", self.client_ports[i]),
            "srvr",
            Duration::from_secs(5),
        )
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .unwrap_or("")
        .to_owned()
    }
}
