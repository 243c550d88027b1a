//! What a connection shows operators (`cons`, `stat`, `wchc`, the AdminServer): statistics that
//! the owning shard writes and any thread reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::clock::wall_ms;

/// One connection's statistics, readable from any thread. Written by the owning shard only
/// (relaxed atomics on the connection's own memory: no sharing between connections).
pub struct ConnStats {
    pub id: u64,
    pub shard: u16,
    pub peer: SocketAddr,
    pub session: AtomicI64,
    pub timeout_ms: AtomicI64,
    pub established_ms: AtomicI64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub outstanding: AtomicI64,
    /// Opcode of the last answered request; `i64::MIN` before any ("NA").
    pub last_op: AtomicI64,
    pub last_cxid: AtomicI64,
    pub last_zxid: AtomicI64,
    pub last_resp_ms: AtomicI64,
    pub last_lat_ms: AtomicI64,
    pub min_lat_ms: AtomicI64,
    pub max_lat_ms: AtomicI64,
    pub sum_lat_ms: AtomicI64,
    pub count_lat: AtomicI64,
    pub last_activity_ms: AtomicI64,
    /// Not reading its socket (a four-letter word, or back-pressure): ZooKeeper's interest ops 0.
    pub not_reading: AtomicBool,
}

impl ConnStats {
    pub fn new(id: u64, shard: u16, peer: SocketAddr) -> Self {
        let s = ConnStats {
            id,
            shard,
            peer,
            session: AtomicI64::new(0),
            timeout_ms: AtomicI64::new(0),
            established_ms: AtomicI64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            last_op: AtomicI64::new(0),
            last_cxid: AtomicI64::new(0),
            last_zxid: AtomicI64::new(0),
            last_resp_ms: AtomicI64::new(0),
            last_lat_ms: AtomicI64::new(0),
            min_lat_ms: AtomicI64::new(0),
            max_lat_ms: AtomicI64::new(0),
            sum_lat_ms: AtomicI64::new(0),
            count_lat: AtomicI64::new(0),
            last_activity_ms: AtomicI64::new(wall_ms()),
            not_reading: AtomicBool::new(false),
        };
        s.reset();
        s
    }

    /// `crst`: ZooKeeper's `ServerCnxn.resetStats`.
    pub fn reset(&self) {
        let r = Ordering::Relaxed;
        self.received.store(0, r);
        self.sent.store(0, r);
        self.last_op.store(i64::MIN, r);
        self.last_cxid.store(-1, r);
        self.last_zxid.store(-1, r);
        self.last_resp_ms.store(0, r);
        self.last_lat_ms.store(0, r);
        self.min_lat_ms.store(i64::MAX, r);
        self.max_lat_ms.store(0, r);
        self.sum_lat_ms.store(0, r);
        self.count_lat.store(0, r);
    }

    pub fn packet_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_activity_ms.store(wall_ms(), Ordering::Relaxed);
    }

    /// A request was answered: its opcode, xid, the reply's zxid and its latency.
    pub fn answered(&self, opcode: i32, xid: i32, zxid: i64, lat_ms: i64, now_ms: i64) {
        let r = Ordering::Relaxed;
        self.sent.fetch_add(1, r);
        self.last_op.store(opcode as i64, r);
        self.last_cxid.store(xid as i64, r);
        self.last_zxid.store(zxid, r);
        self.last_resp_ms.store(now_ms, r);
        self.last_lat_ms.store(lat_ms, r);
        self.min_lat_ms.fetch_min(lat_ms, r);
        self.max_lat_ms.fetch_max(lat_ms, r);
        self.sum_lat_ms.fetch_add(lat_ms, r);
        self.count_lat.fetch_add(1, r);
    }

    pub fn min_lat(&self) -> i64 {
        let m = self.min_lat_ms.load(Ordering::Relaxed);
        if m == i64::MAX {
            0
        } else {
            m
        }
    }
    pub fn avg_lat(&self) -> i64 {
        let c = self.count_lat.load(Ordering::Relaxed);
        if c == 0 {
            0
        } else {
            self.sum_lat_ms.load(Ordering::Relaxed) / c
        }
    }
}
