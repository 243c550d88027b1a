//! Per-client-IP accounting: `maxClientCnxns`, refusals, `jute.maxbuffer` rejects and connection
//! churn (connects per second, connections closed without a session).
//!
//! `IpTable` is pure (time passed in) and returns what to log as values, so one log line per IP
//! per interval is a property tested here rather than hoped for in the shard. `ConnLimits` is the
//! table behind one short mutex, taken twice per connection (accept, close).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

/// Tunables (zoo.cfg: `maxClientCnxns`, and zkd's `zkd.limits.*` keys).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Connections per IP; 0 = unlimited.
    pub max_cnxns: u32,
    /// At most one refusal line and one churn line per IP per this interval.
    pub log_interval_ms: u64,
    /// Connects per second from one IP above which churn is reported.
    pub churn_threshold_per_s: u64,
    /// IPs remembered; beyond it, the idle IP seen longest ago is forgotten.
    pub max_ips: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { max_cnxns: 60, log_interval_ms: 10_000, churn_threshold_per_s: 100, max_ips: 4096 }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpEntry {
    pub open: u32,
    pub connects: u64,
    pub refused: u64,
    pub maxbuffer_rejects: u64,
    pub closed_without_session: u64,
    /// Failed authentications: TLS handshakes, SASL, digest/x509 `addauth`.
    pub auth_failures: u64,
    /// Sessions closed because they had not authenticated with an enforced scheme
    /// (`enforce.auth.enabled`, `sessionRequireClientSASLAuth`).
    pub unauthenticated: u64,
    /// Connects in the current one-second window, and when it started.
    sec_start_ms: u64,
    sec_connects: u64,
    /// Connects per second of the last complete window (or of the current one, if larger).
    pub rate_per_s: u64,
    pub peak_rate_per_s: u64,
    refused_unlogged: u64,
    last_refusal_log_ms: Option<u64>,
    last_churn_log_ms: Option<u64>,
    last_maxbuffer_log_ms: Option<u64>,
    maxbuffer_unlogged: u64,
    closed_without_session_at_last_churn_log: u64,
    last_seen_ms: u64,
}

/// What an accept decided, and what to log about it (at most one line each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub admitted: bool,
    /// Log ZooKeeper's refusal sentence; the number is the refusals not logged since the last one.
    pub log_refusal: Option<u64>,
    pub log_churn: Option<ChurnReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnReport {
    pub connects_last_second: u64,
    pub threshold_per_s: u64,
    pub closed_without_session_since_last_report: u64,
}

/// One line of the per-IP report (cons, admin, mntr).
#[derive(Debug, Clone, PartialEq)]
pub struct IpReport {
    pub ip: IpAddr,
    pub entry: IpEntry,
}

pub struct IpTable {
    pub cfg: LimitsConfig,
    ips: HashMap<IpAddr, IpEntry>,
}

impl IpTable {
    pub fn new(cfg: LimitsConfig) -> Self {
        assert!(cfg.max_ips > 0, "the per-IP table needs room for one IP");
        IpTable { cfg, ips: HashMap::new() }
    }

    fn entry(&mut self, ip: IpAddr, now_ms: u64) -> &mut IpEntry {
        if !self.ips.contains_key(&ip) && self.ips.len() >= self.cfg.max_ips {
            let victim = self
                .ips
                .iter()
                .filter(|(_, e)| e.open == 0)
                .min_by_key(|(_, e)| e.last_seen_ms)
                .map(|(ip, _)| *ip);
            if let Some(v) = victim {
                self.ips.remove(&v);
            }
        }
        let e = self.ips.entry(ip).or_default();
        e.last_seen_ms = now_ms;
        e
    }

    /// A new connection from `ip`.
    pub fn admit(&mut self, ip: IpAddr, now_ms: u64) -> Admission {
        let cfg = self.cfg.clone();
        let e = self.entry(ip, now_ms);
        e.connects += 1;
        if now_ms.saturating_sub(e.sec_start_ms) >= 1000 {
            let elapsed = now_ms.saturating_sub(e.sec_start_ms).max(1000);
            // A window long past counts as quiet.
            e.rate_per_s = if elapsed >= 2000 { 0 } else { e.sec_connects * 1000 / elapsed };
            e.sec_start_ms = now_ms;
            e.sec_connects = 0;
        }
        e.sec_connects += 1;
        e.rate_per_s = e.rate_per_s.max(e.sec_connects);
        e.peak_rate_per_s = e.peak_rate_per_s.max(e.rate_per_s);
        let due = |last: Option<u64>| last.is_none_or(|t| now_ms.saturating_sub(t) >= cfg.log_interval_ms);
        let mut log_churn = None;
        if e.sec_connects > cfg.churn_threshold_per_s && due(e.last_churn_log_ms) {
            log_churn = Some(ChurnReport {
                connects_last_second: e.sec_connects,
                threshold_per_s: cfg.churn_threshold_per_s,
                closed_without_session_since_last_report: e.closed_without_session
                    - e.closed_without_session_at_last_churn_log,
            });
            e.last_churn_log_ms = Some(now_ms);
            e.closed_without_session_at_last_churn_log = e.closed_without_session;
        }
        if cfg.max_cnxns > 0 && e.open >= cfg.max_cnxns {
            e.refused += 1;
            let log_refusal = if due(e.last_refusal_log_ms) {
                e.last_refusal_log_ms = Some(now_ms);
                Some(std::mem::take(&mut e.refused_unlogged))
            } else {
                e.refused_unlogged += 1;
                None
            };
            return Admission { admitted: false, log_refusal, log_churn };
        }
        e.open += 1;
        Admission { admitted: true, log_refusal: None, log_churn }
    }

    /// An admitted connection closed; `with_session` false if no session was ever established.
    pub fn release(&mut self, ip: IpAddr, with_session: bool, now_ms: u64) {
        let e = self.entry(ip, now_ms);
        assert!(e.open > 0, "release without admit for {ip}");
        e.open = e.open.saturating_sub(1);
        if !with_session {
            e.closed_without_session += 1;
        }
    }

    /// Counts a `jute.maxbuffer` reject; `Some(n)` when it should be logged (n: rejects not
    /// logged since the last line), at most once per IP per interval.
    pub fn maxbuffer_rejected(&mut self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        let interval = self.cfg.log_interval_ms;
        let e = self.entry(ip, now_ms);
        e.maxbuffer_rejects += 1;
        if e.last_maxbuffer_log_ms.is_none_or(|t| now_ms.saturating_sub(t) >= interval) {
            e.last_maxbuffer_log_ms = Some(now_ms);
            Some(std::mem::take(&mut e.maxbuffer_unlogged))
        } else {
            e.maxbuffer_unlogged += 1;
            None
        }
    }

    /// Counts a failed authentication (TLS handshake, SASL, addauth) from `ip`.
    pub fn auth_failed(&mut self, ip: IpAddr, now_ms: u64) {
        self.entry(ip, now_ms).auth_failures += 1;
    }

    /// Counts a session closed for not having authenticated with an enforced scheme.
    pub fn unauthenticated(&mut self, ip: IpAddr, now_ms: u64) {
        self.entry(ip, now_ms).unauthenticated += 1;
    }

    pub fn open(&self, ip: IpAddr) -> u32 {
        self.ips.get(&ip).map_or(0, |e| e.open)
    }

    /// IPs with something worth showing (refusals, rejects, churn), worst first, at most `n`.
    pub fn offenders(&self, n: usize, now_ms: u64) -> Vec<IpReport> {
        let mut v: Vec<IpReport> = self
            .ips
            .iter()
            .filter(|(_, e)| {
                e.refused > 0
                    || e.maxbuffer_rejects > 0
                    || e.auth_failures > 0
                    || e.unauthenticated > 0
                    || e.closed_without_session > 0
                    || e.peak_rate_per_s > self.cfg.churn_threshold_per_s
            })
            .map(|(ip, e)| {
                let mut entry = e.clone();
                if now_ms.saturating_sub(e.sec_start_ms) >= 2000 {
                    entry.rate_per_s = 0;
                }
                IpReport { ip: *ip, entry }
            })
            .collect();
        v.sort_by_key(|r| {
            std::cmp::Reverse((
                r.entry.refused,
                r.entry.rate_per_s,
                r.entry.closed_without_session,
                r.entry.maxbuffer_rejects,
                r.entry.auth_failures + r.entry.unauthenticated,
            ))
        });
        v.truncate(n);
        v
    }

    pub fn totals(&self) -> (u64, u64, u64) {
        self.ips.values().fold((0, 0, 0), |(r, m, c), e| {
            (r + e.refused, m + e.maxbuffer_rejects, c + e.closed_without_session)
        })
    }
}

/// The shared table (all shards), with a monotonic clock.
pub struct ConnLimits {
    table: Mutex<IpTable>,
    epoch: Instant,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self::new(LimitsConfig::default())
    }
}

impl ConnLimits {
    pub fn new(cfg: LimitsConfig) -> Self {
        ConnLimits { table: Mutex::new(IpTable::new(cfg)), epoch: Instant::now() }
    }
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
    pub fn admit(&self, ip: IpAddr) -> Admission {
        let now = self.now_ms();
        self.table.lock().admit(ip, now)
    }
    pub fn release(&self, ip: IpAddr, with_session: bool) {
        let now = self.now_ms();
        self.table.lock().release(ip, with_session, now)
    }
    pub fn maxbuffer_rejected(&self, ip: IpAddr) -> Option<u64> {
        let now = self.now_ms();
        self.table.lock().maxbuffer_rejected(ip, now)
    }
    pub fn auth_failed(&self, ip: IpAddr) {
        let now = self.now_ms();
        self.table.lock().auth_failed(ip, now)
    }
    pub fn unauthenticated(&self, ip: IpAddr) {
        let now = self.now_ms();
        self.table.lock().unauthenticated(ip, now)
    }
    pub fn offenders(&self, n: usize) -> Vec<IpReport> {
        let now = self.now_ms();
        self.table.lock().offenders(n, now)
    }
    pub fn totals(&self) -> (u64, u64, u64) {
        self.table.lock().totals()
    }
    pub fn config(&self) -> LimitsConfig {
        self.table.lock().cfg.clone()
    }
}

/// Logs what an admission asks for. `max` is `maxClientCnxns`.
pub fn log_admission(ip: IpAddr, a: &Admission, max: u32) {
    if let Some(suppressed) = a.log_refusal {
        if suppressed == 0 {
            tracing::warn!("Too many connections from /{ip} - max is {max}");
        } else {
            tracing::warn!(
                "Too many connections from /{ip} - max is {max} ({suppressed} more refused since the last message)"
            );
        }
    }
    if let Some(c) = &a.log_churn {
        tracing::warn!(
            "Connection churn from /{ip}: {} connections in the last second (threshold {}/s); {} closed without a session since the last report",
            c.connects_last_second,
            c.threshold_per_s,
            c.closed_without_session_since_last_report
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table(max: u32) -> IpTable {
        IpTable::new(LimitsConfig {
            max_cnxns: max,
            log_interval_ms: 1000,
            churn_threshold_per_s: 5,
            max_ips: 3,
        })
    }

    #[test]
    fn refusal_at_the_limit_logged_once_per_interval() {
        let mut t = table(2);
        let a = ip("127.0.0.1");
        assert!(t.admit(a, 0).admitted);
        assert!(t.admit(a, 0).admitted);
        let r = t.admit(a, 0);
        assert_eq!((r.admitted, r.log_refusal), (false, Some(0)));
        let r = t.admit(a, 10);
        assert_eq!((r.admitted, r.log_refusal), (false, None));
        let r = t.admit(a, 1010);
        assert_eq!((r.admitted, r.log_refusal), (false, Some(1)), "the next line counts the silent refusals");
        // Another IP has its own budget.
        assert!(t.admit(ip("127.0.0.2"), 1010).admitted);
        t.release(a, true, 1020);
        assert!(t.admit(a, 1030).admitted);
        assert_eq!(t.open(a), 2);
        assert_eq!(t.offenders(10, 1030)[0].entry.refused, 3);
    }

    #[test]
    fn unlimited_when_zero() {
        let mut t = table(0);
        for _ in 0..100 {
            assert!(t.admit(ip("10.0.0.1"), 5000).admitted);
        }
    }

    #[test]
    fn churn_reported_once_per_interval_with_sessionless_closes() {
        let mut t = table(0);
        let a = ip("127.0.0.3");
        let mut reports = Vec::new();
        for i in 0..30u64 {
            let now = i * 20; // 50/s for 600 ms
            let r = t.admit(a, now);
            t.release(a, false, now);
            if let Some(c) = r.log_churn {
                reports.push((now, c));
            }
        }
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].1.connects_last_second, 6);
        assert_eq!(reports[0].1.closed_without_session_since_last_report, 5);
        let off = t.offenders(5, 600);
        assert_eq!(off[0].entry.closed_without_session, 30);
        assert!(off[0].entry.peak_rate_per_s >= 20);
        // Quiet for a while: the rate shown decays to 0.
        assert_eq!(t.offenders(5, 10_000)[0].entry.rate_per_s, 0);
    }

    #[test]
    fn table_is_bounded_and_keeps_open_ips() {
        let mut t = table(0);
        assert!(t.admit(ip("10.0.0.1"), 0).admitted);
        for i in 2..10 {
            let a = ip(&format!("10.0.0.{i}"));
            t.admit(a, i);
            t.release(a, true, i);
        }
        assert!(t.ips.len() <= 3);
        assert_eq!(t.open(ip("10.0.0.1")), 1, "an IP with open connections is never forgotten");
    }

    #[test]
    fn maxbuffer_rejects_counted_per_ip() {
        let mut t = table(0);
        assert_eq!(t.maxbuffer_rejected(ip("10.1.1.1"), 0), Some(0));
        assert_eq!(t.maxbuffer_rejected(ip("10.1.1.1"), 1), None);
        assert_eq!(t.maxbuffer_rejected(ip("10.1.1.1"), 1001), Some(1));
        assert_eq!(t.totals(), (0, 3, 0));
        assert_eq!(t.offenders(1, 2)[0].ip, ip("10.1.1.1"));
    }
}
