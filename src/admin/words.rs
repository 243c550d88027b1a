//! The four-letter words, as ZooKeeper 3.8 prints them (`org.apache.zookeeper.server.command`).
//! Only values differ; zkd's own additions come after ZooKeeper's text and only when there is
//! something to report (`cons`), or as `zkd_` keys (`mntr`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{OpsState, VERSION_LINE, ZK_NOT_SERVING};
use crate::config::Settings;
use crate::quorum::peer::Role;
use crate::quorum::status::QuorumStatus;
use crate::shard::ConnStats;

/// ZooKeeper always allows `srvr` (zkServer.sh needs it); `*` allows every word.
pub fn allowed(settings: &Settings, word: &str) -> bool {
    match &settings.four_letter_whitelist {
        None => true,
        Some(list) => word == "srvr" || list.iter().any(|w| w == word),
    }
}

pub fn not_whitelisted(word: &str) -> String {
    format!("{word} is not executed because it is not in the whitelist.\n")
}

/// What a word answers when the ops thread is unavailable.
pub fn run_local(ops: &OpsState, word: &str) -> String {
    match word {
        "ruok" => "imok".into(),
        "isro" => isro(ops),
        _ => String::new(),
    }
}

/// `isro`: "rw" while serving, ZooKeeper's "null" while not.
fn isro(ops: &OpsState) -> String {
    if ops.serving() { "rw" } else { "null" }.into()
}

/// ZooKeeper's words that need a running server answer only this while it does not serve
/// (`hash` without the newline).
fn needs_serving(word: &str) -> bool {
    matches!(
        word,
        "conf"
            | "cons"
            | "crst"
            | "dirs"
            | "dump"
            | "mntr"
            | "srvr"
            | "stat"
            | "srst"
            | "wchc"
            | "wchp"
            | "wchs"
            | "hash"
    )
}

/// Java's `Double.toString` for the values ZooKeeper prints (`2.0`, `1.7143`, `1.0E-4`).
pub fn jdouble(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e7).contains(&a) {
        let s = format!("{v:e}"); // 1e-4, 1.5e7
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') { m.to_string() } else { format!("{m}.0") };
        return format!("{m}E{e}");
    }
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// Java's `Date.toString` in UTC: `Sun Nov 22 16:36:05 UTC 2026`.
pub fn java_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        y
    )
}

/// ZooKeeper's `lastOp` names (FinalRequestProcessor).
pub fn op_name(op: i64) -> &'static str {
    match op {
        11 => "PING",
        -10 => "SESS",
        14 => "MULT",
        22 => "MLTR",
        1 | 15 | 19 | 21 => "CREA",
        2 | 20 => "DELE",
        5 => "SETD",
        16 => "RECO",
        7 => "SETA",
        -11 => "CLOS",
        9 => "SYNC",
        13 => "CHEC",
        3 => "EXIS",
        4 => "GETD",
        101 => "SETW",
        105 => "STW2",
        106 => "ADDW",
        6 => "GETA",
        8 | 12 => "GETC",
        104 => "GETACN",
        17 => "CHKW",
        18 => "REMW",
        107 => "HOMI",
        103 => "GETE",
        _ => "NA",
    }
}

/// One connection as `ServerCnxn.dumpConnectionInfo` prints it (without the newline).
pub fn conn_line(c: &ConnStats, brief: bool) -> String {
    let r = Ordering::Relaxed;
    let interest = if c.not_reading.load(r) { "0" } else { "1" };
    let mut s = format!(
        " /{}[{}](queued={},recved={},sent={}",
        c.peer,
        interest,
        c.outstanding.load(r).max(0),
        c.received.load(r),
        c.sent.load(r)
    );
    let sid = c.session.load(r);
    if !brief && sid != 0 {
        let _ = write!(
            s,
            ",sid=0x{:x},lop={},est={},to={}",
            sid,
            op_name(c.last_op.load(r)),
            c.established_ms.load(r),
            c.timeout_ms.load(r)
        );
        let lcxid = c.last_cxid.load(r);
        if lcxid >= 0 {
            let _ = write!(s, ",lcxid=0x{lcxid:x}");
        }
        let _ = write!(
            s,
            ",lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            c.last_zxid.load(r),
            c.last_resp_ms.load(r),
            c.last_lat_ms.load(r),
            c.min_lat(),
            c.avg_lat(),
            c.max_lat_ms.load(r)
        );
    }
    s.push(')');
    s
}

/// Size of the files directly in `dir/version-2` (ZooKeeper's `dataDirSize`/`dataLogSize`).
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let d = dir.join("version-2");
    std::fs::read_dir(&d)
        .map(|it| it.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn conf(ops: &OpsState) -> String {
    let data = dir_size(&ops.cfg.data_dir).to_string();
    let log = dir_size(&ops.cfg.data_log_dir).to_string();
    let mut s = String::new();
    for line in ops.cfg.to_conf_lines() {
        let line = match line.as_str() {
            "dataDirSize=0" => format!("dataDirSize={data}"),
            "dataLogSize=0" => format!("dataLogSize={log}"),
            // clientPort=0: the port the kernel chose.
            "clientPort=0" => format!("clientPort={}", ops.client_addr.port()),
            _ => line,
        };
        s.push_str(&line);
        s.push('\n');
    }
    if let Some(e) = &ops.ensemble {
        s.push_str(&quorum_conf(e));
    }
    s
}

/// The lines a member of an ensemble adds to `conf` (ZooKeeper's `QuorumZooKeeperServer.dumpConf`):
/// its quorum settings and ports, then the membership as peers exchange it (no newline after
/// the last line, as ZooKeeper prints it).
pub fn quorum_conf(e: &crate::config::Ensemble) -> String {
    let me = e.me();
    let peer_type = match me.peer_type {
        crate::config::PeerType::Participant => 0,
        crate::config::PeerType::Observer => 1,
    };
    format!(
        "initLimit={}\nsyncLimit={}\nelectionAlg=3\nelectionPort={}\nquorumPort={}\npeerType={peer_type}\nmembership: \n{}",
        e.init_limit,
        e.sync_limit,
        me.election_port,
        me.quorum_port,
        crate::quorum::wire::QuorumView::from_ensemble(e).to_text()
    )
}

/// zkd's per-IP section of `cons` (only when something is worth showing).
fn limits_section(ops: &OpsState) -> String {
    let off = ops.limits.offenders(10);
    if off.is_empty() {
        return String::new();
    }
    let cfg = ops.limits.config();
    let mut s = format!(
        "zkd limits (maxClientCnxns={}, churn threshold {}/s):\n",
        cfg.max_cnxns, cfg.churn_threshold_per_s
    );
    for r in off {
        let e = &r.entry;
        let _ = writeln!(
            s,
            " /{}(open={},connects={},refused={},maxbuffer_rejected={},closed_without_session={},auth_failures={},unauthenticated={},rate={}/s,peak_rate={}/s)",
            r.ip,
            e.open,
            e.connects,
            e.refused,
            e.maxbuffer_rejects,
            e.closed_without_session,
            e.auth_failures,
            e.unauthenticated,
            e.rate_per_s,
            e.peak_rate_per_s
        );
    }
    s
}

/// `srvr`/`stat`'s `Mode:`: the role clients are served in.
fn server_stats(ops: &OpsState, q: &QuorumStatus, s: &mut String) {
    let m = ops.metrics.snapshot();
    let _ = writeln!(
        s,
        "Latency min/avg/max: {}/{}/{}",
        m.latency_min_ms,
        jdouble(m.latency_avg_ms),
        m.latency_max_ms
    );
    let _ = writeln!(s, "Received: {}", m.packets_received);
    let _ = writeln!(s, "Sent: {}", m.packets_sent);
    let _ = writeln!(s, "Connections: {}", m.connections);
    let _ = writeln!(s, "Outstanding: {}", m.outstanding.max(0));
    let _ = writeln!(s, "Zxid: 0x{:x}", ops.tree.last_processed_zxid());
    let _ = writeln!(s, "Mode: {}", q.mode().unwrap_or("standalone"));
    let _ = writeln!(s, "Node count: {}", ops.zk_node_count());
    if let (Some(Role::Leader), Some(l)) = (q.serving, &q.leader_side) {
        let (last, min, max) = l.proposal_sizes;
        let _ = writeln!(s, "Proposal sizes last/min/max: {last}/{min}/{max}");
    }
}

/// Data watches grouped by session (`wchc`) or by path (`wchp`), sorted.
pub fn watches_by(ops: &OpsState) -> (BTreeMap<i64, Vec<String>>, BTreeMap<String, Vec<i64>>) {
    let mut by_session: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut by_path: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (path, ws) in ops.tree.data_watches() {
        for w in ws {
            let Some(sid) = ops.session_of(w.shard, w.conn) else { continue };
            by_session.entry(sid).or_default().push(path.clone());
            by_path.entry(path.clone()).or_default().push(sid);
        }
    }
    by_session.values_mut().for_each(|v| v.sort());
    by_path.values_mut().for_each(|v| v.sort());
    (by_session, by_path)
}

pub fn watch_summary(ops: &OpsState) -> (usize, usize, usize) {
    let (by_session, by_path) = watches_by(ops);
    let total = by_path.values().map(|v| v.len()).sum();
    (by_session.len(), by_path.len(), total)
}

/// Connection expiry buckets as NIOServerCnxnFactory keeps them (sessionless: 10 s).
fn connection_buckets(conns: &[std::sync::Arc<ConnStats>]) -> BTreeMap<i64, Vec<String>> {
    const INTERVAL_MS: i64 = 10_000;
    let mut b: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for c in conns {
        let to = c.timeout_ms.load(Ordering::Relaxed);
        let to = if to > 0 { to } else { INTERVAL_MS };
        let at = c.last_activity_ms.load(Ordering::Relaxed) + to;
        let bucket = (at / INTERVAL_MS + 1) * INTERVAL_MS;
        b.entry(bucket).or_default().push(format!(
            "ip: /{} sessionId: 0x{:x}",
            c.peer,
            c.session.load(Ordering::Relaxed)
        ));
    }
    b
}

fn dump(ops: &OpsState) -> String {
    let mut s = String::from("SessionTracker dump:\n");
    let d = ops.sessions();
    let _ = writeln!(s, "Session Sets ({})/({}):", d.buckets.len(), d.count);
    for (t, ids) in &d.buckets {
        let _ = writeln!(s, "{} expire at {}:", ids.len(), java_date(*t));
        for id in ids {
            let _ = writeln!(s, "\t0x{id:x}");
        }
    }
    s.push_str("ephemeral nodes dump:\n");
    let eph = ops.tree.ephemerals_by_session();
    let _ = writeln!(s, "Sessions with Ephemerals ({}):", eph.len());
    for (sid, paths) in eph {
        let _ = writeln!(s, "0x{sid:x}:");
        for p in paths {
            let _ = writeln!(s, "\t{p}");
        }
    }
    s.push_str("Connections dump:\n");
    let conns = ops.connections();
    let buckets = connection_buckets(&conns);
    let _ = writeln!(s, "Connections Sets ({})/({}):", buckets.len(), conns.len());
    for (t, list) in buckets {
        let _ = writeln!(s, "{} expire at {}:", list.len(), java_date(t));
        for l in list {
            let _ = writeln!(s, "\t{l}");
        }
    }
    s
}

/// `envi`: ZooKeeper's keys (Environment.list), with what they mean for a zkd process.
pub fn environment(ops: &OpsState) -> Vec<(String, String)> {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
    let host = hostname();
    let (rss_mb, total_mb) = memory_mb();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "aarch64",
        a => a,
    };
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| user_name());
    let v = [
        ("zookeeper.version", VERSION_LINE.to_string()),
        ("host.name", host),
        ("java.version", "<NA>".into()),
        ("java.vendor", "zkd (Rust)".into()),
        ("java.home", exe.clone()),
        ("java.class.path", exe),
        ("java.library.path", String::new()),
        ("java.io.tmpdir", std::env::temp_dir().display().to_string()),
        ("java.compiler", "<NA>".into()),
        ("os.name", "Linux".into()),
        ("os.arch", arch.into()),
        ("os.version", os_release()),
        ("user.name", user),
        ("user.home", std::env::var("HOME").unwrap_or_default()),
        ("user.dir", std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default()),
        ("os.memory.free", format!("{}MB", total_mb.saturating_sub(rss_mb))),
        ("os.memory.max", format!("{total_mb}MB")),
        ("os.memory.total", format!("{rss_mb}MB")),
        ("zkd.shards", ops.metrics.shard_count().to_string()),
    ];
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The effective user's name from /etc/passwd (Java's `user.name`).
fn user_name() -> String {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| f[0].to_string())
        .unwrap_or_default()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn os_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// (resident set, machine memory) in MB.
fn memory_mb() -> (u64, u64) {
    let kb = |text: &str, key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    (kb(&status, "VmRSS:") / 1024, kb(&meminfo, "MemTotal:") / 1024)
}

/// (open, max) file descriptors of this process.
pub fn fd_counts() -> (u64, u64) {
    let open = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 { rl.rlim_cur } else { 0 };
    (open, max)
}

/// `mntr` as (key without `zk_`, value) pairs: ZooKeeper's keys that mean something for a
/// standalone zkd, in the order 3.8 prints them, then zkd's own (`zkd_` prefix kept).
/// ZooKeeper's basic summary in `mntr`: avg/min/max/cnt/sum of `name`, values divided by `div`
/// (microseconds to ms: 1000).
fn basic_summary(kv: &mut impl FnMut(&str, String), name: &str, h: &hdrhistogram::Histogram<u64>, div: u64) {
    let n = h.len();
    let avg = if n == 0 { 0.0 } else { crate::metrics::round4(h.mean() / div as f64) };
    kv(&format!("avg_{name}"), jdouble(avg));
    kv(&format!("min_{name}"), if n == 0 { "0".into() } else { (h.min() / div).to_string() });
    kv(&format!("max_{name}"), (h.max() / div).to_string());
    kv(&format!("cnt_{name}"), n.to_string());
    let sum: u64 = h.iter_recorded().map(|x| x.value_iterated_to() * x.count_at_value()).sum();
    kv(&format!("sum_{name}"), (sum / div).to_string());
}

pub fn monitor(ops: &OpsState) -> Vec<(String, String)> {
    let m = ops.metrics.snapshot();
    let (open_fds, max_fds) = fd_counts();
    let sessions = ops.sessions();
    let (refused_total, maxbuf_by_ip, sessionless) = ops.limits.totals();
    let status = ops.quorum_status();
    // A member of an ensemble, and the leader's figures while it leads (ZooKeeper registers
    // those gauges only on a serving leader).
    let quorum = status.as_ref().filter(|q| !q.standalone);
    let leader = quorum
        .filter(|q| q.serving == Some(Role::Leader))
        .and_then(|q| q.leader_side.as_ref().map(|l| (q, l)));
    let counters = quorum.map(|_| ops.quorum.counters());
    let mut v: Vec<(String, String)> = Vec::new();
    let mut kv = |k: &str, val: String| v.push((k.to_string(), val));
    // Keys in the order ZooKeeper 3.8 prints them (its gauges come out in hash order, the same
    // for the same set of names).
    kv("version", VERSION_LINE.into());
    kv("server_state", server_state(status.as_ref()).into());
    if let Some(q) = quorum {
        kv("peer_state", q.detailed_peer_state());
        if q.serving == Some(Role::Observer) {
            kv("observer_master_id", q.leader.unwrap_or(-1).to_string());
        }
    }
    kv("ephemerals_count", ops.tree.ephemerals_count().to_string());
    kv("num_alive_connections", m.connections.to_string());
    kv("avg_latency", jdouble(m.latency_avg_ms));
    if let Some((_, l)) = leader {
        kv("min_proposal_size", l.proposal_sizes.1.to_string());
    }
    kv("outstanding_requests", m.outstanding.max(0).to_string());
    kv("znode_count", ops.zk_node_count().to_string());
    kv("global_sessions", sessions.count.to_string());
    kv("non_mtls_remote_conn_count", "0".into());
    kv("last_client_response_size", m.resp_last.to_string());
    kv("packets_sent", m.packets_sent.to_string());
    kv("packets_received", m.packets_received.to_string());
    if let Some((_, l)) = leader {
        kv("max_proposal_size", l.proposal_sizes.2.to_string());
    }
    kv("max_client_response_size", m.resp_max.to_string());
    if let Some((q, _)) = leader {
        kv("synced_followers", q.synced_followers().to_string());
    }
    kv("connection_drop_probability", "0.0".into());
    kv("watch_count", ops.tree.watch_count().to_string());
    if let Some((q, _)) = leader {
        kv("synced_non_voting_followers", q.synced_non_voting_followers().to_string());
        kv("synced_observers", q.synced_observers().to_string());
    }
    kv("auth_failed_count", m.auth_failed.to_string());
    kv("min_latency", m.latency_min_ms.to_string());
    kv("max_file_descriptor_count", max_fds.to_string());
    kv("approximate_data_size", ops.tree.approximate_data_size().to_string());
    kv("open_file_descriptor_count", open_fds.to_string());
    if let Some((q, l)) = leader {
        kv("last_proposal_size", l.proposal_sizes.0.to_string());
        kv("pending_syncs", l.pending_syncs.to_string());
        kv("leader_uptime", q.serving_for_ms.unwrap_or(0).to_string());
    }
    kv("local_sessions", "0".into());
    kv("uptime", ops.uptime_ms().to_string());
    kv("max_latency", m.latency_max_ms.to_string());
    kv("outstanding_tls_handshake", "0".into());
    if let Some((_, l)) = leader {
        kv("learners", l.learners.len().to_string());
    }
    kv("min_client_response_size", m.resp_min.to_string());
    kv("non_mtls_local_conn_count", "0".into());
    if let Some(q) = quorum {
        kv("quorum_size", q.quorum_size().to_string());
    }
    kv("large_requests_rejected", m.frames_rejected.to_string());
    kv("connection_rejected", m.rejected_max_cnxns.to_string());
    kv("bytes_received_count", m.bytes_received.to_string());
    match (quorum, &counters) {
        (Some(q), Some(c)) => {
            // Counted by the quorum plane. ZooKeeper's proposal and commit counters are left out:
            // zkd does not count proposals and commits one by one.
            kv("looking_count", q.lookings.to_string());
            kv("digest_mismatches_count", crate::tree::digest::mismatches().to_string());
            kv("diff_count", c.diff_syncs.to_string());
            kv("snap_count", c.snap_syncs.to_string());
            kv("unrecoverable_error_count", "0".into());
        }
        _ => {
            // Quorum-only counters: always 0 on a standalone server, as on ZooKeeper's.
            for k in [
                "proposal_count",
                "looking_count",
                "learner_proposal_received_count",
                "digest_mismatches_count",
                "diff_count",
                "commit_count",
                "unrecoverable_error_count",
            ] {
                let v = if k == "digest_mismatches_count" { crate::tree::digest::mismatches() } else { 0 };
                kv(k, v.to_string());
            }
        }
    }
    if let Some(c) = &counters {
        basic_summary(&mut kv, "election_time", &c.election_ms, 1);
    }
    let lat = ops.metrics.latency();
    for (name, h) in [("readlatency", &lat.read_us), ("updatelatency", &lat.update_us)] {
        basic_summary(&mut kv, name, h, 1000);
        for (q, label) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (0.999, "p999")] {
            let val = if h.is_empty() { 0 } else { h.value_at_quantile(q) / 1000 };
            kv(&format!("{label}_{name}"), val.to_string());
        }
    }
    // The log's fsync time (ZooKeeper's basic `fsynctime` summary, ms), then zkd's own detail.
    if let Some(ls) = ops.log_stats() {
        let h = &ls.fsync_us;
        basic_summary(&mut kv, "fsynctime", h, 1000);
        basic_summary(&mut kv, "sync_processor_batch_size", &ls.sync_batch_txns, 1);
        kv("zkd_log_syncs", ls.syncs.to_string());
        kv("zkd_log_txns_written", ls.txns_written.to_string());
        kv("zkd_log_bytes_written", ls.bytes_written.to_string());
        kv("zkd_log_files_created", ls.files_created.to_string());
        for (q, label) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")] {
            let v = if h.is_empty() { 0 } else { h.value_at_quantile(q) };
            kv(&format!("zkd_fsync_{label}_us"), v.to_string());
        }
        kv("zkd_fsync_max_us", h.max().to_string());
    }
    // zkd's own.
    let shards = ops.metrics.per_shard();
    kv("zkd_shards", shards.len().to_string());
    for (i, s) in shards.iter().enumerate() {
        kv(&format!("zkd_shard_{i}_connections"), s.connections.to_string());
        kv(&format!("zkd_shard_{i}_outstanding"), s.outstanding.max(0).to_string());
        kv(&format!("zkd_shard_{i}_requests"), s.requests.to_string());
        kv(&format!("zkd_shard_{i}_backpressured"), (s.backpressured as u8).to_string());
    }
    kv("zkd_global_outstanding_limit", ops.global_outstanding_limit.to_string());
    kv("zkd_backpressure_active_shards", m.backpressured_shards.to_string());
    kv("zkd_backpressure_pauses", m.backpressure_pauses.to_string());
    kv("zkd_reads_ordered_behind_writes", m.reads_ordered_behind_writes.to_string());
    kv("zkd_replica_queue_full", m.replica_queue_full.to_string());
    kv("zkd_shard_inbox_full", m.shard_inbox_full.to_string());
    kv("zkd_max_client_cnxns", ops.limits.config().max_cnxns.to_string());
    kv("zkd_connections_accepted", m.conns_accepted.to_string());
    kv("zkd_connections_refused_max_cnxns", refused_total.to_string());
    kv("zkd_connections_closed_without_session", sessionless.to_string());
    kv("zkd_maxbuffer_rejects", maxbuf_by_ip.to_string());
    kv("zkd_four_letter_words", m.four_letter_words.to_string());
    kv("zkd_latency_p50_us", m.latency_p50_us.to_string());
    kv("zkd_latency_p99_us", m.latency_p99_us.to_string());
    let off = ops.limits.offenders(3);
    for (i, r) in off.iter().enumerate() {
        let e = &r.entry;
        kv(
            &format!("zkd_top_ip_{i}"),
            format!(
                "{} refused={} rate={}/s closed_without_session={} maxbuffer_rejected={}",
                r.ip, e.refused, e.rate_per_s, e.closed_without_session, e.maxbuffer_rejects
            ),
        );
    }
    v
}

/// ZooKeeper's `server_state`: the role served; while a member of an ensemble does not serve,
/// what it is busy being (ZooKeeper then reports the role of its last server object).
pub fn server_state(q: Option<&QuorumStatus>) -> &'static str {
    match q {
        None => "standalone",
        Some(q) => q.mode().unwrap_or(match q.state {
            crate::quorum::PeerState::Looking => "looking",
            crate::quorum::PeerState::Following => "follower",
            crate::quorum::PeerState::Leading => "leader",
            crate::quorum::PeerState::Observing => "observer",
        }),
    }
}

/// Answers a word (on the ops thread).
pub fn run(ops: &OpsState, word: &str) -> String {
    let status = ops.quorum_status();
    let serving = status.as_ref().and_then(|q| q.serving.map(|_| q));
    if needs_serving(word) && serving.is_none() {
        return if word == "hash" { ZK_NOT_SERVING.into() } else { format!("{ZK_NOT_SERVING}\n") };
    }
    match word {
        "ruok" => "imok".into(),
        "isro" => isro(ops),
        // zkd's own word (ZooKeeper has none by this name): the election as this server sees it.
        "elec" => match &status {
            Some(q) => q.election_report(),
            None => "the replica core has not published its quorum status yet\n".into(),
        },
        "conf" => conf(ops),
        "envi" => {
            let mut s = String::from("Environment:\n");
            for (k, v) in environment(ops) {
                let _ = writeln!(s, "{k}={v}");
            }
            s
        }
        "srvr" => {
            let mut s = format!("Zookeeper version: {VERSION_LINE}\n");
            if let Some(q) = serving {
                server_stats(ops, q, &mut s);
            }
            s
        }
        "stat" => {
            let mut s = format!("Zookeeper version: {VERSION_LINE}\nClients:\n");
            for c in ops.connections() {
                s.push_str(&conn_line(&c, true));
                s.push('\n');
            }
            s.push('\n');
            if let Some(q) = serving {
                server_stats(ops, q, &mut s);
            }
            s
        }
        "cons" => {
            let mut s = String::new();
            for c in ops.connections() {
                s.push_str(&conn_line(&c, false));
                s.push('\n');
            }
            s.push('\n');
            s.push_str(&limits_section(ops));
            s
        }
        "crst" => {
            for c in ops.connections() {
                c.reset();
            }
            "Connection stats reset.\n".into()
        }
        "srst" => {
            ops.metrics.reset();
            "Server stats reset.\n".into()
        }
        "dump" => dump(ops),
        "dirs" => format!(
            "datadir_size: {}\nlogdir_size: {}\n",
            dir_size(&ops.cfg.data_dir),
            dir_size(&ops.cfg.data_log_dir)
        ),
        "wchs" => {
            let (c, p, t) = watch_summary(ops);
            format!("{c} connections watching {p} paths\nTotal watches:{t}\n")
        }
        "wchc" => {
            let (by_session, _) = watches_by(ops);
            let mut s = String::new();
            for (sid, paths) in by_session {
                let _ = writeln!(s, "0x{sid:x}");
                for p in paths {
                    let _ = writeln!(s, "\t{p}");
                }
            }
            s.push('\n');
            s
        }
        "wchp" => {
            let (_, by_path) = watches_by(ops);
            let mut s = String::new();
            for (p, sids) in by_path {
                let _ = writeln!(s, "{p}");
                for sid in sids {
                    let _ = writeln!(s, "\t0x{sid:x}");
                }
            }
            s.push('\n');
            s
        }
        "mntr" => {
            let mut s = String::new();
            for (k, v) in monitor(ops) {
                if k.starts_with("zkd_") {
                    let _ = writeln!(s, "{k}\t{v}");
                } else {
                    let _ = writeln!(s, "zk_{k}\t{v}");
                }
            }
            s
        }
        // ZooKeeper's trace mask words: gtmk prints the mask; stmk sets it (zkd keeps no trace
        // mask, so it reports ZooKeeper's default).
        "gtmk" | "stmk" => "306".into(),
        // `hash`: the tree's digest after recent txns whose zxid is a multiple of 128, one
        // "<zxid hex>: <digest>" line each (ZooKeeper's `DigestCommand`); none while digests are
        // off or before the 128th txn.
        "hash" => {
            let mut s = String::new();
            if crate::tree::digest::enabled() {
                for d in ops.tree.digest_history() {
                    let _ = writeln!(s, "{:x}: {}", d.zxid, d.digest as i64);
                }
            }
            s
        }
        _ => not_whitelisted(word),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_double_strings() {
        assert_eq!(jdouble(2.0), "2.0");
        assert_eq!(jdouble(1.7143), "1.7143");
        assert_eq!(jdouble(0.0), "0.0");
        assert_eq!(jdouble(0.0001), "1.0E-4");
        assert_eq!(jdouble(12345678.0), "1.2345678E7");
    }

    #[test]
    fn java_dates_in_utc() {
        // The oracle printed this bucket as "Sun Nov 22 16:36:05 UTC 2026".
        assert_eq!(java_date(1_795_365_365_000), "Sun Nov 22 16:36:05 UTC 2026");
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
    }

    #[test]
    fn op_names_follow_final_request_processor() {
        assert_eq!(op_name(11), "PING");
        assert_eq!(op_name(15), "CREA");
        assert_eq!(op_name(12), "GETC");
        assert_eq!(op_name(i64::MIN), "NA");
    }

    #[test]
    fn cons_line_shape() {
        let c = ConnStats::new(1, 0, "127.0.0.1:44488".parse().unwrap());
        assert_eq!(conn_line(&c, false), " /127.0.0.1:44488[1](queued=0,recved=0,sent=0)");
        c.session.store(0x100014992ad0000, Ordering::Relaxed);
        c.timeout_ms.store(10000, Ordering::Relaxed);
        c.established_ms.store(1795365353384, Ordering::Relaxed);
        c.packet_received();
        c.answered(11, -2, 5, 3, 21613775);
        assert_eq!(
            conn_line(&c, false),
            " /127.0.0.1:44488[1](queued=0,recved=1,sent=1,sid=0x100014992ad0000,lop=PING,est=1795365353384,to=10000,lzxid=0x5,lresp=21613775,llat=3,minlat=3,avglat=3,maxlat=3)"
        );
        assert_eq!(conn_line(&c, true), " /127.0.0.1:44488[1](queued=0,recved=1,sent=1)");
    }
}
