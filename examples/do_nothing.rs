//! The ceiling for `perf/`: a server that speaks ZooKeeper's client protocol and does nothing
//! else. One glommio executor (as one zkd shard), no tree, no log: it answers the handshake,
//! and every request with a canned reply of the right shape (getData: 100 bytes and a Stat;
//! create: the path; exists/setData: a Stat; the rest: the header alone), one write per read
//! batch. `zkd bench` against it measures what the machine, the kernel's TCP path and the load
//! generator allow; perf/RESULTS.md compares zkd's reads with it.
//!
//!     cargo run --release --example do_nothing -- [PORT] [VALUE_BYTES]
//!     taskset -c 1 target/release/examples/do_nothing 21950

use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::LocalExecutorBuilder;

use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::{ConnectResponse, ReplyHeader, Stat};

/// jute.maxbuffer's default: longer frames close the connection, as in ZooKeeper.
const MAX_FRAME: i32 = 1_048_575;

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(21950);
    let value: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
            eprintln!("do-nothing ZooKeeper protocol server on 127.0.0.1:{port}");
            let data = Rc::new(vec![b'x'; value]);
            let mut incoming = listener.incoming();
            while let Some(conn) = incoming.next().await {
                let Ok(conn) = conn else { continue };
                let data = data.clone();
                glommio::spawn_local(async move {
                    let _ = serve(conn, &data).await;
                })
                .detach();
            }
        })
        .expect("executor")
        .join()
        .expect("executor ran");
}

async fn serve(mut conn: TcpStream, data: &[u8]) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut have = 0;
    let mut handshaken = false;
    let mut out = Writer::with_capacity(64 << 10);
    loop {
        if have == buf.len() {
            // Only a frame longer than the buffer gets here (it is bounded below).
            buf.resize(buf.len() * 2, 0);
        }
        let n = conn.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        let mut at = 0;
        out.buf.clear();
        while have - at >= 4 {
            let len = i32::from_be_bytes(buf[at..at + 4].try_into().unwrap());
            // As a server with the default jute.maxbuffer: a bad length closes the connection.
            if !(0..=MAX_FRAME).contains(&len) {
                return Ok(());
            }
            let len = len as usize;
            if have - at < 4 + len {
                break;
            }
            let frame = &buf[at + 4..at + 4 + len];
            at += 4 + len;
            let start = out.buf.len();
            out.i32(0);
            if !handshaken {
                handshaken = true;
                ConnectResponse {
                    protocol_version: 0,
                    time_out: 30_000,
                    session_id: 1,
                    passwd: vec![0; 16],
                    read_only: false,
                }
                .encode(&mut out);
            } else {
                let mut r = Reader::new(frame);
                let xid = r.i32().unwrap_or(0);
                let op = r.i32().unwrap_or(0);
                ReplyHeader { xid, zxid: 1, err: 0 }.encode(&mut out);
                match op {
                    4 => {
                        out.buffer(data);
                        Stat::default().encode(&mut out);
                    }
                    1 | 15 | 19 => {
                        let path = r.string().unwrap_or_default();
                        out.string(&path);
                        if op != 1 {
                            Stat::default().encode(&mut out);
                        }
                    }
                    3 | 5 => Stat::default().encode(&mut out),
                    _ => {}
                }
            }
            let len = (out.buf.len() - start - 4) as i32;
            out.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        buf.copy_within(at..have, 0);
        have -= at;
        if !out.buf.is_empty() {
            conn.write_all(&out.buf).await?;
        }
    }
}
