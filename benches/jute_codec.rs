//! The jute codec on the hot records: decode a getData request, encode its reply (header + data +
//! Stat), decode a create request. `cargo bench --bench jute_codec`.

use std::time::Instant;
use zkd::proto::jute::{Reader, Record, Writer};
use zkd::proto::*;

fn time<F: FnMut()>(what: &str, n: u64, mut f: F) {
    let t0 = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = t0.elapsed().as_nanos() as f64 / n as f64;
    println!("{what:<40} {ns:>8.1} ns/op");
}

fn main() {
    let n = 2_000_000;
    let get = GetDataRequest { path: "/bench/key-001234".into(), watch: false }.to_bytes();
    time("decode GetDataRequest", n, || {
        let r = GetDataRequest::decode(&mut Reader::new(std::hint::black_box(&get))).unwrap();
        std::hint::black_box(r);
    });
    let data = vec![b'x'; 100];
    let stat = Stat { czxid: 1, mzxid: 2, pzxid: 3, version: 4, data_length: 100, ..Default::default() };
    let mut w = Writer::with_capacity(256);
    time("encode ReplyHeader + GetDataResponse", n, || {
        w.buf.clear();
        ReplyHeader { xid: 7, zxid: 9, err: 0 }.encode(&mut w);
        GetDataResponse { data: Some(data.clone()), stat: stat.clone() }.encode(&mut w);
        std::hint::black_box(&w.buf);
    });
    let create = CreateRequest {
        path: "/bench/key-001234".into(),
        data: Some(vec![b'x'; 100]),
        acl: vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }],
        flags: 0,
    }
    .to_bytes();
    time("decode CreateRequest (100 B, open ACL)", n, || {
        let r = CreateRequest::decode(&mut Reader::new(std::hint::black_box(&create))).unwrap();
        std::hint::black_box(r);
    });
}
