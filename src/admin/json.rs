//! AdminServer commands (`/commands/<name>`), in the JSON shapes ZooKeeper 3.8's `Commands`
//! return, printed as Jackson's default pretty printer prints them.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::words::{self, jdouble};
use super::{OpsState, VERSION_LINE, ZK_NOT_SERVING};
use crate::config::host_port;
use crate::quorum::election::{ElectionStatus, PeerStatus};
use crate::quorum::peer::Role;
use crate::quorum::status::QuorumStatus;
use crate::quorum::{LearnerType, Vote};

/// An ordered JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl From<&str> for J {
    fn from(s: &str) -> J {
        J::Str(s.into())
    }
}
impl From<String> for J {
    fn from(s: String) -> J {
        J::Str(s)
    }
}
impl From<i64> for J {
    fn from(v: i64) -> J {
        J::Int(v)
    }
}
impl From<u64> for J {
    fn from(v: u64) -> J {
        J::Int(v as i64)
    }
}
impl From<bool> for J {
    fn from(v: bool) -> J {
        J::Bool(v)
    }
}

fn obj(pairs: Vec<(&str, J)>) -> Vec<(String, J)> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn escape(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Jackson's `DefaultPrettyPrinter`: objects one entry per line (`"k" : v`), two spaces per
/// object level; arrays inline (`[ a, b ]`) and not counted as a level.
pub fn pretty(v: &J) -> String {
    let mut s = String::new();
    write_value(v, 0, &mut s);
    s
}

fn write_value(v: &J, level: usize, out: &mut String) {
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Int(i) => {
            let _ = write!(out, "{i}");
        }
        J::Num(f) => out.push_str(&jdouble(*f)),
        J::Str(s) => escape(s, out),
        J::Arr(items) => {
            if items.is_empty() {
                out.push_str("[ ]");
                return;
            }
            out.push_str("[ ");
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(it, level, out);
            }
            out.push_str(" ]");
        }
        J::Obj(pairs) => {
            if pairs.is_empty() {
                out.push_str("{ }");
                return;
            }
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                out.push_str(if i > 0 { ",\n" } else { "\n" });
                out.push_str(&"  ".repeat(level + 1));
                escape(k, out);
                out.push_str(" : ");
                write_value(v, level + 1, out);
            }
            out.push('\n');
            out.push_str(&"  ".repeat(level));
            out.push('}');
        }
    }
}

/// Command names and their four-letter aliases (ZooKeeper's `Commands`), plus zkd's own.
pub const COMMANDS: &[(&str, &[&str])] = &[
    ("configuration", &["conf", "config"]),
    ("connection_stat_reset", &["crst"]),
    ("connections", &["cons"]),
    ("dirs", &[]),
    ("dump", &[]),
    ("election", &["elec"]),
    ("environment", &["env", "envi"]),
    ("get_trace_mask", &["gtmk"]),
    ("hash", &[]),
    ("initial_configuration", &["icfg"]),
    ("is_read_only", &["isro"]),
    ("last_snapshot", &["lsnp"]),
    ("leader", &["lead"]),
    ("monitor", &["mntr"]),
    ("observer_connection_stat_reset", &["orst"]),
    ("observers", &["obsr"]),
    ("ruok", &[]),
    ("server_stats", &["srvr"]),
    ("set_trace_mask", &["stmk"]),
    ("stat_reset", &["srst"]),
    ("stats", &["stat"]),
    ("system_properties", &["sysp"]),
    ("voting_view", &["voting"]),
    ("watch_summary", &["wchs"]),
    ("watches", &["wchc"]),
    ("watches_by_path", &["wchp"]),
    ("zabstate", &[]),
    ("zkd_limits", &[]),
    ("zkd_log_level", &[]),
];

pub fn primary_name(name: &str) -> Option<&'static str> {
    COMMANDS.iter().find(|(n, alias)| *n == name || alias.contains(&name)).map(|(n, _)| *n)
}

/// The `/commands` page: links, as ZooKeeper's servlet prints them.
pub fn index_html(base: &str) -> String {
    let mut s = String::new();
    for (n, _) in COMMANDS {
        let _ = writeln!(s, "<a href=\"{base}/{n}\">{n}</a>\n<br/>");
    }
    s
}

fn connection_obj(c: &crate::shard::ConnStats, brief: bool) -> J {
    let r = Ordering::Relaxed;
    let mut v = obj(vec![
        ("remote_socket_address", c.peer.to_string().into()),
        ("interest_ops", J::Int(if c.not_reading.load(r) { 0 } else { 1 })),
        ("outstanding_requests", c.outstanding.load(r).max(0).into()),
        ("packets_received", c.received.load(r).into()),
        ("packets_sent", c.sent.load(r).into()),
    ]);
    let sid = c.session.load(r);
    if !brief && sid != 0 {
        v.extend(obj(vec![
            ("session_id", sid.into()),
            ("last_operation", words::op_name(c.last_op.load(r)).into()),
            ("established", c.established_ms.load(r).into()),
            ("session_timeout", c.timeout_ms.load(r).into()),
            ("last_cxid", c.last_cxid.load(r).into()),
            ("last_zxid", c.last_zxid.load(r).into()),
            ("last_response_time", c.last_resp_ms.load(r).into()),
            ("last_latency", c.last_lat_ms.load(r).into()),
            ("min_latency", c.min_lat().into()),
            ("avg_latency", c.avg_lat().into()),
            ("max_latency", c.max_lat_ms.load(r).into()),
        ]));
    }
    J::Obj(v)
}

fn limits_obj(ops: &OpsState) -> J {
    let cfg = ops.limits.config();
    let offenders: Vec<J> = ops
        .limits
        .offenders(20)
        .into_iter()
        .map(|r| {
            let e = r.entry;
            J::Obj(obj(vec![
                ("ip", r.ip.to_string().into()),
                ("open_connections", J::Int(e.open as i64)),
                ("connects", e.connects.into()),
                ("refused_max_client_cnxns", e.refused.into()),
                ("maxbuffer_rejected", e.maxbuffer_rejects.into()),
                ("closed_without_session", e.closed_without_session.into()),
                ("auth_failures", e.auth_failures.into()),
                ("unauthenticated_sessions", e.unauthenticated.into()),
                ("connects_per_second", e.rate_per_s.into()),
                ("peak_connects_per_second", e.peak_rate_per_s.into()),
            ]))
        })
        .collect();
    J::Obj(obj(vec![
        ("max_client_cnxns", J::Int(cfg.max_cnxns as i64)),
        ("churn_threshold_per_second", cfg.churn_threshold_per_s.into()),
        ("log_interval_ms", cfg.log_interval_ms.into()),
        ("global_outstanding_limit", ops.global_outstanding_limit.into()),
        ("backpressure_active_shards", ops.metrics.snapshot().backpressured_shards.into()),
        ("top_ips", J::Arr(offenders)),
    ]))
}

fn client_response_obj(m: &crate::metrics::Totals) -> J {
    J::Obj(obj(vec![
        ("last_buffer_size", m.resp_last.into()),
        ("min_buffer_size", m.resp_min.into()),
        ("max_buffer_size", m.resp_max.into()),
    ]))
}

fn server_stats_obj(ops: &OpsState, q: Option<&QuorumStatus>) -> J {
    let m = ops.metrics.snapshot();
    let data = words::dir_size(&ops.cfg.data_dir) as i64;
    let log = words::dir_size(&ops.cfg.data_log_dir) as i64;
    J::Obj(obj(vec![
        ("packets_sent", m.packets_sent.into()),
        ("packets_received", m.packets_received.into()),
        ("fsync_threshold_exceed_count", J::Int(0)),
        ("client_response_stats", client_response_obj(&m)),
        ("data_dir_size", data.into()),
        ("log_dir_size", log.into()),
        ("provider_null", false.into()),
        ("server_state", words::server_state(q).into()),
        ("last_processed_zxid", ops.tree.last_processed_zxid().into()),
        ("outstanding_requests", m.outstanding.max(0).into()),
        ("avg_latency", J::Num(m.latency_avg_ms)),
        ("max_latency", m.latency_max_ms.into()),
        ("min_latency", m.latency_min_ms.into()),
        ("num_alive_client_connections", m.connections.into()),
        ("auth_failed_count", m.auth_failed.into()),
        ("non_mtlsremote_conn_count", J::Int(0)),
        ("non_mtlslocal_conn_count", J::Int(0)),
        ("uptime", ops.uptime_ms().into()),
    ]))
}

/// ZooKeeper's commands that need a running server (`CommandBase.serverRequired`); zkd's own
/// work any time.
fn needs_serving(cmd: &str) -> bool {
    !matches!(
        cmd,
        "environment"
            | "get_trace_mask"
            | "monitor"
            | "set_trace_mask"
            | "system_properties"
            | "zabstate"
            | "election"
            | "zkd_limits"
            | "zkd_log_level"
    )
}

/// `srvr`'s body; a serving leader adds its proposal sizes (ZooKeeper's `proposal_stats`).
fn server_stats_cmd(ops: &OpsState, q: Option<&QuorumStatus>) -> Vec<(String, J)> {
    let mut v = obj(vec![
        ("version", VERSION_LINE.into()),
        ("read_only", false.into()),
        ("server_stats", server_stats_obj(ops, q)),
        ("client_response", client_response_obj(&ops.metrics.snapshot())),
    ]);
    if let Some(l) = q.filter(|q| q.serving == Some(Role::Leader)).and_then(|q| q.leader_side.as_ref()) {
        let (last, min, max) = l.proposal_sizes;
        v.push((
            "proposal_stats".into(),
            J::Obj(obj(vec![
                ("last_buffer_size", J::Int(last.into())),
                ("min_buffer_size", J::Int(min.into())),
                ("max_buffer_size", J::Int(max.into())),
            ])),
        ));
    }
    v.push(("node_count".into(), J::Int(ops.zk_node_count() as i64)));
    v
}

/// `voting_view`'s `current_config`: every voter's addresses as ZooKeeper's `QuorumServerView`
/// shows them. A server line's client address; for this server, where its clients connect.
fn voting_view(ops: &OpsState, e: &crate::config::Ensemble) -> J {
    let servers = e
        .voters()
        .map(|s| {
            let client = match &s.client {
                Some(c) => c.to_host_port(),
                None if s.id == e.my_id => {
                    host_port(&ops.client_addr.ip().to_string(), ops.client_addr.port())
                }
                None => String::new(),
            };
            let view = obj(vec![
                ("server_addresses", J::Arr(vec![s.quorum_addr().into()])),
                ("election_addresses", J::Arr(vec![s.election_addr().into()])),
                ("client_address", client.into()),
                ("learner_type", s.peer_type.name().into()),
            ]);
            (s.id.to_string(), J::Obj(view))
        })
        .collect();
    J::Obj(servers)
}

/// Jackson's form of ZooKeeper's `MultipleAddresses` for one `host:port` (zkd servers have one
/// address each; every address counts as reachable).
fn multiple_addresses(host: &str, port: u16) -> J {
    let hp = host_port(host, port);
    let wildcard = host_port("0.0.0.0", port);
    J::Obj(obj(vec![
        ("empty", false.into()),
        ("all_addresses", J::Arr(vec![hp.clone().into()])),
        ("all_reachable_addresses", J::Arr(vec![hp.clone().into()])),
        ("one", hp.clone().into()),
        ("reachable_address", hp.clone().into()),
        ("wildcard_addresses", J::Arr(vec![wildcard.into()])),
        ("all_ports", J::Arr(vec![J::Int(port.into())])),
        ("all_host_strings", J::Arr(vec![host.into()])),
        ("all_reachable_addresses_or_all", J::Arr(vec![hp.clone().into()])),
        ("reachable_or_one", hp.into()),
    ]))
}

fn zabstate(ops: &OpsState, e: &crate::config::Ensemble, q: &QuorumStatus) -> Vec<(String, J)> {
    let me = e.me();
    let client = match &me.client {
        Some(c) => c.to_host_port(),
        None => host_port(&ops.client_addr.ip().to_string(), ops.client_addr.port()),
    };
    let zxid = ops.tree.last_processed_zxid();
    obj(vec![
        ("myid", J::Int(e.my_id as i64)),
        ("is_leader", (q.serving == Some(Role::Leader)).into()),
        ("quorum_address", multiple_addresses(&me.host, me.quorum_port)),
        ("election_address", multiple_addresses(&me.host, me.election_port)),
        ("client_address", client.into()),
        ("voting", (!me.is_observer()).into()),
        ("last_zxid", format!("0x{zxid:x}").into()),
        ("zab_epoch", J::Int(crate::quorum::epoch_of(zxid).into())),
        ("zab_counter", J::Int(crate::quorum::counter_of(zxid).into())),
        ("zabstate", q.zab_state.name().into()),
    ])
}

fn learner_obj(l: &crate::quorum::status::LearnerStatus) -> J {
    J::Obj(obj(vec![
        ("sid", J::Int(l.sid)),
        (
            "learner_type",
            match l.learner_type {
                LearnerType::Participant => "participant",
                LearnerType::Observer => "observer",
            }
            .into(),
        ),
        ("waiting_for", l.waiting_for.into()),
        ("forwarding", l.forwarding.into()),
        ("up_to_date", l.up_to_date.into()),
        ("last_heard_ms_ago", l.last_heard_ago_ms.into()),
        ("last_ack_zxid", format!("0x{:x}", l.last_ack_zxid).into()),
        ("pings_sent", l.pings_sent.into()),
        ("pings_answered", l.pings_answered.into()),
    ]))
}

fn vote_obj(v: &Vote) -> J {
    // An observer's initial vote holds Long.MIN_VALUE: no candidate.
    let n = |x: i64| if x == i64::MIN { J::Null } else { J::Int(x) };
    let zxid = if v.zxid == i64::MIN { J::Null } else { format!("0x{:x}", v.zxid).into() };
    J::Obj(obj(vec![
        ("leader", n(v.leader)),
        ("zxid", zxid),
        ("peer_epoch", n(v.peer_epoch)),
        ("round", J::Int(v.election_epoch)),
    ]))
}

fn peer_obj(p: &PeerStatus) -> J {
    let role = match p.role {
        Some(LearnerType::Participant) => "participant",
        Some(LearnerType::Observer) => "observer",
        None => "not in our configuration",
    };
    let last = match &p.last {
        Some(l) => {
            let mut v = obj(vec![("state", l.state.name().into())]);
            if let J::Obj(vote) = vote_obj(&l.vote) {
                v.extend(vote);
            }
            v.push(("version".into(), J::Int(l.version.into())));
            v.push(("age_ms".into(), l.age_ms.into()));
            J::Obj(v)
        }
        None => J::Null,
    };
    J::Obj(obj(vec![
        ("sid", J::Int(p.sid)),
        ("role", role.into()),
        ("reachable", p.reachable.map_or(J::Null, J::Bool)),
        ("last_notification", last),
        ("agrees", p.agrees.into()),
    ]))
}

fn election_status_obj(e: &ElectionStatus) -> J {
    let opt = |v: Option<u64>| v.map_or(J::Null, |x| J::Int(x as i64));
    J::Obj(obj(vec![
        ("state", e.state.name().into()),
        ("round", J::Int(e.round)),
        ("vote", e.vote.as_ref().map_or(J::Null, vote_obj)),
        ("current_vote", e.current_vote.as_ref().map_or(J::Null, vote_obj)),
        ("looking_for_ms", opt(e.looking_for_ms)),
        ("next_notification_ms", opt(e.next_notification_ms)),
        ("finalize_left_ms", opt(e.finalize_left_ms)),
        ("voters", J::Int(e.voters as i64)),
        ("quorum", J::Int(e.quorum as i64)),
        ("waiting", e.waiting.clone().map_or(J::Null, J::Str)),
        ("peers", J::Arr(e.peers.iter().map(peer_obj).collect())),
    ]))
}

/// zkd's `election` command: this server's view of the election and of its leader, with the text
/// `zkd election status` prints.
fn election_obj(q: &QuorumStatus) -> Vec<(String, J)> {
    let last = q.last_election.map_or(J::Null, |d| {
        J::Obj(obj(vec![
            ("round", J::Int(d.round)),
            ("duration_ms", d.duration_ms.into()),
            ("leader", J::Int(d.leader)),
            ("state", d.state.name().into()),
            ("ms_ago", q.at_ms.saturating_sub(d.at_ms).into()),
        ]))
    });
    let learners: Vec<J> = q.leader_side.iter().flat_map(|l| l.learners.iter()).map(learner_obj).collect();
    obj(vec![
        ("my_id", J::Int(q.my_id)),
        ("standalone", q.standalone.into()),
        ("peer_state", q.detailed_peer_state().into()),
        ("leader", q.leader.map_or(J::Null, J::Int)),
        ("serving", q.mode().map_or(J::Null, |m| m.into())),
        ("accepted_epoch", J::Int(q.accepted_epoch.into())),
        ("current_epoch", J::Int(q.current_epoch.into())),
        ("last_zxid", format!("0x{:x}", q.last_zxid).into()),
        ("looking_count", q.lookings.into()),
        ("last_election", last),
        ("election", q.election.as_ref().map_or(J::Null, election_status_obj)),
        ("learners", J::Arr(learners)),
        ("config_mismatches", J::Arr(q.config_mismatches.iter().map(|(_, m)| J::Str(m.clone())).collect())),
        ("text", q.election_report().into()),
    ])
}

/// Parses a query string into (key, value) pairs (no percent-decoding needed for our keys).
pub fn query_get<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Runs a command; `name` may be an alias. The body always carries "command" and "error".
pub fn run(ops: &OpsState, name: &str, query: &str) -> J {
    let Some(cmd) = primary_name(name) else {
        return J::Obj(obj(vec![
            ("command", name.into()),
            ("error", format!("Unknown command: {name}").into()),
        ]));
    };
    let status = ops.quorum_status();
    if needs_serving(cmd) && status.as_ref().is_none_or(|q| q.serving.is_none()) {
        // ZooKeeper's `runCommand`: the name as asked, and the error.
        return J::Obj(obj(vec![("command", name.into()), ("error", ZK_NOT_SERVING.into())]));
    }
    let mut error: Option<String> = None;
    let mut v: Vec<(String, J)> = match cmd {
        "configuration" => obj(vec![
            // clientPort=0: the port the kernel chose; -1 when only secureClientPort is set.
            ("client_port", J::Int(ops.cfg.client_port.map_or(-1, |_| ops.client_addr.port().into()))),
            ("data_dir", ops.cfg.data_dir.join("version-2").display().to_string().into()),
            ("data_log_dir", ops.cfg.data_log_dir.join("version-2").display().to_string().into()),
            ("tick_time", J::Int(ops.cfg.tick_time_ms as i64)),
            ("max_client_cnxns", J::Int(ops.cfg.max_client_cnxns as i64)),
            ("min_session_timeout", J::Int(ops.cfg.min_session_timeout_ms() as i64)),
            ("max_session_timeout", J::Int(ops.cfg.max_session_timeout_ms() as i64)),
            ("server_id", J::Int(ops.cfg.my_id.unwrap_or(0) as i64)),
            ("client_port_listen_backlog", J::Int(-1)),
        ]),
        "connection_stat_reset" => {
            words::run(ops, "crst");
            vec![]
        }
        "connections" => {
            let conns: Vec<J> = ops.connections().iter().map(|c| connection_obj(c, false)).collect();
            let mut v = obj(vec![("connections", J::Arr(conns)), ("secure_connections", J::Arr(vec![]))]);
            v.push(("zkd_limits".into(), limits_obj(ops)));
            v
        }
        "dirs" => obj(vec![
            ("datadir_size", J::Int(words::dir_size(&ops.cfg.data_dir) as i64)),
            ("logdir_size", J::Int(words::dir_size(&ops.cfg.data_log_dir) as i64)),
        ]),
        "dump" => {
            let d = ops.sessions();
            let buckets = d
                .buckets
                .iter()
                .map(|(t, ids)| (t.to_string(), J::Arr(ids.iter().map(|i| J::Int(*i)).collect())));
            let eph = ops
                .tree
                .ephemerals_by_session()
                .into_iter()
                .map(|(s, paths)| (s.to_string(), J::Arr(paths.into_iter().map(J::Str).collect())));
            vec![
                ("expiry_time_to_session_ids".into(), J::Obj(buckets.collect())),
                ("session_id_to_ephemeral_paths".into(), J::Obj(eph.collect())),
            ]
        }
        "environment" => words::environment(ops).into_iter().map(|(k, v)| (k, J::Str(v))).collect(),
        "get_trace_mask" => obj(vec![("tracemask", J::Int(306))]),
        "hash" => {
            // ZooKeeper's `ZxidDigest` objects as Jackson writes them (its getters).
            let digests = if crate::tree::digest::enabled() { ops.tree.digest_history() } else { Vec::new() };
            let list = digests
                .into_iter()
                .map(|d| {
                    J::Obj(obj(vec![
                        ("zxid", J::Int(d.zxid)),
                        ("digest", J::Int(d.digest as i64)),
                        ("digestVersion", J::Int(crate::tree::digest::DIGEST_VERSION as i64)),
                    ]))
                })
                .collect();
            obj(vec![("digests", J::Arr(list))])
        }
        "initial_configuration" => {
            // Secrets (keys ending in "password", as ZooKeeper's log redactor) are masked.
            let text: String = ops
                .cfg
                .raw
                .iter()
                .map(|(k, v)| {
                    let v = if crate::config::is_secret_key(k) { "***" } else { v.as_str() };
                    format!("{k}={v}\n")
                })
                .collect();
            obj(vec![("initial_configuration", text.into())])
        }
        "is_read_only" => obj(vec![("read_only", false.into())]),
        "last_snapshot" => {
            let (zxid, ts) = last_snapshot(ops);
            obj(vec![("zxid", format!("{zxid:x}").into()), ("timestamp", J::Int(ts))])
        }
        "leader" => match (&ops.ensemble, &status) {
            (Some(e), Some(q)) => {
                let leader = q.leader.unwrap_or(-1);
                let ip = e.servers.get(&(leader as u64)).map_or(String::new(), |s| s.host.clone());
                obj(vec![
                    ("is_leader", (q.serving == Some(Role::Leader)).into()),
                    ("leader_id", J::Int(leader)),
                    ("leader_ip", ip.into()),
                ])
            }
            _ => {
                error = Some("server is not initialized".into());
                vec![]
            }
        },
        "monitor" => words::monitor(ops)
            .into_iter()
            .map(|(k, v)| {
                let val = if let Ok(i) = v.parse::<i64>() {
                    J::Int(i)
                } else if let Ok(f) = v.parse::<f64>() {
                    J::Num(f)
                } else {
                    J::Str(v)
                };
                (k, val)
            })
            .collect(),
        "observer_connection_stat_reset" | "ruok" => vec![],
        "observers" => {
            // Only a leader has observers to show (a follower shows its ObserverMaster's, which
            // zkd does not run).
            let observers: Vec<J> = status
                .iter()
                .filter(|q| q.serving == Some(Role::Leader))
                .filter_map(|q| q.leader_side.as_ref())
                .flat_map(|l| l.learners.iter())
                .filter(|l| l.learner_type == LearnerType::Observer && l.forwarding)
                .map(learner_obj)
                .collect();
            obj(vec![("synced_observers", J::Int(observers.len() as i64)), ("observers", J::Arr(observers))])
        }
        "server_stats" => server_stats_cmd(ops, status.as_ref()),
        "set_trace_mask" => match query_get(query, "traceMask").and_then(|v| v.parse::<i64>().ok()) {
            Some(m) => obj(vec![("tracemask", J::Int(m))]),
            None => {
                error = Some("setTraceMask requires long traceMask argument".into());
                vec![]
            }
        },
        "stat_reset" => {
            words::run(ops, "srst");
            vec![]
        }
        "stats" => {
            let conns: Vec<J> = ops.connections().iter().map(|c| connection_obj(c, true)).collect();
            let mut v = server_stats_cmd(ops, status.as_ref());
            v.push(("connections".into(), J::Arr(conns)));
            v.push(("secure_connections".into(), J::Arr(vec![])));
            v
        }
        "system_properties" => {
            let mut env: Vec<(String, J)> = std::env::vars().map(|(k, v)| (k, J::Str(v))).collect();
            env.sort_by(|a, b| a.0.cmp(&b.0));
            env
        }
        "voting_view" => match &ops.ensemble {
            Some(e) => obj(vec![("current_config", voting_view(ops, e))]),
            None => obj(vec![("current_config", J::Obj(vec![]))]),
        },
        "watch_summary" => {
            let (c, p, t) = words::watch_summary(ops);
            obj(vec![
                ("num_connections", J::Int(c as i64)),
                ("num_paths", J::Int(p as i64)),
                ("num_total_watches", J::Int(t as i64)),
            ])
        }
        "watches" => {
            let (by_session, _) = words::watches_by(ops);
            let m = by_session
                .into_iter()
                .map(|(s, paths)| (s.to_string(), J::Arr(paths.into_iter().map(J::Str).collect())))
                .collect();
            vec![("session_id_to_watched_paths".into(), J::Obj(m))]
        }
        "watches_by_path" => {
            let (_, by_path) = words::watches_by(ops);
            let m = by_path
                .into_iter()
                .map(|(p, sids)| (p, J::Arr(sids.into_iter().map(J::Int).collect())))
                .collect();
            vec![("path_to_session_ids".into(), J::Obj(m))]
        }
        "zabstate" => match (&ops.ensemble, &status) {
            (Some(e), Some(q)) => zabstate(ops, e, q),
            _ => obj(vec![("voting", false.into()), ("zabstate", "".into())]),
        },
        "election" => match &status {
            Some(q) => election_obj(q),
            None => {
                error = Some("the replica core has not published its quorum status yet".into());
                vec![]
            }
        },
        "zkd_limits" => match limits_obj(ops) {
            J::Obj(v) => v,
            _ => vec![],
        },
        "zkd_log_level" => match super::logging::global() {
            None => {
                error = Some("logging is not controllable in this process".into());
                vec![]
            }
            Some(ctl) => {
                if let Some(level) = query_get(query, "level") {
                    if let Err(e) = ctl.set_level(level) {
                        error = Some(e);
                    }
                }
                obj(vec![("level", ctl.level().into())])
            }
        },
        _ => {
            error = Some(format!("Unknown command: {name}"));
            vec![]
        }
    };
    v.push(("command".into(), cmd.into()));
    v.push(("error".into(), error.map_or(J::Null, J::Str)));
    J::Obj(v)
}

/// The newest snapshot file in dataDir: (zxid, modification time in seconds).
fn last_snapshot(ops: &OpsState) -> (i64, i64) {
    let dir = ops.cfg.data_dir.join("version-2");
    let mut best = (0i64, 0i64);
    if let Ok(it) = std::fs::read_dir(dir) {
        for e in it.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_prefix("snapshot.") else { continue };
            let hex = hex.split('.').next().unwrap_or("");
            if let Ok(z) = i64::from_str_radix(hex, 16) {
                if z >= best.0 {
                    let ts = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs() as i64);
                    best = (z, ts);
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jackson_pretty_printing() {
        let v = J::Obj(obj(vec![
            (
                "connections",
                J::Arr(vec![
                    J::Obj(obj(vec![("a", J::Int(1)), ("b", "x".into())])),
                    J::Obj(obj(vec![("a", J::Int(2))])),
                ]),
            ),
            ("secure_connections", J::Arr(vec![])),
            ("m", J::Obj(vec![])),
            ("paths", J::Arr(vec!["/a".into(), "/a/b".into()])),
            ("avg", J::Num(2.0)),
            ("error", J::Null),
        ]));
        let want = "{\n  \"connections\" : [ {\n    \"a\" : 1,\n    \"b\" : \"x\"\n  }, {\n    \"a\" : 2\n  } ],\n  \"secure_connections\" : [ ],\n  \"m\" : { },\n  \"paths\" : [ \"/a\", \"/a/b\" ],\n  \"avg\" : 2.0,\n  \"error\" : null\n}";
        assert_eq!(pretty(&v), want);
    }

    #[test]
    fn aliases_resolve() {
        assert_eq!(primary_name("mntr"), Some("monitor"));
        assert_eq!(primary_name("monitor"), Some("monitor"));
        assert_eq!(primary_name("cons"), Some("connections"));
        assert_eq!(primary_name("nosuch"), None);
    }
}
