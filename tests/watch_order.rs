//! ZooKeeper's ordering guarantee, across shards, checked on the wire: a connection that
//! receives a reply showing a new version of a node must have received the watch event for the
//! watch it had set on the older version *before* that reply. Writers and watchers are many
//! connections spread over two shards by SO_REUSEPORT.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::*;

fn send(r: &mut Raw, xid: i32, op: OpCode, body: &[u8]) {
    let mut w = Writer::new();
    RequestHeader { xid, op_type: op as i32 }.encode(&mut w);
    w.raw(body);
    r.s.write_all(&frame(&w.buf)).unwrap();
}

#[test]
fn watch_event_precedes_visible_change_across_shards() {
    let srv = start(2, "");
    let port = srv.port;
    let keys = 4usize;
    let rounds = 300;
    {
        let mut r = Raw::connect(port);
        for k in 0..keys {
            assert_eq!(r.create(&format!("/k{k}"), b"0"), 0);
        }
    }
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for k in 0..keys {
        let d = done.clone();
        handles.push(std::thread::spawn(move || {
            let path = format!("/k{k}");
            let mut r = Raw::connect(port);
            let mut xid = 100;
            let mut checked = 0;
            for _ in 0..rounds {
                // getData with a watch.
                xid += 1;
                send(&mut r, xid, OpCode::GetData, &GetDataRequest { path: path.clone(), watch: true }.to_bytes());
                let mut event_seen = false;
                let watched_version = loop {
                    let f = read_frame(&mut r.s).unwrap();
                    let mut rd = Reader::new(&f);
                    let h = ReplyHeader::decode(&mut rd).unwrap();
                    if h.xid == xid::NOTIFICATION {
                        continue; // an event for an earlier round's watch
                    }
                    assert_eq!(h.xid, xid);
                    break GetDataResponse::decode(&mut rd).unwrap().stat.version;
                };
                // Poll until a reply shows a newer version; the event must come first.
                loop {
                    xid += 1;
                    send(&mut r, xid, OpCode::GetData, &GetDataRequest { path: path.clone(), watch: false }.to_bytes());
                    let version = loop {
                        let f = read_frame(&mut r.s).unwrap();
                        let mut rd = Reader::new(&f);
                        let h = ReplyHeader::decode(&mut rd).unwrap();
                        if h.xid == xid::NOTIFICATION {
                            let ev = WatcherEvent::decode(&mut rd).unwrap();
                            assert_eq!((ev.event_type, ev.path.as_str()), (EventType::NodeDataChanged as i32, path.as_str()));
                            event_seen = true;
                            continue;
                        }
                        assert_eq!(h.xid, xid);
                        break GetDataResponse::decode(&mut rd).unwrap().stat.version;
                    };
                    if version > watched_version {
                        assert!(event_seen, "saw version {version} of {path} before the event for the watch set at {watched_version}");
                        checked += 1;
                        break;
                    }
                }
            }
            d.fetch_add(1, Ordering::SeqCst);
            checked
        }));
        let d = done.clone();
        handles.push(std::thread::spawn(move || {
            let mut r = Raw::connect(port);
            let mut i = 0u64;
            while d.load(Ordering::SeqCst) < keys {
                let req = SetDataRequest {
                    path: format!("/k{k}"),
                    data: Some(i.to_string().into_bytes()),
                    version: -1,
                };
                let (h, _) = r.call(OpCode::SetData, &req.to_bytes());
                assert_eq!(h.err, 0);
                i += 1;
            }
            0
        }));
    }
    let checked: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(checked, keys * rounds);
}
