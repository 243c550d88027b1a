//! Each session's requests: what the workload asks next, and the checks --verify makes on
//! the replies.

use std::collections::{HashMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::args::Workload;
use super::measure::{Ctx, SessionStats};
use crate::client::{open_acl, Conn, Reply};
use zkd::proto::jute::Record;
use zkd::proto::{
    CreateRequest, CreateResponse, DeleteRequest, GetDataRequest, GetDataResponse, OpCode, SetDataRequest,
    SetDataResponse,
};

pub(super) fn make_value(idx: usize, seq: u64, size: usize) -> Vec<u8> {
    let mut v = format!("s{idx}-{seq}-").into_bytes();
    v.resize(size, b'x');
    v
}

pub(super) enum Kind {
    Read(u32),
    Write(u32, Option<Vec<u8>>),
    Create(String),
    Delete,
}

/// Per-session request generator.
pub(super) struct Gen {
    pub(super) idx: usize,
    pub(super) rng: StdRng,
    pub(super) seq: u64,
    pub(super) to_delete: VecDeque<String>,
    pub(super) last_version: HashMap<u32, i32>,
}

impl Gen {
    pub(super) fn new(idx: usize) -> Self {
        Gen {
            idx,
            rng: StdRng::seed_from_u64(0x5eed_0000 + idx as u64),
            seq: 0,
            to_delete: VecDeque::new(),
            last_version: HashMap::new(),
        }
    }

    /// Queues the next request of the workload on `conn`; returns its xid and kind.
    pub(super) fn next(&mut self, ctx: &Ctx, conn: &mut Conn) -> (i32, Kind) {
        self.seq += 1;
        let a = &ctx.a;
        let read = match a.workload {
            Workload::Read => true,
            Workload::Write => false,
            Workload::Mixed => self.rng.gen_range(0..100) < a.read_pct,
            Workload::CreateDelete => {
                if let Some(path) = self.to_delete.pop_front() {
                    let xid = conn.queue(OpCode::Delete, &DeleteRequest { path, version: -1 });
                    return (xid, Kind::Delete);
                }
                let path = format!("{}/cd/s{}-{}", a.root, self.idx, self.seq);
                let req = CreateRequest {
                    path: path.clone(),
                    data: Some(make_value(self.idx, self.seq, a.value_size)),
                    acl: open_acl(),
                    flags: 0,
                };
                let xid = conn.queue(OpCode::Create, &req);
                return (xid, Kind::Create(path));
            }
            Workload::WatchFanout | Workload::ConnectStorm => unreachable!("not an op-loop workload"),
        };
        let k = self.rng.gen_range(0..a.keys);
        if read {
            let xid = conn.queue(OpCode::GetData, &GetDataRequest { path: ctx.key_path(k), watch: false });
            (xid, Kind::Read(k))
        } else {
            let data = make_value(self.idx, self.seq, a.value_size);
            let keep = a.verify.then(|| data.clone());
            let xid = conn.queue(
                OpCode::SetData,
                &SetDataRequest { path: ctx.key_path(k), data: Some(data), version: -1 },
            );
            (xid, Kind::Write(k, keep))
        }
    }

    pub(super) fn on_ok(&mut self, ctx: &Ctx, st: &mut SessionStats, kind: Kind, r: &Reply) {
        match kind {
            Kind::Create(path) => {
                if ctx.a.verify {
                    match CreateResponse::from_bytes(&r.body) {
                        Ok(c) if c.path == path => {}
                        _ => st.mismatch("VerifyMismatch"),
                    }
                }
                self.to_delete.push_back(path);
            }
            Kind::Write(k, Some(data)) => match SetDataResponse::from_bytes(&r.body) {
                Ok(s) => {
                    let v = s.stat.version;
                    let lv = self.last_version.entry(k).or_insert(v);
                    if v < *lv {
                        st.mismatch("VerifyStaleRead");
                    }
                    *lv = (*lv).max(v);
                    let mut w = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
                    let e = w.entry(k).or_insert((-1, Vec::new()));
                    if v > e.0 {
                        *e = (v, data);
                    } else if v == e.0 {
                        st.mismatch("VerifyMismatch"); // two writes got the same version
                    }
                }
                Err(_) => st.mismatch("VerifyMismatch"),
            },
            Kind::Read(k) if ctx.a.verify => match GetDataResponse::from_bytes(&r.body) {
                Ok(g) => {
                    st.reads_checked += 1;
                    let v = g.stat.version;
                    let lv = self.last_version.entry(k).or_insert(v);
                    if v < *lv {
                        st.mismatch("VerifyStaleRead");
                    }
                    *lv = (*lv).max(v);
                    let w = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some((wv, wd)) = w.get(&k) {
                        if *wv == v && g.data.as_deref().unwrap_or(&[]) != wd.as_slice() {
                            st.mismatch("VerifyMismatch");
                        }
                    }
                }
                Err(_) => st.mismatch("VerifyMismatch"),
            },
            _ => {}
        }
    }
}
