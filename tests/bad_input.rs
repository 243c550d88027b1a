//! Bad bytes cost exactly one connection: the server closes it and keeps serving everyone else.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use zkd::proto::jute::{Record, Writer};
use zkd::proto::*;

fn healthy(port: u16) {
    let mut r = Raw::connect(port);
    let (h, _) =
        r.call(OpCode::Exists, &ExistsRequest { path: "/zookeeper".into(), watch: false }.to_bytes());
    assert_eq!(h.err, 0);
}

/// common::start's tickTime=200 caps sessions at 4 s, less than is_closed waits, and an expiring
/// session closes its connection too. With every session at least 20 s long, only the close
/// under test can end the wait (also for garbage that happens to decode as a ConnectRequest).
const SESSIONS_OUTLIVE_CLOSE_WAIT: &str = "tickTime=2000\nminSessionTimeout=20000";

#[test]
fn hostile_lengths_close_only_that_connection() {
    let srv = start(2, SESSIONS_OUTLIVE_CLOSE_WAIT);
    let mut bystander = Raw::connect(srv.port);
    for len in [-1i32, -2147483648, 2147483647, 1048576] {
        let mut s = Raw::tcp(srv.port);
        s.write_all(&len.to_be_bytes()).unwrap();
        assert!(is_closed(&mut s), "length {len} must close the connection");
        healthy(srv.port);
        assert!(bystander.get_data("/zookeeper").is_ok());
    }
    // The same after a session is established.
    let mut r = Raw::connect(srv.port);
    r.s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(is_closed(&mut r.s));
    healthy(srv.port);
}

#[test]
fn garbage_handshakes_and_random_bytes() {
    let srv = start(2, SESSIONS_OUTLIVE_CLOSE_WAIT);
    let mut seed = 0x1234_5678_9abc_def0u64;
    for i in 0..200 {
        let mut s = Raw::tcp(srv.port);
        let n = 4 + (i % 64);
        let mut bytes = vec![0u8; n];
        for b in bytes.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        if i % 2 == 0 {
            // A plausible length with a garbage body.
            let body = &bytes[4..];
            bytes = frame(body);
        }
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        // Refused as garbage, or (a body that happens to decode) ended by the client's EOF: either
        // way the server closes.
        assert!(is_closed(&mut s), "connection {i} ({bytes:02x?}) is still open");
    }
    healthy(srv.port);
    // Garbage after a good handshake: MarshallingError or a close, never a crash.
    let mut r = Raw::connect(srv.port);
    let (h, _) = r.call(OpCode::GetData, &[0xff, 0xff, 0xff, 0x00, 1]);
    assert_eq!(h.err, ErrorCode::MarshallingError as i32);
    let (h, _) = r.call(OpCode::Create, &[]);
    assert_eq!(h.err, ErrorCode::MarshallingError as i32);
    healthy(srv.port);
}

#[test]
fn a_stalled_half_frame_does_not_block_others() {
    let srv = start(1, "");
    let mut staller = Raw::tcp(srv.port);
    staller.write_all(&100i32.to_be_bytes()).unwrap();
    staller.write_all(&[0u8; 10]).unwrap();
    for _ in 0..20 {
        healthy(srv.port);
    }
    drop(staller);
    healthy(srv.port);
}

#[test]
fn jute_maxbuffer_boundary() {
    let srv = start(2, SESSIONS_OUTLIVE_CLOSE_WAIT);
    let mut r = Raw::connect(srv.port);
    let path = "/big";
    let acl = vec![Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }];
    let overhead = {
        let mut w = Writer::new();
        RequestHeader { xid: 1, op_type: 1 }.encode(&mut w);
        CreateRequest { path: path.into(), data: Some(vec![]), acl: acl.clone(), flags: 0 }.encode(&mut w);
        w.buf.len()
    };
    let max = 1048575;
    let fits = vec![7u8; max - overhead];
    let req = CreateRequest { path: path.into(), data: Some(fits.clone()), acl: acl.clone(), flags: 0 };
    let (h, _) = r.call(OpCode::Create, &req.to_bytes());
    assert_eq!(h.err, 0, "a frame of exactly jute.maxbuffer bytes is accepted");
    let (d, st) = r.get_data(path).unwrap();
    assert_eq!((d.unwrap().len(), st.data_length as usize), (fits.len(), fits.len()));

    // One byte more: the connection is closed, the server keeps serving.
    let mut r2 = Raw::connect(srv.port);
    let over =
        CreateRequest { path: "/big2".into(), data: Some(vec![7u8; max - overhead + 1]), acl, flags: 0 };
    let mut w = Writer::new();
    RequestHeader { xid: 1, op_type: 1 }.encode(&mut w);
    over.encode(&mut w);
    // The server may close as soon as it reads the length, before the body is sent.
    let _ = r2.s.write_all(&frame(&w.buf));
    assert!(is_closed(&mut r2.s), "a frame one byte over jute.maxbuffer closes the connection");
    // Had the oversized create been submitted before the close, the one replica would apply
    // it before this later write: once this write is answered, /big2 would be visible.
    assert_eq!(r.create("/after-big2", b""), 0);
    assert_eq!(r.get_data("/big2").unwrap_err(), ErrorCode::NoNode as i32);
    healthy(srv.port);
}

/// The helper every "closes the connection" assertion above rests on: a connection the peer
/// keeps open is not closed, whatever it sends; EOF and a reset are.
#[test]
fn is_closed_tells_a_close_from_a_silent_open_connection() {
    use std::net::TcpListener;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut open = Raw::tcp(port);
    let (mut peer, _) = l.accept().unwrap();
    peer.write_all(b"some bytes, then silence").unwrap();
    assert!(!is_closed_within(&mut open, Duration::from_millis(300)), "a read timeout is not a close");

    drop(peer);
    assert!(is_closed_within(&mut open, Duration::from_secs(10)), "EOF is a close");

    let mut reset = Raw::tcp(port);
    let (peer, _) = l.accept().unwrap();
    // SO_LINGER 0: close() sends a RST.
    socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
    drop(peer);
    assert!(is_closed_within(&mut reset, Duration::from_secs(10)), "a reset is a close");
}
